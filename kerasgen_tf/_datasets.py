"""From indexed files to one dataset, or a (training, validation) pair.

Shared by `balanced_image_dataset_from_directory` and
`balanced_image_dataset_from_paths`: check the shared arguments, verify
the files if asked, split, open the decoded cache if asked (one for both
subsets of `subset="both"`), build one sampler and one pipeline per subset,
attach `class_names`, `file_paths`, `sampler`, `skipped_files` and
`decoded_cache`, and make `dataset.cache()` build the per-sample cache
instead of tf.data's, which would freeze the plan.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np
import tensorflow as tf

from balanced_sampler import BalancedBatchSampler, split
from balanced_sampler.decoded_cache import MEMORY, check_cache
from kerasgen_tf._args import (
    ImageOptions,
    SamplingOptions,
    check_bool,
    check_image_options,
    check_label_mode,
    check_on_bad_image,
    check_sampling_options,
)
from kerasgen_tf._bad_images import BadFileReport, find_bad_files, warn_dropped
from kerasgen_tf._batches import BatchLoader
from kerasgen_tf._cached_images import CachedImages
from kerasgen_tf._pipeline import Pipeline, attach
from kerasgen_tf._plans import live_plans
from kerasgen_tf.decoded_cache import DecodedCache, open_decoded_cache

__all__ = [
    "DatasetOptions",
    "check_dataset_options",
    "check_labels_for_mode",
    "label_names",
    "make_datasets",
]

_INT32 = np.iinfo(np.int32)


@attrs.frozen
class DatasetOptions:
    """The validated arguments that both dataset builders share."""

    label_mode: str | None
    image: ImageOptions
    sampling: SamplingOptions
    verbose: bool
    on_bad_image: str
    verify_images: bool
    cache: str | None
    """None, "memory" or the path of a cache file (`check_cache`)."""


def check_dataset_options(
    *,
    label_mode: object,
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
    categories: object = None,
    categories_per_batch: object = 1,
    hard_batch_fraction: object = 1.0,
    verbose: object,
    on_bad_image: object,
    verify_images: object,
    cache: object,
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
            categories=categories,
            categories_per_batch=categories_per_batch,
            hard_batch_fraction=hard_batch_fraction,
        ),
        verbose=check_bool("verbose", verbose),
        on_bad_image=check_on_bad_image(on_bad_image),
        verify_images=check_bool("verify_images", verify_images),
        cache=check_cache(cache),
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


def categories_by_label(categories: Any, class_names: list[str]) -> Any:
    """`categories` with its class-name keys turned into labels (indices in `class_names`).

    Args:
        categories: None or a mapping {label or class name: category}.
        class_names: The dataset's class names (label `i` is `class_names[i]`).

    Returns:
        None, or a mapping {label: category}; anything else is returned as
        given, for the sampler to reject.

    Raises:
        ValueError: If a string key is not one of `class_names`.
    """
    if not isinstance(categories, Mapping):
        return categories
    index = {name: label for label, name in enumerate(class_names)}
    unknown = [key for key in categories if isinstance(key, str) and key not in index]
    if unknown:
        shown = ", ".join(repr(name) for name in unknown[:5])
        raise ValueError(
            f"`categories` keys must be labels or class names; {len(unknown)} key(s) name no "
            f"class: {shown}. Classes: {class_names[:10]}"
            + (" ..." if len(class_names) > 10 else "")
        )
    return {index[key] if isinstance(key, str) else key: value for key, value in categories.items()}


def label_names(labels: np.ndarray[Any, Any], class_names: list[str]) -> dict[int, str]:
    """The class name of each label value, for messages.

    Labels are positions in `class_names`, except explicit integer labels
    given without names, whose names are the labels themselves (as Keras
    names them: `[str(label) for label in sorted(set(labels))]`).
    """
    values = np.unique(labels).tolist()
    if [str(v) for v in values] == class_names:
        return {v: str(v) for v in values}
    return dict(enumerate(class_names))


def _sampler(
    file_paths: list[str],
    labels: np.ndarray[Any, Any],
    class_names: list[str],
    options: DatasetOptions,
    *,
    shuffle: bool,
    samples_per_epoch: int | None,
    subset: str | None,
) -> BalancedBatchSampler:
    """The sampler of one subset; its errors name the subset."""
    sampling = options.sampling
    names = label_names(labels, class_names)
    try:
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
            class_names=names,
            categories=categories_by_label(sampling.categories, class_names),
            categories_per_batch=sampling.categories_per_batch,
            hard_batch_fraction=sampling.hard_batch_fraction,
        )
    except ValueError as error:
        if subset is None:
            raise
        present = len(np.unique(labels))
        raise ValueError(
            f"The {subset} subset ({len(file_paths)} files of {present} of the "
            f"{len(class_names)} classes) cannot be batched: {error}"
        ) from error
    return sampler


def _one_dataset(
    file_paths: list[str],
    sampler: BalancedBatchSampler,
    class_names: list[str],
    options: DatasetOptions,
    skipped: dict[str, str],
    cache: DecodedCache | None,
    cache_offset: int,
) -> tf.data.Dataset:
    labels = sampler.labels
    names = label_names(labels, class_names)
    report = BadFileReport(
        file_paths,
        options.image.num_channels,
        labels,
        names,
        options.on_bad_image,
        skipped,
    )
    loader = BatchLoader.create(file_paths, labels, options.image, options.on_bad_image)
    pipeline = Pipeline.create(
        loader,
        labels,
        sampler,
        options.image.image_shape,
        options.label_mode,
        len(class_names),
        report,
        seed_given=options.sampling.seed is not None,
    )
    if cache is not None:
        cached = CachedImages(cache, loader, offset=cache_offset)
        pipeline = attrs.evolve(pipeline, load_images=cached)
    dataset = pipeline.build(live_plans(sampler))
    attach(dataset, pipeline, sampler, class_names, file_paths)
    return _with_cache_method(dataset, pipeline, options)


def cache_image_options(image: ImageOptions) -> dict[str, Any]:
    """What a cache file's key holds besides the files: every option that changes the pixels.

    With TensorFlow's version: its decoders and resizing give the pixels.
    """
    values = attrs.asdict(image)
    values["image_size"] = list(image.image_size)
    values["decoder"] = f"tensorflow {tf.__version__}"
    return values


def _open_cache(spec: str, file_paths: list[str], image: ImageOptions) -> DecodedCache:
    return open_decoded_cache(
        spec, file_paths, image.image_shape, image.interpolation, cache_image_options(image)
    )


def _with_cache_method(
    dataset: tf.data.Dataset, pipeline: Pipeline, options: DatasetOptions
) -> tf.data.Dataset:
    """Makes `dataset.cache()` give the per-sample decoded cache instead of tf.data's.

    `tf.data.Dataset.cache()` on a dataset of planned batches records the
    first epoch's batches and replays them in every later epoch: the plan
    is frozen (the sampler is asked for one epoch only). An attribute set
    on the dataset shadows the method, so `dataset.cache()` (memory) and
    `dataset.cache(filename)` (a cache file at that path), the calls Keras'
    performance guide recommends, return this dataset with the per-sample
    cache instead: same files, sampler (its epochs continue) and options,
    every epoch still reshuffled. Datasets derived from it
    (`dataset.map(f).cache()`) are plain tf.data datasets and keep the trap.
    """
    current = pipeline.load_images
    loader = current.loader if isinstance(current, CachedImages) else current
    # What a rebuild needs, without a reference from the dataset to itself.
    this = weakref.ref(dataset)
    sampler, class_names, file_paths = dataset.sampler, dataset.class_names, dataset.file_paths

    def cache(filename: str | os.PathLike[str] = "", name: str | None = None) -> tf.data.Dataset:
        """Returns the dataset with a per-sample decoded cache (tf.data's would freeze the plan).

        Args:
            filename: "" (default, as tf.data: in memory) or the path of a
                cache file (`cache=` of the dataset builders).
            name: Ignored (tf.data's op name).

        Returns:
            The same dataset (same sampler) reading through a per-sample
            cache; this dataset itself if it already has that cache.
        """
        del name
        spec = check_cache(MEMORY if os.fspath(filename) == "" else filename)
        assert spec is not None
        itself = this()
        if itself is not None and isinstance(current, CachedImages) and spec == options.cache:
            return itself
        store = _open_cache(spec, list(file_paths), options.image)
        cached = attrs.evolve(pipeline, load_images=CachedImages(store, loader))
        rebuilt = cached.build(live_plans(sampler))
        attach(rebuilt, cached, sampler, class_names, file_paths)
        return _with_cache_method(rebuilt, cached, attrs.evolve(options, cache=spec))

    dataset.cache = cache
    return dataset


def _drop_bad_files(
    file_paths: list[str],
    labels: np.ndarray[Any, Any],
    image: ImageOptions,
    skipped: dict[str, str],
    verbose: bool,
) -> tuple[list[str], np.ndarray[Any, Any]]:
    """`verify_images=True`: decodes every file once and drops those that fail."""
    bad = find_bad_files(file_paths, labels, image)
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
    options: DatasetOptions,
    label_mode: str | None,
) -> tf.data.Dataset | tuple[tf.data.Dataset, tf.data.Dataset]:
    """Splits the files if asked and returns the balanced dataset(s).

    With `subset="both"` the validation dataset is not shuffled (as in
    Keras) and `samples_per_epoch` applies to the training dataset only.

    Args:
        file_paths: One path per sample.
        labels: One integer label per sample.
        class_names: The class names.
        options: The validated arguments (`check_dataset_options`).
        label_mode: "int", "categorical", "binary" or None (it may differ
            from `options.label_mode`: a directory indexed without labels
            yields images only).

    Returns:
        A dataset, or a `(training, validation)` tuple for `subset="both"`.
        Each carries `skipped_files`, one `{path: reason}` dict shared by
        both datasets of `subset="both"`, and `decoded_cache`, one cache
        for both (training rows first). With `options.verify_images`,
        every file is decoded once first and those that cannot be loaded
        are dropped (with a `BadImageWarning`), before the split.

    Raises:
        MemoryError: If `cache="memory"` cannot fit in the available memory
            (checked before any image is decoded into it).
    """
    check_labels_for_mode(labels, class_names, label_mode)
    options = attrs.evolve(options, label_mode=label_mode)
    sampling = options.sampling
    skipped: dict[str, str] = {}
    if options.verify_images:
        file_paths, labels = _drop_bad_files(
            file_paths, labels, options.image, skipped, options.verbose
        )

    spe = sampling.samples_per_epoch
    # (indices into file_paths or None for all, shuffle, samples_per_epoch, subset name)
    subsets: list[tuple[np.ndarray[Any, Any] | None, bool, int | None, str | None]]
    if sampling.validation_split is None:
        subsets = [(None, sampling.shuffle, spe, None)]
    elif sampling.subset == "both":
        train_index, val_index = split(
            labels, sampling.validation_split, "both", sampling.split_seed, by=sampling.split_by
        )
        subsets = [
            (train_index, sampling.shuffle, spe, "training"),
            (val_index, False, None, "validation"),
        ]
    else:
        assert sampling.subset is not None
        index = split(
            labels,
            sampling.validation_split,
            sampling.subset,
            sampling.split_seed,
            by=sampling.split_by,
        )
        subsets = [(index, sampling.shuffle, spe, sampling.subset)]
    paths, samplers = [], []
    for chosen, shuffle, samples_per_epoch, subset in subsets:
        subset_paths = file_paths if chosen is None else [file_paths[i] for i in chosen.tolist()]
        if options.verbose and subset is not None:
            print(f"Using {len(subset_paths)} files for {subset}.")
        paths.append(subset_paths)
        samplers.append(
            _sampler(
                subset_paths,
                labels if chosen is None else labels[chosen],
                class_names,
                options,
                shuffle=shuffle,
                samples_per_epoch=samples_per_epoch,
                subset=subset,
            )
        )
    cache = None
    if options.cache is not None:  # one cache for all subsets, opened once nothing can fail
        cache = _open_cache(options.cache, [p for ps in paths for p in ps], options.image)
    datasets = []
    offset = 0
    for subset_paths, sampler in zip(paths, samplers, strict=True):
        datasets.append(
            _one_dataset(subset_paths, sampler, class_names, options, skipped, cache, offset)
        )
        offset += len(subset_paths)
    return datasets[0] if len(datasets) == 1 else (datasets[0], datasets[1])
