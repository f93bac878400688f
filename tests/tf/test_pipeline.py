"""The pipeline itself: plan sources, the decoding seam, start-up work, Python calls."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import attrs
import pytest
import tensorflow as tf
from tensorflow.python.autograph.impl import api as autograph_api

from kerasgen_tf import balanced_image_dataset_from_directory
from kerasgen_tf._bad_images import BadFileReport
from kerasgen_tf._pipeline import Pipeline, pipeline_of
from kerasgen_tf._plans import PlanTable, live_plans
from kerasgen_tf.distribute import checkpointable_dataset, sharded_dataset

sys.path.insert(0, str(pathlib.Path(__file__).parent / "scripts"))

from distributed_common import make_indexed_tree, sample_indices

P, K = 2, 3


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_indexed_tree(tmp_path_factory.mktemp("pipeline"), [7, 5, 4, 3, 6, 5])


def make(tree, **kwargs):
    options = {"image_size": (4, 5), "seed": 5, "verbose": False, **kwargs}
    return balanced_image_dataset_from_directory(tree, P, K, **options)


def played(dataset):
    return [sample_indices(x.numpy()) for x, _ in dataset]


def plan(ds, epoch):
    return [b.tolist() for b in ds.sampler.plan(epoch)]


@pytest.mark.parametrize("fixed", [False, True], ids=["exhaustive", "fixed"])
def test_live_and_materialised_sources_play_the_same_batches(tree, fixed):
    ds = make(tree, safe_triplet=fixed)
    pipeline = pipeline_of(ds)
    table = PlanTable.from_sampler(ds.sampler, 2, 1)
    from_table = played(pipeline.build(table.dataset()))
    ds.sampler.set_epoch(2)
    assert played(ds) == from_table == plan(ds, 2)
    assert played(ds) == plan(ds, 3)  # the next pass is the next epoch


def test_plan_table_holds_padded_rows(tree):
    ds = make(tree)
    table = PlanTable.from_sampler(ds.sampler, 0, 2)
    plans = plan(ds, 0) + plan(ds, 1)
    assert len(table) == len(plans)
    assert [row[:size].tolist() for row, size in zip(table.rows, table.sizes, strict=True)] == plans
    assert table.rows.shape == (len(plans), max(map(len, plans)))
    assert table.nbytes == 8 * table.rows.size + 8 * len(plans)


def test_a_sampler_resumed_at_an_epoch_start_plays_that_epoch(tree):
    ds = make(tree)
    ds.sampler.load_state_dict({"seed": ds.sampler.seed, "epoch": 3, "next_batch": 0})
    assert played(ds) == plan(ds, 3)
    assert played(ds) == plan(ds, 4)


def test_a_sampler_resumed_mid_epoch_says_how_to_resume(tree):
    ds = make(tree)
    ds.sampler.load_state_dict({"seed": ds.sampler.seed, "epoch": 1, "next_batch": 2})
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        played(ds)
    message = str(info.value)
    assert "plays 4 batches of epoch 1 where the dataset has 6 per epoch" in message
    assert "checkpointable_dataset" in message


def test_python_runs_once_per_epoch(tree, monkeypatch):
    """The plan is handed over at the first batch; no Python call while batches decode."""
    ds = make(tree)
    calls = []
    iter_arrays = type(ds.sampler).iter_arrays

    def counted(sampler):
        calls.append("plan")
        return iter_arrays(sampler)

    monkeypatch.setattr(type(ds.sampler), "iter_arrays", counted)
    monkeypatch.setattr(
        BadFileReport, "__call__", lambda *a: calls.append("report") or ""
    )  # called for batches with a bad file only
    iterator = iter(ds)
    assert calls == []  # an unused iterator plans nothing
    next(iterator)
    assert calls == ["plan"]
    list(iterator)
    list(ds)
    assert calls == ["plan", "plan"]


def test_no_function_is_converted_by_autograph(tree, monkeypatch):
    """Every map function is plain TensorFlow: autograph would cost ~1 s at the first batch."""

    def fail(entity, program_ctx):
        raise AssertionError(f"autograph converted {entity!r}")

    monkeypatch.setattr(autograph_api, "_convert_actual", fail)
    for kwargs in (
        {},
        {"safe_triplet": True, "on_bad_image": "skip", "label_mode": "categorical"},
        {"color_mode": "grayscale", "crop_to_aspect_ratio": True, "label_mode": None},
        {"verify_images": True, "pad_to_aspect_ratio": True},
    ):
        ds = make(tree, **kwargs)
        next(iter(ds))
        next(iter(checkpointable_dataset(ds, 1)))
        context = tf.distribute.InputContext(2, 1, 2)
        next(iter(sharded_dataset(ds, context)))


def test_pipeline_of_knows_only_its_own_datasets(tree):
    ds = make(tree)
    assert isinstance(pipeline_of(ds), Pipeline)
    assert pipeline_of(ds.map(lambda x, y: (x, y))) is None
    assert pipeline_of("not a dataset") is None


def test_a_decoded_cache_plugs_into_the_seam(tree):
    """`load_images` (indices -> images, bad files) is the one stage a cache wraps."""
    ds = make(tree, safe_triplet=True)
    pipeline = pipeline_of(ds)
    store = {}  # a toy per-sample cache, filled in Python to watch what is asked

    def remember(indices, images):
        for i, image in zip(indices.numpy().tolist(), images.numpy(), strict=True):
            store[i] = image
        return images

    def cached(indices):
        images, bad = pipeline.load_images(indices)
        images = tf.py_function(remember, [indices, images], tf.float32)
        images.set_shape((None, 4, 5, 3))
        return images, bad

    with_cache = attrs.evolve(pipeline, load_images=cached)
    epoch = PlanTable.from_sampler(ds.sampler, 0, 1).dataset()
    assert played(with_cache.build(epoch)) == plan(ds, 0)
    assert set(store) == {i for batch in plan(ds, 0) for i in batch}
    for i, image in store.items():
        assert sample_indices(image[None])[0] == i


def test_live_plans_declare_their_length(tree):
    ds = make(tree)
    plans = live_plans(ds.sampler, length=3)
    assert int(plans.cardinality()) == 3
    assert [row[:size].tolist() for row, size in plans.as_numpy_iterator()] == plan(ds, 0)[:3]


DROP_ITERATORS = textwrap.dedent(
    """
    import sys
    from kerasgen_tf import balanced_image_dataset_from_directory

    ds = balanced_image_dataset_from_directory(
        sys.argv[1], 2, 3, image_size=4, seed=1, verbose=False
    )
    for _ in range(3):
        iterator = iter(ds)
        next(iterator)  # dropped mid-epoch
    kept = iter(ds)
    next(kept)
    print("done")  # and the process exits with `kept` mid-epoch
    """
)


def test_iterators_dropped_mid_epoch_let_the_process_exit(tree):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for _ in range(3):
        result = subprocess.run(
            [sys.executable, "-c", DROP_ITERATORS, str(tree)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip().endswith("done")
