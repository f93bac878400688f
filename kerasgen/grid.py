"""Pictures of batches: one row per class, its name on the left (Pillow)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

_PAD = 4
_MIN_FONT, _MAX_FONT = 10, 14
_MAX_NAME_WIDTH = 200  # pixels; longer class names are shortened with an ellipsis


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
    groups of K images), the class name written on the left in a column as
    wide as the longest name (names over 200 pixels are shortened).

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
    from PIL import Image, ImageDraw, ImageFont

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
    font_size = min(_MAX_FONT, max(_MIN_FONT, cell_h // 3))
    font = ImageFont.load_default(size=font_size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    names = [
        _fit(class_names[int(labels[row[0]])], _MAX_NAME_WIDTH, measure, font) for row in rows
    ]
    # The name column is as wide as the longest name, no wider.
    name_w = int(max(measure.textlength(name, font=font) for name in names)) + 2 * _PAD
    columns = max(len(row) for row in rows)
    size = (name_w + columns * (cell_w + _PAD), len(rows) * (cell_h + _PAD))
    grid = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(grid)
    for r, (row, name) in enumerate(zip(rows, names, strict=True)):
        y = r * (cell_h + _PAD)
        draw.text((_PAD, y + (cell_h - font_size) // 2), name, fill="black", font=font)
        for c, i in enumerate(row):
            pixels = np.clip(images[i], 0, 255).astype(np.uint8)
            if pixels.shape[-1] == 1:
                pixels = np.repeat(pixels, 3, axis=-1)
            cell = Image.fromarray(pixels[..., :3]).resize(
                (cell_w, cell_h), Image.Resampling.NEAREST
            )
            grid.paste(cell, (name_w + c * (cell_w + _PAD), y))
    grid.save(path)


def _fit(name: str, width: int, draw: Any, font: Any) -> str:
    """`name`, shortened with an ellipsis to at most `width` pixels."""
    if draw.textlength(name, font=font) <= width:
        return name
    while name and draw.textlength(name + "\u2026", font=font) > width:
        name = name[:-1]
    return name + "\u2026"
