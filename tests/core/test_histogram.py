"""The class-size histogram of `kerasgen inspect --plot` (kerasgen.histogram)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from kerasgen import histogram
from kerasgen.histogram import histogram_layout, save_size_histogram


def test_layout_bins_counts_and_count_scale():
    sizes = np.array([1, 2, 3, 3, 5, 9, 12, 30, 30, 31, 250])
    layout = histogram_layout(sizes, 4)
    assert layout.edges[0] == 1
    assert layout.edges[-1] == 251
    assert 4 in layout.edges  # K is an edge: no bar holds sizes on both sides of it
    assert sum(layout.counts) == len(sizes)
    for i, count in enumerate(layout.counts):
        low, high = layout.edges[i], layout.edges[i + 1]
        assert count == int(((sizes >= low) & (sizes < high)).sum())
    assert layout.y_ticks[0] == 0
    assert layout.y_ticks[-1] >= max(layout.counts)
    assert len(set(np.diff(layout.y_ticks))) == 1  # evenly spaced marks
    assert layout.x_title.startswith("images per class")
    assert layout.y_title == "classes"
    assert "11 classes" in layout.title
    assert "K=4" in layout.title


def test_count_scale_steps_are_round():
    for top, step in [(1, 1), (4, 1), (7, 2), (12, 5), (40, 10), (99, 20), (1000, 200)]:
        layout = histogram_layout(np.full(top, 3), 2)
        assert layout.y_ticks[1] == step, top


def test_picture_has_a_labelled_count_scale(tmp_path):
    path = tmp_path / "sizes.png"
    save_size_histogram(np.array([1, 2, 2, 5, 9, 9, 9, 30]), 4, str(path))
    with Image.open(path) as picture:
        pixels = np.asarray(picture.convert("L"))
    assert pixels.shape == (histogram._HEIGHT, histogram._WIDTH)
    left, bottom = histogram._LEFT, histogram._HEIGHT - histogram._BOTTOM
    # Tick labels left of the y axis, along its whole height.
    label_area = pixels[histogram._TOP - 10 : bottom + 10, : left - 6]
    rows_with_ink = np.flatnonzero((label_area < 128).any(axis=1))
    assert rows_with_ink.max() - rows_with_ink.min() > (bottom - histogram._TOP) * 0.8
    # Grid lines across the plot at the marks.
    assert ((pixels[histogram._TOP : bottom, left + 5 : left + 20] < 240).all(axis=1)).sum() >= 3
