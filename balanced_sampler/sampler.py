"""`BalancedBatchSampler`: batches of P classes x K images, planned per epoch."""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from balanced_sampler import _exhaustive, _fixed, _quotas
from balanced_sampler._classes import I64, ClassIndex
from balanced_sampler._hard_dealing import Dealt, HardDealing
from balanced_sampler._random import draw_seed
from balanced_sampler.checks import (
    as_labels,
    check_class_names,
    check_int,
    check_sampler_options,
    check_seed,
    class_weight_vector,
)
from balanced_sampler.class_tables import CategoryTable, NeighborTable
from balanced_sampler.stats import HardBatchStats, PlanStats, plan_stats

ClassWeights = str | float | Mapping[int, float] | Sequence[float]
ClassNames = Sequence[str] | Mapping[int, str]
ClassNeighbors = (
    np.ndarray[Any, Any]
    | Sequence[Sequence[int]]
    | Mapping[int, Sequence[int] | np.ndarray[Any, Any]]
)
Categories = Mapping[int, Hashable]
LabelTable = I64 | dict[int, I64]

STATE_KEYS = ("seed", "epoch", "next_batch")
FINGERPRINT_DEFAULTS = {
    "class_neighbors": "None",
    "categories": "None",
    "hard_batch_fraction": "1.0",
    "categories_per_batch": "1",
}
"""Fingerprint entries that states saved before hard-class batches lack."""
MAX_PADDING = 32
"""Fixed mode with small_classes="pad": K is at most this many times the largest class."""


class SamplerWarning(UserWarning):
    """A sampler setting that works but defeats metric learning, or leaves classes out.

    Emitted for `num_images_per_class=1` (no positives), `num_classes_per_batch=1`
    (no negatives) and `small_classes="drop"` (classes left out).
    """


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
      holds at most P groups of distinct classes. The epoch starts with as
      many exact P x K batches as the class sizes allow (see
      `exhaustive_priority`); the other batches ("the tail") are full except
      one or two, unless a class has more groups left than that leaves
      batches: then its groups set the number of batches, and the other
      classes' remaining images are spread over them in smaller groups (never
      below two images) so that as many batches as possible hold a second
      class. Batches come largest first. The number of batches does not
      depend on the seed.
    - `safe_triplet=True` (fixed): every batch is exactly P distinct classes x
      K images; an epoch has `samples_per_epoch / (P * K)` batches. Each
      class gets `floor(s_c)` or `floor(s_c) + 1` groups per epoch, where
      `s_c` is its expected share of the epoch's groups (from
      `class_weights`, at most one group per batch); its groups over any
      epochs 0..E-1 stay close to `E * s_c` (a small weight is never
      starved). Each class walks its own stream of seeded passes over its
      images, continued across epochs: an epoch shows `min(n_c, quota_c * K)`
      distinct images of each class, every pass shows each image once, and
      over any number of epochs the images of a class are shown equally
      often, within one. Classes with fewer than K images follow
      `small_classes`.

    It works as a PyTorch `batch_sampler` unchanged:
    `DataLoader(dataset, batch_sampler=BalancedBatchSampler(labels, 8, 4))`.

    Args:
        labels: One integer class label per sample (list, tuple or array).
        num_classes_per_batch: P, the number of distinct classes per batch.
            P=1 warns (a batch then holds no negative).
        num_images_per_class: K, the number of images of each class per batch.
            K=1 warns (a batch then holds no positive). In fixed mode with
            `small_classes="pad"`, K is at most 32 times the largest class
            (a larger K is a typo: its groups would be nearly all repeats).
        safe_triplet: False for exhaustive epochs, True for exact P x K
            batches (see above).
        samples_per_epoch: Fixed mode only: samples per epoch, a multiple of
            P * K. Default: the number of samples of the usable classes,
            rounded up to a multiple of P * K * num_shards.
        class_weights: Fixed mode only: how groups are shared among classes.
            "proportional" (default, as kerasgen 0.1.3's n_c / N, made
            coverage-optimal): first every class's whole groups of K images
            (in proportion to n_c when they do not all fit), then one group
            for the classes with the most images left over, then the rest in
            proportion to n_c; so an epoch shows as many distinct images as
            any exact P x K plan of its length can. `1.0` (weights n_c) shares
            all groups in proportion to n_c instead, so a large class may
            repeat images while smaller ones leave some unseen. "uniform"
            (equal weights), a real exponent alpha for weights n_c ** alpha
            (0.5 is square-root sampling), a mapping {label: weight} or a
            sequence indexed by label: groups in proportion to the weights,
            each class capped at one group per batch and the excess shared
            among the others. A class of weight 0 is never chosen.
        small_classes: Fixed mode only: what to do with classes of fewer than
            K images. "pad" (default) repeats their images inside the group,
            each distinct image before any repeat; "drop" leaves them out
            with a `SamplerWarning` that counts and names them; "error"
            raises.
        exhaustive_priority: Exhaustive mode only. "exact" (default): the
            epoch starts with as many exact P x K batches as any
            exactly-once plan can hold (`max_exact_batches`), or
            fewer when one class dominates so much that B* of them would
            leave later batches without a second class (then the most that
            leave none). "spread": no reserved exact batches; every class's
            groups are spread over all the batches, so when one class
            dominates, its batches hold more classes each (at the cost of
            exact batches).
        shuffle: Whether to randomise the order of images, classes and
            batches. With False, plans are deterministic and do not depend on
            the seed.
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
        class_names: Optional names of the classes, a sequence indexed by
            label or a mapping {label: name}, used only to name classes in
            errors and warnings.
        class_neighbors: Fixed mode only: hard-class batches. An integer
            array of shape (C, M) whose row i lists, nearest first, the labels
            closest to the i-th distinct label (labels in increasing order),
            or a mapping {label: sequence of labels} with a key for every
            label (lists may differ in length); e.g. from
            `balanced_sampler.neighbors.class_neighbor_table`. A share
            `hard_batch_fraction` of every epoch's batches is then dealt as
            neighbourhoods: an anchor class (the class of the next group, in
            a seeded order of the epoch's groups, that still has groups
            left) and the nearest classes of its list that still have groups
            left this epoch; a batch's groups come in that order. A class that must appear in every
            remaining batch to show its quota joins any batch ("forced");
            when the list runs out, the batch is completed from the epoch's
            remaining groups in a seeded order (`hard_batch_stats` counts
            both, and the batches that needed no completion: "pure").
            Quotas, coverage, rotation and every class's sequence of images
            are exactly those of the plain plan: only which classes share a
            batch changes. Replace the table between epochs with
            `set_class_neighbors`. Not with `categories`.
        categories: Fixed mode only: a mapping {label: category} (any
            hashable categories) with a key for every label (other keys are
            ignored). A share `hard_batch_fraction` of every epoch's batches
            takes its classes from `categories_per_batch` categories (as
            OML's `CategoryBalanceSampler`): the anchor's category and, for
            more than one, categories drawn like anchors; each category's
            classes are taken round-robin in a seeded order and a category
            that runs short hands its share to the batch's next one. When
            they all run short, the batch is completed as with
            `class_neighbors`. Quotas stay those of the plain plan.
        hard_batch_fraction: Fixed mode only: the share of every epoch's
            batches dealt as neighbourhoods or categories, in [0, 1]
            (round(fraction * global_batches), half up); the others are dealt
            as without them, and all are put in a seeded order. 0 gives the
            plain plan. It applies once a table is given (at construction or
            by `set_class_neighbors`).
        categories_per_batch: With `categories`: how many categories a batch
            takes its classes from (default 1), at most P and at most the
            number of categories.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an argument has a wrong value, e.g. P larger than the
            number of usable classes, `samples_per_epoch` not a multiple of
            P * K, K above 32 times the largest class with `small_classes="pad"`,
            or `shard_index` outside `[0, num_shards)`.
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
    exhaustive_priority: str = attrs.field(default="exact", kw_only=True, on_setattr=_FROZEN)
    shuffle: bool = attrs.field(default=True, kw_only=True, on_setattr=_FROZEN)
    seed: int = attrs.field(default=None, kw_only=True, converter=_seed, on_setattr=_FROZEN)
    num_shards: int = attrs.field(default=1, kw_only=True, on_setattr=_FROZEN)
    shard_index: int = attrs.field(default=0, kw_only=True, on_setattr=_FROZEN)
    class_names: ClassNames | None = attrs.field(default=None, kw_only=True, on_setattr=_FROZEN)
    class_neighbors: ClassNeighbors | None = attrs.field(
        default=None, kw_only=True, on_setattr=_FROZEN
    )
    categories: Categories | None = attrs.field(default=None, kw_only=True, on_setattr=_FROZEN)
    hard_batch_fraction: float = attrs.field(default=1.0, kw_only=True, on_setattr=_FROZEN)
    categories_per_batch: int = attrs.field(default=1, kw_only=True, on_setattr=_FROZEN)

    _index: ClassIndex = attrs.field(init=False)
    _names: Mapping[int, str] | None = attrs.field(init=False, default=None)
    _global_batches: int = attrs.field(init=False)
    _layout: _exhaustive.Layout | None = attrs.field(init=False, default=None)
    _shares: np.ndarray[Any, np.dtype[np.float64]] | None = attrs.field(init=False, default=None)
    _quotas: _quotas.Quotas | None = attrs.field(init=False, default=None)
    _ranks: np.ndarray[Any, np.dtype[np.int32]] | None = attrs.field(init=False, default=None)
    # What the next iteration plays, unless an iteration is in progress.
    _next_epoch: int = attrs.field(init=False, default=0)
    _resume_batch: int = attrs.field(init=False, default=0)
    # The iteration in progress: its number and (epoch, next batch), or None.
    _iteration: int = attrs.field(init=False, default=0)
    _position: tuple[int, int] | None = attrs.field(init=False, default=None)
    # Neighbour tables by the first epoch they apply to, in increasing order.
    _neighbor_schedule: list[tuple[int, NeighborTable | None]] = attrs.field(
        init=False, factory=list
    )
    _category_table: CategoryTable | None = attrs.field(init=False, default=None)
    # (seed, epoch, table digest) -> this shard's batches and hard-batch figures.
    _cache: tuple[tuple[int, int, str], list[I64], HardBatchStats | None] | None = attrs.field(
        init=False, default=None
    )
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
            exhaustive_priority=self.exhaustive_priority,
            class_neighbors=self.class_neighbors,
            categories=self.categories,
            hard_batch_fraction=self.hard_batch_fraction,
            categories_per_batch=self.categories_per_batch,
        )
        p, k = self.num_classes_per_batch, self.num_images_per_class
        index = ClassIndex.from_labels(self.labels)
        self._index = index
        self._names = check_class_names(self.class_names, index.label_values)
        self._warn_about_batch_shape()
        if not self.safe_triplet:
            self._check_enough_classes(index.num_classes, "classes")
            self._layout = _exhaustive.Layout.build(
                index.sizes, p, k, priority=self.exhaustive_priority
            )
            self._global_batches = self._layout.num_batches
        else:
            largest = int(index.sizes.max())
            if self.small_classes == "pad" and k > MAX_PADDING * largest:
                raise ValueError(
                    "`num_images_per_class` must be at most "
                    f"{MAX_PADDING} x the size of the largest class ({largest} images, so "
                    f"at most {MAX_PADDING * largest}) with small_classes='pad': a group of K "
                    f"images would repeat each of its images about {k // largest} times. "
                    f"Received: num_images_per_class={k}. Use a smaller K or "
                    "small_classes='drop'."
                )
            small = index.sizes < k
            if small.any() and self.small_classes != "pad":
                self._handle_small_classes(small)
            weights = self._usable_weights()
            what = "classes with a positive weight"
            if self.small_classes != "pad":
                what += f" and at least K={k} images"
            self._check_enough_classes(int(np.count_nonzero(weights > 0)), what)
            self._global_batches = self._fixed_batch_count(index.sizes[weights > 0])
            proportional = (
                isinstance(self.class_weights, str) and self.class_weights == "proportional"
            )
            self._shares = _quotas.expected_shares(
                weights,
                self._global_batches,
                p,
                sizes=index.sizes if proportional else None,
                k=k,
            )
            self._schedule()
            self._build_hard_tables()
        if len(self) == 0:
            raise ValueError(
                f"An epoch has {self._global_batches} batch(es), fewer than "
                f"num_shards={self.num_shards}: every shard would get no batch. "
                "Use fewer shards or more samples per epoch."
            )

    def _schedule(self) -> None:
        """Computes the seed-dependent parts of fixed planning (quotas, base ranks)."""
        assert self._shares is not None
        self._quotas = _quotas.schedule(
            self._shares,
            self._global_batches,
            self.num_classes_per_batch,
            shuffle=self.shuffle,
            seed=self.seed,
        )
        self._ranks = _fixed.base_ranks(self._index, shuffle=self.shuffle, seed=self.seed)

    def _build_hard_tables(self) -> None:
        """Checks `class_neighbors` / `categories` against the labels."""
        values = self._index.label_values
        table = None
        if self.class_neighbors is not None:
            table = NeighborTable.build(self.class_neighbors, values)
        self._neighbor_schedule = [(0, table)]
        if self.categories is not None:
            categories = CategoryTable.build(self.categories, values)
            if self.categories_per_batch > categories.num_categories:
                raise ValueError(
                    "`categories_per_batch` must be at most the number of categories of the "
                    f"labels ({categories.num_categories}). Received: categories_per_batch="
                    f"{self.categories_per_batch}"
                )
            self._category_table = categories

    # ------------------------------------------------------------------ checks

    def _class_label(self, label: int) -> str:
        if self._names is None:
            return f"label {label}"
        return f"{self._names[label]!r} (label {label})"

    def _warn_about_batch_shape(self) -> None:
        p, k = self.num_classes_per_batch, self.num_images_per_class
        if k == 1:
            warnings.warn(
                "num_images_per_class=1: no batch holds two images of a class, so no sample "
                "has a positive in its batch; triplet, contrastive and multi-similarity losses "
                "need num_images_per_class >= 2.",
                SamplerWarning,
                stacklevel=4,
            )
        if p == 1:
            warnings.warn(
                "num_classes_per_batch=1: every batch holds a single class, so no sample has "
                "a negative in its batch; triplet, contrastive and multi-similarity losses "
                "need num_classes_per_batch >= 2.",
                SamplerWarning,
                stacklevel=4,
            )

    def _check_enough_classes(self, usable: int, what: str) -> None:
        p = self.num_classes_per_batch
        if p > usable:
            raise ValueError(
                f"`num_classes_per_batch` must be at most the number of {what} among the "
                f"labels given. Received: num_classes_per_batch={p}, but there are only "
                f"{usable} (counted over the {len(self.labels)} labels given)."
            )

    def _handle_small_classes(self, small: np.ndarray[Any, np.dtype[np.bool_]]) -> None:
        k = self.num_images_per_class
        count = int(np.count_nonzero(small))
        samples = int(self._index.sizes[small].sum())
        examples = ", ".join(
            self._class_label(label) for label in self._index.label_values[small][:5].tolist()
        )
        more = f" and {count - 5} more" if count > 5 else ""
        message = (
            f"{count} of {self._index.num_classes} classes have fewer than "
            f"num_images_per_class={k} images ({samples} samples): {examples}{more}"
        )
        if self.small_classes == "error":
            raise ValueError(
                f"{message}. Use small_classes='pad' to repeat their images or "
                "small_classes='drop' to leave them out."
            )
        warnings.warn(f"small_classes='drop': leaving out {message}.", SamplerWarning, stacklevel=5)

    def _usable_weights(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """The weight of every class in fixed mode; 0 for classes never chosen."""
        index = self._index
        weights = class_weight_vector(self.class_weights, index.label_values, index.sizes)
        if self.small_classes != "pad":
            weights = np.where(index.sizes < self.num_images_per_class, 0.0, weights)
        return weights

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
    def exact_batches(self) -> int:
        """Exact P x K batches reserved in every epoch's global plan.

        All batches in fixed mode; in exhaustive mode, the ones the layout
        reserves (see `exhaustive_priority`; a tail batch may happen to be
        exact too).
        """
        if self._layout is None:
            return self._global_batches
        return self._layout.num_exact

    @property
    def max_exact_batches(self) -> int:
        """B*: the most exact P x K batches an exhaustive epoch could hold.

        An exact batch takes one full group of K images from each of P
        classes, so no exactly-once plan holds more than the largest B with
        `sum_c min(full_c, B) >= P * B`, where `full_c` counts class c's
        groups of exactly K images (floor(n_c / K), one less when n_c mod K
        is 1, since no group may hold a single image). In fixed mode, every
        batch is exact: `global_batches`.
        """
        if self._layout is None:
            return self._global_batches
        return self._layout.max_exact

    @property
    def epoch(self) -> int:
        """The epoch of the next batch (see `state_dict`)."""
        return self._where()[0]

    @property
    def expected_groups(self) -> np.ndarray[Any, np.dtype[np.float64]] | None:
        """Fixed mode: every class's expected groups per epoch, by class.

        Classes are the distinct labels in increasing order. Over epochs
        0..E-1 a class shows close to `E` times this many groups. None in
        exhaustive mode.
        """
        if self._shares is None:
            return None
        out: np.ndarray[Any, np.dtype[np.float64]] = self._shares.copy()
        out.flags.writeable = False
        return out

    def __len__(self) -> int:
        """Returns the exact number of batches this shard yields per epoch."""
        return self._global_batches // self.num_shards

    def plan(self, epoch: int) -> list[I64]:
        """Returns this shard's batches of `epoch`.

        Args:
            epoch: A non-negative epoch number (below 2**31).

        Returns:
            A list of `len(self)` read-only int64 arrays of sample indices,
            exactly what iterating over that epoch yields.

        Raises:
            TypeError: If `epoch` is not an integer.
            ValueError: If `epoch` is negative or not below 2**31, or (with
                neighbour tables replaced by `set_class_neighbors`) it is
                before the epochs whose table the sampler still holds.
        """
        return list(self._planned(_check_epoch("epoch", epoch))[0])

    def hard_batch_stats(self, epoch: int = 0) -> HardBatchStats | None:
        """Returns how this shard's batches of `epoch` were dealt (hard-class batches).

        Args:
            epoch: The epoch to plan and describe.

        Returns:
            A `HardBatchStats` (hard and pure batches, where their classes
            came from, and which batches of `plan(epoch)` are hard), or None
            when the epoch is dealt without neighbours or categories.
        """
        return self._planned(_check_epoch("epoch", epoch))[1]

    def _planned(self, epoch: int) -> tuple[list[I64], HardBatchStats | None]:
        hard = self._hard_dealing(epoch)
        key = (self.seed, epoch, _hard_key(hard))
        with self._lock:
            cache = self._cache
            if cache is not None and cache[0] == key:
                return cache[1], cache[2]
            batches, stats = self._shard_batches(epoch, hard)
            self._cache = (key, batches, stats)
        return batches, stats

    def _hard_dealing(self, epoch: int) -> HardDealing | None:
        """The hard-class dealing of `epoch`, or None for the plain one."""
        if not self.safe_triplet:
            return None
        source: NeighborTable | CategoryTable | None = self._category_table
        if source is None:
            source = self._neighbors_of(epoch)
        if source is None:
            return None
        return HardDealing(source, float(self.hard_batch_fraction), self.categories_per_batch)

    def _neighbors_of(self, epoch: int) -> NeighborTable | None:
        """The neighbour table in force for `epoch`."""
        schedule = self._neighbor_schedule
        if not schedule:
            return None
        if epoch < schedule[0][0]:
            raise ValueError(
                f"Epoch {epoch} was planned with a neighbour table that has since been "
                f"replaced (`set_class_neighbors`); the sampler keeps the tables of epochs >= "
                f"{schedule[0][0]} only. Received: epoch={epoch}"
            )
        table = schedule[0][1]
        for first, later in schedule[1:]:
            if first > epoch:
                break
            table = later
        return table

    def _shard_batches(
        self, epoch: int, hard: HardDealing | None = None
    ) -> tuple[list[I64], HardBatchStats | None]:
        p, k = self.num_classes_per_batch, self.num_images_per_class
        keep = np.arange(self.shard_index, len(self) * self.num_shards, self.num_shards)
        if self.safe_triplet:
            assert self._quotas is not None
            assert self._ranks is not None
            table, dealt = _fixed.plan_epoch(
                self._index,
                self._quotas,
                self._ranks,
                self._global_batches,
                p,
                k,
                shuffle=self.shuffle,
                seed=self.seed,
                epoch=epoch,
                hard=hard,
            )
            table = table[keep] if self.num_shards > 1 else table
            table.flags.writeable = False
            stats = None
            if hard is not None:
                stats = _hard_stats(dealt, keep)
            return list(table), stats
        assert self._layout is not None
        order, sizes = _exhaustive.plan_epoch(
            self._index, self._layout, shuffle=self.shuffle, seed=self.seed, epoch=epoch
        )
        order.flags.writeable = False
        ends = np.cumsum(sizes)
        return [order[ends[g] - sizes[g] : ends[g]] for g in keep.tolist()], None

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

    # ----------------------------------------------------- hard-class batches

    def set_class_neighbors(
        self, class_neighbors: ClassNeighbors | None, *, from_epoch: int | None = None
    ) -> int:
        """Replaces the neighbour table from the next epoch on (never mid-epoch).

        The table applies from the epoch of the next batch if that batch
        starts an epoch and no iteration is in progress (e.g. between
        epochs, or before training), otherwise from the epoch after the one
        being played; or from a later `from_epoch`. Epochs before keep the
        table they were planned with (a table set earlier for epochs from
        that one on is replaced); the sampler forgets tables no epoch from
        the current one on uses.

        This is what a callback that recomputes the neighbours (e.g. every
        few epochs, from class centroids of the model's embeddings) calls
        at the end of an epoch. To resume after a restart, save the table
        that `class_neighbors_for()` returns with the `state_dict()` (which
        identifies that table in its fingerprint) and give it back before
        (or at) `load_state_dict`: as `class_neighbors` at construction, or
        by this method on the new sampler before loading the state.

        Args:
            class_neighbors: The new table (as `class_neighbors` at
                construction), or None to deal the following epochs without
                neighbours.
            from_epoch: The first epoch to use it; default (None) the first
                epoch not started (see above). Must not be before that
                epoch: an epoch already started keeps its table. A restored
                run uses it to give back a table that was set for an epoch
                after its state's epoch.

        Returns:
            The first epoch that uses the new table.

        Raises:
            ValueError: In exhaustive mode or with `categories`, if the
                table does not match the labels (see `class_neighbors`), or
                if `from_epoch` is before the first epoch not started.
            TypeError: If the table or `from_epoch` has the wrong type.
        """
        if not self.safe_triplet:
            raise ValueError(
                "`set_class_neighbors` only applies when safe_triplet=True (see "
                "`class_neighbors`); this sampler was built with safe_triplet=False."
            )
        if self._category_table is not None:
            raise ValueError(
                "`set_class_neighbors` cannot be used with `categories`: a sampler deals hard "
                "batches either by categories or by neighbours."
            )
        table = None
        if class_neighbors is not None:
            table = NeighborTable.build(class_neighbors, self._index.label_values)
        if self._position is not None:
            first = self._position[0] + 1
        else:
            epoch, batch = self._next_epoch, self._resume_batch
            first = epoch if batch == 0 else epoch + 1
        if from_epoch is not None:
            requested = _check_epoch("from_epoch", from_epoch)
            if requested < first:
                raise ValueError(
                    f"`from_epoch` must be at least {first}, the first epoch not started yet: "
                    "an epoch already started keeps the table it was planned with. "
                    f"Received: from_epoch={from_epoch}"
                )
            first = requested
        schedule = [entry for entry in self._neighbor_schedule if entry[0] < first]
        schedule.append((first, table))
        # Forget the tables no epoch from the current one on uses.
        current = self._where()[0]
        while len(schedule) > 1 and schedule[1][0] <= current:
            schedule.pop(0)
        self._neighbor_schedule = schedule
        return first

    def class_neighbors_for(
        self, epoch: int | None = None
    ) -> (
        np.ndarray[Any, np.dtype[np.int64]] | dict[int, np.ndarray[Any, np.dtype[np.int64]]] | None
    ):
        """Returns the neighbour table in force for `epoch`, in labels.

        Args:
            epoch: An epoch; default: the epoch of the next batch (the one
                `state_dict()` names).

        Returns:
            An int64 array (C, M) of labels (as `class_neighbors` takes it),
            a dict {label: int64 array of labels} when the lists differ in
            length, or None when the epoch is dealt without neighbours.
        """
        epoch = self._where()[0] if epoch is None else _check_epoch("epoch", epoch)
        table = self._neighbors_of(epoch) if self.safe_triplet else None
        return None if table is None else table.as_labels()

    # --------------------------------------------------------------- iteration

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch that the next iteration plays (from its first batch).

        An iteration in progress is abandoned: the state (`state_dict`) and
        the next `iter()` both say epoch `epoch`, batch 0.

        Args:
            epoch: A non-negative epoch number.

        Raises:
            ValueError: If `epoch` is negative or (after `set_class_neighbors`)
                uses a neighbour table the sampler no longer keeps.
        """
        epoch = _check_epoch("epoch", epoch)
        if self.safe_triplet:
            self._neighbors_of(epoch)  # raises if its table was replaced and forgotten
        self._detach()
        self._next_epoch, self._resume_batch = epoch, 0

    def _detach(self) -> None:
        """Ends the iteration in progress: its later draws no longer move the state."""
        self._iteration += 1
        self._position = None

    def iter_arrays(self) -> Iterator[I64]:
        """Plays the next epoch, one int64 array of sample indices per batch.

        Each call moves to the next epoch (or plays the epoch given to
        `set_epoch`, or resumes where `load_state_dict` says). The epoch is
        claimed when this is called, not when the first batch is drawn.

        Returns:
            An iterator over this shard's remaining batches of the epoch.
        """
        epoch, start = self._claim()
        return self._play(self._iteration, epoch, start)

    def _claim(self) -> tuple[int, int]:
        """Starts a new iteration: returns (epoch, first batch) and moves past them.

        A new iteration plays what was set to come next (`set_epoch`,
        `load_state_dict`, or the epoch after the last one started), never
        the rest of an iteration still in progress.
        """
        epoch, start = self._next_epoch, self._resume_batch
        if start >= len(self):
            epoch, start = epoch + 1, 0
        self._detach()
        self._next_epoch, self._resume_batch = epoch + 1, 0
        self._position = (epoch, start)
        return epoch, start

    def _play(self, iteration: int, epoch: int, start: int) -> Iterator[I64]:
        batches = self.plan(epoch)
        try:
            for i in range(start, len(batches)):
                if self._iteration == iteration:
                    self._position = (epoch, i + 1)
                yield batches[i]
        finally:
            # Exhausted, or abandoned (`break` closes the generator): the next
            # iteration plays the next epoch, and the state says so.
            if self._iteration == iteration:
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

    def state_dict(self) -> dict[str, Any]:
        """Returns what the next batches are: `{"seed", "epoch", "next_batch", "fingerprint"}`.

        The state always describes exactly what comes next: while an
        iteration is in progress, its next batch (so a sampler loaded with
        it continues that iteration, as torchdata's `StatefulDataLoader`
        expects); otherwise what the next `iter()` plays (after an epoch
        ends, after a `break` out of it, or after `set_epoch`). Loading it
        into a sampler built with the same labels and settings (see
        `load_state_dict`) continues with exactly the batches this one would
        have yielded, without replaying earlier ones. "fingerprint" is a
        plain dict of strings describing the labels and settings, including
        the neighbour table in force for the state's epoch ("class_neighbors":
        its shape and a hash; save the table itself, from
        `class_neighbors_for()`, with the state).
        """
        epoch, batch = self._where()
        return {
            "seed": self.seed,
            "epoch": epoch,
            "next_batch": batch,
            "fingerprint": self._fingerprint(epoch),
        }

    def _where(self) -> tuple[int, int]:
        """(epoch, next batch) of the iteration in progress, else of the next one."""
        if self._position is not None:
            epoch, batch = self._position
        else:
            epoch, batch = self._next_epoch, self._resume_batch
        if batch >= len(self):
            epoch, batch = epoch + 1, 0
        return epoch, batch

    def _fingerprint(self, epoch: int) -> dict[str, str]:
        """The labels and settings, and the neighbour table in force for `epoch`."""
        labels = np.ascontiguousarray(self.labels)
        weights = self.class_weights
        if not isinstance(weights, (str, float, int)):
            items = sorted(dict(weights).items()) if isinstance(weights, Mapping) else weights
            weights = "sha256:" + hashlib.sha256(repr(list(items)).encode()).hexdigest()[:16]
        neighbors = "None"
        if self.safe_triplet and self._category_table is None:
            first = self._neighbor_schedule[0][0]
            if epoch < first:
                neighbors = f"(not kept: tables before epoch {first} were replaced)"
            else:
                neighbors = _hard_key(self._hard_dealing(epoch))
        categories = "None" if self._category_table is None else self._category_table.digest
        return {
            "labels": f"{len(labels)} labels, sha256:"
            + hashlib.sha256(labels.tobytes()).hexdigest()[:16],
            "num_classes_per_batch": str(self.num_classes_per_batch),
            "num_images_per_class": str(self.num_images_per_class),
            "safe_triplet": str(self.safe_triplet),
            "samples_per_epoch": str(self.samples_per_epoch),
            "class_weights": str(weights),
            "small_classes": self.small_classes,
            "exhaustive_priority": self.exhaustive_priority,
            "shuffle": str(self.shuffle),
            "num_shards": str(self.num_shards),
            "shard_index": str(self.shard_index),
            "class_neighbors": neighbors,
            "categories": categories,
            "hard_batch_fraction": str(float(self.hard_batch_fraction)),
            "categories_per_batch": str(self.categories_per_batch),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resumes from a `state_dict()`: the next iteration continues there.

        The saved seed replaces this sampler's seed, so a sampler built with
        `seed=None` resumes the original run's plans. An iteration in progress
        is abandoned.

        Args:
            state: A mapping with integer "seed", "epoch" and "next_batch", and
                the "fingerprint" of the sampler that saved it (a state
                without one is not checked).

        Raises:
            ValueError: If a key is missing, a value is not a valid integer,
                or the fingerprint shows the state was saved by a sampler
                built with other labels or settings (the message says which).
        """
        missing = set(STATE_KEYS) - set(state)
        if missing:
            raise ValueError(
                "`state` must have the keys 'seed', 'epoch' and 'next_batch'. "
                f"Missing: {sorted(missing)}"
            )
        seed = check_int("state['seed']", state["seed"], minimum=0)
        epoch = _check_epoch("state['epoch']", state["epoch"])
        batch = check_int("state['next_batch']", state["next_batch"], minimum=0)
        if batch >= len(self):
            epoch, batch = epoch + 1, 0
        saved = state.get("fingerprint")
        if saved is not None:
            if not isinstance(saved, Mapping):
                raise ValueError(
                    "`state['fingerprint']` must be the dict that state_dict() returns. "
                    f"Received: {saved!r}"
                )
            ours = self._fingerprint(epoch)
            differ = [
                f"{name}: saved {saved.get(name, FINGERPRINT_DEFAULTS.get(name))!r}, "
                f"this sampler {value!r}"
                for name, value in ours.items()
                if saved.get(name, FINGERPRINT_DEFAULTS.get(name)) != value
            ]
            if differ:
                hint = ""
                if any(line.startswith("class_neighbors:") for line in differ):
                    hint = (
                        ". The neighbour table differs: give this sampler the table in force "
                        "when the state was saved (`class_neighbors_for()` then), as "
                        "`class_neighbors` or with `set_class_neighbors` before loading"
                    )
                raise ValueError(
                    "This state was saved by a sampler built with other labels or settings, "
                    "so its batches would not continue the saved run. Differences: "
                    + "; ".join(differ)
                    + hint
                )
        self._detach()
        if seed != self.seed:
            object.__setattr__(self, "seed", seed)
            self._cache = None
            if self._quotas is not None:
                self._schedule()
        self._next_epoch, self._resume_batch = epoch, batch

    # ------------------------------------------------------------ copying

    def __getstate__(self) -> dict[str, Any]:
        """Returns the sampler for pickling: its fields and where it stands.

        The lock and the plan cache are left out; an iteration in progress
        becomes the copy's next iteration (the copy continues it).
        """
        state = {
            field.name: getattr(self, field.name)
            for field in attrs.fields(type(self))
            if field.name not in ("_lock", "_cache", "_position", "_iteration")
        }
        state["_next_epoch"], state["_resume_batch"] = self._where()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restores a pickled sampler (see `__getstate__`)."""
        for name, value in state.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "_cache", None)
        object.__setattr__(self, "_position", None)
        object.__setattr__(self, "_iteration", 0)

    def __repr__(self) -> str:
        built = getattr(self, "_global_batches", None) is not None
        return (
            f"BalancedBatchSampler(num_samples={len(self.labels)}, "
            f"num_classes_per_batch={self.num_classes_per_batch}, "
            f"num_images_per_class={self.num_images_per_class}, safe_triplet={self.safe_triplet}, "
            f"batches_per_epoch={len(self) if built else '(not built)'}, seed={self.seed}, "
            f"shard={self.shard_index}/{self.num_shards})"
        )


def _hard_key(hard: HardDealing | None) -> str:
    """What identifies a hard-class dealing in the plan cache and the fingerprint."""
    return "None" if hard is None else hard.source.digest


def _hard_stats(dealt: Dealt | None, keep: I64) -> HardBatchStats:
    """The `HardBatchStats` of a shard's batches (`dealt` None: no hard batch)."""
    if dealt is None:
        none = np.zeros(len(keep), dtype=np.int64)
        return HardBatchStats(
            is_hard=none.astype(bool),
            is_pure=none.astype(bool),
            listed=none,
            forced=none.copy(),
            filled=none.copy(),
        )
    return HardBatchStats(
        is_hard=dealt.hard[keep],
        is_pure=dealt.pure[keep],
        listed=dealt.listed[keep],
        forced=dealt.forced[keep],
        filled=dealt.filled[keep],
    )


def _check_epoch(name: str, epoch: object) -> int:
    value = check_int(name, epoch, minimum=0)
    if value >= _quotas.MAX_EPOCH:
        raise ValueError(f"`{name}` must be below 2**31. Received: {name}={value}")
    return value
