"""The decoding stage through a per-sample decoded cache (a `LoadImages` wrapper).

```
indices (one planned batch)      rows = indices + offset (datasets sharing one cache)
  memory: if all(filled[rows]):              # later epochs: graph ops only, no Python
              message = ""
          else:
              message = py_function(fill)    # decode the missing rows, store, report
          raise message if any; images = float32(gather(store, rows))
  disk:   stored, message = py_function(fill, then read the rows from the mapped file)
          raise message if any; images = float32(stored)
  -> (images, no bad files): the `LoadImages` contract of `kerasgen_tf._batches`
```

`fill` runs the dataset's own guarded `BatchLoader` (read, decode, resize,
bad-file guard) on the rows not stored yet, through a `tf.function` traced
when the dataset is built and called from Python: TensorFlow instantiates it
once per process. Inside the map function it would be instantiated again by
every iterator, i.e. every epoch (13-30 ms measured, a third of a cached
epoch of 600 images, even when the branch is not taken).

Bad files keep their `on_bad_image` treatment, by the dataset's own
`BadFileReport`, called by `fill` for the files it decodes (it runs in
Python anyway, so the report stage of the pipeline is not needed: the
returned `BadFiles` is statically empty, which spares every batch that
stage's conditional). "error": the error that names the file, raised by
a graph assertion as without a cache, and nothing of the batch stored.
"skip": the replacement image is stored at the bad file's row, so later
epochs serve it from the cache and the file is warned about and listed
once. A memory cache stores it in its row; with a cache file it is kept
by this dataset only (`CachedImages.replacements`), never written to the
file: the next run, and any other dataset on the same file (say with
`on_bad_image="error"`), finds the file and reports it again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
import tensorflow as tf

from kerasgen_tf._bad_images import checked
from kerasgen_tf._batches import BadFiles, LoadImages, no_bad_files
from kerasgen_tf.decoded_cache import DecodedCache, to_storage_tensor

__all__ = ["CachedImages"]


@attrs.frozen(eq=False)
class CachedImages:
    """A `LoadImages` that reads through a `DecodedCache` (see the module doc).

    Build it with `CachedImages.create`; call it inside a tf.data function.
    """

    cache: DecodedCache
    loader: LoadImages
    """The guarded decoding stage it fills the cache with."""
    report: Callable[[Any, Any], str]
    """What a bad file does (`BadFileReport`): "" to go on, else the error message."""
    offset: int
    """The cache row of sample `i` is `offset + i`."""
    fill_function: Any
    """`indices -> (stored images, bad indices, replaced)`: `loader`, traced once."""
    replacements: dict[int, np.ndarray[Any, Any]] = attrs.field(factory=dict)
    """Cache file only: row -> the stored replacement of a skipped file (this dataset's)."""

    @classmethod
    def create(
        cls,
        cache: DecodedCache,
        loader: LoadImages,
        report: Callable[[Any, Any], str],
        offset: int = 0,
    ) -> CachedImages:
        """Wraps `loader` (indices -> images) with `cache`.

        Args:
            cache: The cache; it must have a row for every sample the
                loader reads (`offset + len(file_paths)` rows at least).
            loader: The guarded decoding stage (`BatchLoader`).
            report: The dataset's `BadFileReport`.
            offset: The row of sample 0.

        Returns:
            The `CachedImages`.
        """
        dtype = cache.layout.dtype

        def decode(indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            images, bad = loader(indices)
            return to_storage_tensor(images, dtype), bad.index, bad.replaced

        # Traced now, as `Dataset.map` traces its function when the dataset is built.
        signature = [tf.TensorSpec((None,), tf.int64)]
        function = tf.function(decode, input_signature=signature, autograph=False)
        return cls(
            cache=cache,
            loader=loader,
            report=report,
            offset=offset,
            fill_function=function.get_concrete_function(),
        )

    def __call__(self, indices: tf.Tensor) -> tuple[tf.Tensor, BadFiles]:
        """The images of the batch `indices`; see `kerasgen_tf._batches.LoadImages`."""
        from_memory = self.cache.file is None
        images = self._from_memory(indices) if from_memory else self._from_disk(indices)
        return images, no_bad_files()

    def _from_memory(self, indices: tf.Tensor) -> tf.Tensor:
        rows = indices + self.offset if self.offset else indices

        def fill(indices: tf.Tensor) -> str:
            return self.fill(indices.numpy())

        message = tf.cond(
            self.cache.all_filled(rows),
            lambda: tf.constant(""),
            lambda: tf.py_function(fill, [indices], tf.string),
        )
        # The rows are stored (or the error raised) before they are gathered.
        return self.cache.gathered(checked(message, rows))

    def _from_disk(self, indices: tf.Tensor) -> tf.Tensor:
        def read(indices: tf.Tensor) -> tuple[np.ndarray[Any, Any], str]:
            index = indices.numpy()
            message = self.fill(index)
            rows = index + self.offset
            stored = self.cache.take(rows)
            if self.replacements:
                for k in np.flatnonzero(np.isin(rows, list(self.replacements))).tolist():
                    stored[k] = self.replacements[int(rows[k])]
            return stored, message

        dtype = tf.as_dtype(self.cache.layout.dtype)
        stored, message = tf.py_function(read, [indices], (dtype, tf.string))
        stored.set_shape((None, *self.cache.layout.image_shape))
        return tf.cast(checked(message, stored), tf.float32)

    def fill(self, indices: np.ndarray[Any, Any]) -> str:
        """Decodes and stores the rows of `indices` not stored yet (Python, eager).

        Args:
            indices: One batch of sample indices.

        Returns:
            What the dataset's report says of the bad files among them: ""
            to go on, or the error to raise.
        """
        rows = indices + self.offset
        missing = self.cache.missing(rows)
        if self.replacements:
            missing &= ~np.isin(rows, list(self.replacements))
        if not missing.any():
            return ""
        todo_rows, first = np.unique(rows[missing], return_index=True)
        todo = indices[missing][first]
        images, bad_index, replaced = (t.numpy() for t in self.fill_function(tf.constant(todo)))
        if len(images) == len(todo):  # else a bad file with "error": store nothing
            bad = np.isin(todo, bad_index)
            self.cache.put(todo_rows[~bad], images[~bad])
            # A replacement is kept by this dataset only (see the module doc).
            kept = np.isin(todo, bad_index[replaced])
            if self.cache.file is None:
                self.cache.put(todo_rows[kept], images[kept])
            else:
                for k in np.flatnonzero(kept).tolist():
                    self.replacements[int(todo_rows[k])] = images[k]
        return self.report(bad_index, replaced) if len(bad_index) else ""
