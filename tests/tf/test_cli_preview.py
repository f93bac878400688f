"""`kerasgen preview`, run as a user runs it: a PNG grid of one balanced batch."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def kerasgen(*args: object) -> subprocess.CompletedProcess[str]:
    script = shutil.which("kerasgen", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "kerasgen.cli"]
    return subprocess.run(
        [*command, *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_preview_saves_one_row_per_class(tmp_path):
    rng = np.random.default_rng(0)
    for c in range(4):
        folder = tmp_path / "data" / f"class_{c}"
        folder.mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.jpg")
    out = tmp_path / "batch.png"
    run = kerasgen(
        "preview", tmp_path / "data", "--out", out, "-P", 3, "-K", 2, "--safe-triplet",
        "--seed", 5, "--image-size", 40, 50,
    )
    assert run.returncode == 0, run.stderr
    assert "(6 images, 3 classes)" in run.stdout
    with Image.open(out) as picture:
        assert picture.format == "PNG"
        # 160 px for names + 2 columns of (50 + 4) px; 3 rows of (40 + 4) px.
        assert picture.size == (160 + 2 * 54, 3 * 44)


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
