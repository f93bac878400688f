"""`kerasgen inspect`, run as a user runs it (console script), without TensorFlow."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def kerasgen(*args: str) -> subprocess.CompletedProcess[str]:
    script = shutil.which("kerasgen", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "kerasgen.cli"]
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for c, n in enumerate([1, 2, 5, 9, 12, 30]):
        folder = tmp_path / "data" / f"class_{c}"
        folder.mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    (tmp_path / "data" / "empty_class").mkdir()
    return tmp_path / "data"


def test_inspect_prints_classes_sizes_and_plan_figures(image_tree, tmp_path):
    plot = tmp_path / "sizes.png"
    run = kerasgen("inspect", image_tree, "-P", 3, "-K", 4, "--seed", 1, "--plot", plot)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "Found 59 files belonging to 7 classes." in out
    assert "kerasgen: warning: 1 class folder(s) contain no file" in run.stderr
    assert "min 1, median 7, max 30; 2 classes below K=4; 1 with a single image; 1 empty." in out
    assert "exhaustive, seed 1" in out
    assert "coverage                     1.0000" in out
    assert "triplet_valid_fraction" in out
    with Image.open(plot) as picture:
        assert picture.format == "PNG"
        assert picture.size == (760, 420)


def test_inspect_fixed_mode_and_validation_split(image_tree):
    run = kerasgen(
        "inspect", image_tree, "-P", 2, "-K", 2, "--safe-triplet", "--seed", 3,
        "--validation-split", 0.2,
    )
    assert run.returncode == 0, run.stderr
    assert "Using 48 files for training (split by samples)." in run.stdout
    assert "exact_pxk_fraction           1.0000" in run.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("inspect", "/no/such/folder"), "does not exist"),
        (("inspect", "{tree}", "-P", "40"), "num_classes_per_batch=40, but there are only 6"),
        (("inspect", "{tree}", "-K", "0"), "num_images_per_class"),
        (("inspect", "{tree}", "--validation-split", "0.2"), "needs --seed"),
        (("inspect",), "the following arguments are required: directory"),
        (("inspect", "{tree}", "-P", "two"), "invalid int value: 'two'"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(image_tree, args, message):
    run = kerasgen(*(str(a).format(tree=image_tree) for a in args))
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert all(line.startswith(("kerasgen: error: ", "kerasgen: warning: ")) for line in lines)
    errors = [line for line in lines if line.startswith("kerasgen: error: ")]
    assert len(errors) == 1, run.stderr
    assert message in errors[0]


def test_help_explains_every_option():
    run = kerasgen("inspect", "--help")
    assert run.returncode == 0
    for option in ("--num-classes-per-batch", "--num-images-per-class", "--safe-triplet",
                   "--seed", "--validation-split", "--plot", "--follow-links"):
        assert option in run.stdout


def test_large_folders_show_an_indexing_progress_bar(tmp_path):
    for c in range(250):
        folder = tmp_path / "many" / f"c{c:03d}"
        folder.mkdir(parents=True)
        for i in range(2):
            (folder / f"{i}.jpg").write_bytes(b"not decoded by inspect")
    run = kerasgen("inspect", tmp_path / "many", "-P", 4, "-K", 2, "--seed", 0)
    assert run.returncode == 0, run.stderr
    assert "Indexing class folders [" in run.stderr
    assert "250/250" in run.stderr
    assert "Found 500 files belonging to 250 classes." in run.stdout
