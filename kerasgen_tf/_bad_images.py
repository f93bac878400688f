"""What the user is told about image files that cannot be loaded.

The decoding stage (`kerasgen_tf._batches`) finds bad files inside the
graph and passes them along with each batch (`BadFiles`: their indices,
and whether another image took their place). This module turns that into
words and policy, in the process that consumes the batches, where Python
runs: the same report stage follows the decode whether it ran locally, from
a checkpointed iterator or on tf.data service workers.

- `on_bad_image="error"`: the first bad file stops iteration with a
  `tf.errors.InvalidArgumentError` whose message names the file, its index
  in `dataset.file_paths` and what is wrong, and nothing else (no Python
  traceback: the message is raised by a graph assertion).
- `on_bad_image="skip"`: its row already holds another image of its class;
  the file is recorded in `dataset.skipped_files` and one
  `BadImageWarning` is issued per file. If no image of the class can be
  loaded, iteration stops as above, saying so.

What is wrong with a file is read from the file itself (`describe_file`,
through `tf.io.gfile`: its existence, size, first bytes, and for a format
TensorFlow cannot decode in the asked channels whether it decodes in its
own), so it says the same whichever process decoded it. `find_bad_files` (for
`verify_images=True`) decodes every file once before any sampler is built
and describes the ones that fail in the same words.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import tensorflow as tf

from kerasgen_tf._args import ImageOptions
from kerasgen_tf._batches import BatchLoader
from kerasgen_tf._decode import RISKY_FORMATS

__all__ = [
    "BadFileReport",
    "BadImageWarning",
    "checked",
    "describe_file",
    "find_bad_files",
    "problem_before_decoding",
    "warn_dropped",
]

# How many paths a warning quotes before "and N more".
_MAX_EXAMPLES = 10
# Leading bytes read to tell the format.
_HEAD_BYTES = 16

_FORMATS = (
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


def _image_format(head: bytes) -> str | None:
    for name, offset, magic in _FORMATS:
        if head[offset : offset + len(magic)] == magic:
            return name
    return None


def _read(path: str) -> tuple[bytes | None, str | None]:
    """The file's bytes, or why it cannot be read (missing, unreadable, empty)."""
    try:
        with tf.io.gfile.GFile(path, "rb") as file:
            data: bytes = file.read()
    except tf.errors.NotFoundError:
        return None, "the file does not exist (deleted or moved after the files were listed?)"
    except tf.errors.OpError as error:
        return None, f"the file cannot be read ({error.message})"
    if not data:
        return None, "the file is empty (0 bytes)"
    return data, None


def _not_an_image(data: bytes) -> str | None:
    """Why `data` is no image in a supported format, or None if its first bytes are one."""
    if _image_format(data[:_HEAD_BYTES]) is not None:
        return None
    # No quotes: TensorFlow escapes them in the messages it raises.
    first = data[:8]
    text = "".join(chr(b) if 32 <= b < 127 else "." for b in first)
    return (
        "the file is not an image in a supported format (JPEG, PNG, GIF, BMP, WebP); "
        f"its first bytes are {first.hex(' ')} ({text})"
    )


def problem_before_decoding(path: str) -> str | None:
    """Says what is wrong with an image file that shows without decoding it.

    Reads the file (any path `tf.io.gfile` reads) and checks that it exists,
    is not empty and starts like an image of a supported format.

    Args:
        path: The file.

    Returns:
        A short reason, e.g. "the file is empty (0 bytes)", or None if the
        file may be an image (only decoding it tells).
    """
    data, reason = _read(path)
    return reason if data is None else _not_an_image(data)


def describe_file(path: str, num_channels: int) -> str:
    """Says why an image file cannot be loaded, from the file itself.

    Called for files that failed to decode; any path `tf.io.gfile` reads.

    Args:
        path: The file.
        num_channels: The channels asked for (1, 3 or 4: the color mode).

    Returns:
        A short reason, e.g. "the file is empty (0 bytes)".
    """
    data, reason = _read(path)
    if data is None:
        return reason or "the file cannot be read"
    not_an_image = _not_an_image(data)
    if not_an_image is not None:
        return not_an_image
    kind = _image_format(data[:_HEAD_BYTES])
    mode = {1: "grayscale", 3: "rgb", 4: "rgba"}[num_channels]
    if kind == "JPEG" and num_channels == 1 and _decodes_natively(data):
        return (
            "it is a JPEG that TensorFlow (libjpeg) cannot convert to grayscale, most likely "
            "a CMYK JPEG: load it with color_mode=rgb, or save it as an RGB or grayscale JPEG"
        )
    if kind in RISKY_FORMATS[num_channels] and _decodes_natively(data):
        return (
            f"it is a {kind} file, which TensorFlow decodes only in its own channels and not "
            f"in color_mode={mode}; kerasgen converts such files when their name ends with "
            f"the {kind} extension, which this one does not"
        )
    return (
        f"the {kind} data cannot be decoded: the file is truncated or corrupt ({len(data)} bytes)"
    )


def _decodes_natively(data: bytes) -> bool:
    """Whether TensorFlow decodes `data` in the image's own channel count."""
    try:
        tf.io.decode_image(data, channels=0, expand_animations=False)
    except tf.errors.OpError:
        return False
    return True


@attrs.define(eq=False)
class BadFileReport:
    """Applies `on_bad_image` to the bad files of a batch, in the training process.

    Called through `tf.py_function` by the pipeline's report stage, only for
    batches that hold a bad file.
    """

    file_paths: Sequence[str]
    num_channels: int
    """The channels asked for (1, 3 or 4), for messages."""
    labels: np.ndarray[Any, Any]
    label_names: Mapping[int, str]
    """The class name of each label value, for messages."""
    on_bad_image: str
    skipped: dict[str, str]
    """Filled with `{path: reason}` of the skipped files (`dataset.skipped_files`)."""
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    def __call__(self, index: Any, replaced: Any) -> str:
        """Records, warns, or returns the message of the error to raise ("" for none).

        Args:
            index: `BadFiles.index` of a batch (an eager tensor or an array).
            replaced: `BadFiles.replaced`.

        Returns:
            The error message, or "" if iteration goes on.
        """
        rows = zip(np.asarray(index).tolist(), np.asarray(replaced).tolist(), strict=True)
        for i, was_replaced in rows:
            path = self.file_paths[i]
            if self.on_bad_image == "error":
                # No quotes around names: TensorFlow escapes them in the message it raises.
                why = describe_file(path, self.num_channels)
                return (
                    f"Cannot load image file {path} (dataset.file_paths[{i}]): {why}. Pass "
                    "on_bad_image=skip to replace unreadable files by other images of their "
                    "class, or verify_images=True to drop them before the first batch."
                )
            self._skip(path)
            if not was_replaced:
                label = int(self.labels[i])
                name = self.label_names.get(label, str(label))
                return (
                    f"on_bad_image=skip: no image of class {name} (label {label}) can be "
                    f"loaded to replace {path}; every file of that class is unreadable "
                    "(see dataset.skipped_files)."
                )
        return ""

    def _skip(self, path: str) -> None:
        with self._lock:
            if path in self.skipped:
                return
            why = describe_file(path, self.num_channels)
            self.skipped[path] = why
        warnings.warn(
            f"Skipped image file {path!r}: {why}. It is replaced in its batches by "
            "another image of its class (all skipped files: `dataset.skipped_files`).",
            BadImageWarning,
            stacklevel=2,
        )


def checked(message: tf.Tensor, value: tf.Tensor) -> tf.Tensor:
    """`value`, once `message` (a report's answer) is "": otherwise the error `message`.

    A graph assertion raises it: the user sees the message (it names the
    file), no Python traceback.
    """
    check = tf.debugging.Assert(tf.equal(message, ""), [message], summarize=1)
    with tf.control_dependencies([check]):
        return tf.identity(value)


def find_bad_files(
    file_paths: Sequence[str], labels: np.ndarray[Any, Any], image_options: ImageOptions
) -> dict[str, str]:
    """Decodes every file once, in parallel, and describes the ones that fail.

    Args:
        file_paths: The files to check.
        labels: One label per file.
        image_options: The decoding options (the channel count matters).

    Returns:
        `{path: reason}` for every file that cannot be loaded, in the order
        of `file_paths`.
    """
    bad = BatchLoader.create(file_paths, labels, image_options, "error").find_unloadable()
    channels = image_options.num_channels
    return {file_paths[i]: describe_file(file_paths[i], channels) for i in bad.tolist()}


def _examples(paths: Sequence[str]) -> str:
    shown = ", ".join(repr(p) for p in paths[:_MAX_EXAMPLES])
    more = len(paths) - _MAX_EXAMPLES
    return shown + (f" and {more} more" if more > 0 else "")


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
