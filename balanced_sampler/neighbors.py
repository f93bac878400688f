"""Class-neighbour tables from embeddings: each class's nearest classes, for hard batches.

numpy only. `class_neighbor_table(embeddings, labels, M)` averages the
embeddings of every class (its centroid) and lists, for every class, the M
classes whose centroids are nearest: the table `BalancedBatchSampler` takes as
`class_neighbors` (rows in increasing label order, labels inside), e.g. from a
callback that embeds the training images every few epochs and calls
`sampler.set_class_neighbors(table)`.

Two searches (`nearest_classes`):

- `"exact"`: `balanced_sampler.retrieval.nearest_neighbors`, exact top-M in
  blocks of bounded memory (never a C x C matrix). Its time grows as C^2
  (about 5 s for 20,000 classes of 128 dimensions on a 2-core machine).
- `"clustered"`: an inverted-file search. The centroids are grouped by a
  seeded k-means into about sqrt(C) clusters; each class's neighbours are
  the exact nearest among the classes of the `num_probes` clusters whose
  centres are nearest to it. Time grows as C^1.5 * num_probes; it is
  approximate: a true neighbour in a cluster not probed is missed (the share
  found is measured in `benchmarks/bench_neighbors.py`).

`search="auto"` takes the exact search up to `EXACT_UP_TO` classes and the
clustered one beyond. Distances are euclidean, or cosine (1 - cosine
similarity, on the directions of the centroids).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from balanced_sampler.checks import as_labels, check_int
from balanced_sampler.retrieval import as_embeddings, check_distance, nearest_neighbors, unit_rows

Floats = npt.NDArray[np.floating[Any]]
I64 = npt.NDArray[np.int64]

SEARCHES = ("auto", "exact", "clustered")
"""The accepted values of `search`."""

EXACT_UP_TO = 20_000
"""`search="auto"` searches exactly up to this many classes."""

DEFAULT_PROBES = 8
"""Clusters searched per class by default with `search="clustered"`."""

_KMEANS_ITERATIONS = 8
_KMEANS_SAMPLE = 32
"""k-means learns its centres from this many centroids per cluster (a seeded sample)."""
_CENTROID_COLUMNS = 16
_BLOCK_ELEMENTS = 1 << 22
"""Scores computed at once when assigning rows to centres (16 MiB in float32)."""


def class_centroids(
    embeddings: npt.ArrayLike, labels: npt.ArrayLike, *, distance: str = "euclidean"
) -> tuple[I64, Floats]:
    """Returns the distinct labels and the centroid of every class.

    Args:
        embeddings: Array `(N, D)`, one embedding per sample.
        labels: The N integer class labels (as the sampler takes them).
        distance: `"euclidean"` (the mean embedding) or `"cosine"` (the mean
            of the unit-length embeddings: the direction the class points
            to).

    Returns:
        `(label_values, centroids)`: the distinct labels in increasing order
        and a `(C, D)` array with the centroid of each (float32 for float32
        or float16 input, else float64).

    Raises:
        TypeError: If the embeddings are not numbers or the labels not integers.
        ValueError: If the shapes disagree or an embedding is NaN or inf.
    """
    distance = check_distance(distance)
    vectors = as_embeddings(embeddings, "embeddings")
    label_array = as_labels(labels)
    if len(label_array) != len(vectors):
        raise ValueError(
            "`labels` must have one label per row of `embeddings`: expected "
            f"{len(vectors)} labels. Received: {len(label_array)} labels"
        )
    if distance == "cosine":
        vectors = unit_rows(vectors)
    order = np.argsort(label_array, kind="stable")
    ordered = label_array[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    counts = np.diff(np.r_[starts, len(ordered)])[:, None]
    centroids: Floats = np.empty((len(starts), vectors.shape[1]), dtype=vectors.dtype)
    # Sums in float64, a few dimensions at a time (no (N, D) float64 copy).
    for first in range(0, vectors.shape[1], _CENTROID_COLUMNS):
        columns = slice(first, first + _CENTROID_COLUMNS)
        sums = np.add.reduceat(vectors[order, columns], starts, axis=0, dtype=np.float64)
        centroids[:, columns] = sums / counts
    return ordered[starts], centroids


def nearest_classes(
    centroids: npt.ArrayLike,
    num_neighbors: int,
    *,
    distance: str = "euclidean",
    search: str = "auto",
    num_probes: int = DEFAULT_PROBES,
    seed: int = 0,
) -> tuple[I64, Floats]:
    """Returns every row's nearest other rows (class indices), nearest first.

    Args:
        centroids: Array `(C, D)`, one row per class.
        num_neighbors: M, neighbours per class: 1 <= M <= C - 1.
        distance: `"euclidean"` or `"cosine"` (1 - cosine similarity).
        search: `"exact"`, `"clustered"` (approximate, see the module
            docstring) or `"auto"` (exact up to `EXACT_UP_TO` classes).
        num_probes: Clustered search: clusters searched per class (more:
            slower and closer to exact).
        seed: Clustered search: the seed of its k-means (the result is a
            pure function of the centroids and the settings).

    Returns:
        `(indices, distances)`, both `(C, M)`: row c holds the indices of the
        M rows nearest to row c (never c itself) and their distances.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If a value is not allowed (e.g. M >= C, an unknown
            `search`, NaN in the centroids).
    """
    distance = check_distance(distance)
    if not isinstance(search, str) or search not in SEARCHES:
        raise ValueError(f"`search` must be one of {SEARCHES}. Received: search={search!r}")
    probes = check_int("num_probes", num_probes, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    vectors = as_embeddings(centroids, "centroids")
    c = len(vectors)
    m = check_int("num_neighbors", num_neighbors, minimum=1)
    if m > c - 1:
        raise ValueError(
            f"`num_neighbors` must be at most the number of classes minus one ({c - 1}). "
            f"Received: num_neighbors={num_neighbors!r}"
        )
    if search == "exact" or (search == "auto" and c <= EXACT_UP_TO):
        indices, distances = nearest_neighbors(vectors, num_neighbors=m, distance=distance)
        return indices, distances
    if distance == "cosine":
        vectors = unit_rows(vectors)
    indices, squared = _clustered_search(vectors, m, probes, seed)
    found: Floats = squared / 2.0 if distance == "cosine" else np.sqrt(squared)
    return indices, found


def class_neighbor_table(
    embeddings: npt.ArrayLike,
    labels: npt.ArrayLike,
    num_neighbors: int,
    *,
    distance: str = "euclidean",
    search: str = "auto",
    num_probes: int = DEFAULT_PROBES,
    seed: int = 0,
) -> I64:
    """Returns each class's nearest classes, as `BalancedBatchSampler(class_neighbors=...)` takes.

    ```python
    embeddings = model.predict(images)        # one row per training sample
    table = class_neighbor_table(embeddings, labels, num_neighbors=4 * P)
    sampler.set_class_neighbors(table)        # from the next epoch on
    ```

    Args:
        embeddings: Array `(N, D)`, one embedding per sample (e.g. every
            training image, or a sample of each class).
        labels: The N integer labels; every class of the sampler must be
            present (the table has a row per distinct label).
        num_neighbors: M, neighbours per class (at most C - 1).
        distance: `"euclidean"` or `"cosine"` (see `class_centroids`).
        search: `"auto"`, `"exact"` or `"clustered"` (see `nearest_classes`).
        num_probes: Clustered search: clusters searched per class.
        seed: Clustered search: its seed.

    Returns:
        An int64 array `(C, M)`: row i lists, nearest first, the labels whose
        centroids are nearest to the i-th distinct label's (labels in
        increasing order).

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If a value is not allowed (see `class_centroids` and
            `nearest_classes`).
    """
    label_values, centroids = class_centroids(embeddings, labels, distance=distance)
    indices, _ = nearest_classes(
        centroids,
        num_neighbors,
        distance=distance,
        search=search,
        num_probes=num_probes,
        seed=seed,
    )
    table: I64 = label_values[indices]
    return table


def _nearest_centres(vectors: Floats, centres: Floats, count: int) -> I64:
    """The `count` nearest centres of every row (by squared euclidean distance), nearest first."""
    squared = np.einsum("ij,ij->i", centres, centres)
    out = np.empty((len(vectors), count), dtype=np.int64)
    block = max(1, _BLOCK_ELEMENTS // max(len(centres), 1))
    for start in range(0, len(vectors), block):
        scores = squared[None, :] - 2.0 * (vectors[start : start + block] @ centres.T)
        out[start : start + block] = _smallest(scores, count)
    return out


def _smallest(scores: Floats, count: int, *, ordered: bool = True) -> I64:
    """Column indices of every row's `count` smallest scores (smallest first if `ordered`)."""
    if count < scores.shape[1]:
        part = np.argpartition(scores, count - 1, axis=1)[:, :count]
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    if not ordered:
        return part
    values = np.take_along_axis(scores, part, axis=1)
    result: I64 = np.take_along_axis(part, np.argsort(values, axis=1, kind="stable"), axis=1)
    return result


def _kmeans(vectors: Floats, k: int, seed: int) -> Floats:
    """Returns `k` centres from Lloyd's iterations on a seeded sample of the rows."""
    rng = np.random.default_rng(seed)
    size = min(len(vectors), _KMEANS_SAMPLE * k)
    sample = vectors[np.sort(rng.permutation(len(vectors))[:size])]
    centres: Floats = sample[rng.permutation(size)[:k]].copy()
    for _ in range(_KMEANS_ITERATIONS):
        assigned = _nearest_centres(sample, centres, 1)[:, 0]
        order = np.argsort(assigned, kind="stable")
        owners = assigned[order]
        starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
        sums = np.add.reduceat(sample[order], starts, axis=0, dtype=np.float64)
        counts = np.diff(np.r_[starts, size])
        # A centre that draws no row keeps its place.
        centres[owners[starts]] = (sums / counts[:, None]).astype(centres.dtype)
    return centres


def _clustered_search(vectors: Floats, m: int, probes: int, seed: int) -> tuple[I64, Floats]:
    """Inverted-file search: every row's m nearest among the rows of its nearest clusters.

    Returns:
        `(indices, squared distances)`, both `(C, m)`, nearest first.
    """
    c = len(vectors)
    k = max(1, min(c, round(np.sqrt(c))))
    probes = min(probes, k)
    centres = _kmeans(vectors, k, seed)
    nearest = _nearest_centres(vectors, centres, probes)
    home = nearest[:, 0]
    members_order = np.argsort(home, kind="stable")
    member_starts = np.searchsorted(home[members_order], np.arange(k + 1))
    probe_order = np.argsort(nearest.reshape(-1), kind="stable")
    probers = probe_order // probes  # the rows that search each cluster, cluster by cluster
    prober_starts = np.searchsorted(nearest.reshape(-1)[probe_order], np.arange(k + 1))
    squared = np.einsum("ij,ij->i", vectors, vectors)
    # Scores |y|^2 - 2 x.y from one product with an extra column (a row's own
    # |x|^2 does not change its ranking: it is added at the end).
    left = np.concatenate([vectors, np.ones((c, 1), dtype=vectors.dtype)], axis=1)
    right = np.concatenate([-2.0 * vectors, squared[:, None]], axis=1).astype(vectors.dtype)
    # The m best so far of every row; a row with fewer candidates than m keeps
    # infinite scores (searched exactly below). Indices in int32 when they fit:
    # the merges move half the bytes.
    index_type = np.int32 if c <= np.iinfo(np.int32).max else np.int64
    best = np.full((c, m), np.inf, dtype=vectors.dtype)
    found_index = np.full((c, m), -1, dtype=index_type)
    members_typed = members_order.astype(index_type)
    for cluster in range(k):
        low, high = member_starts[cluster], member_starts[cluster + 1]
        rows = probers[prober_starts[cluster] : prober_starts[cluster + 1]]
        if high == low or len(rows) == 0:
            continue
        members = members_order[low:high]
        width = m + len(members)
        # Each row's m best so far, then its scores against the cluster's members.
        scores = np.empty((len(rows), width), dtype=vectors.dtype)
        scores[:, :m] = best[rows]
        block = scores[:, m:]
        np.matmul(left[rows], right[members].T, out=block)
        # Every member probes its own cluster: rows and members are both in
        # increasing order, so each member's own row is found by a search.
        block[np.searchsorted(rows, members), np.arange(len(members))] = np.inf
        candidates = np.empty((len(rows), width), dtype=index_type)
        candidates[:, :m] = found_index[rows]
        candidates[:, m:] = members_typed[low:high]
        keep = np.argpartition(scores, m - 1, axis=1)[:, :m]
        flat = keep + (np.arange(len(rows)) * width)[:, None]  # one gather per array
        best[rows] = scores.ravel()[flat]
        found_index[rows] = candidates.ravel()[flat]
    best_index: I64 = found_index.astype(np.int64)
    order = np.lexsort((best_index, best), axis=1)  # nearest first; ties: lower index
    best = np.take_along_axis(best, order, axis=1) + squared[:, None]
    best_index = np.take_along_axis(best_index, order, axis=1)
    missing = ~np.isfinite(best).all(axis=1)
    if missing.any():
        # Rows whose probed clusters hold fewer than m others: search them exactly.
        rows = np.flatnonzero(missing)
        exact, _ = nearest_neighbors(vectors[rows], vectors, m + 1)
        for i, row in enumerate(rows.tolist()):
            found = exact[i][exact[i] != row][:m]
            best_index[row] = found
            difference = vectors[found] - vectors[row]
            best[row] = np.einsum("ij,ij->i", difference, difference)
    return best_index, np.maximum(best, 0.0)
