"""`kerasgen preview`, run as a user runs it: a PNG grid of one balanced batch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def kerasgen(*args: object) -> subprocess.CompletedProcess[str]:
    script = shutil.which("kerasgen", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "kerasgen.cli"]
    # As a user runs it: without the TF_CPP_MIN_LOG_LEVEL the test session sets.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [*command, *map(str, args)], capture_output=True, text=True, timeout=300, env=env
    )


def write_tree(root, names, count=6, size=(20, 30)):
    rng = np.random.default_rng(0)
    for name in names:
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.jpg")
    return root


@pytest.mark.slow
def test_preview_saves_one_row_per_class_and_prints_only_its_line(tmp_path):
    data = write_tree(tmp_path / "data", [f"class_{c}" for c in range(4)])
    out = tmp_path / "batch.png"
    run = kerasgen(
        "preview", data, "--out", out, "-P", 3, "-K", 2, "--safe-triplet",
        "--seed", 5, "--image-size", 40, 50,
    )
    assert run.returncode == 0, run.stderr
    # Only what the user asked for: no TensorFlow start-up lines (oneDNN, CUDA, absl).
    assert run.stdout.splitlines() == [f"Saved batch 0 of epoch 0 (6 images, 3 classes) to {out}"]
    assert run.stderr == ""
    with Image.open(out) as picture:
        assert picture.format == "PNG"
        width, height = picture.size
    assert height == 3 * (40 + 4)  # a row per class
    assert 2 * (50 + 4) < width < 2 * (50 + 4) + 70  # names "class_N" need about 50 px


def ink_columns(pixels):
    """Columns holding anything darker than white."""
    return np.flatnonzero((pixels < 200).any(axis=(0, 2)))


@pytest.mark.slow
def test_no_wide_empty_column_left_of_the_images(tmp_path):
    data = write_tree(tmp_path / "data", ["cat", "a_much_longer_class_name"], count=3,
                      size=(16, 16))
    out = tmp_path / "batch.png"
    run = kerasgen("preview", data, "--out", out, "-P", 2, "-K", 3, "--safe-triplet",
                   "--seed", 1, "--image-size", 16)
    assert run.returncode == 0, run.stderr
    with Image.open(out) as picture:
        pixels = np.asarray(picture.convert("RGB"))
    first_image = pixels.shape[1] - 3 * (16 + 4)
    text = ink_columns(pixels[:, :first_image])
    assert text.min() <= 6  # names start at the left edge
    assert first_image - text.max() <= 10  # and the images right after the longest one


@pytest.mark.slow
def test_preview_names_a_file_that_cannot_be_loaded(tmp_path):
    data = write_tree(tmp_path / "data", ["a", "b"], count=2)
    (data / "a" / "0.jpg").write_bytes(b"this is not a jpeg")
    run = kerasgen("preview", data, "--out", tmp_path / "x.png", "-P", 2, "-K", 2,
                   "--safe-triplet", "--seed", 0)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0] == (
        f"kerasgen: error: cannot load image {data / 'a' / '0.jpg'}: the file is not an image "
        "in a supported format (JPEG, PNG, GIF, BMP, WebP); its first bytes are 74 68 69 73 20 69 73 20 (this is )"
    )


def test_preview_bad_batch_is_a_one_line_error(tmp_path):
    folder = tmp_path / "data" / "a"
    folder.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (tmp_path / "data" / "b").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / "data" / "b" / "0.png")
    run = kerasgen("preview", tmp_path / "data", "--out", tmp_path / "x.png", "-P", 2,
                   "-K", 1, "--batch", 99)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith("kerasgen: error: --batch must be in")
