"""Fixed mode: how groups are shared among classes over many epochs (class_weights)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balanced_sampler import BalancedBatchSampler
from balanced_sampler.stats import coverage_ceiling

pytestmark = pytest.mark.filterwarnings("ignore::balanced_sampler.SamplerWarning")


def water_filled(weights, num_batches, p):
    """Reference: shares of num_batches * p groups, in proportion to weights, capped at B."""
    weights = np.asarray(weights, dtype=float)
    budget = num_batches * p
    capped = np.zeros(len(weights), dtype=bool)
    while True:
        free = ~capped & (weights > 0)
        rest = budget - num_batches * capped.sum()
        shares = np.where(free, weights * rest / weights[free].sum(), 0.0)
        over = free & (shares > num_batches)
        if not over.any():
            return np.where(capped, float(num_batches), shares)
        capped |= over


def groups_by_class(sampler, labels, epochs):
    """Groups of every class (by label value) in each epoch, shape (epochs, classes)."""
    values = np.unique(labels)
    k = sampler.num_images_per_class
    out = np.zeros((epochs, len(values)), dtype=np.int64)
    for epoch in range(epochs):
        shown = labels[np.concatenate(sampler.plan(epoch))]
        counts = np.bincount(np.searchsorted(values, shown), minlength=len(values))
        out[epoch] = counts // k
    return out


def test_a_small_weight_is_not_starved():
    # Before: class 2 got 0 groups in 200 epochs (its share is 0.1 / 2.1 of 10
    # groups an epoch, about 95 in 200), because every epoch rounded alike.
    labels = np.repeat(np.arange(3), 20)
    sampler = BalancedBatchSampler(
        labels, 2, 4, safe_triplet=True, samples_per_epoch=40, seed=0,
        class_weights={0: 1, 1: 1, 2: 0.1},
    )
    per_epoch = groups_by_class(sampler, labels, 200)
    expected = water_filled([1, 1, 0.1], 5, 2)
    cumulative = per_epoch.cumsum(axis=0)
    epochs = np.arange(1, 201)[:, None]
    assert np.abs(cumulative - epochs * expected).max() <= 2
    assert cumulative[-1, 2] == pytest.approx(200 * 10 * 0.1 / 2.1, abs=2)


def test_square_root_weights_do_not_drift():
    # Before: long-run shares [0.25, 0.25, 0.50] against the weights' own.
    labels = np.repeat(np.arange(3), [10, 20, 60])
    sampler = BalancedBatchSampler(
        labels, 2, 2, safe_triplet=True, samples_per_epoch=16, seed=0, class_weights=0.5
    )
    expected = water_filled(np.sqrt([10, 20, 60]), 4, 2)
    np.testing.assert_allclose(sampler.expected_groups, expected)
    per_epoch = groups_by_class(sampler, labels, 300)
    cumulative = per_epoch.cumsum(axis=0)
    assert np.abs(cumulative - np.arange(1, 301)[:, None] * expected).max() <= 2
    # The largest class's share (0.504 of the groups) passes one group per
    # batch: it is capped at 4 groups an epoch, the excess goes to the others.
    assert set(per_epoch[:, 2].tolist()) == {4}


def test_quota_of_every_epoch_is_floor_or_ceil_of_the_share():
    labels = np.repeat(np.arange(7), [3, 5, 8, 13, 21, 34, 55])
    weights = [0.3, 0.1, 2.0, 0.7, 1.1, 0.05, 0.9]
    sampler = BalancedBatchSampler(
        labels, 3, 2, safe_triplet=True, samples_per_epoch=60, seed=3, class_weights=weights
    )
    expected = water_filled(weights, 10, 3)
    per_epoch = groups_by_class(sampler, labels, 50)
    assert np.all(per_epoch >= np.floor(expected - 1e-9))
    assert np.all(per_epoch <= np.ceil(expected + 1e-9))
    assert np.all(per_epoch.sum(axis=1) == 30)


@st.composite
def weighted_configs(draw):
    sizes = draw(st.lists(st.integers(1, 30), min_size=2, max_size=25))
    num_classes = len(sizes)
    labels = np.repeat(np.arange(num_classes) * 2, sizes)  # labels 0, 2, 4, ...
    k = draw(st.integers(1, min(5, max(sizes))))
    kind = draw(st.sampled_from(["uniform", "alpha", "mapping", "sequence"]))
    if kind == "uniform":
        weights, values = "uniform", np.ones(num_classes)
    elif kind == "alpha":
        alpha = draw(st.floats(-2.0, 3.0, allow_nan=False))
        weights, values = alpha, np.asarray(sizes, dtype=float) ** alpha
    else:
        values = np.array(
            draw(
                st.lists(
                    st.one_of(st.just(0.0), st.floats(1e-3, 1e3)),
                    min_size=num_classes,
                    max_size=num_classes,
                )
            )
        )
        if kind == "mapping":
            weights = {2 * c: float(v) for c, v in enumerate(values)}
        else:
            table = np.zeros(2 * num_classes)
            table[::2] = values
            weights = table.tolist()
    positive = int(np.count_nonzero(values > 0))
    if positive == 0:
        values[0] = 1.0
        weights = "uniform" if kind == "uniform" else values_to(weights, kind, values)
        positive = 1
    p = draw(st.integers(1, positive))
    batches = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**32))
    return labels, p, k, batches, weights, values, seed


def values_to(weights, kind, values):
    if kind == "mapping":
        return {2 * c: float(v) for c, v in enumerate(values)}
    if kind == "sequence":
        table = np.zeros(2 * len(values))
        table[::2] = values
        return table.tolist()
    return weights


@given(weighted_configs())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_cumulative_groups_stay_within_two_of_the_expected_share(config):
    """Over epochs 0..E-1, every class shows E x its water-filled share, within 2."""
    labels, p, k, batches, weights, values, seed = config
    sampler = BalancedBatchSampler(
        labels, p, k, safe_triplet=True, samples_per_epoch=batches * p * k, seed=seed,
        class_weights=weights,
    )
    expected = water_filled(values, batches, p)
    np.testing.assert_allclose(sampler.expected_groups, expected, rtol=1e-9, atol=1e-9)
    epochs = 80
    per_epoch = groups_by_class(sampler, labels, epochs)
    assert np.all(per_epoch.sum(axis=1) == batches * p)
    assert np.all(per_epoch <= batches)
    assert np.all(per_epoch[:, values == 0] == 0)
    cumulative = per_epoch.cumsum(axis=0)
    drift = np.abs(cumulative - np.arange(1, epochs + 1)[:, None] * expected)
    assert drift.max() <= 2, (drift.max(), expected)
    # Any later stretch of epochs too (planned directly, no replay).
    start = 10_000
    later = np.array(
        [
            np.bincount(
                np.searchsorted(np.unique(labels), labels[np.concatenate(sampler.plan(e))]),
                minlength=len(expected),
            )
            // k
            for e in range(start, start + 20)
        ]
    )
    assert np.abs(later.sum(axis=0) - 20 * expected).max() <= 4


def test_shuffle_false_fixed_plans_do_not_depend_on_the_seed():
    # Before: 6 seeds gave 4 different plans in fixed mode.
    labels = np.repeat(np.arange(12), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 25, 40])
    for weights in ("proportional", "uniform", 0.5):
        plans = {
            str([b.tolist() for e in range(3) for b in BalancedBatchSampler(
                labels, 3, 4, safe_triplet=True, shuffle=False, seed=seed,
                class_weights=weights,
            ).plan(e)])
            for seed in range(6)
        }
        assert len(plans) == 1, weights


def test_proportional_is_coverage_optimal_unlike_weights_n_c():
    # Two classes of 20 images and one of 2, K=4, P=2, 4 batches: 8 groups.
    labels = np.repeat(np.arange(3), [20, 20, 2])
    kwargs = {"safe_triplet": True, "samples_per_epoch": 32, "seed": 5}
    ceiling = coverage_ceiling([20, 20, 2], 4, 2, 4)
    proportional = BalancedBatchSampler(labels, 2, 4, **kwargs)
    linear = BalancedBatchSampler(labels, 2, 4, class_weights=1.0, **kwargs)
    for epoch in range(20):
        assert proportional.stats(epoch).coverage == pytest.approx(ceiling)
    # "proportional" spends every group on 4 new images: the 2-image class waits.
    np.testing.assert_allclose(proportional.expected_groups, [4, 4, 0])
    # Weights n_c share groups in proportion to the sizes, so the small class
    # shows up (in 8 * 2 / 42 of the groups) and epochs that show it see fewer
    # distinct images than the ceiling.
    np.testing.assert_allclose(linear.expected_groups, water_filled([20, 20, 2], 4, 2))
    coverages = [linear.stats(epoch).coverage for epoch in range(20)]
    assert min(coverages) < ceiling
    assert max(coverages) <= ceiling + 1e-12


def test_weights_are_scale_free():
    # Before: weights that sum to infinity silently became uniform.
    labels = np.repeat(np.arange(3), 10)
    huge = BalancedBatchSampler(
        labels, 2, 2, safe_triplet=True, seed=0, class_weights=[1e308, 1e308, 1e307]
    )
    small = BalancedBatchSampler(labels, 2, 2, safe_triplet=True, seed=0, class_weights=[10, 10, 1])
    np.testing.assert_allclose(huge.expected_groups, small.expected_groups)
    assert huge.expected_groups[2] < huge.expected_groups[0]
