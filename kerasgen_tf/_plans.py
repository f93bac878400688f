"""Plan sources: datasets of planned batches, one `(row, size)` per element.

`row` is a 1-D int64 vector of sample indices padded with zeros (of static
length P * K in fixed mode, where no batch is padded), `size` how many of
them the batch holds: `row[:size]` is the batch. (Padded rows come out of
`unbatch` / `from_tensor_slices` with no function to trace, where slicing
batches out of a flat vector would need one per source.)

Two sources feed the same decoding pipeline (`kerasgen_tf._pipeline`):

- `live_plans(sampler)`: the sampler itself. Every new iterator plays the
  sampler's next epoch (`sampler.iter_arrays()`, one `tf.py_function` call
  per iterator that hands over the epoch's whole plan), as `model.fit`
  expects of a dataset it iterates once per epoch. Python runs it, so it
  can be neither saved by `tf.train.Checkpoint` nor sent to tf.data
  service workers.
- `PlanTable`: a range of epochs materialised as constant tensors (the
  padded rows and the sizes). Every iterator plays the same batches; the
  dataset is pure TensorFlow (`from_tensor_slices`), so its iterators are
  checkpointable position by position (`experimental_symbolic_checkpoint`),
  its graph is serialisable, and tf.data service can split it batch by
  batch among workers. It holds 8 bytes per slot of a padded row (rows
  are as long as the largest batch, P * K usually) and 8 per batch
  (`PlanTable.nbytes`).

Both give the same batches for the same epoch: `sampler.plan(epoch)`.
"""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import numpy as np
import tensorflow as tf

from balanced_sampler import BalancedBatchSampler
from kerasgen_tf._batches import plain

__all__ = ["PlanTable", "live_plans"]


def _batch_size(sampler: BalancedBatchSampler) -> int | None:
    """The static batch dimension: P * K in fixed mode, None when sizes vary."""
    return sampler.batch_size if sampler.safe_triplet else None


def _padded(batches: list[np.ndarray[Any, Any]]) -> tuple[np.ndarray[Any, Any], ...]:
    """The batches as one `[n, largest]` table (padded with zeros) and their sizes."""
    sizes = np.fromiter((len(b) for b in batches), np.int64, len(batches))
    table = np.zeros((len(batches), int(sizes.max())), np.int64)
    rows = np.repeat(np.arange(len(batches)), sizes)
    columns = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    table[rows, columns] = np.concatenate(batches)
    return table, sizes


def live_plans(sampler: BalancedBatchSampler, length: int | None = None) -> tf.data.Dataset:
    """The sampler's epochs, one per iterator (each pass is the next epoch).

    Python runs once per iterator, when its first batch is asked for: it
    claims the sampler's next epoch (`sampler.iter_arrays()`) and hands over
    the whole plan as one tensor. The dataset plays whole epochs (its
    cardinality is declared): a sampler resumed mid-epoch with
    `load_state_dict` raises, naming `checkpointable_dataset`, the way to
    resume mid-epoch. No Python call is pending while batches are decoded, so an
    iterator dropped mid-epoch (or alive when the program exits) never
    waits for one.

    Args:
        sampler: The sampler to play.
        length: Batches per epoch (the first `length` of the plan), default
            `len(sampler)`.

    Returns:
        A dataset of `length` `(row, size)` per iterator, with that
        cardinality declared.
    """
    batches = len(sampler) if length is None else length
    batch_size = _batch_size(sampler)

    def next_epoch(_: Any) -> tuple[Any, ...]:
        epoch = sampler.epoch
        planned = list(itertools.islice(sampler.iter_arrays(), batches))
        if len(planned) == batches:
            return (*_padded(planned), "")
        # No quotes: TensorFlow escapes them in the message it raises.
        message = (
            f"The sampler plays {len(planned)} batches of epoch {epoch} where the dataset has "
            f"{batches} per epoch: it resumes mid-epoch (sampler.load_state_dict). A "
            "tf.data dataset plays whole epochs; to resume mid-epoch, save and restore an "
            "iterator of kerasgen_tf.distribute.checkpointable_dataset(dataset, epoch)."
        )
        return np.zeros((0, 1), np.int64), np.zeros(0, np.int64), message

    def plan(token: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        table, sizes, error = tf.py_function(next_epoch, [token], (tf.int64, tf.int64, tf.string))
        with tf.control_dependencies([tf.debugging.Assert(tf.equal(error, ""), [error])]):
            table = tf.identity(table)
        table.set_shape((None, batch_size))
        sizes.set_shape((None,))
        return table, sizes

    plans = tf.data.Dataset.from_tensors(tf.constant(0)).map(plain(plan)).unbatch()
    return plans.apply(tf.data.experimental.assert_cardinality(batches))


@attrs.frozen(eq=False)
class PlanTable:
    """Planned batches of a range of epochs, materialised (see the module doc)."""

    rows: np.ndarray[Any, np.dtype[np.int64]]
    """`[batches, largest batch]`: each batch's sample indices, padded with zeros."""
    sizes: np.ndarray[Any, np.dtype[np.int64]]
    """The size of each batch."""
    batch_size: int | None
    """The static batch dimension, None when batch sizes vary."""

    @classmethod
    def from_sampler(
        cls,
        sampler: BalancedBatchSampler,
        first_epoch: int,
        num_epochs: int,
        length: int | None = None,
    ) -> PlanTable:
        """Plans epochs `first_epoch, ..., first_epoch + num_epochs - 1` of `sampler`.

        Args:
            sampler: The sampler whose plans to take (`sampler.plan(epoch)`).
            first_epoch: The first epoch, >= 0.
            num_epochs: How many epochs, >= 1.
            length: Batches kept per epoch (the first `length`), default all.

        Returns:
            The `PlanTable`.
        """
        batches = [
            batch
            for epoch in range(first_epoch, first_epoch + num_epochs)
            for batch in sampler.plan(epoch)[:length]
        ]
        rows, sizes = _padded(batches)
        return cls(rows=rows, sizes=sizes, batch_size=_batch_size(sampler))

    @classmethod
    def from_batches(cls, batches: list[np.ndarray[Any, Any]]) -> PlanTable:
        """Materialises any list of batches (1-D int64 index arrays, at least one).

        Args:
            batches: The batches, in the order to play them.

        Returns:
            The `PlanTable`, with a static batch dimension if all batches
            have one size.
        """
        rows, sizes = _padded(batches)
        same = bool(np.all(sizes == sizes[0]))
        return cls(rows=rows, sizes=sizes, batch_size=int(sizes[0]) if same else None)

    def __len__(self) -> int:
        """The number of batches."""
        return len(self.sizes)

    @property
    def nbytes(self) -> int:
        """The memory the table holds (its constant tensors hold the same).

        8 bytes per sample in fixed mode; in exhaustive mode each batch takes
        as much as the largest (usually P * K: the last batches are smaller).
        """
        return int(self.rows.nbytes + self.sizes.nbytes)

    def dataset(self) -> tf.data.Dataset:
        """The batches as a dataset of `(row, size)`, the same for every iterator."""
        return tf.data.Dataset.from_tensor_slices((self.rows, self.sizes))
