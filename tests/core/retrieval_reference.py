"""An independent, deliberately plain reference for the retrieval metrics (tests only).

One query at a time: float64 distances from differences (not the expanded matrix product),
a Python sort, and the textbook definitions. Shared by the core tests and the PyTorch tests
(which compare against pytorch-metric-learning's AccuracyCalculator).
"""

from __future__ import annotations

import numpy as np


def clustered_embeddings(seed, *, num_classes=25, dim=16, max_size=40, spread=1.0, integer=False):
    """Random clustered embeddings with class sizes drawn from 1..max_size.

    With `integer=True` (use dim <= 8) the coordinates are integers small enough that every
    squared distance is computed exactly in float32 (below 2**24), so rankings and ties agree
    between implementations.
    """
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_size + 1, size=num_classes)
    labels = np.repeat(np.arange(num_classes), sizes)
    rng.shuffle(labels)
    if integer:
        centres = rng.integers(-250, 251, size=(num_classes, dim))
        points = centres[labels] + rng.integers(-170, 171, size=(len(labels), dim))
        return points.astype(np.float32), labels
    centres = rng.normal(size=(num_classes, dim))
    points = centres[labels] + spread * rng.normal(size=(len(labels), dim))
    return points, labels


def _distances(query, references, distance):
    if distance == "euclidean":
        return np.sqrt(((references - query) ** 2).sum(axis=1))
    norms = np.maximum(np.linalg.norm(references, axis=1), 1e-12)
    return 1.0 - (references @ query) / (norms * max(np.linalg.norm(query), 1e-12))


def _rankings(embeddings, labels, distance, query_embeddings, query_labels):
    """Yields (sorted distances, relevance in that order, R) for every query, ties unsorted."""
    references = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    one_set = query_embeddings is None
    queries = references if one_set else np.asarray(query_embeddings, dtype=np.float64)
    qlabels = labels if one_set else np.asarray(query_labels).reshape(-1)
    for i, query in enumerate(queries):
        dist = _distances(query, references, distance)
        relevant = labels == qlabels[i]
        keep = np.ones(len(references), dtype=bool)
        if one_set:
            keep[i] = False
        yield dist[keep], relevant[keep], int(relevant[keep].sum())


def reference_metrics(
    embeddings, labels, ks=(1, 2, 4, 8), distance="euclidean",
    query_embeddings=None, query_labels=None, ties="pessimistic",
):
    """The metrics by their definitions; ties ordered other-class-first ("pessimistic")
    or same-class-first ("optimistic")."""
    rows = []
    for dist, relevant, r in _rankings(embeddings, labels, distance, query_embeddings, query_labels):
        if r == 0:
            continue
        second = relevant if ties == "pessimistic" else ~relevant
        order = sorted(range(len(dist)), key=lambda j: (dist[j], bool(second[j])))
        seq = [bool(relevant[j]) for j in order]
        row = [float(any(seq[:k])) for k in ks]
        row.append(float(seq[0]))
        row.append(sum(seq[:r]) / r)
        hits = 0
        total = 0.0
        for i in range(r):
            if seq[i]:
                hits += 1
                total += hits / (i + 1)
        row.append(total / r)
        rows.append(row)
    means = np.mean(np.array(rows), axis=0)
    names = [f"recall@{k}" for k in ks] + ["precision@1", "r_precision", "map@r"]
    return dict(zip(names, means.tolist(), strict=True))


def smallest_mixed_gap(embeddings, labels, ks=(1, 2, 4, 8), distance="euclidean",
                       query_embeddings=None, query_labels=None):
    """The smallest distance gap between a same-class and an other-class reference that
    are neighbours in some query's measured ranking (its first max(K, R) + 1 places).

    Where this is 0 a tie decides the metrics; where it is tiny, rounding may.
    """
    smallest = np.inf
    for dist, relevant, r in _rankings(embeddings, labels, distance, query_embeddings, query_labels):
        if r == 0:
            continue
        order = np.argsort(dist, kind="stable")[: max(max(ks), r) + 1]
        d, rel = dist[order], relevant[order]
        differs = rel[1:] != rel[:-1]
        if differs.any():
            smallest = min(smallest, float(np.min(np.diff(d)[differs])))
    return smallest
