"""The one pipeline: any plan source -> guarded decode -> report -> prefetch.

```
plans ((padded index row, size) per batch: `live_plans` or `PlanTable.dataset()`)
  -> map(load: load_images(indices), gather labels            # graph only
         finish: report bad files (raise, or warn + record);  # where batches
                 encode labels as `label_mode`,               #   are consumed
         num_parallel_calls=AUTOTUNE, deterministic=True)
  -> prefetch(AUTOTUNE)
```

One element is one planned batch, from the first stage to the last: no
unbatch / re-batch, so batches come out exactly as planned. `load` is pure
TensorFlow, so the same graph runs locally, in a checkpointed iterator and
on tf.data service workers (`decoded`); `finish` runs where the batches are
consumed, where Python runs (`tf.py_function`, called only for a batch that
holds a bad file; `finished` puts it after the tf.data service read).
Locally both stages share one map function: every function of a pipeline
is traced and optimised when it starts, about 10 ms each here.

Modules, one job each:

- `_plans`: plan sources (live sampler; materialised epochs).
- `_batches`: `LoadImages`, the stage `indices -> (images, bad files)`,
  the seam a decoded cache wraps (`attrs.evolve(pipeline,
  load_images=cached)`).
- `_cached_images`: that stage through a per-sample decoded cache.
- `_bad_images`: what a bad file does (messages, warnings, `verify_images`).
- `_decode`: one image, decoded and resized exactly as Keras does.
- here: the stages around them, and the datasets' attributes.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import tensorflow as tf

from balanced_sampler import BalancedBatchSampler
from kerasgen_tf._bad_images import BadFileReport, checked
from kerasgen_tf._batches import BadFiles, LoadImages, plain
from kerasgen_tf._cached_images import CachedImages
from kerasgen_tf.decoded_cache import DecodedCache

__all__ = ["Pipeline", "attach", "pipeline_of"]


def _encode_labels(labels: tf.Tensor, label_mode: str, num_classes: int) -> tf.Tensor:
    """Encodes int32 labels as Keras does for `label_mode`."""
    if label_mode == "categorical":
        return tf.one_hot(labels, num_classes)
    if label_mode == "binary":
        return tf.expand_dims(tf.cast(labels, tf.float32), axis=-1)
    return labels


@attrs.frozen(eq=False)
class Pipeline:
    """How one dataset turns planned batches into what it yields (see the module doc)."""

    load_images: LoadImages
    """The decoding stage (`BatchLoader` or a `CachedImages` wrapping it)."""
    labels: tf.Tensor
    """int32 `[N]`: the label of each sample."""
    batch_size: int | None
    """The static batch dimension (P * K in fixed mode), None when sizes vary."""
    image_shape: tuple[int, int, int]
    label_mode: str | None
    num_classes: int
    report: BadFileReport
    seed_given: bool
    """Whether the sampler's seed was given (not drawn): other processes then plan alike."""

    @classmethod
    def create(
        cls,
        load_images: LoadImages,
        labels: np.ndarray[Any, Any],
        sampler: BalancedBatchSampler,
        image_shape: tuple[int, int, int],
        label_mode: str | None,
        num_classes: int,
        report: BadFileReport,
        seed_given: bool,
    ) -> Pipeline:
        """Builds the pipeline of the samples `labels` that `sampler` plans."""
        return cls(
            load_images=load_images,
            labels=tf.constant(np.asarray(labels, dtype=np.int32)),
            batch_size=sampler.batch_size if sampler.safe_triplet else None,
            image_shape=image_shape,
            label_mode=label_mode,
            num_classes=num_classes,
            report=report,
            seed_given=seed_given,
        )

    @property
    def decoded_cache(self) -> DecodedCache | None:
        """The decoded cache its decoding stage reads through, or None."""
        if isinstance(self.load_images, CachedImages):
            return self.load_images.cache
        return None

    def load(self, row: tf.Tensor, size: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, BadFiles]:
        """Stage 1, graph only: a planned batch -> `(images, int32 labels, BadFiles)`.

        Args:
            row: The batch's sample indices, padded (see `kerasgen_tf._plans`).
            size: How many of them are the batch.
        """
        indices = row[:size]
        indices.set_shape((self.batch_size,))
        images, bad = self.load_images(indices)
        images.set_shape((self.batch_size, *self.image_shape))
        return images, tf.gather(self.labels, indices), bad

    def finish(self, images: tf.Tensor, labels: tf.Tensor, bad: BadFiles) -> Any:
        """Stage 2, where the batches are consumed: report bad files, encode the labels.

        A batch whose `bad` is statically empty (shape `(0,)`: a decoding
        stage that can meet no bad file) skips the report: one conditional
        less per batch.

        Returns:
            `images` or `(images, labels)`, as the dataset yields them.
        """
        if bad.index.shape != (0,):
            report = self.report
            message = tf.cond(
                tf.size(bad.index) > 0,
                lambda: tf.py_function(report, [bad.index, bad.replaced], Tout=tf.string),
                lambda: tf.constant(""),
            )
            images = checked(message, images)
        if self.label_mode is None:
            return images
        return images, _encode_labels(labels, self.label_mode, self.num_classes)

    def decoded(self, plans: tf.data.Dataset) -> tf.data.Dataset:
        """Plans -> `load`ed batches: what tf.data service workers run."""
        return plans.map(plain(self.load), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def finished(self, decoded: tf.data.Dataset) -> tf.data.Dataset:
        """`decoded` batches -> `finish`ed ones, prefetched: what the trainer runs."""
        return decoded.map(plain(self.finish)).prefetch(tf.data.AUTOTUNE)

    def build(self, plans: tf.data.Dataset) -> tf.data.Dataset:
        """The whole pipeline over `plans`, in this process.

        Both stages run in one map function: one function less to build and
        optimise when the pipeline starts than `finished(decoded(plans))`,
        which tf.data service needs.
        """

        def load_and_finish(row: tf.Tensor, size: tf.Tensor) -> Any:
            return self.finish(*self.load(row, size))

        batches = plans.map(
            plain(load_and_finish), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
        return batches.prefetch(tf.data.AUTOTUNE)


_PIPELINES: weakref.WeakKeyDictionary[tf.data.Dataset, Pipeline] = weakref.WeakKeyDictionary()


def attach(
    dataset: tf.data.Dataset,
    pipeline: Pipeline,
    sampler: BalancedBatchSampler,
    class_names: Sequence[str],
    file_paths: Sequence[str],
) -> tf.data.Dataset:
    """Gives `dataset` the attributes users read, and remembers its pipeline.

    Args:
        dataset: A dataset built by `pipeline`.
        pipeline: Its pipeline (`pipeline_of(dataset)` returns it).
        sampler: The sampler whose plans it plays.
        class_names: The class names (label `i` is `class_names[i]`).
        file_paths: The files; sample `j` is `file_paths[j]`.

    Returns:
        `dataset`, with `class_names`, `file_paths`, `sampler`,
        `skipped_files` (`{path: reason}` of the files dropped by
        `verify_images` or skipped by `on_bad_image="skip"`, filled as they
        are met) and `decoded_cache` (the pipeline's `DecodedCache`, or
        None).
    """
    # As Keras: users may need the class names and the files.
    dataset.class_names = list(class_names)
    dataset.file_paths = file_paths
    dataset.sampler = sampler
    dataset.skipped_files = pipeline.report.skipped
    dataset.decoded_cache = pipeline.decoded_cache
    _PIPELINES[dataset] = pipeline
    return dataset


def pipeline_of(dataset: object) -> Pipeline | None:
    """The `Pipeline` of a dataset made by kerasgen_tf, or None."""
    if not isinstance(dataset, tf.data.Dataset):
        return None
    return _PIPELINES.get(dataset)
