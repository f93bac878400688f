"""Tiny image files for the TensorFlow tests, written with Pillow."""

from __future__ import annotations

import pathlib

import numpy as np

# Class name -> number of images: long-tailed, one class of a single image.
CLASS_SIZES = {"ant": 7, "bee": 5, "cat": 4, "dog": 3, "eel": 2, "fox": 1}
FORMATS = ("png", "jpg", "bmp", "gif")


def write_image(path: pathlib.Path, seed: int, size: tuple[int, int], mode: str = "RGB") -> None:
    """Writes a small random image (`size` is (width, height))."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    if channels == 1:
        pixels = pixels[..., 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels, mode)
    if mode == "RGBA" and path.suffix in (".jpg", ".jpeg"):
        image = image.convert("RGB")  # JPEG has no alpha channel.
    image.save(path)


def make_class_tree(
    root: pathlib.Path, sizes: dict[str, int], formats: tuple[str, ...] = FORMATS
) -> pathlib.Path:
    """One folder per class, images of varied sizes and formats."""
    seed = 0
    for name, count in sizes.items():
        for i in range(count):
            fmt = formats[seed % len(formats)]
            size = (9 + (seed * 7) % 23, 8 + (seed * 5) % 19)
            write_image(root / name / f"img_{i:02d}.{fmt}", seed, size)
            seed += 1
    return root
