"""A per-sample cache of decoded images, read by the planned-batch stage of the pipeline.

Every element of the pipeline is one planned batch of int64 sample indices;
one map stage turns it into the batch of images. The cache wraps that stage:

```
plan source (live sampler or materialised epochs; untouched by the cache)
  -> map(cache.batch_loader(...), AUTOTUNE, deterministic=True)   # index -> images
       rows    = index (or row_table[index] when datasets share one cache)
       if all(filled[rows]):                        # later epochs: no Python
           images = cast(gather(store, rows), float32)
       else:                                        # first sight of a row:
           py_function(fill)                        #   one Python call per batch,
           images = cast(gather(store, rows), float32)  # decode + resize the missing
  -> (labels, bad-file guard, prefetch: unchanged)  #   rows once, store them
```

The cache stores images per sample (never per batch), so every epoch is
still the sampler's own plan: reshuffled, exact P x K, same `len`.

**Mechanism (measured on this project's 2-core machine with
`python benchmarks/bench_cache.py --mechanisms`: 600 JPEGs, 128x128, CPU
time per image against a plain `tf.data` decode pipeline).** In memory,
the images live in a `tf.Variable` of shape (N, *image_shape) (uint8 or
float16, see `balanced_sampler.decoded_cache.storage_dtype`) and a boolean
`filled` variable; a cached batch is a `tf.gather` in the graph, with no
Python and no GIL: 12.3x with a materialised plan, against 6.1x for a
numpy array gathered by one `py_function` per batch, 4.0x for a
`np.memmap` and 5.3x for `from_generator` yielding the gathered images
(live plan). The plan source matters as much: `from_generator` with one
element per batch costs ~20 ms per epoch plus ~0.3 ms per batch and
holds every mechanism near 4-6x; a live source with one Python call per
epoch reaches 10.7x. Filling runs in a `py_function` that calls a
`tf.function` eagerly: TensorFlow instantiates it once per process (0.1-0.4
s, shared by loaders with equal `decoder_key`s), while a decode inside the
map function (a While in an If) is instantiated again for every iterator,
25-30 ms per epoch, which doubled the time of a 600-image cached epoch. The
If that skips the fill costs 5-15 ms per epoch. The variables are allocated
without being zeroed (`Empty`), so memory is committed as rows are filled.

On disk (`CacheFile`, a memory-mapped file), a batch is read by one
`py_function` call (numpy gather from the mapping; missing rows decoded,
stored and synced as above).

**Correctness.** Rows are written before their `filled` flag (a control
dependency in memory; statement order on disk), so a batch that sees the
flag sees the row. Two parallel map calls may decode the same row; both
store identical values. An epoch abandoned midway leaves complete rows
only (a `py_function` runs to its end). Every epoch, the first included,
yields the stored (rounded) values, so all epochs see identical pixels,
within 0.5 of the uncached ones (uint8) or 0.125 (float16). A file that
cannot be decoded makes the batch fail as without the cache (as an
`UnknownError` wrapping TensorFlow's decoding error, which `ignore_errors`
drops like any other), and nothing of that batch is stored; the bad-file
guard rebuilds it and stores its images with `store()`.

Not for tf.data service: its workers run no Python (the fill is a
`py_function`) and each worker would hold its own copy; the cache applies
to pipelines run in the training process (the builders' datasets, `kerasgen_tf.distribute`
pipelines: each process caches what its pipelines read, pipelines of one
process share one cache).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import tensorflow as tf

from balanced_sampler.cache_file import CacheFile, cache_key
from balanced_sampler.decoded_cache import (
    MEMORY,
    CacheLayout,
    cache_layout,
    check_fits_in_memory,
)

__all__ = ["DecodedCache", "install_cache_method", "open_decoded_cache", "to_storage"]

# Images of one batch decoded concurrently while filling.
_PARALLEL_IMAGES = 16

# Decode functions shared by loaders with equal `decoder_key`s (see `batch_loader`).
_DECODERS: dict[Hashable, Any] = {}


def to_storage(images: np.ndarray[Any, Any], dtype: str) -> np.ndarray[Any, Any]:
    """Converts float images to the cache's dtype exactly as the pipeline does.

    uint8: `floor(x + 0.5)` in float32 (x is within 0..255 for the methods
    stored as uint8), so every value moves by at most 0.5; float16: rounded
    to nearest.

    Args:
        images: float images.
        dtype: "uint8", "float16" or "float32".

    Returns:
        The images in `dtype`.
    """
    values = np.asarray(images, dtype=np.float32)
    stored: np.ndarray[Any, Any] = (
        (values + np.float32(0.5)).astype(np.uint8) if dtype == "uint8" else values.astype(dtype)
    )
    return stored


def _plain_variable(value: tf.Tensor, name: str) -> tf.Variable:
    """A host variable that no `tf.distribute` strategy in scope turns into a mirrored one.

    `tf.Variable(...)` goes through the variable creators of the strategy in
    scope (under `MirroredStrategy` the cache would be copied to every
    replica's device); constructing the `ResourceVariable` class directly
    does not.
    """
    from tensorflow.python.ops.resource_variable_ops import ResourceVariable

    return ResourceVariable(value, trainable=False, name=name)


def _no_autograph(
    function: Callable[[tf.Tensor], tf.Tensor],
) -> Callable[[tf.Tensor], tf.Tensor]:
    """Marks a map function as plain TensorFlow ops: `Dataset.map` skips autograph."""
    return cast(
        Callable[[tf.Tensor], tf.Tensor], tf.autograph.experimental.do_not_convert(function)
    )


def _to_storage_tf(image: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    if dtype == tf.uint8:
        return tf.cast(image + 0.5, tf.uint8)
    return tf.cast(image, dtype)


class DecodedCache:
    """Decoded images per sample, in memory or in a cache file.

    Build it with `open_decoded_cache`; give `batch_loader()` to the map
    stage of the pipeline that turns planned batches into images.

    Attributes:
        layout: The rows (`balanced_sampler.decoded_cache.CacheLayout`).
        kind: "memory" or "disk".
        file: The `CacheFile` of a disk cache, else None.
    """

    def __init__(self, layout: CacheLayout, file: CacheFile | None = None) -> None:
        self.layout = layout
        self.file = file
        self.kind = "memory" if file is None else "disk"
        self._dtype = tf.as_dtype(layout.dtype)
        self._images: tf.Variable | None = None
        self._filled: tf.Variable | None = None
        if file is None:
            with tf.init_scope(), tf.device("/CPU:0"):
                shape = (layout.num_images, *layout.image_shape)
                # Not zeroed: the pages are committed as rows are filled.
                empty = tf.raw_ops.Empty(shape=shape, dtype=self._dtype, init=False)
                self._images = _plain_variable(empty, "decoded_cache")
                self._filled = _plain_variable(tf.zeros((layout.num_images,), tf.bool), "filled")

    # ------------------------------------------------------------------ state

    @property
    def num_filled(self) -> int:
        """How many samples' images are stored."""
        if self.file is not None:
            return self.file.num_filled
        assert self._filled is not None
        return int(tf.math.count_nonzero(self._filled))

    @property
    def filled(self) -> np.ndarray[Any, Any]:
        """A boolean copy: which samples' images are stored."""
        if self.file is not None:
            return np.array(self.file.filled)
        assert self._filled is not None
        return np.asarray(self._filled.value())

    def read(self, rows: Sequence[int] | np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The stored images of `rows`, as float32 (the rows must be filled).

        Raises:
            ValueError: If a row is not filled.
        """
        index = np.asarray(rows, dtype=np.int64)
        if self.file is not None:
            return self.file.read(index).astype(np.float32)
        assert self._filled is not None
        assert self._images is not None
        if not np.asarray(tf.gather(self._filled, index)).all():
            raise ValueError("Some of these rows of the cache are not filled yet.")
        return np.asarray(tf.cast(tf.gather(self._images, index), tf.float32))

    def store(self, rows: Sequence[int] | np.ndarray[Any, Any], images: Any) -> None:
        """Stores decoded float32 images (e.g. a batch rebuilt by the bad-file guard).

        Rows already filled keep their images.

        Args:
            rows: The cache rows.
            images: float32 images `(len(rows), *layout.image_shape)`.
        """
        index = np.asarray(rows, dtype=np.int64)
        values = to_storage(np.asarray(images), self.layout.dtype)
        if self.file is not None:
            self.file.write(index, values)
            return
        self._scatter(tf.constant(index), tf.constant(values))

    def _scatter(self, rows: tf.Tensor, values: tf.Tensor) -> tf.Tensor:
        assert self._images is not None
        assert self._filled is not None
        written = self._images.scatter_update(tf.IndexedSlices(values, rows))
        with tf.control_dependencies([written]):  # the row before its flag
            flags = self._filled.scatter_update(
                tf.IndexedSlices(tf.ones_like(rows, dtype=tf.bool), rows)
            )
        with tf.control_dependencies([flags]):
            return tf.size(rows)

    def close(self) -> None:
        """Commits and closes a disk cache (a memory cache is freed with its dataset)."""
        if self.file is not None:
            self.file.close()

    # ------------------------------------------------------------------ pipeline

    def batch_loader(
        self,
        file_paths: Sequence[str],
        load_image: Callable[[tf.Tensor], tf.Tensor],
        batch_size: int | None = None,
        rows: np.ndarray[Any, Any] | None = None,
        decoder_key: Hashable | None = None,
    ) -> Callable[[tf.Tensor], tf.Tensor]:
        """Returns the map function `planned batch of indices -> float32 images`.

        Args:
            file_paths: One path per sample; the batch indices point here.
            load_image: `path -> float32 image` (the pipeline's decode,
                e.g. `kerasgen_tf._decode.make_image_loader(options)`).
            batch_size: The static batch dimension, or None.
            rows: The cache row of each sample (`rows[i]` for
                `file_paths[i]`), when several datasets share one cache
                (training and validation); default: row i is sample i.
            decoder_key: A value that identifies `load_image` (e.g. the
                image options and the format-check flag): loaders with equal
                keys share one decode function per process. TensorFlow's
                first eager call of a function costs 0.1-0.4 s (it is
                instantiated and optimised); sharing pays it once for the
                training and validation datasets, rebuilt and distributed
                pipelines. None: not shared.

        Returns:
            A function of a 1-D int64 tensor of sample indices returning a
            float32 tensor `(batch, *image_shape)`; it needs no autograph.
        """
        if rows is not None and len(rows) != len(file_paths):
            raise ValueError(
                f"`rows` must give one cache row per file: {len(rows)} rows for "
                f"{len(file_paths)} files."
            )
        path_array = np.asarray(list(file_paths), dtype=object)
        row_table = None if rows is None else tf.constant(np.asarray(rows, dtype=np.int64))
        shape = (batch_size, *self.layout.image_shape)
        decode_paths = self._decoder(load_image, decoder_key)

        def decode(index: np.ndarray[Any, Any]) -> tf.Tensor:
            with tf.device("/CPU:0"):
                return decode_paths(tf.constant(path_array[index].tolist(), dtype=tf.string))

        if self.file is None:
            return self._memory_loader(decode, row_table, shape)
        return self._disk_loader(decode, row_table, shape)

    def _decoder(self, load_image: Callable[[tf.Tensor], tf.Tensor], key: Hashable | None) -> Any:
        """A concrete function: file paths -> images in the storage dtype.

        Called eagerly (from Python), so TensorFlow instantiates it once per
        process, not once per iterator (epoch) as it would inside the map
        function.
        """
        shared = None if key is None else (key, self.layout.image_shape, self.layout.dtype)
        if shared is not None and shared in _DECODERS:
            return _DECODERS[shared]
        spec = tf.TensorSpec(self.layout.image_shape, self._dtype)
        dtype = self._dtype

        def load_stored(path: tf.Tensor) -> tf.Tensor:
            return _to_storage_tf(load_image(path), dtype)

        def decode(paths: tf.Tensor) -> tf.Tensor:
            return tf.map_fn(
                load_stored, paths, fn_output_signature=spec, parallel_iterations=_PARALLEL_IMAGES
            )

        signature = [tf.TensorSpec((None,), tf.string)]
        # Traced now, as `Dataset.map` traces its function when the dataset is built.
        function = tf.function(
            decode, input_signature=signature, autograph=False
        ).get_concrete_function()
        if shared is not None:
            _DECODERS[shared] = function
        return function

    def _memory_loader(
        self, decode: Any, row_table: tf.Tensor | None, shape: tuple[int | None, ...]
    ) -> Callable[[tf.Tensor], tf.Tensor]:
        images, filled = self._images, self._filled
        assert images is not None
        assert filled is not None

        def fill(rows: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
            # One Python call per batch that has rows not stored yet; eager ops.
            rows_np, index_np = rows.numpy(), index.numpy()
            with tf.device("/CPU:0"):
                missing = ~np.asarray(tf.gather(filled, rows_np))
                todo, first = np.unique(rows_np[missing], return_index=True)
                if len(todo):
                    self._scatter(tf.constant(todo), decode(index_np[missing][first]))
            return tf.constant(len(todo), tf.int32)

        def load_batch(index: tf.Tensor) -> tf.Tensor:
            rows = index if row_table is None else tf.gather(row_table, index)
            stored = tf.reduce_all(tf.gather(filled, rows))
            done = tf.cond(
                stored,
                lambda: tf.constant(0, tf.int32),
                lambda: tf.py_function(fill, [rows, index], tf.int32),
            )
            with tf.control_dependencies([done]):
                batch = tf.cast(tf.gather(images, rows), tf.float32)
            batch.set_shape(shape)
            return batch

        return _no_autograph(load_batch)

    def _disk_loader(
        self, decode: Any, row_table: tf.Tensor | None, shape: tuple[int | None, ...]
    ) -> Callable[[tf.Tensor], tf.Tensor]:
        file = self.file
        assert file is not None

        def read(rows: tf.Tensor, index: tf.Tensor) -> np.ndarray[Any, Any]:
            # One Python call per batch: gather from the mapping, fill what is missing.
            rows_np = rows.numpy()
            missing = ~file.filled[rows_np]
            if missing.any():
                todo, first = np.unique(rows_np[missing], return_index=True)
                file.write(todo, decode(index.numpy()[missing][first]).numpy())
            return file.read(rows_np)

        def load_batch(index: tf.Tensor) -> tf.Tensor:
            rows = index if row_table is None else tf.gather(row_table, index)
            batch = tf.cast(tf.py_function(read, [rows, index], self._dtype), tf.float32)
            batch.set_shape(shape)
            return batch

        return _no_autograph(load_batch)


def open_decoded_cache(
    cache: str,
    file_paths: Sequence[str],
    image_shape: Sequence[int],
    interpolation: str,
    image_options: Mapping[str, Any],
    available_memory: int | None = None,
) -> DecodedCache:
    """Builds the cache of a dataset, checking its size first.

    Args:
        cache: "memory" or the path of a cache file (checked by
            `balanced_sampler.decoded_cache.check_cache`).
        file_paths: One path per cache row.
        image_shape: The shape of one output image.
        interpolation: The resizing method (decides the storage dtype).
        image_options: Every option that changes the pixels, as plain JSON
            values (part of a cache file's key).
        available_memory: Bytes available for a memory cache (default: read
            from the system).

    Returns:
        The `DecodedCache`.

    Raises:
        MemoryError: If a memory cache cannot fit in the available memory.
        FileExistsError, OSError: See `CacheFile.open`.
    """
    layout = cache_layout(len(file_paths), image_shape, interpolation)
    if cache == MEMORY:
        check_fits_in_memory(layout, available_memory)
        return DecodedCache(layout)
    key = cache_key(file_paths, layout, image_options)
    description = {"files": len(file_paths), **dict(image_options)}
    return DecodedCache(
        layout, CacheFile.open(os.fspath(cache), layout, key, description=description)
    )


def install_cache_method(
    dataset: tf.data.Dataset, rebuild: Callable[[str], tf.data.Dataset]
) -> tf.data.Dataset:
    """Makes `dataset.cache()` build the per-sample cache instead of freezing the plan.

    `tf.data.Dataset.cache()` on a dataset of planned batches records the
    first epoch's batches and replays them in every later epoch (measured
    on TensorFlow 2.21 with `from_generator`: the sampler is asked for one
    epoch only). An attribute set on the dataset object shadows the method,
    so `dataset.cache()` / `dataset.cache(filename)` -- the call Keras'
    performance guide recommends -- returns `rebuild("memory")` /
    `rebuild(filename)` instead: the same dataset with the per-sample
    cache, every epoch still reshuffled. Datasets derived from `dataset`
    (`dataset.map(...).cache()`) are plain `tf.data` datasets and keep the
    trap.

    Args:
        dataset: A dataset returned by the builders.
        rebuild: Builds the same dataset with `cache=` "memory" or a path.

    Returns:
        `dataset`, whose `cache` attribute is now the replacement.
    """

    def cache(filename: str | os.PathLike[str] = "", name: str | None = None) -> tf.data.Dataset:
        """Returns this dataset with a per-sample decoded cache (see `install_cache_method`)."""
        del name  # tf.data's signature; a rebuilt dataset has no op name to set
        path = os.fspath(filename)
        return rebuild(MEMORY if path == "" else path)

    dataset.cache = cache
    return dataset
