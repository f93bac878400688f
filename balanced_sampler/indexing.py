"""Index an image directory laid out as one folder per class.

The layout and the order of the files are those of Keras 3's
`keras.utils.image_dataset_from_directory` (its `index_directory` with
`shuffle=False`), so that a dataset indexed here lines up sample for sample
with one indexed by Keras. The walk itself is different: it is `os.scandir`
based, runs class folders in parallel threads and never drops a file without
saying so (see `index_directory`).

This module uses the standard library and numpy only.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Literal, Protocol, overload

import numpy as np
from numpy.typing import NDArray

from balanced_sampler.checks import as_labels, check_bool, check_int

__all__ = ["ALLOWED_FORMATS", "DirEntry", "IndexingWarning", "ScanDir", "index_directory"]

ALLOWED_FORMATS: tuple[str, ...] = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp")
"""File extensions indexed by default (compared case-insensitively).

Keras 3.15 indexes the same list without `".webp"`; TensorFlow 2.21 decodes
WebP, so it is included here.
"""

ProgressCallback = Callable[[int, int], None]
"""Called as `progress(folders_done, folders_total)` while indexing."""

ExplicitLabels = Sequence[int] | NDArray[np.integer[Any]]
"""A list, tuple or 1-D integer array with one label per file."""


class DirEntry(Protocol):
    """What `index_directory` reads of a directory entry (as `os.DirEntry` has it)."""

    @property
    def name(self) -> str:
        """The entry's name inside its directory."""

    @property
    def path(self) -> str:
        """The directory's path joined with `name`."""

    def is_dir(self) -> bool:
        """Whether the entry is a directory (following symlinks)."""

    def is_symlink(self) -> bool:
        """Whether the entry is a symbolic link."""


ScanDir = Callable[[str], Iterable[DirEntry]]
"""Lists a directory like `os.scandir`: its entries, in any order.

It raises `FileNotFoundError` if the path does not exist and
`NotADirectoryError` if it is not a directory (`OSError` for other
failures). `index_directory` takes one for storage that `os` cannot read
(a TensorFlow adapter passes one built on `tf.io.gfile` for `gs://` paths).
"""

# How many example paths / names a warning quotes before "and N more".
_MAX_EXAMPLES = 3
_MAX_NAMED_CLASSES = 20
# Class folders handed to one thread task: several tasks per worker so that
# the load balances, but not one task per folder (that costs ~10 us each).
_TASKS_PER_WORKER = 8


class IndexingWarning(UserWarning):
    """Warning about files or folders that `index_directory` did not index.

    Raised for files with an unsupported extension, class folders without
    any image, images lying directly in the root directory (with
    `labels="inferred"`), symlinked folders that were not followed,
    directories that could not be read and directories already visited
    through another symlink. Filter it with
    `warnings.filterwarnings("ignore", category=IndexingWarning)`.
    """


class _WalkResult:
    """What the walk of one top folder found (internal)."""

    __slots__ = (
        "already_visited",
        "links_not_followed",
        "n_already_visited",
        "n_links_not_followed",
        "n_unsupported",
        "paths",
        "unreadable",
        "unsupported",
    )

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.n_unsupported = 0
        self.unsupported: list[str] = []
        self.n_links_not_followed = 0
        self.links_not_followed: list[str] = []
        self.n_already_visited = 0
        self.already_visited: list[str] = []
        self.unreadable: list[str] = []


def _walk_one(
    top: str, formats: tuple[str, ...], follow_links: bool, scandir: ScanDir | None
) -> _WalkResult:
    """List the files under `top` in the order Keras lists them.

    Keras walks with `os.walk` (top-down, symlinked directories followed
    only with `follow_links`), sorts the `(root, dirs, files)` triples by
    the `root` string and then each root's file names, and keeps names whose
    lower-cased form ends with one of `formats`. We build the same root
    strings (`os.scandir` joins like `os.path.join`) and sort the same way.
    With `follow_links`, each directory (by `(st_dev, st_ino)`) is walked at
    most once, through the first path met in sorted depth-first order, so
    symlink cycles terminate. A custom `scandir` lists storage without
    symlinks: nothing to follow, so no directory identity is looked up.
    """
    result = _WalkResult()
    roots: list[tuple[str, list[str]]] = []
    visited: set[tuple[int, int]] = set()
    stack = [top]
    while stack:
        root = stack.pop()
        if follow_links and scandir is None:
            # Marked when entered: the first path in sorted depth-first
            # order wins, whatever order the file system lists entries in.
            try:
                st = os.stat(root)
            except OSError as error:
                result.unreadable.append(f"{root} ({error.strerror or error})")
                continue
            key = (st.st_dev, st.st_ino)
            if key in visited:
                result.n_already_visited += 1
                if len(result.already_visited) < _MAX_EXAMPLES:
                    result.already_visited.append(root)
                continue
            visited.add(key)
        names: list[str] = []
        subdirs: list[str] = []
        try:
            for entry in _entries(root, scandir):
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                if not is_dir:
                    names.append(entry.name)
                elif follow_links or not entry.is_symlink():
                    subdirs.append(entry.path)
                else:
                    result.n_links_not_followed += 1
                    if len(result.links_not_followed) < _MAX_EXAMPLES:
                        result.links_not_followed.append(entry.path)
        except OSError as error:
            result.unreadable.append(f"{root} ({error.strerror or error})")
            continue
        if follow_links:
            # Reversed, so that the stack pops them in sorted order.
            subdirs.sort(reverse=True)
        stack.extend(subdirs)
        roots.append((root, names))

    roots.sort(key=lambda item: item[0])
    paths = result.paths
    for root, names in roots:
        prefix = root if root.endswith(os.sep) else root + os.sep
        names.sort()
        for name in names:
            if name.lower().endswith(formats):
                paths.append(prefix + name)
            else:
                result.n_unsupported += 1
                if len(result.unsupported) < _MAX_EXAMPLES:
                    result.unsupported.append(prefix + name)
    return result


def _entries(root: str, scandir: ScanDir | None) -> list[DirEntry]:
    """The entries of `root`, listed by `scandir` (default `os.scandir`)."""
    if scandir is not None:
        return list(scandir(root))
    with os.scandir(root) as it:
        return list(it)


def _walk_chunk(
    tops: Sequence[str], formats: tuple[str, ...], follow_links: bool, scandir: ScanDir | None
) -> list[_WalkResult]:
    return [_walk_one(top, formats, follow_links, scandir) for top in tops]


def _walk_all(
    tops: list[str],
    formats: tuple[str, ...],
    follow_links: bool,
    max_workers: int,
    progress: ProgressCallback | None,
    scandir: ScanDir | None,
) -> list[_WalkResult]:
    """Walk every top folder, in parallel threads, results in input order."""
    total = len(tops)
    if max_workers == 1 or total <= 1:
        results = []
        for done, top in enumerate(tops, start=1):
            results.append(_walk_one(top, formats, follow_links, scandir))
            if progress is not None:
                progress(done, total)
        return results

    workers = min(max_workers, total)
    chunk = max(1, math.ceil(total / (workers * _TASKS_PER_WORKER)))
    starts = range(0, total, chunk)
    chunks: list[list[_WalkResult]] = [[] for _ in starts]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="index_directory") as pool:
        futures = {
            pool.submit(_walk_chunk, tops[start : start + chunk], formats, follow_links, scandir): i
            for i, start in enumerate(starts)
        }
        done = 0
        for future in as_completed(futures):
            part = future.result()
            chunks[futures[future]] = part
            done += len(part)
            if progress is not None:
                progress(done, total)
    return [result for part in chunks for result in part]


def _default_max_workers() -> int:
    # ThreadPoolExecutor's own default. Measured on 2 cores with a warm page
    # cache (100,000 files in 10,000 folders): the walk is Python-bound and
    # 1, 2, 4 or 6 threads take about the same time (0.17-0.3 s); threads pay
    # off on network or cold storage, where each scandir waits on I/O.
    return min(32, (os.cpu_count() or 1) + 4)


def _examples(items: Sequence[str], count: int, limit: int = _MAX_EXAMPLES) -> str:
    shown = ", ".join(repr(item) for item in items[:limit])
    more = count - min(len(items), limit)
    return f"{shown}, and {more} more" if more > 0 else shown


def _check_directory(directory: str | os.PathLike[str]) -> str:
    if isinstance(directory, bytes):
        raise TypeError(
            f"`directory` must be a text path, not bytes. Received: directory={directory!r}"
        )
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(
            "`directory` must be a path (a `str` or an `os.PathLike`). "
            f"Received: directory={directory!r} of type {type(directory).__name__}"
        )
    path = os.fspath(directory)
    if not isinstance(path, str):
        raise TypeError(
            f"`directory` must be a text path, not bytes. Received: directory={directory!r}"
        )
    if not path:
        raise ValueError("`directory` must not be empty. Received: directory=''")
    return path


def _list_root(root: str, scandir: ScanDir | None) -> list[DirEntry]:
    """The entries of `directory`; raises the errors that name it if it is no directory."""
    try:
        return _entries(root, scandir)
    except FileNotFoundError:
        where = "" if scandir is not None else f" (absolute path: {os.path.abspath(root)!r})"
        raise FileNotFoundError(
            f"`directory` does not exist. Received: directory={root!r}{where}"
        ) from None
    except NotADirectoryError:
        raise NotADirectoryError(
            f"`directory` must be a directory, but it is a file. Received: directory={root!r}"
        ) from None


def _check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    if isinstance(formats, str) or not isinstance(formats, (list, tuple)):
        raise TypeError(
            "`formats` must be a list or tuple of file extensions such as "
            f"('.jpg', '.png'). Received: formats={formats!r}"
        )
    if not formats:
        raise ValueError(
            "`formats` must contain at least one file extension, for example "
            f"{ALLOWED_FORMATS}. Received: formats={formats!r}"
        )
    for fmt in formats:
        if not isinstance(fmt, str) or len(fmt) < 2 or not fmt.startswith("."):
            raise ValueError(
                "Every entry of `formats` must be a file extension starting with "
                f"a dot, such as '.jpg'. Received: formats={formats!r} "
                f"(invalid entry: {fmt!r})"
            )
    # Extensions are compared with the lower-cased file name, so '.JPG' in
    # `formats` must become '.jpg' to match anything.
    return tuple(dict.fromkeys(fmt.lower() for fmt in formats))


def _check_labels(labels: object) -> NDArray[np.int64] | None:
    """Return the explicit labels as int64, or None for "inferred" / None."""
    if labels is None:
        return None
    if isinstance(labels, str):
        if labels == "inferred":
            return None
        raise ValueError(
            '`labels` must be "inferred" (labels from the class folder names), '
            "None (no labels) or a list/tuple/1-D array of integer labels, one per "
            f"file. Received: labels={labels!r}"
        )
    if not isinstance(labels, (list, tuple, np.ndarray)):
        raise ValueError(
            "`labels` argument should be a list/tuple/1-D array of integer labels, "
            "of the same size as the number of image files in the target "
            'directory. To infer the labels from the class folder names, pass `labels="inferred"`. '
            "To index the images without labels, pass `labels=None`. "
            f"Received: labels={labels!r} of type {type(labels).__name__}"
        )
    return as_labels(labels)


def _check_class_names(class_names: Sequence[str] | None, labels: object) -> list[str] | None:
    if class_names is None:
        return None
    if labels is None:
        raise ValueError(
            "When `labels=None` (no labels), argument `class_names` cannot be "
            f"specified. Received: class_names={class_names!r}"
        )
    if not (isinstance(labels, str) and labels == "inferred"):
        raise ValueError(
            "When argument `labels` is specified, argument `class_names` cannot "
            "be specified (the `class_names` will be the sorted list of labels). "
            'You can only pass `class_names` if `labels="inferred"`. '
            f"Received: class_names={class_names!r}"
        )
    if isinstance(class_names, str) or not isinstance(class_names, (list, tuple)):
        raise TypeError(
            "`class_names` must be a list or tuple of class folder names. "
            f"Received: class_names={class_names!r}"
        )
    names = list(class_names)
    bad = [name for name in names if not isinstance(name, str)]
    if bad:
        raise TypeError(
            "`class_names` must contain strings (class folder names). "
            f"Received: class_names={class_names!r} (non-string entries: {bad!r})"
        )
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ValueError(
            "`class_names` must not repeat a name. "
            f"Received: class_names={class_names!r} (repeated: {duplicates})"
        )
    return names


def _check_options(
    follow_links: bool, max_workers: int | None, progress: ProgressCallback | None
) -> int:
    check_bool("follow_links", follow_links)
    if max_workers is None:
        max_workers = _default_max_workers()
    else:
        max_workers = check_int("max_workers", max_workers, minimum=1)
    if progress is not None and not callable(progress):
        raise TypeError(
            "`progress` must be None or a callable taking (folders_done, folders_total). "
            f"Received: progress={progress!r}"
        )
    return int(max_workers)


def _list_class_folders(
    entries: list[DirEntry], formats: tuple[str, ...]
) -> tuple[list[str], list[str]]:
    """Return the sorted class folder names and the images among `entries` (of the root).

    Like Keras: every entry of the root that is a directory (symlinks to a
    directory included, whatever `follow_links` says) and whose name does
    not start with "." is a class.
    """
    folders: list[str] = []
    loose_images: list[str] = []
    for entry in entries:
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            if not entry.name.startswith("."):
                folders.append(entry.name)
        elif entry.name.lower().endswith(formats):
            loose_images.append(entry.path)
    folders.sort()
    loose_images.sort()
    return folders, loose_images


def _warn(message: str) -> None:
    # stacklevel=4: _warn <- _report <- index_directory <- the caller.
    warnings.warn(message, IndexingWarning, stacklevel=4)


def _report(
    results: list[_WalkResult],
    formats: tuple[str, ...],
    follow_links: bool,
    class_names: list[str] | None,
    loose_images: list[str],
    root: str,
) -> None:
    """Emit one warning per kind of thing that was not indexed."""
    n_unsupported = sum(r.n_unsupported for r in results)
    if n_unsupported:
        examples = [p for r in results for p in r.unsupported]
        _warn(
            f"Skipped {n_unsupported} file(s) whose extension is not in "
            f"formats={formats} (compared case-insensitively), for example: "
            f"{_examples(examples, n_unsupported)}."
        )
    if loose_images:
        _warn(
            f"Ignored {len(loose_images)} image file(s) directly inside directory={root!r}: "
            'with labels="inferred" only files inside class folders are indexed '
            f"(as in Keras). For example: {_examples(loose_images, len(loose_images))}."
        )
    if class_names is not None:
        empty = [name for name, r in zip(class_names, results, strict=True) if not r.paths]
        if empty and len(empty) < len(class_names):
            _warn(
                f"{len(empty)} class folder(s) contain no file with an extension in "
                f"formats={formats}; they stay in `class_names` (as in Keras) but "
                "have no samples, so no batch will draw them: "
                f"{_examples(empty, len(empty), _MAX_NAMED_CLASSES)}."
            )
    n_links = sum(r.n_links_not_followed for r in results)
    if n_links and not follow_links:
        examples = [p for r in results for p in r.links_not_followed]
        _warn(
            f"Did not enter {n_links} symlinked folder(s) below the class folders "
            "because follow_links=False; pass follow_links=True to index them. "
            f"For example: {_examples(examples, n_links)}."
        )
    n_visited = sum(r.n_already_visited for r in results)
    if n_visited:
        examples = [p for r in results for p in r.already_visited]
        _warn(
            f"Did not enter {n_visited} folder(s) already walked through another "
            "path (symlink cycle or several links to one folder); each folder is "
            f"indexed once per class. For example: {_examples(examples, n_visited)}."
        )
    unreadable = [p for r in results for p in r.unreadable]
    if unreadable:
        _warn(
            f"Could not read {len(unreadable)} folder(s); their files are not indexed: "
            f"{_examples(unreadable, len(unreadable))}."
        )


@overload
def index_directory(
    directory: str | os.PathLike[str],
    labels: Literal["inferred"] = ...,
    class_names: Sequence[str] | None = ...,
    formats: Sequence[str] = ...,
    follow_links: bool = ...,
    max_workers: int | None = ...,
    progress: ProgressCallback | None = ...,
    scandir: ScanDir | None = ...,
) -> tuple[list[str], NDArray[np.int64], list[str]]: ...


@overload
def index_directory(
    directory: str | os.PathLike[str],
    labels: None,
    class_names: None = ...,
    formats: Sequence[str] = ...,
    follow_links: bool = ...,
    max_workers: int | None = ...,
    progress: ProgressCallback | None = ...,
    scandir: ScanDir | None = ...,
) -> tuple[list[str], None, None]: ...


@overload
def index_directory(
    directory: str | os.PathLike[str],
    labels: ExplicitLabels,
    class_names: None = ...,
    formats: Sequence[str] = ...,
    follow_links: bool = ...,
    max_workers: int | None = ...,
    progress: ProgressCallback | None = ...,
    scandir: ScanDir | None = ...,
) -> tuple[list[str], NDArray[np.int64], list[str]]: ...


def index_directory(
    directory: str | os.PathLike[str],
    labels: Literal["inferred"] | ExplicitLabels | None = "inferred",
    class_names: Sequence[str] | None = None,
    formats: Sequence[str] = ALLOWED_FORMATS,
    follow_links: bool = False,
    max_workers: int | None = None,
    progress: ProgressCallback | None = None,
    scandir: ScanDir | None = None,
) -> tuple[list[str], NDArray[np.int64] | None, list[str] | None]:
    """List the image files of a directory, with their integer labels.

    The directory is read as Keras 3's `image_dataset_from_directory` reads
    it, and with `labels="inferred"` or explicit labels the returned paths
    and labels are equal to those of Keras'
    `keras.src.utils.dataset_utils.index_directory(..., shuffle=False)`:

    ```
    directory/
    ...class_a/
    ......a_image_1.jpg
    ......nested/a_image_2.JPG
    ...class_b/
    ......b_image_1.jpg
    ```

    - Class folders are the entries of `directory` that are directories
      (a symlink to a directory counts, whatever `follow_links` is) and
      whose name does not start with "."; they are sorted by name (code
      point order) and class `i` is the `i`-th of them.
    - Inside a class folder the walk is recursive. Files are ordered as
      Keras orders them: by the path of the folder that holds them, then
      by name. Hidden files and hidden sub-folders inside a class folder
      are indexed like any other (Keras does the same).
    - A file is indexed when its lower-cased name ends with one of
      `formats`. Other files are skipped and counted in one
      `IndexingWarning`.
    - Class folders without any image stay in `class_names` (as in Keras)
      and are named in an `IndexingWarning`; they simply have no samples.
    - With `labels="inferred"`, images directly inside `directory` are not
      indexed (as in Keras) and an `IndexingWarning` says how many.
    - Symlinked folders below a class folder are entered only with
      `follow_links=True` (an `IndexingWarning` counts the ones that were
      not). With `follow_links=True` each directory, identified by
      `(st_dev, st_ino)`, is walked at most once per class folder (through
      the first path met in a depth-first walk in name order), so symlink
      cycles terminate (Keras' `os.walk` goes round a cycle until the paths
      are too long); the folders not entered again are counted in an
      `IndexingWarning`.
    - Folders that cannot be read are reported in an `IndexingWarning`
      (Keras skips them silently).

    Class folders are walked in parallel threads; the result does not depend
    on `max_workers`.

    Args:
        directory: Root directory (a `str` or `os.PathLike`). The returned
            paths start with it, exactly as given (not made absolute).
        labels: `"inferred"` (default) to label files by their class folder;
            a list, tuple or 1-D integer array with one label per file, in
            the order of a sorted walk of the whole of `directory` (the
            order this function returns, as in Keras; class folders play no
            role then); or `None` to index the files of the whole of
            `directory` without labels (as in Keras, the labels and class
            names returned are then `None`).
        class_names: Only with `labels="inferred"`: the class folder names in
            the order that sets the label ids. It must name every class
            folder exactly once and nothing else (Keras also accepts a
            subset; here a subset is an error, so that no class goes
            missing unnoticed).
        formats: File extensions to index, compared case-insensitively.
            Defaults to `ALLOWED_FORMATS`.
        follow_links: Whether to enter symlinked folders below a class
            folder (or below `directory` when labels are not inferred).
        max_workers: Number of threads walking class folders in parallel.
            `None` uses `min(32, os.cpu_count() + 4)`; `1` walks in the
            calling thread.
        progress: Optional callable, called in the calling thread as
            `progress(folders_done, folders_total)` as class folders are
            walked (one folder in total when labels are not inferred).
        scandir: Optional function listing a directory like `os.scandir`
            (see `ScanDir`), for storage that `os` cannot read, e.g. one
            built on `tf.io.gfile` for `gs://` paths. Paths are joined with
            `os.path.join`. `None` (default) uses `os.scandir`.

    Returns:
        Tuple `(file_paths, labels, class_names)`: `file_paths` a list of
        paths (each one `os.path.join(directory, relative path)`), `labels`
        an int64 numpy array of the same length, `class_names` a list of
        strings. With `labels="inferred"`, `labels[i]` indexes
        `class_names`. With explicit labels, `class_names` is
        `[str(label) for label in sorted(set(labels))]` (as in Keras). With
        `labels=None`, `labels` and `class_names` are `None`.

    Raises:
        FileNotFoundError: If `directory` does not exist.
        NotADirectoryError: If `directory` is a file.
        TypeError: If `directory`, `formats`, `class_names`,
            `follow_links`, `max_workers` or `progress` has the wrong type,
            or explicit labels are not integers (e.g. floats or strings).
        ValueError: If `labels` is not `"inferred"`, `None`, a list, a tuple
            or a 1-D array, if explicit labels are not one-dimensional or do
            not have one entry per file found, if `class_names` is given
            with labels that are not inferred, repeats a name or does not
            match the class folders, if `formats` is empty or holds
            something that is not an extension, if `max_workers` is below
            1, or if no image is found.
    """
    root = _check_directory(directory)
    fmts = _check_formats(formats)
    explicit = _check_labels(labels)
    wanted_names = _check_class_names(class_names, labels)
    workers = _check_options(follow_links, max_workers, progress)
    if scandir is not None and not callable(scandir):
        raise TypeError(
            "`scandir` must be None or a function listing a directory like `os.scandir`. "
            f"Received: scandir={scandir!r}"
        )
    inferred = isinstance(labels, str)
    root_entries = _list_root(root, scandir)

    loose_images: list[str] = []
    names: list[str] | None = None
    if inferred:
        names, loose_images = _list_class_folders(root_entries, fmts)
        if wanted_names is not None:
            found, wanted = set(names), set(wanted_names)
            missing = [name for name in wanted_names if name not in found]
            extra = [name for name in names if name not in wanted]
            if missing or extra:
                raise ValueError(
                    "The `class_names` passed do not match the names of the class "
                    f"folders of directory={root!r}: "
                    + (f"no folder for {missing}" if missing else "")
                    + ("; " if missing and extra else "")
                    + (f"folders not listed: {extra}" if extra else "")
                    + f". Expected the same names as {names} in any order. "
                    f"Received: class_names={list(wanted_names)}"
                )
            names = wanted_names
        tops = [os.path.join(root, name) for name in names]
    else:
        tops = [root]

    results = _walk_all(tops, fmts, bool(follow_links), workers, progress, scandir)
    _report(results, fmts, bool(follow_links), names, loose_images, root)

    file_paths = [path for result in results for path in result.paths]
    if not file_paths:
        hint = ""
        if inferred and not tops:
            hint = " It has no class folder (sub-directory not starting with '.')."
        if loose_images:
            hint += (
                f" {len(loose_images)} image(s) lie directly in it: with "
                'labels="inferred" images must be inside one folder per class.'
            )
        raise ValueError(f"No images found in directory {root!r}. Allowed formats: {fmts}.{hint}")

    if inferred:
        assert names is not None
        counts = np.fromiter((len(r.paths) for r in results), dtype=np.int64, count=len(results))
        inferred_labels = np.repeat(np.arange(len(names), dtype=np.int64), counts)
        return file_paths, inferred_labels, names
    if explicit is None:
        return file_paths, None, None
    if len(explicit) != len(file_paths):
        raise ValueError(
            "Expected the length of `labels` to match the number of files in the "
            f"target directory. len(labels) is {len(explicit)} while we found "
            f"{len(file_paths)} files (formats={fmts}) in directory {root!r}."
        )
    return file_paths, explicit, [str(int(label)) for label in np.unique(explicit)]
