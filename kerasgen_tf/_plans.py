"""Plan sources: datasets of planned batches, one 1-D int64 index vector per element.

Two sources feed the same decoding pipeline (`kerasgen_tf._pipeline`):

- `live_plans(sampler)`: the sampler itself, through
  `tf.data.Dataset.from_generator`. Every new iterator plays the sampler's
  next epoch (`sampler.iter_arrays()`), as `model.fit` expects of a dataset
  it iterates once per epoch. Python runs it, so it can be neither saved by
  `tf.train.Checkpoint` nor sent to tf.data service workers.
- `PlanTable`: a range of epochs materialised as constant tensors (the flat
  index vector and each batch's bounds). Every iterator plays the same
  batches; the dataset is pure TensorFlow (`from_tensor_slices` + `map`),
  so its iterators are checkpointable position by position
  (`experimental_symbolic_checkpoint`), its graph is serialisable, and
  tf.data service can split it batch by batch among workers. It holds
  8 bytes per planned sample and 16 per batch (`PlanTable.nbytes`).

Both give the same batches for the same epoch: `sampler.plan(epoch)`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
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


def live_plans(sampler: BalancedBatchSampler, length: int | None = None) -> tf.data.Dataset:
    """The sampler's epochs, one per iterator (each pass is the next epoch).

    Args:
        sampler: The sampler to play.
        length: Batches per epoch (the first `length` of the plan), default
            `len(sampler)`.

    Returns:
        A dataset of `length` int64 index vectors per iterator, with that
        cardinality declared.
    """
    batches = len(sampler) if length is None else length

    def epoch() -> Iterator[np.ndarray[Any, Any]]:
        # Called by TensorFlow once per iterator, at its first batch.
        return itertools.islice(sampler.iter_arrays(), batches)

    plans = tf.data.Dataset.from_generator(
        epoch, output_signature=tf.TensorSpec((_batch_size(sampler),), tf.int64)
    )
    return plans.apply(tf.data.experimental.assert_cardinality(batches))


@attrs.frozen(eq=False)
class PlanTable:
    """Planned batches of a range of epochs, materialised (see the module doc)."""

    indices: np.ndarray[Any, np.dtype[np.int64]]
    """Every batch's sample indices, one after the other."""
    ends: np.ndarray[Any, np.dtype[np.int64]]
    """Where each batch ends in `indices`."""
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
        sizes = np.fromiter((len(b) for b in batches), np.int64, len(batches))
        return cls(
            indices=np.concatenate(batches).astype(np.int64, copy=False),
            ends=np.cumsum(sizes),
            batch_size=_batch_size(sampler),
        )

    def __len__(self) -> int:
        """The number of batches."""
        return len(self.ends)

    @property
    def nbytes(self) -> int:
        """The memory the table holds (its constant tensors hold the same)."""
        return int(self.indices.nbytes + 2 * self.ends.nbytes)

    def dataset(self) -> tf.data.Dataset:
        """The batches as a dataset of int64 index vectors, the same for every iterator."""
        flat = tf.constant(self.indices)
        if self.batch_size is not None:
            return tf.data.Dataset.from_tensor_slices(tf.reshape(flat, (-1, self.batch_size)))
        starts = self.ends - np.diff(self.ends, prepend=0)
        bounds = tf.data.Dataset.from_tensor_slices((starts, self.ends))
        return bounds.map(plain(lambda start, end: flat[start:end]))
