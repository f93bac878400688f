"""Class-neighbour tables from embeddings (balanced_sampler.neighbors)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from balanced_sampler import BalancedBatchSampler
from balanced_sampler.neighbors import class_centroids, class_neighbor_table, nearest_classes


def brute_force(x, m, distance="euclidean"):
    """Every row's m nearest other rows by a full distance matrix (small inputs only)."""
    x = np.asarray(x, dtype=np.float64)
    if distance == "cosine":
        unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        d = 1.0 - unit @ unit.T
    else:
        squared = (x**2).sum(1)
        d = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * x @ x.T, 0))
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")[:, :m]
    return order, np.take_along_axis(d, order, axis=1)


def low_dimensional(n, dim, seed, intrinsic=4):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, intrinsic))
    return (z @ rng.standard_normal((intrinsic, dim)) + 0.05 * rng.standard_normal((n, dim))).astype(
        np.float32
    )


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_exact_search_equals_brute_force(distance):
    x = low_dimensional(300, 16, 0)
    indices, distances = nearest_classes(x, 7, distance=distance, search="exact")
    expected, expected_d = brute_force(x, 7, distance)
    assert np.array_equal(indices, expected)
    np.testing.assert_allclose(distances, expected_d, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_clustered_search_finds_neighbours_inside_separated_groups(distance):
    # 40 tight groups of 15 far apart: every row's 6 nearest are in its group.
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((40, 32)) * 20
    x = (np.repeat(centres, 15, axis=0) + rng.standard_normal((600, 32))).astype(np.float32)
    indices, distances = nearest_classes(x, 6, distance=distance, search="clustered")
    expected, expected_d = brute_force(x, 6, distance)
    # The same neighbours (float32 rounding may swap near-ties at the 6th).
    np.testing.assert_allclose(distances, expected_d, rtol=1e-4, atol=1e-4)
    same = np.mean([len(set(a) & set(b)) / 6 for a, b in zip(indices.tolist(), expected.tolist(), strict=False)])
    assert same > 0.995


def test_clustered_search_is_close_to_exact_and_well_formed():
    x = low_dimensional(4000, 32, 2)
    indices, distances = nearest_classes(x, 20, search="clustered", num_probes=8, seed=3)
    expected, expected_d = brute_force(x, 20)
    assert not (indices == np.arange(len(x))[:, None]).any()
    assert (np.diff(distances, axis=1) >= 0).all()
    assert all(len(set(row)) == 20 for row in indices.tolist())
    recomputed = np.linalg.norm(x[indices] - x[:, None, :], axis=2)
    np.testing.assert_allclose(distances, recomputed, rtol=1e-3, atol=1e-3)
    recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(indices.tolist(), expected.tolist(), strict=False)])
    assert recall > 0.8, recall
    # The neighbours it misses are replaced by ones nearly as near.
    assert distances.mean() < 1.05 * expected_d.mean()
    # More probes: closer to exact; a pure function of the inputs and the seed.
    more, _ = nearest_classes(x, 20, search="clustered", num_probes=32, seed=3)
    recall_more = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(more.tolist(), expected.tolist(), strict=False)])
    assert recall_more >= recall
    again, _ = nearest_classes(x.copy(), 20, search="clustered", num_probes=8, seed=3)
    assert np.array_equal(again, indices)


def test_clustered_search_with_few_rows_per_cluster_still_gives_m_neighbours():
    x = low_dimensional(50, 8, 4)
    indices, _ = nearest_classes(x, 30, search="clustered", num_probes=1)
    assert indices.shape == (50, 30)
    assert all(len(set(row) - {i}) == 30 for i, row in enumerate(indices.tolist()))


def test_auto_is_exact_for_small_inputs():
    x = low_dimensional(500, 8, 5)
    assert np.array_equal(nearest_classes(x, 5)[0], nearest_classes(x, 5, search="exact")[0])


def test_centroids_are_class_means_in_label_order():
    rng = np.random.default_rng(6)
    labels = rng.choice([7, -2, 30], size=200)
    x = rng.standard_normal((200, 4))
    values, centroids = class_centroids(x, labels)
    assert values.tolist() == [-2, 7, 30]
    for value, centroid in zip(values, centroids, strict=True):
        np.testing.assert_allclose(centroid, x[labels == value].mean(axis=0))
    _, directions = class_centroids(x * rng.uniform(1, 9, (200, 1)), labels, distance="cosine")
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(directions[0], unit[labels == -2].mean(axis=0), rtol=1e-6)


def test_the_table_feeds_the_sampler():
    rng = np.random.default_rng(7)
    labels = np.repeat(np.arange(40) * 3, rng.integers(2, 9, 40))
    centres = rng.standard_normal((40, 8)) * 5
    embeddings = centres[labels // 3] + rng.standard_normal((len(labels), 8))
    table = class_neighbor_table(embeddings, labels, 6)
    assert table.shape == (40, 6)
    assert table.dtype == np.int64
    expected, _ = brute_force(centres, 6)
    # Each class's nearest centroids, in labels (class i is label 3 i).
    overlap = np.mean([len(set(a) & set(b)) / 6 for a, b in zip((table // 3).tolist(), expected.tolist(), strict=False)])
    assert overlap > 0.8
    sampler = BalancedBatchSampler(labels, 4, 2, safe_triplet=True, seed=0, class_neighbors=table)
    assert sampler.hard_batch_stats(0).hard_batches == len(sampler)
    assert sampler.class_neighbors_for().tolist() == table.tolist()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: nearest_classes(np.zeros((5, 3)), 5), ValueError,
         "`num_neighbors` must be at most the number of classes minus one (4)"),
        (lambda: nearest_classes(np.zeros((5, 3)), 0), ValueError, "`num_neighbors` must be an integer >= 1"),
        (lambda: nearest_classes(np.zeros((5, 3)), 2, search="fast"), ValueError,
         "`search` must be one of ('auto', 'exact', 'clustered')"),
        (lambda: nearest_classes(np.zeros((5, 3)), 2, distance="l1"), ValueError, "`distance` must be one of"),
        (lambda: nearest_classes(np.zeros((5, 3)), 2, num_probes=0), ValueError, "`num_probes` must be"),
        (lambda: nearest_classes(np.full((5, 3), np.nan), 2), ValueError,
         "`centroids` must be finite: 5 of its 5 rows hold NaN or inf"),
        (lambda: nearest_classes(np.zeros(5), 2), ValueError, "`centroids` must be a 2-D array"),
        (lambda: nearest_classes(np.array([["a"]]), 1), TypeError, "`centroids` must hold real numbers"),
        (lambda: class_centroids(np.zeros((5, 3)), [1, 2]), ValueError,
         "`labels` must have one label per row of `embeddings`: expected 5 labels. Received: 2"),
        (lambda: class_centroids(np.zeros((2, 3)), [1.5, 2.5]), TypeError, "`labels` must hold integers"),
        (lambda: class_neighbor_table(np.zeros((4, 3)), [0, 0, 1, 1], 2), ValueError,
         "at most the number of classes minus one (1)"),
    ],
)
def test_bad_arguments(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


def test_auto_switches_to_the_clustered_search_beyond_the_exact_limit(monkeypatch):
    from balanced_sampler import neighbors

    assert neighbors.EXACT_UP_TO == 20_000
    x = low_dimensional(400, 8, 8)
    monkeypatch.setattr(neighbors, "EXACT_UP_TO", 399)
    auto, _ = neighbors.nearest_classes(x, 5)
    clustered, _ = neighbors.nearest_classes(x, 5, search="clustered")
    assert np.array_equal(auto, clustered)
    monkeypatch.setattr(neighbors, "EXACT_UP_TO", 400)
    assert np.array_equal(neighbors.nearest_classes(x, 5)[0], brute_force(x, 5)[0])
