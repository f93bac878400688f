"""Tests of balanced_sampler.splitting.split."""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from balanced_sampler.splitting import _allocate, _allocate_units, split

# ---------------------------------------------------------------- strategies

labels_st = st.lists(st.integers(min_value=-3, max_value=12), min_size=1, max_size=150).map(
    lambda values: np.asarray(values, dtype=np.int64)
)
fraction_st = st.floats(min_value=0.01, max_value=0.99)
seed_st = st.integers(min_value=0, max_value=2**63)
by_st = st.sampled_from(["samples", "classes"])


def both(labels, fraction, seed, by="samples"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the capacity warning
        return split(labels, fraction, "both", seed, by=by)


def valid(labels, fraction, by):
    """Whether `split` accepts these inputs (else it raises a ValueError)."""
    if by == "samples":
        return int(fraction * len(labels)) >= 1
    return len(np.unique(labels)) >= 2


def val_counts(labels, validation):
    classes, counts = np.unique(labels, return_counts=True)
    val = np.array([np.count_nonzero(labels[validation] == c) for c in classes])
    return classes, counts, val


# ---------------------------------------------------------------- properties


@settings(deadline=None)
@given(labels_st, fraction_st, seed_st, by_st)
def test_disjoint_complete_sorted_int64(labels, fraction, seed, by):
    assume(valid(labels, fraction, by))
    training, validation = both(labels, fraction, seed, by)
    for part in (training, validation):
        assert part.dtype == np.int64
        assert part.ndim == 1
        assert np.all(np.diff(part) > 0)  # sorted, no repeats
    assert np.intersect1d(training, validation).size == 0
    assert np.array_equal(np.union1d(training, validation), np.arange(len(labels)))
    assert validation.size >= 1
    assert training.size >= 1


@settings(deadline=None)
@given(labels_st, fraction_st, seed_st, by_st)
def test_deterministic_and_subsets_agree(labels, fraction, seed, by):
    assume(valid(labels, fraction, by))
    training, validation = both(labels, fraction, seed, by)
    again = both(labels.tolist(), fraction, seed, by)
    assert np.array_equal(again[0], training)
    assert np.array_equal(again[1], validation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert np.array_equal(split(labels, fraction, "training", seed, by=by), training)
        assert np.array_equal(split(labels, fraction, "validation", seed, by=by), validation)


@settings(deadline=None)
@given(labels_st, fraction_st, seed_st)
def test_stratified_per_class(labels, fraction, seed):
    assume(valid(labels, fraction, "samples"))
    _, validation = both(labels, fraction, seed)
    _, counts, val = val_counts(labels, validation)
    cap = np.where(counts >= 2, counts - 1, counts)
    # The total is Keras' int(validation_split * N), unless every class of
    # two or more would then lose its last training sample.
    assert validation.size == min(int(fraction * len(labels)), int(cap.sum()))
    # Every class of 2+ keeps one in training.
    assert np.all(val <= cap)
    if int(fraction * len(labels)) <= int(np.minimum(np.ceil(fraction * counts), cap).sum()):
        # No class is pushed past its ceiling: each class is within one
        # sample of its exact share (floor or ceil, up to float rounding).
        assert np.all(np.abs(val - fraction * counts) <= 1.0 + 1e-9)


@settings(deadline=None)
@given(labels_st, fraction_st, seed_st)
def test_every_class_gets_validation_when_remainder_allows(labels, fraction, seed):
    assume(valid(labels, fraction, "samples"))
    _, validation = both(labels, fraction, seed)
    _, counts, val = val_counts(labels, validation)
    cap = np.where(counts >= 2, counts - 1, counts)
    floors = np.minimum(np.floor(fraction * counts), cap)
    remainder = min(int(fraction * len(labels)), int(cap.sum())) - int(floors.sum())
    zero_classes = int(np.count_nonzero((floors == 0) & (counts >= 2)))
    if remainder >= 0 and zero_classes <= remainder:
        assert np.all(val[counts >= 2] >= 1)


@settings(deadline=None, max_examples=40)
@given(labels_st, fraction_st, by_st)
def test_seed_changes_the_split(labels, fraction, by):
    assume(valid(labels, fraction, by))
    _, validation = both(labels, fraction, 0, by)
    if by == "samples":
        _, counts, val = val_counts(labels, validation)
        # With a class split inside (0 < val < n), there are >= 2 possible
        # splits; 64 seeds all giving the same one has probability < 2**-63.
        assume(np.any((val > 0) & (val < counts)))
    splits = {tuple(both(labels, fraction, seed, by)[1].tolist()) for seed in range(64)}
    assert len(splits) > 1


@settings(deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=15), min_size=1, max_size=12),
    fraction_st,
    seed_st,
)
def test_fast_allocation_equals_unit_allocation(sizes, fraction, seed):
    counts = np.asarray(sizes, dtype=np.int64)
    cap = np.where(counts >= 2, counts - 1, counts)
    total = min(int(fraction * counts.sum()), int(cap.sum()))
    keys = np.random.Generator(np.random.PCG64(seed)).random(counts.size)
    fast = _allocate(counts, fraction, total, keys)
    slow = _allocate_units(counts, fraction, total, keys)
    assert np.array_equal(fast, slow)
    assert fast.sum() == total


@settings(deadline=None)
@given(labels_st, fraction_st, seed_st)
def test_by_classes_puts_whole_classes_on_one_side(labels, fraction, seed):
    assume(valid(labels, fraction, "classes"))
    training, validation = both(labels, fraction, seed, "classes")
    train_classes = set(labels[training].tolist())
    val_classes = set(labels[validation].tolist())
    assert train_classes.isdisjoint(val_classes)
    n_classes = len(np.unique(labels))
    assert len(val_classes) == min(max(int(fraction * n_classes), 1), n_classes - 1)
    assert len(train_classes) >= 1


# ---------------------------------------------------------------- examples


def test_keras_total_and_shapes():
    labels = np.repeat(np.arange(10), 10)
    training, validation = split(labels, 0.2, "both", seed=1)
    assert validation.size == 20
    assert training.size == 80
    # 10 classes of 10 at 20 %: exactly 2 of each class.
    assert np.bincount(labels[validation]).tolist() == [2] * 10


def test_largest_remainder_with_seeded_ties():
    labels = np.repeat(np.arange(5), 4)  # q = 0.8 each, total int(0.2 * 20) = 4
    seen = set()
    for seed in range(20):
        validation = split(labels, 0.2, "validation", seed)
        per_class = np.bincount(labels[validation], minlength=5)
        assert sorted(per_class.tolist()) == [0, 1, 1, 1, 1]
        seen.add(int(np.flatnonzero(per_class == 0)[0]))
    assert len(seen) > 1  # which class misses out depends on the seed


def test_classes_without_validation_are_served_first():
    # A: 7 samples, share 1.75; B: 2 samples, share 0.5; total int(2.25) = 2.
    # Plain largest remainder would give A 2 and B 0; B is served first.
    labels = np.array([0] * 7 + [1] * 2)
    validation = split(labels, 0.25, "validation", seed=3)
    assert np.bincount(labels[validation]).tolist() == [1, 1]


def test_proportions_kept_when_not_every_class_can_get_one():
    # Big class share 10.5 (floor 10), ten pairs of share 0.2: total 12.
    labels = np.array([0] * 105 + [1 + i // 2 for i in range(20)])
    validation = split(labels, 0.1, "validation", seed=0)
    per_class = np.bincount(labels[validation], minlength=11)
    assert per_class[0] == 10
    assert per_class[1:].sum() == 2
    assert validation.size == 12


def test_every_class_of_two_keeps_one_in_training_with_a_warning():
    labels = np.repeat(np.arange(6), 2)  # asks int(0.9 * 12) = 10, at most 6 possible
    with pytest.warns(UserWarning, match="only 6 can go to validation"):
        training, validation = split(labels, 0.9, "both", seed=0)
    assert np.bincount(labels[training]).tolist() == [1] * 6
    assert np.bincount(labels[validation]).tolist() == [1] * 6


def test_singletons_go_wherever_the_remainder_puts_them():
    labels = np.arange(10)  # ten classes of one sample
    training, validation = split(labels, 0.3, "both", seed=5)
    assert validation.size == 3
    assert training.size == 7


def test_non_contiguous_and_negative_labels():
    labels = np.array([-5, -5, 100, 100, 100, 7, 7, 7, 7, 7])
    training, validation = split(labels, 0.5, "both", seed=2)
    assert validation.size == 5
    assert set(labels[training]) == {-5, 100, 7}
    assert set(labels[validation]) == {-5, 100, 7}


def test_by_classes_examples():
    labels = np.repeat(np.arange(10), 3)
    training, validation = split(labels, 0.3, "both", seed=0, by="classes")
    assert len(np.unique(labels[validation])) == 3
    assert len(np.unique(labels[training])) == 7
    # With 2 classes and any fraction, one class on each side.
    two = np.array([4, 4, 9])
    for fraction in (0.01, 0.5, 0.99):
        tr, va = split(two, fraction, "both", seed=1, by="classes")
        assert len(np.unique(two[tr])) == 1
        assert len(np.unique(two[va])) == 1


def test_global_random_state_untouched():
    np_state = np.random.get_state()[1].copy()
    py_state = random.getstate()
    split(np.repeat(np.arange(20), 5), 0.2, "both", seed=9)
    split(np.repeat(np.arange(20), 5), 0.2, "both", seed=9, by="classes")
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert random.getstate() == py_state


def test_large_input_is_fast_enough():
    labels = np.random.default_rng(0).integers(0, 10_000, 200_000)
    training, validation = split(labels, 0.2, "both", seed=0)
    assert validation.size == 40_000
    assert training.size + validation.size == 200_000


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("fraction", [0, 0.0, 1, 1.0, 1.5, -0.1, math.nan])
def test_bad_validation_split_value(fraction):
    with pytest.raises(ValueError, match=r"strictly between 0 and 1\. Received: validation_split"):
        split([0, 0, 1, 1], fraction, "training", seed=0)


@pytest.mark.parametrize("fraction", ["0.2", None, True])
def test_bad_validation_split_type(fraction):
    with pytest.raises(TypeError, match="validation_split"):
        split([0, 0, 1, 1], fraction, "training", seed=0)


@pytest.mark.parametrize("subset", ["train", "test", None, "Both"])
def test_bad_subset(subset):
    with pytest.raises(ValueError, match=r'"training", "validation" or "both"\. Received: subset'):
        split([0, 0, 1, 1], 0.5, subset, seed=0)


def test_seed_is_required():
    with pytest.raises(ValueError, match=r"`seed` is required.*Received: seed=None"):
        split([0, 0, 1, 1], 0.5, "training", seed=None)


@pytest.mark.parametrize(("seed", "error"), [(-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_bad_seed(seed, error):
    with pytest.raises(error, match=r"non-negative integer\. Received: seed="):
        split([0, 0, 1, 1], 0.5, "training", seed=seed)


def test_numpy_integer_seed_and_fraction():
    labels = [0, 0, 1, 1]
    a = split(labels, np.float32(0.5), "validation", seed=np.int64(4))
    b = split(labels, 0.5, "validation", seed=4)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("by", ["sample", "class", None])
def test_bad_by(by):
    with pytest.raises(ValueError, match=r'"samples" or "classes"\. Received: by='):
        split([0, 0, 1, 1], 0.5, "training", seed=0, by=by)


@pytest.mark.parametrize(
    ("labels", "error", "pattern"),
    [
        ([], ValueError, "empty"),
        (np.zeros((2, 2), dtype=int), ValueError, "one-dimensional"),
        ([0.0, 1.0], TypeError, "must hold integers.*float64"),
        (["a", "b"], TypeError, "must hold integers"),
        ([True, False], TypeError, "must hold integers.*bool"),
        ("ab", TypeError, "list, tuple or 1-D array of integer class labels"),
        (None, TypeError, "list, tuple or 1-D array of integer class labels"),
        (5, TypeError, "Received: labels=5 of type int"),
        ((i for i in [0, 1]), TypeError, r"generator: pass list\(\.\.\.\)"),
        (np.array([2**63], dtype=np.uint64), ValueError, "must fit in int64"),
    ],
)
def test_bad_labels(labels, error, pattern):
    with pytest.raises(error, match=pattern):
        split(labels, 0.5, "training", seed=0)


def test_empty_validation_is_an_error():
    with pytest.raises(ValueError, match=r"int\(0\.1 \* 5\) = 0"):
        split([0, 0, 1, 1, 2], 0.1, "validation", seed=0)


def test_by_classes_needs_two_classes():
    with pytest.raises(ValueError, match="at least 2 distinct classes"):
        split([3, 3, 3], 0.5, "training", seed=0, by="classes")
