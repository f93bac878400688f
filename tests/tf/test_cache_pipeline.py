"""The decoded cache in a tf.data pipeline of planned batches (a stand-in for the builders').

The stand-in is the pipeline's shape: a plan source of int64 index batches
(the live sampler through `from_generator`, or one epoch's materialised plan),
then one map stage `index -> images` that the cache provides.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tf_image_files import make_class_tree

from balanced_sampler import BalancedBatchSampler, index_directory
from balanced_sampler.decoded_cache import (
    IN_RANGE_INTERPOLATIONS,
    OVERSHOOTING_INTERPOLATIONS,
    DecodedCacheWarning,
)
from kerasgen_tf._args import INTERPOLATIONS, check_image_options
from kerasgen_tf._decode import make_image_loader
from kerasgen_tf.decoded_cache import (
    install_cache_method,
    open_decoded_cache,
    to_storage,
)

SIZES = {"a": 6, "b": 5, "c": 4, "d": 4, "e": 3}


@pytest.fixture
def tree(tmp_path):
    return make_class_tree(tmp_path / "data", SIZES, formats=("png", "jpg"))


def options(interpolation="bilinear", data_format="channels_last", size=(7, 9)):
    return check_image_options(
        color_mode="rgb",
        image_size=size,
        interpolation=interpolation,
        crop_to_aspect_ratio=False,
        pad_to_aspect_ratio=False,
        data_format=data_format,
    )


def live_source(sampler):
    batch = sampler.batch_size if sampler.safe_triplet else None

    def epoch():
        for indices in sampler.iter_arrays():
            yield np.asarray(indices, np.int64)

    ds = tf.data.Dataset.from_generator(epoch, output_signature=tf.TensorSpec((batch,), tf.int64))
    return ds.apply(tf.data.experimental.assert_cardinality(len(sampler)))


def pipeline(source, load_batch):
    ds = source.map(load_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def reference(paths, opts):
    load = tf.function(make_image_loader(opts))
    return np.stack([load(tf.constant(p)).numpy() for p in paths])


def build(tree, cache, opts=None, *, safe_triplet=False, seed=3):
    opts = opts or options()
    paths, labels, _ = index_directory(tree)
    sampler = BalancedBatchSampler(labels, 2, 2, safe_triplet=safe_triplet, seed=seed)
    store = open_decoded_cache(
        cache, paths, opts.image_shape, opts.interpolation, {"size": list(opts.image_size)}
    )
    loader = store.batch_loader(
        paths, make_image_loader(opts), sampler.batch_size if safe_triplet else None
    )
    return paths, sampler, store, pipeline(live_source(sampler), loader)


def play(ds):
    return [batch.numpy() for batch in ds]


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_every_epoch_is_the_samplers_plan_with_the_stored_pixels(tree, tmp_path, cache):
    if cache == "disk":
        cache = str(tmp_path / "train.kgcache")
    opts = options()
    paths, sampler, store, ds = build(tree, cache, opts)
    expected = reference(paths, opts)
    stored = to_storage(expected, "uint8").astype(np.float32)
    assert np.abs(stored - expected).max() <= 0.5
    assert len(ds) == len(sampler)
    assert ds.cardinality().numpy() == len(sampler)
    epochs = [play(ds) for _ in range(3)]
    assert store.num_filled == len(paths)
    for e, batches in enumerate(epochs):
        plan = sampler.plan(e)
        assert len(batches) == len(plan)
        for batch, index in zip(batches, plan, strict=True):
            np.testing.assert_array_equal(batch, stored[index])
    assert [b.shape[0] for b in epochs[0]] == [len(b) for b in sampler.plan(0)]
    assert any(
        not np.array_equal(a, b) for a, b in zip(sampler.plan(0), sampler.plan(1), strict=False)
    )


def test_later_epochs_read_no_file(tree):
    paths, sampler, store, ds = build(tree, "memory")
    first = play(ds)
    shutil.rmtree(tree)  # every image is in the cache after one exhaustive epoch
    second = play(ds)
    plan0, plan1 = sampler.plan(0), sampler.plan(1)
    by_sample = {}
    for batch, index in zip(first, plan0, strict=True):
        by_sample.update({int(i): image for i, image in zip(index, batch, strict=True)})
    for batch, index in zip(second, plan1, strict=True):
        for i, image in zip(index, batch, strict=True):
            np.testing.assert_array_equal(image, by_sample[int(i)])
    assert len(paths) == store.num_filled


def test_fixed_batches_fill_the_cache_over_epochs(tree):
    opts = options()
    paths, sampler, store, ds = build(tree, "memory", opts, safe_triplet=True)
    stored = to_storage(reference(paths, opts), "uint8").astype(np.float32)
    seen = set()
    for epoch in range(4):
        batches = play(ds)
        for batch, index in zip(batches, sampler.plan(epoch), strict=True):
            assert batch.shape == (4, 7, 9, 3)
            np.testing.assert_array_equal(batch, stored[index])
            seen.update(index.tolist())
        assert store.num_filled == len(seen)
        assert np.flatnonzero(store.filled).tolist() == sorted(seen)


def test_an_abandoned_epoch_leaves_only_complete_rows(tree):
    opts = options()
    paths, sampler, store, ds = build(tree, "memory", opts)
    stored = to_storage(reference(paths, opts), "uint8").astype(np.float32)
    iterator = iter(ds)
    next(iterator)
    next(iterator)
    del iterator
    filled = np.flatnonzero(store.filled)
    assert len(filled) >= 4
    np.testing.assert_array_equal(store.read(filled), stored[filled])
    batches = play(ds)  # the next epoch (the sampler's epoch 1, as without a cache)
    for batch, index in zip(batches, sampler.plan(1), strict=True):
        np.testing.assert_array_equal(batch, stored[index])


@pytest.mark.parametrize("interpolation", OVERSHOOTING_INTERPOLATIONS)
def test_overshooting_kernels_are_stored_as_float16(tree, interpolation):
    opts = options(interpolation, size=(41, 43))  # upsampling noise: the kernels overshoot
    paths, sampler, store, ds = build(tree, "memory", opts)
    assert store.layout.dtype == "float16"
    expected = reference(paths, opts)
    assert expected.min() < 0 or expected.max() > 255  # the kernel overshoots here
    for batch, index in zip(play(ds), sampler.plan(0), strict=True):
        assert np.abs(batch - expected[index]).max() <= 0.125
        np.testing.assert_array_equal(batch, expected[index].astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("interpolation", IN_RANGE_INTERPOLATIONS)
def test_in_range_kernels_round_to_uint8_within_half(tree, interpolation):
    opts = options(interpolation)
    paths, sampler, store, ds = build(tree, "memory", opts)
    assert store.layout.dtype == "uint8"
    expected = reference(paths, opts)
    for batch, index in zip(play(ds), sampler.plan(0), strict=True):
        assert np.abs(batch - expected[index]).max() <= 0.5
    if interpolation == "nearest":
        np.testing.assert_array_equal(store.read(range(len(paths))), expected)


def test_the_dtype_rule_covers_every_interpolation_the_adapter_allows():
    assert sorted(IN_RANGE_INTERPOLATIONS + OVERSHOOTING_INTERPOLATIONS) == sorted(INTERPOLATIONS)


def test_channels_first_images_are_stored_in_the_output_layout(tree):
    opts = options(data_format="channels_first")
    paths, sampler, store, ds = build(tree, "memory", opts)
    assert store.layout.image_shape == (3, 7, 9)
    expected = to_storage(reference(paths, opts), "uint8").astype(np.float32)
    for batch, index in zip(play(ds), sampler.plan(0), strict=True):
        np.testing.assert_array_equal(batch, expected[index])


def test_two_datasets_share_one_cache_through_row_tables(tree):
    opts = options()
    paths, labels, _ = index_directory(tree)
    train, val = np.arange(0, len(paths), 2), np.arange(1, len(paths), 2)
    store = open_decoded_cache("memory", paths, opts.image_shape, "bilinear", {})
    stored = to_storage(reference(paths, opts), "uint8").astype(np.float32)
    for subset in (train, val):
        sub_paths = [paths[i] for i in subset]
        sampler = BalancedBatchSampler(labels[subset], 2, 1, seed=0)
        loader = store.batch_loader(sub_paths, make_image_loader(opts), rows=subset)
        for batch, index in zip(
            play(pipeline(live_source(sampler), loader)), sampler.plan(0), strict=True
        ):
            np.testing.assert_array_equal(batch, stored[subset[index]])
    assert store.num_filled == len(paths)
    with pytest.raises(ValueError, match="one cache row per file: 2 rows for 3 files"):
        store.batch_loader(paths[:3], make_image_loader(opts), rows=np.arange(2))


def test_a_bad_file_fails_its_batch_and_stores_nothing_of_it(tree):
    opts = options()
    paths, _labels, _ = index_directory(tree)
    bad = 5
    with open(paths[bad], "wb") as file:
        file.write(b"not an image at all")
    store = open_decoded_cache("memory", paths, opts.image_shape, "bilinear", {})
    loader = store.batch_loader(paths, make_image_loader(opts))
    batches = [np.array([0, 1]), np.array([2, bad, 3]), np.array([4, 6])]
    source = tf.data.Dataset.from_generator(
        lambda: iter(batches), output_signature=tf.TensorSpec((None,), tf.int64)
    )
    ds = source.map(loader)
    with pytest.raises(tf.errors.OpError, match=r"(?s)Unknown image file format|decode"):
        play(ds)
    assert not store.filled[[2, bad, 3]].any()
    survivors = play(ds.ignore_errors())  # what the bad-file guard sees
    assert [len(b) for b in survivors] == [2, 2]
    # The guard rebuilds the batch and stores its images (here: a replacement at the bad row).
    good = reference([paths[2], paths[0], paths[3]], opts)
    store.store([2, bad, 3], good)
    np.testing.assert_array_equal(store.read([bad]), to_storage(good[1:2], "uint8"))
    assert len(play(ds)) == 3  # the bad row is now served from the cache


def test_a_disk_cache_is_reused_by_the_next_run(tree, tmp_path):
    path = str(tmp_path / "train.kgcache")
    opts = options()
    paths, _sampler, store, ds = build(tree, path, opts)
    play(ds)
    store.close()
    stored = to_storage(reference(paths, opts), "uint8").astype(np.float32)
    _, sampler2, store2, ds2 = build(tree, path, opts)
    assert store2.file.role == "writer"
    assert store2.num_filled == len(paths)  # nothing to decode in this run
    for batch, index in zip(play(ds2), sampler2.plan(0), strict=True):
        np.testing.assert_array_equal(batch, stored[index])
    store2.close()
    os.utime(paths[0], ns=(0, 10**9))  # a file touched: rebuilt
    with pytest.warns(DecodedCacheWarning, match="rebuilding"):
        _, _, store3, _ = build(tree, path, opts)
    assert store3.num_filled == 0
    store3.close()


def test_a_memory_cache_that_cannot_fit_is_refused_before_filling(tree):
    paths, _, _ = index_directory(tree)
    with pytest.raises(MemoryError, match=r"needs 4.16 kB \(22 images of 7x9x3 uint8"):
        open_decoded_cache("memory", paths, (7, 9, 3), "bilinear", {}, available_memory=1000)


def test_a_materialised_epoch_with_a_cache_resumes_from_a_checkpoint(tree, tmp_path):
    opts = options()
    paths, labels, _ = index_directory(tree)
    sampler = BalancedBatchSampler(labels, 2, 2, safe_triplet=True, seed=1)
    store = open_decoded_cache("memory", paths, opts.image_shape, "bilinear", {})
    loader = store.batch_loader(paths, make_image_loader(opts), sampler.batch_size)

    def epoch_dataset():
        plan = np.stack(sampler.plan(0)).astype(np.int64)
        ds = pipeline(tf.data.Dataset.from_tensor_slices(plan), loader)
        opt = tf.data.Options()
        opt.experimental_symbolic_checkpoint = True
        return ds.with_options(opt)

    full = play(epoch_dataset())
    iterator = iter(epoch_dataset())
    next(iterator)
    checkpoint = tf.train.Checkpoint(iterator=iterator)
    saved = checkpoint.save(str(tmp_path / "ckpt"))
    resumed = iter(epoch_dataset())
    tf.train.Checkpoint(iterator=resumed).restore(saved)
    rest = [b.numpy() for b in resumed]
    assert len(rest) == len(full) - 1
    for a, b in zip(rest, full[1:], strict=True):
        np.testing.assert_array_equal(a, b)


def test_pipelines_of_a_tf_distribute_strategy_share_the_cache(tree):
    opts = options()
    paths, labels, _ = index_directory(tree)
    store = open_decoded_cache("memory", paths, opts.image_shape, "bilinear", {})
    stored = to_storage(reference(paths, opts), "uint8").astype(np.float32)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    samplers = []

    def dataset_fn(context):
        sampler = BalancedBatchSampler(
            labels,
            2,
            2,
            seed=4,
            num_shards=context.num_input_pipelines,
            shard_index=context.input_pipeline_id,
        )
        samplers.append(sampler)
        loader = store.batch_loader(paths, make_image_loader(opts))
        return pipeline(live_source(sampler), loader)

    dist = strategy.distribute_datasets_from_function(dataset_fn)
    for epoch in range(2):
        batches = [strategy.experimental_local_results(b)[0].numpy() for b in dist]
        for batch, index in zip(batches, samplers[0].plan(epoch), strict=True):
            np.testing.assert_array_equal(batch, stored[index])
    assert store.num_filled == len(paths)


def test_dataset_cache_freezes_the_plan_and_the_replacement_does_not(tree):
    opts = options()
    _paths, sampler, _store, ds = build(tree, "memory", opts)
    frozen = ds.cache()  # tf.data's own: records epoch 0, replays it
    plays = [play(frozen) for _ in range(2)]
    assert len(plays[0]) == len(sampler.plan(0))
    for a, b in zip(*plays, strict=True):
        np.testing.assert_array_equal(a, b)  # epoch 2 repeats epoch 1 batch for batch
    assert sampler.epoch == 1  # the sampler was asked for one epoch only

    def rebuild(cache):
        return build(tree, cache, opts, seed=3)[3]

    ds = install_cache_method(build(tree, "memory", opts)[3], rebuild)
    cached = ds.cache()
    assert isinstance(cached, tf.data.Dataset)
    assert cached is not ds
    first, second = play(cached), play(cached)
    assert any(
        a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(first, second, strict=False)
    )
    on_disk = ds.cache(str(tree) + ".kgcache")
    assert len(play(on_disk)) == len(sampler.plan(0))


def test_loaders_with_equal_decoder_keys_share_one_decode_function(tree):
    opts = options()
    paths, _, _ = index_directory(tree)
    first = open_decoded_cache("memory", paths, opts.image_shape, "bilinear", {})
    second = open_decoded_cache("memory", paths[:5], opts.image_shape, "bilinear", {})
    load = make_image_loader(opts)
    key = (opts, False)
    assert first._decoder(load, key) is second._decoder(load, key)
    assert first._decoder(load, None) is not first._decoder(load, None)
    loader = second.batch_loader(paths[:5], load, decoder_key=key)
    np.testing.assert_array_equal(
        loader(tf.constant([4, 0], tf.int64)).numpy(),
        to_storage(reference([paths[4], paths[0]], opts), "uint8").astype(np.float32),
    )


def test_a_cache_built_inside_a_strategy_scope_stays_one_host_copy(tree):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        store = open_decoded_cache("memory", ["a.png", "b.png"], (2, 2, 3), "bilinear", {})
    assert type(store._images).__name__ == "ResourceVariable"
    assert type(store._filled).__name__ == "ResourceVariable"
    assert "CPU" in store._images.device
    store.store([1], np.full((1, 2, 2, 3), 7.4, np.float32))
    np.testing.assert_array_equal(store.read([1]), np.full((1, 2, 2, 3), 7, np.float32))
    assert store.num_filled == 1
