"""What the datasets do with bad files, odd paths and bad arguments (issue #6).

Every case is written in `tmp_path` with Pillow; images are 8x8 or smaller
so the whole module runs in a few seconds.
"""

from __future__ import annotations

import io
import os
import re
import warnings

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from balanced_sampler import IndexingWarning
from kerasgen_tf import (
    BadImageWarning,
    balanced_image_dataset_from_directory,
    balanced_image_dataset_from_paths,
)

SIZE = (8, 8)


def _pixels(seed: int, shape: tuple[int, ...], dtype: type = np.uint8) -> np.ndarray:
    high = 65536 if dtype == np.uint16 else 256
    return np.random.default_rng(seed).integers(0, high, shape).astype(dtype)


def _png_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(_pixels(seed, (6, 7, 3))).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(_pixels(seed, (16, 16, 3))).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _tree(root, sizes: dict[str, int]) -> dict[str, list[str]]:
    """Good PNG images: {class: [paths]}."""
    paths: dict[str, list[str]] = {}
    seed = 0
    for name, count in sizes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            path = root / name / f"img_{i}.png"
            path.write_bytes(_png_bytes(seed))
            paths.setdefault(name, []).append(str(path))
            seed += 1
    return paths


# Each bad case: (file name, bytes or None for "deleted after indexing", words of the reason).
BAD_CASES = {
    "random_bytes": ("noise.jpg", np.random.default_rng(1).bytes(300), "not an image"),
    "truncated_jpeg": ("cut.jpg", _jpeg_bytes(2)[:200], "truncated or corrupt"),
    "empty_file": ("empty.png", b"", "empty (0 bytes)"),
    "text_as_png": ("notes.png", b"just some text\n", "not an image"),
    "deleted": ("gone.png", None, "does not exist"),
}


def _write_bad(folder, case: str) -> str:
    name, data, _ = BAD_CASES[case]
    path = folder / name
    path.write_bytes(_png_bytes(99) if data is None else data)
    return str(path)


def _iterate(dataset, epochs: int = 1) -> list:
    return [batch for _ in range(epochs) for batch in dataset]


def _make(root, **kwargs):
    options = {
        "num_classes_per_batch": 2,
        "num_images_per_class": 2,
        "image_size": SIZE,
        "seed": 3,
        "verbose": False,
        **kwargs,
    }
    return balanced_image_dataset_from_directory(root, **options)


# ----------------------------------------------------------------------------- bad images


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_default_error_names_the_file_and_the_problem(tmp_path, case):
    _tree(tmp_path, {"a": 3, "b": 3})
    bad = _write_bad(tmp_path / "a", case)
    dataset = _make(tmp_path)
    if BAD_CASES[case][1] is None:
        os.remove(bad)  # after indexing, before reading
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        _iterate(dataset)
    message = str(info.value)
    assert f"Cannot load image file {bad} (dataset.file_paths[" in message, message
    index = int(re.search(r"file_paths\[(\d+)\]", message).group(1))
    assert dataset.file_paths[index] == bad
    assert BAD_CASES[case][2] in message
    assert "on_bad_image=skip" in message


@pytest.mark.parametrize("safe_triplet", [True, False])
def test_skip_replaces_bad_files_by_their_class_and_warns_once(tmp_path, safe_triplet):
    _tree(tmp_path, {"a": 3, "b": 3, "c": 3})
    bad = {case: _write_bad(tmp_path / "abc"[i % 3], case) for i, case in enumerate(BAD_CASES)}
    # Class folders are "a", "b", "c"; files were spread over them.
    dataset = _make(tmp_path, on_bad_image="skip", safe_triplet=safe_triplet)
    os.remove(bad["deleted"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = _iterate(dataset, epochs=3)
    assert len(batches) == 3 * len(dataset)
    skip_warnings = [w for w in caught if issubclass(w.category, BadImageWarning)]
    assert sorted(str(w.message).split("'")[1] for w in skip_warnings) == sorted(bad.values())
    assert sorted(dataset.skipped_files) == sorted(bad.values())
    for images, labels in batches:
        labels = labels.numpy()
        if safe_triplet:
            assert images.shape == (4, *SIZE, 3)
            assert sorted(np.unique(labels, return_counts=True)[1].tolist()) == [2, 2]
        assert images.shape[0] == len(labels)
        assert np.isfinite(images.numpy()).all()


def test_skip_keeps_the_plan_of_good_batches(tmp_path):
    """Batches without a bad file are exactly the planned ones."""
    paths = _tree(tmp_path, {"a": 4, "b": 4})
    bad = _write_bad(tmp_path / "a", "empty_file")
    dataset = _make(tmp_path, on_bad_image="skip", safe_triplet=True, shuffle=False)
    plan = dataset.sampler.plan(0)
    files = dataset.file_paths
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadImageWarning)
        batches = _iterate(dataset)
    reference = {p: i for i, p in enumerate(paths["a"] + paths["b"])}
    assert bad not in reference
    for planned, (images, labels) in zip(plan, batches, strict=True):
        planned_files = [files[i] for i in planned]
        assert labels.numpy().tolist() == [dataset.sampler.labels[i] for i in planned]
        if bad not in planned_files:
            assert images.shape[0] == len(planned)


def test_skip_fails_clearly_when_a_whole_class_is_unreadable(tmp_path):
    _tree(tmp_path, {"a": 2})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.png").write_bytes(b"")
    (tmp_path / "b" / "y.png").write_bytes(b"nope")
    dataset = _make(tmp_path, on_bad_image="skip", safe_triplet=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadImageWarning)
        with pytest.raises(tf.errors.InvalidArgumentError, match="no image of class"):
            _iterate(dataset)


def test_verify_images_drops_bad_files_up_front(tmp_path):
    _tree(tmp_path, {"a": 3, "b": 3})
    bad = sorted(
        _write_bad(tmp_path / "ab"[i % 2], case)
        for i, case in enumerate(BAD_CASES)
        if case != "deleted"
    )
    with pytest.warns(BadImageWarning, match=f"dropped {len(bad)} of 10 files") as record:
        dataset = _make(tmp_path, verify_images=True)
    assert all(path in str(record[0].message) for path in bad)
    assert sorted(dataset.skipped_files) == bad
    assert not set(bad) & set(dataset.file_paths)
    assert len(dataset.file_paths) == 6
    assert len(_iterate(dataset)) == len(dataset)


def test_verify_images_applies_before_the_split(tmp_path):
    _tree(tmp_path, {"a": 4, "b": 4})
    bad = _write_bad(tmp_path / "a", "truncated_jpeg")
    with pytest.warns(BadImageWarning):
        train, val = _make(
            tmp_path, verify_images=True, validation_split=0.25, subset="both", seed=1
        )
    assert bad not in train.file_paths + val.file_paths
    assert train.skipped_files is val.skipped_files
    assert list(train.skipped_files) == [bad]


def test_verify_images_from_paths(tmp_path):
    paths = _tree(tmp_path, {"a": 2, "b": 2})
    files = paths["a"] + paths["b"]
    _write_bad(tmp_path / "a", "text_as_png")
    files.append(str(tmp_path / "a" / "notes.png"))
    with pytest.warns(BadImageWarning, match="notes.png"):
        dataset = balanced_image_dataset_from_paths(
            files, [0, 0, 1, 1, 0], 2, 2, image_size=SIZE, verify_images=True, verbose=False
        )
    assert len(dataset.file_paths) == 4


def test_healthy_data_has_no_skipped_files(tmp_path):
    _tree(tmp_path, {"a": 2, "b": 2})
    dataset = _make(tmp_path, verify_images=True)
    assert dataset.skipped_files == {}
    assert len(_iterate(dataset, epochs=2)) == 2 * len(dataset)


# ------------------------------------------------------------------- unusual image formats


def _unusual_image(path, case: str) -> None:
    if case == "animated_gif":
        frames = [Image.fromarray(_pixels(s, (5, 6, 3))) for s in range(3)]
        frames[0].save(path, save_all=True, append_images=frames[1:])
    elif case == "grayscale_jpeg":
        Image.fromarray(_pixels(1, (5, 6))).save(path)
    elif case == "rgba_png":
        Image.fromarray(_pixels(2, (5, 6, 4)), "RGBA").save(path)
    elif case == "png_16_bit":
        Image.fromarray(_pixels(3, (5, 6), np.uint16)).save(path)
    elif case == "cmyk_jpeg":
        Image.fromarray(_pixels(4, (5, 6, 3))).convert("CMYK").save(path)


UNUSUAL = {
    "animated_gif": "x.gif",
    "grayscale_jpeg": "x.jpg",
    "rgba_png": "x.png",
    "png_16_bit": "x.png",
    "cmyk_jpeg": "x.jpg",
}


@pytest.mark.parametrize("case", sorted(UNUSUAL))
def test_unusual_formats_decode_as_keras_decodes_them(tmp_path, case):
    import keras

    (tmp_path / "only").mkdir()
    _unusual_image(tmp_path / "only" / UNUSUAL[case], case)
    dataset = _make(tmp_path, num_classes_per_batch=1, num_images_per_class=1, image_size=(5, 6))
    ((images, _),) = _iterate(dataset)
    reference = keras.utils.image_dataset_from_directory(
        tmp_path, image_size=(5, 6), batch_size=1, shuffle=False, verbose=False
    )
    ((keras_images, _),) = list(reference)
    assert images.shape == (1, 5, 6, 3)
    np.testing.assert_array_equal(images.numpy(), keras_images.numpy())
    if case == "animated_gif":  # the first frame
        first = np.asarray(Image.open(tmp_path / "only" / "x.gif").convert("RGB"), np.float32)
        np.testing.assert_array_equal(images.numpy()[0], first)


# ------------------------------------------------------------------------------ odd paths


def test_unicode_spaces_and_long_names(tmp_path):
    long_name = "ä" * 60 + " " + "x" * 100  # 161 characters, over 200 bytes in UTF-8
    names = ["chat noir 🐈", "日本語", long_name]
    for i, name in enumerate(names):
        (tmp_path / name).mkdir()
        for j in range(2):
            (tmp_path / name / f"ïmage {j} ✓ {'y' * 80}.png").write_bytes(_png_bytes(i * 2 + j))
    dataset = _make(tmp_path, num_classes_per_batch=3)
    assert dataset.class_names == sorted(names)
    labels = np.concatenate([y.numpy() for _, y in _iterate(dataset)])
    assert sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2]


def test_hidden_files_and_folders(tmp_path):
    _tree(tmp_path, {"a": 2, "b": 2})
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "x.png").write_bytes(_png_bytes(7))
    (tmp_path / "a" / ".hidden.png").write_bytes(_png_bytes(8))
    dataset = _make(tmp_path)
    assert dataset.class_names == ["a", "b"]  # a hidden folder is no class
    assert str(tmp_path / "a" / ".hidden.png") in dataset.file_paths  # as in Keras
    assert len(_iterate(dataset)) == len(dataset)


def test_empty_class_folder_is_a_class_never_sampled(tmp_path):
    _tree(tmp_path, {"a": 3, "c": 3})
    (tmp_path / "b").mkdir()
    with pytest.warns(IndexingWarning, match="contain no file"):
        dataset = _make(tmp_path, label_mode="categorical", safe_triplet=True)
    assert dataset.class_names == ["a", "b", "c"]
    for _, labels in _iterate(dataset, epochs=2):
        assert labels.shape[1] == 3
        assert not labels.numpy()[:, 1].any()


def test_top_level_files_are_ignored_with_a_warning(tmp_path):
    _tree(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "stray.png").write_bytes(_png_bytes(5))
    with pytest.warns(IndexingWarning, match="stray.png"):
        dataset = _make(tmp_path)
    assert len(dataset.file_paths) == 4


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlinked_class_folder_and_cycle_terminate(tmp_path):
    data = tmp_path / "data"
    _tree(data, {"a": 2})
    elsewhere = tmp_path / "elsewhere"
    _tree(elsewhere, {"b": 2})
    os.symlink(elsewhere / "b", data / "b")
    os.symlink(data / "a", data / "a" / "loop")  # a cycle
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IndexingWarning)
        dataset = _make(data, follow_links=True)
    assert dataset.class_names == ["a", "b"]
    assert len(dataset.file_paths) == 4
    assert len(_iterate(dataset)) == len(dataset)


# ------------------------------------------------------------------------------ arguments


@pytest.mark.parametrize(
    ("kwargs", "error", "match", "shows"),
    [
        ({"on_bad_image": "ignore"}, ValueError, "on_bad_image", "'ignore'"),
        ({"on_bad_image": None}, ValueError, "on_bad_image", "None"),
        ({"verify_images": "yes"}, TypeError, "verify_images", "'yes'"),
        ({"label_mode": "binary"}, ValueError, "binary", "['a', 'b', 'c']"),
        ({"labels": [0, 1, 0]}, ValueError, "labels", "len(labels) is 3"),
        ({"class_names": ["a", "b", "zzz"]}, ValueError, "class_names", "zzz"),
        ({"num_classes_per_batch": 4}, ValueError, "num_classes_per_batch", "4"),
    ],
)
def test_bad_arguments_end_to_end(tmp_path, kwargs, error, match, shows):
    """The message names the argument and shows the value received."""
    _tree(tmp_path, {"a": 2, "b": 2, "c": 2})
    with pytest.raises(error, match=match) as info:
        _make(tmp_path, **kwargs)
    assert shows in str(info.value)


def test_more_classes_per_batch_than_the_subset_has(tmp_path):
    _tree(tmp_path, {name: 2 for name in "abcde"})
    with pytest.raises(ValueError, match="num_classes_per_batch"):
        _make(
            tmp_path,
            num_classes_per_batch=3,
            validation_split=0.4,
            subset="validation",
            split_by="classes",
        )


def test_arguments_checked_before_any_file_is_read(tmp_path, monkeypatch):
    import kerasgen_tf.dataset_from_directory as module

    monkeypatch.setattr(module, "index_directory", None)
    with pytest.raises(ValueError, match="on_bad_image"):
        _make(tmp_path, on_bad_image="drop")


def test_a_failing_sampler_is_reported_not_hidden(tmp_path):
    """An error while planning an epoch is raised at its first batch, not swallowed."""
    from kerasgen_tf._pipeline import pipeline_of
    from kerasgen_tf._plans import live_plans

    _tree(tmp_path, {"a": 2, "b": 2})
    dataset = _make(tmp_path, safe_triplet=True)

    class BrokenSampler:
        batch_size = 4
        safe_triplet = True
        epoch = 0

        def __len__(self) -> int:
            return 3

        def iter_arrays(self):
            yield np.arange(4)
            raise RuntimeError("planning broke")

    iterator = iter(pipeline_of(dataset).build(live_plans(BrokenSampler())))
    # TensorFlow raises a Python exception of a `tf.py_function` as UnknownError.
    with pytest.raises(tf.errors.UnknownError, match="planning broke"):
        next(iterator)


# ------------------------------------------------------- the same on every path


def _paths_of(dataset):
    """The datasets that play `dataset`'s files by another path than its own."""
    from kerasgen_tf.distribute import checkpointable_dataset, sharded_dataset

    context = tf.distribute.InputContext(1, 0, 1)
    return {
        "builder": dataset,
        "sharded_dataset": sharded_dataset(dataset, context),
        "checkpointable_dataset": checkpointable_dataset(dataset, 0),
    }


@pytest.mark.parametrize("fixed", [False, True], ids=["exhaustive", "fixed"])
@pytest.mark.parametrize("path", ["builder", "sharded_dataset", "checkpointable_dataset"])
def test_a_bad_file_stops_every_path_naming_it(tmp_path, path, fixed):
    _tree(tmp_path, {"a": 3, "b": 3})
    bad = _write_bad(tmp_path / "b", "truncated_jpeg")
    dataset = _paths_of(_make(tmp_path, shuffle=False, safe_triplet=fixed))[path]
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        _iterate(dataset)
    message = str(info.value)
    index = dataset.file_paths.index(bad)
    assert f"Cannot load image file {bad} (dataset.file_paths[{index}]): the JPEG data" in message


@pytest.mark.parametrize("path", ["builder", "sharded_dataset", "checkpointable_dataset"])
def test_skip_is_the_same_on_every_path(tmp_path, path):
    _tree(tmp_path, {"a": 3, "b": 3})
    bad = _write_bad(tmp_path / "b", "text_as_png")
    base = _make(tmp_path, on_bad_image="skip", safe_triplet=True)
    dataset = _paths_of(base)[path]
    with pytest.warns(BadImageWarning, match="notes.png"):
        batches = _iterate(dataset)
    assert len(batches) == len(dataset)
    assert list(base.skipped_files) == [bad]
    assert dataset.skipped_files is base.skipped_files
    for images, labels in batches:
        assert sorted(np.unique(labels.numpy(), return_counts=True)[1].tolist()) == [2, 2]
        assert np.all(images.numpy().reshape(4, -1).max(axis=1) > 0)  # no blank row


# ---------------------------------------------------------------- clear messages


def test_cmyk_jpeg_in_grayscale_names_the_colour_conversion(tmp_path):
    _tree(tmp_path, {"a": 2})
    (tmp_path / "b").mkdir()
    Image.fromarray(_pixels(4, (5, 6, 3))).convert("CMYK").save(tmp_path / "b" / "cmyk.jpg")
    (tmp_path / "b" / "ok.png").write_bytes(_png_bytes(5))
    dataset = _make(tmp_path, color_mode="grayscale", shuffle=False)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        _iterate(dataset)
    message = str(info.value)
    assert "cmyk.jpg" in message
    assert "cannot convert to grayscale, most likely a CMYK JPEG" in message
    assert "color_mode=rgb" in message
    assert "truncated" not in message


def test_one_clean_message_per_bad_file(tmp_path, capfd):
    """No Python traceback in the error; libjpeg's complaint printed once per decode pass."""
    _tree(tmp_path, {"a": 3, "b": 3})
    bad = _write_bad(tmp_path / "a", "truncated_jpeg")
    dataset = _make(tmp_path)
    capfd.readouterr()
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        _iterate(dataset)
    message = str(info.value)
    assert message.count(bad) == 1
    for noise in ("Traceback", "Detected at node", "_bad_images", ".py"):
        assert noise not in message
    assert capfd.readouterr().err.count("JPEG library") <= 1

    skipping = _make(tmp_path, on_bad_image="skip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _iterate(skipping, epochs=3)
    assert [w.category for w in caught] == [BadImageWarning]  # one warning for 3 epochs
    assert capfd.readouterr().err.count("JPEG library") <= 3  # the first decode of each epoch


def test_no_retracing_warning_with_several_datasets(tmp_path, caplog):
    _tree(tmp_path, {"a": 3, "b": 3})
    _write_bad(tmp_path / "a", "random_bytes")
    _write_bad(tmp_path / "b", "truncated_jpeg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadImageWarning)
        for seed in range(7):
            _iterate(_make(tmp_path, on_bad_image="skip", seed=seed))
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


def test_validation_split_zero_means_no_split(tmp_path):
    _tree(tmp_path, {"a": 3, "b": 3})
    dataset = _make(tmp_path, validation_split=0.0)
    assert len(dataset.file_paths) == 6
    with pytest.raises(ValueError, match=r"If `subset` is set, `validation_split` must be set"):
        _make(tmp_path, validation_split=0, subset="training")


def test_too_few_classes_in_a_subset_says_which_subset(tmp_path):
    _tree(tmp_path, {name: 2 for name in "abcd"})
    with pytest.raises(ValueError, match="num_classes_per_batch") as info:
        _make(
            tmp_path,
            num_classes_per_batch=2,
            validation_split=0.25,
            subset="validation",
            split_by="classes",
        )
    message = str(info.value)
    assert "The validation subset (2 files of 1 of the 4 classes) cannot be batched" in message
