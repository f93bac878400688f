"""`balanced_image_dataset_from_directory`: balanced P x K batches of images."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from balanced_sampler import ALLOWED_FORMATS, index_directory
from kerasgen_tf._args import check_bool
from kerasgen_tf._datasets import check_dataset_options, make_datasets
from kerasgen_tf._gfile import scandir_for

__all__ = ["balanced_image_dataset_from_directory"]


@contextlib.contextmanager
def _garbage_collector_paused() -> Iterator[None]:
    """Pauses Python's cyclic garbage collector (if on) while the block runs.

    Listing a folder tree allocates a few small objects per folder and
    keeps them, which makes Python run a full collection that walks every
    object of the process: with TensorFlow loaded, about 0.2 s of the 0.4 s
    it takes to list 50,000 files in 10,000 folders. The listing makes no
    reference cycles, so nothing is left for the collector to free.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def balanced_image_dataset_from_directory(
    directory: str | os.PathLike[str],
    num_classes_per_batch: int = 2,
    num_images_per_class: int = 16,
    labels: str | Sequence[int] | np.ndarray[Any, Any] | None = "inferred",
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
    follow_links: bool = False,
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
    """Generates a `tf.data.Dataset` of balanced batches from image files in a directory.

    If your directory structure is:

    ```
    main_directory/
    ...class_a/
    ......a_image_1.jpg
    ......a_image_2.jpg
    ...class_b/
    ......b_image_1.jpg
    ......b_image_2.jpg
    ```

    Then calling `balanced_image_dataset_from_directory(main_directory)`
    returns a dataset whose every batch holds `num_classes_per_batch`
    classes (P) with `num_images_per_class` images (K) each, as planned by a
    `balanced_sampler.BalancedBatchSampler`, together with labels 0 and 1
    (0 corresponding to `class_a` and 1 corresponding to `class_b`).

    The arguments shared with `keras.utils.image_dataset_from_directory`
    mean the same, and an image comes out with the same pixels as Keras'
    loader gives it. Files are indexed as Keras indexes them, plus `.webp`.

    Each pass over the dataset (each new iterator, e.g. each epoch of
    `model.fit`) plays the sampler's next epoch, reshuffled. The number of
    batches is exact and known (`len(dataset)`), so `model.fit` needs no
    `steps_per_epoch`.

    - `safe_triplet=False` (exhaustive): every image exactly once per epoch
      in groups of up to K images of P distinct classes; late batches may be
      smaller or hold fewer classes, so batch sizes vary.
    - `safe_triplet=True` (fixed): every batch is exactly P classes x K
      images and has a static batch dimension P * K (e.g. for
      `jit_compile=True`); an epoch has `samples_per_epoch / (P * K)`
      batches and shows each class according to `class_weights`.

    Args:
        directory: Directory where the data is located. If `labels` is
            `"inferred"`, it should contain subdirectories, each containing
            images for a class. Otherwise, the directory structure is
            ignored. Any path `tf.io.gfile` reads works, e.g.
            `"gs://bucket/images"`: paths with a URL scheme are listed with
            `tf.io.gfile`, local ones with `os.scandir`.
        num_classes_per_batch: P, the number of distinct classes per batch.
            Defaults to 2.
        num_images_per_class: K, the number of images of each class per
            batch. Defaults to 16.
        labels: Either `"inferred"` (labels are generated from the directory
            structure), `None` (the dataset yields images only, still
            balanced by the class folders, as in kerasgen 0.1.3), or a
            list/tuple of integer labels of the same size as the number of
            image files found in the directory, sorted according to the
            alphanumeric order of the image file paths (obtained via
            `os.walk(directory)` in Python); the batches are then balanced
            by those labels.
        label_mode: String describing the encoding of `labels`:
            - `"int"`: the labels are encoded as integers (int32, e.g. for
                `sparse_categorical_crossentropy` loss).
            - `"categorical"`: the labels are encoded as a categorical
                vector (float32 one-hot, e.g. for `categorical_crossentropy`).
            - `"binary"`: the labels (there can be only 2) are encoded as
                `float32` scalars with values 0 or 1 (e.g. for
                `binary_crossentropy`).
            - `None` (no labels: images only, still balanced).
        class_names: Only valid if `labels` is `"inferred"` or None. The
            explicit list of class names (must name the subdirectories),
            used to control the order of the classes (otherwise
            alphanumerical order is used).
        color_mode: One of `"grayscale"`, `"rgb"`, `"rgba"`. Whether the
            images will be converted to have 1, 3, or 4 channels. Defaults
            to `"rgb"`.
        image_size: Size to resize images to after they are read from disk,
            specified as `(height, width)` or one int for a square. Defaults
            to `(256, 256)`.
        shuffle: Whether to shuffle the images, classes and batches of each
            epoch. If `False`, every epoch plays the same deterministic plan.
            Defaults to `True`.
        seed: Optional random seed (an int >= 0) for the split and the
            sampler. The same seed gives the same batches, in any process.
            `None` draws one (see `dataset.sampler.seed`).
        validation_split: Optional float between 0 and 1, fraction of data
            to reserve for validation (stratified by class unless
            `split_by="classes"`).
        subset: Subset of the data to return. One of `"training"`,
            `"validation"`, or `"both"`. Only used if `validation_split` is
            set. When `subset="both"`, the utility returns a tuple of two
            datasets (the training and validation datasets respectively);
            the validation one is not shuffled, as in Keras.
        safe_triplet: If `True`, every batch has exactly P classes x K
            images (fixed mode); if `False` (default), every image appears
            exactly once per epoch (exhaustive mode).
        samples_per_epoch: Only with `safe_triplet=True`: the number of
            images per epoch, a multiple of P * K. Defaults to the number
            of images rounded up to a multiple of P * K. With
            `subset="both"` it applies to the training dataset only.
        interpolation: String, the interpolation method used when resizing
            images. Supports `"bilinear"`, `"nearest"`, `"bicubic"`,
            `"area"`, `"lanczos3"`, `"lanczos5"`, `"gaussian"`,
            `"mitchellcubic"`. Defaults to `"bilinear"`.
        follow_links: Whether to visit subdirectories pointed to by
            symlinks. Defaults to `False`.
        crop_to_aspect_ratio: If `True`, resize the images without aspect
            ratio distortion, cropping the largest centred window that has
            the target aspect ratio.
        pad_to_aspect_ratio: If `True`, resize the images without aspect
            ratio distortion, padding them to the target aspect ratio.
        data_format: `None` (Keras' `image_data_format()`),
            `"channels_last"` or `"channels_first"`.
        verbose: Whether to print the number of files and classes found.
            Defaults to `True`.
        class_weights: Only with `safe_triplet=True`: how often each class
            is drawn. `"proportional"` (default, to its size, as kerasgen
            0.1.3), `"uniform"`, a real exponent alpha (weights
            `n_c ** alpha`), a mapping `{label: weight}` or a sequence
            indexed by label.
        small_classes: Only with `safe_triplet=True`: classes with fewer
            than K images are `"pad"`-ded by repeating their images
            (default), `"drop"`-ped with a warning, or an `"error"`.
        split_by: `"samples"` (default: a stratified split, every class on
            both sides) or `"classes"` (whole classes on each side, for
            open-set evaluation).
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
        on_bad_image: What happens when a file cannot be loaded (missing,
            empty, not an image, truncated or corrupt): `"error"` (default)
            stops iteration with a `tf.errors.InvalidArgumentError` that
            names the file and what is wrong with it; `"skip"` replaces the
            file, in every batch that holds it, by another image of the
            same class (batches keep their P x K shape), issues one
            `kerasgen_tf.BadImageWarning` per file and records it in
            `dataset.skipped_files`. Batches without a bad file are decoded
            at full speed either way.
        verify_images: If `True`, every file is decoded once, in parallel,
            before any batch is planned; the files that cannot be loaded are
            dropped (before the split), with one `BadImageWarning` giving
            their number and first paths, and listed in
            `dataset.skipped_files`. Costs one decoding pass over the data.
            Defaults to `False`.
        cache: `None` (default: every epoch decodes its images), `"memory"`
            or the path of a cache file. Each image is decoded and resized
            once, the first time a batch needs it, and kept per sample (one
            row per file, never per batch); later batches gather their
            images from the cache, so every epoch is still the sampler's
            own plan (reshuffled, same batches as without a cache) at
            memory speed. Images are stored as uint8 (within 0.5 of the
            uncached float32 pixels; float16, within 0.125, for the
            interpolations that overshoot 0..255), N x H x W x C bytes in
            all. `"memory"` raises a `MemoryError` before anything is
            stored if that cannot fit in the available memory. A file is
            memory-mapped, reused by the next run when the files (paths,
            sizes, modification times) and image options are the same and
            rebuilt otherwise; rows are trusted only once synced to disk,
            so a killed run never leaves a half-written row; one process
            fills it at a time (another fills a private temporary copy,
            with a `DecodedCacheWarning`). With `subset="both"` both
            datasets share one cache. `dataset.cache()` gives this cache
            too (tf.data's own `cache()` would replay the first epoch's
            batches forever). See the README, "The decoded cache".

    Returns:
        A `tf.data.Dataset`, or a tuple `(train_dataset, val_dataset)` if
        `subset="both"`. It yields `images`, a float32 tensor (values in
        0..255) of shape `(batch, height, width, channels)` (or
        `(batch, channels, height, width)` for `"channels_first"`), or
        `(images, labels)`:
        - `"int"`: int32 labels of shape `(batch,)`;
        - `"categorical"`: float32 one-hot labels `(batch, num_classes)`;
        - `"binary"`: float32 labels of shape `(batch, 1)`.
        The dataset carries `class_names` (the class of label `i` is
        `class_names[i]`), `file_paths` (the files of this subset; the
        sampler's index `j` is `file_paths[j]`) and `sampler` (its
        `plan(epoch)` is what epoch `epoch` yields), and `skipped_files`
        (a `{path: reason}` dict of the files dropped by `verify_images` or
        skipped by `on_bad_image="skip"`, filled as they are met), and
        `decoded_cache` (the `kerasgen_tf.decoded_cache.DecodedCache`, or
        None without `cache`).

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an argument has a wrong value, if no image is found,
            or if the data cannot be batched as asked (e.g. fewer classes
            than `num_classes_per_batch`).
        FileNotFoundError: If `directory` does not exist (or the folder of
            a `cache` file).
        MemoryError: If `cache="memory"` cannot fit in the available memory.
    """
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
    follow = check_bool("follow_links", follow_links)
    mode = options.label_mode
    if labels is None or mode is None:
        mode = None  # Images only, but the batches are still balanced by class folder.
        if labels is None:
            labels = "inferred"
    # `directory`, `labels` and `class_names` are checked by `index_directory`, before it
    # lists anything.
    index_files: Any = index_directory  # Its overloads cannot see the checks it makes.
    with _garbage_collector_paused():
        file_paths, file_labels, found_names = index_files(
            directory,
            labels,
            class_names=class_names,
            formats=ALLOWED_FORMATS,
            follow_links=follow,
            scandir=scandir_for(directory),
        )
    if options.verbose:
        print(f"Found {len(file_paths)} files belonging to {len(found_names)} classes.")
    return make_datasets(file_paths, file_labels, found_names, options, mode)
