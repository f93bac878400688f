"""kerasgen_tf's datasets: batches exactly as planned, epochs, shapes, dtypes, splits."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import tensorflow as tf

from balanced_sampler import SamplerWarning
from kerasgen_tf import balanced_image_dataset_from_directory, balanced_image_dataset_from_paths

P, K = 2, 2


def play(ds):
    """One pass over `ds` (the sampler's next epoch) as numpy arrays."""
    return [tuple(np.asarray(t) for t in b) if isinstance(b, tuple) else np.asarray(b) for b in ds]


def label_batches(ds):
    return [labels for _, labels in play(ds)]


def make(directory, **kwargs):
    kwargs.setdefault("image_size", (6, 5))
    kwargs.setdefault("verbose", False)
    kwargs.setdefault("seed", 123)
    return balanced_image_dataset_from_directory(directory, P, K, **kwargs)


def test_batches_are_the_planned_batches_epoch_after_epoch(class_tree, class_sizes):
    ds = make(class_tree)
    sampler = ds.sampler
    assert len(ds) == len(sampler) == int(ds.cardinality())
    epochs = []
    for epoch in range(3):
        assert sampler.epoch == epoch
        got = label_batches(ds)
        plan = sampler.plan(epoch)
        assert len(got) == len(plan)
        for labels, index in zip(got, plan, strict=True):
            np.testing.assert_array_equal(labels, sampler.labels[index])
        epochs.append(np.concatenate(plan))
    # Exhaustive: every file exactly once per epoch, reshuffled each epoch.
    for order in epochs:
        np.testing.assert_array_equal(np.sort(order), np.arange(sum(class_sizes.values())))
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[1], epochs[2])


def test_an_unused_iterator_does_not_use_up_an_epoch(class_tree):
    ds = make(class_tree)
    it = iter(ds)
    del it
    assert ds.sampler.epoch == 0
    next(iter(ds))
    assert ds.sampler.epoch == 1


def test_images_follow_the_plan(class_tree):
    ds = make(class_tree, image_size=4)
    for (images, _), index in zip(play(ds), ds.sampler.plan(0), strict=True):
        for image, i in zip(images, index, strict=True):
            raw = tf.io.read_file(ds.file_paths[i])
            decoded = tf.io.decode_image(raw, channels=3, expand_animations=False)
            np.testing.assert_array_equal(image, tf.image.resize(decoded, (4, 4)).numpy())


def test_same_seed_same_batches_other_seed_other_batches(class_tree):
    a, b, c = make(class_tree, seed=5), make(class_tree, seed=5), make(class_tree, seed=6)
    la, lb, lc = label_batches(a), label_batches(b), label_batches(c)
    assert all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))
    assert [x.tolist() for x in a.sampler.plan(0)] != [x.tolist() for x in c.sampler.plan(0)]
    assert len(lc) == len(la)


def test_fixed_mode_has_a_static_batch_dimension(class_tree):
    ds = make(class_tree, safe_triplet=True, samples_per_epoch=4 * P * K)
    images_spec, labels_spec = ds.element_spec
    assert images_spec.shape.as_list() == [P * K, 6, 5, 3]
    assert labels_spec.shape.as_list() == [P * K]
    assert len(ds) == 4
    batches = play(ds)
    assert len(batches) == 4
    for (images, labels), index in zip(batches, ds.sampler.plan(0), strict=True):
        assert images.shape == (P * K, 6, 5, 3)
        np.testing.assert_array_equal(labels, ds.sampler.labels[index])
        assert len(np.unique(labels)) == P


def test_exhaustive_mode_has_a_dynamic_batch_dimension(class_tree):
    ds = make(class_tree)
    assert ds.element_spec[0].shape.as_list() == [None, 6, 5, 3]
    sizes = {len(labels) for labels in label_batches(ds)}
    assert max(sizes) <= P * (K + 1)


@pytest.mark.parametrize(
    ("label_mode", "dtype", "shape"),
    [("int", tf.int32, [None]), ("categorical", tf.float32, [None, 6])],
)
def test_label_modes(class_tree, label_mode, dtype, shape):
    ds = make(class_tree, label_mode=label_mode)
    images_spec, labels_spec = ds.element_spec
    assert images_spec.dtype == tf.float32
    assert labels_spec.dtype == dtype
    assert labels_spec.shape.as_list() == shape
    for labels, index in zip(label_batches(ds), ds.sampler.plan(0), strict=True):
        expected = ds.sampler.labels[index]
        if label_mode == "categorical":
            np.testing.assert_array_equal(labels, np.eye(6, dtype=np.float32)[expected])
        else:
            np.testing.assert_array_equal(labels, expected)


def test_binary_labels(two_class_tree):
    ds = make(two_class_tree, label_mode="binary")
    assert ds.element_spec[1].dtype == tf.float32
    assert ds.element_spec[1].shape.as_list() == [None, 1]
    for labels, index in zip(label_batches(ds), ds.sampler.plan(0), strict=True):
        np.testing.assert_array_equal(labels[:, 0], ds.sampler.labels[index].astype(np.float32))


def test_binary_needs_two_classes(class_tree):
    with pytest.raises(ValueError, match="exactly 2"):
        make(class_tree, label_mode="binary")


@pytest.mark.parametrize(("labels", "label_mode"), [(None, "int"), ("inferred", None)])
def test_images_only_still_balanced_by_folder(class_tree, class_sizes, labels, label_mode):
    ds = make(class_tree, labels=labels, label_mode=label_mode)
    assert isinstance(ds.element_spec, tf.TensorSpec)
    assert ds.class_names == sorted(class_sizes)
    batches = play(ds)
    plan = ds.sampler.plan(0)
    assert [len(b) for b in batches] == [len(i) for i in plan]
    # Balanced by folder: each batch holds at most P classes.
    for index in plan:
        assert len(np.unique(ds.sampler.labels[index])) <= P


def test_explicit_labels_balance_the_batches(class_tree, class_sizes):
    n = sum(class_sizes.values())
    labels = [i % 3 for i in range(n)]
    ds = make(class_tree, labels=labels)
    assert ds.class_names == ["0", "1", "2"]
    for got, index in zip(label_batches(ds), ds.sampler.plan(0), strict=True):
        np.testing.assert_array_equal(got, np.asarray(labels)[index])


def test_class_names_set_the_label_order(class_tree, class_sizes):
    names = sorted(class_sizes, reverse=True)
    ds = make(class_tree, class_names=names)
    assert ds.class_names == names
    for path, label in zip(ds.file_paths, ds.sampler.labels, strict=True):
        assert f"/{names[label]}/" in path


@pytest.mark.parametrize(
    ("kwargs", "shape"),
    [
        ({"color_mode": "grayscale"}, [None, 6, 5, 1]),
        ({"color_mode": "rgba"}, [None, 6, 5, 4]),
        ({"image_size": 7}, [None, 7, 7, 3]),
        ({"image_size": [4, 9]}, [None, 4, 9, 3]),
        ({"data_format": "channels_first"}, [None, 3, 6, 5]),
        ({"crop_to_aspect_ratio": True, "interpolation": "NEAREST"}, [None, 6, 5, 3]),
        ({"pad_to_aspect_ratio": True, "interpolation": "area"}, [None, 6, 5, 3]),
    ],
)
def test_image_shapes(class_tree, kwargs, shape):
    ds = make(class_tree, **kwargs)
    assert ds.element_spec[0].shape.as_list() == shape
    assert ds.element_spec[0].dtype == tf.float32
    images, _ = next(iter(ds))
    assert images.dtype == tf.float32
    assert list(images.shape[1:]) == shape[1:]
    values = images.numpy()
    assert values.min() >= 0
    assert values.max() <= 255


def test_attributes(class_tree, class_sizes):
    ds = make(class_tree)
    assert ds.class_names == sorted(class_sizes)
    assert len(ds.file_paths) == sum(class_sizes.values())
    assert all(isinstance(p, str) for p in ds.file_paths)
    assert ds.sampler.num_classes_per_batch == P
    assert ds.sampler.num_images_per_class == K
    assert ds.sampler.seed == 123


def test_verbose_prints_what_was_found(class_tree, capsys):
    make(class_tree, verbose=True)
    out = capsys.readouterr().out
    assert "Found 22 files belonging to 6 classes." in out
    make(class_tree, verbose=False)
    assert capsys.readouterr().out == ""


def test_seed_none_is_drawn_and_kept(class_tree):
    ds = make(class_tree, seed=None)
    assert isinstance(ds.sampler.seed, int)


def test_subset_both_is_disjoint_complete_and_stratified(class_tree, class_sizes, capsys):
    train, val = make(class_tree, validation_split=0.3, subset="both", seed=7, verbose=True)
    out = capsys.readouterr().out
    assert f"Using {len(train.file_paths)} files for training." in out
    assert f"Using {len(val.file_paths)} files for validation." in out
    train_files, val_files = set(train.file_paths), set(val.file_paths)
    assert not train_files & val_files
    everything = set(make(class_tree).file_paths)
    assert train_files | val_files == everything
    # Stratified: every class of 2+ images is on both sides.
    for name, count in class_sizes.items():
        if count >= 2:
            assert any(f"/{name}/" in p for p in val.file_paths), name
            assert any(f"/{name}/" in p for p in train.file_paths), name
    # The training and validation subsets, asked separately, are the same.
    alone_train = make(class_tree, validation_split=0.3, subset="training", seed=7)
    alone_val = make(class_tree, validation_split=0.3, subset="validation", seed=7)
    assert alone_train.file_paths == train.file_paths
    assert alone_val.file_paths == val.file_paths
    # Batches are planned on the subset.
    for labels, index in zip(label_batches(val), val.sampler.plan(0), strict=True):
        np.testing.assert_array_equal(labels, val.sampler.labels[index])


def test_split_by_classes_keeps_classes_apart(class_tree):
    train, val = make(class_tree, validation_split=0.4, subset="both", seed=1, split_by="classes")
    assert not set(train.sampler.labels.tolist()) & set(val.sampler.labels.tolist())


def test_split_without_shuffle_needs_no_seed(class_tree):
    train, val = make(class_tree, validation_split=0.3, subset="both", seed=None, shuffle=False)
    assert not set(train.file_paths) & set(val.file_paths)


def test_unshuffled_epochs_repeat(balanced_tree):
    ds = make(balanced_tree, shuffle=False)
    first, second = label_batches(ds), label_batches(ds)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_fixed_mode_options_reach_the_sampler(class_tree):
    with pytest.warns(UserWarning, match="drop"):
        ds = make(class_tree, safe_triplet=True, small_classes="drop", class_weights="uniform")
    assert ds.sampler.small_classes == "drop"
    assert ds.sampler.class_weights == "uniform"
    for labels in label_batches(ds):
        assert len(labels) == P * K


def test_too_many_classes_per_batch(class_tree):
    with pytest.raises(ValueError, match="num_classes_per_batch"):
        balanced_image_dataset_from_directory(class_tree, 7, 2, verbose=False)


def test_from_paths_with_string_labels(class_tree, class_sizes):
    ref = make(class_tree)
    names = [p.split("/")[-2] for p in ref.file_paths]
    ds = balanced_image_dataset_from_paths(
        ref.file_paths,
        names,
        P,
        K,
        image_size=(6, 5),
        seed=123,
        verbose=False,
        label_mode="categorical",
    )
    assert ds.class_names == sorted(class_sizes)
    np.testing.assert_array_equal(ds.sampler.labels, ref.sampler.labels)
    for (_, ours), (_, theirs) in zip(play(ds), play(ref), strict=True):
        np.testing.assert_array_equal(ours.argmax(-1), theirs)


def test_from_paths_with_int_labels_and_class_names(class_tree):
    ref = make(class_tree)
    ds = balanced_image_dataset_from_paths(
        [pathlib.Path(p) for p in ref.file_paths],
        ref.sampler.labels,
        P,
        K,
        class_names=ref.class_names,
        image_size=(6, 5),
        seed=123,
        verbose=False,
    )
    assert ds.class_names == ref.class_names
    assert [x.tolist() for x in label_batches(ds)] == [x.tolist() for x in label_batches(ref)]


def test_images_only_with_class_names(class_tree, class_sizes):
    names = sorted(class_sizes, reverse=True)
    ds = make(class_tree, labels=None, class_names=names)
    assert ds.class_names == names
    assert isinstance(ds.element_spec, tf.TensorSpec)
    for path, label in zip(ds.file_paths, ds.sampler.labels, strict=True):
        assert f"/{names[label]}/" in path


def test_dropped_small_classes_are_named_by_folder(class_tree):
    # K=3: "eel" (2 images) and "fox" (1) are too small; the warning gives their folder names.
    with pytest.warns(SamplerWarning, match=r"small_classes='drop'") as record:
        balanced_image_dataset_from_directory(
            class_tree, num_classes_per_batch=2, num_images_per_class=3, image_size=(8, 8),
            safe_triplet=True, small_classes="drop", seed=1)
    message = str(next(w.message for w in record if w.category is SamplerWarning))
    assert "eel" in message
    assert "fox" in message
