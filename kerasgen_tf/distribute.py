"""Scaling out: `tf.distribute` input pipelines, checkpointable epochs, tf.data service.

Every function takes a dataset made by `balanced_image_dataset_from_directory`
or `balanced_image_dataset_from_paths` and builds the same pipeline (same
files, labels, image options, `on_bad_image` handling and seed) from
another plan source:

- `distributed_dataset_fn(dataset)` / `sharded_dataset(dataset, ctx)`: for
  `strategy.distribute_datasets_from_function`; each input pipeline plays
  its own shard of the global plan, every replica gets whole P x K batches
  and every replica the same number of steps.
- `checkpointable_dataset(dataset, epoch)`: one epoch from its materialised
  plan, so an iterator over it can be saved with `tf.train.Checkpoint`
  mid-epoch and restored in another process.
- `data_service_dataset(dataset, service, num_epochs=...)`: the decoding
  runs on tf.data service workers, every planned batch exactly once.

A bad image file does the same on every path (see `kerasgen_tf._bad_images`):
the decoding stage finds it inside the graph (on the worker, for tf.data
service) and the process that consumes the batches raises the error that
names it, or warns and records it with `on_bad_image="skip"`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import attrs
import tensorflow as tf

from balanced_sampler import BalancedBatchSampler
from balanced_sampler.checks import check_int
from kerasgen_tf._batches import plain
from kerasgen_tf._pipeline import Pipeline, attach, pipeline_of
from kerasgen_tf._plans import PlanTable, live_plans

__all__ = [
    "checkpointable_dataset",
    "data_service_dataset",
    "distributed_dataset_fn",
    "sharded_dataset",
]


def _source(dataset: object) -> tuple[Pipeline, BalancedBatchSampler]:
    """The pipeline and sampler of a dataset made by kerasgen_tf (not sharded already)."""
    pipeline = pipeline_of(dataset)
    if pipeline is None:
        raise TypeError(
            "`dataset` must be a dataset returned by `balanced_image_dataset_from_directory` "
            "or `balanced_image_dataset_from_paths` (one of the pair for subset='both'). "
            f"Received: dataset={dataset!r}"
        )
    sampler: BalancedBatchSampler = dataset.sampler  # type: ignore[attr-defined]
    if sampler.num_shards != 1:
        raise ValueError(
            "`dataset` must not be sharded already. "
            f"Received: a dataset whose sampler has num_shards={sampler.num_shards}"
        )
    return pipeline, sampler


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
    pipeline: Pipeline,
    base: BalancedBatchSampler,
    input_context: tf.distribute.InputContext | None,
) -> tuple[BalancedBatchSampler, int]:
    """Returns the sampler of one pipeline and the number of batches it plays per epoch.

    The global plan is cut into `num_replicas_in_sync` equal parts: pipeline
    `i` takes global batches `i, i + num_pipelines, ...` (its sampler is shard
    `i` of `num_pipelines`), truncated to `(global_batches // replicas) *
    replicas_per_pipeline` batches, so the last `global_batches % replicas`
    batches of the epoch are left out. Its local replicas then receive those
    batches in turn, one whole batch each per step.
    """
    if input_context is None:
        pipelines, pipeline_id, local_replicas = 1, 0, 1
    else:
        pipelines, pipeline_id, local_replicas = _check_input_context(input_context)
    replicas = pipelines * local_replicas
    if pipelines > 1 and base.shuffle and not pipeline.seed_given:
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
        sampler = attrs.evolve(
            base,
            samples_per_epoch=samples_per_epoch,
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
        playing the next epoch. It carries `class_names`, `file_paths`,
        `sampler` (this pipeline's shard) and `skipped_files` (shared with
        `dataset`).

    Raises:
        TypeError: If `dataset` was not made by kerasgen_tf or
            `input_context` is not a `tf.distribute.InputContext`.
        ValueError: If several pipelines would plan with different seeds,
            or if an epoch has fewer batches than replicas.
    """
    pipeline, base = _source(dataset)
    sampler, length = _sharded_sampler(pipeline, base, input_context)
    out = pipeline.build(live_plans(sampler, length))
    return attach(out, pipeline, sampler, dataset.class_names, dataset.file_paths)


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
    _source(dataset)

    def dataset_fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        return sharded_dataset(dataset, input_context)

    return dataset_fn


def _checkpointable_options() -> tf.data.Options:
    options = tf.data.Options()
    # Checkpoints hold positions only (no decoded images): every stage can
    # recompute its elements from the plan.
    options.experimental_symbolic_checkpoint = True
    # The report stage calls Python (`tf.py_function`) only to warn about or
    # record a bad file; that state is not part of the input position.
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    return options


def checkpointable_dataset(
    dataset: tf.data.Dataset,
    epoch: int,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Builds one epoch of `dataset` from its materialised plan, checkpointable.

    The datasets of the builders draw each epoch from the sampler through
    `tf.data.Dataset.from_generator`, which `tf.train.Checkpoint` cannot
    save. This one holds the plan of `epoch` as constant tensors, so an
    iterator over it can be saved mid-epoch and restored in a fresh
    process, where it continues with exactly the batches the original
    would have given (the plan is a pure function of the seed and the
    epoch, so rebuild it with the same seed):

    ```python
    ds = checkpointable_dataset(train_ds, epoch)
    iterator = iter(ds)
    checkpoint = tf.train.Checkpoint(model=model, iterator=iterator, epoch=epoch_var)
    ```

    Both modes work (exhaustive batches of varying sizes too); in fixed mode
    the batch dimension is static. Checkpoints hold only positions, not
    prefetched images (`experimental_symbolic_checkpoint`). Bad image files
    are handled as in `dataset` (`on_bad_image`). Use it when you must
    resume mid-epoch; otherwise the builders' datasets are simpler (each
    pass is the next epoch, nothing to rebuild) and resuming at an epoch
    boundary only needs `dataset.sampler.set_epoch(epoch)`.

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
    epoch = check_int("epoch", epoch, minimum=0)
    pipeline, base = _source(dataset)
    sampler, length = _sharded_sampler(pipeline, base, input_context)
    plans = PlanTable.from_sampler(sampler, epoch, 1, length).dataset()
    out = pipeline.build(plans).with_options(_checkpointable_options())
    return attach(out, pipeline, sampler, dataset.class_names, dataset.file_paths)


def _check_service(service: object) -> str:
    if not isinstance(service, str) or not service:
        raise TypeError(
            "`service` must be the address of a tf.data service dispatcher, e.g. "
            '"grpc://dispatcher-host:5050" (`DispatchServer(...).target`). '
            f"Received: service={service!r}"
        )
    return service


def data_service_dataset(
    dataset: tf.data.Dataset,
    service: str,
    *,
    num_epochs: int,
    first_epoch: int = 0,
    compression: str | None = "AUTO",
) -> tf.data.Dataset:
    """Decodes `dataset`'s batches on tf.data service workers.

    ```python
    # On any machines: a dispatcher and CPU workers (see the README, "Scaling out").
    train_ds = balanced_image_dataset_from_directory("gs://bucket/images", 8, 4, ...)
    remote = data_service_dataset(train_ds, "grpc://dispatcher:5050", num_epochs=10)
    model.fit(remote, epochs=10, steps_per_epoch=len(train_ds))
    ```

    The plans of epochs `first_epoch, ..., first_epoch + num_epochs - 1` are
    computed here (`dataset.sampler.plan(e)`) and each epoch is registered
    with the dispatcher as its own dataset: the plan as a constant, then
    the decode of `dataset` (read, decode, resize; bad files found, and
    replaced with `on_bad_image="skip"`). The workers share each epoch's
    batches dynamically (`ShardingPolicy.DYNAMIC`): every planned batch is
    decoded by exactly one worker and delivered exactly once, whole (P x K
    in fixed mode).

    Order: epochs are delivered one after the other, each complete (every
    batch of epoch `e` comes before any batch of epoch `e + 1`, so each
    Keras epoch of `fit(..., steps_per_epoch=len(dataset))` plays exactly
    one planned epoch). Inside an epoch, batches arrive in the order the
    workers finish them, which may differ from `plan(e)` when there are
    several workers; with one worker it is `plan(e)`'s order.

    Bad files do what they do in `dataset`: the error that names the file
    (`on_bad_image="error"`), or the warning and `skipped_files` entry
    (`"skip"`), is raised or recorded here, in the process that iterates,
    from what the worker found.

    Memory: each registered epoch holds the file paths (their length in
    bytes), 4 bytes of label per file and the epoch's plan (8 bytes per
    slot of the largest batch, in every batch: `PlanTable.nbytes`); the
    dispatcher keeps every registered epoch until it stops.

    Args:
        dataset: A dataset returned by `balanced_image_dataset_from_directory`
            or `balanced_image_dataset_from_paths` (files must be readable
            by the workers at the same paths, e.g. `gs://` or a shared disk).
        service: The dispatcher's address, e.g. `"grpc://host:5050"`.
        num_epochs: How many epochs to play, >= 1.
        first_epoch: The first epoch, >= 0 (to resume at an epoch boundary).
        compression: How workers compress batches for the network, as
            `tf.data.experimental.service.register_dataset` takes it:
            `"AUTO"` (default) or None (no compression: less CPU, for fast
            networks or workers on the same machine).

    Returns:
        A `tf.data.Dataset` of `num_epochs * len(dataset)` batches, as
        `dataset` yields them; every new iterator plays the same epochs.
        It carries `class_names`, `file_paths`, `sampler` and
        `skipped_files` (shared with `dataset`).

    Raises:
        TypeError: If `dataset` was not made by kerasgen_tf, or `service`
            is not an address.
        ValueError: If `num_epochs` or `first_epoch` is out of range, or
            `dataset` has a decoded cache (`cache=`), which workers cannot
            use.
    """
    service = _check_service(service)
    num_epochs = check_int("num_epochs", num_epochs, minimum=1)
    first_epoch = check_int("first_epoch", first_epoch, minimum=0)
    if compression not in ("AUTO", None):
        raise ValueError(
            f'`compression` must be "AUTO" or None. Received: compression={compression!r}'
        )
    pipeline, sampler = _source(dataset)
    if pipeline.decoded_cache is not None:
        raise ValueError(
            "`dataset` reads through a decoded cache (built with `cache=`), which lives in "
            "this process: tf.data service workers decode in processes of their own, which "
            "can neither read nor fill it. Build the dataset without `cache` for "
            "data_service_dataset (the workers then decode every epoch), or keep the cache "
            f"and decode in this process. Received: dataset.decoded_cache={pipeline.decoded_cache}"
        )
    service_api = tf.data.experimental.service
    dataset_ids = []
    for epoch in range(first_epoch, first_epoch + num_epochs):
        plans = PlanTable.from_sampler(sampler, epoch, 1).dataset()
        decoded = pipeline.decoded(plans).prefetch(tf.data.AUTOTUNE)
        dataset_ids.append(
            service_api.register_dataset(service, decoded, compression=compression)
        )
    element_spec = decoded.element_spec

    def read(dataset_id: tf.Tensor) -> tf.data.Dataset:
        # One job per epoch, read to its known length: stopping there spares the
        # wait (about a second) for the workers to report that the job is done.
        epoch = service_api.from_dataset_id(
            processing_mode=service_api.ShardingPolicy.DYNAMIC,
            service=service,
            dataset_id=dataset_id,
            element_spec=element_spec,
        )
        return epoch.take(len(sampler))

    epochs = tf.data.Dataset.from_tensor_slices(tf.stack(dataset_ids)).flat_map(plain(read))
    out = pipeline.finished(epochs)
    out = out.apply(tf.data.experimental.assert_cardinality(num_epochs * len(sampler)))
    return attach(out, pipeline, sampler, dataset.class_names, dataset.file_paths)
