"""Pictures of batches: one row per class, its name on the left (Pillow)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def save_batch_grid(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    path: str,
    *,
    scale: int = 1,
) -> None:
    """Saves a batch of images as a PNG grid with one row per class.

    Consecutive images of the same label form a row (a balanced batch is P
    groups of K images), the class name written on the left.

    Args:
        images: Float or int array `(B, H, W, C)` with values in 0..255,
            C in 1, 3 or 4 (channels-last).
        labels: The `B` integer labels of the images.
        class_names: Name of every label value.
        path: Where to save the PNG.
        scale: Enlarge every image this many times (nearest neighbour).

    Raises:
        ImportError: If Pillow is not installed.
        ValueError: If `images` and `labels` disagree in length.
    """
    from PIL import Image, ImageDraw

    if len(images) != len(labels):
        raise ValueError(
            f"`images` and `labels` must have the same length. "
            f"Received {len(images)} images and {len(labels)} labels"
        )
    rows: list[list[int]] = []
    for i, label in enumerate(np.asarray(labels).tolist()):
        if rows and labels[rows[-1][0]] == label:
            rows[-1].append(i)
        else:
            rows.append([i])
    cell_h, cell_w = images.shape[1] * scale, images.shape[2] * scale
    name_w, pad = 160, 4
    columns = max(len(row) for row in rows)
    size = (name_w + columns * (cell_w + pad), len(rows) * (cell_h + pad))
    grid = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(grid)
    for r, row in enumerate(rows):
        y = r * (cell_h + pad)
        name = class_names[int(labels[row[0]])]
        draw.text((4, y + cell_h // 2 - 6), name[:24], fill="black")
        for c, i in enumerate(row):
            pixels = np.clip(images[i], 0, 255).astype(np.uint8)
            if pixels.shape[-1] == 1:
                pixels = np.repeat(pixels, 3, axis=-1)
            cell = Image.fromarray(pixels[..., :3]).resize(
                (cell_w, cell_h), Image.Resampling.NEAREST
            )
            grid.paste(cell, (name_w + c * (cell_w + pad), y))
    grid.save(path)
