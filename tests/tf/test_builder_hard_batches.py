"""The dataset builders' hard-class options: `categories`, `categories_per_batch`, `hard_batch_fraction`."""

from __future__ import annotations

import pathlib

import attrs
import numpy as np
import pytest
from hard_class_models import make_colour_tree

from balanced_sampler import BalancedBatchSampler
from kerasgen_tf import (
    balanced_image_dataset_from_directory,
    balanced_image_dataset_from_paths,
)

P, K = 4, 2


@pytest.fixture(scope="module")
def colour_tree(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return make_colour_tree(tmp_path_factory.mktemp("colours"))  # 12 classes x 6 images


def _categories_by_name(names: list[str]) -> dict[str, str]:
    """class_00..05 are "warm", class_06..11 "cold"."""
    return {name: ("warm" if int(name[-2:]) < 6 else "cold") for name in names}


def _played(dataset) -> list[np.ndarray]:
    return [labels.numpy() for _, labels in dataset]


def _reference(dataset, **options) -> BalancedBatchSampler:
    """A sampler built directly on the dataset's labels with label-keyed options."""
    sampler = dataset.sampler
    return BalancedBatchSampler(sampler.labels, P, K, safe_triplet=True, seed=5, **options)


def test_categories_by_class_name_are_the_samplers_categories_by_label(colour_tree):
    names = sorted(p.name for p in colour_tree.iterdir())
    dataset = balanced_image_dataset_from_directory(
        colour_tree, P, K, image_size=8, safe_triplet=True, seed=5, verbose=False,
        categories=_categories_by_name(names),
    )
    by_label = {label: ("warm" if label < 6 else "cold") for label in range(12)}
    reference = _reference(dataset, categories=by_label)
    assert dataset.sampler.hard_batch_fraction == 1.0
    played = [labels.tolist() for labels in _played(dataset)]  # the sampler's epoch 0
    labels = np.asarray(dataset.sampler.labels)
    assert played == [labels[batch].tolist() for batch in reference.plan(0)]
    assert dataset.sampler.hard_batch_stats(1).is_hard.all()
    # Categories change which classes share a batch, not the quotas.
    plain = attrs.evolve(dataset.sampler, categories=None)
    for epoch in range(3):
        assert np.array_equal(
            np.sort(np.concatenate(dataset.sampler.plan(epoch))),
            np.sort(np.concatenate(plain.plan(epoch))),
        )
    # Batches share a category far more often than with random classes.
    def one_category(sampler: BalancedBatchSampler) -> int:
        return sum(len({int(label) < 6 for label in labels[batch]}) == 1
                   for epoch in range(10) for batch in sampler.plan(epoch))
    assert one_category(dataset.sampler) > 2 * one_category(plain)


def test_labels_as_keys_and_two_categories_per_batch(colour_tree):
    dataset = balanced_image_dataset_from_directory(
        colour_tree, P, K, image_size=8, safe_triplet=True, seed=5, verbose=False,
        categories={label: label % 3 for label in range(12)}, categories_per_batch=2,
    )
    stats = dataset.sampler.hard_batch_stats(0)
    assert stats.is_hard.all()
    reference = _reference(dataset, categories={label: label % 3 for label in range(12)},
                           categories_per_batch=2)
    for epoch in range(3):
        assert all(np.array_equal(a, b) for a, b in
                   zip(dataset.sampler.plan(epoch), reference.plan(epoch), strict=True))


def test_hard_batch_fraction_reaches_the_sampler(colour_tree):
    names = sorted(p.name for p in colour_tree.iterdir())
    paths = [str(path) for name in names for path in sorted((colour_tree / name).iterdir())]
    labels = [int(name[-2:]) for name in names for _ in range(6)]
    dataset = balanced_image_dataset_from_paths(
        paths, labels, P, K, image_size=8, safe_triplet=True, seed=5, verbose=False,
        categories={label: label // 6 for label in range(12)}, hard_batch_fraction=0.5,
    )
    assert dataset.sampler.hard_batch_fraction == 0.5
    stats = dataset.sampler.hard_batch_stats(0)
    assert int(stats.is_hard.sum()) == 5  # round(0.5 x 9), half up
    # A neighbour table set later deals half of the batches too.
    table = np.array([[(c + d) % 12 for d in range(1, 4)] for c in range(12)])
    neighbours = balanced_image_dataset_from_directory(
        colour_tree, P, K, image_size=8, safe_triplet=True, seed=5, verbose=False,
        hard_batch_fraction=0.25,
    )
    first = neighbours.sampler.set_class_neighbors(table)
    hard = neighbours.sampler.hard_batch_stats(first).is_hard
    assert int(hard.sum()) == 2  # round(0.25 x 9)
    reference = _reference(neighbours, class_neighbors=table, hard_batch_fraction=0.25)
    assert all(np.array_equal(a, b) for a, b in
               zip(neighbours.sampler.plan(first), reference.plan(first), strict=True))


def test_with_a_validation_subset_absent_classes_are_ignored(colour_tree):
    names = sorted(p.name for p in colour_tree.iterdir())
    train, val = balanced_image_dataset_from_directory(
        colour_tree, P, K, image_size=8, safe_triplet=True, seed=5, verbose=False,
        validation_split=0.5, subset="both", split_by="classes",
        categories=_categories_by_name(names),
    )
    for dataset in (train, val):
        present = np.unique(dataset.sampler.labels).tolist()
        assert len(present) == 6
        assert dataset.sampler.hard_batch_stats(0).is_hard.all()


def test_bad_hard_batch_options_raise_before_any_work(tmp_path):
    missing = tmp_path / "nothing_here"  # the options fail before the folder is listed
    with pytest.raises(ValueError, match="hard_batch_fraction"):
        balanced_image_dataset_from_directory(missing, P, K, safe_triplet=True,
                                              hard_batch_fraction=1.5)
    with pytest.raises(ValueError, match="safe_triplet"):
        balanced_image_dataset_from_directory(missing, P, K, categories={0: "a"})
    with pytest.raises(ValueError, match="categories_per_batch"):
        balanced_image_dataset_from_directory(missing, P, K, safe_triplet=True,
                                              categories_per_batch=2)


def test_a_category_key_that_names_no_class_is_named(colour_tree):
    names = sorted(p.name for p in colour_tree.iterdir())
    categories = {**_categories_by_name(names), "class_99": "cold"}
    with pytest.raises(ValueError, match=r"`categories` keys must be labels or class names; "
                                         r"1 key\(s\) name no class: 'class_99'"):
        balanced_image_dataset_from_directory(
            colour_tree, P, K, image_size=8, safe_triplet=True, verbose=False,
            categories=categories,
        )
    incomplete = {name: "warm" for name in names[:6]}
    with pytest.raises(ValueError, match="`categories` must give a category for every label"):
        balanced_image_dataset_from_directory(
            colour_tree, P, K, image_size=8, safe_triplet=True, verbose=False,
            categories=incomplete,
        )
