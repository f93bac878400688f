"""A metric per epoch as a line chart (Pillow): e.g. `val_map@r` over training."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["save_metric_curves"]

_WIDTH, _HEIGHT = 720, 400
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 150, 48, 56
_FONT_SIZE = 14
_COLORS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e")


def save_metric_curves(
    epochs: Sequence[int],
    curves: Mapping[str, Sequence[float]],
    path: str,
    *,
    title: str = "",
) -> None:
    """Saves metrics in [0, 1] per epoch as a line chart PNG, one line per metric.

    ```python
    evaluation = RetrievalEvaluation(val_ds)
    model.fit(train_ds, epochs=30, callbacks=[evaluation])
    save_metric_curves([e + 1 for e in evaluation.epochs],
                       {"val_map@r": evaluation.history["val_map@r"]}, "map_at_r.png")
    ```

    Args:
        epochs: The epoch (x value) of every point, increasing.
        curves: Name -> one value in [0, 1] per epoch.
        path: Where to save the PNG.
        title: A title written above the chart.

    Raises:
        ImportError: If Pillow is not installed.
        ValueError: If a curve's length differs from `epochs`, or `epochs` is empty.
    """
    from PIL import Image, ImageDraw, ImageFont

    if not epochs:
        raise ValueError("`epochs` must not be empty.")
    for name, values in curves.items():
        if len(values) != len(epochs):
            raise ValueError(
                f"Curve {name!r} has {len(values)} values for {len(epochs)} epochs."
            )
    font = ImageFont.load_default(size=_FONT_SIZE)
    image = Image.new("RGB", (_WIDTH, _HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = _LEFT, _WIDTH - _RIGHT, _TOP, _HEIGHT - _BOTTOM
    first, last = epochs[0], max(epochs[-1], epochs[0] + 1)

    def x_of(epoch: float) -> float:
        return left + (epoch - first) / (last - first) * (right - left)

    def y_of(value: float) -> float:
        return bottom - min(max(value, 0.0), 1.0) * (bottom - top)

    for tick in range(6):
        value = tick / 5
        y = y_of(value)
        draw.line([left, y, right, y], fill="#dddddd")
        label = f"{value:.1f}"
        draw.text((left - 8 - draw.textlength(label, font=font), y - 8), label, fill="black",
                  font=font)
    step = max(1, math.ceil((last - first) / 10))
    for epoch in range(first, last + 1, step):
        x = x_of(epoch)
        draw.line([x, bottom, x, bottom + 4], fill="black")
        label = str(epoch)
        draw.text((x - draw.textlength(label, font=font) / 2, bottom + 6), label, fill="black",
                  font=font)
    draw.line([left, bottom, right, bottom], fill="black")
    draw.line([left, top, left, bottom], fill="black")
    for i, (name, values) in enumerate(curves.items()):
        color = _COLORS[i % len(_COLORS)]
        points = [(x_of(e), y_of(v)) for e, v in zip(epochs, values, strict=True)]
        if len(points) > 1:
            draw.line(points, fill=color, width=2)
        for x, y in points:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=color)
        legend_y = top + 20 * i
        draw.line([right + 12, legend_y + 8, right + 32, legend_y + 8], fill=color, width=2)
        draw.text((right + 38, legend_y), name, fill="black", font=font)
    draw.text((left, 14), title, fill="black", font=font)
    label = "epoch"
    draw.text(((left + right - draw.textlength(label, font=font)) / 2, _HEIGHT - 26), label,
              fill="black", font=font)
    image.save(path)
