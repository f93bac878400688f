"""balanced_sampler.index_directory lists the same files, in the same order,
with the same labels, as Keras' own indexing (`image_dataset_from_directory`
calls `keras.src.utils.dataset_utils.index_directory`).
"""

from __future__ import annotations

import os
import pathlib
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("keras")
dataset_utils = pytest.importorskip("keras.src.utils.dataset_utils")

from balanced_sampler.indexing import (  # noqa: E402
    ALLOWED_FORMATS,
    IndexingWarning,
    index_directory,
)

# Keras 3.15's own allowlist (image_dataset_utils.ALLOWLIST_FORMATS).
KERAS_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")

FILES = [
    # Sort-order traps: ' ' < '-' < '.' < '/' < '0' < 'A' < '_' < 'a'.
    "cats/z.jpg",
    "cats/A.JPG",
    "cats/_u.png",
    "cats/b/x/1.jpg",
    "cats/b/2.jpeg",
    "cats/b c/3.jpg",
    "cats/b-d/4.Jpg",
    "cats/b.e/5.gif",
    "cats/b0/6.bmp",
    "cats/.hidden.jpg",
    "cats/.hidden_dir/7.jpg",
    "cats/notes.txt",
    "cats/img.webp",
    "Dogs/1.png",
    "Dogs/deep/er/est/2.png",
    "dogs_2/1.PNG",
    "dogs 3/espace é.jpg",
    "日本/画像.jpg",
    "empty/",
    "only_text/readme.md",
    ".hidden_class/1.jpg",
    "top_level.jpg",
    "top_level.txt",
]


def make_tree(root: pathlib.Path, files: list[str]) -> pathlib.Path:
    for rel in files:
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
    return root


def keras_index(directory, labels="inferred", formats=KERAS_FORMATS, **kwargs):
    return dataset_utils.index_directory(
        directory, labels, formats=formats, shuffle=False, verbose=False, **kwargs
    )


def ours(directory, labels="inferred", formats=KERAS_FORMATS, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IndexingWarning)
        return index_directory(directory, labels, formats=formats, **kwargs)


@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path / "data", FILES)


@pytest.mark.parametrize("formats", [KERAS_FORMATS, ALLOWED_FORMATS, (".png",)])
@pytest.mark.parametrize("as_path", [False, True])
def test_inferred_labels_match_keras(tree, formats, as_path):
    directory = tree if as_path else str(tree)
    k_paths, k_labels, k_names = keras_index(directory, formats=formats)
    paths, labels, names = ours(directory, formats=formats)
    assert len(paths) > 0
    assert paths == k_paths
    assert labels.tolist() == np.asarray(k_labels).tolist()
    assert names == k_names


def test_trailing_separator_matches_keras(tree):
    directory = str(tree) + os.sep
    k_paths, k_labels, k_names = keras_index(directory)
    paths, labels, names = ours(directory)
    assert paths == k_paths
    assert labels.tolist() == np.asarray(k_labels).tolist()
    assert names == k_names


def test_relative_directory_matches_keras(tree, monkeypatch):
    monkeypatch.chdir(tree.parent)
    k_paths, k_labels, _ = keras_index("data")
    paths, labels, _ = ours("data")
    assert paths == k_paths
    assert paths[0].startswith("data" + os.sep)
    assert labels.tolist() == np.asarray(k_labels).tolist()


def test_class_names_order_matches_keras(tree):
    _, _, all_names = keras_index(str(tree))
    reordered = list(reversed(all_names))
    k_paths, k_labels, k_names = keras_index(str(tree), class_names=reordered)
    paths, labels, names = ours(str(tree), class_names=reordered)
    assert paths == k_paths
    assert labels.tolist() == np.asarray(k_labels).tolist()
    assert names == k_names == reordered


def test_explicit_labels_match_keras(tree):
    k_paths, _, _ = keras_index(str(tree), labels=None)
    given = [(i * 7) % 5 for i in range(len(k_paths))]
    k_paths, k_labels, k_names = keras_index(str(tree), labels=given)
    paths, labels, names = ours(str(tree), labels=given)
    assert paths == k_paths
    assert labels.tolist() == list(k_labels)
    assert names == k_names


def test_no_labels_match_keras(tree):
    k_paths, k_labels, k_names = keras_index(str(tree), labels=None)
    paths, labels, names = ours(str(tree), labels=None)
    assert paths == k_paths
    assert labels is k_labels is None
    assert names is k_names is None


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX symlinks")
@pytest.mark.parametrize("follow_links", [False, True])
def test_symlinks_without_cycles_match_keras(tmp_path, follow_links):
    data = make_tree(tmp_path / "data", ["a/1.jpg", "a/sub/2.jpg"])
    make_tree(tmp_path / "elsewhere", ["real_b/3.jpg", "real_b/in/4.jpg", "more/5.jpg"])
    os.symlink(tmp_path / "elsewhere" / "real_b", data / "b")  # symlinked class folder
    os.symlink(tmp_path / "elsewhere" / "more", data / "a" / "linked")  # symlinked sub-folder
    (tmp_path / "outside.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "outside.jpg", data / "a" / "file_link.jpg")
    k_paths, k_labels, k_names = keras_index(str(data), follow_links=follow_links)
    paths, labels, names = ours(str(data), follow_links=follow_links)
    assert paths == k_paths
    assert labels.tolist() == np.asarray(k_labels).tolist()
    assert names == k_names
    assert any("linked" in p for p in paths) == follow_links
