"""Code written for kerasgen 0.1.3 runs unchanged through the old import path."""

from __future__ import annotations

import numpy as np
import pytest

from kerasgen.balanced_image_dataset import balanced_image_dataset_from_directory


def test_readme_example_of_0_1_3(class_tree):
    train_ds = balanced_image_dataset_from_directory(
        class_tree,
        num_classes_per_batch=2,
        num_images_per_class=5,
        image_size=(16, 16),
        validation_split=0.2,
        subset="training",
        seed=555,
        safe_triplet=True,
    )
    val_ds = balanced_image_dataset_from_directory(
        class_tree,
        num_classes_per_batch=2,
        num_images_per_class=5,
        image_size=(16, 16),
        validation_split=0.2,
        subset="validation",
        seed=555,
        safe_triplet=True,
    )
    assert not set(train_ds.file_paths) & set(val_ds.file_paths)
    for ds in (train_ds, val_ds):
        assert ds.element_spec[0].shape.as_list() == [10, 16, 16, 3]
        for images, labels in ds:
            assert images.shape == (10, 16, 16, 3)
            assert len(np.unique(labels.numpy())) == 2


def test_positional_arguments_in_the_0_1_3_order(class_tree):
    # directory, num_classes_per_batch, num_images_per_class, labels, label_mode,
    # class_names, color_mode, image_size, shuffle, seed, validation_split, subset,
    # safe_triplet, samples_per_epoch, interpolation, follow_links, crop_to_aspect_ratio
    ds = balanced_image_dataset_from_directory(
        class_tree, 3, 2, "inferred", "categorical", None, "grayscale", (6, 7), True, 9,
        0.25, "training", True, 12, "nearest", False, True,
    )  # fmt: skip
    assert len(ds) == 2
    images, labels = next(iter(ds))
    assert images.shape == (6, 6, 7, 1)
    assert labels.shape == (6, 6)


def test_smart_resize_alias(class_tree):
    ds = balanced_image_dataset_from_directory(
        class_tree, 2, 2, image_size=4, seed=1, smart_resize=True, verbose=False
    )
    new = balanced_image_dataset_from_directory(
        class_tree, 2, 2, image_size=4, seed=1, crop_to_aspect_ratio=True, verbose=False
    )
    for (a, _), (b, _) in zip(ds, new, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(TypeError, match="smart_resize"):
        balanced_image_dataset_from_directory(
            class_tree, smart_resize=True, crop_to_aspect_ratio=True
        )


def test_unknown_keyword_is_a_type_error(class_tree):
    with pytest.raises(TypeError, match="unexpected keyword"):
        balanced_image_dataset_from_directory(class_tree, batch_size=8)


def test_docstring_and_formats():
    import kerasgen.balanced_image_dataset as module

    assert "Args:" in module.balanced_image_dataset_from_directory.__doc__
    assert ".jpg" in module.ALLOWLIST_FORMATS
