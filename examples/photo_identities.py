"""Identities cut from real photos: a metric-learning image set made without downloads.

An identity is a textured place in one of the two photos scikit-learn ships
(`sklearn.datasets.load_sample_images()`: a temple in China and a flower). Every image of
an identity is a new view of that place: moved, scaled, rotated, maybe mirrored, with its
brightness, contrast and colour changed, blurred, noised and saved as a small JPEG. Places
overlap, so some identities look much alike; class sizes are long-tailed.

Training identities come from the left part of each photo, held-out identities from the
right part: the held-out classes are new classes and new textures, as in a class-disjoint
retrieval benchmark. An untrained convolutional network finds the same identity as nearest
neighbour far less often than on digits (see `benchmarks/bench_training.py`).

Used by `examples/demo.py` and `benchmarks/bench_training.py`:

```python
train_dir, heldout_dir = write_identities(Path("data"), num_train=150, num_heldout=60)
```
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["IMAGE_SIZE", "embedding_network", "write_identities"]

IMAGE_SIZE = 32
"""Side of every image, in pixels."""

_SPLIT_AT = 0.55  # training places left of this fraction of the photo width, held-out right
_MIN_SIZE, _MAX_SIZE = 40, 80  # side of a place, in photo pixels


def _texture(photo: np.ndarray) -> np.ndarray:
    """A map of local detail (gradient magnitude, box-blurred) to pick places with texture."""
    gray = photo.astype(np.float32).mean(axis=2)
    gy, gx = np.gradient(gray)
    energy = np.hypot(gx, gy)
    # 31 x 31 box blur by cumulative sums.
    pad = 15
    padded = np.pad(energy, pad, mode="edge")
    summed = padded.cumsum(0).cumsum(1)
    size = 2 * pad + 1
    box = (
        summed[size - 1 :, size - 1 :]
        - np.pad(summed[: -size, size - 1 :], ((1, 0), (0, 0)))
        - np.pad(summed[size - 1 :, : -size], ((0, 0), (1, 0)))
        + np.pad(summed[: -size, : -size], ((1, 0), (1, 0)))
    )
    return box[: energy.shape[0], : energy.shape[1]]


def _places(
    photos: list[np.ndarray], count: int, side: str, rng: np.random.Generator
) -> list[tuple[int, float, float, float]]:
    """`count` textured places (photo, centre x, centre y, size) in one part of the photos."""
    places = []
    maps = [_texture(photo) for photo in photos]
    while len(places) < count:
        index = int(rng.integers(len(photos)))
        height, width = photos[index].shape[:2]
        size = float(rng.uniform(_MIN_SIZE, _MAX_SIZE))
        margin = size * 0.9
        split = _SPLIT_AT * width
        if side == "train":
            low, high = margin, split - margin
        else:
            low, high = split + margin, width - margin
        x = float(rng.uniform(low, high))
        y = float(rng.uniform(margin, height - margin))
        texture = maps[index]
        # Keep places with at least median detail: skies and blurred backgrounds are
        # indistinguishable from each other.
        if texture[int(y), int(x)] >= np.median(texture):
            places.append((index, x, y, size))
    return places


def _class_sizes(count: int, smallest: int, largest: int, rng: np.random.Generator) -> list[int]:
    """Long-tailed sizes: largest / rank**0.4, at least `smallest`, in random order."""
    sizes = np.maximum(smallest, (largest / np.arange(1, count + 1) ** 0.4).round()).astype(int)
    return rng.permutation(sizes).tolist()


def _view(photo: Any, place: tuple[int, float, float, float], rng: np.random.Generator) -> Any:
    """One augmented view of a place, as an IMAGE_SIZE x IMAGE_SIZE Pillow image."""
    from PIL import Image, ImageEnhance, ImageFilter

    _, cx, cy, size = place
    scale = size * float(rng.uniform(0.8, 1.25)) / IMAGE_SIZE  # photo pixels per output pixel
    angle = math.radians(float(rng.uniform(-20, 20)))
    cx += float(rng.uniform(-0.12, 0.12)) * size
    cy += float(rng.uniform(-0.12, 0.12)) * size
    flip = -1.0 if rng.random() < 0.5 else 1.0
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    half = IMAGE_SIZE / 2
    # Output pixel (u, v) -> photo pixel (a u + b v + c, d u + e v + f).
    a, b, d, e = flip * cos, -sin, flip * sin, cos
    matrix = (a, b, cx - a * half - b * half, d, e, cy - d * half - e * half)
    image = photo.transform(
        (IMAGE_SIZE, IMAGE_SIZE), Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR
    )
    image = ImageEnhance.Brightness(image).enhance(float(rng.uniform(0.65, 1.35)))
    image = ImageEnhance.Contrast(image).enhance(float(rng.uniform(0.65, 1.35)))
    image = ImageEnhance.Color(image).enhance(float(rng.uniform(0.5, 1.5)))
    image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 1.0))))
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0.0, 6.0, (IMAGE_SIZE, IMAGE_SIZE, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_identities(
    root: Path,
    *,
    num_train: int = 150,
    num_heldout: int = 60,
    smallest: int = 6,
    largest: int = 40,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Writes the identities as JPEG class folders under `root/train` and `root/heldout`.

    Args:
        root: The folder to write into (created if needed).
        num_train: Identities (classes) for training, from the left part of the photos.
        num_heldout: Held-out identities, from the right part.
        smallest: Fewest images of an identity.
        largest: Most images of an identity (the first of the long tail).
        seed: Seed of everything random: the same arguments write the same files.

    Returns:
        `(train_dir, heldout_dir)`, each with one folder of `IMAGE_SIZE` x `IMAGE_SIZE`
        JPEGs per identity.
    """
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [np.asarray(image) for image in load_sample_images().images]
    pil_photos = [Image.fromarray(photo) for photo in photos]
    rng = np.random.default_rng(seed)
    folders = {}
    for split, count in (("train", num_train), ("heldout", num_heldout)):
        folder = root / split
        for c, (place, size) in enumerate(
            zip(
                _places(photos, count, split, rng),
                _class_sizes(count, smallest, largest, rng),
                strict=True,
            )
        ):
            class_dir = folder / f"id_{c:03d}"
            class_dir.mkdir(parents=True, exist_ok=True)
            for i in range(size):
                view = _view(pil_photos[place[0]], place, rng)
                view.save(class_dir / f"{i:03d}.jpg", quality=int(rng.integers(85, 96)))
        folders[split] = folder
    return folders["train"], folders["heldout"]


def embedding_network(dim: int = 64) -> Any:
    """The small convolutional network the demo and the training benchmark train.

    Three 3x3 convolutions (32, 64, 128 filters; ReLU; max pooling between), global average
    pooling and a dense layer to `dim`, L2-normalised: RGB images of IMAGE_SIZE pixels in
    0..255 to unit vectors.
    """
    import keras

    return keras.Sequential(
        [
            keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3)),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(128, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(dim),
            keras.layers.UnitNormalization(),
        ],
        name="identity_embedding",
    )
