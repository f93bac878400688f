"""Scaling out: `tf.distribute` input pipelines and checkpointable epochs.

Both functions take a dataset made by `balanced_image_dataset_from_directory`
or `balanced_image_dataset_from_paths` and rebuild its pipeline (same files,
labels, images and sampling options, same seed):

- `distributed_dataset_fn(dataset)` returns the function to give to
  `strategy.distribute_datasets_from_function`: each input pipeline plays
  its own shard of the global plan, every replica gets whole P x K batches
  and every replica the same number of steps.
- `checkpointable_dataset(dataset, epoch)` plays one epoch from its
  materialised plan (`from_tensor_slices`), so an iterator over it can be
  saved with `tf.train.Checkpoint` mid-epoch and restored in another
  process. The datasets of the builders use `from_generator`, which cannot
  be checkpointed.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from balanced_sampler import BalancedBatchSampler
from kerasgen_tf._pipeline import load_batches

__all__ = ["checkpointable_dataset", "distributed_dataset_fn", "sharded_dataset"]


def _pipeline_of(dataset: object) -> dict[str, Any]:
    spec = getattr(dataset, "_kerasgen_pipeline", None)
    sampler = getattr(dataset, "sampler", None)
    if not isinstance(spec, dict) or not isinstance(sampler, BalancedBatchSampler):
        raise TypeError(
            "`dataset` must be a dataset returned by `balanced_image_dataset_from_directory` "
            "or `balanced_image_dataset_from_paths` (one of the pair for subset='both'). "
            f"Received: dataset={dataset!r}"
        )
    if sampler.num_shards != 1:
        raise ValueError(
            "`dataset` must not be sharded already. "
            f"Received: a dataset whose sampler has num_shards={sampler.num_shards}"
        )
    return spec


def _check_input_context(input_context: object) -> tuple[int, int, int]:
    """Returns (num_input_pipelines, input_pipeline_id, replicas per pipeline)."""
    if not isinstance(input_context, tf.distribute.InputContext):
        raise TypeError(
            "`input_context` must be a `tf.distribute.InputContext` (the argument "
            "`strategy.distribute_datasets_from_function` passes to the function). "
            f"Received: input_context={input_context!r}"
        )
    pipelines = input_context.num_input_pipelines
    replicas = input_context.num_replicas_in_sync
    if replicas % pipelines:
        raise ValueError(
            "The number of replicas must be a multiple of the number of input pipelines "
            "so that every pipeline feeds as many replicas. Received: "
            f"num_replicas_in_sync={replicas}, num_input_pipelines={pipelines}"
        )
    return pipelines, input_context.input_pipeline_id, replicas // pipelines


def _sharded_sampler(
    dataset: Any, spec: dict[str, Any], input_context: tf.distribute.InputContext | None
) -> tuple[BalancedBatchSampler, int]:
    """Returns the sampler of one pipeline and the number of batches it plays per epoch.

    The global plan is cut into `num_replicas_in_sync` equal parts: pipeline
    `i` takes global batches `i, i + num_pipelines, ...` (its sampler is shard
    `i` of `num_pipelines`), truncated to `(global_batches // replicas) *
    replicas_per_pipeline` batches, so the last `global_batches % replicas`
    batches of the epoch are left out. Its local replicas then receive those
    batches in turn, one whole batch each per step.
    """
    base: BalancedBatchSampler = dataset.sampler
    if input_context is None:
        pipelines, pipeline_id, local_replicas = 1, 0, 1
    else:
        pipelines, pipeline_id, local_replicas = _check_input_context(input_context)
    replicas = pipelines * local_replicas
    if pipelines > 1 and base.shuffle and not spec["seeded"]:
        raise ValueError(
            "With several input pipelines (workers), every worker must plan the same "
            "epochs: build the dataset with an explicit integer `seed`. Received: seed=None "
            f"(this worker drew seed={base.seed}) and num_input_pipelines={pipelines}"
        )
    samples_per_epoch = base.samples_per_epoch
    if base.safe_triplet and samples_per_epoch is None:
        # Round the default epoch up to a multiple of P * K * replicas: no batch is left out.
        batches = -(-base.global_batches // replicas) * replicas
        samples_per_epoch = batches * base.batch_size
    with warnings.catch_warnings():
        # The dataset's own sampler has already warned about dropped classes.
        warnings.simplefilter("ignore", UserWarning)
        sampler = BalancedBatchSampler(
            base.labels,
            base.num_classes_per_batch,
            base.num_images_per_class,
            safe_triplet=base.safe_triplet,
            samples_per_epoch=samples_per_epoch,
            class_weights=base.class_weights,
            small_classes=base.small_classes,
            shuffle=base.shuffle,
            seed=base.seed,
            num_shards=pipelines,
            shard_index=pipeline_id,
        )
    steps = sampler.global_batches // replicas
    if steps == 0:
        raise ValueError(
            f"An epoch has {sampler.global_batches} batch(es), fewer than the "
            f"{replicas} replicas: a replica would get no batch. Use fewer replicas or more "
            "samples per epoch."
        )
    sampler.set_epoch(base.epoch)
    return sampler, steps * local_replicas


def _build(
    dataset: Any, spec: dict[str, Any], indices: tf.data.Dataset, sampler: BalancedBatchSampler
) -> tf.data.Dataset:
    batch_size = sampler.batch_size if sampler.safe_triplet else None
    out = load_batches(
        indices,
        dataset.file_paths,
        spec["labels"],
        batch_size,
        spec["image"],
        spec["label_mode"],
        spec["num_classes"],
    )
    return out


def _attach(out: tf.data.Dataset, dataset: Any, sampler: BalancedBatchSampler) -> tf.data.Dataset:
    out.class_names = dataset.class_names
    out.file_paths = dataset.file_paths
    out.sampler = sampler
    return out


def sharded_dataset(
    dataset: tf.data.Dataset, input_context: tf.distribute.InputContext
) -> tf.data.Dataset:
    """Builds the dataset of one input pipeline of a `tf.distribute` strategy.

    See `distributed_dataset_fn`, which returns `lambda ctx: sharded_dataset(dataset, ctx)`.

    Args:
        dataset: A dataset returned by `balanced_image_dataset_from_directory`
            or `balanced_image_dataset_from_paths`.
        input_context: The `tf.distribute.InputContext` of this pipeline.

    Returns:
        A `tf.data.Dataset` of whole P x K batches (per-replica batches),
        `steps * replicas_per_pipeline` of them per epoch, each new iterator
        playing the next epoch.

    Raises:
        TypeError: If `dataset` was not made by kerasgen_tf or
            `input_context` is not a `tf.distribute.InputContext`.
        ValueError: If several pipelines would plan with different seeds,
            or if an epoch has fewer batches than replicas.
    """
    spec = _pipeline_of(dataset)
    sampler, length = _sharded_sampler(dataset, spec, input_context)
    batch_size = sampler.batch_size if sampler.safe_triplet else None

    def epoch_batches() -> Any:
        # Called once per iterator: the sampler's next epoch, truncated to `length`.
        for batch in itertools.islice(sampler.iter_arrays(), length):
            yield np.asarray(batch, dtype=np.int64)

    indices = tf.data.Dataset.from_generator(
        epoch_batches, output_signature=tf.TensorSpec((batch_size,), tf.int64)
    )
    indices = indices.apply(tf.data.experimental.assert_cardinality(length))
    return _attach(_build(dataset, spec, indices, sampler), dataset, sampler)


def distributed_dataset_fn(
    dataset: tf.data.Dataset,
) -> Callable[[tf.distribute.InputContext], tf.data.Dataset]:
    """Returns a dataset function for `strategy.distribute_datasets_from_function`.

    ```python
    train_ds = balanced_image_dataset_from_directory(
        "data/", 8, 4, safe_triplet=True, seed=1337, image_size=(224, 224))
    strategy = tf.distribute.MirroredStrategy()
    dist_ds = strategy.distribute_datasets_from_function(
        distributed_dataset_fn(train_ds))
    ```

    Each input pipeline (one per worker) rebuilds `dataset`'s pipeline with
    its own shard of the same global plan (from
    `input_context.input_pipeline_id` / `num_input_pipelines`), so the
    workers' batches are disjoint. Every element is one whole planned batch:
    the per-replica batch is P x K (the global batch is P x K x
    `num_replicas_in_sync`), so every replica sees K images of each of its
    P classes, as a triplet loss computed per replica needs. Every replica
    gets the same number of batches per epoch: `global_batches //
    num_replicas_in_sync`; the last `global_batches % num_replicas_in_sync`
    batches of the epoch are left out (in exhaustive mode those are the
    smallest ones, and different samples each epoch). In fixed mode
    (`safe_triplet=True`) without `samples_per_epoch` the epoch length is
    rounded up to a multiple of P x K x `num_replicas_in_sync` instead, so
    nothing is left out.

    With several workers, build `dataset` with the same explicit `seed` on
    every worker. Each pass over a pipeline plays the next epoch, starting
    from `dataset.sampler.epoch`. Keras `fit` accepts the distributed
    dataset under `MirroredStrategy`; under `MultiWorkerMirroredStrategy`
    Keras 3.15 `fit` fails with any dataset, so use a custom loop with
    `strategy.run`.

    Args:
        dataset: A dataset returned by `balanced_image_dataset_from_directory`
            or `balanced_image_dataset_from_paths`.

    Returns:
        A function of a `tf.distribute.InputContext` that returns that
        pipeline's `tf.data.Dataset` of per-replica batches (see
        `sharded_dataset`).

    Raises:
        TypeError: If `dataset` was not made by kerasgen_tf.
    """
    _pipeline_of(dataset)

    def dataset_fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        return sharded_dataset(dataset, input_context)

    return dataset_fn


def checkpointable_dataset(
    dataset: tf.data.Dataset,
    epoch: int,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Builds one epoch of `dataset` from its materialised plan, checkpointable.

    The datasets of the builders draw each epoch from the sampler through
    `tf.data.Dataset.from_generator`, which `tf.train.Checkpoint` cannot
    save. This one holds the plan of `epoch` as constant tensors
    (`from_tensor_slices` of the batch boundaries over the flat index
    vector), so an iterator over it can be saved mid-epoch and restored in a
    fresh process, where it continues with exactly the batches the original
    would have given (the plan is a pure function of the seed and the epoch,
    so rebuild it with the same seed):

    ```python
    ds = checkpointable_dataset(train_ds, epoch)
    iterator = iter(ds)
    checkpoint = tf.train.Checkpoint(model=model, iterator=iterator, epoch=epoch_var)
    ```

    Both modes work (exhaustive batches of varying sizes too); in fixed mode
    the batch dimension is static. Checkpoints hold only positions, not
    prefetched images (`experimental_symbolic_checkpoint`). Use it when you
    must resume mid-epoch; otherwise the builders' datasets are simpler
    (each pass is the next epoch, nothing to rebuild) and resuming at an
    epoch boundary only needs `dataset.sampler.set_epoch(epoch)`.

    Args:
        dataset: A dataset returned by `balanced_image_dataset_from_directory`
            or `balanced_image_dataset_from_paths`.
        epoch: The epoch to play, an int >= 0.
        input_context: Optional `tf.distribute.InputContext`: play this
            input pipeline's shard of the epoch, as `distributed_dataset_fn`
            does.

    Returns:
        A `tf.data.Dataset` of that epoch's batches, `images` or
        `(images, labels)` as `dataset` yields them. Every iterator plays
        the same epoch.

    Raises:
        TypeError: If `dataset` was not made by kerasgen_tf, or
            `input_context` is not a `tf.distribute.InputContext`.
        ValueError: If `epoch` is not an integer >= 0, or as
            `distributed_dataset_fn` when sharding.
    """
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)):
        raise TypeError(f"`epoch` must be an integer >= 0. Received: epoch={epoch!r}")
    if epoch < 0:
        raise ValueError(f"`epoch` must be an integer >= 0. Received: epoch={epoch!r}")
    spec = _pipeline_of(dataset)
    sampler, length = _sharded_sampler(dataset, spec, input_context)
    batches = sampler.plan(int(epoch))[:length]
    sizes = np.fromiter((len(b) for b in batches), np.int64, len(batches))
    ends = np.cumsum(sizes)
    flat = tf.constant(np.concatenate(batches).astype(np.int64))
    batch_size = sampler.batch_size if sampler.safe_triplet else None

    def cut(start: tf.Tensor, end: tf.Tensor) -> tf.Tensor:
        index = flat[start:end]
        index.set_shape((batch_size,))
        return index

    bounds = tf.data.Dataset.from_tensor_slices((ends - sizes, ends))
    indices = bounds.map(cut)
    out = _build(dataset, spec, indices, sampler)
    options = tf.data.Options()
    options.experimental_symbolic_checkpoint = True
    return _attach(out.with_options(options), dataset, sampler)
