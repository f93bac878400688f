"""Paths Keras reads: any file system `tf.io.gfile` knows, tested on TensorFlow's `ram://`."""

from __future__ import annotations

import io
import uuid
import warnings

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasgen_tf import (
    BadImageWarning,
    balanced_image_dataset_from_directory,
    balanced_image_dataset_from_paths,
)
from kerasgen_tf._gfile import GFileEntry, gfile_scandir, is_url

SIZES = {"ant": 3, "bee": 2, "cat": 4}


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _write(path: str, data: bytes) -> None:
    tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
    with tf.io.gfile.GFile(path, "wb") as file:
        file.write(data)


def _trees(tmp_path) -> tuple[str, str]:
    """The same class tree in `ram://` and on disk."""
    ram = f"ram://kerasgen-{uuid.uuid4().hex}"
    seed = 0
    for name, count in SIZES.items():
        for i in range(count):
            data = _png(seed)
            _write(f"{ram}/{name}/img_{i}.png", data)
            (tmp_path / name).mkdir(exist_ok=True)
            (tmp_path / name / f"img_{i}.png").write_bytes(data)
            seed += 1
    tf.io.gfile.makedirs(f"{ram}/.hidden")
    _write(f"{ram}/notes.txt", b"not a class")
    return ram, str(tmp_path)


def _make(directory, **kwargs):
    options = {
        "num_classes_per_batch": 2,
        "num_images_per_class": 2,
        "image_size": (5, 7),
        "seed": 8,
        "verbose": False,
        **kwargs,
    }
    return balanced_image_dataset_from_directory(directory, **options)


def _batches(dataset):
    return [(x.numpy(), y.numpy()) for x, y in dataset]


@pytest.mark.parametrize("fixed", [False, True], ids=["exhaustive", "fixed"])
def test_a_ram_tree_gives_the_batches_of_the_same_tree_on_disk(tmp_path, fixed):
    ram, local = _trees(tmp_path)
    from_ram, from_disk = _make(ram, safe_triplet=fixed), _make(local, safe_triplet=fixed)
    assert from_ram.class_names == from_disk.class_names == sorted(SIZES)
    assert [p.replace(ram, local) for p in from_ram.file_paths] == from_disk.file_paths
    for _ in range(2):  # two epochs
        ram_batches, disk_batches = _batches(from_ram), _batches(from_disk)
        assert len(ram_batches) == len(disk_batches) == len(from_ram)
        for (x, y), (x_disk, y_disk) in zip(ram_batches, disk_batches, strict=True):
            np.testing.assert_array_equal(x, x_disk)
            np.testing.assert_array_equal(y, y_disk)


def test_split_verify_and_paths_on_ram(tmp_path):
    ram, _ = _trees(tmp_path)
    _write(f"{ram}/cat/broken.png", b"\x89PNG\r\n\x1a\n")
    with pytest.warns(BadImageWarning, match="broken.png"):
        train, val = _make(
            ram, validation_split=0.34, subset="both", verify_images=True, num_images_per_class=1
        )
    assert f"{ram}/cat/broken.png" in train.skipped_files
    assert len(train.file_paths) + len(val.file_paths) == sum(SIZES.values())
    assert len(_batches(train)) == len(train)
    by_paths = balanced_image_dataset_from_paths(
        train.file_paths, train.sampler.labels, 2, 1, image_size=4, seed=1, verbose=False
    )
    assert len(_batches(by_paths)) == len(by_paths)


def test_a_bad_ram_file_is_named(tmp_path):
    ram, _ = _trees(tmp_path)
    bad = f"{ram}/bee/img_9.png"
    _write(bad, b"hello, world")
    dataset = _make(ram)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        _batches(dataset)
    message = str(info.value)
    assert f"Cannot load image file {bad}" in message
    assert "not an image in a supported format" in message
    skipping = _make(ram, on_bad_image="skip")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        _batches(skipping)
    assert list(skipping.skipped_files) == [bad]


def test_missing_ram_directory_and_file_as_directory():
    ram = f"ram://kerasgen-{uuid.uuid4().hex}"
    with pytest.raises(FileNotFoundError, match=r"`directory` does not exist. Received"):
        _make(f"{ram}/nowhere")
    _write(f"{ram}/file.png", _png(1))
    with pytest.raises(NotADirectoryError, match="must be a directory"):
        _make(f"{ram}/file.png")


def test_gfile_scandir_lists_like_os_scandir():
    ram = f"ram://kerasgen-{uuid.uuid4().hex}"
    _write(f"{ram}/a/x.png", b"x")
    _write(f"{ram}/b.png", b"b")
    entries = sorted(gfile_scandir(ram), key=lambda e: e.name)
    assert entries == [
        GFileEntry("a", f"{ram}/a", True),
        GFileEntry("b.png", f"{ram}/b.png", False),
    ]
    assert not entries[0].is_symlink()
    with pytest.raises(FileNotFoundError):
        gfile_scandir(f"{ram}/missing")
    with pytest.raises(NotADirectoryError):
        gfile_scandir(f"{ram}/b.png")


def test_cloud_storage_folders_are_told_by_their_trailing_slash(monkeypatch):
    """A `gs://` listing marks folders with "/": no request per entry to ask which."""
    monkeypatch.setattr(tf.io.gfile, "listdir", lambda path: ["cat/", "x.jpg"])

    def no_isdir(path):
        raise AssertionError(f"asked whether {path} is a folder")

    monkeypatch.setattr(tf.io.gfile, "isdir", no_isdir)
    entries = gfile_scandir("gs://bucket/images")
    assert entries == [
        GFileEntry("cat", "gs://bucket/images/cat", True),
        GFileEntry("x.jpg", "gs://bucket/images/x.jpg", False),
    ]


def test_which_paths_go_through_gfile():
    assert is_url("gs://bucket/x")
    assert is_url("ram://x")
    assert is_url("hdfs://namenode:8020/x")
    assert not is_url("/data/images")
    assert not is_url("C:\\data\\images")
    assert not is_url("relative/gs://x")
