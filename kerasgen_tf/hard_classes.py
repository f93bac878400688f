"""Hard-class batches in `fit`: the sampler's class-neighbour table, refreshed from the model.

```python
from kerasgen_tf import balanced_image_dataset_from_directory
from kerasgen_tf.hard_classes import ClassNeighborRefresh

train_ds = balanced_image_dataset_from_directory(
    "images/", num_classes_per_batch=32, num_images_per_class=4, safe_triplet=True, seed=1)
model.fit(train_ds, epochs=50, callbacks=[
    ClassNeighborRefresh(train_ds, num_neighbors=64, backup_dir="backup/neighbors"),
    keras.callbacks.BackupAndRestore("backup/model"),          # after it
])
```

At the end of every refreshed epoch the callback embeds the training images with the model
(every file once, or a seeded sample of each class), computes each class's centroid and its
nearest classes (`balanced_sampler.neighbors.class_neighbor_table`) and gives the table to
the sampler (`set_class_neighbors`): the following epochs deal a share of their batches as
neighbourhoods of classes the model currently confuses.

**When a table takes effect.** A balanced dataset asks its sampler for an epoch's plan when
that epoch's first batch is requested. `model.fit(train_ds, epochs=N)` makes a new iterator
for every epoch and requests its first batch only after every callback's `on_epoch_end` of
the previous epoch, so the table computed at the end of epoch e deals epoch e + 1: always,
whatever tf.data prefetches. If the pipeline runs across epochs instead
(`train_ds.repeat()` with `steps_per_epoch`, or any wrapper that keeps one iterator),
tf.data has already planned and prefetched batches of epoch e + 1 when epoch e ends; that
epoch keeps its plan (a plan never changes mid-epoch), the table deals epoch e + 2, and the
callback warns once. `refreshes` records the epoch each table deals first (what
`set_class_neighbors` returned).
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

import attrs
import keras
import numpy as np

from balanced_sampler import BalancedBatchSampler
from balanced_sampler.checks import check_int
from balanced_sampler.neighbors import DEFAULT_PROBES, SEARCHES, class_neighbor_table
from balanced_sampler.retrieval import check_distance
from kerasgen_tf.embedding import embed_dataset, is_balanced_dataset
from kerasgen_tf.neighbor_backup import (
    NeighborRecord,
    delete_records,
    read_records,
    record_of,
    restore_record,
    write_records,
)

__all__ = ["ClassNeighborRefresh", "Refresh"]

NEIGHBORS_PER_P = 4
"""Default neighbours per class: this many times P (at most the classes minus one)."""


@attrs.frozen
class Refresh:
    """One table the callback computed and gave to the sampler.

    Attributes:
        after_epoch: The Keras epoch (from 0) whose final weights embedded the images;
            `initial_epoch - 1` for a table computed before the first epoch of `fit`.
        first_epoch: The first sampler epoch dealt with the table (what
            `set_class_neighbors` returned). With `fit(train_ds)` from the sampler's
            epoch 0, sampler and Keras epochs are the same numbers.
        num_embedded: Images embedded.
        embed_seconds: Seconds spent embedding them.
        neighbor_seconds: Seconds spent on centroids and nearest classes.
    """

    after_epoch: int
    first_epoch: int
    num_embedded: int
    embed_seconds: float
    neighbor_seconds: float


class ClassNeighborRefresh(keras.callbacks.Callback):  # type: ignore[misc,unused-ignore]  # keras is untyped
    """Recomputes the sampler's class-neighbour table from the model every few epochs.

    Refreshed epochs: the table is computed at the end of epoch e (counted from 0) when
    `e + 1 >= warmup_epochs` and `(e + 1 - warmup_epochs) % every == 0`, except at the last
    epoch of `fit` (no epoch would use it) or when training is stopping. The first
    `warmup_epochs` epochs play the sampler's plain batches (or the table it was built
    with). With `warmup_epochs=0`, a table is computed before the first epoch, from the
    weights training starts with. Whenever `fit` starts an epoch at or after the warm-up
    that has no table (e.g. resuming without a backup), one is computed first.

    A table deals only the epochs after it is set: see the module docstring for when
    that is. The share of hard batches is the sampler's `hard_batch_fraction`.

    **Resume.** With `backup_dir`, the callback writes at the end of every epoch where
    the sampler stands for the next epoch (its `state_dict()` from that epoch's first
    batch) and the neighbour tables it holds from there on. When `fit` starts at an epoch
    the backup holds (after a restart, `keras.callbacks.BackupAndRestore` restores the
    model and makes `fit` start at the epoch after the last one finished), the sampler is
    put back there with its tables before the epoch's first batch, so the resumed run
    plays the batches an uninterrupted one would. The backup keeps the last two epochs:
    list this callback before `BackupAndRestore`, so that whichever is written last when
    a run is cut, the epoch Keras resumes at is found. A backup of other epochs raises;
    `delete_backup=True` deletes it when `fit` ends normally, as `BackupAndRestore` does
    with its own.

    Args:
        dataset: The training dataset from `balanced_image_dataset_from_directory` /
            `balanced_image_dataset_from_paths` (`safe_triplet=True`). Its files are
            embedded (each once, in the order of `file_paths`, decoded with its options;
            its sampler does not move) and its sampler gets the tables.
        num_neighbors: M, neighbours per class, at most the number of classes minus one.
            Defaults to 4 x P (at most the classes minus one): a hard batch takes the
            anchor's first P - 1 listed classes that still have groups left this epoch,
            and classes run out of groups as the epoch goes on.
        every: Refresh every `every` epochs (an int >= 1). Defaults to 1.
        warmup_epochs: Epochs played before the first table (an int >= 0). Defaults to 1.
        distance: `"cosine"` (default: centroids of the unit embeddings, compared by
            angle) or `"euclidean"` (mean embeddings).
        samples_per_class: Embed at most this many images of each class (a seeded sample,
            drawn anew at every refresh from `seed` and the epoch) instead of every file,
            to bound the cost on large sets. None (default) embeds every file.
        batch_size: Images per batch when embedding. Defaults to the dataset's P x K.
        search: How the nearest classes are found: `"auto"` (default), `"exact"` or
            `"clustered"` (see `balanced_sampler.neighbors.nearest_classes`).
        num_probes: Clustered search: clusters searched per class.
        seed: Seed of the per-class samples and the clustered search. Defaults to the
            sampler's seed.
        sampler: The `BalancedBatchSampler` to give the tables to, if not the dataset's
            own (e.g. one that feeds a pipeline of your own): same labels, in the order of
            `dataset.file_paths`.
        backup_dir: A directory (any path `tf.io.gfile` writes) of its own for the resume
            backup, or None (default) for none.
        delete_backup: Delete the backup when `fit` ends normally. Defaults to True.
        verbose: 1 prints one line per refresh; 0 (default) is silent.

    Attributes:
        refreshes: A `Refresh` per table computed, oldest first.
        table: The last table computed (an int64 array (C, M) of labels), or None.

    Raises:
        TypeError: If `dataset` is not a balanced dataset or an argument has the wrong type.
        ValueError: If the sampler does not deal hard batches (exhaustive mode, or
            `categories`), `num_neighbors` is not below the number of classes, the
            sampler's labels are not the dataset's, or another argument has a wrong value.
    """

    def __init__(
        self,
        dataset: Any,
        *,
        num_neighbors: int | None = None,
        every: int = 1,
        warmup_epochs: int = 1,
        distance: str = "cosine",
        samples_per_class: int | None = None,
        batch_size: int | None = None,
        search: str = "auto",
        num_probes: int = DEFAULT_PROBES,
        seed: int | None = None,
        sampler: BalancedBatchSampler | None = None,
        backup_dir: str | os.PathLike[str] | None = None,
        delete_backup: bool = True,
        verbose: int = 0,
    ) -> None:
        super().__init__()
        if not is_balanced_dataset(dataset):
            raise TypeError(
                "`dataset` must be a dataset returned by `balanced_image_dataset_from_directory`"
                " or `balanced_image_dataset_from_paths` (it carries the `sampler` that gets "
                f"the tables and the `file_paths` to embed). Received: dataset={dataset!r}"
            )
        self.sampler = _check_sampler(dataset, sampler)
        num_classes = self.sampler.num_classes
        if num_classes < 2:
            raise ValueError(
                "Hard-class batches need at least 2 classes; the sampler's labels hold "
                f"{num_classes}."
            )
        if num_neighbors is None:
            num_neighbors = min(NEIGHBORS_PER_P * self.sampler.num_classes_per_batch,
                                num_classes - 1)
        self.num_neighbors = check_int("num_neighbors", num_neighbors, minimum=1)
        if self.num_neighbors > num_classes - 1:
            raise ValueError(
                "`num_neighbors` must be at most the number of classes minus one "
                f"({num_classes} classes, so at most {num_classes - 1}). "
                f"Received: num_neighbors={num_neighbors}"
            )
        self.every = check_int("every", every, minimum=1)
        self.warmup_epochs = check_int("warmup_epochs", warmup_epochs, minimum=0)
        self.distance = check_distance(distance)
        self.samples_per_class = (
            None if samples_per_class is None
            else check_int("samples_per_class", samples_per_class, minimum=1)
        )
        self.batch_size = (
            None if batch_size is None else check_int("batch_size", batch_size, minimum=1)
        )
        if not isinstance(search, str) or search not in SEARCHES:
            raise ValueError(f"`search` must be one of {SEARCHES}. Received: search={search!r}")
        self.search = search
        self.num_probes = check_int("num_probes", num_probes, minimum=1)
        self.seed = self.sampler.seed if seed is None else check_int("seed", seed, minimum=0)
        if backup_dir is not None and not isinstance(backup_dir, (str, os.PathLike)):
            raise TypeError(
                "`backup_dir` must be a path (str or os.PathLike) or None. "
                f"Received: backup_dir={backup_dir!r} of type {type(backup_dir).__name__}"
            )
        self.backup_dir = None if backup_dir is None else os.fspath(backup_dir)
        if not isinstance(delete_backup, bool):
            raise TypeError(f"`delete_backup` must be a bool. Received: {delete_backup!r}")
        self.delete_backup = delete_backup
        if verbose not in (0, 1):
            raise ValueError(f"`verbose` must be 0 or 1. Received: verbose={verbose!r}")
        self.verbose = verbose
        self.dataset = dataset
        self.refreshes: list[Refresh] = []
        self.table: np.ndarray[Any, np.dtype[np.int64]] | None = None
        self._records: list[NeighborRecord] = []
        self._table_epochs: list[int] = []  # sampler epochs for which a table was set
        self._fit_started = False
        self._warned_late = False
        # (Keras epoch, sampler epoch) at the start of `fit`: which sampler epoch a table
        # computed after a Keras epoch deals when the pipeline does not run ahead.
        self._fit_start = (0, 0)

    # ------------------------------------------------------------------ hooks

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Notes that the next epoch is the first of this `fit` call."""
        self._fit_started = False

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """At the first epoch of `fit`: restores the backup, or computes a missing table."""
        if self._fit_started:
            return
        self._fit_started = True
        restored = self._restore(epoch)
        state = self.sampler.state_dict()
        self._fit_start = (epoch, state["epoch"] + (1 if state["next_batch"] else 0))
        if restored:
            return
        if epoch >= self.warmup_epochs and self.sampler.class_neighbors_for() is None:
            self.refresh(after_epoch=epoch - 1)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Refreshes the table if this epoch is due; writes the backup."""
        last = self.params.get("epochs") if self.params else None
        stopping = last is not None and epoch + 1 >= last
        stopping = stopping or bool(getattr(self.model, "stop_training", False))
        if self.is_due(epoch) and not stopping:
            self.refresh(after_epoch=epoch)
        if self.backup_dir is not None:
            record = record_of(self.sampler, epoch + 1, self._table_epochs)
            self._records = [*self._records[-1:], record]
            write_records(self.backup_dir, self._records)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Deletes the backup (`delete_backup=True`): training ended normally."""
        if self.backup_dir is not None and self.delete_backup:
            delete_records(self.backup_dir)
            self._records = []

    # ------------------------------------------------------------------ work

    def is_due(self, epoch: int) -> bool:
        """Whether a table is computed at the end of Keras epoch `epoch` (from 0).

        Args:
            epoch: A Keras epoch.

        Returns:
            True for epochs `e` with `e + 1 >= warmup_epochs` and
            `(e + 1 - warmup_epochs) % every == 0` (the last epoch of `fit` aside).
        """
        done = epoch + 1 - self.warmup_epochs
        return done >= 0 and done % self.every == 0

    def samples(self, after_epoch: int) -> np.ndarray[Any, np.dtype[np.int64]] | None:
        """The files embedded for the table computed after `after_epoch`.

        Args:
            after_epoch: The Keras epoch whose weights embed them (-1 and up).

        Returns:
            None for every file (`samples_per_class=None`), else the sorted positions in
            `dataset.file_paths` of a seeded sample of at most `samples_per_class` readable
            files of each class, a pure function of `seed` and `after_epoch`.
        """
        if self.samples_per_class is None:
            return None
        labels = np.asarray(self.sampler.labels, dtype=np.int64)
        candidates = np.arange(len(labels), dtype=np.int64)
        skipped = getattr(self.dataset, "skipped_files", None) or {}
        if skipped:
            paths = self.dataset.file_paths
            readable = np.array([path not in skipped for path in paths], dtype=bool)
            candidates = candidates[readable]
        rng = np.random.default_rng([self.seed, after_epoch + 1])
        order = np.lexsort((rng.random(len(candidates)), labels[candidates]))
        ordered = labels[candidates][order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        chosen: np.ndarray[Any, np.dtype[np.int64]] = np.sort(
            candidates[order[rank < self.samples_per_class]]
        )
        return chosen

    def compute_table(self, after_epoch: int = -1) -> np.ndarray[Any, np.dtype[np.int64]]:
        """Embeds the images with the current model and returns their class-neighbour table.

        The sampler is not changed (see `refresh`).

        Args:
            after_epoch: The Keras epoch whose weights the model holds (it seeds the
                per-class sample).

        Returns:
            An int64 array (C, M): row i lists, nearest first, the labels whose centroids
            are nearest to the i-th distinct label's, as `class_neighbors` takes it.

        Raises:
            ValueError: If a class of the sampler has no readable image to embed.
        """
        return self._compute(after_epoch)[0]

    def _compute(self, after_epoch: int) -> tuple[np.ndarray[Any, np.dtype[np.int64]], int, float]:
        """`compute_table`, with the images embedded and the seconds spent embedding them."""
        start = time.perf_counter()
        embeddings, labels = embed_dataset(
            self.model, self.dataset, batch_size=self.batch_size,
            samples=self.samples(after_epoch),
        )
        seconds = time.perf_counter() - start
        expected = np.unique(np.asarray(self.sampler.labels))
        missing = np.setdiff1d(expected, labels)
        if len(missing):
            names = getattr(self.dataset, "class_names", None)
            shown = [
                names[label] if names is not None and 0 <= label < len(names) else str(label)
                for label in missing[:5].tolist()
            ]
            raise ValueError(
                f"{len(missing)} class(es) have no readable image to embed, so they have no "
                f"centroid: {', '.join(shown)}. The neighbour table needs every class."
            )
        table = class_neighbor_table(
            embeddings, labels, self.num_neighbors, distance=self.distance,
            search=self.search, num_probes=self.num_probes, seed=self.seed,
        )
        return table, len(labels), seconds

    def refresh(self, after_epoch: int) -> int:
        """Computes a table with the current model and gives it to the sampler.

        Args:
            after_epoch: The Keras epoch whose weights the model holds.

        Returns:
            The first sampler epoch dealt with the new table.
        """
        start = time.perf_counter()
        table, embedded, embed_seconds = self._compute(after_epoch)
        neighbor_seconds = time.perf_counter() - start - embed_seconds
        keras_start, sampler_start = self._fit_start
        upcoming = sampler_start + after_epoch + 1 - keras_start
        first = self.sampler.set_class_neighbors(table)
        self.table = table
        self.refreshes.append(
            Refresh(after_epoch, first, embedded, embed_seconds, neighbor_seconds)
        )
        self._table_epochs.append(first)
        if first > upcoming and not self._warned_late:
            self._warned_late = True
            warnings.warn(
                f"ClassNeighborRefresh: the input pipeline had already started the sampler's "
                f"epoch {upcoming} (counted from 0) when the table computed after epoch "
                f"{after_epoch} was ready, so it deals batches from epoch {first} on: one "
                "epoch later, and how far tf.data runs ahead decides which epoch. Pass the "
                "balanced dataset itself to `fit` "
                "(a new iterator per epoch, not `dataset.repeat()` with `steps_per_epoch`) "
                "for every table to deal the next epoch.",
                stacklevel=2,
            )
        if self.verbose:  # epochs counted from 1, as Keras prints them
            when = f"after epoch {after_epoch + 1}" if after_epoch >= 0 else "before epoch 1"
            print(
                f"ClassNeighborRefresh, {when}: {embedded} images embedded "
                f"({embed_seconds:.1f} s), {len(table)} classes x {self.num_neighbors} "
                f"neighbours ({neighbor_seconds:.2f} s); deals epoch {first + 1} on"
            )
        return first

    def _restore(self, epoch: int) -> bool:
        """Puts the sampler back where the backup says for Keras epoch `epoch`, if any."""
        if self.backup_dir is None:
            return False
        records = read_records(self.backup_dir)
        if not records:
            return False
        match = [record for record in records if record.epoch == epoch]
        if not match:
            held = ", ".join(str(record.epoch) for record in records)
            raise ValueError(
                f"The ClassNeighborRefresh backup in {self.backup_dir} is for starting "
                f"epoch(s) {held}, but `fit` starts epoch {epoch}. It was left by another "
                "run, or this callback came after `BackupAndRestore` in `callbacks` and the "
                "run was cut between their writes. Delete the directory to start afresh."
            )
        restore_record(self.sampler, match[0])
        self._table_epochs.extend(first for first, _ in match[0].tables)
        self._records = [record for record in records if record.epoch <= epoch]
        if self.verbose:
            print(
                f"ClassNeighborRefresh: restored the sampler at epoch "
                f"{match[0].sampler_state['epoch'] + 1} with its neighbour table(s)"
            )
        return True


def _check_sampler(dataset: Any, sampler: object) -> BalancedBatchSampler:
    """The sampler that gets the tables: `sampler`, or the dataset's own."""
    if sampler is None:
        sampler = dataset.sampler
    elif not isinstance(sampler, BalancedBatchSampler):
        raise TypeError(
            "`sampler` must be a balanced_sampler.BalancedBatchSampler or None. "
            f"Received: sampler of type {type(sampler).__name__}"
        )
    elif not np.array_equal(np.asarray(sampler.labels), np.asarray(dataset.sampler.labels)):
        raise ValueError(
            "`sampler` must be built on the dataset's labels (one per file of "
            f"`dataset.file_paths`, in that order): it has {len(sampler.labels)} labels, the "
            f"dataset {len(dataset.sampler.labels)}, and they differ."
        )
    assert isinstance(sampler, BalancedBatchSampler)
    if not sampler.safe_triplet:
        raise ValueError(
            "Hard-class batches need fixed P x K batches: build the dataset (or sampler) "
            "with safe_triplet=True. In exhaustive mode (safe_triplet=False) the layout that "
            "shows every image once per epoch decides which classes share a batch."
        )
    if sampler.categories is not None:
        raise ValueError(
            "This sampler deals hard batches by `categories`; a sampler takes either "
            "categories or class neighbours, so it cannot take refreshed neighbour tables."
        )
    return sampler
