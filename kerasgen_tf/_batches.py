"""Planned batch of sample indices -> decoded images, guarded against bad files.

This is the one stage of the pipeline that reads files, and the seam that
a decoded cache wraps. Its contract (`LoadImages`):

```python
images, bad = load_images(indices)   # inside a tf.data map function
```

- `indices`: a 1-D int64 tensor, one planned batch (positions in
  `file_paths`).
- `images`: float32 `(len(indices), *image_options.image_shape)`, the
  image of `indices[i]` at row `i`, pixel-identical to Keras.
- `bad`: a `BadFiles` naming the files of this batch that could not be
  loaded (empty for a healthy batch). With `on_bad_image="skip"` their
  rows hold another image of the same class (`bad.replaced`); with
  "error" their rows are left out (`images` is shorter than `indices`)
  and the report stage raises before the batch is used.

It never raises for a bad file and needs no Python: everything is a
TensorFlow op, so the same stage runs in the local pipeline, in a
checkpointed iterator and on tf.data service workers. A cache wraps it
with the same signature: gather the rows it holds, call the wrapped
`load_images` on the indices it lacks, store the rows they return, merge
(a skipped file's replacement is stored under the skipped index, and
`bad` reaches the report stage once, the first time).

How a bad file is found without leaving the graph. TensorFlow cannot catch
a decoding error inside a function, but a dataset drops the elements that
raise (`ignore_errors`). So each batch is a small inner dataset, one
element per image, run to its single output inside the map function
(`get_single_element`, which keeps the outer pipeline a plain parallel
map, checkpointable position by position):

```
from_tensor_slices((slot, path)).map(read + decode + resize).ignore_errors()
  .batch(n).get_single_element()     # (slots, images) of the files that loaded
```

A healthy batch is this and nothing more (0.5-1 ms of CPU per batch for
the inner dataset, made anew for every batch, next to 0.5-1 ms per decoded
JPEG per image: 3-15 % of the CPU). When a file fails with
"skip", and only then, its row is filled with the first image of the same
class that loads, in a seeded order that prefers images not already in the
batch (zeros if none does: the report stage raises). Every op here is traced and
optimised when the pipeline starts, so the guard is kept to a few dozen
ops (the first batch comes within 1.5x of a bare tf.data pipeline's). Why
a file failed is said by the report stage, which reads the file
(`kerasgen_tf._bad_images.describe_file`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import attrs
import numpy as np
import tensorflow as tf

from kerasgen_tf._args import ImageOptions
from kerasgen_tf._decode import make_image_loader, needs_format_check

__all__ = ["BadFiles", "BatchLoader", "ClassMembers", "LoadImages", "no_bad_files", "plain"]


def plain(function: Callable[..., Any]) -> Callable[..., Any]:
    """Marks a tf.data function as plain TensorFlow ops: autograph leaves it alone.

    Converting a map function costs about a second at the first batch and
    none of ours needs it (no Python control flow on tensors).
    """
    unconverted: Callable[..., Any] = tf.autograph.experimental.do_not_convert(function)
    return unconverted


class BadFiles(NamedTuple):
    """The files of one batch that could not be loaded (1-D tensors of equal length)."""

    index: tf.Tensor
    """int64: the sample index (position in `file_paths`)."""
    replaced: tf.Tensor
    """bool: whether another image of its class took its row ("skip")."""


def no_bad_files() -> BadFiles:
    """An empty `BadFiles` (a healthy batch)."""
    return BadFiles(index=tf.zeros([0], tf.int64), replaced=tf.zeros([0], tf.bool))


LoadImages = Callable[[tf.Tensor], tuple[tf.Tensor, BadFiles]]
"""`indices -> (images, bad)`: the stage a decoded cache wraps (see the module doc)."""


@attrs.frozen(eq=False)
class ClassMembers:
    """Which samples share a class, as constant tensors (to find replacements in the graph)."""

    members: tf.Tensor
    """int64 `[N]`: sample indices grouped by class."""
    class_of: tf.Tensor
    """int64 `[N]`: each sample's class, as a position in `start` / `count`."""
    start: tf.Tensor
    """int64 `[C]`: where each class's samples start in `members`."""
    count: tf.Tensor
    """int64 `[C]`: how many samples each class has."""

    @classmethod
    def from_labels(cls, labels: np.ndarray[Any, Any]) -> ClassMembers:
        """Builds the tables of `labels` (one integer label per sample)."""
        _, class_of = np.unique(labels, return_inverse=True)
        members = np.argsort(class_of, kind="stable")
        count = np.bincount(class_of)
        return cls(
            members=tf.constant(members, tf.int64),
            class_of=tf.constant(class_of, tf.int64),
            start=tf.constant(np.cumsum(count) - count, tf.int64),
            count=tf.constant(count, tf.int64),
        )

    def candidates(self, index: tf.Tensor, batch: tf.Tensor, slot: tf.Tensor) -> tf.Tensor:
        """The other samples of `index`'s class, in a seeded order; those not in `batch` first.

        The order depends on the sample, its batch and its position in it,
        so a file skipped in every epoch is replaced by varied images.
        """
        c = self.class_of[index]
        others = self.members[self.start[c] : self.start[c] + self.count[c]]
        others = tf.boolean_mask(others, tf.not_equal(others, index))
        in_batch = tf.reduce_any(tf.equal(others[:, None], batch[None, :]), axis=1)
        seed = tf.stack([index, tf.reduce_sum(batch) * 64 + slot])
        shuffle = tf.random.stateless_uniform(tf.shape(others), seed=seed)
        return tf.gather(others, tf.argsort(tf.cast(in_batch, tf.float32) + shuffle))


@attrs.frozen(eq=False)
class BatchLoader:
    """The guarded `LoadImages` of one dataset's files (see the module doc).

    Build it with `BatchLoader.create`; call it inside a tf.data function.
    """

    paths: tf.Tensor
    """string `[N]`: the files."""
    options: ImageOptions
    classes: ClassMembers | None
    """The class tables, with `on_bad_image="skip"` only (None: bad rows stay zeros)."""
    load: Callable[[tf.Tensor], tf.Tensor]
    """`path -> image` as Keras decodes it (`make_image_loader`)."""

    @classmethod
    def create(
        cls,
        file_paths: Sequence[str],
        labels: np.ndarray[Any, Any],
        options: ImageOptions,
        on_bad_image: str,
    ) -> BatchLoader:
        """Builds the loader of `file_paths` (any path `tf.io.read_file` opens).

        Args:
            file_paths: One path per sample.
            labels: One integer label per sample (replacements share it).
            options: How to decode and resize.
            on_bad_image: "error" or "skip" (replace bad files by images of
                their class).

        Returns:
            The `BatchLoader`.
        """
        check_format = needs_format_check(file_paths, options.num_channels)
        return cls(
            paths=tf.constant(list(file_paths), tf.string),
            options=options,
            classes=ClassMembers.from_labels(labels) if on_bad_image == "skip" else None,
            load=make_image_loader(options, check_format),
        )

    def __call__(self, indices: tf.Tensor) -> tuple[tf.Tensor, BadFiles]:
        """Decodes the batch `indices`; see `LoadImages`."""
        count = tf.size(indices, out_type=tf.int64)
        slots, images = self.decoded(tf.gather(self.paths, indices))
        classes = self.classes
        if classes is None:
            # "error": a batch with a bad file ends iteration, its rows are never used.
            loaded = tf.gather(indices, slots)
            bad_index = tf.sets.difference(indices[None, :], loaded[None, :]).values
            return images, BadFiles(bad_index, tf.zeros_like(bad_index, tf.bool))
        images, bad_index, replaced = tf.cond(
            tf.equal(tf.size(slots, out_type=tf.int64), count),
            lambda: (images, *no_bad_files()),
            lambda: self.completed(indices, slots, images, classes),
        )
        images.set_shape((None, *self.options.image_shape))
        return images, BadFiles(bad_index, replaced)

    def decoded(self, paths: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """`(slots, images)` of the `paths` that load (slots: positions in `paths`)."""
        count = tf.size(paths, out_type=tf.int64)

        def loaded(slot: tf.Tensor, path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return slot, self.load(path)

        rows = tf.data.Dataset.from_tensor_slices((tf.range(count), paths)).map(plain(loaded))
        return self._stacked(rows.ignore_errors(), count)

    def _stacked(self, rows: tf.data.Dataset, count: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """`(slots, images)`: the (at most `count`) `(slot, image)` elements of `rows`."""
        none = (tf.zeros([0], tf.int64), tf.zeros((0, *self.options.image_shape)))
        batches = rows.batch(tf.maximum(count, 1)).concatenate(tf.data.Dataset.from_tensors(none))
        stacked: tuple[tf.Tensor, tf.Tensor] = batches.take(1).get_single_element()
        return stacked

    def completed(
        self, indices: tf.Tensor, slots: tf.Tensor, images: tf.Tensor, classes: ClassMembers
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """The whole batch `indices`, from the `images` of the `slots` that loaded ("skip").

        Args:
            indices: The batch (sample indices).
            slots: The positions in `indices` of the files that loaded.
            images: Their images.
            classes: Where to find replacements.

        Returns:
            `(images, bad indices, replaced)`: every row of the batch (a bad
            file's row holds an image of its class, or zeros if none of
            them loads) and the `BadFiles` columns.
        """
        count = tf.size(indices, out_type=tf.int64)
        bad_slots = _others(slots, count)
        other_slots, others = self._replacements(indices, bad_slots, classes)
        replaced = tf.reduce_any(tf.equal(bad_slots[:, None], other_slots[None, :]), 1)
        slots = tf.concat([slots, other_slots], 0)
        images = tf.concat([images, others], 0)
        batch = tf.scatter_nd(slots[:, None], images, (count, *self.options.image_shape))
        return batch, tf.gather(indices, bad_slots), replaced

    def _replacements(
        self, indices: tf.Tensor, bad_slots: tf.Tensor, classes: ClassMembers
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """`(slots, images)`: for each bad slot, the first image of its class that loads."""

        def replacement(slot: tf.Tensor) -> tf.data.Dataset:
            candidates = classes.candidates(indices[slot], indices, slot)
            found = tf.data.Dataset.from_tensor_slices(tf.gather(self.paths, candidates))
            found = found.map(plain(self.load)).ignore_errors().take(1)
            return found.map(plain(lambda image: (slot, image)))

        found = tf.data.Dataset.from_tensor_slices(bad_slots).flat_map(plain(replacement))
        return self._stacked(found, tf.size(bad_slots, out_type=tf.int64))

    def find_unloadable(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        """Decodes every file once, in parallel (for `verify_images`).

        Returns:
            The indices of the files that cannot be loaded, in order.
        """
        total = int(self.paths.shape[0])

        def decodes(i: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            # One pixel is returned: TensorFlow's optimiser drops a decode whose
            # output is unused (even behind a control dependency).
            return i, self.load(self.paths[i])[0, 0, 0]

        positions = tf.data.Dataset.range(total).map(
            plain(decodes), num_parallel_calls=tf.data.AUTOTUNE, deterministic=False
        )
        good = np.zeros(total, dtype=bool)
        for index, _ in positions.ignore_errors().batch(1024).as_numpy_iterator():
            good[index] = True
        return np.flatnonzero(~good).astype(np.int64)


def _others(slots: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """The positions in `[0, count)` that are not in `slots`."""
    present = tf.reduce_any(tf.equal(tf.range(count)[:, None], slots[None, :]), axis=1)
    return tf.where(tf.logical_not(present))[:, 0]
