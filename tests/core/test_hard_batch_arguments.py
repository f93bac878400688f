"""Bad class_neighbors / categories / hard_batch_fraction: clear errors before any planning."""

from __future__ import annotations

import re

import numpy as np
import pytest

from balanced_sampler import BalancedBatchSampler, check_sampler_options

LABELS = np.repeat([3, 5, 8, 13], 6)  # C = 4 classes, labels not 0..C-1
TABLE = np.array([[5, 8], [3, 13], [13, 3], [8, 5]])


def build(**kwargs):
    options = {"safe_triplet": True, "seed": 0, **kwargs}
    return BalancedBatchSampler(LABELS, 2, 2, **options)


@pytest.mark.parametrize(
    ("table", "error", "message"),
    [
        (TABLE[:3], ValueError, "shape (C, M) with C = 4 (one row per distinct label"),
        (TABLE[:, :0], ValueError, "and M >= 1. Received shape (4, 0)"),
        (TABLE[:, 0], ValueError, "Received shape (4,)"),
        (TABLE.astype(float), TypeError, "must hold integer labels. Received an array of dtype float64"),
        (TABLE.astype(bool), TypeError, "must hold integer labels. Received an array of dtype bool"),
        (np.array([[5, 8], [3, 13], [13, 4], [8, 5]]), ValueError,
         "names labels that are not among the labels: 4 (e.g. in the list of label 8, position 1)"),
        (np.array([[5, 8], [3, 13], [13, 8], [8, 5]]), ValueError,
         "lists a class among its own neighbours: label 8 is in its own list (1 such list(s))"),
        (np.array([[5, 5], [3, 13], [13, 3], [8, 5]]), ValueError,
         "names a neighbour twice in one list: label 5 appears more than once in the list of label 3"),
        ([[5, 8], [3], [13, 3], [8, 5]], ValueError, "must be rectangular"),
        ("5,8", TypeError, "must be an integer array of shape (C, M)"),
        (7, TypeError, "Received: class_neighbors=7 of type int"),
        (np.array([[2**63, 8], [3, 13], [13, 3], [8, 5]], dtype=np.uint64), ValueError,
         "which is not among the labels"),
    ],
)
def test_bad_neighbour_arrays(table, error, message):
    with pytest.raises(error, match=re.escape(message)):
        build(class_neighbors=table)


@pytest.mark.parametrize(
    ("mapping", "error", "message"),
    [
        ({3: [5], 5: [3], 8: [3], 13: [3], 99: [3]}, ValueError,
         "has keys that are not among the labels: 99 (4 distinct labels)"),
        ({3: [5], 5: [3], 8: [3]}, ValueError, "must have a key for every label. Missing 1 label(s): 13"),
        ({3: [5], 5: [3], 8: [3], 13: [7]}, ValueError, "names labels that are not among the labels: 7"),
        ({3: [3], 5: [3], 8: [3], 13: [3]}, ValueError, "label 3 is in its own list"),
        ({3: [5, 5], 5: [3], 8: [3], 13: [3]}, ValueError, "label 5 appears more than once"),
        ({3: 5, 5: [3], 8: [3], 13: [3]}, TypeError, "`class_neighbors[3]` must be a sequence of labels"),
        ({3: [5.0], 5: [3], 8: [3], 13: [3]}, TypeError, "must be a flat sequence of integer labels"),
        ({3: [[5]], 5: [3], 8: [3], 13: [3]}, TypeError, "must be a flat sequence of integer labels"),
        ({"3": [5], 5: [3], 8: [3], 13: [3]}, TypeError, "must have integer labels as keys. Received keys '3'"),
    ],
)
def test_bad_neighbour_mappings(mapping, error, message):
    with pytest.raises(error, match=re.escape(message)):
        build(class_neighbors=mapping)


def test_a_good_mapping_with_lists_of_any_length():
    sampler = build(class_neighbors={3: [5, 8, 13], 5: (3,), 8: np.array([13]), 13: []})
    assert len(sampler.plan(0)) == len(sampler)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"class_neighbors": TABLE, "safe_triplet": False}, ValueError,
         "`class_neighbors` only applies when safe_triplet=True"),
        ({"categories": {3: 0, 5: 0, 8: 1, 13: 1}, "safe_triplet": False}, ValueError,
         "`categories` only applies when safe_triplet=True"),
        ({"hard_batch_fraction": 0.5, "safe_triplet": False}, ValueError,
         "`hard_batch_fraction` only applies when safe_triplet=True"),
        ({"class_neighbors": TABLE, "categories": {3: 0, 5: 0, 8: 1, 13: 1}}, ValueError,
         "Pass either `class_neighbors` or `categories`, not both"),
        ({"class_neighbors": TABLE, "hard_batch_fraction": 1.5}, ValueError,
         "`hard_batch_fraction` must be between 0 and 1. Received: hard_batch_fraction=1.5"),
        ({"class_neighbors": TABLE, "hard_batch_fraction": float("nan")}, ValueError,
         "must be between 0 and 1"),
        ({"class_neighbors": TABLE, "hard_batch_fraction": "half"}, TypeError,
         "`hard_batch_fraction` must be a number between 0 and 1"),
        ({"class_neighbors": TABLE, "hard_batch_fraction": True}, TypeError,
         "Received: hard_batch_fraction=True of type bool"),
        ({"categories_per_batch": 2}, ValueError,
         "`categories_per_batch` only applies with `categories`"),
        ({"categories": {3: 0, 5: 0, 8: 1, 13: 1}, "categories_per_batch": 3}, ValueError,
         "`categories_per_batch` must be at most `num_classes_per_batch`"),
        ({"categories": {3: 0, 5: 0, 8: 0, 13: 0}, "categories_per_batch": 2}, ValueError,
         "must be at most the number of categories of the labels (1)"),
        ({"categories": {3: 0, 5: 0, 8: 1, 13: 1}, "categories_per_batch": 0}, ValueError,
         "`categories_per_batch` must be an integer >= 1"),
        ({"categories": [0, 0, 1, 1]}, TypeError, "`categories` must be a mapping {label: category}"),
        ({"categories": {3: 0, 5: 0, 8: 1}}, ValueError,
         "must give a category for every label. Missing 1 label(s): 13"),
        ({"categories": {3: 0, 5: 0, 8: 1, 13: [1]}}, TypeError, "`categories[13]` must be hashable"),
    ],
)
def test_bad_hard_batch_options(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        build(**kwargs)


def test_the_label_free_checks_run_before_any_work():
    with pytest.raises(ValueError, match="not both"):
        check_sampler_options(2, 2, safe_triplet=True, class_neighbors=TABLE, categories={})
    with pytest.raises(ValueError, match="only applies when safe_triplet=True"):
        check_sampler_options(2, 2, class_neighbors=TABLE)


def test_categories_may_name_labels_that_are_not_present():
    # A mapping of a whole dataset serves its class-disjoint splits.
    sampler = build(categories={3: "a", 5: "a", 8: "b", 13: "b", 21: "c"})
    assert sampler.hard_batch_stats(0).hard_batches == len(sampler)


def test_a_fraction_without_a_table_waits_for_one():
    sampler = build(hard_batch_fraction=0.5)
    assert sampler.hard_batch_stats(0) is None
    assert sampler.set_class_neighbors(TABLE) == 0
    assert sampler.hard_batch_stats(0).hard_batches == int(np.floor(0.5 * len(sampler) + 0.5))


def test_set_class_neighbors_refuses_what_cannot_take_a_table():
    exhaustive = BalancedBatchSampler(LABELS, 2, 2, seed=0)
    with pytest.raises(ValueError, match="only applies when safe_triplet=True"):
        exhaustive.set_class_neighbors(TABLE)
    by_category = build(categories={3: 0, 5: 0, 8: 1, 13: 1})
    with pytest.raises(ValueError, match="cannot be used with `categories`"):
        by_category.set_class_neighbors(TABLE)
    sampler = build(class_neighbors=TABLE)
    with pytest.raises(ValueError, match="label 8 is in its own list"):
        sampler.set_class_neighbors(np.array([[5, 8], [3, 13], [13, 8], [8, 5]]))
    # A refused table changes nothing.
    assert sampler.class_neighbors_for().tolist() == TABLE.tolist()


def test_a_big_table_is_checked_quickly():
    labels = np.repeat(np.arange(20_000), 2)
    rng = np.random.default_rng(0)
    table = (np.arange(20_000)[:, None] + rng.permutation(np.arange(1, 33))[None, :]) % 20_000
    sampler = BalancedBatchSampler(labels, 8, 2, safe_triplet=True, seed=0, class_neighbors=table)
    assert sampler.state_dict()["fingerprint"]["class_neighbors"].startswith("20000 x 32")
