"""`kerasgen_tf.hard_classes.ClassNeighborRefresh`: tables refreshed in `fit`, timing, resume."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import warnings

import attrs
import keras
import numpy as np
import pytest
from hard_class_models import (
    BLUE,
    IMAGES_PER_CLASS,
    NUM_CLASSES,
    RED,
    BatchRecorder,
    EpochMark,
    KernelSwitch,
    TableLog,
    colour_model,
    make_colour_tree,
)

from balanced_sampler import BalancedBatchSampler
from balanced_sampler.neighbors import class_neighbor_table
from kerasgen_tf import ClassNeighborRefresh, balanced_image_dataset_from_directory
from kerasgen_tf.embedding import embed_dataset
from kerasgen_tf.hard_classes import Refresh
from kerasgen_tf.neighbor_backup import read_records, record_of, restore_record, write_records

P, K = 3, 2
SCRIPT = pathlib.Path(__file__).parent / "scripts" / "neighbor_resume.py"


@pytest.fixture(scope="module")
def colour_tree(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return make_colour_tree(tmp_path_factory.mktemp("colours"))


def colour_dataset(root: pathlib.Path, **kwargs):
    options = {"safe_triplet": True, "seed": 3, "verbose": False, "image_size": 8}
    options.update(kwargs)
    return balanced_image_dataset_from_directory(root, P, K, **options)


def reference_plan(sampler: BalancedBatchSampler, tables: dict, epoch: int) -> list[list[int]]:
    """The plan of `epoch` with the table in force for it in `tables` ({first epoch: table})."""
    firsts = [first for first in tables if first <= epoch]
    table = tables[max(firsts)] if firsts else None
    fresh = attrs.evolve(sampler, class_neighbors=table)
    return [batch.tolist() for batch in fresh.plan(epoch)]


def train(dataset, refresh, epochs, *, repeat=False, switch=True, extra=()):
    """Fits the colour model; returns the batches played by epoch and the tables computed."""
    recorder = BatchRecorder()
    model = colour_model(recorder)
    log = TableLog(refresh)
    callbacks = [EpochMark(recorder), *([KernelSwitch()] if switch else []), refresh, log, *extra]
    if repeat:
        model.fit(dataset.repeat(), epochs=epochs, steps_per_epoch=len(dataset.sampler),
                  callbacks=callbacks, verbose=0)
    else:
        model.fit(dataset, epochs=epochs, callbacks=callbacks, verbose=0)
    return model, recorder.batches, log.tables


def test_each_table_deals_the_next_epoch(colour_tree):
    dataset = colour_dataset(colour_tree)
    refresh = ClassNeighborRefresh(dataset, num_neighbors=4, distance="euclidean")
    model, played, tables = train(dataset, refresh, epochs=4)

    # Refreshed after epochs 0, 1 and 2 (not after the last), each dealing the next epoch.
    assert [(r.after_epoch, r.first_epoch) for r in refresh.refreshes] == [(0, 1), (1, 2), (2, 3)]
    assert all(r.num_embedded == NUM_CLASSES * IMAGES_PER_CLASS for r in refresh.refreshes)
    # The kernel switches at every epoch end, so consecutive tables differ: blue, red, blue.
    assert not np.array_equal(tables[1], tables[2])
    assert np.array_equal(tables[1], tables[3])
    for epoch in range(4):
        assert played[epoch] == reference_plan(dataset.sampler, tables, epoch)
    assert played[0] == reference_plan(dataset.sampler, {}, 0)  # the plain plan
    # The last epoch was planned with the table computed after epoch 2: every batch hard.
    stats = dataset.sampler.hard_batch_stats(3)
    assert stats.is_hard.all()
    assert stats.is_pure.any()

    # The table is the one the model's embeddings give at that moment.
    model.get_layer("colour").kernel.assign(BLUE)
    embeddings, labels = embed_dataset(model, dataset)
    assert np.array_equal(tables[1], class_neighbor_table(embeddings, labels, 4,
                                                          distance="euclidean"))
    model.get_layer("colour").kernel.assign(RED)
    embeddings, labels = embed_dataset(model, dataset)
    assert np.array_equal(tables[2], class_neighbor_table(embeddings, labels, 4,
                                                          distance="euclidean"))
    assert tables[2][0].tolist() == [1, 2, 3, 4]  # red: the classes next in line


def test_warmup_zero_computes_a_table_before_the_first_epoch(colour_tree):
    dataset = colour_dataset(colour_tree, seed=5)
    refresh = ClassNeighborRefresh(dataset, num_neighbors=5, warmup_epochs=0)
    _, played, tables = train(dataset, refresh, epochs=2)
    assert [(r.after_epoch, r.first_epoch) for r in refresh.refreshes] == [(-1, 0), (0, 1)]
    for epoch in range(2):
        assert played[epoch] == reference_plan(dataset.sampler, tables, epoch)
    assert dataset.sampler.hard_batch_stats(1).is_hard.all()


def test_every_and_warmup_choose_the_refreshed_epochs(colour_tree):
    dataset = colour_dataset(colour_tree)
    refresh = ClassNeighborRefresh(dataset, num_neighbors=3, warmup_epochs=2, every=3)
    assert [e for e in range(12) if refresh.is_due(e)] == [1, 4, 7, 10]
    _, played, tables = train(dataset, refresh, epochs=6, switch=False)
    assert [(r.after_epoch, r.first_epoch) for r in refresh.refreshes] == [(1, 2), (4, 5)]
    for epoch in range(6):
        assert played[epoch] == reference_plan(dataset.sampler, tables, epoch)
    assert played[1] == reference_plan(dataset.sampler, {}, 1)


def test_a_pipeline_that_runs_ahead_gets_each_table_an_epoch_later_and_warns(colour_tree):
    dataset = colour_dataset(colour_tree, seed=7)
    refresh = ClassNeighborRefresh(dataset, num_neighbors=4)
    with pytest.warns(UserWarning, match=r"had already started the sampler's epoch 1 .* from "
                                          r"epoch 2 on: one epoch later") as caught:
        _, played, tables = train(dataset, refresh, epochs=4, repeat=True)
    assert sum("ClassNeighborRefresh" in str(w.message) for w in caught) == 1
    # tf.data planned epoch e + 1 before epoch e ended: each table deals epoch e + 2.
    assert [(r.after_epoch, r.first_epoch) for r in refresh.refreshes] == [(0, 2), (1, 3), (2, 4)]
    for epoch in range(4):
        assert played[epoch] == reference_plan(dataset.sampler, tables, epoch)


def test_samples_per_class_embeds_a_seeded_sample_of_every_class(colour_tree):
    dataset = colour_dataset(colour_tree)
    refresh = ClassNeighborRefresh(dataset, num_neighbors=4, samples_per_class=2, seed=11)
    labels = np.asarray(dataset.sampler.labels)
    chosen = refresh.samples(after_epoch=0)
    assert np.all(np.diff(chosen) > 0)
    assert np.bincount(labels[chosen]).tolist() == [2] * NUM_CLASSES
    assert np.array_equal(chosen, refresh.samples(after_epoch=0))  # a pure function
    assert not np.array_equal(chosen, refresh.samples(after_epoch=1))  # a new sample each time
    assert ClassNeighborRefresh(dataset, num_neighbors=4).samples(0) is None

    refresh.set_model(colour_model())
    embeddings, sample_labels = embed_dataset(refresh.model, dataset, samples=chosen)
    assert np.array_equal(sample_labels, labels[chosen])
    expected = class_neighbor_table(embeddings, sample_labels, 4, distance="cosine", seed=11)
    assert np.array_equal(refresh.compute_table(after_epoch=0), expected)
    # Larger than a class: every image of it.
    everything = ClassNeighborRefresh(dataset, num_neighbors=4, samples_per_class=100)
    assert np.array_equal(everything.samples(3), np.arange(len(labels)))


def test_files_known_to_be_unreadable_are_not_sampled(colour_tree):
    dataset = colour_dataset(colour_tree)
    class_0 = [i for i, label in enumerate(dataset.sampler.labels) if label == 0]
    dataset.skipped_files.update({dataset.file_paths[i]: "bad" for i in class_0[:5]})
    try:
        refresh = ClassNeighborRefresh(dataset, num_neighbors=4, samples_per_class=3)
        chosen = refresh.samples(0)
        assert chosen[np.asarray(dataset.sampler.labels)[chosen] == 0].tolist() == [class_0[5]]
        dataset.skipped_files[dataset.file_paths[class_0[5]]] = "bad"
        refresh.set_model(colour_model())
        message = r"1 class\(es\) have no readable image to embed, so they have no centroid: class_00"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Embedding leaves out 6 of 72 files ..."
            with pytest.raises(ValueError, match=message):
                refresh.compute_table()
    finally:
        dataset.skipped_files.clear()


def test_a_sampler_of_ones_own_gets_the_tables(colour_tree):
    dataset = colour_dataset(colour_tree)
    sampler = BalancedBatchSampler(dataset.sampler.labels, P, K, safe_triplet=True, seed=2,
                                   hard_batch_fraction=0.5)
    refresh = ClassNeighborRefresh(dataset, num_neighbors=4, sampler=sampler, warmup_epochs=0)
    refresh.set_model(colour_model())
    refresh.on_train_begin()
    refresh.on_epoch_begin(0)
    assert refresh.refreshes[0].first_epoch == 0
    assert sampler.class_neighbors_for(0).tolist() == refresh.table.tolist()
    assert dataset.sampler.class_neighbors_for(0) is None
    stats = sampler.hard_batch_stats(0)
    assert stats.is_hard.sum() == round(0.5 * len(sampler))


# ---------------------------------------------------------------------------- resume


def test_backup_records_round_trip_and_keep_the_last_two(tmp_path):
    labels = np.repeat(np.arange(6), 4)
    sampler = BalancedBatchSampler(labels, 3, 2, safe_triplet=True, seed=4)
    table = np.array([[1, 2], [0, 2], [1, 3], [2, 4], [3, 5], [4, 3]])
    ragged = {0: [1], 1: [0, 2], 2: [1, 3, 4], 3: [2], 4: [5], 5: [4, 3]}
    sampler.set_class_neighbors(table)
    list(sampler)
    sampler.set_class_neighbors(ragged, from_epoch=2)  # epoch 1 keeps `table`
    records = [record_of(sampler, epoch=k, later_epochs=[2]) for k in (7, 8, 9)]
    write_records(str(tmp_path), records)
    # Two records; one file per distinct table.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("table-")).__len__() == 2
    read = read_records(str(tmp_path))
    assert [r.epoch for r in read] == [8, 9]
    assert [first for first, _ in read[1].tables] == [1, 2]
    assert read[1].tables[0][1].tolist() == table.tolist()
    assert {k: v.tolist() for k, v in read[1].tables[1][1].items()} == ragged

    restarted = BalancedBatchSampler(labels, 3, 2, safe_triplet=True, seed=99)
    restore_record(restarted, read[1])
    assert restarted.state_dict() == sampler.state_dict()
    assert [list(restarted) for _ in range(2)] == [list(sampler) for _ in range(2)]

    other = BalancedBatchSampler(labels, 2, 2, safe_triplet=True, seed=4)
    with pytest.raises(ValueError, match="num_classes_per_batch: saved '3', this sampler '2'"):
        restore_record(other, read[1])
    # Tables no record names are deleted.
    write_records(str(tmp_path), [record_of(BalancedBatchSampler(labels, 3, 2, safe_triplet=True,
                                                                 seed=4), epoch=0)])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("table-")]


def interrupted_then_resumed(root, tmp_path, *, processes):
    """Runs 4 epochs cut after epoch 1, then resumed; returns the batches of each run."""
    runs = []
    for stop_at in (2, None):
        args = [str(root), str(tmp_path / "model"), str(tmp_path / "neighbors"),
                str(tmp_path / f"played_{stop_at}.json"), str(stop_at or 0)]
        if processes:
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
            done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                                  text=True, env=env, timeout=300)
            assert done.returncode == (3 if stop_at else 0), done.stderr[-3000:]
        else:
            sys.path.insert(0, str(SCRIPT.parent))
            try:
                import neighbor_resume
            finally:
                sys.path.pop(0)
            assert neighbor_resume.main(args) == (3 if stop_at else 0)
        played = json.loads((tmp_path / f"played_{stop_at}.json").read_text())
        runs.append({int(epoch): batches for epoch, batches in played.items()})
        if stop_at:  # the backup of the epoch where training resumes is there
            assert [r.epoch for r in read_records(str(tmp_path / "neighbors"))] == [1, 2]
    assert not (tmp_path / "neighbors").exists()  # deleted when fit ended normally
    return runs


@pytest.mark.parametrize("processes", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_a_resumed_run_plays_the_batches_of_an_uninterrupted_one(colour_tree, tmp_path, processes):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import neighbor_resume
    finally:
        sys.path.pop(0)
    cut, resumed = interrupted_then_resumed(colour_tree, tmp_path, processes=processes)
    assert sorted(cut) == [0, 1]
    assert sorted(resumed) == [2, 3]
    whole = neighbor_resume.train(colour_tree, None, None, None, 0)
    assert {**cut, **resumed} == whole
    # The kernel switch made every table different from the one before: epochs 2 and 3
    # would differ if the resumed run had lost the table or the sampler's epoch.
    assert resumed[2] != resumed[3]


def test_a_backup_of_other_epochs_is_refused(colour_tree, tmp_path):
    dataset = colour_dataset(colour_tree)
    write_records(str(tmp_path), [record_of(dataset.sampler, epoch=5)])
    refresh = ClassNeighborRefresh(dataset, num_neighbors=3, backup_dir=tmp_path)
    refresh.set_model(colour_model())
    refresh.on_train_begin()
    with pytest.raises(ValueError, match=r"backup in .* is for starting epoch\(s\) 5, but `fit` "
                                         r"starts epoch 0. .*Delete the directory"):
        refresh.on_epoch_begin(0)


# ---------------------------------------------------------------------------- errors


def test_arguments_are_checked_when_the_callback_is_made(colour_tree):
    dataset = colour_dataset(colour_tree)
    with pytest.raises(TypeError, match=r"`dataset` must be a dataset returned by"):
        ClassNeighborRefresh(dataset.repeat())
    exhaustive = colour_dataset(colour_tree, safe_triplet=False)
    with pytest.raises(ValueError, match=r"need fixed P x K batches: build the dataset \(or "
                                         r"sampler\) with safe_triplet=True"):
        ClassNeighborRefresh(exhaustive)
    labels = dataset.sampler.labels
    by_category = BalancedBatchSampler(labels, P, K, safe_triplet=True,
                                       categories={c: c % 2 for c in range(NUM_CLASSES)})
    with pytest.raises(ValueError, match="deals hard batches by `categories`"):
        ClassNeighborRefresh(dataset, sampler=by_category)
    with pytest.raises(ValueError, match=r"`num_neighbors` must be at most the number of classes "
                                         r"minus one \(12 classes, so at most 11\). Received: "
                                         r"num_neighbors=12"):
        ClassNeighborRefresh(dataset, num_neighbors=12)
    shifted = BalancedBatchSampler(np.roll(labels, 1), P, K, safe_triplet=True)
    with pytest.raises(ValueError, match="`sampler` must be built on the dataset's labels"):
        ClassNeighborRefresh(dataset, sampler=shifted)
    with pytest.raises(TypeError, match="`sampler` must be a balanced_sampler"):
        ClassNeighborRefresh(dataset, sampler=object())
    bad = [
        ({"num_neighbors": 0}, ValueError, "num_neighbors"),
        ({"every": 0}, ValueError, "every"),
        ({"warmup_epochs": -1}, ValueError, "warmup_epochs"),
        ({"samples_per_class": 0}, ValueError, "samples_per_class"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"distance": "manhattan"}, ValueError, "distance"),
        ({"search": "fast"}, ValueError, "search"),
        ({"num_probes": 0}, ValueError, "num_probes"),
        ({"seed": -1}, ValueError, "seed"),
        ({"backup_dir": 3}, TypeError, "backup_dir"),
        ({"delete_backup": "yes"}, TypeError, "delete_backup"),
        ({"verbose": 2}, ValueError, "verbose"),
    ]
    for kwargs, error, name in bad:
        with pytest.raises(error, match=name):
            ClassNeighborRefresh(dataset, **kwargs)
    # Default M: 4 x P, at most the classes minus one.
    two = BalancedBatchSampler(labels, 2, K, safe_triplet=True)
    assert ClassNeighborRefresh(dataset, sampler=two).num_neighbors == 8
    assert ClassNeighborRefresh(dataset).num_neighbors == 11  # 4 x 3 capped


def test_verbose_prints_one_line_per_refresh(colour_tree, capsys):
    dataset = colour_dataset(colour_tree)
    refresh = ClassNeighborRefresh(dataset, num_neighbors=4, warmup_epochs=0, verbose=1)
    train(dataset, refresh, epochs=2, switch=False)
    lines = [line for line in capsys.readouterr().out.splitlines() if "ClassNeighbor" in line]
    assert len(lines) == 2
    assert lines[0].startswith("ClassNeighborRefresh, before epoch 1: 72 images embedded (")
    assert lines[1].startswith("ClassNeighborRefresh, after epoch 1: 72 images embedded (")
    assert lines[1].endswith("12 classes x 4 neighbours (" + lines[1].split("(")[-1])
    assert lines[1].endswith("deals epoch 2 on")
    assert isinstance(refresh.refreshes[0], Refresh)


def test_embed_dataset_takes_a_subset_of_the_files(colour_tree):
    dataset = colour_dataset(colour_tree)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D()])
    everything, labels = embed_dataset(model, dataset)
    subset, subset_labels = embed_dataset(model, dataset, samples=[5, 0, 40])
    assert np.allclose(subset, everything[[5, 0, 40]])
    assert subset_labels.tolist() == labels[[5, 0, 40]].tolist()
    with pytest.raises(ValueError, match=r"positions in `dataset.file_paths`, in \[0, 72\). "
                                         r"Received: 72"):
        embed_dataset(model, dataset, samples=[1, 72])
    with pytest.raises(TypeError, match="1-D sequence of integer positions"):
        embed_dataset(model, dataset, samples=[0.5])
    with pytest.raises(TypeError, match="`samples` selects files of a balanced dataset"):
        embed_dataset(model, (np.zeros((2, 8, 8, 3)), np.zeros(2)), samples=[0])
