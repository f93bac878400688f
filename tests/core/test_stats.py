"""plan_stats and coverage_ceiling on plans whose figures are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from balanced_sampler import BalancedBatchSampler, plan_stats
from balanced_sampler.stats import coverage_ceiling


def test_plan_stats_on_a_hand_made_plan():
    labels = [0, 0, 0, 1, 1, 2, 2, 2]
    plan = [[0, 1, 3, 4], [2, 2, 5, 6], [7]]
    stats = plan_stats(plan, labels, 2, 2)
    assert stats.num_batches == 3
    assert stats.exact_pxk_fraction == pytest.approx(2 / 3)
    assert stats.triplet_valid_fraction == pytest.approx(6 / 9)
    assert stats.coverage == 1.0
    assert stats.exactly_once_fraction == pytest.approx(7 / 8)
    assert stats.max_repeats == 2
    assert stats.in_batch_duplicates == 1
    assert "coverage" in str(stats)
    assert stats.as_dict()["max_repeats"] == 2


def test_plan_stats_counts_missing_samples():
    stats = plan_stats([[0, 3]], [0, 0, 1, 1], 2, 1)
    assert stats.coverage == 0.5
    assert stats.exactly_once_fraction == 0.5
    assert stats.exact_pxk_fraction == 1.0
    assert stats.triplet_valid_fraction == 0.0  # no positive in the batch


def test_plan_stats_rejects_bad_plans():
    with pytest.raises(ValueError, match="empty"):
        plan_stats([], [0, 1], 1, 1)
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        plan_stats([[0, 5]], [0, 1], 1, 1)


def test_sampler_stats_match_the_mode_guarantees():
    labels = np.repeat(np.arange(20), np.arange(20) % 7 + 3)
    exhaustive = BalancedBatchSampler(labels, 4, 3, seed=0).stats(0)
    assert exhaustive.coverage == exhaustive.exactly_once_fraction == 1.0
    assert exhaustive.in_batch_duplicates == 0
    fixed = BalancedBatchSampler(labels, 4, 3, safe_triplet=True, seed=0).stats(0)
    assert fixed.exact_pxk_fraction == 1.0
    assert fixed.triplet_valid_fraction == 1.0
    assert fixed.in_batch_duplicates == 0


def test_coverage_ceiling_by_hand():
    # K=4, 2 batches of P=2: 4 groups. Classes 9, 4, 3: whole groups 2+1 (12 images),
    # then one group for the 3-image class (gain 3) beats the 9-image class's last image.
    assert coverage_ceiling([9, 4, 3], 2, 2, 4) == pytest.approx(15 / 16)
    # A class can show at most one group per batch.
    assert coverage_ceiling([100, 4], 2, 2, 4) == pytest.approx(12 / 104)
    # P before K, like every other function: P=1, K=4 and P=4, K=1 differ.
    assert coverage_ceiling([8, 8], 1, 1, 4) == pytest.approx(4 / 16)
    assert coverage_ceiling([8, 8], 1, 4, 1) == pytest.approx(2 / 16)
