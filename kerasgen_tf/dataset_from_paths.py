"""`balanced_image_dataset_from_paths`: balanced batches from a list of files."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from kerasgen_tf._args import check_class_names
from kerasgen_tf._datasets import check_dataset_options, make_datasets

__all__ = ["balanced_image_dataset_from_paths"]


def _check_file_paths(file_paths: object) -> list[str]:
    if isinstance(file_paths, (str, bytes)) or not isinstance(
        file_paths, (list, tuple, np.ndarray)
    ):
        raise TypeError(
            "`file_paths` must be a list/tuple/1-D array of file paths. "
            f"Received: file_paths={file_paths!r}"
        )
    paths = []
    for path in list(file_paths):
        if not isinstance(path, (str, os.PathLike)) or not isinstance(os.fspath(path), str):
            raise TypeError(
                "`file_paths` must hold text paths (str or os.PathLike). "
                f"Received an entry: {path!r}"
            )
        paths.append(os.fspath(path))
    if not paths:
        raise ValueError("`file_paths` must not be empty. Received: file_paths=[]")
    return paths


def _labels_and_names(
    labels: object, class_names: list[str] | None, num_files: int
) -> tuple[np.ndarray[Any, Any], list[str]]:
    """Integer labels and class names from int or str labels."""
    if isinstance(labels, (str, bytes)) or not isinstance(labels, (list, tuple, np.ndarray)):
        raise TypeError(
            "`labels` must be a list/tuple/1-D array with one integer label or class "
            f"name per file. Received: labels={labels!r}"
        )
    values = np.asarray(labels)
    if values.ndim != 1 or len(values) != num_files:
        raise ValueError(
            "`labels` must hold one label per file: expected a 1-D sequence of length "
            f"{num_files}. Received: labels of shape {values.shape}"
        )
    if values.dtype.kind in "US":
        values = values.astype(str)
        found = sorted(set(values.tolist()))
        names = found if class_names is None else class_names
        unknown = sorted(set(found) - set(names))
        if unknown:
            raise ValueError(
                f"Every label must be one of `class_names`; not found: {unknown[:10]}. "
                f"Received: class_names={class_names!r}"
            )
        position = {name: i for i, name in enumerate(names)}
        return np.fromiter((position[v] for v in values.tolist()), np.int64, num_files), names
    if values.dtype.kind not in "iu":
        raise TypeError(
            "`labels` must be integers or strings (class names). "
            f"Received: labels of dtype {values.dtype}"
        )
    ints = values.astype(np.int64)
    if class_names is None:
        return ints, [str(v) for v in np.unique(ints).tolist()]
    if ints.min() < 0 or ints.max() >= len(class_names):
        raise ValueError(
            "With `class_names`, integer labels must be in [0, len(class_names)) = "
            f"[0, {len(class_names)}). Received labels from {ints.min()} to {ints.max()}"
        )
    return ints, class_names


def balanced_image_dataset_from_paths(
    file_paths: Sequence[str | os.PathLike[str]],
    labels: Sequence[int] | Sequence[str] | np.ndarray[Any, Any],
    num_classes_per_batch: int = 2,
    num_images_per_class: int = 16,
    label_mode: str | None = "int",
    class_names: Sequence[str] | None = None,
    color_mode: str = "rgb",
    image_size: int | tuple[int, int] = (256, 256),
    shuffle: bool = True,
    seed: int | None = None,
    validation_split: float | None = None,
    subset: str | None = None,
    safe_triplet: bool = False,
    samples_per_epoch: int | None = None,
    interpolation: str = "bilinear",
    crop_to_aspect_ratio: bool = False,
    pad_to_aspect_ratio: bool = False,
    data_format: str | None = None,
    verbose: bool = True,
    *,
    class_weights: str | float | Mapping[int, float] | Sequence[float] = "proportional",
    small_classes: str = "pad",
    split_by: str = "samples",
    categories: Mapping[int | str, Hashable] | None = None,
    categories_per_batch: int = 1,
    hard_batch_fraction: float = 1.0,
    on_bad_image: str = "error",
    verify_images: bool = False,
    cache: str | os.PathLike[str] | None = None,
) -> tf.data.Dataset | tuple[tf.data.Dataset, tf.data.Dataset]:
    """Generates a `tf.data.Dataset` of balanced batches from a list of image files.

    The same as `balanced_image_dataset_from_directory`, for files and labels
    you list yourself (e.g. from a CSV file): batches of
    `num_classes_per_batch` classes x `num_images_per_class` images, one
    epoch per pass, exact `len(dataset)`, Keras-identical pixels.

    Args:
        file_paths: A list/tuple/1-D array of image file paths (str or
            `os.PathLike`), in any supported format (bmp, gif, jpeg, png,
            webp).
        labels: One label per file: integers, or strings (class names).
            String labels are numbered in the order of `class_names`
            (default: sorted). Integer labels are yielded as they are; with
            `class_names` they must be in `[0, len(class_names))`, without
            it the class names are `[str(l) for l in sorted(set(labels))]`
            (as Keras names explicit labels).
        num_classes_per_batch: P, the number of distinct classes per batch.
            Defaults to 2.
        num_images_per_class: K, the number of images of each class per
            batch. Defaults to 16.
        label_mode: `"int"` (int32 labels), `"categorical"` (float32
            one-hot), `"binary"` (float32 `(batch, 1)`, 2 classes labelled 0
            and 1) or `None` (images only, still balanced by `labels`).
        class_names: Optional list of class names; see `labels`.
        color_mode: One of `"grayscale"`, `"rgb"`, `"rgba"`. Defaults to
            `"rgb"`.
        image_size: `(height, width)` or one int for a square. Defaults to
            `(256, 256)`.
        shuffle: Whether to shuffle each epoch. Defaults to `True`.
        seed: Optional random seed (an int >= 0) for the split and the
            sampler.
        validation_split: Optional float between 0 and 1, fraction of data
            to reserve for validation.
        subset: `"training"`, `"validation"` or `"both"`; only used if
            `validation_split` is set.
        safe_triplet: `True` for batches of exactly P x K images (static
            batch dimension), `False` (default) for every image exactly
            once per epoch.
        samples_per_epoch: Only with `safe_triplet=True`: images per epoch,
            a multiple of P * K.
        interpolation: The resizing method, one of `"bilinear"`,
            `"nearest"`, `"bicubic"`, `"area"`, `"lanczos3"`,
            `"lanczos5"`, `"gaussian"`, `"mitchellcubic"`.
        crop_to_aspect_ratio: If `True`, crop to the target aspect ratio
            before resizing.
        pad_to_aspect_ratio: If `True`, pad to the target aspect ratio.
        data_format: `None`, `"channels_last"` or `"channels_first"`.
        verbose: Whether to print the number of files and classes.
        class_weights: Only with `safe_triplet=True`; see
            `balanced_image_dataset_from_directory`.
        small_classes: Only with `safe_triplet=True`: `"pad"`, `"drop"` or
            `"error"`.
        split_by: `"samples"` (stratified) or `"classes"`.
        categories: Only with `safe_triplet=True`: hard-class batches by
            category, as OML's `CategoryBalanceSampler`. A mapping
            `{class: category}` whose keys are labels or class names
            (`class_names`), with a category for every class of the
            dataset. A share `hard_batch_fraction` of every epoch's batches
            takes its P classes from `categories_per_batch` categories;
            quotas and coverage stay those of the plain plan (see
            `balanced_sampler.BalancedBatchSampler`).
        categories_per_batch: With `categories`: the categories a batch
            takes its classes from (default 1, at most P).
        hard_batch_fraction: Only with `safe_triplet=True`: the share of
            every epoch's batches dealt as hard-class batches, in [0, 1]
            (default 1.0), once the sampler has `categories` or a neighbour
            table (`sampler.set_class_neighbors`, or the callback
            `kerasgen_tf.ClassNeighborRefresh`).
        on_bad_image: `"error"` (default: stop, naming the file and what is
            wrong) or `"skip"` (replace it by another image of its class and
            warn once); see `balanced_image_dataset_from_directory`.
        verify_images: If `True`, decode every file once first and drop
            those that cannot be loaded, with a warning. Defaults to `False`.
        cache: `None` (default), `"memory"` or the path of a cache file:
            decode each image once and keep it per sample, so later epochs
            gather their (still reshuffled) batches at memory speed; see
            `balanced_image_dataset_from_directory`.

    Returns:
        A `tf.data.Dataset` (or a `(train, val)` tuple for `subset="both"`)
        carrying `class_names`, `file_paths` and `sampler`, as
        `balanced_image_dataset_from_directory` returns, `skipped_files` and
        `decoded_cache`.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an argument has a wrong value, or the labels do not
            fit `label_mode` or the batching asked for.
        MemoryError: If `cache="memory"` cannot fit in the available memory.
    """
    paths = _check_file_paths(file_paths)
    names = check_class_names(class_names)
    options = check_dataset_options(
        label_mode=label_mode,
        color_mode=color_mode,
        image_size=image_size,
        interpolation=interpolation,
        crop_to_aspect_ratio=crop_to_aspect_ratio,
        pad_to_aspect_ratio=pad_to_aspect_ratio,
        data_format=data_format,
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
        categories=categories,
        categories_per_batch=categories_per_batch,
        hard_batch_fraction=hard_batch_fraction,
        verbose=verbose,
        on_bad_image=on_bad_image,
        verify_images=verify_images,
        cache=cache,
    )
    int_labels, found_names = _labels_and_names(labels, names, len(paths))
    if options.verbose:
        print(f"Using {len(paths)} files belonging to {len(found_names)} classes.")
    return make_datasets(paths, int_labels, found_names, options, options.label_mode)
