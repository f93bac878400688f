"""kerasgen.curve: metrics per epoch as a line chart."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kerasgen import curve
from kerasgen.curve import save_metric_curves


def test_curve_goes_through_its_points(tmp_path):
    path = tmp_path / "map.png"
    save_metric_curves([1, 2, 3, 4], {"val_map@r": [0.0, 0.5, 0.5, 1.0]}, str(path), title="t")
    with Image.open(path) as picture:
        pixels = np.asarray(picture.convert("RGB")).astype(int)
    assert pixels.shape == (curve._HEIGHT, curve._WIDTH, 3)
    green = (np.abs(pixels - (0x1B, 0x9E, 0x77)).sum(axis=2) < 60)
    left, right = curve._LEFT, curve._WIDTH - curve._RIGHT
    top, bottom = curve._TOP, curve._HEIGHT - curve._BOTTOM
    for epoch, value in [(1, 0.0), (2, 0.5), (4, 1.0)]:
        x = round(left + (epoch - 1) / 3 * (right - left))
        y = round(bottom - value * (bottom - top))
        assert green[y - 2 : y + 3, x - 2 : x + 3].any(), (epoch, value)


def test_curve_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="must not be empty"):
        save_metric_curves([], {}, str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match="has 1 values for 2 epochs"):
        save_metric_curves([1, 2], {"a": [0.1]}, str(tmp_path / "x.png"))
