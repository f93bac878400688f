"""Hard-class batches (class_neighbors, categories): only which classes share a batch changes."""

from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balanced_sampler import BalancedBatchSampler, HardBatchStats

pytestmark = pytest.mark.filterwarnings("ignore::balanced_sampler.SamplerWarning")

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def class_sequences(plan, labels):
    """Every class's sample indices over the epoch, in play order."""
    flat = np.concatenate(plan)
    return {int(c): flat[labels[flat] == c].tolist() for c in np.unique(labels[flat])}


def batch_classes(plan, labels, p, k):
    """The classes of every batch, one group of K after the other."""
    return [labels[batch].reshape(p, k)[:, 0].tolist() for batch in plan]


def random_table(values, m, seed, ragged=False):
    """A neighbour table (array, or ragged mapping) over the labels `values`."""
    rng = np.random.default_rng(seed)
    c = len(values)
    m = min(m, c - 1)
    rows = []
    for i in range(c):
        others = np.delete(np.arange(c), i)
        length = rng.integers(0, m + 1) if ragged else m
        rows.append(values[rng.permutation(others)[:length]])
    if ragged:
        return {int(v): row.tolist() for v, row in zip(values, rows, strict=True)}
    return np.array(rows, dtype=np.int64).reshape(c, m)


@st.composite
def hard_configs(draw: st.DrawFn):
    sizes = draw(st.lists(st.integers(1, 25), min_size=2, max_size=30))
    if draw(st.booleans()):  # one dominant class: forced into many batches
        sizes[0] = draw(st.integers(1, 300))
    values = np.arange(len(sizes)) * 5 - 7  # negative and gapped labels
    labels = np.repeat(values, sizes)
    labels = labels[np.random.default_rng(draw(st.integers(0, 999))).permutation(len(labels))]
    p = draw(st.integers(1, len(sizes)))
    k = draw(st.integers(1, 5))
    fraction = draw(st.sampled_from([1.0, 0.5, 0.25, 0.0, 0.8]))
    weights = draw(st.sampled_from(["proportional", "uniform", 0.5]))
    seed = draw(st.integers(0, 2**32))
    mode = draw(st.sampled_from(["array", "ragged", "categories"]))
    if mode == "categories":
        count = draw(st.integers(1, len(sizes)))
        source = {
            int(v): f"cat{draw(st.integers(0, count - 1))}" for v in values
        }  # any hashable category
        per_batch = draw(st.integers(1, min(p, len(set(source.values())))))
        hard = {"categories": source, "categories_per_batch": per_batch}
    else:
        m = draw(st.integers(1, 12))
        table = random_table(np.unique(values), m, seed % 1000, ragged=mode == "ragged")
        hard = {"class_neighbors": table}
    samples = draw(st.one_of(st.none(), st.integers(1, 40)))
    return labels, p, k, {
        "safe_triplet": True,
        "seed": seed,
        "class_weights": weights,
        "hard_batch_fraction": fraction,
        "samples_per_epoch": None if samples is None else samples * p * k,
    }, hard


@given(hard_configs())
@SETTINGS
def test_every_class_shows_exactly_the_plain_plans_images_in_the_same_order(config):
    labels, p, k, kwargs, hard = config
    plain = BalancedBatchSampler(labels, p, k, **kwargs)
    sampler = BalancedBatchSampler(labels, p, k, **kwargs, **hard)
    assert len(sampler) == len(plain)
    for epoch in (0, 1, 5):
        ours, theirs = sampler.plan(epoch), plain.plan(epoch)
        assert class_sequences(ours, labels) == class_sequences(theirs, labels)
        if kwargs["hard_batch_fraction"] == 0.0:
            assert [b.tolist() for b in ours] == [b.tolist() for b in theirs]


@given(hard_configs())
@SETTINGS
def test_batches_are_exactly_p_distinct_classes_by_k_images(config):
    labels, p, k, kwargs, hard = config
    sampler = BalancedBatchSampler(labels, p, k, **kwargs, **hard)
    for epoch in (0, 3):
        plan = sampler.plan(epoch)
        for batch in plan:
            assert len(batch) == p * k
            groups = labels[batch].reshape(p, k)
            assert (groups == groups[:, :1]).all(), "a group mixes classes"
            assert len(set(groups[:, 0].tolist())) == p, "a class twice in a batch"
        stats = sampler.hard_batch_stats(epoch)
        assert isinstance(stats, HardBatchStats)
        expected = min(len(plan), int(np.floor(kwargs["hard_batch_fraction"] * len(plan) + 0.5)))
        assert stats.hard_batches == expected == int(stats.is_hard.sum())
        assert stats.num_batches == len(plan) == len(stats.is_hard)
        assert not (stats.is_pure & ~stats.is_hard).any()
        assert np.array_equal(stats.is_pure, stats.is_hard & (stats.filled == 0))
        # Every slot of a hard batch is its anchor, listed, forced or filled.
        hard = stats.is_hard
        slots = stats.listed + stats.forced + stats.filled
        has_anchor = stats.forced < p
        assert np.array_equal(slots[hard] + has_anchor[hard], np.full(hard.sum(), p))
        assert not (slots[~hard]).any()


@given(hard_configs(), st.integers(0, 2**32))
@SETTINGS
def test_plans_are_a_pure_function_of_the_inputs(config, other_seed):
    labels, p, k, kwargs, hard = config
    a = BalancedBatchSampler(labels, p, k, **kwargs, **hard)
    b = BalancedBatchSampler(list(labels), p, k, **kwargs, **copy.deepcopy(hard))
    assert [x.tolist() for x in a.plan(2)] == [x.tolist() for x in b.plan(2)]
    # shuffle=False: no seed in the plan, hard batches included.
    fixed = {**kwargs, "shuffle": False}
    one = BalancedBatchSampler(labels, p, k, **{**fixed, "seed": other_seed}, **hard)
    two = BalancedBatchSampler(labels, p, k, **fixed, **hard)
    assert [x.tolist() for x in one.plan(1)] == [x.tolist() for x in two.plan(1)]


@given(hard_configs(), st.integers(2, 3))
@SETTINGS
def test_shards_split_the_global_hard_plan(config, shards):
    labels, p, k, kwargs, hard = config
    kwargs = {**kwargs, "samples_per_epoch": None}
    probe = BalancedBatchSampler(labels, p, k, num_shards=shards, **kwargs, **hard)
    whole = BalancedBatchSampler(
        labels, p, k, **{**kwargs, "samples_per_epoch": probe.global_batches * p * k}, **hard
    )
    reference, stats = whole.plan(1), whole.hard_batch_stats(1)
    for i in range(shards):
        part = BalancedBatchSampler(
            labels, p, k, num_shards=shards, shard_index=i, **kwargs, **hard
        )
        mine = part.plan(1)
        assert len(mine) == len(part) == len(reference) // shards
        for j, batch in enumerate(mine):
            assert np.array_equal(batch, reference[i + j * shards])
        assert np.array_equal(part.hard_batch_stats(1).is_hard, stats.is_hard[i::shards])


def clusters(num_clusters, p, size, k):
    """Labels of num_clusters x p classes of `size` images; each class's neighbours are its cluster."""
    values = np.arange(num_clusters * p)
    labels = np.repeat(values, size)
    table = np.array(
        [[v for v in range(c - c % p, c - c % p + p) if v != c] for c in values], dtype=np.int64
    )
    return labels, table


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_neighbourhoods_that_fit_exactly_give_only_pure_batches(seed):
    labels, table = clusters(num_clusters=8, p=4, size=8, k=2)
    sampler = BalancedBatchSampler(labels, 4, 2, safe_triplet=True, seed=seed, class_neighbors=table)
    for epoch in range(3):
        for classes in batch_classes(sampler.plan(epoch), labels, 4, 2):
            assert len({c // 4 for c in classes}) == 1, classes
        stats = sampler.hard_batch_stats(epoch)
        assert stats.pure_batches == stats.hard_batches == len(sampler)
        assert stats.filled_slots == 0


def test_without_a_table_batches_mix_clusters():
    labels, _ = clusters(num_clusters=8, p=4, size=8, k=2)
    sampler = BalancedBatchSampler(labels, 4, 2, safe_triplet=True, seed=0)
    mixed = [len({c // 4 for c in b}) > 1 for b in batch_classes(sampler.plan(0), labels, 4, 2)]
    assert sum(mixed) > len(mixed) // 2
    assert sampler.hard_batch_stats(0) is None


def test_hard_batch_fraction_deals_that_share_as_neighbourhoods():
    labels, table = clusters(num_clusters=10, p=4, size=8, k=2)
    sampler = BalancedBatchSampler(
        labels, 4, 2, safe_triplet=True, seed=3, class_neighbors=table, hard_batch_fraction=0.5
    )
    stats = sampler.hard_batch_stats(0)
    assert stats.hard_batches == len(sampler) // 2
    per_batch = batch_classes(sampler.plan(0), labels, 4, 2)
    # The first hard batches take whole clusters (later ones may find theirs used up).
    assert sum(len({c // 4 for c in b}) == 1 for b in per_batch) >= stats.pure_batches
    assert stats.pure_batches >= stats.hard_batches // 2
    # Hard and plain batches are interleaved, not hard ones first.
    assert 0 < stats.is_hard[: len(sampler) // 2].sum() < len(sampler) // 2


def test_a_class_of_every_batch_is_forced_into_neighbourhoods():
    # Class 18 has 400 images: its quota is one group in every batch, and it
    # is in no neighbour list: it joins every batch as a forced class.
    labels, table = clusters(num_clusters=6, p=3, size=6, k=2)
    labels = np.concatenate([labels, np.full(400, 18)])
    table = np.vstack([table, [[0, 1]]])
    sampler = BalancedBatchSampler(labels, 3, 2, safe_triplet=True, seed=0, class_neighbors=table)
    plan = sampler.plan(0)
    assert all(18 in classes for classes in batch_classes(plan, labels, 3, 2))
    stats = sampler.hard_batch_stats(0)
    assert (stats.forced >= 1).all()
    assert stats.forced_slots >= len(plan)


def test_categories_give_batches_of_one_category_or_the_requested_number():
    values = np.arange(24)
    labels = np.repeat(values, 6)
    one = {int(v): int(v // 4) for v in values}  # 6 categories of 4 classes
    sampler = BalancedBatchSampler(labels, 4, 3, safe_triplet=True, seed=1, categories=one)
    for classes in batch_classes(sampler.plan(0), labels, 4, 3):
        assert len({one[c] for c in classes}) == 1
    two = {int(v): ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"][v // 2] for v in values}
    sampler = BalancedBatchSampler(
        labels, 4, 3, safe_triplet=True, seed=1, categories=two, categories_per_batch=2
    )
    for classes in batch_classes(sampler.plan(0), labels, 4, 3):
        assert len({two[c] for c in classes}) == 2
    assert sampler.hard_batch_stats(0).pure_batches == len(sampler)


@pytest.mark.parametrize("seed", range(6))
def test_a_short_category_hands_its_share_to_the_next_then_the_batch_is_completed(seed):
    # Category 0 has 2 classes, P = 4: with one category per batch, its
    # batches are completed from the remaining groups; with two, the second
    # category takes the rest.
    values = np.arange(30)
    labels = np.repeat(values, 4)
    categories = {int(v): 0 if v < 2 else 1 + v % 3 for v in values}
    for per_batch in (1, 2):
        sampler = BalancedBatchSampler(
            labels, 4, 2, safe_triplet=True, seed=seed, categories=categories,
            categories_per_batch=per_batch,
        )
        stats = sampler.hard_batch_stats(0)
        per_batch_classes = batch_classes(sampler.plan(0), labels, 4, 2)
        for i, classes in enumerate(per_batch_classes):
            kinds = {categories[c] for c in classes}
            if stats.forced[i] == 0 and stats.filled[i] == 0:
                assert len(kinds) <= per_batch
                assert stats.is_pure[i]
            if 0 in kinds and stats.forced[i] == 0 and per_batch == 1:
                # Category 0 cannot fill a batch of 4: completed, not pure.
                assert stats.filled[i] >= 2
                assert not stats.is_pure[i]


def test_state_names_the_table_and_a_restore_with_another_table_is_refused():
    labels, table = clusters(num_clusters=5, p=3, size=6, k=2)
    sampler = BalancedBatchSampler(labels, 3, 2, safe_triplet=True, seed=4, class_neighbors=table)
    iterator = iter(sampler)
    head = [next(iterator) for _ in range(3)]
    state = sampler.state_dict()
    assert json.loads(json.dumps(state)) == state
    assert state["fingerprint"]["class_neighbors"].startswith("15 x 2, sha256:")
    tail = list(iterator)
    assert head + tail == [b.tolist() for b in sampler.plan(0)]
    resumed = BalancedBatchSampler(labels, 3, 2, safe_triplet=True, class_neighbors=table.copy())
    resumed.load_state_dict(state)
    assert list(resumed) == tail
    # The same table as a mapping is the same table.
    as_mapping = {int(v): row.tolist() for v, row in enumerate(table)}
    BalancedBatchSampler(labels, 3, 2, safe_triplet=True, class_neighbors=as_mapping).load_state_dict(
        state
    )
    other = table[:, ::-1].copy()
    for wrong in (
        BalancedBatchSampler(labels, 3, 2, safe_triplet=True, class_neighbors=other),
        BalancedBatchSampler(labels, 3, 2, safe_triplet=True),
    ):
        with pytest.raises(ValueError, match=r"class_neighbors: saved .*The neighbour table differs"):
            wrong.load_state_dict(state)
    with pytest.raises(ValueError, match=r"hard_batch_fraction: saved '1\.0', this sampler '0\.5'"):
        BalancedBatchSampler(
            labels, 3, 2, safe_triplet=True, class_neighbors=table, hard_batch_fraction=0.5
        ).load_state_dict(state)


def test_a_state_saved_before_hard_batches_existed_still_loads():
    labels = np.repeat(np.arange(6), 5)
    sampler = BalancedBatchSampler(labels, 3, 2, safe_triplet=True, seed=1)
    state = sampler.state_dict()
    for key in ("class_neighbors", "categories", "hard_batch_fraction", "categories_per_batch"):
        del state["fingerprint"][key]
    BalancedBatchSampler(labels, 3, 2, safe_triplet=True).load_state_dict(state)


def test_a_new_table_applies_from_the_next_epoch_never_mid_epoch():
    labels, table = clusters(num_clusters=6, p=3, size=6, k=2)
    other = np.roll(table, 1, axis=1)
    kwargs = {"safe_triplet": True, "seed": 9}
    sampler = BalancedBatchSampler(labels, 3, 2, class_neighbors=table, **kwargs)
    old = BalancedBatchSampler(labels, 3, 2, class_neighbors=table, **kwargs)
    new = BalancedBatchSampler(labels, 3, 2, class_neighbors=other, **kwargs)
    assert sampler.set_class_neighbors(table) == 0  # before training: from epoch 0

    iterator = iter(sampler)
    first = [next(iterator) for _ in range(2)]
    assert sampler.set_class_neighbors(other) == 1  # mid-epoch 0: from epoch 1
    rest = list(iterator)
    assert first + rest == [b.tolist() for b in old.plan(0)]
    assert list(sampler) == [b.tolist() for b in new.plan(1)]
    assert sampler.class_neighbors_for(0).tolist() == table.tolist()
    assert sampler.class_neighbors_for().tolist() == other.tolist()  # epoch 2 comes next

    # Between epochs (the end of epoch 1 reached): from epoch 2. None: plain batches.
    assert sampler.set_class_neighbors(None) == 2
    plain = BalancedBatchSampler(labels, 3, 2, **kwargs)
    assert list(sampler) == [b.tolist() for b in plain.plan(2)]
    assert sampler.class_neighbors_for() is None
    assert sampler.hard_batch_stats(2) is None


def test_a_table_can_be_set_for_a_later_epoch_and_replaced_before_it():
    labels, table = clusters(num_clusters=6, p=3, size=6, k=2)
    other, third = np.roll(table, 1, axis=1), np.roll(table, 2, axis=1)
    kwargs = {"safe_triplet": True, "seed": 4}
    sampler = BalancedBatchSampler(labels, 3, 2, class_neighbors=table, **kwargs)
    assert sampler.set_class_neighbors(other, from_epoch=2) == 2
    assert sampler.class_neighbors_for(1).tolist() == table.tolist()
    assert sampler.class_neighbors_for(2).tolist() == other.tolist()
    assert sampler.set_class_neighbors(third, from_epoch=3) == 3
    assert sampler.class_neighbors_for(2).tolist() == other.tolist()
    # A table set for an epoch replaces what was set for that epoch and later ones.
    assert sampler.set_class_neighbors(None, from_epoch=2) == 2
    assert sampler.class_neighbors_for(5) is None
    assert sampler.set_class_neighbors(third, from_epoch=3) == 3
    played = [list(sampler) for _ in range(4)]
    for epoch, source in enumerate([table, table, None, third]):
        expected = BalancedBatchSampler(labels, 3, 2, class_neighbors=source, **kwargs)
        assert played[epoch] == [b.tolist() for b in expected.plan(epoch)]


def test_from_epoch_before_the_first_epoch_not_started_is_refused():
    labels, table = clusters(num_clusters=6, p=3, size=6, k=2)
    sampler = BalancedBatchSampler(labels, 3, 2, safe_triplet=True, seed=1)
    iterator = iter(sampler)
    next(iterator)  # epoch 0 started
    with pytest.raises(ValueError, match=r"`from_epoch` must be at least 1, the first epoch not"):
        sampler.set_class_neighbors(table, from_epoch=0)
    with pytest.raises(ValueError, match=r"`from_epoch` must be an integer >= 0"):
        sampler.set_class_neighbors(table, from_epoch=-1)
    with pytest.raises(TypeError, match="from_epoch"):
        sampler.set_class_neighbors(table, from_epoch=1.5)
    assert sampler.class_neighbors_for(1) is None


def test_replaced_tables_are_forgotten_and_their_epochs_refused():
    labels, table = clusters(num_clusters=6, p=3, size=6, k=2)
    sampler = BalancedBatchSampler(labels, 3, 2, safe_triplet=True, seed=9, class_neighbors=table)
    for epoch in range(3):
        list(sampler)
        assert sampler.set_class_neighbors(np.roll(table, epoch + 1, axis=1)) == epoch + 1
    assert len(sampler._neighbor_schedule) == 1
    with pytest.raises(ValueError, match=r"Epoch 1 was planned with a neighbour table that has"):
        sampler.plan(1)
    with pytest.raises(ValueError, match=r"keeps the tables of epochs >= 3"):
        sampler.set_epoch(0)
    sampler.plan(3)


def test_resume_after_a_replacement_protocol():
    """What a callback does: save the state and the table in force, restore both."""
    labels, table = clusters(num_clusters=6, p=3, size=6, k=2)
    kwargs = {"safe_triplet": True, "seed": 2, "hard_batch_fraction": 0.5}
    sampler = BalancedBatchSampler(labels, 3, 2, class_neighbors=table, **kwargs)
    list(sampler)
    sampler.set_class_neighbors(np.roll(table, 1, axis=1))
    iterator = iter(sampler)
    next(iterator)
    state, saved_table = sampler.state_dict(), sampler.class_neighbors_for()
    expected = list(iterator)

    restarted = BalancedBatchSampler(labels, 3, 2, class_neighbors=table, **kwargs)
    with pytest.raises(ValueError, match="neighbour table differs"):
        restarted.load_state_dict(state)
    restarted.set_class_neighbors(saved_table)
    restarted.load_state_dict(state)
    assert list(restarted) == expected


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_copies_keep_the_tables_and_where_the_sampler_stands(how):
    labels, table = clusters(num_clusters=6, p=3, size=6, k=2)
    sampler = BalancedBatchSampler(labels, 3, 2, safe_triplet=True, seed=None, class_neighbors=table)
    list(sampler)
    sampler.set_class_neighbors(np.roll(table, 1, axis=1))
    clone = pickle.loads(pickle.dumps(sampler)) if how == "pickle" else copy.deepcopy(sampler)
    assert clone.state_dict() == sampler.state_dict()
    assert list(clone) == list(sampler)
    assert clone.class_neighbors_for().tolist() == np.roll(table, 1, axis=1).tolist()


def test_hard_plans_are_the_same_in_another_process():
    code = (
        "import json, numpy as np; from balanced_sampler import BalancedBatchSampler;"
        "labels = np.repeat(np.arange(12), [3, 5, 7, 9, 2, 4, 6, 8, 10, 1, 12, 20]);"
        "table = np.array([[(i + j) % 12 for j in (1, 2, 5)] for i in range(12)]);"
        "s = BalancedBatchSampler(labels, 3, 2, safe_triplet=True, seed=7, class_neighbors=table,"
        " hard_batch_fraction=0.6);"
        "print(json.dumps([b.tolist() for b in s.plan(3)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    labels = np.repeat(np.arange(12), [3, 5, 7, 9, 2, 4, 6, 8, 10, 1, 12, 20])
    table = np.array([[(i + j) % 12 for j in (1, 2, 5)] for i in range(12)])
    here = BalancedBatchSampler(
        labels, 3, 2, safe_triplet=True, seed=7, class_neighbors=table, hard_batch_fraction=0.6
    )
    assert json.loads(out.stdout) == [b.tolist() for b in here.plan(3)]


def test_no_global_random_state_is_touched():
    import random

    random.seed(1)
    np.random.seed(1)
    before = random.getstate(), np.random.get_state()[1].copy()
    labels, table = clusters(num_clusters=6, p=3, size=6, k=2)
    BalancedBatchSampler(labels, 3, 2, safe_triplet=True, seed=1, class_neighbors=table).plan(0)
    BalancedBatchSampler(
        labels, 3, 2, safe_triplet=True, seed=1, categories={int(v): v % 2 for v in range(18)}
    ).plan(0)
    assert random.getstate() == before[0]
    assert np.array_equal(np.random.get_state()[1], before[1])


def test_class_neighbors_for_returns_the_table_in_labels():
    labels = np.repeat([10, 20, 30, 40], 5)
    table = np.array([[20, 30], [10, 40], [40, 10], [30, 20]])
    sampler = BalancedBatchSampler(labels, 2, 2, safe_triplet=True, class_neighbors=table)
    assert sampler.class_neighbors_for().tolist() == table.tolist()
    ragged = {10: [20], 20: [10, 40, 30], 30: [], 40: (30,)}
    sampler = BalancedBatchSampler(labels, 2, 2, safe_triplet=True, class_neighbors=ragged)
    got = sampler.class_neighbors_for()
    assert {key: value.tolist() for key, value in got.items()} == {
        key: list(value) for key, value in ragged.items()
    }
    assert BalancedBatchSampler(labels, 2, 2, safe_triplet=True).class_neighbors_for() is None


def test_hard_batch_stats_as_dict_and_text():
    labels, table = clusters(num_clusters=4, p=2, size=4, k=2)
    sampler = BalancedBatchSampler(labels, 2, 2, safe_triplet=True, seed=0, class_neighbors=table)
    stats = sampler.hard_batch_stats(0)
    figures = stats.as_dict()
    assert figures["pure_fraction"] == 1.0
    assert figures["hard_batches"] == len(sampler)
    assert "pure_batches" in str(stats)


@given(hard_configs())
@SETTINGS
def test_a_hard_batch_lists_forced_classes_then_the_anchor_then_its_neighbours(config):
    labels, p, k, kwargs, hard = config
    if "class_neighbors" not in hard:
        return
    sampler = BalancedBatchSampler(labels, p, k, **kwargs, **hard)
    table = hard["class_neighbors"]
    values = np.unique(labels)
    lists = (
        {int(v): list(table[v]) for v in table}
        if isinstance(table, dict)
        else {int(v): row.tolist() for v, row in zip(values, table, strict=True)}
    )
    stats = sampler.hard_batch_stats(2)
    for i, classes in enumerate(batch_classes(sampler.plan(2), labels, p, k)):
        forced, listed = int(stats.forced[i]), int(stats.listed[i])
        if not stats.is_hard[i] or forced == p:
            continue
        anchor = classes[forced]
        near = classes[forced + 1 : forced + 1 + listed]
        positions = [lists[anchor].index(c) for c in near]  # each one is in the anchor's list
        assert positions == sorted(positions), "neighbours nearest first"
        assert stats.filled[i] == p - forced - 1 - listed


def test_classes_with_more_groups_anchor_more_batches():
    # Classes of 4, 8 and 16 images (1, 2 and 4 groups of K=4 an epoch).
    sizes = np.tile([4, 8, 16], 12)
    labels = np.repeat(np.arange(36), sizes)
    table = np.array([[(c + j) % 36 for j in range(1, 4)] for c in range(36)])
    sampler = BalancedBatchSampler(labels, 3, 4, safe_triplet=True, seed=0, class_neighbors=table)
    anchors = np.zeros(36)
    for epoch in range(60):
        stats = sampler.hard_batch_stats(epoch)
        for i, classes in enumerate(batch_classes(sampler.plan(epoch), labels, 3, 4)):
            if stats.forced[i] < 3:
                anchors[classes[stats.forced[i]]] += 1
    by_size = [anchors[sizes == n].sum() / anchors.sum() for n in (4, 8, 16)]
    # The next group of the order whose class still has groups left: a class
    # of one group is often taken as a neighbour before its turn comes.
    assert 0 < by_size[0] < by_size[1] < by_size[2]


def test_a_state_is_refused_by_a_sampler_with_other_categories():
    labels = np.repeat(np.arange(8), 4)
    kwargs = {"safe_triplet": True, "seed": 1}
    sampler = BalancedBatchSampler(labels, 2, 2, categories={c: c % 2 for c in range(8)}, **kwargs)
    state = sampler.state_dict()
    renamed = BalancedBatchSampler(
        labels, 2, 2, categories={c: "ab"[c % 2] for c in range(8)}, **kwargs
    )
    renamed.load_state_dict(state)  # the same grouping under other names
    other = BalancedBatchSampler(labels, 2, 2, categories={c: c // 4 for c in range(8)}, **kwargs)
    with pytest.raises(ValueError, match=r"categories: saved '2 categories, sha256:"):
        other.load_state_dict(state)


@given(hard_configs(), st.data())
@SETTINGS
def test_resume_at_any_cut_point_continues_with_the_table(config, data):
    labels, p, k, kwargs, hard = config
    sampler = BalancedBatchSampler(labels, p, k, **kwargs, **hard)
    epoch = data.draw(st.integers(0, 3))
    cut = data.draw(st.integers(0, len(sampler)))
    sampler.set_epoch(epoch)
    iterator = iter(sampler)
    for _ in range(cut):
        next(iterator)
    state = sampler.state_dict()
    rest = list(iterator)
    restarted = BalancedBatchSampler(labels, p, k, **{**kwargs, "seed": None}, **hard)
    restarted.load_state_dict(state)
    # After the last batch, what comes next is the next epoch.
    expected = rest or [b.tolist() for b in sampler.plan(epoch + 1)]
    assert list(restarted) == expected
    if "class_neighbors" in hard:
        other = BalancedBatchSampler(labels, p, k, **kwargs)  # no table
        with pytest.raises(ValueError, match="class_neighbors: saved"):
            other.load_state_dict(state)


@given(hard_configs(), st.data())
@SETTINGS
def test_a_table_set_mid_epoch_applies_from_the_next_epoch_only(config, data):
    labels, p, k, kwargs, hard = config
    if "class_neighbors" not in hard:
        return
    values = np.unique(labels)
    new_table = random_table(values, data.draw(st.integers(1, 6)), data.draw(st.integers(0, 99)))
    sampler = BalancedBatchSampler(labels, p, k, **kwargs, **hard)
    old = BalancedBatchSampler(labels, p, k, **kwargs, **hard)
    new = BalancedBatchSampler(labels, p, k, **kwargs, class_neighbors=new_table)
    epoch = data.draw(st.integers(0, 3))
    cut = data.draw(st.integers(0, len(sampler)))
    sampler.set_epoch(epoch)
    iterator = iter(sampler)
    head = [next(iterator) for _ in range(cut)]
    # Before the first batch is drawn no epoch is in play: the table applies to it.
    first = sampler.set_class_neighbors(new_table)
    assert first == (epoch if cut == 0 else epoch + 1)
    rest = list(iterator)
    played = head + rest
    reference = new if cut == 0 else old
    assert played == [b.tolist() for b in reference.plan(epoch)]
    assert list(sampler) == [b.tolist() for b in new.plan(epoch + 1)]
