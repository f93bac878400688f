"""`cache=` of the dataset builders: per-sample decoded cache, every epoch still its own plan."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tf_image_files import make_class_tree, write_image

import balanced_sampler.decoded_cache as decoded_cache_module
from balanced_sampler.decoded_cache import DecodedCacheWarning
from kerasgen_tf import (
    BadImageWarning,
    balanced_image_dataset_from_directory,
    balanced_image_dataset_from_paths,
)
from kerasgen_tf.decoded_cache import to_storage

WORKER = Path(__file__).parent / "scripts" / "cache_worker.py"
SIZES = {"a": 6, "b": 5, "c": 4, "d": 4, "e": 3}


@pytest.fixture
def tree(tmp_path):
    return make_class_tree(tmp_path / "data", SIZES, formats=("png", "jpg"))


def build(directory, cache=None, num_images_per_class=2, **kwargs):
    options = {"image_size": (6, 7), "seed": 5, "verbose": False, **kwargs}
    return balanced_image_dataset_from_directory(
        directory, 2, num_images_per_class, cache=cache, **options
    )


def play(ds):
    """One epoch: (images, labels) numpy pairs."""
    return [(x.numpy(), y.numpy()) for x, y in ds]


def reference(directory, **kwargs):
    """Every sample's uncached float32 image (from an uncached dataset's fixed plan)."""
    ds = build(directory, shuffle=False, **kwargs)
    images = {}
    for index, (x, _) in zip(ds.sampler.plan(0), play(ds), strict=True):
        images.update({int(i): image for i, image in zip(index, x, strict=True)})
    return np.stack([images[i] for i in range(len(images))])


def cache_arg(kind, tmp_path):
    return "memory" if kind == "memory" else str(tmp_path / "train.kgcache")


@pytest.mark.parametrize("kind", ["memory", "disk"])
@pytest.mark.parametrize("safe_triplet", [False, True])
def test_every_epoch_is_the_samplers_own_plan_with_pixels_within_half(
    tree, tmp_path, kind, safe_triplet
):
    expected = reference(tree)
    uncached = build(tree, safe_triplet=safe_triplet)
    ds = build(tree, cache_arg(kind, tmp_path), safe_triplet=safe_triplet)
    assert ds.decoded_cache.kind == kind
    assert ds.decoded_cache.layout.dtype == "uint8"
    assert len(ds) == len(uncached) == len(ds.sampler)
    assert ds.cardinality().numpy() == len(ds.sampler)
    epochs = []
    for epoch in range(3):
        plan = ds.sampler.plan(epoch)
        batches, plain = play(ds), play(uncached)
        assert len(batches) == len(plan)
        for (x, y), (x0, y0), index in zip(batches, plain, plan, strict=True):
            np.testing.assert_array_equal(y, y0)  # the same batches as without a cache
            assert np.abs(x - x0).max() <= 0.5
            np.testing.assert_array_equal(x, to_storage(expected[index], "uint8"))
        epochs.append(plan)
    assert any(
        len(a) != len(b) or not np.array_equal(a, b)
        for a, b in zip(epochs[0], epochs[1], strict=False)
    )  # reshuffled
    if not safe_triplet:
        assert ds.decoded_cache.num_filled == len(ds.file_paths)


def test_later_epochs_read_no_file(tmp_path):
    tree = make_class_tree(tmp_path / "data", SIZES, formats=("png",))
    ds = build(tree, "memory")
    first = play(ds)
    shutil.rmtree(tree)  # every image is in the cache after one exhaustive epoch
    by_sample = {}
    for (x, _), index in zip(first, ds.sampler.plan(0), strict=True):
        by_sample.update({int(i): image for i, image in zip(index, x, strict=True)})
    for epoch in (1, 2):
        for (x, _), index in zip(play(ds), ds.sampler.plan(epoch), strict=True):
            np.testing.assert_array_equal(x, np.stack([by_sample[int(i)] for i in index]))


def test_fixed_epochs_fill_the_cache_with_the_samples_they_show(tree):
    ds = build(tree, "memory", safe_triplet=True, num_images_per_class=3)
    seen = set()
    for epoch in range(3):
        for x, _ in play(ds):
            assert x.shape == (6, 6, 7, 3)
        seen.update(np.concatenate(ds.sampler.plan(epoch)).tolist())
        assert np.flatnonzero(ds.decoded_cache.filled).tolist() == sorted(seen)


def test_an_abandoned_epoch_leaves_only_whole_rows(tree):
    expected = to_storage(reference(tree), "uint8")
    ds = build(tree, "memory")
    iterator = iter(ds)
    next(iterator)
    next(iterator)
    del iterator
    filled = np.flatnonzero(ds.decoded_cache.filled)
    assert len(filled) >= 4
    np.testing.assert_array_equal(ds.decoded_cache.read(filled), expected[filled])
    for (x, _), index in zip(play(ds), ds.sampler.plan(1), strict=True):
        np.testing.assert_array_equal(x, expected[index])


@pytest.mark.parametrize("interpolation", ["bicubic", "lanczos3", "lanczos5", "mitchellcubic"])
def test_overshooting_kernels_are_stored_as_float16(tree, interpolation):
    options = {"image_size": (23, 29), "interpolation": interpolation}  # upsampled noise
    expected = reference(tree, **options)
    assert expected.min() < 0 or expected.max() > 255  # the kernel overshoots 0..255
    ds = build(tree, "memory", **options)
    assert ds.decoded_cache.layout.dtype == "float16"
    for (x, _), index in zip(play(ds), ds.sampler.plan(0), strict=True):
        assert np.abs(x - expected[index]).max() <= 0.125
        np.testing.assert_array_equal(x, expected[index].astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "area", "gaussian"])
def test_in_range_kernels_are_stored_as_uint8(tree, interpolation):
    expected = reference(tree, interpolation=interpolation)
    ds = build(tree, "memory", interpolation=interpolation)
    assert ds.decoded_cache.layout.dtype == "uint8"
    for (x, _), index in zip(play(ds), ds.sampler.plan(0), strict=True):
        assert np.abs(x - expected[index]).max() <= 0.5
        if interpolation == "nearest":  # integers already: exact
            np.testing.assert_array_equal(x, expected[index])


@pytest.mark.parametrize(
    ("options", "shape"),
    [
        ({"data_format": "channels_first"}, (3, 6, 7)),
        ({"color_mode": "grayscale", "crop_to_aspect_ratio": True}, (6, 7, 1)),
        ({"color_mode": "rgba", "pad_to_aspect_ratio": True}, (6, 7, 4)),
    ],
)
def test_images_are_stored_in_the_output_layout(tree, options, shape):
    expected = to_storage(reference(tree, **options), "uint8")
    ds = build(tree, "memory", **options)
    assert ds.decoded_cache.layout.image_shape == shape
    for (x, _), index in zip(play(ds), ds.sampler.plan(0), strict=True):
        np.testing.assert_array_equal(x, expected[index])


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_training_and_validation_share_one_cache(tree, tmp_path, kind):
    train, val = build(
        tree, cache_arg(kind, tmp_path), validation_split=0.4, subset="both", shuffle=False
    )
    cache = train.decoded_cache
    assert val.decoded_cache is cache
    assert cache.layout.num_images == len(train.file_paths) + len(val.file_paths)
    expected = {}
    for ds in (train, val):
        uncached = balanced_image_dataset_from_paths(
            ds.file_paths, ds.sampler.labels, 2, 2, image_size=(6, 7), shuffle=False,
            verbose=False,
        )
        for (x, _), (x0, _) in zip(play(ds), play(uncached), strict=True):
            np.testing.assert_array_equal(x, to_storage(x0, "uint8"))
        for index, (x0, _) in zip(ds.sampler.plan(0), play(uncached), strict=True):
            for i, image in zip(index, x0, strict=True):
                expected[ds.file_paths[i]] = to_storage(image, "uint8")
    assert cache.num_filled == cache.layout.num_images  # training rows first, then validation
    rows = [*train.file_paths, *val.file_paths]
    np.testing.assert_array_equal(
        cache.read(np.arange(len(rows))), np.stack([expected[p] for p in rows])
    )


def test_a_memory_cache_that_cannot_fit_is_refused_before_anything(tree, monkeypatch):
    monkeypatch.setattr(decoded_cache_module, "available_memory", lambda: 1000)
    with pytest.raises(MemoryError) as raised:
        build(tree, "memory", image_size=(30, 40))
    message = str(raised.value)
    assert "needs 79.2 kB (22 images of 30x40x3 uint8" in message
    assert "but only 1 kB of memory is available" in message
    assert "cache file" in message
    assert "smaller `image_size`" in message


@pytest.mark.parametrize(
    ("cache", "error", "match"),
    [
        (3, TypeError, r'`cache` must be None, "memory" or the path.*Received: cache=3'),
        ("", ValueError, "empty string"),
        ("/no/such/folder/x.kgcache", FileNotFoundError, "folder of the cache file"),
    ],
)
def test_bad_cache_arguments_raise_before_any_file_is_listed(cache, error, match):
    with pytest.raises(error, match=match):
        balanced_image_dataset_from_directory("/no/such/images", cache=cache)
    with pytest.raises(error, match=match):
        balanced_image_dataset_from_paths(["/no/such.png"], [0], cache=cache)


def test_a_folder_is_no_cache_file(tree, tmp_path):
    with pytest.raises(IsADirectoryError, match="path of a file, not of a folder"):
        build(tree, tmp_path)


# --------------------------------------------------------------------------- bad files


def corrupt(path):
    with open(path, "wb") as file:
        file.write(b"\x89PNG\r\n\x1a\n truncated")


def index_of(ds, name):
    return next(i for i, p in enumerate(ds.file_paths) if p.endswith(name))


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_skip_stores_the_replacement_and_reports_the_file_once(tree, tmp_path, kind):
    corrupt(tree / "b" / "img_01.jpg")
    ds = build(tree, cache_arg(kind, tmp_path), on_bad_image="skip", safe_triplet=True)
    with pytest.warns(BadImageWarning, match=r"img_01\.jpg") as caught:
        batches = [play(ds) for _ in range(4)]
    assert len([w for w in caught if issubclass(w.category, BadImageWarning)]) == 1
    bad = index_of(ds, "b/img_01.jpg")
    assert list(ds.skipped_files) == [ds.file_paths[bad]]
    labels = ds.sampler.labels
    shown = []
    for epoch, played in enumerate(batches):
        for (x, _), index in zip(played, ds.sampler.plan(epoch), strict=True):
            shown.extend(image for i, image in zip(index, x, strict=True) if i == bad)
    assert len(shown) >= 2
    replacement = shown[0]
    for image in shown:
        np.testing.assert_array_equal(image, replacement)  # always the same, from the cache
    same_class = [i for i in np.flatnonzero(labels == labels[bad]) if i != bad]
    assert any(
        np.array_equal(replacement, image) for image in ds.decoded_cache.read(same_class)
    )
    if kind == "memory":
        np.testing.assert_array_equal(ds.decoded_cache.read([bad])[0], replacement)
    else:  # kept by the dataset, never written to the shared file
        assert not ds.decoded_cache.filled[bad]
    if kind == "disk":  # the replacement is never trusted by another run
        ds.decoded_cache.close()
        again = build(tree, cache_arg(kind, tmp_path), on_bad_image="skip")
        assert again.decoded_cache.num_filled == len(again.file_paths) - 1
        with pytest.warns(BadImageWarning, match=r"img_01\.jpg"):
            play(again)
        assert list(again.skipped_files) == [ds.file_paths[bad]]


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_error_names_the_file_every_time_and_stores_nothing_of_its_batch(tree, tmp_path, kind):
    corrupt(tree / "c" / "img_02.png")
    ds = build(tree, cache_arg(kind, tmp_path))
    bad = index_of(ds, "c/img_02.png")
    for _ in range(2):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"c/img_02.png \(dataset.file"):
            play(ds)
        assert not ds.decoded_cache.filled[bad]
    if kind == "disk":  # a dataset that skipped it leaves nothing an "error" one would trust
        ds.decoded_cache.close()
        skipping = build(tree, cache_arg(kind, tmp_path), on_bad_image="skip")
        with pytest.warns(BadImageWarning):
            play(skipping)
        assert skipping.decoded_cache.num_filled == len(skipping.file_paths) - 1
        erring = build(tree, cache_arg(kind, tmp_path))  # same process, same open file
        assert erring.decoded_cache.file is skipping.decoded_cache.file
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"c/img_02\.png"):
            play(erring)
        skipping.decoded_cache.close()
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"c/img_02\.png"):
            play(build(tree, cache_arg(kind, tmp_path)))  # the next run


def test_the_batch_of_a_bad_file_stores_nothing_but_other_batches_do(tree):
    corrupt(tree / "a" / "img_03.png")
    ds = build(tree, "memory", shuffle=False)
    bad = index_of(ds, "a/img_03.png")
    plan = ds.sampler.plan(0)
    failing = next(k for k, index in enumerate(plan) if bad in index)
    iterator = iter(ds)
    for _ in range(failing):
        next(iterator)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"img_03\.png"):
        next(iterator)
    assert not ds.decoded_cache.filled[plan[failing]].any()
    assert ds.decoded_cache.filled[np.concatenate(plan[:failing])].all()


def test_verify_images_drops_bad_files_before_the_cache_is_sized(tree):
    corrupt(tree / "d" / "img_00.jpg")
    with pytest.warns(BadImageWarning, match="dropped 1 of 22"):
        ds = build(tree, "memory", verify_images=True)
    assert ds.decoded_cache.layout.num_images == 21 == len(ds.file_paths)
    play(ds)
    assert ds.decoded_cache.num_filled == 21


# --------------------------------------------------------------------------- disk, processes


def run_worker(tree, path, mode, **popen):
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(tree), str(path), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def read_json(process):
    line = process.stdout.readline()
    assert line, process.stderr.read()
    return json.loads(line)


def pixel_sums(ds):
    """Pixel sum of every sample's cached image, from `ds`'s cache."""
    return ds.decoded_cache.read(np.arange(len(ds.file_paths))).sum(axis=(1, 2, 3))


@pytest.mark.slow
def test_the_next_run_reuses_the_file_and_a_changed_file_rebuilds_it(tree, tmp_path):
    path = tmp_path / "train.kgcache"
    first = run_worker(tree, path, "epoch")
    out = read_json(first)
    assert first.wait(timeout=120) == 0
    assert (out["role"], out["filled_at_start"], out["filled"]) == ("writer", 0, 22)
    second = run_worker(tree, path, "epoch")
    again = read_json(second)
    assert second.wait(timeout=120) == 0
    assert (again["role"], again["filled_at_start"]) == ("writer", 22)  # nothing to decode
    assert again["warnings"] == []
    sums = {i: s for index, values in out["batches"] for i, s in zip(index, values, strict=True)}
    for index, values in again["batches"]:
        assert values == [sums[i] for i in index]
    os.utime(tree / "a" / "img_00.png", ns=(0, 10**9))  # one file touched: rebuilt
    with pytest.warns(DecodedCacheWarning, match="rebuilding"):
        ds = build(tree, str(path))
    assert ds.decoded_cache.num_filled == 0


@pytest.mark.slow
def test_a_run_killed_while_filling_leaves_only_synced_rows_trusted(tree, tmp_path):
    path = tmp_path / "train.kgcache"
    killed = run_worker(tree, path, "killed")
    out = read_json(killed)
    killed.wait(timeout=120)
    assert killed.returncode == -9
    assert out["role"] == "writer"
    assert out["filled"] < 22  # killed while filling
    ds = build(tree, str(path))
    trusted = np.flatnonzero(ds.decoded_cache.filled)
    assert set(out["committed"]) <= set(trusted.tolist())
    assert len(trusted) <= out["filled"] < 22  # rows written after the sync may be lost
    expected = to_storage(reference(tree), "uint8")
    np.testing.assert_array_equal(ds.decoded_cache.read(trusted), expected[trusted])
    for (x, _), index in zip(play(ds), ds.sampler.plan(0), strict=True):
        np.testing.assert_array_equal(x, expected[index])
    assert ds.decoded_cache.num_filled == 22


@pytest.mark.slow
def test_a_second_process_fills_a_private_cache_while_the_first_writes(tree, tmp_path):
    path = tmp_path / "train.kgcache"
    writer = run_worker(tree, path, "hold", stdin=subprocess.PIPE)
    held = read_json(writer)
    try:
        assert held["role"] == "writer"
        assert held["filled"] < 22  # still filling
        second = run_worker(tree, path, "epoch")
        out = read_json(second)
        assert second.wait(timeout=120) == 0
        assert out["role"] == "private"
        assert any("being filled by another process" in w for w in out["warnings"])
        assert (out["filled_at_start"], out["filled"]) == (0, 22)
    finally:
        writer.stdin.write("\n")
        writer.stdin.flush()
    assert read_json(writer)["filled"] == 22
    assert writer.wait(timeout=120) == 0
    assert sorted(os.listdir(tmp_path)) == ["data", "train.kgcache", "train.kgcache.lock"]
    ds = build(tree, str(path))  # the shared file is complete: the private copy is gone
    assert ds.decoded_cache.num_filled == 22
    expected = to_storage(reference(tree), "uint8")
    np.testing.assert_array_equal(pixel_sums(ds), expected.sum(axis=(1, 2, 3)))
    sums = {i: s for index, values in out["batches"] for i, s in zip(index, values, strict=True)}
    np.testing.assert_allclose([sums[i] for i in range(22)], expected.sum(axis=(1, 2, 3)))


# --------------------------------------------------------------------------- other paths


def test_dataset_cache_gives_the_per_sample_cache_not_a_frozen_plan(tree, tmp_path):
    ds = build(tree)
    assert ds.decoded_cache is None
    frozen = tf.data.Dataset.cache(ds)  # tf.data's own method: records epoch 0, replays it
    first, second = play(frozen), play(frozen)
    for (x, y), (x2, y2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(y, y2)  # epoch 2 repeats epoch 1 batch for batch
        np.testing.assert_array_equal(x, x2)
    cached = ds.cache()
    assert cached is not ds
    assert cached.decoded_cache.kind == "memory"
    assert cached.sampler is ds.sampler
    assert cached.cache() is cached  # already so cached
    epoch = ds.sampler.epoch
    for e in range(epoch, epoch + 2):
        for (_, y), index in zip(play(cached), ds.sampler.plan(e), strict=True):
            np.testing.assert_array_equal(y, ds.sampler.labels[index])
    on_disk = cached.cache(str(tmp_path / "x.kgcache"))
    assert on_disk.decoded_cache.kind == "disk"
    assert len(play(on_disk)) == len(ds)


def test_sequential_embedding_reads_through_the_cache(tmp_path):
    from kerasgen_tf.embedding import sequential_dataset

    tree = make_class_tree(tmp_path / "data", SIZES, formats=("png",))
    ds = build(tree, "memory")
    play(ds)
    stored = ds.decoded_cache.read(np.arange(len(ds.file_paths)))
    shutil.rmtree(tree)  # served from the cache, or it fails
    images, labels = sequential_dataset(ds, batch_size=5)
    np.testing.assert_array_equal(np.concatenate([x.numpy() for x in images]), stored)
    np.testing.assert_array_equal(labels, ds.sampler.labels)


def test_sequential_embedding_fills_the_cache(tree):
    from kerasgen_tf.embedding import sequential_dataset

    ds = build(tree, "memory")
    images, _ = sequential_dataset(ds)
    for _ in images:
        pass
    assert ds.decoded_cache.num_filled == len(ds.file_paths)


def test_tf_distribute_pipelines_read_and_fill_the_datasets_cache(tree):
    from kerasgen_tf.distribute import distributed_dataset_fn

    expected = to_storage(reference(tree), "uint8")
    ds = build(tree, "memory", seed=4)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    dist = strategy.distribute_datasets_from_function(distributed_dataset_fn(ds))
    for epoch in range(2):
        batches = [strategy.experimental_local_results(x)[0].numpy() for x, _ in dist]
        for x, index in zip(batches, ds.sampler.plan(epoch), strict=True):
            np.testing.assert_array_equal(x, expected[index])
    assert ds.decoded_cache.num_filled == len(ds.file_paths)


def test_a_checkpointed_epoch_resumes_with_the_cache(tree, tmp_path):
    from kerasgen_tf.distribute import checkpointable_dataset

    ds = build(tree, "memory", safe_triplet=True)
    full = [x for x, _ in play(checkpointable_dataset(ds, 1))]
    iterator = iter(checkpointable_dataset(ds, 1))
    next(iterator)
    saved = tf.train.Checkpoint(iterator=iterator).save(str(tmp_path / "ckpt"))
    resumed = iter(checkpointable_dataset(build(tree, "memory", safe_triplet=True), 1))
    tf.train.Checkpoint(iterator=resumed).restore(saved)
    rest = [x.numpy() for x, _ in resumed]
    assert len(rest) == len(full) - 1
    for a, b in zip(rest, full[1:], strict=True):
        np.testing.assert_array_equal(a, b)


def test_tf_data_service_refuses_a_cached_dataset(tree):
    from kerasgen_tf.distribute import data_service_dataset

    with pytest.raises(ValueError, match=r"decoded cache.*without `cache`"):
        data_service_dataset(build(tree, "memory"), "grpc://localhost:1", num_epochs=1)


def test_fit_trains_on_a_cached_dataset(tree):
    import keras

    ds = build(tree, "memory", safe_triplet=True, label_mode="categorical")
    model = keras.Sequential(
        [keras.Input((6, 7, 3)), keras.layers.Flatten(), keras.layers.Dense(5, "softmax")]
    )
    model.compile("adam", "categorical_crossentropy")
    history = model.fit(ds, epochs=3, verbose=0)
    assert len(history.history["loss"]) == 3
    assert ds.sampler.epoch == 3
    assert ds.decoded_cache.num_filled > 0


def test_a_cache_file_that_is_not_a_cache_is_left_untouched(tree, tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("keep me")
    with pytest.raises(FileExistsError, match="not a kerasgen cache file"):
        build(tree, str(other))
    assert other.read_text() == "keep me"


def test_a_new_file_in_the_tree_rebuilds_the_cache_file(tree, tmp_path):
    path = str(tmp_path / "c.kgcache")
    ds = build(tree, path)
    play(ds)
    ds.decoded_cache.close()
    write_image(tree / "e" / "img_09.png", 99, (8, 9))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = build(tree, path)
    assert any(issubclass(w.category, DecodedCacheWarning) for w in caught)
    assert ds.decoded_cache.num_filled == 0
    assert ds.decoded_cache.layout.num_images == 23
