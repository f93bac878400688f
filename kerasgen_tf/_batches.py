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
- `bad`: a `BadFiles` listing the files of this batch that could not be
  loaded (empty for a healthy batch) and why. With `on_bad_image="skip"`
  their rows hold another image of the same class (`bad.replaced`); with
  "error" the rows are zeros and the trainer-side report stage raises.

It never raises for a bad file and needs no Python: everything is a
TensorFlow op, so the same stage runs in the local pipeline, in a
checkpointed iterator and on tf.data service workers. A cache wraps it
with the same signature: gather the rows it holds, call the wrapped
`load_images` on the others, store them, merge (a skipped file's
replacement is stored under the skipped index; `bad` is reported once,
when the file is first met).

How a bad file is found without leaving the graph. TensorFlow cannot catch
a decoding error inside a function, but a dataset can drop the element
that raised (`ignore_errors`). So each batch is one tiny inner dataset,
run to its single element inside the map function
(`get_single_element`, which keeps the outer pipeline a plain parallel
map, checkpointable position by position):

```
from_tensors(indices).map(decode the whole batch).ignore_errors()   # fast path
  .concatenate(image by image: try, then diagnose)                   # only if that failed
  .take(1).get_single_element()
```

The fast path is the whole cost of a healthy batch (~0.1 ms of dataset
bookkeeping per batch next to ~1-3 ms per decoded JPEG). Only a batch that
failed is redone image by image; each image then tries, in order: Keras'
decode; the fallback decode in the file's own channel count (only for
formats where that can help, e.g. a CMYK JPEG in grayscale); a diagnosis
from its bytes (empty, not an image, or undecodable: truncated or corrupt);
whether it exists at all. With "skip", a bad file's row is then filled by
the first image of the same class that loads, from a seeded order that
prefers images not already in the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import attrs
import numpy as np
import tensorflow as tf

from kerasgen_tf._args import ImageOptions
from kerasgen_tf._decode import make_fallback_loader, make_image_loader, needs_format_check

__all__ = [
    "EMPTY",
    "MISSING",
    "NOT_AN_IMAGE",
    "OK",
    "UNDECODABLE",
    "UNREADABLE",
    "BadFiles",
    "BatchLoader",
    "ClassMembers",
    "LoadImages",
    "no_bad_files",
    "plain",
]

# Why a file cannot be loaded (`BadFiles.reason`).
OK, MISSING, UNREADABLE, EMPTY, NOT_AN_IMAGE, UNDECODABLE = range(6)
# Leading bytes kept for the message about a file that is not an image.
HEAD_BYTES = 16
# Images of one batch decoded concurrently inside `tf.map_fn`.
PARALLEL_IMAGES = 16

_SIGNATURES = (
    (0, b"\xff\xd8\xff"),  # JPEG
    (0, b"\x89PNG\r\n\x1a\n"),
    (0, b"GIF8"),
    (0, b"BM"),
    (8, b"WEBP"),
)


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
    reason: tf.Tensor
    """int32: `MISSING`, `UNREADABLE`, `EMPTY`, `NOT_AN_IMAGE` or `UNDECODABLE`."""
    size: tf.Tensor
    """int64: the file's size in bytes, -1 if it cannot be read."""
    head: tf.Tensor
    """string: its first `HEAD_BYTES` bytes ("" if it cannot be read)."""
    replaced: tf.Tensor
    """bool: whether another image of its class took its row ("skip")."""


def no_bad_files() -> BadFiles:
    """An empty `BadFiles` (a healthy batch)."""
    return BadFiles(
        index=tf.zeros([0], tf.int64),
        reason=tf.zeros([0], tf.int32),
        size=tf.zeros([0], tf.int64),
        head=tf.constant([], tf.string),
        replaced=tf.zeros([0], tf.bool),
    )


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
    on_bad_image: str
    check_format: bool
    """Whether the fast path checks formats TensorFlow cannot decode in the asked channels."""
    classes: ClassMembers | None
    """The class tables, for "skip" only."""

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
            on_bad_image: "error" or "skip".

        Returns:
            The `BatchLoader`.
        """
        return cls(
            paths=tf.constant(list(file_paths), tf.string),
            options=options,
            on_bad_image=on_bad_image,
            check_format=needs_format_check(file_paths, options.num_channels),
            classes=ClassMembers.from_labels(labels) if on_bad_image == "skip" else None,
        )

    def __call__(self, indices: tf.Tensor) -> tuple[tf.Tensor, BadFiles]:
        """Decodes the batch `indices`; see `LoadImages`."""
        fast = tf.data.Dataset.from_tensors(indices).map(plain(self._decode_batch))
        count = tf.size(indices, out_type=tf.int64)
        slow = tf.data.Dataset.range(count).flat_map(
            plain(lambda slot: self._image(indices, slot))
        )
        slow = slow.batch(count).map(plain(self._assemble))
        images, bad = fast.ignore_errors().concatenate(slow).take(1).get_single_element()
        images.set_shape((None, *self.options.image_shape))
        return images, bad

    # ------------------------------------------------------------------ fast

    def _decode_batch(self, indices: tf.Tensor) -> tuple[tf.Tensor, BadFiles]:
        load = make_image_loader(self.options, self.check_format)
        images = tf.map_fn(
            load,
            tf.gather(self.paths, indices),
            fn_output_signature=tf.TensorSpec(self.options.image_shape, tf.float32),
            parallel_iterations=PARALLEL_IMAGES,
        )
        return images, no_bad_files()

    # ------------------------------------------------------------------ slow

    def _zeros(self) -> tf.Tensor:
        return tf.zeros(self.options.image_shape, tf.float32)

    def _attempts(self, path: tf.Tensor) -> tf.data.Dataset:
        """One element `(image, reason, size, head)`: the image, or why there is none."""
        load = make_image_loader(self.options, self.check_format)
        fallback = make_fallback_loader(self.options)
        zeros = self._zeros()

        def loaded(path: tf.Tensor) -> tuple[tf.Tensor, ...]:
            return load(path), tf.constant(OK), tf.constant(0, tf.int64), tf.constant(b"")

        def loaded_natively(path: tf.Tensor) -> tuple[tf.Tensor, ...]:
            return fallback(path), tf.constant(OK), tf.constant(0, tf.int64), tf.constant(b"")

        def diagnosed(path: tf.Tensor) -> tuple[tf.Tensor, ...]:
            raw = tf.io.read_file(path)
            size = tf.cast(tf.strings.length(raw), tf.int64)
            head = tf.strings.substr(raw, 0, HEAD_BYTES)
            padded = tf.strings.join([head, b"\0" * HEAD_BYTES])  # substr needs the bytes
            known = tf.reduce_any(
                [
                    tf.equal(tf.strings.substr(padded, offset, len(magic)), magic)
                    for offset, magic in _SIGNATURES
                ]
            )
            reason = tf.where(size == 0, EMPTY, tf.where(known, UNDECODABLE, NOT_AN_IMAGE))
            return zeros, reason, size, head

        def unreadable(path: tf.Tensor) -> tuple[tf.Tensor, ...]:
            # Glob characters escaped: the pattern matches this one path if it exists.
            pattern = tf.strings.regex_replace(path, r"([*?\[\]\\])", r"\\\1")
            exists = tf.size(tf.io.matching_files(pattern)) > 0
            reason = tf.where(exists, UNREADABLE, MISSING)
            return zeros, reason, tf.constant(-1, tf.int64), tf.constant(b"")

        one = tf.data.Dataset.from_tensors(path)
        unknown = (zeros, tf.constant(UNREADABLE), tf.constant(-1, tf.int64), tf.constant(b""))
        tries = one.map(plain(loaded)).ignore_errors()
        for attempt in (loaded_natively, diagnosed, unreadable):
            tries = tries.concatenate(one.map(plain(attempt)).ignore_errors())
        return tries.concatenate(tf.data.Dataset.from_tensors(unknown)).take(1)

    def _image(self, indices: tf.Tensor, slot: tf.Tensor) -> tf.data.Dataset:
        """One element `(index, image, reason, size, head, replaced)` for `indices[slot]`."""
        index = indices[slot]
        attempts = self._attempts(self.paths[index])
        classes = self.classes
        if classes is None:
            return attempts.map(
                plain(lambda *a: (index, *a, tf.constant(False))),
            )
        load = make_image_loader(self.options, self.check_format)

        def replaced(
            image: tf.Tensor, reason: tf.Tensor, size: tf.Tensor, head: tf.Tensor
        ) -> tf.data.Dataset:
            candidates = tf.cond(
                tf.equal(reason, OK),
                lambda: tf.zeros([0], tf.int64),
                lambda: classes.candidates(index, indices, slot),
            )
            found = (
                tf.data.Dataset.from_tensor_slices(candidates)
                .map(plain(lambda i: load(self.paths[i])))
                .ignore_errors()
                .take(1)
                .map(plain(lambda other: (index, other, reason, size, head, tf.constant(True))))
            )
            kept = tf.data.Dataset.from_tensors(
                (index, image, reason, size, head, tf.constant(False))
            )
            return found.concatenate(kept).take(1)

        return attempts.flat_map(plain(replaced))

    def _assemble(self, *columns: tf.Tensor) -> tuple[tf.Tensor, BadFiles]:
        index, images, reason, size, head, replaced = columns
        bad = tf.not_equal(reason, OK)
        files = BadFiles(
            index=tf.boolean_mask(index, bad),
            reason=tf.boolean_mask(reason, bad),
            size=tf.boolean_mask(size, bad),
            head=tf.boolean_mask(head, bad),
            replaced=tf.boolean_mask(replaced, bad),
        )
        return images, files

    # ----------------------------------------------------------- verification

    def find_unloadable(self) -> list[tuple[int, int, int, bytes]]:
        """Decodes every file once and diagnoses those that fail (for `verify_images`).

        Returns:
            `(index, reason, size, head)` of every file that cannot be
            loaded, by index.
        """
        total = int(self.paths.shape[0])
        load = make_image_loader(self.options, self.check_format)

        def decodes(i: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            # One pixel is returned: TensorFlow's optimiser drops a decode whose
            # output is unused (even behind a control dependency).
            return i, load(self.paths[i])[0, 0, 0]

        positions = tf.data.Dataset.range(total).map(
            plain(decodes), num_parallel_calls=tf.data.AUTOTUNE, deterministic=False
        )
        good = np.zeros(total, dtype=bool)
        for index, _ in positions.ignore_errors().batch(1024).as_numpy_iterator():
            good[index] = True
        failed = np.flatnonzero(~good)
        if not failed.size:
            return []
        diagnoses = tf.data.Dataset.from_tensor_slices(failed.astype(np.int64)).map(
            plain(lambda i: (i, self.paths[i]))
        )
        diagnoses = diagnoses.flat_map(
            plain(lambda i, path: self._attempts(path).map(plain(lambda *a: (i, *a[1:]))))
        )
        return [
            (int(i), int(reason), int(size), bytes(head))
            for i, reason, size, head in diagnoses.as_numpy_iterator()
            if reason != OK
        ]
