"""The resume state, its fingerprint, and copies (pickle, deepcopy) of a sampler."""

from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import pytest

from balanced_sampler import BalancedBatchSampler

LABELS = np.repeat(np.arange(12), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 25, 40])
MODES = pytest.mark.parametrize("safe_triplet", [False, True], ids=["exhaustive", "fixed"])


def as_lists(plan):
    return [batch.tolist() for batch in plan]


def where(state):
    return (state["epoch"], state["next_batch"])


def resumed(state, **kwargs):
    sampler = BalancedBatchSampler(LABELS, 3, 4, seed=None, **kwargs)
    sampler.load_state_dict(state)
    return sampler


@MODES
def test_set_epoch_mid_epoch_moves_the_state(safe_triplet):
    # Before: two batches of epoch 0, then set_epoch(5): state_dict() still said
    # epoch 0, batch 2, and a sampler resumed from it played another batch.
    sampler = BalancedBatchSampler(LABELS, 3, 4, safe_triplet=safe_triplet, seed=4)
    iterator = iter(sampler)
    next(iterator)
    next(iterator)
    sampler.set_epoch(5)
    state = sampler.state_dict()
    assert where(state) == (5, 0)
    copy_ = resumed(state, safe_triplet=safe_triplet)
    expected = as_lists(sampler.plan(5))
    assert list(copy_) == expected
    assert list(sampler) == expected
    # The abandoned iterator no longer moves the state.
    next(iterator)
    assert where(sampler.state_dict()) == (6, 0)


@MODES
def test_break_then_next_epoch(safe_triplet):
    # Before: after a `break` the state named the abandoned epoch while the
    # sampler played the next one.
    sampler = BalancedBatchSampler(LABELS, 3, 4, safe_triplet=safe_triplet, seed=4)
    for i, _ in enumerate(sampler):
        if i == 1:
            break
    state = sampler.state_dict()
    assert where(state) == (1, 0)
    following = list(resumed(state, safe_triplet=safe_triplet))
    assert following == list(sampler) == as_lists(sampler.plan(1))


@MODES
def test_mid_epoch_state_continues_the_iteration_in_progress(safe_triplet):
    sampler = BalancedBatchSampler(LABELS, 3, 4, safe_triplet=safe_triplet, seed=4)
    iterator = iter(sampler)
    head = [next(iterator) for _ in range(3)]
    state = sampler.state_dict()
    assert where(state) == (0, 3)
    tail = list(iterator)
    assert head + tail == as_lists(sampler.plan(0))
    copy_ = resumed(state, safe_triplet=safe_triplet)
    assert list(copy_) == tail
    assert list(copy_) == as_lists(sampler.plan(1))


def test_state_is_plain_json():
    state = BalancedBatchSampler(LABELS, 3, 4, seed=4).state_dict()
    assert json.loads(json.dumps(state)) == state
    assert set(state) == {"seed", "epoch", "next_batch", "fingerprint"}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"labels": LABELS[::-1]}, "labels"),
        ({"num_images_per_class": 3}, "num_images_per_class"),
        ({"safe_triplet": True}, "safe_triplet"),
        ({"shuffle": False}, "shuffle"),
        ({"exhaustive_priority": "spread"}, "exhaustive_priority"),
        ({"num_shards": 2, "shard_index": 1}, "num_shards"),
    ],
)
def test_load_refuses_a_state_from_another_configuration(change, named):
    state = BalancedBatchSampler(LABELS, 3, 4, seed=4).state_dict()
    kwargs = {"labels": LABELS, "num_classes_per_batch": 3, "num_images_per_class": 4, **change}
    other = BalancedBatchSampler(**kwargs)
    with pytest.raises(ValueError, match=rf"other labels or settings.*{named}: saved"):
        other.load_state_dict(state)


def test_fingerprint_ignores_the_seed_and_class_names():
    state = BalancedBatchSampler(LABELS, 3, 4, seed=4).state_dict()
    names = [f"class {i}" for i in range(12)]
    other = BalancedBatchSampler(LABELS, 3, 4, seed=9, class_names=names)
    other.load_state_dict(state)
    assert other.seed == 4


def test_state_without_fingerprint_is_accepted():
    sampler = BalancedBatchSampler(LABELS, 3, 4, seed=1)
    sampler.load_state_dict({"seed": 2, "epoch": 3, "next_batch": 1})
    assert where(sampler.state_dict()) == (3, 1)


@MODES
@pytest.mark.parametrize("how", ["pickle", "deepcopy", "copy"])
def test_copies_plan_exactly_as_the_original(safe_triplet, how):
    # Before: TypeError: cannot pickle '_thread.lock' object.
    original = BalancedBatchSampler(LABELS, 3, 4, safe_triplet=safe_triplet, seed=None)
    original.plan(0)  # a cached plan is not carried over (nor needed)
    if how == "pickle":
        clone = pickle.loads(pickle.dumps(original))
    elif how == "deepcopy":
        clone = copy.deepcopy(original)
    else:
        clone = copy.copy(original)
    assert clone.seed == original.seed
    assert len(clone) == len(original)
    for epoch in (0, 3):
        assert as_lists(clone.plan(epoch)) == as_lists(original.plan(epoch))
    assert list(clone) == list(original)
    assert clone.state_dict() == original.state_dict()


def test_a_copy_made_mid_epoch_continues_it():
    original = BalancedBatchSampler(LABELS, 3, 4, safe_triplet=True, seed=2)
    iterator = iter(original)
    next(iterator)
    clone = pickle.loads(pickle.dumps(original))
    assert clone.state_dict() == original.state_dict()
    assert list(clone) == list(iterator)


def test_copy_after_load_keeps_the_loaded_seed():
    sampler = BalancedBatchSampler(LABELS, 3, 4, safe_triplet=True, seed=1)
    sampler.load_state_dict({"seed": 77, "epoch": 2, "next_batch": 0})
    clone = copy.deepcopy(sampler)
    assert as_lists(clone.plan(2)) == as_lists(
        BalancedBatchSampler(LABELS, 3, 4, safe_triplet=True, seed=77).plan(2)
    )


def test_epoch_bounds():
    sampler = BalancedBatchSampler(LABELS, 3, 4, seed=1)
    with pytest.raises(ValueError, match=r"below 2\*\*31"):
        sampler.plan(2**31)
    with pytest.raises(TypeError, match="epoch"):
        sampler.set_epoch(1.0)
