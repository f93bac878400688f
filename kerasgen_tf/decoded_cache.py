"""The store of a per-sample decoded cache: one row per sample, in memory or on disk.

A dataset built with `cache="memory"` or `cache="<path>"` keeps every image
it decodes, after decoding and resizing, in one row of a `DecodedCache`
(row = sample; never a batch), and its pipeline gathers later epochs'
planned batches from it (`kerasgen_tf._cached_images`). `dataset.decoded_cache`
is this object.

- **Memory** (`cache="memory"`): a `tf.Variable` of shape
  `(rows, *image_shape)` in the storage dtype and a boolean `filled`
  variable, both on the host CPU, never mirrored by a `tf.distribute`
  strategy in scope (one copy per process). A cached batch is a
  `tf.gather` inside the graph: no Python, no GIL.
- **Disk** (`cache="/data/train.kgcache"`): a memory-mapped `CacheFile`
  (`balanced_sampler.cache_file`: keyed by the files' paths, sizes and
  modification times and the image options; rows recorded as complete
  only once synced, so a killed run never leaves a row a later run trusts;
  one writer per file). Rows are read by numpy from the mapping.

Storage dtype (`balanced_sampler.decoded_cache.storage_dtype`): uint8 for
"bilinear", "nearest", "area" and "gaussian" (whose outputs stay within
0..255): every value rounded to the nearest integer, within 0.5 of the
uncached float32 image, a quarter of its memory; float16 for the kernels
that overshoot 0..255 ("bicubic", "lanczos3", "lanczos5", "mitchellcubic"),
within 0.125 for values below 512. Every epoch, the first included,
yields the stored values, so all epochs see identical pixels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from balanced_sampler.cache_file import CacheFile, cache_key
from balanced_sampler.decoded_cache import (
    MEMORY,
    CacheLayout,
    cache_layout,
    check_fits_in_memory,
)

__all__ = ["DecodedCache", "open_decoded_cache", "to_storage", "to_storage_tensor"]


def to_storage(images: Any, dtype: str) -> np.ndarray[Any, Any]:
    """Converts float images to the cache's dtype, as the pipeline does (numpy).

    uint8: `floor(x + 0.5)` clipped to 0..255 (x is within 0..255 for the
    methods stored as uint8, so every value moves by at most 0.5); float16
    and float32: rounded to nearest.

    Args:
        images: float images.
        dtype: "uint8", "float16" or "float32".

    Returns:
        The images in `dtype`.
    """
    values = np.asarray(images, dtype=np.float32)
    if dtype == "uint8":
        stored: np.ndarray[Any, Any] = np.clip(values + np.float32(0.5), 0, 255).astype(np.uint8)
        return stored
    return values.astype(dtype)


def to_storage_tensor(images: tf.Tensor, dtype: str) -> tf.Tensor:
    """`to_storage` in TensorFlow ops (the same values)."""
    if dtype == "uint8":
        return tf.cast(tf.clip_by_value(images + 0.5, 0.0, 255.0), tf.uint8)
    return tf.cast(images, tf.as_dtype(dtype))


def _host_variable(value: tf.Tensor, name: str) -> tf.Variable:
    """A host variable that no `tf.distribute` strategy in scope turns into a mirrored one.

    `tf.Variable(...)` goes through the variable creators of the strategy in
    scope (under `MirroredStrategy` the cache would be copied to every
    replica's device); constructing the `ResourceVariable` class directly
    does not.
    """
    from tensorflow.python.ops.resource_variable_ops import ResourceVariable

    return ResourceVariable(value, trainable=False, name=name)


class DecodedCache:
    """Decoded images, one row per sample, in memory or in a cache file.

    Build it with `open_decoded_cache`. The pipeline reads and fills it;
    the methods here are for people and tests.

    Attributes:
        layout: The rows (`balanced_sampler.decoded_cache.CacheLayout`):
            their number, the image shape and the storage dtype.
        kind: "memory" or "disk".
        file: The `CacheFile` of a disk cache (its `role`: "writer",
            "reader" or "private"), else None.
    """

    def __init__(self, layout: CacheLayout, file: CacheFile | None = None) -> None:
        self.layout = layout
        self.file = file
        self.kind = "memory" if file is None else "disk"
        self._images: tf.Variable | None = None
        self._filled: tf.Variable | None = None
        if file is None:
            with tf.init_scope(), tf.device("/CPU:0"):
                shape = (layout.num_images, *layout.image_shape)
                dtype = tf.as_dtype(layout.dtype)
                # Not zeroed: every row is written before its flag is set.
                empty = tf.raw_ops.Empty(shape=shape, dtype=dtype, init=False)
                self._images = _host_variable(empty, "decoded_cache")
                del empty
                self._filled = _host_variable(tf.zeros((layout.num_images,), tf.bool), "filled")

    def __repr__(self) -> str:
        where = "memory" if self.file is None else f"{self.file.path!r} ({self.file.role})"
        return (
            f"DecodedCache({where}, {self.layout.describe()}, "
            f"filled {self.num_filled}/{self.layout.num_images})"
        )

    # ------------------------------------------------------------------ for people

    @property
    def num_filled(self) -> int:
        """How many rows hold their image."""
        if self.file is not None:
            return self.file.num_filled
        assert self._filled is not None
        return int(tf.math.count_nonzero(self._filled))

    @property
    def filled(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """A boolean copy: which rows hold their image."""
        if self.file is not None:
            return np.array(self.file.filled)
        return ~self.missing(np.arange(self.layout.num_images))

    def read(self, rows: Sequence[int] | np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The stored images of `rows`, as float32 (what the pipeline yields).

        Args:
            rows: Row indices (filled ones).

        Returns:
            float32 images `(len(rows), *layout.image_shape)`.

        Raises:
            ValueError: If a row is not filled.
        """
        index = np.asarray(rows, dtype=np.int64)
        missing = self.missing(index)
        if missing.any():
            raise ValueError(
                f"Rows {index[missing][:10].tolist()} of the cache are not filled yet."
            )
        return self.take(index).astype(np.float32)

    def close(self) -> None:
        """Commits and closes a disk cache, releasing its lock (a memory cache: no-op).

        A disk cache is also closed at exit. Closing it while a dataset
        still reads from it makes that dataset fail.
        """
        if self.file is not None:
            self.file.close()

    # ------------------------------------------------------------------ for the pipeline

    def missing(self, rows: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Whether each of `rows` is not filled yet (from Python)."""
        if self.file is not None:
            missing: np.ndarray[Any, np.dtype[np.bool_]] = ~self.file.filled[rows]
            return missing
        assert self._filled is not None
        with tf.device("/CPU:0"):
            filled = tf.gather(self._filled, tf.constant(rows, tf.int64))
        return ~np.asarray(filled)

    def take(self, rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The stored values of `rows` in the storage dtype (from Python).

        Rows that are not filled hold zeros (disk) or arbitrary values (memory).
        """
        if self.file is not None:
            filled = self.file.filled[rows]
            if filled.all():
                return self.file.read(rows)
            values = np.zeros((len(rows), *self.layout.image_shape), self.layout.dtype)
            values[filled] = self.file.read(rows[filled])
            return values
        assert self._images is not None
        with tf.device("/CPU:0"):
            return np.asarray(tf.gather(self._images, tf.constant(rows, tf.int64)))

    def put(self, rows: np.ndarray[Any, Any], values: Any) -> None:
        """Stores `values` (in the storage dtype) in `rows` and marks them filled (from Python).

        The images are written before the rows are marked, so a batch that
        sees a row filled reads its image. Rows already filled keep their
        image (a disk cache) or get the same one again (memory).

        Args:
            rows: Distinct row indices.
            values: `(len(rows), *layout.image_shape)` in `layout.dtype`.
        """
        if len(rows) == 0:
            return
        if self.file is not None:
            self.file.write(rows, np.asarray(values))
            return
        assert self._images is not None
        assert self._filled is not None
        with tf.device("/CPU:0"):
            index = tf.constant(rows, tf.int64)
            self._images.scatter_update(tf.IndexedSlices(tf.convert_to_tensor(values), index))
            self._filled.scatter_update(tf.IndexedSlices(tf.ones_like(index, tf.bool), index))

    def store(self, rows: Sequence[int] | np.ndarray[Any, Any], images: Any) -> None:
        """Stores float32 images (converted to the storage dtype) in `rows`.

        Args:
            rows: Row indices.
            images: float32 images `(len(rows), *layout.image_shape)`.
        """
        index, first = np.unique(np.asarray(rows, dtype=np.int64), return_index=True)
        self.put(index, to_storage(np.asarray(images)[first], self.layout.dtype))

    def gathered(self, rows: tf.Tensor) -> tf.Tensor:
        """Graph op (memory cache): the stored images of `rows`, as float32."""
        assert self._images is not None
        return tf.cast(tf.gather(self._images, rows), tf.float32)

    def scattered(self, rows: tf.Tensor, values: tf.Tensor) -> tf.Tensor:
        """Graph op (memory cache): stores `values` (storage dtype) in `rows`, then marks them.

        The images are written before their flags, so a batch that sees a
        row filled gathers its image.

        Returns:
            True, once both are written.
        """
        assert self._images is not None
        assert self._filled is not None
        written = tf.raw_ops.ResourceScatterUpdate(
            resource=self._images.handle, indices=rows, updates=values
        )
        with tf.control_dependencies([written]):
            marked = tf.raw_ops.ResourceScatterUpdate(
                resource=self._filled.handle, indices=rows, updates=tf.ones_like(rows, tf.bool)
            )
        with tf.control_dependencies([marked]):
            return tf.constant(True)

    def all_filled(self, rows: tf.Tensor) -> tf.Tensor:
        """Graph op (memory cache): whether every one of `rows` is filled."""
        assert self._filled is not None
        return tf.reduce_all(tf.gather(self._filled, rows))


def open_decoded_cache(
    cache: str,
    file_paths: Sequence[str],
    image_shape: Sequence[int],
    interpolation: str,
    image_options: Mapping[str, Any],
    available_memory: int | None = None,
) -> DecodedCache:
    """Opens the cache of `file_paths` (row i: `file_paths[i]`), checking its size first.

    Args:
        cache: "memory" or the path of a cache file (as
            `balanced_sampler.decoded_cache.check_cache` returns it).
        file_paths: One path per row.
        image_shape: The shape of one output image.
        interpolation: The resizing method (decides the storage dtype).
        image_options: Every option that changes the pixels, as plain JSON
            values (part of a cache file's key, with the files' paths,
            sizes and modification times).
        available_memory: Bytes available for a memory cache (default: read
            from the system).

    Returns:
        The `DecodedCache`.

    Raises:
        MemoryError: If a memory cache cannot fit in the available memory
            (before anything is allocated).
        FileExistsError: If the path exists and is not a kerasgen cache file.
        OSError: If the disk has no room for the cache file.
    """
    layout = cache_layout(len(file_paths), image_shape, interpolation)
    if cache == MEMORY:
        check_fits_in_memory(layout, available_memory)
        return DecodedCache(layout)
    key = cache_key(file_paths, layout, image_options)
    description = {"files": len(file_paths), **dict(image_options)}
    file = CacheFile.open(os.fspath(cache), layout, key, description=description)
    return DecodedCache(layout, file)
