"""Helpers shared by the scripts that the distributed tests run in fresh processes.

Each image of `make_indexed_tree` is one flat colour that encodes its sample
index (red + 256 * green), so a worker can tell which samples it received
from the decoded pixels alone.
"""

from __future__ import annotations

import pathlib

import numpy as np


def make_indexed_tree(root: pathlib.Path, sizes: list[int]) -> pathlib.Path:
    """Writes one folder per class; image j of the listing has colour j."""
    from PIL import Image

    index = 0
    for c, count in enumerate(sizes):
        folder = root / f"class_{c:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = np.zeros((4, 5, 3), np.uint8)
            pixels[..., 0] = index % 256
            pixels[..., 1] = index // 256
            Image.fromarray(pixels, "RGB").save(folder / f"img_{i:02d}.png")
            index += 1
    return root


def sample_indices(images) -> list[int]:
    """The sample index of every image of a decoded batch (channels last)."""
    pixels = np.asarray(images)[:, 0, 0, :2].round().astype(int)
    return (pixels[:, 0] + 256 * pixels[:, 1]).tolist()
