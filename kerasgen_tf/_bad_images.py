"""What the user is told about image files that cannot be loaded.

The decoding stage (`kerasgen_tf._batches`) finds bad files inside the
graph and passes them along with each batch (`BadFiles`: index, reason,
size, leading bytes, replaced or not). This module turns that into words
and policy, in the process that trains, where Python runs; the same
report stage follows the decode whether it ran locally, from a
checkpointed iterator or on tf.data service workers:

- `on_bad_image="error"`: the first bad file stops iteration with a
  `tf.errors.InvalidArgumentError` whose message names the file, its index
  in `dataset.file_paths` and what is wrong, and nothing else (no Python
  traceback: the message is raised by a graph assertion).
- `on_bad_image="skip"`: its row already holds another image of its class;
  the file is recorded in `dataset.skipped_files` and one
  `BadImageWarning` is issued per file. If no image of the class can be
  loaded, iteration stops as above, saying so.

`find_bad_files` (for `verify_images=True`) decodes every file once before
any sampler is built and describes the ones that fail in the same words.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from kerasgen_tf._args import ImageOptions
from kerasgen_tf._batches import (
    EMPTY,
    MISSING,
    NOT_AN_IMAGE,
    UNDECODABLE,
    UNREADABLE,
    BatchLoader,
)

__all__ = ["BadFileReport", "BadImageWarning", "describe", "find_bad_files", "warn_dropped"]

# How many paths a warning quotes before "and N more".
_MAX_EXAMPLES = 10

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


def _image_format(head: bytes) -> str:
    for name, offset, magic in _FORMATS:
        if head[offset : offset + len(magic)] == magic:
            return name
    return "image"


def describe(reason: int, size: int, head: bytes) -> str:
    """Says in words why a file cannot be loaded.

    Args:
        reason: A reason code of `kerasgen_tf._batches` (`MISSING`, ...).
        size: The file's size in bytes.
        head: Its leading bytes.

    Returns:
        A short reason, e.g. "the file is empty (0 bytes)".
    """
    if reason == MISSING:
        return "the file does not exist (deleted or moved after the files were listed?)"
    if reason == UNREADABLE:
        return "the file cannot be read (no permission, or the storage failed)"
    if reason == EMPTY:
        return "the file is empty (0 bytes)"
    if reason == NOT_AN_IMAGE:
        # No quotes: TensorFlow escapes them in the messages it raises.
        first = head[:8]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in first)
        return (
            "the file is not an image in a supported format (JPEG, PNG, GIF, BMP, WebP); "
            f"its first bytes are {first.hex(' ')} ({text})"
        )
    if reason == UNDECODABLE:
        return (
            f"the {_image_format(head)} data cannot be decoded: the file is truncated or "
            f"corrupt ({size} bytes)"
        )
    return f"the file cannot be loaded (reason code {reason})"


@attrs.define(eq=False)
class BadFileReport:
    """Applies `on_bad_image` to the bad files of a batch, in the training process.

    Called through `tf.py_function` by the pipeline's report stage, only for
    batches that hold a bad file.
    """

    file_paths: Sequence[str]
    labels: np.ndarray[Any, Any]
    label_names: Mapping[int, str]
    """The class name of each label value, for messages."""
    on_bad_image: str
    skipped: dict[str, str]
    """Filled with `{path: reason}` of the skipped files (`dataset.skipped_files`)."""
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    def __call__(self, index: Any, reason: Any, size: Any, head: Any, replaced: Any) -> str:
        """Records, warns, or returns the message of the error to raise ("" for none).

        Args:
            index: `BadFiles.index` of a batch (an eager tensor), as the
                following arguments.
            reason: `BadFiles.reason`.
            size: `BadFiles.size`.
            head: `BadFiles.head`.
            replaced: `BadFiles.replaced`.

        Returns:
            The error message, or "" if iteration goes on.
        """
        rows = zip(
            index.numpy().tolist(),
            reason.numpy().tolist(),
            size.numpy().tolist(),
            head.numpy().tolist(),
            replaced.numpy().tolist(),
            strict=True,
        )
        for i, code, nbytes, leading, was_replaced in rows:
            path = self.file_paths[i]
            why = describe(code, nbytes, leading)
            if self.on_bad_image == "error":
                # No quotes around names: TensorFlow escapes them in the message it raises.
                return (
                    f"Cannot load image file {path} (dataset.file_paths[{i}]): {why}. Pass "
                    "on_bad_image=skip to replace unreadable files by other images of their "
                    "class, or verify_images=True to drop them before the first batch."
                )
            self._skip(path, why)
            if not was_replaced:
                label = int(self.labels[i])
                name = self.label_names.get(label, str(label))
                return (
                    f"on_bad_image=skip: no image of class {name} (label {label}) can be "
                    f"loaded to replace {path}; every file of that class is unreadable "
                    "(see dataset.skipped_files)."
                )
        return ""

    def _skip(self, path: str, why: str) -> None:
        with self._lock:
            first_time = path not in self.skipped
            self.skipped[path] = why
        if first_time:
            warnings.warn(
                f"Skipped image file {path!r}: {why}. It is replaced in its batches by "
                "another image of its class (all skipped files: `dataset.skipped_files`).",
                BadImageWarning,
                stacklevel=2,
            )


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
    loader = BatchLoader.create(file_paths, labels, image_options, "error")
    return {
        file_paths[i]: describe(reason, size, head)
        for i, reason, size, head in loader.find_unloadable()
    }


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
