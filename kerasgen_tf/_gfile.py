"""Listing folders through `tf.io.gfile`, for paths that `os` cannot read.

Keras indexes image folders with `tf.io.gfile`, so `gs://` buckets (where
TPU users keep their images), `hdfs://`, TensorFlow's in-memory `ram://`
and any file system a TensorFlow plug-in registers work there. The core
(`balanced_sampler.index_directory`) stays free of TensorFlow: it takes a
`scandir` function, and `scandir_for` gives it one built on `tf.io.gfile`
for every path with a URL scheme. Local paths keep `os.scandir` (faster,
and it sees symlinks). Reading and decoding need nothing more:
`tf.io.read_file` opens any path `tf.io.gfile` can.
"""

from __future__ import annotations

import os
import re

import attrs
import tensorflow as tf

from balanced_sampler.indexing import ScanDir

__all__ = ["GFileEntry", "gfile_scandir", "is_url", "scandir_for"]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# File systems whose listings mark folders with a trailing "/" (Google Cloud
# Storage lists "prefixes" so), which spares one request per entry.
_MARKS_FOLDERS = ("gs://",)


def is_url(path: str) -> bool:
    """Whether `path` starts with a URL scheme such as `gs://` or `ram://`."""
    return _URL.match(path) is not None


@attrs.frozen
class GFileEntry:
    """One entry of a folder listed by `gfile_scandir` (what `os.DirEntry` offers)."""

    name: str
    path: str
    directory: bool

    def is_dir(self) -> bool:
        """Whether the entry is a folder."""
        return self.directory

    def is_symlink(self) -> bool:
        """Always False: these file systems have no symbolic links."""
        return False


def gfile_scandir(path: str) -> list[GFileEntry]:
    """Lists a folder with `tf.io.gfile`, as `os.scandir` lists a local one.

    Args:
        path: A folder, e.g. `"gs://bucket/images"`.

    Returns:
        Its entries, in the order the file system lists them.

    Raises:
        FileNotFoundError: If `path` does not exist.
        NotADirectoryError: If `path` is a file.
        OSError: If the listing fails otherwise.
    """
    try:
        names = tf.io.gfile.listdir(path)
    except tf.errors.NotFoundError:
        names = None
    except tf.errors.OpError as error:
        raise OSError(f"{path}: {error.message}") from None
    if not names:
        # Object stores list a missing folder or a file as an empty folder.
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(path)
        if not tf.io.gfile.isdir(path):
            raise NotADirectoryError(path)
        return []
    marks_folders = path.startswith(_MARKS_FOLDERS)
    entries = []
    for name in names:
        bare = name.rstrip("/")
        child = os.path.join(path, bare)
        folder = name.endswith("/") if marks_folders else tf.io.gfile.isdir(child)
        entries.append(GFileEntry(bare, child, folder))
    return entries


def scandir_for(directory: object) -> ScanDir | None:
    """The `scandir` that `index_directory` needs for `directory`.

    Args:
        directory: The `directory` argument, unchecked (`index_directory`
            checks it).

    Returns:
        `gfile_scandir` for a string with a URL scheme, None (`os.scandir`)
        otherwise.
    """
    return gfile_scandir if isinstance(directory, str) and is_url(directory) else None
