"""`retrieval_metrics` against pytorch-metric-learning's AccuracyCalculator itself.

`kerasgen_tf.evaluation.retrieval_metrics` is `balanced_sampler.retrieval.retrieval_metrics`
(numpy only), so it is tested here, where AccuracyCalculator is installed and TensorFlow is
not.

AccuracyCalculator computes in float32 and breaks distance ties however `torch.topk` does,
while ours ranks an other-class reference first at equal distances. So that both rank the
same way, the euclidean cases use integer coordinates (every distance is exact in float32)
without a tie between a same-class and an other-class neighbour, and the cosine cases use
float embeddings whose smallest such gap is far above float32 rounding. Where ties do decide,
our value is the lowest any tie order gives, and AccuracyCalculator's lies between it and
the highest.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytorch_metric_learning")
import torch
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import (
    AccuracyCalculator,
    try_getting_not_lone_labels,
)
from pytorch_metric_learning.utils.inference import CustomKNN

from balanced_sampler.retrieval import retrieval_metrics

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from retrieval_reference import (
    clustered_embeddings,
    reference_metrics,
    smallest_mixed_gap,
)

KS = (1, 2, 4, 8)


class WithRecall(AccuracyCalculator):
    """AccuracyCalculator plus Recall@2/4/8 from its own k-NN labels (Recall@1 = P@1)."""

    def _recall(self, k, knn_labels, query_labels, not_lone_query_mask, label_counts, **kwargs):
        knn_labels, query_labels = try_getting_not_lone_labels(
            knn_labels, query_labels, not_lone_query_mask
        )
        hits = (knn_labels[:, :k] == query_labels[:, None]).any(dim=1)
        return hits.double().mean().item()

    def calculate_recall_at_2(self, **kwargs):
        return self._recall(2, **kwargs)

    def calculate_recall_at_4(self, **kwargs):
        return self._recall(4, **kwargs)

    def calculate_recall_at_8(self, **kwargs):
        return self._recall(8, **kwargs)

    def requires_knn(self):
        return [*super().requires_knn(), "recall_at_2", "recall_at_4", "recall_at_8"]


def accuracy_calculator(x, y, distance, qx=None, qy=None):
    knn = CustomKNN(
        CosineSimilarity() if distance == "cosine" else LpDistance(normalize_embeddings=False)
    )
    max_class = int(np.unique(y, return_counts=True)[1].max())
    calc = WithRecall(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r",
                 "recall_at_2", "recall_at_4", "recall_at_8"),
        k=max(max_class, max(KS)),
        knn_func=knn,
        device=torch.device("cpu"),
    )
    if qx is None:
        out = calc.get_accuracy(x, y)
    else:
        out = calc.get_accuracy(qx, qy, x, y, ref_includes_query=False)
    return {
        "recall@1": out["precision_at_1"],
        "recall@2": out["recall_at_2"],
        "recall@4": out["recall_at_4"],
        "recall@8": out["recall_at_8"],
        "precision@1": out["precision_at_1"],
        "r_precision": out["r_precision"],
        "map@r": out["mean_average_precision_at_r"],
    }


def tie_free_seeds(count, distance, min_gap, **kwargs):
    """The first `count` seeds whose embeddings have no mixed tie closer than `min_gap`."""
    seeds = []
    for seed in range(200):
        x, y = clustered_embeddings(seed, **kwargs)
        if smallest_mixed_gap(x, y, KS, distance) > min_gap:
            seeds.append(seed)
            if len(seeds) == count:
                return seeds
    raise AssertionError(f"fewer than {count} tie-free seeds in 200: the generator changed?")


EUCLIDEAN = {"integer": True, "num_classes": 20, "dim": 8}
COSINE = {"num_classes": 12, "spread": 1.2, "dim": 24}


@pytest.mark.parametrize("seed", tie_free_seeds(4, "euclidean", 0.0, **EUCLIDEAN))
def test_euclidean_equals_accuracy_calculator(seed):
    x, y = clustered_embeddings(seed, **EUCLIDEAN)
    sizes = np.bincount(y)
    assert sizes.min() <= 10
    assert sizes.max() >= 30
    theirs = accuracy_calculator(x, y, "euclidean")
    ours = retrieval_metrics(x, y, k=KS)
    for key, value in theirs.items():
        assert abs(ours[key] - value) <= 1e-6, (key, ours[key], value)
    assert 0.1 < ours["map@r"] < 0.9


@pytest.mark.parametrize("seed", tie_free_seeds(3, "cosine", 1e-5, **COSINE))
def test_cosine_equals_accuracy_calculator(seed):
    x, y = clustered_embeddings(seed, **COSINE)
    theirs = accuracy_calculator(x, y, "cosine")
    ours = retrieval_metrics(x, y, k=KS, distance="cosine")
    for key, value in theirs.items():
        assert abs(ours[key] - value) <= 1e-6, (key, ours[key], value)


def test_separate_queries_equal_accuracy_calculator():
    for seed in range(200):
        x, y = clustered_embeddings(seed, **EUCLIDEAN)
        qx, qy = clustered_embeddings(seed + 1000, **EUCLIDEAN)
        if smallest_mixed_gap(x, y, KS, "euclidean", qx, qy) > 0:
            break
    theirs = accuracy_calculator(x, y, "euclidean", qx, qy)
    ours = retrieval_metrics(x, y, k=KS, query_embeddings=qx, query_labels=qy)
    for key, value in theirs.items():
        assert abs(ours[key] - value) <= 1e-6, (key, ours[key], value)


def test_with_ties_ours_is_the_lowest_and_accuracy_calculator_in_between():
    rng = np.random.default_rng(0)
    x = rng.integers(-2, 3, size=(300, 3)).astype(np.float32)  # many exact ties
    y = rng.integers(0, 8, size=300)
    assert smallest_mixed_gap(x, y, KS) == 0.0
    ours = retrieval_metrics(x, y, k=KS)
    highest = reference_metrics(x, y, KS, ties="optimistic")
    theirs = accuracy_calculator(x, y, "euclidean")
    for key in ours:
        assert ours[key] - 1e-9 <= theirs[key] <= highest[key] + 1e-9, key
    assert ours["map@r"] < highest["map@r"]
