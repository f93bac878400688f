"""Property tests: the sampler's guarantees over random labels, P, K, seeds and shards."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balanced_sampler import BalancedBatchSampler
from balanced_sampler.stats import coverage_ceiling

pytestmark = pytest.mark.filterwarnings("ignore::balanced_sampler.SamplerWarning")

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def expected_groups(n: int, k: int) -> list[int]:
    """The documented cut of a class of n images into groups (reference)."""
    if n <= k:
        return [n]
    q, r = divmod(n, k)
    if r == 0:
        return [k] * q
    if r >= 2:
        return [k] * q + [r]
    if k >= 3:
        return [k] * (q - 1) + [k - 1, 2]
    return [2] * (q - 1) + [3]


def runs(values: np.ndarray) -> list[tuple[int, int]]:
    """(value, run length) of consecutive equal values."""
    out: list[tuple[int, int]] = []
    for v in values.tolist():
        if out and out[-1][0] == v:
            out[-1] = (v, out[-1][1] + 1)
        else:
            out.append((v, 1))
    return out


@st.composite
def label_sets(draw: st.DrawFn, max_classes: int = 40, max_size: int = 30) -> np.ndarray:
    sizes = draw(st.lists(st.integers(1, max_size), min_size=1, max_size=max_classes))
    if draw(st.booleans()):  # a heavy tail: one dominant class
        sizes[0] = draw(st.integers(1, 20 * max_size))
    labels = np.repeat(np.arange(len(sizes)) * 3 + 1, sizes)  # non-contiguous label values
    order = np.random.default_rng(draw(st.integers(0, 2**16))).permutation(len(labels))
    return labels[order]


@st.composite
def exhaustive_configs(draw: st.DrawFn) -> tuple[np.ndarray, int, int, int]:
    labels = draw(label_sets())
    p = draw(st.integers(1, len(np.unique(labels))))
    k = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32))
    return labels, p, k, seed


@given(exhaustive_configs())
@SETTINGS
def test_exhaustive_every_sample_exactly_once_in_groups(config):
    labels, p, k, seed = config
    sampler = BalancedBatchSampler(labels, p, k, seed=seed)
    plan = sampler.plan(0)
    assert len(plan) == len(sampler)
    flat = np.concatenate(plan)
    assert np.array_equal(np.sort(flat), np.arange(len(labels)))

    groups: dict[int, list[int]] = {}
    for batch in plan:
        batch_runs = runs(labels[batch])
        classes = [c for c, _ in batch_runs]
        assert len(classes) == len(set(classes)), "a class twice in a batch"
        assert len(classes) <= p
        for c, size in batch_runs:
            groups.setdefault(c, []).append(size)
    for c, sizes in groups.items():
        n = int(np.count_nonzero(labels == c))
        assert sum(sizes) == n
        if sorted(sizes) == sorted(expected_groups(n, k)):
            continue
        # A class cut smaller to give lone batches a second class: groups of at
        # least two images, at most K (3 when K=2), the groups below K even.
        assert min(sizes) >= 2, (n, k, sizes)
        assert max(sizes) <= max(k, 3), (n, k, sizes)
        below = [size for size in sizes if size < k]
        assert max(below) - min(below) <= 1, (n, k, sizes)


@given(exhaustive_configs(), st.integers(0, 2**32))
@SETTINGS
def test_exhaustive_batch_count_does_not_depend_on_seed(config, other_seed):
    labels, p, k, seed = config
    a = BalancedBatchSampler(labels, p, k, seed=seed)
    b = BalancedBatchSampler(labels, p, k, seed=other_seed)
    assert len(a) == len(b) == len(a.plan(3)) == len(b.plan(5))


@given(exhaustive_configs())
@SETTINGS
def test_exhaustive_batches_are_full_but_the_last_two_when_classes_allow(config):
    labels, p, k, seed = config
    sampler = BalancedBatchSampler(labels, p, k, seed=seed)
    plan = sampler.plan(1)
    groups = [len(runs(labels[batch])) for batch in plan]
    sizes = np.unique(labels, return_counts=True)[1]
    per_class = [len(expected_groups(int(n), k)) for n in sizes]
    total = sum(per_class)
    if max(per_class) <= total // p - 1:
        assert sum(g < p for g in groups) <= 2
        assert len(plan) == -(-total // p)
    # Batches come largest first (so shards leave out the smallest).
    lengths = [len(batch) for batch in plan]
    assert lengths == sorted(lengths, reverse=True)


@st.composite
def fixed_configs(draw: st.DrawFn) -> tuple[np.ndarray, int, int, int, int | None, object]:
    labels = draw(label_sets())
    num_classes = len(np.unique(labels))
    p = draw(st.integers(1, num_classes))
    k = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32))
    multiple = draw(st.one_of(st.none(), st.integers(1, 30)))
    samples = None if multiple is None else multiple * p * k
    weights = draw(st.sampled_from(["proportional", "uniform", 0.5, 0.0, 1.5]))
    return labels, p, k, seed, samples, weights


@given(fixed_configs())
@SETTINGS
def test_fixed_batches_are_exactly_p_classes_by_k_images(config):
    labels, p, k, seed, samples, weights = config
    sampler = BalancedBatchSampler(
        labels, p, k, safe_triplet=True, seed=seed, samples_per_epoch=samples,
        class_weights=weights,
    )
    expected_batches = (samples or -(-len(labels) // (p * k)) * p * k) // (p * k)
    for epoch in (0, 1, 4):
        plan = sampler.plan(epoch)
        assert len(plan) == len(sampler) == expected_batches
        for batch in plan:
            assert len(batch) == p * k
            batch_runs = runs(labels[batch])
            assert len(batch_runs) == p
            assert len({c for c, _ in batch_runs}) == p
            assert all(size == k for _, size in batch_runs)
            for start in range(0, p * k, k):
                group = batch[start : start + k]
                n = int(np.count_nonzero(labels == labels[group[0]]))
                if n >= k:
                    assert len(set(group.tolist())) == k, "an image twice in a batch"
                else:
                    # Padding: each distinct image before any repeat.
                    assert len(set(group[:n].tolist())) == n
                    assert set(group.tolist()) == set(np.flatnonzero(labels == labels[group[0]]))


@given(fixed_configs())
@SETTINGS
def test_fixed_proportional_coverage_reaches_the_ceiling(config):
    labels, p, k, seed, samples, _ = config
    sampler = BalancedBatchSampler(
        labels, p, k, safe_triplet=True, seed=seed, samples_per_epoch=samples
    )
    sizes = np.unique(labels, return_counts=True)[1]
    ceiling = coverage_ceiling(sizes, sampler.global_batches, p, k)
    for epoch in (0, 1, 2):
        assert sampler.stats(epoch).coverage >= ceiling - 0.01


@given(fixed_configs())
@SETTINGS
def test_fixed_epoch_shows_min_of_class_size_and_quota_distinct_images(config):
    labels, p, k, seed, samples, weights = config
    sampler = BalancedBatchSampler(
        labels, p, k, safe_triplet=True, seed=seed, samples_per_epoch=samples,
        class_weights=weights,
    )
    for epoch in (0, 3):
        plan = np.concatenate(sampler.plan(epoch))
        shown = Counter(labels[plan].tolist())
        distinct = Counter(labels[np.unique(plan)].tolist())
        for c, slots in shown.items():
            n = int(np.count_nonzero(labels == c))
            assert distinct[c] == min(n, slots)


@given(fixed_configs())
@SETTINGS
def test_fixed_images_come_back_within_the_rotation(config):
    """Each pass over a class shows all its images in the epochs it spans.

    Epoch e shows stream positions [S_e, S_e+1) of every class, where S_e
    counts the class's slots in earlier epochs; pass j is the positions
    [j n, (j + 1) n). So a class with a quota of q images per epoch shows
    every image within ceil(n / q) epochs of the start of a pass.
    """
    labels, p, k, seed, samples, weights = config
    sampler = BalancedBatchSampler(
        labels, p, k, safe_triplet=True, seed=seed, samples_per_epoch=samples,
        class_weights=weights,
    )
    values, sizes = np.unique(labels, return_counts=True)
    shown: dict[int, list[set[int]]] = {int(v): [] for v in values}
    slots: dict[int, list[int]] = {int(v): [0] for v in values}
    for epoch in range(25):
        plan = np.concatenate(sampler.plan(epoch))
        for c in shown:
            mine = plan[labels[plan] == c]
            shown[c].append(set(mine.tolist()))
            slots[c].append(slots[c][-1] + len(mine))
    for c, n in zip(values.tolist(), sizes.tolist(), strict=True):
        ends = slots[c]
        for j in range(ends[-1] // n):
            epochs = [
                e for e in range(len(ends) - 1) if ends[e] < (j + 1) * n and ends[e + 1] > j * n
            ]
            seen = set().union(*(shown[c][e] for e in epochs))
            assert len(seen) == n, (c, n, j, epochs)


@given(exhaustive_configs(), st.booleans(), st.integers(2, 4))
@SETTINGS
def test_shards_are_disjoint_equal_and_make_up_the_global_plan(config, fixed, shards):
    labels, p, k, seed = config
    kwargs = {"safe_triplet": fixed, "seed": seed}
    whole = BalancedBatchSampler(labels, p, k, **kwargs)
    if whole.global_batches < shards:
        return
    parts = [
        BalancedBatchSampler(labels, p, k, num_shards=shards, shard_index=i, **kwargs)
        for i in range(shards)
    ]
    lengths = {len(part) for part in parts}
    assert len(lengths) == 1, "every shard must get the same number of batches"
    for epoch in (0, 2):
        if fixed:
            # The default epoch is rounded up to whole rounds of shards.
            assert len(parts[0]) * shards == parts[0].global_batches
            reference = parts_reference(labels, p, k, shards, kwargs, epoch)
        else:
            reference = whole.plan(epoch)
        kept = len(parts[0]) * shards
        for i, part in enumerate(parts):
            for j, batch in enumerate(part.plan(epoch)):
                assert np.array_equal(batch, reference[i + j * shards])
        seen = np.concatenate([np.concatenate(part.plan(epoch)) for part in parts])
        if not fixed:
            assert len(seen) == len(np.unique(seen)), "shards overlap"
            dropped = reference[kept:]
            assert len(dropped) == whole.global_batches % shards
            assert len(seen) + sum(len(b) for b in dropped) == len(labels)


def parts_reference(labels, p, k, shards, kwargs, epoch):
    """The global plan with the epoch length that sharded fixed samplers use."""
    probe = BalancedBatchSampler(labels, p, k, num_shards=shards, **kwargs)
    return BalancedBatchSampler(
        labels, p, k, samples_per_epoch=probe.global_batches * p * k, **kwargs
    ).plan(epoch)


@given(fixed_configs())
@SETTINGS
def test_fixed_counts_stay_within_one_between_images_of_a_class(config):
    """Every pass shows each image once, so counts over any epochs differ by <= 1."""
    labels, p, k, seed, samples, weights = config
    sampler = BalancedBatchSampler(
        labels, p, k, safe_triplet=True, seed=seed, samples_per_epoch=samples,
        class_weights=weights,
    )
    counts = np.zeros(len(labels), dtype=np.int64)
    for epoch in range(12):
        np.add.at(counts, np.concatenate(sampler.plan(epoch)), 1)
        for c in np.unique(labels):
            mine = counts[labels == c]
            assert mine.max() - mine.min() <= 1, (epoch, c, mine)
