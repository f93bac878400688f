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

__all__ = ["build_dataset"]

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

    Returns:
        A `tf.data.Dataset` of `len(sampler)` batches per epoch: `images` or
        `(images, labels)`. In fixed mode (`sampler.safe_triplet`) the
        batch dimension is static (P * K).
    """
    batch_size = sampler.batch_size if sampler.safe_triplet else None
    path_table = tf.constant(list(file_paths), dtype=tf.string)
    label_table = tf.constant(np.asarray(labels, dtype=np.int32))
    check = needs_format_check(file_paths, image_options.num_channels)
    load_image = make_image_loader(image_options, check_format=check)
    image_spec = tf.TensorSpec(image_options.image_shape, tf.float32)

    def epoch_batches() -> Iterator[np.ndarray[Any, Any]]:
        # Called by TensorFlow once per iterator, at its first batch.
        for batch in sampler.iter_arrays():
            yield np.asarray(batch, dtype=np.int64)

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

    indices = tf.data.Dataset.from_generator(
        epoch_batches, output_signature=tf.TensorSpec((batch_size,), tf.int64)
    )
    indices = indices.apply(tf.data.experimental.assert_cardinality(len(sampler)))
    dataset = indices.map(load_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
