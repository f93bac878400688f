"""Shared fixtures of the TensorFlow tests: tiny image folders made with Pillow.

Every test in this folder needs TensorFlow; without it none is collected.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib

import pytest

if importlib.util.find_spec("tensorflow") is None:  # pragma: no cover
    collect_ignore_glob = ["test_*.py"]
else:
    # Quiet TensorFlow's C++ start-up logs in the test output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tf_image_files import CLASS_SIZES, make_class_tree


@pytest.fixture(scope="session")
def class_sizes() -> dict[str, int]:
    """The classes of `class_tree` and their numbers of images."""
    return dict(CLASS_SIZES)


@pytest.fixture(scope="session")
def class_tree(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Six long-tailed classes (22 images) in png/jpg/bmp/gif."""
    return make_class_tree(tmp_path_factory.mktemp("classes"), CLASS_SIZES)


@pytest.fixture(scope="session")
def balanced_tree(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Four classes of 6 PNG images each (24 images)."""
    sizes = {f"class_{c}": 6 for c in range(4)}
    return make_class_tree(tmp_path_factory.mktemp("balanced"), sizes, formats=("png",))


@pytest.fixture(scope="session")
def two_class_tree(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Two classes (for label_mode="binary")."""
    return make_class_tree(tmp_path_factory.mktemp("two"), {"neg": 5, "pos": 4})
