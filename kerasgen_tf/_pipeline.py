"""The `tf.data` pipeline that plays a `BalancedBatchSampler`'s plans.

```
from_generator(one int64 index array per batch)   # sampler.iter_arrays(): the next epoch
  -> assert_cardinality(len(sampler))
  -> map(gather paths + labels, decode + resize every image of the batch,
         num_parallel_calls=AUTOTUNE, deterministic=True)
  -> prefetch(AUTOTUNE)
```

The batch is never taken apart: one element of the pipeline is one planned
batch, whatever its size, so batches come out exactly as planned (in
exhaustive mode their sizes vary) with no re-batching step to keep in step.
Inside a batch the images are decoded by `tf.map_fn` with parallel
iterations; several batches are decoded at once by the parallel map.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from kerasgen_tf._args import ImageOptions
from kerasgen_tf._decode import make_image_loader, needs_format_check

__all__ = ["build_dataset", "load_batches"]

# Images of one batch decoded concurrently inside `tf.map_fn`.
_PARALLEL_IMAGES = 16


def _encode_labels(labels: tf.Tensor, label_mode: str, num_classes: int) -> tf.Tensor:
    """Encodes int32 labels as Keras does for `label_mode`."""
    if label_mode == "categorical":
        return tf.one_hot(labels, num_classes)
    if label_mode == "binary":
        return tf.expand_dims(tf.cast(labels, tf.float32), axis=-1)
    return labels


def build_dataset(
    file_paths: Sequence[str],
    labels: np.ndarray[Any, Any],
    sampler: Any,
    image_options: ImageOptions,
    label_mode: str | None,
    num_classes: int,
    on_bad_image: str | None = "error",
    skipped: dict[str, str] | None = None,
) -> tf.data.Dataset:
    """Builds the dataset of decoded batches that `sampler` plans.

    Every new iterator over the dataset calls `sampler.iter_arrays()` when
    its first batch is requested, so each pass is the sampler's next epoch.

    Args:
        file_paths: One path per sample; the sampler's indices point here.
        labels: One integer label per sample (the values yielded for
            `label_mode="int"`).
        sampler: A `balanced_sampler.BalancedBatchSampler` over `labels`.
        image_options: How to decode and resize the images.
        label_mode: "int", "categorical", "binary" or None (images only).
        num_classes: The depth of the one-hot labels for "categorical".
        on_bad_image: What a file that cannot be loaded does: "error"
            (raise, naming the file and what is wrong), "skip" (replace it
            by another image of its class, warn once, record it in
            `skipped`), or None (TensorFlow's own error, which names no
            file; see `kerasgen_tf._bad_images`).
        skipped: Filled with `{path: reason}` for "skip".

    Returns:
        A `tf.data.Dataset` of `len(sampler)` batches per epoch: `images` or
        `(images, labels)`. In fixed mode (`sampler.safe_triplet`) the
        batch dimension is static (P * K).
    """
    if on_bad_image is not None:
        from kerasgen_tf._bad_images import build_guarded_dataset

        return build_guarded_dataset(
            sampler,
            file_paths,
            labels,
            image_options,
            label_mode,
            num_classes,
            on_bad_image,
            {} if skipped is None else skipped,
        )
    batch_size = sampler.batch_size if sampler.safe_triplet else None

    def epoch_batches() -> Iterator[np.ndarray[Any, Any]]:
        # Called by TensorFlow once per iterator, at its first batch.
        for batch in sampler.iter_arrays():
            yield np.asarray(batch, dtype=np.int64)

    indices = tf.data.Dataset.from_generator(
        epoch_batches, output_signature=tf.TensorSpec((batch_size,), tf.int64)
    )
    indices = indices.apply(tf.data.experimental.assert_cardinality(len(sampler)))
    return load_batches(
        indices, file_paths, labels, batch_size, image_options, label_mode, num_classes
    )


def load_batches(
    indices: tf.data.Dataset,
    file_paths: Sequence[str],
    labels: np.ndarray[Any, Any],
    batch_size: int | None,
    image_options: ImageOptions,
    label_mode: str | None,
    num_classes: int,
) -> tf.data.Dataset:
    """Maps a dataset of int64 index vectors (one per batch) to decoded batches.

    Args:
        indices: A `tf.data.Dataset` of 1-D int64 tensors of sample indices.
        file_paths: One path per sample; the indices point here.
        labels: One integer label per sample.
        batch_size: The static batch dimension, or None if sizes vary.
        image_options: How to decode and resize the images.
        label_mode: "int", "categorical", "binary" or None (images only).
        num_classes: The depth of the one-hot labels for "categorical".

    Returns:
        The prefetched dataset of `images` or `(images, labels)` batches, one
        per element of `indices`, in the same order.
    """
    path_table = tf.constant(list(file_paths), dtype=tf.string)
    label_table = tf.constant(np.asarray(labels, dtype=np.int32))
    check = needs_format_check(file_paths, image_options.num_channels)
    load_image = make_image_loader(image_options, check_format=check)
    image_spec = tf.TensorSpec(image_options.image_shape, tf.float32)

    def load_batch(index: tf.Tensor) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
        images = tf.map_fn(
            load_image,
            tf.gather(path_table, index),
            fn_output_signature=image_spec,
            parallel_iterations=_PARALLEL_IMAGES,
        )
        images.set_shape((batch_size, *image_options.image_shape))
        if label_mode is None:
            return images
        return images, _encode_labels(tf.gather(label_table, index), label_mode, num_classes)

    dataset = indices.map(load_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
