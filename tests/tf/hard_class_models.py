"""Images, a model and callbacks for the tests of `kerasgen_tf.hard_classes`.

Every image is 8 x 8 PNG. Its first row carries its position in `dataset.file_paths`
(pixel (0, 0): red = position % 256, green = position // 256), so a layer can tell which
files a training batch holds; the other rows are one colour per class: red grows with the
class, blue follows a shuffled order of the classes. The model crops the first row, averages
the colour and multiplies it by a 3 x 3 kernel: with kernel diag(1, 0, 0) the nearest
classes are those of nearby red, with diag(0, 0, 1) those of nearby blue, so switching the
kernel between epochs changes the neighbour table. The loss is zero: training never moves
the kernel.
"""

from __future__ import annotations

import pathlib
from typing import Any

import keras
import numpy as np

NUM_CLASSES = 12
IMAGES_PER_CLASS = 6
BLUE_ORDER = (5, 9, 0, 11, 3, 7, 1, 10, 4, 8, 2, 6)
RED, BLUE = np.diag([1.0, 0.0, 0.0]), np.diag([0.0, 0.0, 1.0])


def make_colour_tree(
    root: pathlib.Path, num_classes: int = NUM_CLASSES, images_per_class: int = IMAGES_PER_CLASS
) -> pathlib.Path:
    """Writes the class folders (positions in file order: class by class, image by image)."""
    from PIL import Image

    position = 0
    for c in range(num_classes):
        folder = root / f"class_{c:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(images_per_class):
            pixels = np.zeros((8, 8, 3), np.uint8)
            pixels[..., 0] = 15 * c + j % 3
            pixels[..., 1] = 100
            pixels[..., 2] = 15 * BLUE_ORDER[c % len(BLUE_ORDER)] + (2 * j) % 5
            pixels[0, 0, 0], pixels[0, 0, 1] = position % 256, position // 256
            Image.fromarray(pixels).save(folder / f"img_{j:02d}.png")
            position += 1
    return root


class BatchRecorder(keras.layers.Layer):  # type: ignore[misc]
    """Identity layer that records, in training, the file positions of every batch."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epoch = 0
        self.batches: dict[int, list[list[int]]] = {}

    def call(self, images: Any, training: bool | None = None) -> Any:
        if training:
            first = np.asarray(images[:, 0, 0, :2]).astype(np.int64)
            self.batches.setdefault(self.epoch, []).append((first[:, 0] + 256 * first[:, 1]).tolist())
        return images


class EpochMark(keras.callbacks.Callback):  # type: ignore[misc]
    """Tells the recorder which Keras epoch its batches belong to."""

    def __init__(self, recorder: BatchRecorder) -> None:
        super().__init__()
        self.recorder = recorder

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.recorder.epoch = epoch


class KernelSwitch(keras.callbacks.Callback):  # type: ignore[misc]
    """At every epoch end, switches the embedding between red and blue (before a refresh)."""

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        dense = self.model.get_layer("colour")
        dense.kernel.assign(BLUE if epoch % 2 == 0 else RED)


class TableLog(keras.callbacks.Callback):  # type: ignore[misc]
    """Copies every table the refresh callback computes, by the first epoch it deals.

    List it right after the refresh callback.
    """

    def __init__(self, refresh: Any) -> None:
        super().__init__()
        self.refresh = refresh
        self.tables: dict[int, np.ndarray] = {}
        self._seen = 0

    def _collect(self) -> None:
        new = self.refresh.refreshes[self._seen :]
        assert len(new) <= 1
        for record in new:
            self.tables[record.first_epoch] = self.refresh.table.copy()
        self._seen = len(self.refresh.refreshes)

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._collect()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self._collect()


def colour_model(recorder: BatchRecorder | None = None) -> keras.Model:
    """The model described in the module docstring, compiled with a zero loss, eager."""
    layers = [keras.Input((8, 8, 3))]
    if recorder is not None:
        layers.append(recorder)
    layers += [
        keras.layers.Cropping2D(((1, 0), (0, 0))),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, use_bias=False, name="colour"),
    ]
    model = keras.Sequential(layers)
    model.get_layer("colour").kernel.assign(RED)
    model.compile("sgd", loss=lambda y, p: keras.ops.mean(p) * 0.0, run_eagerly=True)
    return model
