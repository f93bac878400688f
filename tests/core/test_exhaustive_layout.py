"""Exhaustive mode near its optimum: exact P x K batches first, then the tail."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balanced_sampler import BalancedBatchSampler

pytestmark = pytest.mark.filterwarnings("ignore::balanced_sampler.SamplerWarning")


def b_star(sizes, p, k):
    """The issue's bound: max B with sum_c min(floor(n_c / K), B) >= P B (brute force)."""
    best = 0
    for b in range(1, int(np.sum(np.asarray(sizes) // k)) // p + 1):
        if np.minimum(np.asarray(sizes) // k, b).sum() >= p * b:
            best = b
    return best


def zipf_sizes(num_samples, num_classes):
    share = 1.0 / np.arange(1, num_classes + 1)
    sizes = np.maximum(1, np.floor(share / share.sum() * num_samples)).astype(np.int64)
    sizes[0] += num_samples - sizes.sum()
    return sizes


def exact_count(plan, labels, p, k):
    count = 0
    for batch in plan:
        per_class = Counter(labels[batch].tolist())
        count += len(per_class) == p and set(per_class.values()) == {k}
    return count


def lone_batches(plan, labels):
    return sum(len(np.unique(labels[batch])) == 1 for batch in plan)


@pytest.mark.parametrize(
    ("sizes", "p", "k"),
    [
        (np.random.default_rng(0).integers(5, 51, 500), 16, 4),  # uniform 5-50, C=500
        (zipf_sizes(2_000, 200), 8, 4),  # long-tailed
        (zipf_sizes(100_000, 1_000), 32, 4),  # benchmark (a)
    ],
    ids=["uniform", "zipf-2k", "zipf-100k"],
)
def test_at_least_nine_tenths_of_b_star_exact_batches(sizes, p, k):
    # Before: 16 of 210, 7 of 55 and 0 exact batches.
    labels = np.repeat(np.arange(len(sizes)), sizes)
    sampler = BalancedBatchSampler(labels, p, k, seed=3)
    spread = BalancedBatchSampler(labels, p, k, seed=3, exhaustive_priority="spread")
    bound = b_star(sizes, p, k)
    for epoch in (0, 1):
        plan = sampler.plan(epoch)
        exact = exact_count(plan, labels, p, k)
        assert exact >= sampler.exact_batches >= 0.9 * bound
        assert sampler.max_exact_batches <= bound
        stats = sampler.stats(epoch)
        assert stats.exactly_once_fraction == 1.0
        assert stats.triplet_valid_fraction >= spread.stats(epoch).triplet_valid_fraction
    assert len(sampler) == len(spread)


def test_a_dominant_class_gets_a_second_class_in_as_many_batches_as_possible():
    # 40 images of class 0, 4 of classes 1 and 2, P=3, K=4: class 0 has 10
    # groups, so 10 batches. Before: 8 of them held class 0 alone; cutting
    # classes 1 and 2 into pairs gives 4 batches a second class.
    labels = np.repeat([0, 1, 2], [40, 4, 4])
    for priority in ("exact", "spread"):
        sampler = BalancedBatchSampler(labels, 3, 4, seed=1, exhaustive_priority=priority)
        plan = sampler.plan(0)
        assert len(plan) == 10
        assert lone_batches(plan, labels) == 6
        assert sorted(len(b) for b in plan if len(np.unique(labels[b])) > 1) == [6] * 4


@st.composite
def dominated(draw):
    k = draw(st.integers(2, 5))
    others = draw(st.lists(st.integers(1, 12), min_size=1, max_size=12))
    p = draw(st.integers(2, len(others) + 1))
    big = draw(st.integers(k * (sum(others) + 2), k * (sum(others) + 40)))
    sizes = [big, *others]
    return np.repeat(np.arange(len(sizes)), sizes), p, k, draw(st.integers(0, 2**16))


@given(dominated())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_lone_batches_are_as_few_as_the_images_allow(config):
    """One class has more groups than the others have images: every batch holds
    it; the others give a second class to at most one batch per 2 images."""
    labels, p, k, seed = config
    sizes = np.bincount(labels)
    q, r = divmod(int(sizes[0]), k)
    big_groups = q if r == 0 or (r == 1 and k == 2) else q + 1  # 4 q + 1: q - 1 + 2 groups
    others = sizes[1:]
    # Most batches the other classes can reach: a group of >= 2 images each
    # (a single image when the class has one), at most one per batch.
    reach = int(np.minimum(np.maximum(others // 2, 1), big_groups).sum())
    for priority in ("exact", "spread"):
        sampler = BalancedBatchSampler(labels, p, k, seed=seed, exhaustive_priority=priority)
        plan = sampler.plan(0)
        assert len(plan) == big_groups
        assert lone_batches(plan, labels) == max(0, big_groups - reach)


@st.composite
def any_labels(draw):
    sizes = draw(st.lists(st.integers(1, 40), min_size=1, max_size=40))
    if draw(st.booleans()):
        sizes[0] = draw(st.integers(1, 800))
    p = draw(st.integers(1, len(sizes)))
    k = draw(st.integers(1, 6))
    return np.repeat(np.arange(len(sizes)), sizes), p, k, draw(st.integers(0, 2**32))


@given(any_labels())
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_exact_priority_never_costs_a_negative(config):
    """"exact" takes exact batches only while they leave no more batches
    without a second class than "spread"; both play every sample once, in the
    same number of batches, whatever the seed."""
    labels, p, k, seed = config
    exact = BalancedBatchSampler(labels, p, k, seed=seed)
    spread = BalancedBatchSampler(labels, p, k, seed=seed, exhaustive_priority="spread")
    assert len(exact) == len(spread)
    assert spread.exact_batches == 0
    sizes = np.bincount(labels)
    assert exact.exact_batches <= exact.max_exact_batches <= b_star(sizes, p, k)
    # B* counts the groups of exactly K the cut makes (K q + 1 images: q - 1 of them).
    q, r = np.divmod(sizes, k)
    cut_full = np.where((r == 1) & (q >= 1) & (k >= 2), q - 1, q)
    assert exact.max_exact_batches == b_star(cut_full * k, p, k)
    plan = exact.plan(2)
    assert np.array_equal(np.sort(np.concatenate(plan)), np.arange(len(labels)))
    assert exact_count(plan, labels, p, k) >= exact.exact_batches
    if p >= 2:
        assert lone_batches(plan, labels) <= lone_batches(spread.plan(2), labels)
    other = BalancedBatchSampler(labels, p, k, seed=seed + 1)
    assert other.exact_batches == exact.exact_batches
    assert len(other.plan(0)) == len(plan)


def test_shards_leave_out_the_smallest_batches():
    # Before: batches were ordered by group count, so a 3-sample batch could be
    # left out while a 2-sample one was kept.
    rng = np.random.default_rng(5)
    for _ in range(30):
        sizes = rng.integers(1, 12, rng.integers(3, 15))
        labels = np.repeat(np.arange(len(sizes)), sizes)
        p, k = int(rng.integers(2, len(sizes) + 1)), int(rng.integers(2, 5))
        whole = BalancedBatchSampler(labels, p, k, seed=1)
        shards = 3
        if whole.global_batches < shards:
            continue
        plan = whole.plan(0)
        kept = len(whole) // shards * shards
        kept_sizes = [len(b) for b in plan[:kept]]
        dropped_sizes = [len(b) for b in plan[kept:]]
        if dropped_sizes:
            assert max(dropped_sizes) <= min(kept_sizes)
