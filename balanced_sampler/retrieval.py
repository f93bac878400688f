"""Retrieval metrics of embeddings (Recall@K, precision@1, R-precision, MAP@R) and k-NN.

numpy only, like the rest of `balanced_sampler`: the numbers do not depend on the framework
that made the embeddings. `kerasgen_tf.evaluation` re-exports `retrieval_metrics` and adds a
Keras callback around it.

Conventions are those of Musgrave, Belongie and Lim, "A Metric Learning Reality Check" (ECCV
2020), as in pytorch-metric-learning's `AccuracyCalculator`:

- With one set of embeddings, every embedding is a query that ranks all the others (never
  itself). With separate queries (`query_embeddings`), each query ranks all the references.
- R is the number of references of the query's class (with one set: the others of its
  class). Queries with R = 0 are left out of every metric.
- Recall@K: the fraction of queries with at least one reference of their class among their
  K nearest. Precision@1 is the fraction whose nearest reference has their class (the same
  number as Recall@1). R-precision: the fraction of the R nearest that have the query's
  class. MAP@R: the mean over the first R positions of precision@i at the positions that
  hold the query's class, divided by R (1 only if the R nearest are exactly the R
  references of the class).
- Every metric is the mean over the queries (not over classes).

Ties: distances are computed in the embeddings' precision (float16 and integers are
computed in float32 and float64) and two references at exactly the same computed distance
from a query are ranked with the one of another class first. The metrics therefore never
depend on the order of the data, and an embedding that maps everything to one point scores
0 rather than whatever the order would give. (`AccuracyCalculator` breaks ties however
faiss or `torch.topk` happen to; the values agree whenever no tie separates a reference of
the query's class from one of another.)

Memory: queries are ranked in blocks of `chunk_size` rows: about `chunk_size * N * (b + 1)`
bytes for N references computed in b-byte floats, never an N x N matrix. The time is one
matrix product of the queries with the references plus a linear pass over each block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from balanced_sampler.checks import check_int, is_int

__all__ = [
    "DEFAULT_K",
    "DISTANCES",
    "as_embeddings",
    "check_distance",
    "check_k",
    "check_retrieval_labels",
    "nearest_neighbors",
    "retrieval_metrics",
    "unit_rows",
]

DISTANCES = ("euclidean", "cosine")
"""The accepted values of `distance`."""

DEFAULT_K = (1, 2, 4, 8)
"""The default K of Recall@K."""

_BLOCK_ELEMENTS = 1 << 22
"""Query-reference scores computed at once by default (16 MiB in float32)."""

_SAMPLE_STRIDE = 8
"""Every how many references one is sampled to bound a query's m-th nearest score."""

_COSINE_EPS = 1e-12
"""Norms are floored here before dividing, as `torch.nn.functional.normalize` does."""

Floats = npt.NDArray[np.floating[Any]]
Ints = npt.NDArray[np.int64]


def check_k(k: object) -> tuple[int, ...]:
    """Checks the K values of Recall@K.

    Args:
        k: An int >= 1 or a non-empty sequence of distinct ints >= 1.

    Returns:
        The K values as a tuple, in the order given.

    Raises:
        TypeError: If `k` is not an int or a sequence of ints.
        ValueError: If `k` is empty, has a value below 1 or a value twice.
    """
    if is_int(k):
        values: tuple[object, ...] = (k,)
    elif isinstance(k, Sequence) and not isinstance(k, (str, bytes)):
        values = tuple(k)
    elif isinstance(k, np.ndarray) and k.ndim == 1:
        values = tuple(k.tolist())
    else:
        raise TypeError(
            "`k` must be an int >= 1 or a sequence of ints >= 1 (the K of Recall@K). "
            f"Received: k={k!r} of type {type(k).__name__}"
        )
    if not values:
        raise ValueError("`k` must hold at least one value. Received: k=()")
    for value in values:
        if not is_int(value) or int(value) < 1:
            raise ValueError(f"Every value of `k` must be an int >= 1. Received: k={k!r}")
    ks = tuple(int(value) for value in values)  # type: ignore[call-overload]
    if len(set(ks)) != len(ks):
        raise ValueError(f"The values of `k` must be distinct. Received: k={k!r}")
    return ks


def check_distance(distance: object) -> str:
    """Checks `distance`.

    Args:
        distance: `"euclidean"` or `"cosine"`.

    Returns:
        `distance`.

    Raises:
        ValueError: If `distance` is not one of `DISTANCES`.
    """
    if not isinstance(distance, str) or distance not in DISTANCES:
        raise ValueError(f"`distance` must be one of {DISTANCES}. Received: distance={distance!r}")
    return distance


def _check_chunk_size(chunk_size: object) -> int | None:
    return None if chunk_size is None else check_int("chunk_size", chunk_size, minimum=1)


def as_embeddings(value: object, name: str) -> Floats:
    """Checks and converts a matrix of vectors (embeddings, centroids), one per row.

    Args:
        value: The array-like to check.
        name: The argument's name, for the messages.

    Returns:
        A 2-D float32 or float64 array of finite values (float16 -> float32,
        ints -> float64).

    Raises:
        TypeError: If it does not hold real numbers.
        ValueError: If it is not 2-D with at least one row and one column,
            or holds NaN or inf.
    """
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise TypeError(
            f"`{name}` must hold real numbers (float or int). Received: {name} of dtype "
            f"{array.dtype}"
        )
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(
            f"`{name}` must be a 2-D array (rows, dimensions) with at least one row and one "
            f"column. Received: {name} of shape {array.shape}"
        )
    if array.dtype.kind in "iu" or array.dtype.itemsize > 8:
        array = array.astype(np.float64)
    elif array.dtype.itemsize < 4:
        array = array.astype(np.float32)
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"`{name}` must be finite: {len(bad)} of its {len(array)} rows hold NaN or inf "
            f"(the first is row {int(bad[0])})."
        )
    return array


def _as_labels(value: object, name: str, num_samples: int) -> npt.NDArray[Any]:
    """A 1-D array of one label per sample, from shape (N,) or (N, 1)."""
    labels = np.asarray(value)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(
            f"`{name}` must hold one class label per sample, with shape (N,) or (N, 1) "
            f"(for one-hot labels pass their argmax). Received: {name} of shape {labels.shape}"
        )
    if labels.dtype.kind not in "iubfUS":
        raise TypeError(
            f"`{name}` must hold integers, floats or strings. Received: {name} of dtype "
            f"{labels.dtype}"
        )
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise ValueError(f"`{name}` must not hold NaN or inf.")
    if len(labels) != num_samples:
        embeddings = "embeddings" if name == "labels" else "query_embeddings"
        raise ValueError(
            f"`{name}` must have one label per row of `{embeddings}`: expected {num_samples} "
            f"labels. Received: {len(labels)} labels"
        )
    return labels


def _encode(
    reference_labels: npt.NDArray[Any], query_labels: npt.NDArray[Any]
) -> tuple[Ints, Ints]:
    """The labels of both sets as codes 0..C-1 of one common numbering."""
    text = [labels.dtype.kind in "US" for labels in (reference_labels, query_labels)]
    if text[0] != text[1]:
        raise TypeError(
            "`labels` and `query_labels` must both be numbers or both be strings. Received: "
            f"labels of dtype {reference_labels.dtype}, query_labels of dtype "
            f"{query_labels.dtype}"
        )
    _, codes = np.unique(np.concatenate([reference_labels, query_labels]), return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    return codes[: len(reference_labels)], codes[len(reference_labels) :]


class _Scorer:
    """Scores of queries against all references: smaller is nearer, ties exact.

    Euclidean: ||r||^2 - 2 q.r (the squared distance minus the query's constant ||q||^2),
    from one matrix product with an extra column. Cosine: -cos(q, r).
    """

    def __init__(self, references: Floats, queries: Floats, distance: str) -> None:
        dtype = np.result_type(references.dtype, queries.dtype)
        references = references.astype(dtype, copy=False)
        queries = queries.astype(dtype, copy=False)
        self.distance = distance
        if distance == "cosine":
            self.queries = unit_rows(queries)
            self.references = (-unit_rows(references)).T
        else:
            squared = np.einsum("ij,ij->i", references, references)
            query_squared = np.einsum("ij,ij->i", queries, queries)
            if not (np.isfinite(squared).all() and np.isfinite(query_squared).all()):
                raise ValueError(
                    f"The embeddings are too large for distances in {dtype}: squared norms "
                    "overflow. Scale them down or pass float64."
                )
            self.query_squared = query_squared
            self.references = np.concatenate([-2.0 * references, squared[:, None]], axis=1).T
            self.queries = np.concatenate([queries, np.ones((len(queries), 1), dtype)], axis=1)
        self.num_references = len(references)

    def scores(self, query_rows: Ints) -> Floats:
        """Scores (len(query_rows), num_references) of the given queries."""
        result: Floats = self.queries[query_rows] @ self.references
        return result

    def distances(self, query_rows: Ints, scores: Floats) -> Floats:
        """The true distances of `scores` (shape (len(query_rows), m))."""
        if self.distance == "cosine":
            result: Floats = 1.0 + scores
            return result
        squared = scores + self.query_squared[query_rows][:, None]
        result = np.sqrt(np.maximum(squared, 0.0))
        return result


def unit_rows(vectors: Floats) -> Floats:
    """Rows scaled to length 1 (zero rows stay zero), in the dtype of `vectors`.

    Args:
        vectors: A 2-D float array.

    Returns:
        The rows divided by their Euclidean norms (at least 1e-12).
    """
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
    result: Floats = vectors / np.maximum(norms, _COSINE_EPS)[:, None]
    return result


def _candidates(scores: Floats, m: int) -> tuple[Ints, Ints, Floats]:
    """Each row's m smallest scores and every score tied with its m-th, as flat triplets.

    A bound on the m-th smallest score of every row comes from a strided sample of the
    columns (the m-th smallest of any subset is at least the m-th smallest of the row);
    one pass keeps the scores under it, and the exact m-th smallest among those trims them.

    Returns:
        `(rows, columns, values)`, grouped by row, at least m entries per row.
    """
    num_rows, num_columns = scores.shape
    sampled = num_columns // _SAMPLE_STRIDE >= 4 * m + 1
    source = scores[:, ::_SAMPLE_STRIDE] if sampled else scores
    bound = np.partition(source, m - 1, axis=1)[:, m - 1]
    flat = np.flatnonzero(scores <= bound[:, None])
    rows, columns = np.divmod(flat, num_columns)
    values = scores.reshape(-1)[flat]
    if sampled:
        counts = np.bincount(rows, minlength=num_rows)
        starts = np.cumsum(counts) - counts
        padded = np.full((num_rows, int(counts.max())), np.inf, dtype=scores.dtype)
        padded[rows, np.arange(len(rows)) - starts[rows]] = values
        exact = np.partition(padded, m - 1, axis=1)[:, m - 1]
        keep = values <= exact[rows]
        rows, columns, values = rows[keep], columns[keep], values[keep]
    return rows, columns, values


def _first_m(
    rows: Ints, values: Floats, tie_key: npt.NDArray[Any], num_rows: int, m: int
) -> tuple[Ints, Ints, Ints]:
    """Orders each row's candidates by (value, tie_key) and keeps its first m.

    Returns:
        `(order, rows, positions)`: the kept candidates (indices into the inputs), their
        row and their rank 0..m-1 in it.
    """
    order = np.lexsort((tie_key, values, rows))
    sorted_rows = rows[order]
    counts = np.bincount(sorted_rows, minlength=num_rows)
    starts = np.cumsum(counts) - counts
    positions = np.arange(len(order)) - starts[sorted_rows]
    keep = positions < m
    return order[keep], sorted_rows[keep], positions[keep]


def _blocks(num_queries: int, num_references: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        return chunk_size
    return max(1, min(num_queries, _BLOCK_ELEMENTS // max(num_references, 1)))


def _prepare_sets(
    embeddings: object,
    labels: object,
    query_embeddings: object,
    query_labels: object,
) -> tuple[Floats, Floats, Ints, Ints, bool]:
    references = as_embeddings(embeddings, "embeddings")
    reference_labels = _as_labels(labels, "labels", len(references))
    if (query_embeddings is None) != (query_labels is None):
        raise ValueError(
            "Pass both `query_embeddings` and `query_labels`, or neither (then every "
            "embedding queries the others). Received: "
            f"query_embeddings={'None' if query_embeddings is None else 'an array'}, "
            f"query_labels={'None' if query_labels is None else 'an array'}"
        )
    if query_embeddings is None:
        codes, _ = _encode(reference_labels, reference_labels[:0])
        return references, references, codes, codes, True
    queries = as_embeddings(query_embeddings, "query_embeddings")
    if queries.shape[1] != references.shape[1]:
        raise ValueError(
            "`query_embeddings` and `embeddings` must have the same dimension. Received: "
            f"query_embeddings of shape {queries.shape}, embeddings of shape {references.shape}"
        )
    query_label_array = _as_labels(query_labels, "query_labels", len(queries))
    reference_codes, query_codes = _encode(reference_labels, query_label_array)
    return references, queries, reference_codes, query_codes, False


def _relevant_counts(reference_codes: Ints, query_codes: Ints, one_set: bool) -> Ints:
    """R of every query: the references of its class (itself not counted with one set)."""
    counts = np.bincount(reference_codes, minlength=int(query_codes.max(initial=0)) + 1)
    result: Ints = counts[query_codes] - int(one_set)
    return result


def _check_measurable(
    ks: tuple[int, ...], k: object, ranked: int, relevant: Ints, one_set: bool
) -> Ints:
    """The queries with R > 0, after checking K against the references a query ranks."""
    if max(ks) > ranked:
        raise ValueError(
            f"`k` must not exceed the number of references each query ranks ({ranked}: "
            f"{'the other embeddings' if one_set else 'all embeddings'}). Received: k={k!r}"
        )
    measured = np.flatnonzero(relevant > 0)
    if len(measured) == 0:
        raise ValueError(
            "No query has another reference of its class, so no retrieval metric is "
            f"defined ({len(relevant)} queries; every class has a single sample"
            f"{'' if one_set else ' or is missing from the references'})."
        )
    return measured


def check_retrieval_labels(labels: npt.ArrayLike, k: int | Sequence[int] = DEFAULT_K) -> None:
    """Checks, before any embedding is computed, that `retrieval_metrics` can measure a set.

    For one set of embeddings with these labels (each querying the others): the labels'
    shape and type, `k` (at most N - 1), and that some class has two samples or more.

    Args:
        labels: The N class labels, shape `(N,)` or `(N, 1)`.
        k: The K of Recall@K, as `retrieval_metrics` takes it.

    Raises:
        TypeError: If `labels` or `k` has the wrong type.
        ValueError: If a value is not allowed, or nothing could be measured.
    """
    ks = check_k(k)
    array = np.asarray(labels)
    label_vector = _as_labels(array, "labels", len(array))
    codes, _ = _encode(label_vector, label_vector[:0])
    _check_measurable(ks, k, len(codes) - 1, _relevant_counts(codes, codes, True), True)


def retrieval_metrics(
    embeddings: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    k: int | Sequence[int] = DEFAULT_K,
    distance: str = "euclidean",
    query_embeddings: npt.ArrayLike | None = None,
    query_labels: npt.ArrayLike | None = None,
    chunk_size: int | None = None,
) -> dict[str, float]:
    """Recall@K, precision@1, R-precision and MAP@R of embeddings, by exact k-NN.

    With one set, every embedding queries all the others; with `query_embeddings`, every
    query ranks all of `embeddings` (the references). Queries with no other reference of
    their class are left out. See the module docstring for the definitions and the rule
    for ties; the conventions are those of pytorch-metric-learning's `AccuracyCalculator`.

    ```python
    metrics = retrieval_metrics(model.predict(images), labels)
    metrics["recall@1"], metrics["map@r"]
    ```

    Args:
        embeddings: Array `(N, D)` of floats (float16 is computed in float32) or ints.
        labels: The N class labels, shape `(N,)` or `(N, 1)`: ints, floats or strings.
        k: The K of Recall@K: an int or a sequence of distinct ints >= 1, at most the
            number of references a query ranks (N - 1 with one set, N with queries).
            Defaults to `(1, 2, 4, 8)`.
        distance: `"euclidean"` (default) or `"cosine"` (1 - cosine similarity; a zero
            vector has similarity 0 to everything, as in PyTorch's `normalize`).
        query_embeddings: Optional array `(Q, D)` of queries, ranked against
            `embeddings`, none of them excluded.
        query_labels: The Q labels of `query_embeddings`; required with it.
        chunk_size: Queries ranked at once (memory: about `chunk_size * N * 5` bytes in
            float32). Default: as many as keep that block near 16 MiB.

    Returns:
        A dict of floats: `"recall@K"` for every K, then `"precision@1"`,
        `"r_precision"` and `"map@r"`.

    Raises:
        TypeError: If an argument has the wrong type (e.g. complex embeddings).
        ValueError: If shapes disagree, an embedding is NaN or inf, `k` is below 1 or
            above the number of references a query ranks, or no query has another
            reference of its class (every class a single sample), so nothing can be
            measured.
    """
    ks = check_k(k)
    distance = check_distance(distance)
    chunk = _check_chunk_size(chunk_size)
    references, queries, reference_codes, query_codes, one_set = _prepare_sets(
        embeddings, labels, query_embeddings, query_labels
    )
    relevant = _relevant_counts(reference_codes, query_codes, one_set)
    measured = _check_measurable(ks, k, len(references) - int(one_set), relevant, one_set)
    # Queries of similar R share a block, so its width max(K, R) wastes little.
    measured = measured[np.argsort(relevant[measured], kind="stable")]
    scorer = _Scorer(references, queries, distance)
    sums = np.zeros(len(ks) + 3)
    block = _blocks(len(measured), len(references), chunk)
    for start in range(0, len(measured), block):
        rows = measured[start : start + block]
        sums += _block_sums(scorer, rows, relevant[rows], query_codes, reference_codes, ks, one_set)
    means = sums / len(measured)
    names = [f"recall@{value}" for value in ks] + ["precision@1", "r_precision", "map@r"]
    return {name: float(mean) for name, mean in zip(names, means, strict=True)}


def _block_sums(
    scorer: _Scorer,
    rows: Ints,
    relevant: Ints,
    query_codes: Ints,
    reference_codes: Ints,
    ks: tuple[int, ...],
    one_set: bool,
) -> npt.NDArray[np.float64]:
    """Sums over one block of queries of every metric (recall@K..., P@1, RP, MAP@R)."""
    scores = scorer.scores(rows)
    if one_set:
        scores[np.arange(len(rows)), rows] = np.inf
    width = max(max(ks), int(relevant.max()))
    cand_rows, cand_columns, cand_values = _candidates(scores, width)
    same = reference_codes[cand_columns] == query_codes[rows][cand_rows]
    # Pessimistic ties: at equal scores, references of another class (False) come first.
    order, table_rows, positions = _first_m(cand_rows, cand_values, same, len(rows), width)
    table = np.zeros((len(rows), width), dtype=bool)
    table[table_rows, positions] = same[order]
    sums = [table[:, :value].any(axis=1).sum(dtype=np.float64) for value in ks]
    within_r = np.arange(width)[None, :] < relevant[:, None]
    hits = table & within_r
    found = np.cumsum(hits, axis=1)
    precision_at_hits = np.where(hits, found / np.arange(1, width + 1), 0.0)
    sums.append(table[:, 0].sum(dtype=np.float64))
    sums.append((found[:, -1] / relevant).sum())
    sums.append((precision_at_hits.sum(axis=1) / relevant).sum())
    return np.array(sums, dtype=np.float64)


def nearest_neighbors(
    queries: npt.ArrayLike,
    references: npt.ArrayLike | None = None,
    num_neighbors: int = 1,
    *,
    distance: str = "euclidean",
    chunk_size: int | None = None,
) -> tuple[Ints, Floats]:
    """The exact nearest references of every query, in blocks (bounded memory).

    ```python
    # Each class's 10 nearest classes, from class centroids:
    neighbors, _ = nearest_neighbors(centroids, num_neighbors=10)
    ```

    Args:
        queries: Array `(Q, D)` of floats or ints.
        references: Array `(N, D)`. If None, the queries are the references and a query
            never returns itself.
        num_neighbors: How many neighbours per query: an int >= 1, at most the number of
            references (N, or Q - 1 without `references`).
        distance: `"euclidean"` (default) or `"cosine"`.
        chunk_size: Queries handled at once (default: blocks of about 16 MiB).

    Returns:
        `(indices, distances)`, both `(Q, num_neighbors)`: the references' row indices,
        nearest first, and their distances (euclidean, or 1 - cosine similarity).
        References at the same computed distance come in index order.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If a shape is wrong, a value is NaN or inf, or `num_neighbors` is out
            of range.
    """
    distance = check_distance(distance)
    chunk = _check_chunk_size(chunk_size)
    query_array = as_embeddings(queries, "queries")
    one_set = references is None
    reference_array = query_array if one_set else as_embeddings(references, "references")
    if reference_array.shape[1] != query_array.shape[1]:
        raise ValueError(
            "`queries` and `references` must have the same dimension. Received: queries of "
            f"shape {query_array.shape}, references of shape {reference_array.shape}"
        )
    available = len(reference_array) - int(one_set)
    m = check_int("num_neighbors", num_neighbors, minimum=1)
    if m > available:
        raise ValueError(
            f"`num_neighbors` must be at most the number of references ({available}). "
            f"Received: num_neighbors={num_neighbors!r}"
        )
    scorer = _Scorer(reference_array, query_array, distance)
    indices = np.empty((len(query_array), m), dtype=np.int64)
    dtype = np.result_type(reference_array.dtype, query_array.dtype)
    distances = np.empty((len(query_array), m), dtype=dtype)
    block = _blocks(len(query_array), len(reference_array), chunk)
    for start in range(0, len(query_array), block):
        rows = np.arange(start, min(start + block, len(query_array)), dtype=np.int64)
        scores = scorer.scores(rows)
        if one_set:
            scores[np.arange(len(rows)), rows] = np.inf
        cand_rows, cand_columns, cand_values = _candidates(scores, m)
        order, table_rows, positions = _first_m(cand_rows, cand_values, cand_columns, len(rows), m)
        chosen = np.empty((len(rows), m), dtype=dtype)
        indices[rows[table_rows], positions] = cand_columns[order]
        chosen[table_rows, positions] = cand_values[order]
        distances[rows] = scorer.distances(rows, chosen)
    return indices, distances
