"""The sampler on hostile label distributions, and over a long run."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balanced_sampler import BalancedBatchSampler


@st.composite
def hostile_sizes(draw: st.DrawFn) -> np.ndarray:
    """1 to 10,000 classes of 1 to 1,000 images: uniform, heavy-tailed or one dominant."""
    num_classes = draw(st.integers(1, 10_000))
    shape = draw(st.sampled_from(["uniform", "zipf", "dominant", "singletons"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    if shape == "uniform":
        sizes = rng.integers(1, 1_001, num_classes)
    elif shape == "zipf":
        sizes = np.minimum(rng.zipf(1.5, num_classes), 1_000)
    elif shape == "dominant":
        sizes = rng.integers(1, 6, num_classes)
        sizes[0] = 1_000
    else:
        sizes = np.ones(num_classes, dtype=np.int64)
    # Keep each example below ~300k samples so the suite stays fast.
    while sizes.sum() > 300_000:
        sizes = np.maximum(sizes // 2, 1)
    return sizes


@given(
    hostile_sizes(),
    st.integers(1, 64),
    st.integers(1, 8),
    st.booleans(),
    st.integers(1, 4),
    st.sampled_from(["proportional", "uniform", 0.5]),
    st.sampled_from(["pad", "drop"]),
    st.integers(0, 2**32),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_guarantees_hold_or_construction_says_why(
    sizes, p, k, safe_triplet, shards, weights, small, seed
):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    kwargs = {"safe_triplet": safe_triplet, "seed": seed, "num_shards": shards}
    if safe_triplet:
        kwargs |= {"class_weights": weights, "small_classes": small}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "drop", K=1, P=1 warn; tested elsewhere
            sampler = BalancedBatchSampler(labels, p, k, **kwargs)
    except ValueError as error:
        message = str(error)
        usable = len(sizes) if not safe_triplet or small == "pad" else int((sizes >= k).sum())
        too_large_k = safe_triplet and small == "pad" and k > 32 * sizes.max()
        assert (
            (p > usable and "num_classes_per_batch" in message)
            or "num_shards" in message
            or (too_large_k and "num_images_per_class" in message)
        ), message
        return
    plan = sampler.plan(1)
    assert len(plan) == len(sampler) > 0
    flat = np.concatenate(plan)
    if safe_triplet:
        assert all(len(batch) == p * k for batch in plan)
        assert all(len(np.unique(labels[batch])) == p for batch in plan)
    elif shards == 1:
        assert np.array_equal(np.sort(flat), np.arange(len(labels))), "a sample was lost"
    else:
        assert len(np.unique(flat)) == len(flat)


@pytest.mark.slow
def test_two_hundred_epochs_keep_memory_flat_and_counts_within_one():
    rng = np.random.default_rng(0)
    sizes = np.minimum(rng.zipf(1.3, 2_000), 2_000)
    sizes = np.round(sizes / sizes.sum() * 100_000).astype(np.int64).clip(1)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    sampler = BalancedBatchSampler(labels, 16, 4, safe_triplet=True, seed=11)
    counts = np.zeros(len(labels), dtype=np.int64)
    tracemalloc.start()
    try:
        for epoch in range(200):
            np.add.at(counts, np.concatenate(sampler.plan(epoch)), 1)
            if epoch == 10:
                early = tracemalloc.get_traced_memory()[0]
        late = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert late - early < 0.05 * early + 1_000_000, (early, late)
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    per_class = np.split(counts[order], starts[1:-1])
    spreads = np.array([c.max() - c.min() for c in per_class if c.max() > 0])
    assert spreads.max() <= 1
