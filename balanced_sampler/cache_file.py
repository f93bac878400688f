"""A decoded cache on disk: one memory-mapped file of fixed-size rows.

```
[header: magic, JSON (format, key, layout, offsets, description), padded to 4096 bytes]
[data:   N rows of row_nbytes, row i = the image of sample i]
[records: N bytes, record i = 1 once row i is complete and on disk]
```

**Key.** `cache_key` hashes the layout, the image options and, for every
file, its path, size and modification time. A file whose key matches is
reused by the next run; any change (a file added, removed, edited or
touched; another image size, colour mode, interpolation...) gives another
key and the file is rebuilt, with a `DecodedCacheWarning`.

**Completeness records, not a half-written file.** Rows are written into
the mapping as images are decoded; a background thread periodically (and
at `close()`, at exit and when the last row is written) syncs the data to
disk (`fsync`) and only then sets those rows' records. A later run trusts
exactly the rows whose record is set: a run killed at any moment leaves
rows that are either complete and recorded, or not recorded and decoded
again. Rows written since the last sync are lost with the process, never
trusted half-written. So a run that stops early (or fixed-mode epochs that
have not yet shown every image) still leaves its finished rows to the next
run. A new file is created under a temporary name and renamed into place
atomically; an existing file that is not a kerasgen cache is never
overwritten.

**Two processes, one file.** A lock file (`<path>.lock`, `flock`) admits
one writer. The first process to open the file takes the lock and fills
it. A second process (another run, another `tf.distribute` worker on the
same host):

- reads the file directly if it is complete for its key (complete rows
  are never written again, so no lock is needed);
- otherwise fills a private cache of its own, an unlinked temporary file
  next to it (removed by the system when the process ends, even if it is
  killed), and warns once. It never waits: a training run of hours
  cannot block another.

The lock is released when the writer closes the file or dies, so the next
run becomes the writer. Within one process, opening the same path with the
same key returns the same object.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import secrets
import shutil
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from balanced_sampler.decoded_cache import CacheLayout, DecodedCacheWarning, format_bytes

__all__ = ["FORMAT_VERSION", "CacheFile", "cache_key", "file_signatures"]

FORMAT_VERSION = 1
_MAGIC = b"KERASGEN-CACHE\x00\x01"
_HEADER_BYTES = 4096
_COMMIT_INTERVAL = 10.0

Role = Literal["writer", "reader", "private"]

try:  # POSIX
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True


def file_signatures(
    paths: Iterable[str], stat: Callable[[str], os.stat_result] = os.stat
) -> list[tuple[int, int]]:
    """The (size, modification time in ns) of every file, (-1, -1) if it is missing.

    Args:
        paths: The files.
        stat: The stat function (a parameter for tests).

    Returns:
        One `(st_size, st_mtime_ns)` per path.
    """
    signatures = []
    for path in paths:
        try:
            result = stat(path)
        except OSError:
            signatures.append((-1, -1))
        else:
            signatures.append((int(result.st_size), int(result.st_mtime_ns)))
    return signatures


def cache_key(
    paths: Iterable[str],
    layout: CacheLayout,
    image_options: Mapping[str, Any],
    signatures: Iterable[tuple[int, int]] | None = None,
) -> str:
    """The key of a cache: what the cached images depend on, hashed.

    Args:
        paths: One path per row, in row order.
        layout: The cache layout (row count, image shape, dtype).
        image_options: Every option that changes the pixels (image size,
            colour mode, interpolation, crop / pad, data format), as plain
            JSON values.
        signatures: `(size, mtime_ns)` per path (default:
            `file_signatures(paths)`).

    Returns:
        A hex SHA-256 digest.
    """
    paths = list(paths)
    if signatures is None:
        signatures = file_signatures(paths)
    digest = hashlib.sha256()
    head = {
        "format": FORMAT_VERSION,
        "shape": [layout.num_images, *layout.image_shape],
        "dtype": layout.dtype,
        "image_options": dict(image_options),
    }
    digest.update(json.dumps(head, sort_keys=True).encode())
    for path, (size, mtime) in zip(paths, signatures, strict=True):
        digest.update(f"\n{size} {mtime} ".encode())
        digest.update(path.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _offsets(layout: CacheLayout) -> tuple[int, int, int]:
    """(data offset, records offset, file size)."""
    data = _HEADER_BYTES
    records = data + layout.nbytes
    return data, records, records + layout.num_images


def _header(layout: CacheLayout, key: str, description: Mapping[str, Any]) -> bytes:
    data, records, size = _offsets(layout)
    body = json.dumps(
        {
            "format": FORMAT_VERSION,
            "key": key,
            "shape": [layout.num_images, *layout.image_shape],
            "dtype": layout.dtype,
            "data_offset": data,
            "records_offset": records,
            "file_size": size,
            "description": dict(description),
        },
        sort_keys=True,
    ).encode()
    header = _MAGIC + len(body).to_bytes(8, "little") + body
    if len(header) > _HEADER_BYTES:
        raise ValueError("The cache description is too long for the file header.")
    return header.ljust(_HEADER_BYTES, b" ")


def _read_header(path: str) -> dict[str, Any] | None:
    """The header of a cache file; None if it is not a kerasgen cache file.

    Raises:
        OSError: If the file cannot be read.
    """
    with open(path, "rb") as file:
        raw = file.read(_HEADER_BYTES)
    if not raw.startswith(_MAGIC):
        return None
    start = len(_MAGIC)
    length = int.from_bytes(raw[start : start + 8], "little")
    try:
        header = json.loads(raw[start + 8 : start + 8 + length])
    except ValueError:
        return None
    return header if isinstance(header, dict) else None


def _matches(header: dict[str, Any], layout: CacheLayout, key: str, size: int) -> bool:
    data, records, expected = _offsets(layout)
    return bool(
        header.get("format") == FORMAT_VERSION
        and header.get("key") == key
        and header.get("shape") == [layout.num_images, *layout.image_shape]
        and header.get("dtype") == layout.dtype
        and header.get("data_offset") == data
        and header.get("records_offset") == records
        and size == expected
    )


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):  # not supported everywhere (e.g. Windows)
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _reserve(fd: int, size: int, path: str) -> None:
    """Gives the file its full size, reserving the disk space where possible."""
    folder = os.path.dirname(os.path.abspath(path))
    free = shutil.disk_usage(folder).free
    if size > free:
        raise OSError(
            errno.ENOSPC,
            f"The cache file needs {format_bytes(size)} but only {format_bytes(free)} is "
            f"free on the disk of {folder!r}. Choose another path for `cache` or a "
            "smaller `image_size`.",
        )
    try:
        os.posix_fallocate(fd, 0, size)
    except (AttributeError, OSError):  # no fallocate here: a sparse file
        os.ftruncate(fd, size)


def _sync(fd: int, mapping: Any) -> None:
    """Makes the writes through `mapping` durable.

    On Linux `fsync` writes a file's dirty pages, those written through a
    shared mapping included, without holding the GIL; elsewhere `msync`.
    """
    if sys.platform.startswith("linux"):
        os.fsync(fd)
    else:  # pragma: no cover
        mapping.flush()


_OPEN: weakref.WeakValueDictionary[str, CacheFile] = weakref.WeakValueDictionary()
_OPEN_LOCK = threading.RLock()


class _Rows:
    """The mapped rows of a cache file and their state (what `CacheFile` wraps).

    Kept apart from `CacheFile` so that `weakref.finalize` can commit and
    release them when the `CacheFile` is collected or the process exits.
    """

    def __init__(
        self,
        role: Role,
        fd: int,
        mapping: Any,
        layout: CacheLayout,
        commit_interval: float,
    ) -> None:
        data_offset, records_offset, size = _offsets(layout)
        self.role: Role = role
        self.fd = fd
        self.lock_fd: int | None = None
        self.mapping = mapping
        self.view = memoryview(mapping)
        shape = (layout.num_images, *layout.image_shape)
        self.data: np.ndarray[Any, Any] = np.frombuffer(
            self.view[data_offset:records_offset], dtype=layout.dtype
        ).reshape(shape)
        self.records: npt.NDArray[np.uint8] | None = None
        self.filled = np.zeros(layout.num_images, dtype=bool)
        if role != "private":
            self.records = np.frombuffer(self.view[records_offset:size], dtype=np.uint8)
            self.filled |= self.records.astype(bool)
        self.pending: list[npt.NDArray[np.int64]] = []
        self.lock = threading.Lock()
        self.commit_lock = threading.Lock()
        self.wake = threading.Event()
        self.closed = False
        self.committer: threading.Thread | None = None
        if role == "writer":
            self.committer = threading.Thread(
                target=self._commit_loop, args=(commit_interval,), daemon=True
            )
            self.committer.start()

    def commit(self) -> None:
        if self.role != "writer" or self.records is None:
            return
        with self.commit_lock:
            with self.lock:
                pending, self.pending = self.pending, []
            if not pending or self.closed:
                return
            _sync(self.fd, self.mapping)  # the rows reach the disk ...
            self.records[np.concatenate(pending)] = 1  # ... before their records
            _sync(self.fd, self.mapping)

    def _commit_loop(self, interval: float) -> None:
        while not self.closed:
            self.wake.wait(interval)
            self.wake.clear()
            with contextlib.suppress(Exception):  # a failed sync must not stop training
                self.commit()

    def close(self) -> None:
        if self.closed:
            return
        with contextlib.suppress(Exception):
            self.commit()
        self.closed = True
        self.wake.set()
        if self.committer is not None and self.committer is not threading.current_thread():
            self.committer.join(timeout=60)
        self.data = np.zeros((0,), np.uint8)
        self.records = None
        with contextlib.suppress(BufferError, ValueError):
            self.view.release()
            self.mapping.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)
        if self.lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.lock_fd)  # releases the lock
            self.lock_fd = None


class CacheFile:
    """A memory-mapped cache file of fixed-size rows with per-row completeness records.

    Open it with `CacheFile.open`. `filled[i]` says whether row `i` holds
    its image; `read(rows)` returns rows, `write(rows, values)` stores them.
    All methods are thread-safe (`tf.data` calls them from parallel map
    threads).

    Attributes:
        path: The cache file.
        layout: The rows it holds.
        key: What the rows depend on (see `cache_key`).
        role: "writer" (this process fills the shared file), "reader" (the
            file is complete; read only) or "private" (another process is
            filling the file; this process fills its own temporary copy).
    """

    def __init__(self, path: str, layout: CacheLayout, key: str, rows: _Rows) -> None:
        self.path = path
        self.layout = layout
        self.key = key
        self.role: Role = rows.role
        self._rows = rows
        self._finalizer = weakref.finalize(self, rows.close)

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        layout: CacheLayout,
        key: str,
        *,
        description: Mapping[str, Any] | None = None,
        commit_interval: float = _COMMIT_INTERVAL,
    ) -> CacheFile:
        """Opens (reusing, creating or rebuilding) the cache file at `path`.

        Args:
            path: The cache file; its folder must exist.
            layout: The rows the cache holds.
            key: What they depend on (`cache_key`); a file with another key
                is rebuilt.
            description: Plain JSON values stored in the header for people
                (e.g. the image options and the number of files).
            commit_interval: Seconds between syncs of the written rows.

        Returns:
            The `CacheFile`; see `role` for what this process does with it.

        Raises:
            FileExistsError: If `path` exists and is not a kerasgen cache file.
            OSError: If the disk has no room for the file, or it cannot be
                written.
        """
        path = os.path.abspath(os.fspath(path))
        with _OPEN_LOCK:
            existing = _OPEN.get(path)
            if existing is not None and not existing.closed:
                if existing.key == key and existing.layout == layout:
                    return existing
                warnings.warn(
                    f"The cache file {path!r} is already open in this process for other "
                    "files or image options; this dataset keeps its own temporary cache "
                    "instead (deleted when the process ends).",
                    DecodedCacheWarning,
                    stacklevel=2,
                )
                return cls._private(path, layout, key)
            opened = cls._open(path, layout, key, dict(description or {}), commit_interval)
            if opened.role != "private":
                _OPEN[path] = opened
            return opened

    @classmethod
    def _open(
        cls,
        path: str,
        layout: CacheLayout,
        key: str,
        description: dict[str, Any],
        commit_interval: float,
    ) -> CacheFile:
        cls._existing_header(path)  # refuses a file that is not a cache, before anything
        lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(lock_fd):
            os.close(lock_fd)
            return cls._open_locked_by_other(path, layout, key)
        try:
            os.ftruncate(lock_fd, 0)
            os.pwrite(lock_fd, f"{os.getpid()}\n".encode(), 0)
            cls._remove_leftovers(path)
            header = cls._existing_header(path)
            if header is None or not _matches(header, layout, key, os.path.getsize(path)):
                if header is not None:
                    warnings.warn(
                        f"The cache file {path!r} was built for other files or image "
                        f"options ({header.get('description', {})}); rebuilding it.",
                        DecodedCacheWarning,
                        stacklevel=4,
                    )
                cls._create(path, layout, key, description)
            store = cls._map(path, layout, key, "writer", commit_interval)
        except BaseException:
            os.close(lock_fd)
            raise
        store._rows.lock_fd = lock_fd
        return store

    @staticmethod
    def _existing_header(path: str) -> dict[str, Any] | None:
        if not os.path.exists(path):
            return None
        header = _read_header(path)
        if header is None:
            raise FileExistsError(
                f"The cache path {path!r} exists and is not a kerasgen cache file; it is "
                "left untouched. Choose another path for `cache`, or delete the file."
            )
        return header

    @classmethod
    def _open_locked_by_other(cls, path: str, layout: CacheLayout, key: str) -> CacheFile:
        holder = (_read(path + ".lock") or "").strip() or "?"
        header = _read_header(path) if os.path.exists(path) else None
        if header is not None and _matches(header, layout, key, os.path.getsize(path)):
            store = cls._map(path, layout, key, "reader", _COMMIT_INTERVAL)
            if store.complete:
                return store
            store.close()
        warnings.warn(
            f"The cache file {path!r} is being filled by another process (pid {holder}); "
            "this process keeps its own temporary cache next to it instead (deleted when "
            "the process ends). The next run reuses the shared file.",
            DecodedCacheWarning,
            stacklevel=4,
        )
        return cls._private(path, layout, key)

    @classmethod
    def _private(cls, path: str, layout: CacheLayout, key: str) -> CacheFile:
        temp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.private"
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.unlink(temp)  # the space is freed when the process ends, however it ends
            _reserve(fd, _offsets(layout)[2], temp)
            return cls._from_fd(fd, path, layout, key, "private", _COMMIT_INTERVAL)
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _remove_leftovers(path: str) -> None:
        """Deletes files a killed writer left while creating the cache (only writers make them)."""
        for leftover in glob.glob(glob.escape(path) + ".*.new"):
            with contextlib.suppress(OSError):
                os.unlink(leftover)

    @staticmethod
    def _create(path: str, layout: CacheLayout, key: str, description: dict[str, Any]) -> None:
        """Writes an empty cache file (no row complete) and renames it into place."""
        temp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.new"
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _reserve(fd, _offsets(layout)[2], path)
            os.pwrite(fd, _header(layout, key, description), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        os.close(fd)
        os.replace(temp, path)
        _fsync_dir(path)

    @classmethod
    def _map(
        cls, path: str, layout: CacheLayout, key: str, role: Role, commit_interval: float
    ) -> CacheFile:
        fd = os.open(path, os.O_RDWR if role == "writer" else os.O_RDONLY)
        try:
            return cls._from_fd(fd, path, layout, key, role, commit_interval)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def _from_fd(
        cls, fd: int, path: str, layout: CacheLayout, key: str, role: Role, commit_interval: float
    ) -> CacheFile:
        import mmap

        access = mmap.ACCESS_READ if role == "reader" else mmap.ACCESS_WRITE
        mapping = mmap.mmap(fd, _offsets(layout)[2], access=access)
        return cls(path, layout, key, _Rows(role, fd, mapping, layout, commit_interval))

    # ------------------------------------------------------------------ rows

    @property
    def closed(self) -> bool:
        """Whether the file was closed."""
        return self._rows.closed

    @property
    def filled(self) -> npt.NDArray[np.bool_]:
        """Whether each row holds its image (a read-only view)."""
        view: npt.NDArray[np.bool_] = self._rows.filled.view()
        view.flags.writeable = False
        return view

    @property
    def num_filled(self) -> int:
        """The number of rows that hold their image."""
        return int(np.count_nonzero(self._rows.filled))

    @property
    def complete(self) -> bool:
        """Whether every row holds its image."""
        return bool(self._rows.filled.all())

    def read(self, rows: npt.ArrayLike) -> np.ndarray[Any, Any]:
        """Returns a copy of `rows` (they must be filled).

        Args:
            rows: Row indices (int array).

        Returns:
            An array `(len(rows), *layout.image_shape)` of `layout.dtype`.

        Raises:
            ValueError: If a row is not filled, or the file is closed.
        """
        index = np.asarray(rows, dtype=np.int64)
        self._check_open()
        filled = self._rows.filled[index]
        if not filled.all():
            missing = index[~filled]
            raise ValueError(f"Rows {missing[:10].tolist()} of the cache are not filled yet.")
        return self._rows.data[index]

    def write(self, rows: npt.ArrayLike, values: npt.ArrayLike) -> None:
        """Stores images in `rows` (rows already filled are left as they are).

        Args:
            rows: Row indices (int array); repeats are allowed.
            values: Images `(len(rows), *layout.image_shape)`, converted to
                `layout.dtype`.

        Raises:
            ValueError: If the shapes do not match, or the file is a
                complete read-only cache or closed.
        """
        index = np.asarray(rows, dtype=np.int64)
        images = np.asarray(values)
        expected = (len(index), *self.layout.image_shape)
        if images.shape != expected:
            raise ValueError(f"Expected images of shape {expected}, got {images.shape}.")
        self._check_open()
        if self.role == "reader":
            raise ValueError(f"The cache file {self.path!r} is complete and read-only here.")
        state = self._rows
        new = ~state.filled[index]
        if not new.any():
            return
        index, images = index[new], images[new]
        # Data first, then the flag: whoever sees the flag sees the row.
        state.data[index] = images.astype(self.layout.dtype, copy=False)
        with state.lock:
            state.filled[index] = True
            if self.role == "writer":
                state.pending.append(index)
                if state.filled.all():
                    state.wake.set()  # complete: record it now

    def commit(self) -> None:
        """Syncs the rows written so far to disk, then records them as complete.

        Called every `commit_interval` seconds by a background thread, when
        the last row is written, at `close()` and at exit. Only a writer
        records anything.
        """
        self._rows.commit()

    def _check_open(self) -> None:
        if self._rows.closed:
            raise ValueError(f"The cache file {self.path!r} is closed.")

    def close(self) -> None:
        """Commits the written rows and releases the file and its lock."""
        with _OPEN_LOCK:
            if _OPEN.get(self.path) is self:
                del _OPEN[self.path]
        self._finalizer()

    def __enter__(self) -> CacheFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"CacheFile({self.path!r}, {self.layout.describe()}, role={self.role!r}, "
            f"filled={self.num_filled}/{self.layout.num_images})"
        )


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError):
        return None
