"""Every argument is checked up front, with Keras-style messages."""

from __future__ import annotations

import pytest

from kerasgen_tf import balanced_image_dataset_from_directory, balanced_image_dataset_from_paths

BAD_ARGUMENTS = [
    ({"num_classes_per_batch": 0}, ValueError, "num_classes_per_batch"),
    ({"num_classes_per_batch": 2.5}, TypeError, "num_classes_per_batch"),
    ({"num_images_per_class": True}, TypeError, "num_images_per_class"),
    ({"labels": "folders"}, ValueError, "labels"),
    ({"labels": {1: 2}}, ValueError, "labels"),
    ({"labels": [0, 1], "class_names": ["a"]}, ValueError, "class_names"),
    ({"label_mode": "sparse"}, ValueError, "label_mode"),
    ({"class_names": "ant"}, TypeError, "class_names"),
    ({"class_names": ["ant", "ant"]}, ValueError, "class_names"),
    ({"color_mode": "RGB"}, ValueError, "color_mode"),
    ({"image_size": (1, 2, 3)}, ValueError, "image_size"),
    ({"image_size": (0, 4)}, ValueError, "image_size"),
    ({"image_size": "big"}, ValueError, "image_size"),
    ({"shuffle": "yes"}, TypeError, "shuffle"),
    ({"seed": -1}, ValueError, "seed"),
    ({"seed": 1.5}, TypeError, "seed"),
    ({"validation_split": 1.5, "subset": "training", "seed": 1}, ValueError, "validation_split"),
    ({"validation_split": "0.2", "subset": "training", "seed": 1}, TypeError, "validation_split"),
    ({"validation_split": 0.2, "seed": 1}, ValueError, "subset"),
    ({"subset": "training", "seed": 1}, ValueError, "subset"),
    ({"validation_split": 0.2, "subset": "train", "seed": 1}, ValueError, "subset"),
    ({"validation_split": 0.2, "subset": "training"}, ValueError, "seed"),
    ({"safe_triplet": 1}, TypeError, "safe_triplet"),
    ({"samples_per_epoch": 8}, ValueError, "samples_per_epoch"),
    ({"samples_per_epoch": 7, "safe_triplet": True}, ValueError, "samples_per_epoch"),
    ({"samples_per_epoch": 0, "safe_triplet": True}, ValueError, "samples_per_epoch"),
    ({"interpolation": "cubic"}, ValueError, "interpolation"),
    ({"interpolation": None}, ValueError, "interpolation"),
    ({"follow_links": "no"}, TypeError, "follow_links"),
    ({"crop_to_aspect_ratio": True, "pad_to_aspect_ratio": True}, ValueError, "aspect_ratio"),
    ({"data_format": "channels_middle"}, ValueError, "data_format"),
    ({"verbose": None}, TypeError, "verbose"),
    ({"class_weights": "uniform"}, ValueError, "class_weights"),
    ({"class_weights": "flat", "safe_triplet": True}, ValueError, "class_weights"),
    ({"class_weights": object(), "safe_triplet": True}, TypeError, "class_weights"),
    ({"small_classes": "drop"}, ValueError, "small_classes"),
    ({"small_classes": "skip", "safe_triplet": True}, ValueError, "small_classes"),
    ({"split_by": "folders"}, ValueError, "split_by"),
]


@pytest.mark.parametrize(("kwargs", "error", "name"), BAD_ARGUMENTS)
def test_bad_argument_is_named_in_the_error(class_tree, kwargs, error, name):
    with pytest.raises(error, match=name) as info:
        balanced_image_dataset_from_directory(class_tree, **{"verbose": False, **kwargs})
    assert "Received" in str(info.value)


def test_directory_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="Received: directory="):
        balanced_image_dataset_from_directory(tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        balanced_image_dataset_from_directory(tmp_path / "file.png")
    with pytest.raises(TypeError):
        balanced_image_dataset_from_directory(3)


def test_arguments_are_checked_before_indexing(tmp_path, monkeypatch):
    import kerasgen_tf.dataset_from_directory as module

    def fail(*args, **kwargs):
        raise AssertionError("indexed before checking the arguments")

    monkeypatch.setattr(module, "index_directory", fail)
    with pytest.raises(ValueError, match="interpolation"):
        balanced_image_dataset_from_directory(tmp_path, interpolation="cubic")


def test_empty_directory(tmp_path):
    with pytest.raises(ValueError, match="No images found"):
        balanced_image_dataset_from_directory(tmp_path, verbose=False)


def test_categorical_needs_dense_labels(class_tree):
    labels = [5 * (i % 2) for i in range(22)]  # two classes labelled 0 and 5
    with pytest.raises(ValueError, match="categorical"):
        balanced_image_dataset_from_directory(
            class_tree, labels=labels, label_mode="categorical", verbose=False
        )


@pytest.mark.parametrize(
    ("file_paths", "labels", "kwargs", "error", "match"),
    [
        ("a.png", [0], {}, TypeError, "file_paths"),
        ([], [], {}, ValueError, "file_paths"),
        ([1, 2], [0, 1], {}, TypeError, "file_paths"),
        (["a.png", "b.png"], [0], {}, ValueError, "one label per file"),
        (["a.png", "b.png"], 0, {}, TypeError, "labels"),
        (["a.png", "b.png"], [0.5, 1.0], {}, TypeError, "labels"),
        (["a.png", "b.png"], ["x", "y"], {"class_names": ["x"]}, ValueError, "class_names"),
        (["a.png", "b.png"], [0, 3], {"class_names": ["x", "y"]}, ValueError, "class_names"),
        (["a.png", "b.png"], [0, 1], {"color_mode": "cmyk"}, ValueError, "color_mode"),
    ],
)
def test_from_paths_arguments(file_paths, labels, kwargs, error, match):
    with pytest.raises(error, match=match):
        balanced_image_dataset_from_paths(file_paths, labels, 1, 1, verbose=False, **kwargs)
