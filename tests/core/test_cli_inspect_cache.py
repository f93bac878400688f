"""`kerasgen inspect --image-size`: the size of the decoded cache, without TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kerasgen import cli


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for c, n in enumerate([3, 5, 8, 12]):
        folder = tmp_path / "data" / f"class_{c}"
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(
                folder / f"{i}.png"
            )
    return tmp_path / "data"


def test_inspect_prints_the_cache_size_without_tensorflow(image_tree):
    code = (
        "import sys; from kerasgen.cli import main; "
        f"status = main(['inspect', {str(image_tree)!r}, '-P', '2', '-K', '2', '--seed', '1', "
        "'--image-size', '224']); "
        "print('tensorflow' in sys.modules, status)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert (
        "Decoded cache (rgb, bilinear): 28 images of 224x224x3 uint8 = 4.21 MB (151 kB per image)."
        in lines
    )
    assert any(line.startswith("  Fits in the ") and 'cache="memory"' in line for line in lines)
    assert lines[-1] == "False 0"


def test_inspect_cache_size_follows_the_image_options(image_tree, capsys):
    status = cli.main(
        [
            "inspect",
            str(image_tree),
            "-P",
            "2",
            "-K",
            "2",
            "--seed",
            "1",
            "--image-size",
            "32",
            "48",
            "--color-mode",
            "grayscale",
            "--interpolation",
            "bicubic",
        ]
    )
    assert status == 0
    out = capsys.readouterr().out
    assert (
        "Decoded cache (grayscale, bicubic): 28 images of 32x48x1 float16 = 86 kB (3.07 kB per image)."
        in out
    )


def test_inspect_cache_size_counts_the_chosen_subset(image_tree, capsys):
    status = cli.main(
        [
            "inspect",
            str(image_tree),
            "-P",
            "2",
            "-K",
            "2",
            "--seed",
            "1",
            "--validation-split",
            "0.25",
            "--subset",
            "validation",
            "--image-size",
            "10",
        ]
    )
    assert status == 0
    out = capsys.readouterr().out
    kept = int(out.split("Using ")[1].split(" files")[0])
    assert (
        f"Decoded cache of the validation subset (rgb, bilinear): {kept} images of 10x10x3 uint8"
        in out
    )


def test_inspect_says_when_the_cache_cannot_fit(image_tree, capsys, monkeypatch):
    monkeypatch.setattr(cli, "available_memory", lambda: 10_000)
    assert cli.main(["inspect", str(image_tree), "-P", "2", "-K", "2", "--image-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "Does not fit in the 10 kB of available memory: pass a cache file path" in out
    monkeypatch.setattr(cli, "available_memory", lambda: None)
    assert cli.main(["inspect", str(image_tree), "-P", "2", "-K", "2", "--image-size", "64"]) == 0
    assert "Available memory: unknown." in capsys.readouterr().out


def test_inspect_rejects_bad_image_sizes(image_tree, capsys):
    for bad in (["0"], ["1", "2", "3"]):
        assert (
            cli.main(["inspect", str(image_tree), "-P", "2", "-K", "2", "--image-size", *bad]) == 2
        )
        out, err = capsys.readouterr()
        assert out == ""  # refused before indexing
        assert err.startswith("kerasgen: error: --image-size takes N or H W, positive.")
        assert len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as exit_:
        cli.main(["inspect", str(image_tree), "--image-size", "8", "--interpolation", "cubic"])
    assert exit_.value.code == 2
    assert "invalid choice: 'cubic'" in capsys.readouterr().err
