"""From indexed files to one dataset, or a (training, validation) pair.

Shared by `balanced_image_dataset_from_directory` and
`balanced_image_dataset_from_paths`: split, build one sampler per subset,
build its pipeline and attach `class_names`, `file_paths` and `sampler`.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import tensorflow as tf

from balanced_sampler import BalancedBatchSampler, split
from kerasgen_tf._args import (
    ImageOptions,
    SamplingOptions,
    check_bool,
    check_class_names,
    check_image_options,
    check_label_mode,
    check_sampling_options,
)
from kerasgen_tf._bad_images import check_on_bad_image, find_bad_files, warn_dropped
from kerasgen_tf._pipeline import build_dataset

__all__ = ["check_labels_for_mode", "make_datasets"]

_INT32 = np.iinfo(np.int32)


@attrs.frozen
class DatasetOptions:
    """The validated arguments that both dataset builders share."""

    label_mode: str | None
    class_names: list[str] | None
    image: ImageOptions
    sampling: SamplingOptions
    verbose: bool
    on_bad_image: str
    verify_images: bool


def check_dataset_options(
    *,
    label_mode: object,
    class_names: object,
    color_mode: object,
    image_size: object,
    interpolation: object,
    crop_to_aspect_ratio: object,
    pad_to_aspect_ratio: object,
    data_format: object,
    num_classes_per_batch: object,
    num_images_per_class: object,
    shuffle: object,
    seed: object,
    validation_split: object,
    subset: object,
    safe_triplet: object,
    samples_per_epoch: object,
    class_weights: object,
    small_classes: object,
    split_by: object,
    verbose: object,
    on_bad_image: object,
    verify_images: object,
) -> DatasetOptions:
    """Validates the arguments shared by the two dataset builders, before any work.

    Returns:
        The validated `DatasetOptions`.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an argument has a value that is not allowed.
    """
    return DatasetOptions(
        label_mode=check_label_mode(label_mode),
        class_names=check_class_names(class_names),
        image=check_image_options(
            color_mode=color_mode,
            image_size=image_size,
            interpolation=interpolation,
            crop_to_aspect_ratio=crop_to_aspect_ratio,
            pad_to_aspect_ratio=pad_to_aspect_ratio,
            data_format=data_format,
        ),
        sampling=check_sampling_options(
            num_classes_per_batch=num_classes_per_batch,
            num_images_per_class=num_images_per_class,
            shuffle=shuffle,
            seed=seed,
            validation_split=validation_split,
            subset=subset,
            safe_triplet=safe_triplet,
            samples_per_epoch=samples_per_epoch,
            class_weights=class_weights,
            small_classes=small_classes,
            split_by=split_by,
        ),
        verbose=check_bool("verbose", verbose),
        on_bad_image=check_on_bad_image(on_bad_image),
        verify_images=check_bool("verify_images", verify_images),
    )


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
    on_bad_image: str = "error",
    skipped: dict[str, str] | None = None,
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
    skipped = {} if skipped is None else skipped
    dataset = build_dataset(
        file_paths,
        labels,
        sampler,
        image,
        label_mode,
        len(class_names),
        on_bad_image=on_bad_image,
        skipped=skipped,
    )
    # As Keras: users may need the class names and the files.
    dataset.class_names = class_names
    dataset.file_paths = file_paths
    dataset.sampler = sampler
    # {path: reason} of the files dropped by `verify_images=True` or skipped
    # by `on_bad_image="skip"`; filled as bad files are met.
    dataset.skipped_files = skipped
    # What `kerasgen_tf.distribute` needs to rebuild this pipeline (sharded or
    # checkpointable) from the same files, labels and image options.
    dataset._kerasgen_pipeline = {
        "labels": labels,
        "image": image,
        "label_mode": label_mode,
        "num_classes": len(class_names),
        "seeded": sampling.seed is not None,
    }
    return dataset


def _drop_bad_files(
    file_paths: list[str],
    labels: np.ndarray[Any, Any],
    image: ImageOptions,
    skipped: dict[str, str],
    verbose: bool,
) -> tuple[list[str], np.ndarray[Any, Any]]:
    """`verify_images=True`: decodes every file once and drops those that fail."""
    bad = find_bad_files(file_paths, image)
    if verbose:
        print(f"Verified {len(file_paths)} files: {len(bad)} cannot be loaded.")
    if not bad:
        return file_paths, labels
    warn_dropped(bad, len(file_paths))
    skipped.update(bad)
    keep = np.array([path not in bad for path in file_paths], dtype=bool)
    if not keep.any():
        raise ValueError(
            f"verify_images=True: none of the {len(file_paths)} files can be loaded, "
            f"e.g. {next(iter(bad))!r}: {next(iter(bad.values()))}"
        )
    return [p for p, k in zip(file_paths, keep.tolist(), strict=True) if k], labels[keep]


def make_datasets(
    file_paths: list[str],
    labels: np.ndarray[Any, Any],
    class_names: list[str],
    sampling: SamplingOptions,
    image: ImageOptions,
    label_mode: str | None,
    verbose: bool,
    *,
    on_bad_image: str = "error",
    verify_images: bool = False,
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
        on_bad_image: "error" or "skip" (see `build_dataset`).
        verify_images: Whether to decode every file once first and drop
            those that cannot be loaded (with a `BadImageWarning`), before
            the split.

    Returns:
        A dataset, or a `(training, validation)` tuple for `subset="both"`.
        Each carries `skipped_files`, one `{path: reason}` dict shared by
        both datasets of `subset="both"`.
    """
    check_labels_for_mode(labels, class_names, label_mode)
    skipped: dict[str, str] = {}
    if verify_images:
        file_paths, labels = _drop_bad_files(file_paths, labels, image, skipped, verbose)

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
            on_bad_image=on_bad_image,
            skipped=skipped,
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
