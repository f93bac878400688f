"""From indexed files to one dataset, or a (training, validation) pair.

Shared by `balanced_image_dataset_from_directory` and
`balanced_image_dataset_from_paths`: split, build one sampler per subset,
build its pipeline and attach `class_names`, `file_paths` and `sampler`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from balanced_sampler import BalancedBatchSampler, split
from kerasgen_tf._args import ImageOptions, SamplingOptions
from kerasgen_tf._pipeline import build_dataset

__all__ = ["check_labels_for_mode", "make_datasets"]

_INT32 = np.iinfo(np.int32)


def check_labels_for_mode(
    labels: np.ndarray[Any, Any], class_names: list[str], label_mode: str | None
) -> None:
    """Checks that the labels can be encoded as `label_mode` asks.

    Args:
        labels: The integer labels.
        class_names: The class names (their number is the one-hot depth).
        label_mode: "int", "categorical", "binary" or None.

    Raises:
        ValueError: If "binary" is asked without exactly 2 classes labelled
            0 and 1, if "categorical" labels fall outside
            `[0, len(class_names))`, or if a label does not fit in int32.
    """
    if labels.size and (labels.min() < _INT32.min or labels.max() > _INT32.max):
        raise ValueError(
            "Labels must fit in int32 (Keras yields int32 labels). "
            f"Received labels from {labels.min()} to {labels.max()}"
        )
    if label_mode == "binary":
        if len(class_names) != 2:
            raise ValueError(
                'When passing `label_mode="binary"`, there must be exactly 2 '
                f"class_names. Received: class_names={class_names}"
            )
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(
                'When passing `label_mode="binary"`, the labels must be 0 and 1. '
                f"Received labels: {np.unique(labels).tolist()}"
            )
    elif label_mode == "categorical" and labels.size:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= len(class_names):
            raise ValueError(
                'When passing `label_mode="categorical"`, every label must be in '
                f"[0, len(class_names)) = [0, {len(class_names)}) to be one-hot encoded. "
                f"Received labels from {low} to {high}"
            )


def _one_dataset(
    file_paths: list[str],
    labels: np.ndarray[Any, Any],
    class_names: list[str],
    sampling: SamplingOptions,
    image: ImageOptions,
    label_mode: str | None,
    *,
    shuffle: bool,
    samples_per_epoch: int | None,
) -> tf.data.Dataset:
    sampler = BalancedBatchSampler(
        labels,
        sampling.num_classes_per_batch,
        sampling.num_images_per_class,
        safe_triplet=sampling.safe_triplet,
        samples_per_epoch=samples_per_epoch,
        class_weights=sampling.class_weights,
        small_classes=sampling.small_classes,
        shuffle=shuffle,
        seed=sampling.seed,
    )
    dataset = build_dataset(file_paths, labels, sampler, image, label_mode, len(class_names))
    # As Keras: users may need the class names and the files.
    dataset.class_names = class_names
    dataset.file_paths = file_paths
    dataset.sampler = sampler
    return dataset


def make_datasets(
    file_paths: list[str],
    labels: np.ndarray[Any, Any],
    class_names: list[str],
    sampling: SamplingOptions,
    image: ImageOptions,
    label_mode: str | None,
    verbose: bool,
) -> tf.data.Dataset | tuple[tf.data.Dataset, tf.data.Dataset]:
    """Splits the files if asked and returns the balanced dataset(s).

    With `subset="both"` the validation dataset is not shuffled (as in
    Keras) and `samples_per_epoch` applies to the training dataset only.

    Args:
        file_paths: One path per sample.
        labels: One integer label per sample.
        class_names: The class names.
        sampling: Validated batching and splitting options.
        image: Validated image options.
        label_mode: "int", "categorical", "binary" or None.
        verbose: Whether to print how many files each subset uses.

    Returns:
        A dataset, or a `(training, validation)` tuple for `subset="both"`.
    """
    check_labels_for_mode(labels, class_names, label_mode)

    def subset_of(index: np.ndarray[Any, Any]) -> tuple[list[str], np.ndarray[Any, Any]]:
        return [file_paths[i] for i in index.tolist()], labels[index]

    def make(
        paths: list[str], subset_labels: np.ndarray[Any, Any], *, shuffle: bool, spe: int | None
    ) -> tf.data.Dataset:
        return _one_dataset(
            paths,
            subset_labels,
            class_names,
            sampling,
            image,
            label_mode,
            shuffle=shuffle,
            samples_per_epoch=spe,
        )

    spe = sampling.samples_per_epoch
    if sampling.validation_split is None:
        return make(file_paths, labels, shuffle=sampling.shuffle, spe=spe)
    if sampling.subset == "both":
        train_index, val_index = split(
            labels, sampling.validation_split, "both", sampling.split_seed, by=sampling.split_by
        )
        train_paths, train_labels = subset_of(train_index)
        val_paths, val_labels = subset_of(val_index)
        if verbose:
            print(f"Using {len(train_paths)} files for training.")
            print(f"Using {len(val_paths)} files for validation.")
        return (
            make(train_paths, train_labels, shuffle=sampling.shuffle, spe=spe),
            make(val_paths, val_labels, shuffle=False, spe=None),
        )
    assert sampling.subset is not None
    index = split(
        labels,
        sampling.validation_split,
        sampling.subset,
        sampling.split_seed,
        by=sampling.split_by,
    )
    paths, subset_labels = subset_of(index)
    if verbose:
        print(f"Using {len(paths)} files for {sampling.subset}.")
    return make(paths, subset_labels, shuffle=sampling.shuffle, spe=spe)
