"""The class-size histogram of `kerasgen inspect --plot`, drawn with Pillow.

Bars count the classes whose number of images falls in each bin (log-spaced integer bins,
K always a bin edge so a bar is entirely below or above K; bars below K in orange). The
x axis is marked at the bin edges, the y axis has a count scale with grid lines.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

__all__ = ["HistogramLayout", "histogram_layout", "save_size_histogram"]

_WIDTH, _HEIGHT = 760, 420
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 24, 56, 64
_FONT_SIZE = 14
_BELOW_K, _OTHERS, _GRID = "#d95f02", "#1b9e77", "#dddddd"


@attrs.frozen
class HistogramLayout:
    """What the histogram shows, before drawing."""

    edges: list[int]
    """Bin edges: bar i counts classes with edges[i] <= size < edges[i + 1]."""
    counts: list[int]
    """Classes per bar."""
    y_ticks: list[int]
    """Marks of the count scale, from 0 up to at least the highest bar."""
    title: str
    x_title: str
    y_title: str


def _nice_step(top: int, marks: int = 5) -> int:
    """A step of 1, 2 or 5 times a power of ten giving about `marks` marks up to `top`."""
    raw = max(top, 1) / marks
    power = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return max(1, factor * power)
    return 10 * power


def histogram_layout(sizes: np.ndarray[Any, Any], k: int) -> HistogramLayout:
    """Bins, counts, scale and titles of the histogram of class sizes.

    Args:
        sizes: The number of images of every (non-empty) class.
        k: Images per class in a batch (bars below K are marked).

    Returns:
        The layout.
    """
    largest = max(int(np.max(sizes)), 1)
    edges = set(np.unique(np.geomspace(1, largest + 1, num=17).round().astype(int)).tolist())
    edges.update({1, largest + 1})
    if 1 < k <= largest:
        edges.add(k)
    edge_list = sorted(edges)
    counts, _ = np.histogram(sizes, bins=edge_list)
    step = _nice_step(int(counts.max()))
    top = -(-int(counts.max()) // step) * step
    return HistogramLayout(
        edges=edge_list,
        counts=counts.tolist(),
        y_ticks=list(range(0, max(top, step) + 1, step)),
        title=f"Images per class: {len(sizes)} classes (orange: fewer than K={k} images)",
        x_title="images per class (log scale; a bar spans its two marks, right one excluded)",
        y_title="classes",
    )


def save_size_histogram(sizes: np.ndarray[Any, Any], k: int, path: str) -> None:
    """Saves the histogram of class sizes as a PNG.

    Args:
        sizes: The number of images of every (non-empty) class.
        k: Images per class in a batch.
        path: Where to save the PNG.

    Raises:
        ImportError: If Pillow is not installed.
    """
    from PIL import Image, ImageDraw, ImageFont

    layout = histogram_layout(sizes, k)
    font = ImageFont.load_default(size=_FONT_SIZE)
    image = Image.new("RGB", (_WIDTH, _HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    left, right = _LEFT, _WIDTH - _RIGHT
    top, bottom = _TOP, _HEIGHT - _BOTTOM
    scale = (bottom - top) / layout.y_ticks[-1]
    for tick in layout.y_ticks:
        y = bottom - tick * scale
        draw.line([left, y, right, y], fill=_GRID)
        draw.line([left - 4, y, left, y], fill="black")
        label = str(tick)
        draw.text((left - 8 - draw.textlength(label, font=font), y - 8), label, fill="black",
                  font=font)
    bar_w = (right - left) / len(layout.counts)
    last_label_end = -math.inf
    for i, count in enumerate(layout.counts):
        x0 = left + i * bar_w
        if count:
            color = _BELOW_K if layout.edges[i + 1] <= k else _OTHERS
            draw.rectangle([x0 + 1, bottom - count * scale, x0 + bar_w - 1, bottom], fill=color)
            text = str(count)
            draw.text((x0 + (bar_w - draw.textlength(text, font=font)) / 2,
                       bottom - count * scale - 17), text, fill="black", font=font)
    for i, edge in enumerate(layout.edges):
        x = left + i * bar_w
        draw.line([x, bottom, x, bottom + 4], fill="black")
        label = str(edge)
        width = draw.textlength(label, font=font)
        if x - width / 2 > last_label_end + 4:  # skip marks whose label would overlap
            draw.text((x - width / 2, bottom + 6), label, fill="black", font=font)
            last_label_end = x + width / 2
    draw.line([left, bottom, right, bottom], fill="black")
    draw.line([left, top, left, bottom], fill="black")
    draw.text((left, 12), layout.title, fill="black", font=font)
    draw.text((left - 8 - draw.textlength(layout.y_title, font=font) / 2, top - 22),
              layout.y_title, fill="black", font=font)
    x_title_w = draw.textlength(layout.x_title, font=font)
    draw.text(((left + right - x_title_w) / 2, _HEIGHT - 26), layout.x_title, fill="black",
              font=font)
    image.save(path)
