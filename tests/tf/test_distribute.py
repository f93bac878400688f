"""Scaling out: per-pipeline shards for tf.distribute, checkpointable epochs.

The sharding logic is tested in this process with hand-made
`tf.distribute.InputContext`s; real strategies (MirroredStrategy over 2
logical CPUs with `model.fit`, MultiWorkerMirroredStrategy over 2 worker
processes on 127.0.0.1 with a custom loop) and restoring a checkpoint in a
fresh process run the scripts of `scripts/` in subprocesses.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
from collections import Counter

import attrs
import numpy as np
import pytest
import tensorflow as tf

from kerasgen_tf import balanced_image_dataset_from_directory, balanced_image_dataset_from_paths
from kerasgen_tf.distribute import checkpointable_dataset, distributed_dataset_fn, sharded_dataset

SCRIPTS = pathlib.Path(__file__).parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

from distributed_common import make_indexed_tree, sample_indices  # noqa: E402

P, K = 2, 3
UNEVEN = [7, 5, 4, 3, 2, 9]  # 30 samples
EVEN = [6] * 6  # 36 samples: every sample exactly once per epoch in both modes


@pytest.fixture(scope="module")
def uneven_tree(tmp_path_factory):
    return make_indexed_tree(tmp_path_factory.mktemp("uneven"), UNEVEN)


@pytest.fixture(scope="module")
def even_tree(tmp_path_factory):
    return make_indexed_tree(tmp_path_factory.mktemp("even"), EVEN)


def make(tree, fixed, seed=11, **kwargs):
    ds = balanced_image_dataset_from_directory(
        tree, P, K, image_size=(4, 5), seed=seed, safe_triplet=fixed, verbose=False, **kwargs
    )
    # The pixel colour of a file is its position in the listing, i.e. its sampler index.
    names = [pathlib.Path(p).parent.name + "/" + pathlib.Path(p).name for p in ds.file_paths]
    assert names == sorted(names)
    return ds


def context(pipelines, pipeline_id, replicas):
    return tf.distribute.InputContext(
        num_input_pipelines=pipelines,
        input_pipeline_id=pipeline_id,
        num_replicas_in_sync=replicas,
    )


def play(dataset):
    return [[sample_indices(x.numpy()), y.numpy().tolist()] for x, y in dataset]


def global_plan(ds, epoch, samples_per_epoch=None):
    sampler = attrs.evolve(ds.sampler, samples_per_epoch=samples_per_epoch)
    return [b.tolist() for b in sampler.plan(epoch)]


def assert_exact_pk(labels):
    counts = Counter(labels)
    assert len(counts) == P, labels
    assert set(counts.values()) == {K}, labels


# ------------------------------------------------------------------ sharding


@pytest.mark.parametrize("fixed", [False, True], ids=["exhaustive", "fixed"])
def test_pipelines_split_the_global_plan(uneven_tree, fixed):
    # 2 input pipelines feeding 2 replicas each: 4 replicas in sync.
    ds = make(uneven_tree, fixed)
    shards = [play(sharded_dataset(ds, context(2, i, 4))) for i in range(2)]
    if fixed:
        # Default epoch rounded up to a multiple of P * K * replicas: nothing is left out.
        spe = -(-len(ds.sampler.labels) // (P * K * 4)) * P * K * 4
        plan = global_plan(ds, 0, spe)
        assert len(plan) % 4 == 0
    else:
        plan = global_plan(ds, 0)
    g = len(plan)
    steps = g // 4
    assert [len(s) for s in shards] == [2 * steps, 2 * steps]
    for i, shard in enumerate(shards):
        # Pipeline i plays global batches i, i + 2, ...; its replicas take them in turn.
        assert [indices for indices, _ in shard] == plan[i : 4 * steps : 2]
        for indices, labels in shard:
            assert labels == ds.sampler.labels[indices].tolist()
            if fixed:
                assert_exact_pk(labels)
    seen = [i for shard in shards for indices, _ in shard for i in indices]
    if not fixed:
        # Every sample at most once; only the last g % 4 global batches are left out.
        assert len(seen) == len(set(seen))
        left_out = {i for batch in plan[4 * steps :] for i in batch}
        assert set(seen) == set(range(len(ds.sampler.labels))) - left_out


def test_each_pass_is_the_next_epoch(uneven_tree):
    ds = make(uneven_tree, fixed=False)
    shard = sharded_dataset(ds, context(1, 0, 2))
    plans = [global_plan(ds, e) for e in range(2)]
    for epoch in range(2):
        steps = len(plans[epoch]) // 2
        assert len(shard) == 2 * steps
        assert [i for i, _ in play(shard)] == plans[epoch][: 2 * steps]


def test_distributed_dataset_fn_returns_the_pipeline_builder(even_tree):
    ds = make(even_tree, fixed=True)
    fn = distributed_dataset_fn(ds)
    shard = fn(context(2, 1, 2))
    assert shard.element_spec[0].shape == (P * K, 4, 5, 3)
    assert shard.class_names == ds.class_names
    assert shard.sampler.num_shards == 2
    assert shard.sampler.shard_index == 1
    assert len(shard) == 3


def test_several_workers_need_a_seed(even_tree):
    ds = balanced_image_dataset_from_directory(
        even_tree, P, K, image_size=4, safe_triplet=True, verbose=False
    )
    sharded_dataset(ds, context(1, 0, 2))  # one process: its drawn seed is shared
    with pytest.raises(ValueError, match=r"explicit integer `seed`.*seed=None"):
        sharded_dataset(ds, context(2, 0, 2))
    unshuffled = balanced_image_dataset_from_directory(
        even_tree, P, K, image_size=4, shuffle=False, verbose=False
    )
    sharded_dataset(unshuffled, context(2, 0, 2))


def test_sharding_errors(even_tree):
    ds = make(even_tree, fixed=False)
    with pytest.raises(TypeError, match=r"`dataset` must be a dataset returned by"):
        distributed_dataset_fn(tf.data.Dataset.range(3))
    with pytest.raises(TypeError, match=r"`input_context` must be a `tf.distribute.InputContext`"):
        sharded_dataset(ds, "worker-0")
    with pytest.raises(ValueError, match=r"num_replicas_in_sync=3, num_input_pipelines=2"):
        sharded_dataset(ds, context(2, 0, 3))
    with pytest.raises(ValueError, match=r"fewer than the 16 replicas"):
        sharded_dataset(ds, context(1, 0, 16))


def test_works_on_datasets_from_paths(even_tree):
    paths = sorted(str(p) for p in pathlib.Path(even_tree).glob("*/*.png"))
    labels = [pathlib.Path(p).parent.name for p in paths]
    ds = balanced_image_dataset_from_paths(
        paths, labels, P, K, image_size=(4, 5), seed=3, verbose=False
    )
    shards = [play(sharded_dataset(ds, context(2, i, 2))) for i in range(2)]
    assert len(shards[0]) == len(shards[1])
    seen = [i for s in shards for indices, _ in s for i in indices]
    assert sorted(seen) == list(range(36))


# ------------------------------------------------------------- checkpointable


@pytest.mark.parametrize("fixed", [False, True], ids=["exhaustive", "fixed"])
def test_checkpointable_dataset_plays_the_epoch_plan(uneven_tree, fixed):
    ds = make(uneven_tree, fixed)
    cds = checkpointable_dataset(ds, 2)
    assert len(cds) == len(ds)
    assert cds.element_spec[0].shape[0] == (P * K if fixed else None)
    plan = [b.tolist() for b in ds.sampler.plan(2)]
    assert [i for i, _ in play(cds)] == plan
    assert [i for i, _ in play(cds)] == plan  # every iterator plays the same epoch


def test_checkpointable_dataset_shards_like_the_distributed_one(uneven_tree):
    ds = make(uneven_tree, fixed=False)
    for i in range(2):
        assert play(checkpointable_dataset(ds, 0, context(2, i, 4))) == play(
            sharded_dataset(ds, context(2, i, 4))
        )


def test_checkpointable_dataset_checks_epoch(uneven_tree):
    ds = make(uneven_tree, fixed=False)
    with pytest.raises(TypeError, match=r"`epoch` must be an integer >= 0. Received: epoch=1.5"):
        checkpointable_dataset(ds, 1.5)
    with pytest.raises(ValueError, match=r"Received: epoch=-1"):
        checkpointable_dataset(ds, -1)


def run_script(name, *args, env=None, timeout=180):
    env = dict(os.environ if env is None else env, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / name), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("fixed", [False, True], ids=["exhaustive", "fixed"])
def test_iterator_checkpoint_resumes_in_a_fresh_process(uneven_tree, tmp_path, fixed):
    ds = make(uneven_tree, fixed)
    iterator = iter(checkpointable_dataset(ds, 1))
    first = [next(iterator), next(iterator)]
    path = tf.train.Checkpoint(iterator=iterator).save(str(tmp_path / "ckpt"))
    rest = [[sample_indices(x.numpy()), y.numpy().tolist()] for x, y in iterator]
    assert len(rest) == len(ds) - 2

    theirs = run_script("restore_iterator.py", uneven_tree, int(fixed), 1, path)
    assert theirs == rest
    played = [sample_indices(x.numpy()) for x, _ in first] + [i for i, _ in theirs]
    assert played == [b.tolist() for b in ds.sampler.plan(1)]
    # Positions only: no prefetched image is saved (one batch of images is 720 bytes here,
    # the 224 x 224 batches of a real run 9.6 MB).
    saved = sum(p.stat().st_size for p in tmp_path.glob("ckpt-1.data-*"))
    assert saved < 2000


def test_checkpoint_with_skipped_files(tmp_path):
    tree = make_indexed_tree(tmp_path / "tree", [4, 4, 4])
    bad = tree / "class_01" / "zz.png"
    bad.write_bytes(b"")
    ds = make(tree, fixed=True, on_bad_image="skip")
    # Save right after the batch that holds the bad file (wherever the plan puts it).
    bad_index = ds.file_paths.index(str(bad))
    at = next(i for i, batch in enumerate(ds.sampler.plan(0)) if bad_index in batch)
    iterator = iter(checkpointable_dataset(ds, 0))
    with pytest.warns(UserWarning, match="zz.png"):
        first = [next(iterator) for _ in range(at + 1)]
    path = tf.train.Checkpoint(iterator=iterator).save(str(tmp_path / "ckpt"))
    rest = [y.numpy().tolist() for _, y in iterator]
    restored = iter(checkpointable_dataset(ds, 0))
    tf.train.Checkpoint(iterator=restored).restore(path).assert_consumed()
    assert [y.numpy().tolist() for _, y in restored] == rest
    assert len(first) + len(rest) == len(ds)
    assert list(ds.skipped_files) == [str(bad)]


# ------------------------------------------------------------ real strategies


def check_epochs(played, num_samples, replicas, steps):
    """Every epoch: `steps` steps, whole P x K batches per replica, disjoint, all samples."""
    for epoch in played:
        assert len(epoch) == steps
        seen = []
        for step in epoch:
            assert len(step) == replicas
            for indices, labels in step:
                assert_exact_pk(labels)
                seen += indices
        assert sorted(seen) == list(range(num_samples))


@pytest.mark.slow
def test_mirrored_strategy_fit_on_two_logical_cpus(even_tree):
    out = run_script("mirrored_fit.py", even_tree, 1)
    assert out["replicas"] == 2
    check_epochs(out["played"], sum(EVEN), replicas=2, steps=3)
    assert out["played"][0] != out["played"][1]  # reshuffled
    assert out["fit_steps"] == [3, 3]
    assert np.isfinite(out["loss"]).all()
    assert len(out["loss"]) == 2


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_mirrored_strategy_two_processes(even_tree, tmp_path):
    workers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    procs = []
    try:
        for i in range(2):
            tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
            env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), TF_CPP_MIN_LOG_LEVEL="3")
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(SCRIPTS / "multi_worker.py"),
                        even_tree,
                        tmp_path / f"{i}.json",
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        for proc in procs:
            _, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, err[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    outs = [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(2)]
    assert [o["replicas"] for o in outs] == [2, 2]
    for epoch in range(2):
        steps = [len(o["played"][epoch]) for o in outs]
        assert steps == [3, 3]  # same number of steps on every worker
        batches = [b for o in outs for step in o["played"][epoch] for b in step]
        assert len(batches) == 6
        for _, labels in batches:
            assert_exact_pk(labels)
        seen = [i for indices, _ in batches for i in indices]
        assert sorted(seen) == list(range(sum(EVEN)))  # disjoint and complete
    assert outs[0]["losses"] == outs[1]["losses"]  # one synchronised model
