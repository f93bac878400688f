"""Retrieval metrics and k-NN (balanced_sampler.retrieval) against a plain reference."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from retrieval_reference import clustered_embeddings, reference_metrics, smallest_mixed_gap

from balanced_sampler.retrieval import nearest_neighbors, retrieval_metrics

KEYS = ["recall@1", "recall@2", "recall@4", "recall@8", "precision@1", "r_precision", "map@r"]


def assert_close(ours, expected, tol=1e-6):
    assert list(ours) == list(expected)
    for key in expected:
        assert abs(ours[key] - expected[key]) <= tol, (key, ours[key], expected[key])


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("seed", range(4))
def test_equals_reference_on_clustered_embeddings(seed, distance):
    x, y = clustered_embeddings(seed, spread=1.3)
    assert y.size > 100
    assert np.bincount(y).min() >= 1
    # No near-tie between a same-class and an other-class neighbour: the ranking is exact.
    assert smallest_mixed_gap(x, y, distance=distance) > 1e-9
    expected = reference_metrics(x, y, distance=distance)
    ours = retrieval_metrics(x, y, distance=distance)
    assert list(ours) == KEYS
    assert_close(ours, expected)
    assert 0.05 < ours["map@r"] < 0.95  # neither trivial nor hopeless


@pytest.mark.parametrize("chunk_size", [1, 7, 64, None])
def test_chunk_size_does_not_change_the_result(chunk_size):
    x, y = clustered_embeddings(11, spread=1.3)
    assert_close(retrieval_metrics(x, y, chunk_size=chunk_size), reference_metrics(x, y), 1e-12)


def test_large_set_uses_the_sampled_bound_and_stays_exact():
    # Enough references that each block bounds its m-th score from a sample.
    x, y = clustered_embeddings(3, num_classes=150, max_size=20, spread=1.5)
    assert len(y) > 8 * 4 * 20
    assert smallest_mixed_gap(x, y) > 1e-9
    assert_close(retrieval_metrics(x, y, chunk_size=50), reference_metrics(x, y))


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_separate_queries(distance):
    x, y = clustered_embeddings(5, spread=1.3)
    qx, qy = clustered_embeddings(5, spread=1.3, num_classes=30)  # 5 query classes unknown
    qx = qx[: len(qx) // 2]
    qy = qy[: len(qy) // 2]
    expected = reference_metrics(x, y, distance=distance, query_embeddings=qx, query_labels=qy)
    ours = retrieval_metrics(x, y, distance=distance, query_embeddings=qx, query_labels=qy)
    assert_close(ours, expected)


def test_queries_equal_to_the_references_are_not_excluded():
    x, y = clustered_embeddings(2)
    ours = retrieval_metrics(x, y, query_embeddings=x, query_labels=y)
    # Every query finds itself first (distance 0) unless an other-class duplicate ties.
    assert ours["recall@1"] == 1.0
    assert_close(ours, reference_metrics(x, y, query_embeddings=x, query_labels=y))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    n=st.integers(2, 60),
    classes=st.integers(1, 6),
    dim=st.integers(1, 3),
    span=st.integers(0, 3),
)
def test_ties_rank_other_classes_first(seed, n, classes, dim, span):
    # Tiny integer coordinates: many exact ties, computed exactly in float32 and float64.
    rng = np.random.default_rng(seed)
    x = rng.integers(-span, span + 1, size=(n, dim)).astype(np.float32)
    y = rng.integers(0, classes, size=n)
    if np.bincount(y).max() < 2:
        with pytest.raises(ValueError, match="No query has another reference"):
            retrieval_metrics(x, y, k=1)
        return
    ks = tuple(k for k in (1, 2, 4, 8) if k <= n - 1)
    expected = reference_metrics(x, y, ks)
    assert_close(retrieval_metrics(x, y, k=ks), expected, 1e-12)
    assert_close(retrieval_metrics(x.astype(np.float64), y, k=ks), expected, 1e-12)


def test_a_collapsed_embedding_scores_zero():
    y = np.repeat([0, 1, 2], 5)
    x = np.ones((15, 4), dtype=np.float32)
    ours = retrieval_metrics(x, y, k=(1, 10, 11))
    assert ours["recall@1"] == 0.0
    assert ours["map@r"] == 0.0
    assert ours["r_precision"] == 0.0
    # All 14 others tie: the 10 of other classes come first.
    assert ours["recall@10"] == 0.0
    assert ours["recall@11"] == 1.0


def test_a_class_of_one_is_left_out():
    x, y = clustered_embeddings(4, spread=1.3)
    y = y.copy()
    y[0] = 999  # a class of one sample: it queries nothing and still is a reference
    ours = retrieval_metrics(x, y)
    assert_close(ours, reference_metrics(x, y))
    kept = np.flatnonzero(np.bincount(y)[y] > 1)
    assert len(kept) == len(y) - 1


def test_all_one_class_is_perfect():
    x = np.random.default_rng(0).normal(size=(30, 5))
    ours = retrieval_metrics(x, np.zeros(30, dtype=int))
    assert all(value == 1.0 for value in ours.values())


def test_float16_is_computed_in_float32():
    x, y = clustered_embeddings(6, integer=True, dim=8)
    x16 = (x / 16).astype(np.float16)  # exact: small integers / 16
    assert_close(retrieval_metrics(x16, y), retrieval_metrics(x16.astype(np.float32), y), 0)
    assert_close(retrieval_metrics(x16, y), reference_metrics(x16, y))


def test_label_shapes_and_types():
    x, y = clustered_embeddings(7, spread=1.3)
    base = retrieval_metrics(x, y)
    assert retrieval_metrics(x, y[:, None]) == base
    assert retrieval_metrics(x, y.astype(np.float32)) == base
    assert retrieval_metrics(x, np.array([f"class {v}" for v in y])) == base
    assert retrieval_metrics(x.tolist(), y.tolist()) == base


def test_integer_embeddings_and_single_k():
    x, y = clustered_embeddings(8, integer=True, dim=8)
    ours = retrieval_metrics(x.astype(np.int64), y, k=3)
    assert list(ours) == ["recall@3", "precision@1", "r_precision", "map@r"]
    assert_close(ours, reference_metrics(x, y, (3,)))


def test_zero_vectors_have_cosine_similarity_zero():
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 0.0], [0.0, 1.0]])
    y = np.array([0, 0, 1, 1])
    assert_close(retrieval_metrics(x, y, k=1, distance="cosine"),
                 reference_metrics(x, y, (1,), distance="cosine"))


def test_blocks_bound_memory():
    rng = np.random.default_rng(0)
    n = 6000
    x = rng.normal(size=(n, 8)).astype(np.float32)
    y = rng.integers(0, 300, size=n)
    tracemalloc.start()
    retrieval_metrics(x, y)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    full_matrix = n * n * 4
    assert peak < full_matrix / 4, peak


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"embeddings": np.zeros(5)}, ValueError, r"2-D array .* Received: embeddings of shape \(5,\)"),
        ({"embeddings": np.zeros((0, 3))}, ValueError, "at least one row"),
        ({"embeddings": np.zeros((4, 2), dtype=complex)}, TypeError, "real numbers"),
        ({"labels": [0, 0, 1]}, ValueError, r"one label per row of `embeddings`: expected 4 labels. Received: 3"),
        ({"labels": np.eye(4)}, ValueError, r"shape \(N,\) or \(N, 1\) .*one-hot"),
        ({"labels": [0, 0, 1, np.nan]}, ValueError, "NaN"),
        ({"k": 0}, ValueError, "k` must be an int >= 1"),
        ({"k": (1, 2, 2)}, ValueError, "distinct"),
        ({"k": ()}, ValueError, "at least one value"),
        ({"k": 1.5}, TypeError, "int >= 1"),
        ({"k": 4}, ValueError, r"must not exceed the number of references each query ranks \(3"),
        ({"distance": "manhattan"}, ValueError, "distance` must be one of"),
        ({"chunk_size": 0}, ValueError, "chunk_size"),
        ({"query_embeddings": np.zeros((2, 2))}, ValueError, "both `query_embeddings` and `query_labels`"),
        ({"query_embeddings": np.zeros((2, 3)), "query_labels": [0, 1]}, ValueError, "same dimension"),
        ({"query_embeddings": np.zeros((2, 2)), "query_labels": ["a", "b"]}, TypeError, "both be numbers or both be strings"),
        ({"labels": [0, 1, 2, 3]}, ValueError, "No query has another reference of its class"),
    ],
)
def test_bad_input_is_named(kwargs, error, match):
    args = {"embeddings": np.zeros((4, 2)), "labels": [0, 0, 1, 1], "k": 1}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        retrieval_metrics(args.pop("embeddings"), args.pop("labels"), **args)


def test_nan_embedding_is_named():
    x = np.zeros((5, 3), dtype=np.float32)
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"1 of its 5 rows hold NaN or inf \(the first is row 3\)"):
        retrieval_metrics(x, [0, 0, 1, 1, 1], k=1)


def test_overflowing_float32_is_an_error():
    x = np.full((4, 2), 3e38, dtype=np.float32)
    with pytest.raises(ValueError, match="too large"):
        retrieval_metrics(x, [0, 0, 1, 1], k=1)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_nearest_neighbors_match_a_brute_force_sort(distance):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 6))
    refs = rng.normal(size=(500, 6))
    for queries, references in ((x, refs), (x, None)):
        indices, distances = nearest_neighbors(queries, references, 9, distance=distance, chunk_size=37)
        base = x if references is None else references
        for i, query in enumerate(queries):
            if distance == "euclidean":
                dist = np.linalg.norm(base - query, axis=1)
            else:
                dist = 1 - base @ query / (np.linalg.norm(base, axis=1) * np.linalg.norm(query))
            if references is None:
                dist[i] = np.inf
            expected = np.argsort(dist, kind="stable")[:9]
            np.testing.assert_array_equal(indices[i], expected)
            np.testing.assert_allclose(distances[i], dist[expected], rtol=1e-9, atol=1e-9)


def test_nearest_neighbors_ties_in_index_order():
    x = np.array([[0.0], [1.0], [-1.0], [1.0], [2.0]])
    indices, distances = nearest_neighbors(x, None, 3)
    np.testing.assert_array_equal(indices[0], [1, 2, 3])
    np.testing.assert_array_equal(indices[1], [3, 0, 4])  # 3 is a duplicate of 1
    np.testing.assert_array_equal(distances[1], [0.0, 1.0, 1.0])


def test_nearest_neighbors_bad_count():
    with pytest.raises(ValueError, match=r"num_neighbors` must be at most the number of references \(2\)"):
        nearest_neighbors(np.zeros((3, 2)), None, 3)
