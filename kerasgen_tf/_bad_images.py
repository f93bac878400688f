"""Image files that cannot be read or decoded: name them, skip them, or find them first.

TensorFlow's decoding errors cannot be caught inside a graph, and the error
it raises names no file ("Unknown image file format ... [Op:IteratorGetNext]").
The pipeline therefore keeps its fast path (one planned batch per element,
decoded in the graph) and recovers only on failure:

```
from_generator((pass, number, indices) per batch, then an end marker)
  -> map(decode the batch, AUTOTUNE, deterministic=True)
  -> ignore_errors()                  # a batch with a bad file is dropped ...
  -> scan(find the gaps) -> flat_map(one copy per gap, plus the batch)
  -> scan(settle)                     # ... and rebuilt in its place, in Python:
                                      #   each image decoded alone, the bad one
                                      #   named ("error") or replaced ("skip")
  -> assert_cardinality(len(sampler)) -> prefetch
```

The extra stages cost a few tens of microseconds per batch (a batch of
16 JPEGs takes ~10 ms to decode); `flat_map` builds a function-free inner
dataset per batch (`enumerate` there would cost ~0.6 ms per batch).

The generator records the indices of every batch it yields, so a dropped
batch can be rebuilt from its number. A batch's images are decoded one by
one only when the batch failed; a healthy epoch never leaves the graph.

`find_bad_files` (for `verify_images=True`) decodes every file once, in
parallel, before any sampler is built.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from kerasgen_tf._args import ImageOptions
from kerasgen_tf._decode import _decode, make_image_loader, needs_format_check

__all__ = [
    "ON_BAD_IMAGE",
    "BadImageWarning",
    "build_guarded_dataset",
    "check_on_bad_image",
    "describe_bad_image",
    "find_bad_files",
]

ON_BAD_IMAGE = ("error", "skip")

# How many paths a warning quotes before "and N more".
_MAX_EXAMPLES = 10
# Passes (iterators) whose batch plans are kept for rebuilding failed batches.
_KEPT_PASSES = 4
# Batch numbers of the end-of-pass marker and of a failed generator.
_END = -1
_GENERATOR_FAILED = -2

_SIGNATURES = (
    ("JPEG", 0, b"\xff\xd8\xff"),
    ("PNG", 0, b"\x89PNG\r\n\x1a\n"),
    ("GIF", 0, b"GIF8"),
    ("BMP", 0, b"BM"),
    ("WebP", 8, b"WEBP"),
)


class BadImageWarning(UserWarning):
    """Warns about image files that were skipped because they cannot be loaded.

    Issued once per file by `on_bad_image="skip"` and once per call (with the
    count and the first paths) by `verify_images=True`. Silence it with
    `warnings.filterwarnings("ignore", category=kerasgen_tf.BadImageWarning)`.
    """


def check_on_bad_image(on_bad_image: object) -> str:
    """Validates `on_bad_image` ("error" or "skip").

    Args:
        on_bad_image: The value to check.

    Returns:
        `on_bad_image`.

    Raises:
        ValueError: If it is not one of `ON_BAD_IMAGE`.
    """
    if not (isinstance(on_bad_image, str) and on_bad_image in ON_BAD_IMAGE):
        raise ValueError(
            '`on_bad_image` must be "error" (stop, naming the file) or "skip" (replace '
            "the file by another image of its class and warn). "
            f"Received: on_bad_image={on_bad_image!r}"
        )
    return on_bad_image


def _image_format(head: bytes) -> str | None:
    for name, offset, magic in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return name
    return None


def _tf_message(error: tf.errors.OpError) -> str:
    """TensorFlow's error message without its `{{function_node ...}}` and `[Op:...]` parts."""
    message = re.sub(r"\{\{[^}]*\}\}", "", error.message)
    message = re.sub(r"\[Op:[^\]]*\].*", "", message, flags=re.S)
    return " ".join(message.split())


def describe_bad_image(path: str, load: Callable[[tf.Tensor], Any]) -> str | None:
    """Says why a file cannot be loaded, or returns None if it loads.

    Args:
        path: The image file.
        load: A function `path tensor -> image` (the pipeline's loader).

    Returns:
        A short reason ("the file is empty (0 bytes)", ...) or None.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as file:
            head = file.read(16)
    except FileNotFoundError:
        return "the file does not exist (deleted or moved after the files were listed?)"
    except OSError as error:
        return f"the file cannot be read ({error.strerror or error})"
    if size == 0:
        return "the file is empty (0 bytes)"
    kind = _image_format(head)
    if kind is None:
        return (
            "the file is not an image in a supported format (JPEG, PNG, GIF, BMP, WebP); "
            f"it starts with {head[:8]!r}"
        )
    try:
        load(tf.constant(path))
    except tf.errors.OpError as error:
        return (
            f"the {kind} data cannot be decoded, the file is truncated or corrupt "
            f"({size} bytes; TensorFlow: {_tf_message(error)})"
        )
    return None


def _examples(paths: Sequence[str]) -> str:
    shown = ", ".join(repr(p) for p in paths[:_MAX_EXAMPLES])
    more = len(paths) - _MAX_EXAMPLES
    return shown + (f" and {more} more" if more > 0 else "")


def find_bad_files(file_paths: Sequence[str], image_options: ImageOptions) -> dict[str, str]:
    """Decodes every file once, in parallel, and returns the ones that fail.

    Args:
        file_paths: The files to check.
        image_options: The decoding options (the channel count matters).

    Returns:
        `{path: reason}` for every file that cannot be loaded, in the order
        of `file_paths`.
    """
    if not file_paths:
        return {}
    channels = image_options.num_channels
    check = needs_format_check(file_paths, channels)
    table = tf.constant(list(file_paths), dtype=tf.string)

    def decodes(i: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = _decode(tf.io.read_file(table[i]), channels, check)
        return i, tf.shape(image)[0]

    positions = tf.data.Dataset.range(len(file_paths))
    positions = positions.map(decodes, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    good = np.zeros(len(file_paths), dtype=bool)
    for index, _ in positions.ignore_errors().batch(1024).as_numpy_iterator():
        good[index] = True
    load = tf.function(make_image_loader(image_options))
    bad = {}
    for i in np.flatnonzero(~good).tolist():
        path = file_paths[i]
        bad[path] = describe_bad_image(path, load) or "the file could not be decoded"
    return bad


def warn_dropped(bad: dict[str, str], total: int) -> None:
    """Warns once about the files `verify_images=True` dropped."""
    paths = list(bad)
    reasons = "; ".join(f"{p!r}: {bad[p]}" for p in paths[:3])
    warnings.warn(
        f"verify_images=True: dropped {len(paths)} of {total} files that cannot be loaded: "
        f"{_examples(paths)}. First reasons: {reasons}. "
        "The list is in `dataset.skipped_files`.",
        BadImageWarning,
        stacklevel=5,  # warn_dropped <- _drop_bad_files <- make_datasets <- API <- caller
    )


class _CannotRepair(Exception):
    """A batch that cannot be rebuilt; its message is raised in the graph."""


class _BatchRepair:
    """Rebuilds, outside the graph, the batches that failed to decode."""

    def __init__(
        self,
        file_paths: Sequence[str],
        labels: np.ndarray[Any, Any],
        image_options: ImageOptions,
        on_bad_image: str,
        skipped: dict[str, str],
    ) -> None:
        self.file_paths = list(file_paths)
        self.labels = np.asarray(labels)
        self.options = image_options
        self.on_bad_image = on_bad_image
        self.skipped = skipped
        self.bad_indices: set[int] = set()
        self.plans: dict[int, dict[int, np.ndarray[Any, Any]]] = {}
        self.failures: dict[int, BaseException] = {}
        self.passes = itertools.count()
        self.lock = threading.Lock()
        self._load: Callable[[tf.Tensor], Any] | None = None

    @property
    def load(self) -> Callable[[tf.Tensor], Any]:
        if self._load is None:
            self._load = tf.function(make_image_loader(self.options))
        return self._load

    def new_pass(self) -> tuple[int, dict[int, np.ndarray[Any, Any]]]:
        with self.lock:
            pass_id = next(self.passes)
            plan: dict[int, np.ndarray[Any, Any]] = {}
            self.plans[pass_id] = plan
            for old in [p for p in self.plans if p <= pass_id - _KEPT_PASSES]:
                del self.plans[old]
            return pass_id, plan

    def _replacement(
        self, index: int, number: int, slot: int, used: set[int]
    ) -> tuple[int, np.ndarray[Any, Any]]:
        """Another loadable image of the same class, preferably not in the batch."""
        label = self.labels[index]
        candidates = [
            int(i) for i in np.flatnonzero(self.labels == label) if int(i) not in self.bad_indices
        ]
        fresh = [i for i in candidates if i not in used] or candidates
        rng = np.random.default_rng([number, slot, index])
        for i in rng.permutation(np.asarray(fresh, dtype=np.int64)).tolist():
            image = self._try_load(int(i))
            if image is not None:
                return int(i), image
        # No quotes: TensorFlow escapes them in the message it raises.
        raise _CannotRepair(
            f"on_bad_image=skip: no image of class (label {label}) can be loaded to "
            f"replace {self.file_paths[index]}; every file of that class is unreadable "
            f"(see dataset.skipped_files)."
        )

    def _try_load(self, index: int) -> np.ndarray[Any, Any] | None:
        if index in self.bad_indices:
            return None
        path = self.file_paths[index]
        try:
            return np.asarray(self.load(tf.constant(path)))
        except tf.errors.OpError:
            pass
        reason = describe_bad_image(path, self.load) or "the file could not be decoded"
        if self.on_bad_image == "error":
            raise _CannotRepair(
                f"Cannot load image file {path} (dataset.file_paths[{index}]): {reason}. "
                "Pass on_bad_image=skip to "
                "replace unreadable files by other images of their class, or "
                "verify_images=True to drop them before the first batch.",
            )
        with self.lock:
            self.bad_indices.add(index)
            first_time = path not in self.skipped
            self.skipped[path] = reason
        if first_time:
            warnings.warn(
                f"Skipped image file {path!r}: {reason}. It is replaced in its batches by "
                "another image of its class (all skipped files: `dataset.skipped_files`).",
                BadImageWarning,
                stacklevel=2,
            )
        return None

    def rebuild(self, pass_tensor: Any, number_tensor: Any) -> tuple[Any, ...]:
        """Batch `number` of pass `pass_id`, its images decoded one by one.

        Returns:
            `(images, labels, error)`: `error` is "" or why the batch cannot
            be rebuilt (the graph raises it, without a Python traceback).
        """
        pass_id, number = int(pass_tensor), int(number_tensor)
        try:
            return (*self._rebuild(pass_id, number), "")
        except _CannotRepair as error:
            shape = (0, *self.options.image_shape)
            return np.zeros(shape, np.float32), np.zeros(0, np.int32), str(error)

    def _rebuild(self, pass_id: int, number: int) -> tuple[np.ndarray[Any, Any], ...]:
        if number == _GENERATOR_FAILED:
            error = self.failures.pop(pass_id, None)
            raise _CannotRepair(
                f"The sampler failed to plan the epoch: {type(error).__name__}: {error}"
            )
        plan = self.plans.get(pass_id, {})
        if number not in plan:
            raise _CannotRepair(
                f"Batch {number} failed to load and its plan is no longer known "
                "(more than 4 passes over the dataset at once?)."
            )
        indices = plan.pop(number).tolist()
        used = set(indices)
        images = []
        final = []
        for slot, index in enumerate(indices):
            image = self._try_load(index)
            if image is None:
                index, image = self._replacement(index, number, slot, used)
                used.add(index)
            images.append(image)
            final.append(index)
        stacked = np.stack(images).astype(np.float32)
        return stacked, self.labels[final].astype(np.int32)


def build_guarded_dataset(
    sampler: Any,
    file_paths: Sequence[str],
    labels: np.ndarray[Any, Any],
    image_options: ImageOptions,
    label_mode: str | None,
    num_classes: int,
    on_bad_image: str,
    skipped: dict[str, str],
) -> tf.data.Dataset:
    """The dataset of decoded batches `sampler` plans, recovering from bad files.

    Args:
        sampler: A `balanced_sampler.BalancedBatchSampler` over `labels`.
        file_paths: One path per sample.
        labels: One integer label per sample.
        image_options: How to decode and resize the images.
        label_mode: "int", "categorical", "binary" or None (images only).
        num_classes: The depth of the one-hot labels for "categorical".
        on_bad_image: "error" (raise, naming the file and what is wrong) or
            "skip" (replace it by another image of its class and warn once).
        skipped: Filled with `{path: reason}` of every skipped file.

    Returns:
        A `tf.data.Dataset` of `len(sampler)` batches per pass.
    """
    from kerasgen_tf._pipeline import _PARALLEL_IMAGES, _encode_labels

    batch_size = sampler.batch_size if sampler.safe_triplet else None
    repair = _BatchRepair(file_paths, labels, image_options, on_bad_image, skipped)
    total = len(sampler)

    def planned_batches() -> Iterator[np.ndarray[Any, Any]]:
        # Called by TensorFlow once per iterator, at its first batch. Each
        # element is one array `[pass, number, *indices]` (one tensor per
        # element is what `from_generator` converts fastest); the markers
        # carry no index, so decoding them costs nothing.
        pass_id, plan = repair.new_pass()
        try:
            for number, batch in enumerate(sampler.iter_arrays()):
                element = np.empty(len(batch) + 2, dtype=np.int64)
                element[0], element[1] = pass_id, number
                element[2:] = batch
                plan[number] = element[2:]
                yield element
        except Exception as error:  # Re-raised downstream, after the earlier batches.
            repair.failures[pass_id] = error
            yield np.array([pass_id, _GENERATOR_FAILED], dtype=np.int64)
            return
        yield np.array([pass_id, _END], dtype=np.int64)

    signature = tf.TensorSpec((None,), tf.int64)
    plans = tf.data.Dataset.from_generator(planned_batches, output_signature=signature)

    path_table = tf.constant(list(file_paths), dtype=tf.string)
    label_table = tf.constant(np.asarray(labels, dtype=np.int32))
    check = needs_format_check(file_paths, image_options.num_channels)
    load_image = make_image_loader(image_options, check_format=check)
    image_spec = tf.TensorSpec(image_options.image_shape, tf.float32)
    batch_shape = (batch_size, *image_options.image_shape)

    def load_batch(element: tf.Tensor) -> Any:
        pass_id, number, index = element[0], element[1], element[2:]
        images = tf.map_fn(
            load_image,
            tf.gather(path_table, index),
            fn_output_signature=image_spec,
            parallel_iterations=_PARALLEL_IMAGES,
        )
        return pass_id, number, images, tf.gather(label_table, index)

    def rebuild(pass_id: tf.Tensor, number: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images, batch_labels, error = tf.py_function(
            repair.rebuild, [pass_id, number], Tout=[tf.float32, tf.int32, tf.string]
        )
        check = tf.debugging.Assert(tf.equal(error, ""), [error], summarize=1)
        with tf.control_dependencies([check]):
            images = tf.identity(images)
        images.set_shape(batch_shape)
        batch_labels.set_shape((batch_size,))
        return images, batch_labels

    def find_gaps(expected: tf.Tensor, element: Any) -> Any:
        # `expected` is the number of the next batch due. Batches before
        # `number` that did not arrive failed; the end marker closes the gap
        # up to `total`; a failed generator is one pseudo-batch that raises.
        pass_id, number, images, batch_labels = element
        end = tf.where(number == _END, tf.constant(total, tf.int64), number)
        gaps = tf.where(number == _GENERATOR_FAILED, tf.constant(1, tf.int64), end - expected)
        gaps = tf.maximum(gaps, 0)
        count = gaps + tf.cast(number >= 0, tf.int64)
        return end + 1, (pass_id, expected, gaps, count, number, images, batch_labels)

    def fill_gaps(*element: tf.Tensor) -> tf.data.Dataset:
        # As cheap as flat_map gets (no function per inner dataset, no
        # `enumerate`, which costs ~0.6 ms per batch): the batch repeated once
        # per failed batch before it (rebuilt by `settle`), plus itself.
        return tf.data.Dataset.from_tensors(element).repeat(element[3])

    def settle(state: Any, element: Any) -> Any:
        # The copies of one element share `first` (unique per element): the
        # first `gaps` copies stand for the failed batches, the last is itself.
        pass_id, first, gaps, _, number, images, batch_labels = element
        last_first, position = state
        position = tf.where(first == last_first, position + 1, tf.constant(0, tf.int64))

        def rebuilt() -> tuple[tf.Tensor, tf.Tensor]:
            failed = tf.where(number == _GENERATOR_FAILED, number, first + position)
            return rebuild(pass_id, failed)

        images, batch_labels = tf.cond(position < gaps, rebuilt, lambda: (images, batch_labels))
        images.set_shape(batch_shape)
        batch_labels.set_shape((batch_size,))
        if label_mode is None:
            return (first, position), images
        return (first, position), (images, _encode_labels(batch_labels, label_mode, num_classes))

    dataset = plans.map(load_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.ignore_errors()
    dataset = dataset.scan(tf.constant(0, tf.int64), find_gaps).flat_map(fill_gaps)
    start = (tf.constant(-1, tf.int64), tf.constant(0, tf.int64))
    dataset = dataset.scan(start, settle)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(total))
    return dataset.prefetch(tf.data.AUTOTUNE)
