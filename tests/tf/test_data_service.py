"""Decoding on tf.data service workers: `kerasgen_tf.distribute.data_service_dataset`.

A dispatcher and two workers run in this process on loopback (port 0).
Each image of the trees encodes its sample index in its colour, so the
batches that come back can be checked against `ds.sampler.plan(e)`.
"""

from __future__ import annotations

import pathlib
import sys
import warnings
from collections import Counter

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasgen_tf import BadImageWarning, balanced_image_dataset_from_directory
from kerasgen_tf.distribute import data_service_dataset

sys.path.insert(0, str(pathlib.Path(__file__).parent / "scripts"))

from distributed_common import make_indexed_tree, sample_indices

P, K = 2, 3
SERVICE = tf.data.experimental.service


def start_service(num_workers: int) -> tuple[str, list[object]]:
    dispatcher = SERVICE.DispatchServer(SERVICE.DispatcherConfig(port=0))
    address = dispatcher.target.split("://")[1]
    workers = [
        SERVICE.WorkerServer(SERVICE.WorkerConfig(dispatcher_address=address, port=0))
        for _ in range(num_workers)
    ]
    return dispatcher.target, [dispatcher, *workers]  # keep the servers alive


@pytest.fixture(scope="module")
def two_workers():
    target, servers = start_service(2)
    yield target
    del servers


@pytest.fixture(scope="module")
def one_worker():
    target, servers = start_service(1)
    yield target
    del servers


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_indexed_tree(tmp_path_factory.mktemp("service"), [7, 5, 4, 3, 6, 5])


def make(tree, fixed, **kwargs):
    options = {"image_size": (4, 5), "seed": 11, "safe_triplet": fixed, "verbose": False}
    return balanced_image_dataset_from_directory(tree, P, K, **{**options, **kwargs})


def play(dataset):
    return [(sample_indices(x.numpy()), y.numpy().tolist()) for x, y in dataset]


@pytest.mark.parametrize("fixed", [False, True], ids=["exhaustive", "fixed"])
def test_every_planned_batch_once_epoch_after_epoch(tree, two_workers, fixed):
    ds = make(tree, fixed)
    remote = data_service_dataset(ds, two_workers, num_epochs=3)
    assert len(remote) == 3 * len(ds)
    played = play(remote)
    assert len(played) == 3 * len(ds)
    plans = [[b.tolist() for b in ds.sampler.plan(e)] for e in range(3)]
    assert plans[0] != plans[1] != plans[2]  # reshuffled
    for e, plan in enumerate(plans):
        # Epochs in order: epoch e is exactly batches e * len(ds) ... (e + 1) * len(ds) - 1,
        # each planned batch once (in any order across the two workers).
        epoch = played[e * len(ds) : (e + 1) * len(ds)]
        assert sorted(indices for indices, _ in epoch) == sorted(plan)
        for indices, labels in epoch:
            assert labels == ds.sampler.labels[indices].tolist()
            if fixed:
                counts = Counter(labels)
                assert len(counts) == P
                assert set(counts.values()) == {K}


def test_one_worker_keeps_the_plan_order(tree, one_worker):
    ds = make(tree, fixed=False)
    played = play(data_service_dataset(ds, one_worker, num_epochs=2, first_epoch=4))
    assert [i for i, _ in played] == [b.tolist() for e in (4, 5) for b in ds.sampler.plan(e)]


def test_attributes_and_element_spec(tree, two_workers):
    ds = make(tree, fixed=True, label_mode="categorical")
    remote = data_service_dataset(ds, two_workers, num_epochs=1)
    assert remote.element_spec == ds.element_spec
    assert remote.class_names == ds.class_names
    assert remote.file_paths == ds.file_paths
    assert remote.sampler is ds.sampler
    assert remote.skipped_files is ds.skipped_files


def test_fit_a_small_model(tree, two_workers):
    ds = make(tree, fixed=True)
    remote = data_service_dataset(ds, two_workers, num_epochs=2)
    model = keras.Sequential(
        [keras.Input((4, 5, 3)), keras.layers.Flatten(), keras.layers.Dense(6)]
    )
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    history = model.fit(remote, epochs=2, steps_per_epoch=len(ds), verbose=0)
    assert len(history.history["loss"]) == 2
    assert np.isfinite(history.history["loss"]).all()


def _write_bad(tree_root: pathlib.Path) -> str:
    bad = tree_root / "class_01" / "zz_truncated.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    return str(bad)


@pytest.mark.parametrize("fixed", [False, True], ids=["exhaustive", "fixed"])
def test_bad_file_error_names_the_file(tmp_path, two_workers, fixed):
    root = make_indexed_tree(tmp_path, [4, 4, 4])
    bad = _write_bad(root)
    ds = make(root, fixed=fixed, shuffle=False)
    remote = data_service_dataset(ds, two_workers, num_epochs=1)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        play(remote)
    message = str(info.value)
    index = ds.file_paths.index(bad)
    assert f"Cannot load image file {bad} (dataset.file_paths[{index}])" in message
    assert "PNG data cannot be decoded" in message
    assert "Traceback" not in message


def test_bad_file_skip_replaces_and_records(tmp_path, two_workers):
    root = make_indexed_tree(tmp_path, [4, 4, 4])
    bad = _write_bad(root)
    ds = make(root, fixed=True, on_bad_image="skip")
    remote = data_service_dataset(ds, two_workers, num_epochs=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        played = play(remote)
    assert len(played) == 2 * len(ds)
    assert list(ds.skipped_files) == [bad]
    assert [str(w.message).split("'")[1] for w in caught if w.category is BadImageWarning] == [bad]
    for colours, labels in played:
        # The tree's images have the colours 0-11, 4 per class in order; the bad file's
        # rows hold another image of its class.
        assert [c // 4 for c in colours] == labels
        counts = Counter(labels)
        assert len(counts) == P
        assert set(counts.values()) == {K}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"service": 5050}, TypeError, "`service` must be the address"),
        ({"num_epochs": 0}, ValueError, "`num_epochs` must be an integer >= 1"),
        ({"num_epochs": 1.5}, TypeError, "`num_epochs` must be an integer"),
        ({"first_epoch": -1}, ValueError, "`first_epoch` must be an integer >= 0"),
        ({"compression": "gzip"}, ValueError, "`compression`"),
    ],
)
def test_arguments(tree, kwargs, error, match):
    ds = make(tree, fixed=False)
    options = {"service": "grpc://localhost:1", "num_epochs": 1, **kwargs}
    service = options.pop("service")
    with pytest.raises(error, match=match):
        data_service_dataset(ds, service, **options)


def test_only_kerasgen_datasets(two_workers):
    with pytest.raises(TypeError, match="`dataset` must be a dataset returned by"):
        data_service_dataset(tf.data.Dataset.range(3), two_workers, num_epochs=1)
