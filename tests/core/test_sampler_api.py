"""The sampler's contract: purity, iteration, resume, errors."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import warnings

import numpy as np
import pytest

from balanced_sampler import BalancedBatchSampler, SamplerWarning

LABELS = np.repeat(np.arange(12), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 25, 40])


def as_lists(plan):
    return [batch.tolist() for batch in plan]


def position(state):
    return {key: state[key] for key in ("seed", "epoch", "next_batch")}


@pytest.mark.parametrize("safe_triplet", [False, True])
def test_same_inputs_give_the_same_plan_and_epochs_differ(safe_triplet):
    a = BalancedBatchSampler(LABELS, 3, 4, safe_triplet=safe_triplet, seed=7)
    b = BalancedBatchSampler(list(LABELS), 3, 4, safe_triplet=safe_triplet, seed=7)
    assert as_lists(a.plan(2)) == as_lists(b.plan(2))
    assert as_lists(a.plan(0)) != as_lists(a.plan(1))
    c = BalancedBatchSampler(LABELS, 3, 4, safe_triplet=safe_triplet, seed=8)
    assert as_lists(a.plan(0)) != as_lists(c.plan(0))


def test_the_plan_is_the_same_in_another_process():
    code = (
        "import json, numpy as np; from balanced_sampler import BalancedBatchSampler;"
        f"labels = np.repeat(np.arange(12), {[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 25, 40]});"
        "plans = [[b.tolist() for b in BalancedBatchSampler(labels, 3, 4, safe_triplet=s, seed=7)"
        ".plan(3)] for s in (False, True)];"
        "print(json.dumps(plans))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    here = [
        as_lists(BalancedBatchSampler(LABELS, 3, 4, safe_triplet=s, seed=7).plan(3))
        for s in (False, True)
    ]
    assert json.loads(out) == here


def test_no_global_random_state_is_read_or_written():
    random.seed(1)
    np.random.seed(1)
    py_state, np_state = random.getstate(), np.random.get_state()
    a = BalancedBatchSampler(LABELS, 3, 4, safe_triplet=True, seed=5)
    plan_a = as_lists(a.plan(0)) + as_lists(a.plan(1))
    list(a)
    BalancedBatchSampler(LABELS, 3, 4, seed=None).plan(0)
    assert random.getstate() == py_state
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    random.seed(99)
    np.random.seed(99)
    b = BalancedBatchSampler(LABELS, 3, 4, safe_triplet=True, seed=5)
    assert as_lists(b.plan(0)) + as_lists(b.plan(1)) == plan_a


def test_seed_none_draws_a_seed_and_keeps_it():
    a = BalancedBatchSampler(LABELS, 3, 4, seed=None)
    assert isinstance(a.seed, int)
    assert as_lists(a.plan(0)) == as_lists(a.plan(0))
    assert as_lists(BalancedBatchSampler(LABELS, 3, 4, seed=a.seed).plan(4)) == as_lists(
        a.plan(4)
    )


def test_iteration_yields_int_lists_and_moves_to_the_next_epoch():
    sampler = BalancedBatchSampler(LABELS, 3, 4, safe_triplet=True, seed=3)
    first = list(sampler)
    second = list(sampler)
    assert all(isinstance(i, int) for batch in first for i in batch)
    assert len(first) == len(second) == len(sampler)
    assert first == as_lists(sampler.plan(0))
    assert second == as_lists(sampler.plan(1))
    sampler.set_epoch(0)
    assert list(sampler) == first
    assert sampler.epoch == 1


def test_the_epoch_is_claimed_when_the_first_batch_is_drawn():
    sampler = BalancedBatchSampler(LABELS, 3, 4, seed=3)
    it0 = iter(sampler)
    it1 = iter(sampler)
    assert next(it1) == sampler.plan(0)[0].tolist()
    assert next(it0) == sampler.plan(1)[0].tolist()
    # A DataLoader with workers calls iter() twice per epoch and draws from the second.
    iter(sampler)
    assert next(iter(sampler)) == sampler.plan(2)[0].tolist()


def test_iter_arrays_claims_the_epoch_when_called():
    sampler = BalancedBatchSampler(LABELS, 3, 4, seed=3)
    it0 = sampler.iter_arrays()
    it1 = sampler.iter_arrays()
    assert next(it1).tolist() == sampler.plan(1)[0].tolist()
    assert next(it0).tolist() == sampler.plan(0)[0].tolist()


def test_plans_are_read_only():
    sampler = BalancedBatchSampler(LABELS, 3, 4, seed=3)
    with pytest.raises(ValueError, match="read-only"):
        sampler.plan(0)[0][0] = 5


@pytest.mark.parametrize("safe_triplet", [False, True])
def test_state_dict_resumes_mid_epoch_with_exactly_the_same_batches(safe_triplet):
    original = BalancedBatchSampler(LABELS, 3, 4, safe_triplet=safe_triplet, seed=None)
    list(original)  # epoch 0
    it = iter(original)  # epoch 1
    consumed = [next(it) for _ in range(2)]
    state = original.state_dict()
    assert position(state) == {"seed": original.seed, "epoch": 1, "next_batch": 2}
    rest = list(it) + list(original)  # the rest of epoch 1, then epoch 2

    restored = BalancedBatchSampler(LABELS, 3, 4, safe_triplet=safe_triplet, seed=None)
    restored.load_state_dict(state)
    assert restored.seed == original.seed
    resumed = list(restored) + list(restored)
    assert consumed + resumed == as_lists(original.plan(1)) + as_lists(original.plan(2))
    assert resumed == rest


def test_state_after_the_last_batch_points_at_the_next_epoch():
    sampler = BalancedBatchSampler(LABELS, 3, 4, seed=1)
    it = iter(sampler)
    for _ in range(len(sampler)):
        next(it)
    assert position(sampler.state_dict()) == {"seed": 1, "epoch": 1, "next_batch": 0}


def test_load_state_dict_rejects_bad_states():
    sampler = BalancedBatchSampler(LABELS, 3, 4, seed=1)
    with pytest.raises(ValueError, match="next_batch"):
        sampler.load_state_dict({"seed": 1, "epoch": 0})
    with pytest.raises(ValueError, match="epoch"):
        sampler.load_state_dict({"seed": 1, "epoch": -1, "next_batch": 0})


def test_design_example_class_of_ten_with_four_per_epoch():
    # Two classes of 10, one batch of 2 x 4 per epoch: each class shows 4 images an epoch.
    labels = np.repeat([0, 1], 10)
    sampler = BalancedBatchSampler(labels, 2, 4, safe_triplet=True, samples_per_epoch=8, seed=4)
    shown = []
    for epoch in range(3):
        (batch,) = sampler.plan(epoch)
        shown.append({i for i in batch.tolist() if labels[i] == 0})
    assert [len(s) for s in shown] == [4, 4, 4]
    assert shown[0].isdisjoint(shown[1])
    assert shown[0] | shown[1] | shown[2] == set(range(10))


def test_shuffle_false_is_deterministic_and_seed_free():
    a = BalancedBatchSampler(LABELS, 3, 4, shuffle=False, seed=1)
    b = BalancedBatchSampler(LABELS, 3, 4, shuffle=False, seed=2)
    assert as_lists(a.plan(0)) == as_lists(b.plan(0)) == as_lists(a.plan(1))
    # Classes in label order inside a batch, images in index order.
    for batch in a.plan(0):
        assert np.all(np.diff(LABELS[batch]) >= 0)
        assert np.all(np.diff(batch) > 0)


def test_len_and_repr():
    sampler = BalancedBatchSampler(LABELS, 3, 4, safe_triplet=True, seed=1)
    assert len(sampler) == -(-len(LABELS) // 12)
    assert "num_classes_per_batch=3" in repr(sampler)
    assert sampler.batch_size == 12


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("safe_triplet", [False, True])
def test_p_larger_than_the_classes_says_both_numbers(safe_triplet):
    with pytest.raises(ValueError, match=r"num_classes_per_batch=13.*only 12"):
        BalancedBatchSampler(LABELS, 13, 2, safe_triplet=safe_triplet)


def test_p_larger_than_usable_classes_after_drop():
    with pytest.raises(ValueError, match=r"num_classes_per_batch=11.*only 9"), pytest.warns(
        UserWarning, match="leaving out 3 of 12 classes"
    ):
        BalancedBatchSampler(LABELS, 11, 4, safe_triplet=True, small_classes="drop")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_images_per_class": 0}, ValueError, "num_images_per_class.*>= 1.*Received: num_images_per_class=0"),
        ({"num_images_per_class": 2.5}, TypeError, "num_images_per_class.*Received"),
        ({"num_classes_per_batch": True}, TypeError, "num_classes_per_batch"),
        ({"labels": []}, ValueError, "empty"),
        ({"labels": [0.0, 1.0, 1.0]}, TypeError, "integers.*float64"),
        ({"labels": [[0, 1], [1, 0]]}, ValueError, "one-dimensional"),
        ({"labels": "abc"}, TypeError, "labels"),
        ({"safe_triplet": "yes"}, TypeError, "safe_triplet"),
        ({"seed": -3}, ValueError, "seed.*Received: seed=-3"),
        ({"seed": 1.5}, TypeError, "seed"),
        ({"shard_index": 2, "num_shards": 2}, ValueError, r"shard_index.*\[0, 2\).*Received: shard_index=2"),
        ({"num_shards": 0}, ValueError, "num_shards"),
        ({"num_shards": 500}, ValueError, "fewer than num_shards=500"),
        ({"samples_per_epoch": 24}, ValueError, "only applies when safe_triplet=True"),
        ({"class_weights": "uniform"}, ValueError, "class_weights.*only applies"),
        (
            {"safe_triplet": True, "samples_per_epoch": 25},
            ValueError,
            r"multiple of the batch size .* = 6. Received: samples_per_epoch=25 .*24 and 30",
        ),
        ({"safe_triplet": True, "samples_per_epoch": 0}, ValueError, "samples_per_epoch"),
        ({"safe_triplet": True, "class_weights": "sqrt"}, ValueError, "class_weights.*'sqrt'"),
        ({"safe_triplet": True, "class_weights": {0: 1.0}}, ValueError, "Missing 11 label"),
        ({"safe_triplet": True, "class_weights": [1.0] * 5}, ValueError, "length > 11"),
        ({"safe_triplet": True, "class_weights": [-1.0] * 12}, ValueError, "finite and >= 0"),
        ({"safe_triplet": True, "class_weights": float("nan")}, ValueError, "finite"),
        ({"safe_triplet": True, "class_weights": object()}, TypeError, "class_weights"),
        ({"safe_triplet": True, "small_classes": "trim"}, ValueError, "small_classes.*'trim'"),
        ({"safe_triplet": True, "small_classes": "error"}, ValueError, "fewer than num_images_per_class=2"),
    ],
)
def test_bad_arguments_are_named_with_the_value_received(kwargs, error, match):
    args = {"labels": LABELS, "num_classes_per_batch": 3, "num_images_per_class": 2, **kwargs}
    with pytest.raises(error, match=match):
        BalancedBatchSampler(**args)


def test_drop_warns_with_the_count_and_never_chooses_small_classes():
    with pytest.warns(UserWarning, match=r"leaving out 3 of 12 classes .*6 samples"):
        sampler = BalancedBatchSampler(LABELS, 3, 4, safe_triplet=True, small_classes="drop")
    shown = np.unique(LABELS[np.concatenate(sampler.plan(0))])
    assert set(shown.tolist()) == set(range(3, 12))


def test_pad_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BalancedBatchSampler(LABELS, 3, 4, safe_triplet=True)


def test_zero_weight_classes_are_never_chosen():
    weights = {c: (0.0 if c < 4 else 1.0) for c in range(12)}
    sampler = BalancedBatchSampler(LABELS, 3, 2, safe_triplet=True, class_weights=weights, seed=1)
    for epoch in range(3):
        assert LABELS[np.concatenate(sampler.plan(epoch))].min() >= 4


# ------------------------------------------------------------ issue 11's messages


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        # Before: numpy's raw "could not convert string to float".
        ({"class_weights": [1.0, "a"] + [1.0] * 10}, TypeError, r"class_weights.*'a'.*label 1"),
        # Before: "labels must be >= 0".
        ({"class_weights": [[1.0] * 12, [1.0] * 12]}, ValueError, r"one-dimensional.*\(2, 12\)"),
        ({"class_weights": {c: 0.0 for c in range(12)}}, ValueError, "at least one class a positive"),
        # Before: "nearest multiples: 4 and 4".
        ({"samples_per_epoch": 4}, ValueError, r"Received: samples_per_epoch=4 \(the smallest allowed value is 6\)"),
        ({"exhaustive_priority": "spread"}, ValueError, "exhaustive_priority.*only applies when safe_triplet=False"),
        # Before: K=10**6 with small_classes="pad" built 2,000,000-index batches.
        ({"num_images_per_class": 10**6}, ValueError, r"at most 32 x the size of the largest class \(40 images, so at most 1280\).*Received: num_images_per_class=1000000"),
    ],
)
def test_fixed_mode_messages_name_the_problem(kwargs, error, match):
    args = {"labels": LABELS, "num_classes_per_batch": 3, "num_images_per_class": 2,
            "safe_triplet": True, **kwargs}
    with pytest.raises(error, match=match):
        BalancedBatchSampler(**args)


@pytest.mark.parametrize(
    ("labels", "error", "match"),
    [
        # Before: "array of shape ()".
        ((i % 3 for i in range(9)), TypeError, r"generator: pass list\(\.\.\.\)"),
        # Before: wrapped to -1, then "Missing label -1".
        (np.array([0, 2**63, 1], dtype=np.uint64), ValueError, "must fit in int64"),
        (7, TypeError, "Received: labels=7 of type int"),
    ],
)
def test_bad_labels_are_named(labels, error, match):
    with pytest.raises(error, match=match):
        BalancedBatchSampler(labels, 1, 1)


def test_exhaustive_priority_is_checked():
    with pytest.raises(ValueError, match=r"exhaustive_priority.*\('exact', 'spread'\).*'most'"):
        BalancedBatchSampler(LABELS, 3, 2, exhaustive_priority="most")


def test_padding_allows_k_up_to_32_times_the_largest_class():
    # A small validation subset (kerasgen 0.1.3's README example pads it).
    labels = np.repeat(np.arange(4), [1, 2, 1, 2])
    sampler = BalancedBatchSampler(labels, 2, 5, safe_triplet=True, seed=0)
    assert all(len(batch) == 10 for batch in sampler.plan(0))
    BalancedBatchSampler(labels, 2, 64, safe_triplet=True, seed=0)
    with pytest.raises(ValueError, match="at most 64"):
        BalancedBatchSampler(labels, 2, 65, safe_triplet=True, seed=0)


def test_large_k_is_fine_in_exhaustive_mode():
    # Every class is then one group; nothing is allocated beyond the N samples.
    sampler = BalancedBatchSampler(LABELS, 3, 10**6, seed=0)
    assert sum(len(b) for b in sampler.plan(0)) == len(LABELS)


@pytest.mark.parametrize(
    ("p", "k", "match"),
    [(3, 1, "num_images_per_class=1: .*no sample has a positive"),
     (1, 2, "num_classes_per_batch=1: .*no sample has a negative")],
)
@pytest.mark.parametrize("safe_triplet", [False, True])
def test_k_or_p_of_one_warns(p, k, match, safe_triplet):
    with pytest.warns(SamplerWarning, match=match):
        BalancedBatchSampler(LABELS, p, k, safe_triplet=safe_triplet)


def test_class_names_name_the_dropped_classes():
    names = [f"folder_{c}" for c in range(12)]
    with pytest.warns(SamplerWarning, match=r"'folder_0' \(label 0\), 'folder_1' \(label 1\), 'folder_2' \(label 2\)"):
        BalancedBatchSampler(LABELS, 3, 4, safe_triplet=True, small_classes="drop", class_names=names)
    by_label = {c: f"c{c}" for c in range(12)}
    with pytest.raises(ValueError, match=r"'c0' \(label 0\)"):
        BalancedBatchSampler(LABELS, 3, 4, safe_triplet=True, small_classes="error", class_names=by_label)


@pytest.mark.parametrize(
    ("class_names", "error", "match"),
    [
        (["a"] * 5, ValueError, r"name every label present. Missing 7 label"),
        ({0: "a"}, ValueError, "Missing 11 label"),
        ("abc", TypeError, "class_names"),
        ([1] * 12, TypeError, "must hold strings"),
    ],
)
def test_bad_class_names(class_names, error, match):
    with pytest.raises(error, match=match):
        BalancedBatchSampler(LABELS, 3, 2, class_names=class_names)


def test_class_names_change_no_plan():
    names = [str(c) for c in range(12)]
    for fixed in (False, True):
        a = BalancedBatchSampler(LABELS, 3, 2, safe_triplet=fixed, seed=2)
        b = BalancedBatchSampler(LABELS, 3, 2, safe_triplet=fixed, seed=2, class_names=names)
        assert as_lists(a.plan(1)) == as_lists(b.plan(1))


def test_too_many_classes_says_it_counts_the_labels_given():
    with pytest.raises(ValueError, match=r"only 12 \(counted over the 120 labels given\)"):
        BalancedBatchSampler(LABELS, 13, 2)
