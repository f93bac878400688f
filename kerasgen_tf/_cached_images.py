"""The decoding stage through a per-sample decoded cache (a `LoadImages` wrapper).

```
indices (one planned batch)      rows = indices + offset (datasets sharing one cache)
if every row is filled (memory: a graph op; a cache file: one Python call):
    memory: float32(gather(store, rows))       # later epochs: graph ops only, no Python
    file:   py_function(read the rows from the mapped file)
else:
    images, bad = loader(indices)              # the guarded decode, in tf.data's parallel map
    store them (memory: scatter into the variable; a file: py_function)
    -> float32(stored values), bad             # the same pixels as later epochs
```

The missing images are decoded in the graph, by tf.data's own parallel
map, as the uncached pipeline decodes them. (Decoding them from Python in a
`py_function`, which spares later epochs the decoding graph, ran one batch
at a time: a filling epoch took twice as long as an uncached one on 2
cores, and would take far longer on more.) The price: the decoding branch
stays in the map function and costs about 25 ms per epoch here even when
no batch takes it (an epoch of 600 cached images at 128x128: 21-24 ms
through a function that only gathers, 50-55 ms with the branch).

Bad files keep their `on_bad_image` treatment: the loader's `BadFiles`
reach the pipeline's report stage. "error": the error that names the file,
and nothing of the batch is stored. "skip": the replacement image is stored
at the bad file's row, so later epochs serve it from the cache and the file
is warned about and listed once. A memory cache stores it in its row; with
a cache file it is kept by this dataset only (`CachedImages.replacements`),
never written to the file: the next run, and any other dataset on the same
file (say with `on_bad_image="error"`), finds the file and reports it
again.
"""

from __future__ import annotations

import threading
from typing import Any

import attrs
import numpy as np
import tensorflow as tf

from kerasgen_tf._batches import BadFiles, LoadImages
from kerasgen_tf.decoded_cache import DecodedCache, to_storage_tensor

__all__ = ["CachedImages"]


def _dynamic_no_bad_files() -> BadFiles:
    """An empty `BadFiles` whose length is not static (a `tf.cond` branch beside `loader`'s)."""
    empty = tf.zeros([0], tf.int64)
    index = tf.reshape(empty, [tf.size(empty)])
    index.set_shape([None])
    replaced = tf.zeros_like(index, tf.bool)
    return BadFiles(index=index, replaced=replaced)


@attrs.frozen(eq=False)
class CachedImages:
    """A `LoadImages` that reads and fills a `DecodedCache` (see the module doc).

    Call it inside a tf.data function, as the `BatchLoader` it wraps.
    """

    cache: DecodedCache
    loader: LoadImages
    """The guarded decoding stage it fills the cache with (`BatchLoader`)."""
    offset: int = 0
    """The cache row of sample `i` is `offset + i`."""
    replacements: dict[int, np.ndarray[Any, Any]] = attrs.field(factory=dict)
    """Cache file only: row -> the stored replacement of a skipped file (this dataset's)."""
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    def _missing(self, rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        missing = self.cache.missing(rows)
        if self.replacements:
            missing &= ~np.isin(rows, list(self.replacements))
        return missing

    # ------------------------------------------------------------------ the stages

    def __call__(self, indices: tf.Tensor) -> tuple[tf.Tensor, BadFiles]:
        """The batch's images, decoding and storing those not cached yet (`LoadImages`)."""
        rows = self._rows(indices)
        if self.cache.file is None:
            cached = self.cache.all_filled(rows)
        else:
            cached = tf.py_function(lambda r: not self._missing(r.numpy()).any(), [rows], tf.bool)
            cached.set_shape(())
        images, index, replaced = tf.cond(
            cached,
            lambda: (self._served(rows), *_dynamic_no_bad_files()),
            lambda: self._decoded(indices, rows),
        )
        return images, BadFiles(index=index, replaced=replaced)

    def _rows(self, indices: tf.Tensor) -> tf.Tensor:
        return indices + self.offset if self.offset else indices

    def _served(self, rows: tf.Tensor) -> tf.Tensor:
        if self.cache.file is None:
            return self.cache.gathered(rows)
        dtype = tf.as_dtype(self.cache.layout.dtype)
        stored = tf.py_function(self._read, [rows], dtype)
        stored.set_shape((None, *self.cache.layout.image_shape))
        return tf.cast(stored, tf.float32)

    def _read(self, rows: tf.Tensor) -> np.ndarray[Any, Any]:
        index = rows.numpy()
        stored = self.cache.take(index)
        if self.replacements:
            for k in np.flatnonzero(np.isin(index, list(self.replacements))).tolist():
                stored[k] = self.replacements[int(index[k])]
        return stored

    def _decoded(
        self, indices: tf.Tensor, rows: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        images, bad = self.loader(indices)
        stored = to_storage_tensor(images, self.cache.layout.dtype)
        # With "error" a bad file's row is missing (`images` is shorter): store nothing.
        whole = tf.equal(tf.shape(stored, out_type=tf.int64)[0], tf.size(rows, out_type=tf.int64))
        if self.cache.file is None:
            # A bad file's row is stored only if replaced ("skip"): zeros never are.
            done = tf.cond(
                whole & tf.reduce_all(bad.replaced),
                lambda: self.cache.scattered(rows, stored),
                lambda: tf.constant(False),
            )
        else:
            done = tf.py_function(
                self._write, [rows, stored, bad.index + self.offset, bad.replaced, whole], tf.bool
            )
        with tf.control_dependencies([done]):
            images = tf.cast(stored, tf.float32)
        index = tf.identity(bad.index)
        index.set_shape([None])
        return images, index, bad.replaced

    def _write(
        self,
        rows: tf.Tensor,
        stored: tf.Tensor,
        bad_rows: tf.Tensor,
        replaced: tf.Tensor,
        whole: tf.Tensor,
    ) -> bool:
        """Stores a decoded batch in the cache file (Python); replacements stay with the dataset."""
        if not bool(whole):
            return False
        index, first = np.unique(rows.numpy(), return_index=True)
        values = stored.numpy()[first]
        bad = bad_rows.numpy()
        failed = np.isin(index, bad)
        self.cache.put(index[~failed], values[~failed])
        kept = np.isin(index, bad[replaced.numpy()])
        with self.lock:
            for k in np.flatnonzero(kept).tolist():
                self.replacements[int(index[k])] = values[k]
        return True
