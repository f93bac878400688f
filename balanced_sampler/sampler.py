"""`BalancedBatchSampler`: batches of P classes x K images, planned per epoch."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from balanced_sampler import _exhaustive, _fixed
from balanced_sampler._classes import I64, ClassIndex
from balanced_sampler._random import draw_seed
from balanced_sampler.checks import (
    as_labels,
    check_int,
    check_sampler_options,
    check_seed,
    class_weight_vector,
)
from balanced_sampler.stats import PlanStats, plan_stats

ClassWeights = str | float | Mapping[int, float] | Sequence[float]


def _seed(value: object) -> int:
    seed = check_seed(value)
    return draw_seed() if seed is None else seed


_FROZEN = attrs.setters.frozen


@attrs.define(eq=False, repr=False)
class BalancedBatchSampler:
    """Yields batches of `num_classes_per_batch` classes x `num_images_per_class` images.

    Each batch is a list of sample indices (positions in `labels`). The plan of
    an epoch is a pure function of the labels, the configuration, the seed and
    the epoch number: no global random state is read or written, any epoch
    can be planned directly, and every process computes the same plan. That
    makes reshuffling per epoch, sharding and resuming exact.

    Two modes, with kerasgen 0.1.3's names:

    - `safe_triplet=False` (exhaustive): every sample exactly once per epoch.
      A class's images are cut into groups of K (its last images split so no
      group has a single image unless the class has one, e.g. K=4 and 9
      images give 4+3+2; K=2 and 3 images give one group of 3); each batch
      holds at most P groups of distinct classes. All batches are full except
      the last one or two, unless a class has more groups than that leaves
      batches, in which case its groups set the number of batches and the
      other classes are spread evenly over them. The number of batches does
      not depend on the seed.
    - `safe_triplet=True` (fixed): every batch is exactly P distinct classes x
      K images; an epoch has `samples_per_epoch / (P * K)` batches. Each
      class gets a quota of groups from `class_weights` (by largest
      remainder, ties rotated by seed, at most one group per batch) and walks
      its own stream of seeded passes over its images, continued across
      epochs: an epoch shows `min(n_c, quota_c * K)` distinct images of each
      class, every pass shows each image once, and over any number of epochs
      the images of a class are shown equally often, within one. Classes with
      fewer than K images follow `small_classes`.

    It works as a PyTorch `batch_sampler` unchanged:
    `DataLoader(dataset, batch_sampler=BalancedBatchSampler(labels, 8, 4))`.

    Args:
        labels: One integer class label per sample (list, tuple or array).
        num_classes_per_batch: P, the number of distinct classes per batch.
        num_images_per_class: K, the number of images of each class per batch.
        safe_triplet: False for exhaustive epochs, True for exact P x K
            batches (see above).
        samples_per_epoch: Fixed mode only: samples per epoch, a multiple of
            P * K. Default: the number of samples of the usable classes,
            rounded up to a multiple of P * K * num_shards.
        class_weights: Fixed mode only: how groups are shared among classes.
            "proportional" (n_c / N, as kerasgen 0.1.3), "uniform", a real
            exponent alpha for weights n_c ** alpha (0.5 is square-root
            sampling), a mapping {label: weight} or a sequence indexed by
            label. A class of weight 0 is never chosen.
        small_classes: Fixed mode only: what to do with classes of fewer than
            K images. "pad" (default) repeats their images inside the group,
            each distinct image before any repeat; "drop" leaves them out
            with a warning that counts them; "error" raises.
        shuffle: Whether to randomise the order of images, classes and
            batches. With False, plans are deterministic and seed-free.
        seed: A non-negative int. None draws one from the operating system
            at construction and keeps it (see `seed`, `state_dict`).
        num_shards: The number of shards (e.g. data-parallel workers). Each
            shard computes the same global plan and keeps its own batches.
        shard_index: This shard, in `[0, num_shards)`. Shard i takes global
            batches i, i + num_shards, ...; every shard gets
            `floor(global_batches / num_shards)` batches and the last
            `global_batches % num_shards` batches of the epoch are left out
            (in exhaustive mode those are the smallest batches; a fresh
            shuffle each epoch means different samples each time).

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an argument has a wrong value, e.g. P larger than the
            number of usable classes, `samples_per_epoch` not a multiple of
            P * K, or `shard_index` outside `[0, num_shards)`.
    """

    labels: I64 = attrs.field(converter=as_labels, on_setattr=_FROZEN)
    num_classes_per_batch: int = attrs.field(on_setattr=_FROZEN)
    num_images_per_class: int = attrs.field(on_setattr=_FROZEN)
    safe_triplet: bool = attrs.field(default=False, kw_only=True, on_setattr=_FROZEN)
    samples_per_epoch: int | None = attrs.field(default=None, kw_only=True, on_setattr=_FROZEN)
    class_weights: ClassWeights = attrs.field(
        default="proportional", kw_only=True, on_setattr=_FROZEN
    )
    small_classes: str = attrs.field(default="pad", kw_only=True, on_setattr=_FROZEN)
    shuffle: bool = attrs.field(default=True, kw_only=True, on_setattr=_FROZEN)
    seed: int = attrs.field(default=None, kw_only=True, converter=_seed, on_setattr=_FROZEN)
    num_shards: int = attrs.field(default=1, kw_only=True, on_setattr=_FROZEN)
    shard_index: int = attrs.field(default=0, kw_only=True, on_setattr=_FROZEN)

    _index: ClassIndex = attrs.field(init=False)
    _global_batches: int = attrs.field(init=False)
    _quotas: _fixed.Quotas | None = attrs.field(init=False, default=None)
    _ranks: np.ndarray[Any, np.dtype[np.int32]] | None = attrs.field(init=False, default=None)
    _next_epoch: int = attrs.field(init=False, default=0)
    _resume_batch: int = attrs.field(init=False, default=0)
    _position: tuple[int, int] | None = attrs.field(init=False, default=None)
    _cache: tuple[int, int, list[I64]] | None = attrs.field(init=False, default=None)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    def __attrs_post_init__(self) -> None:
        check_sampler_options(
            self.num_classes_per_batch,
            self.num_images_per_class,
            safe_triplet=self.safe_triplet,
            samples_per_epoch=self.samples_per_epoch,
            class_weights=self.class_weights,
            small_classes=self.small_classes,
            shuffle=self.shuffle,
            num_shards=self.num_shards,
            shard_index=self.shard_index,
        )
        k = self.num_images_per_class
        index = ClassIndex.from_labels(self.labels)
        self._index = index
        if not self.safe_triplet:
            self._check_enough_classes(index.num_classes, "classes")
            self._global_batches = _exhaustive.num_batches(
                index.sizes, self.num_classes_per_batch, k
            )
        else:
            small = index.sizes < k
            if small.any() and self.small_classes != "pad":
                self._handle_small_classes(small)
            weights = self._usable_weights()
            what = "classes with a positive weight"
            if self.small_classes != "pad":
                what += f" and at least K={k} images"
            self._check_enough_classes(int(np.count_nonzero(weights > 0)), what)
            self._global_batches = self._fixed_batch_count(index.sizes[weights > 0])
            self._quotas = self._compute_quotas(weights)
            self._ranks = _fixed.base_ranks(index, shuffle=self.shuffle, seed=self.seed)
        if len(self) == 0:
            raise ValueError(
                f"An epoch has {self._global_batches} batch(es), fewer than "
                f"num_shards={self.num_shards}: every shard would get no batch. "
                "Use fewer shards or more samples per epoch."
            )

    # ------------------------------------------------------------------ checks

    def _check_enough_classes(self, usable: int, what: str) -> None:
        p = self.num_classes_per_batch
        if p > usable:
            raise ValueError(
                f"`num_classes_per_batch` must be at most the number of {what}. "
                f"Received: num_classes_per_batch={p}, but there are only {usable}."
            )

    def _handle_small_classes(self, small: np.ndarray[Any, np.dtype[np.bool_]]) -> None:
        k = self.num_images_per_class
        count = int(np.count_nonzero(small))
        samples = int(self._index.sizes[small].sum())
        examples = self._index.label_values[small][:5].tolist()
        message = (
            f"{count} of {self._index.num_classes} classes have fewer than "
            f"num_images_per_class={k} images ({samples} samples; labels e.g. {examples})"
        )
        if self.small_classes == "error":
            raise ValueError(
                f"{message}. Use small_classes='pad' to repeat their images or "
                "small_classes='drop' to leave them out."
            )
        warnings.warn(f"small_classes='drop': leaving out {message}.", UserWarning, stacklevel=4)

    def _usable_weights(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """The weight of every class in fixed mode; 0 for classes never chosen."""
        index = self._index
        weights = class_weight_vector(self.class_weights, index.label_values, index.sizes)
        if self.small_classes != "pad":
            weights = np.where(index.sizes < self.num_images_per_class, 0.0, weights)
        return weights

    def _compute_quotas(self, weights: np.ndarray[Any, np.dtype[np.float64]]) -> _fixed.Quotas:
        budget = self._global_batches * self.num_classes_per_batch
        int_weights = _fixed.integer_weights(weights, budget)
        proportional = isinstance(self.class_weights, str) and self.class_weights == "proportional"
        return _fixed.compute_quotas(
            int_weights,
            self._global_batches,
            self.num_classes_per_batch,
            self.seed,
            sizes=self._index.sizes if proportional else None,
            k=self.num_images_per_class,
        )

    def _fixed_batch_count(self, usable_sizes: I64) -> int:
        batch = self.batch_size
        if self.samples_per_epoch is None:
            unit = batch * self.num_shards
            return -(-int(usable_sizes.sum()) // unit) * self.num_shards
        samples = int(self.samples_per_epoch)
        return samples // batch

    # ---------------------------------------------------------------- planning

    @property
    def batch_size(self) -> int:
        """P * K: the size of every batch in fixed mode, the largest usual size otherwise."""
        return self.num_classes_per_batch * self.num_images_per_class

    @property
    def num_classes(self) -> int:
        """The number of distinct labels."""
        return self._index.num_classes

    @property
    def global_batches(self) -> int:
        """Batches in one epoch's global plan, before sharding."""
        return self._global_batches

    @property
    def epoch(self) -> int:
        """The epoch that the next iteration plays."""
        return self._next_epoch

    def __len__(self) -> int:
        """Returns the exact number of batches this shard yields per epoch."""
        return self._global_batches // self.num_shards

    def plan(self, epoch: int) -> list[I64]:
        """Returns this shard's batches of `epoch`.

        Args:
            epoch: A non-negative epoch number.

        Returns:
            A list of `len(self)` read-only int64 arrays of sample indices,
            exactly what iterating over that epoch yields.

        Raises:
            ValueError: If `epoch` is not a non-negative integer.
        """
        epoch = check_int("epoch", epoch, minimum=0)
        with self._lock:
            cache = self._cache
            if cache is not None and cache[0] == self.seed and cache[1] == epoch:
                return list(cache[2])
            batches = self._shard_batches(epoch)
            self._cache = (self.seed, epoch, batches)
        return list(batches)

    def _shard_batches(self, epoch: int) -> list[I64]:
        p, k = self.num_classes_per_batch, self.num_images_per_class
        keep = np.arange(self.shard_index, len(self) * self.num_shards, self.num_shards)
        if self.safe_triplet:
            assert self._quotas is not None
            assert self._ranks is not None
            table = _fixed.plan_epoch(
                self._index,
                self._quotas,
                self._ranks,
                self._global_batches,
                p,
                k,
                shuffle=self.shuffle,
                seed=self.seed,
                epoch=epoch,
            )
            table = table[keep] if self.num_shards > 1 else table
            table.flags.writeable = False
            return list(table)
        order, sizes = _exhaustive.plan_epoch(
            self._index, p, k, shuffle=self.shuffle, seed=self.seed, epoch=epoch
        )
        order.flags.writeable = False
        ends = np.cumsum(sizes)
        return [order[ends[g] - sizes[g] : ends[g]] for g in keep.tolist()]

    def stats(self, epoch: int = 0) -> PlanStats:
        """Returns the quality figures of this shard's plan for `epoch`.

        Args:
            epoch: The epoch to plan and measure.

        Returns:
            The `PlanStats` of `plan(epoch)` (see `plan_stats`).
        """
        return plan_stats(
            self.plan(epoch), self.labels, self.num_classes_per_batch, self.num_images_per_class
        )

    # --------------------------------------------------------------- iteration

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch that the next iteration plays (from its first batch).

        Args:
            epoch: A non-negative epoch number.
        """
        self._next_epoch = check_int("epoch", epoch, minimum=0)
        self._resume_batch = 0

    def iter_arrays(self) -> Iterator[I64]:
        """Plays the next epoch, one int64 array of sample indices per batch.

        Each call moves to the next epoch (or plays the epoch given to
        `set_epoch`, or resumes where `load_state_dict` says). The epoch is
        claimed when this is called, not when the first batch is drawn.

        Returns:
            An iterator over this shard's remaining batches of the epoch.
        """
        epoch, start = self._next_epoch, self._resume_batch
        self._next_epoch, self._resume_batch = epoch + 1, 0
        self._position = (epoch, start)
        return self._play(epoch, start)

    def _play(self, epoch: int, start: int) -> Iterator[I64]:
        batches = self.plan(epoch)
        for i in range(start, len(batches)):
            self._position = (epoch, i + 1)
            yield batches[i]
        if self._position == (epoch, len(batches)):
            self._position = None

    def __iter__(self) -> Iterator[list[int]]:
        """Plays the next epoch, one list of int sample indices per batch.

        Unlike `iter_arrays`, the epoch is claimed when the first batch is
        drawn, not when `iter()` is called: `torch.utils.data.DataLoader`
        with `num_workers > 0` calls `iter()` on its batch sampler twice per
        epoch and draws from the second iterator only.
        """
        for batch in self.iter_arrays():
            yield batch.tolist()

    # ------------------------------------------------------------------ resume

    def state_dict(self) -> dict[str, int]:
        """Returns where iteration stands: `{"seed", "epoch", "next_batch"}`.

        Loading it into a sampler built with the same labels and settings
        (see `load_state_dict`) continues with exactly the batches this one
        would have yielded, without replaying earlier ones.
        """
        if self._position is not None:
            epoch, batch = self._position
        else:
            epoch, batch = self._next_epoch, self._resume_batch
        if batch >= len(self):
            epoch, batch = epoch + 1, 0
        return {"seed": self.seed, "epoch": epoch, "next_batch": batch}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Resumes from a `state_dict()`: the next iteration continues there.

        The saved seed replaces this sampler's seed, so a sampler built with
        `seed=None` resumes the original run's plans.

        Args:
            state: A mapping with integer "seed", "epoch" and "next_batch".

        Raises:
            ValueError: If a key is missing or a value is not a valid integer.
        """
        missing = {"seed", "epoch", "next_batch"} - set(state)
        if missing:
            raise ValueError(
                "`state` must have the keys 'seed', 'epoch' and 'next_batch'. "
                f"Missing: {sorted(missing)}"
            )
        seed = check_int("state['seed']", state["seed"], minimum=0)
        epoch = check_int("state['epoch']", state["epoch"], minimum=0)
        batch = check_int("state['next_batch']", state["next_batch"], minimum=0)
        if batch >= len(self):
            epoch, batch = epoch + 1, 0
        if seed != self.seed:
            object.__setattr__(self, "seed", seed)
            if self._quotas is not None:
                self._quotas = self._compute_quotas(self._usable_weights())
                self._ranks = _fixed.base_ranks(self._index, shuffle=self.shuffle, seed=seed)
        self._next_epoch, self._resume_batch, self._position = epoch, batch, None

    def __repr__(self) -> str:
        return (
            f"BalancedBatchSampler(num_samples={len(self.labels)}, num_classes={self.num_classes}, "
            f"num_classes_per_batch={self.num_classes_per_batch}, "
            f"num_images_per_class={self.num_images_per_class}, safe_triplet={self.safe_triplet}, "
            f"batches_per_epoch={len(self)}, seed={self.seed}, "
            f"shard={self.shard_index}/{self.num_shards})"
        )
