"""Up-front validation of the arguments of the dataset functions.

Every check runs before any file is listed or any tensor is built, and
raises with a Keras-style message that ends with `Received: name=value`.
This module imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import numbers
from typing import Any, Literal

import attrs

from balanced_sampler.checks import (
    check_bool,
    check_sampler_options,
    check_seed,
    check_validation_split,
    is_int,
)

__all__ = [
    "COLOR_MODES",
    "INTERPOLATIONS",
    "LABEL_MODES",
    "ON_BAD_IMAGE",
    "ImageOptions",
    "SamplingOptions",
    "check_bool",
    "check_class_names",
    "check_image_options",
    "check_label_mode",
    "check_on_bad_image",
    "check_sampling_options",
]

LABEL_MODES = ("int", "categorical", "binary", None)
COLOR_MODES = {"grayscale": 1, "rgb": 3, "rgba": 4}
INTERPOLATIONS = (
    "bilinear",
    "nearest",
    "bicubic",
    "area",
    "lanczos3",
    "lanczos5",
    "gaussian",
    "mitchellcubic",
)
DATA_FORMATS = ("channels_last", "channels_first")
SUBSETS = ("training", "validation", "both")
SPLIT_BY = ("samples", "classes")
ON_BAD_IMAGE = ("error", "skip")


@attrs.frozen
class ImageOptions:
    """How every image is read, decoded and resized (validated)."""

    image_size: tuple[int, int]
    num_channels: int
    interpolation: str
    crop_to_aspect_ratio: bool
    pad_to_aspect_ratio: bool
    data_format: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The shape of one output image, in `data_format` order."""
        height, width = self.image_size
        if self.data_format == "channels_first":
            return (self.num_channels, height, width)
        return (height, width, self.num_channels)


@attrs.frozen
class SamplingOptions:
    """How batches are planned and the data split (validated)."""

    num_classes_per_batch: int
    num_images_per_class: int
    shuffle: bool
    seed: int | None
    validation_split: float | None
    subset: Literal["training", "validation", "both"] | None
    safe_triplet: bool
    samples_per_epoch: int | None
    class_weights: Any
    small_classes: str
    split_by: Literal["samples", "classes"]
    categories: Any
    """None or a mapping {label or class name: category}, checked against the labels later."""
    categories_per_batch: int
    hard_batch_fraction: float

    @property
    def split_seed(self) -> int:
        """The seed of the training / validation split.

        Without shuffling, Keras splits deterministically and needs no seed;
        the split here is always seeded, so a fixed one stands in.
        """
        return 0 if self.seed is None else self.seed


def check_label_mode(label_mode: object) -> str | None:
    """Validates `label_mode` (one of "int", "categorical", "binary", None).

    Args:
        label_mode: The value to check.

    Returns:
        `label_mode`.

    Raises:
        ValueError: If `label_mode` is not one of the allowed values.
    """
    if label_mode is not None and not (isinstance(label_mode, str) and label_mode in LABEL_MODES):
        raise ValueError(
            '`label_mode` argument must be one of "int", "categorical", "binary", '
            f"or None. Received: label_mode={label_mode!r}"
        )
    return label_mode


def check_class_names(class_names: object) -> list[str] | None:
    """Validates `class_names`: None or a list/tuple of distinct strings.

    Args:
        class_names: The value to check.

    Returns:
        A list copy of `class_names`, or None.

    Raises:
        TypeError: If it is not a list/tuple of strings.
        ValueError: If a name is repeated.
    """
    if class_names is None:
        return None
    if isinstance(class_names, str) or not isinstance(class_names, (list, tuple)):
        raise TypeError(
            "`class_names` must be None or a list/tuple of class names. "
            f"Received: class_names={class_names!r}"
        )
    names = list(class_names)
    if not all(isinstance(name, str) for name in names):
        raise TypeError(
            f"`class_names` must contain strings only. Received: class_names={class_names!r}"
        )
    if len(set(names)) != len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(
            f"`class_names` must not repeat a name (repeated: {repeated}). "
            f"Received: class_names={class_names!r}"
        )
    return names


def _check_image_size(image_size: object) -> tuple[int, int]:
    if is_int(image_size):
        size = (int(image_size), int(image_size))
    elif (
        isinstance(image_size, (list, tuple))
        and len(image_size) == 2
        and all(is_int(v) for v in image_size)
    ):
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise ValueError(
            "Invalid `image_size` value. Expected an integer or a tuple of 2 integers. "
            f"Received: image_size={image_size!r}"
        )
    if min(size) < 1:
        raise ValueError(
            "`image_size` must hold positive integers (height, width). "
            f"Received: image_size={image_size!r}"
        )
    return size


def _check_data_format(data_format: object) -> str:
    if data_format is None:
        return _default_data_format()
    value = str(data_format).lower() if isinstance(data_format, str) else None
    if value not in DATA_FORMATS:
        raise ValueError(
            "The `data_format` argument must be one of "
            "{'channels_first', 'channels_last'} or None. "
            f"Received: data_format={data_format!r}"
        )
    return value


def _default_data_format() -> str:
    """Keras' global image data format, or "channels_last" without Keras."""
    try:
        import keras
    except ImportError:  # pragma: no cover - TensorFlow >= 2.16 ships Keras 3.
        return "channels_last"
    return str(keras.config.image_data_format())


def check_image_options(
    *,
    color_mode: object,
    image_size: object,
    interpolation: object,
    crop_to_aspect_ratio: object,
    pad_to_aspect_ratio: object,
    data_format: object,
) -> ImageOptions:
    """Validates the image arguments, as Keras' `image_dataset_from_directory` does.

    Args:
        color_mode: "grayscale", "rgb" or "rgba".
        image_size: An int or a (height, width) tuple/list of ints.
        interpolation: One of `INTERPOLATIONS` (any case).
        crop_to_aspect_ratio: bool.
        pad_to_aspect_ratio: bool (not together with crop_to_aspect_ratio).
        data_format: None (Keras' `image_data_format()`), "channels_last"
            or "channels_first".

    Returns:
        The validated `ImageOptions`.

    Raises:
        TypeError: If a flag is not a bool.
        ValueError: If a value is not allowed.
    """
    if not (isinstance(color_mode, str) and color_mode in COLOR_MODES):
        raise ValueError(
            '`color_mode` must be one of {"rgb", "rgba", "grayscale"}. '
            f"Received: color_mode={color_mode!r}"
        )
    size = _check_image_size(image_size)
    method = interpolation.lower() if isinstance(interpolation, str) else None
    if method not in INTERPOLATIONS:
        raise ValueError(
            f"Argument `interpolation` should be one of {INTERPOLATIONS}. "
            f"Received: interpolation={interpolation!r}"
        )
    crop = check_bool("crop_to_aspect_ratio", crop_to_aspect_ratio)
    pad = check_bool("pad_to_aspect_ratio", pad_to_aspect_ratio)
    if crop and pad:
        raise ValueError(
            "Only one of `pad_to_aspect_ratio`, `crop_to_aspect_ratio` can be set to "
            f"`True`. Received: crop_to_aspect_ratio={crop_to_aspect_ratio!r}, "
            f"pad_to_aspect_ratio={pad_to_aspect_ratio!r}"
        )
    return ImageOptions(
        image_size=size,
        num_channels=COLOR_MODES[color_mode],
        interpolation=method,
        crop_to_aspect_ratio=crop,
        pad_to_aspect_ratio=pad,
        data_format=_check_data_format(data_format),
    )


def _is_zero(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == 0


def _check_validation(
    validation_split: object, subset: object, shuffle: bool, seed: int | None
) -> tuple[float | None, Any]:
    # As Keras 3.15: None and 0 both mean "no split"; anything else is a fraction in (0, 1),
    # checked by the core's `split` check.
    no_split = validation_split is None or _is_zero(validation_split)
    split = None if no_split else check_validation_split(validation_split)
    if subset is not None and not (isinstance(subset, str) and subset in SUBSETS):
        raise ValueError(
            '`subset` must be either "training", "validation" or "both". '
            f"Received: subset={subset!r}"
        )
    if (split is None) != (subset is None):
        raise ValueError(
            "If `subset` is set, `validation_split` must be set, and inversely. "
            f"Received: validation_split={validation_split!r}, subset={subset!r}"
        )
    if split is not None and shuffle and seed is None:
        raise ValueError(
            "If using `validation_split` and shuffling the data, you must provide a "
            "`seed` argument, to make sure that there is no overlap between the "
            "training and validation subset. Received: seed=None"
        )
    return split, subset


def check_sampling_options(
    *,
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
) -> SamplingOptions:
    """Validates the batching and splitting arguments.

    Only what can be checked without the data is checked here; the sampler
    checks the rest (e.g. `num_classes_per_batch` against the number of
    classes) when it is built.

    Args:
        num_classes_per_batch: P, a positive int.
        num_images_per_class: K, a positive int.
        shuffle: bool.
        seed: None or an int >= 0.
        validation_split: None or 0 (no split, as in Keras) or a float in
            (0, 1).
        subset: None, "training", "validation" or "both".
        safe_triplet: bool.
        samples_per_epoch: None, or (with `safe_triplet=True`) a positive
            multiple of P * K.
        class_weights: "proportional", "uniform", a real, a mapping or a
            sequence (non-default values need `safe_triplet=True`).
        small_classes: "pad", "drop" or "error" (non-default values need
            `safe_triplet=True`).
        split_by: "samples" or "classes".
        categories: None or a mapping {label or class name: category}
            (needs `safe_triplet=True`; checked against the labels when the
            sampler is built).
        categories_per_batch: Categories per batch (with `categories`).
        hard_batch_fraction: The share of hard-class batches, in [0, 1].

    Returns:
        The validated `SamplingOptions`.

    Raises:
        TypeError: If a value has the wrong type.
        ValueError: If a value is not allowed, or an option of fixed batches
            is given with `safe_triplet=False`.
    """
    check_sampler_options(
        num_classes_per_batch,
        num_images_per_class,
        safe_triplet=safe_triplet,
        samples_per_epoch=samples_per_epoch,
        class_weights=class_weights,
        small_classes=small_classes,
        shuffle=shuffle,
        categories=categories,
        hard_batch_fraction=hard_batch_fraction,
        categories_per_batch=categories_per_batch,
    )
    seed_int = check_seed(seed)
    do_shuffle = bool(shuffle)
    split, subset_name = _check_validation(validation_split, subset, do_shuffle, seed_int)
    if not (isinstance(split_by, str) and split_by in SPLIT_BY):
        raise ValueError(
            f'`split_by` must be "samples" or "classes". Received: split_by={split_by!r}'
        )
    # `check_sampler_options` has checked P, K and `samples_per_epoch`: only converted here.
    return SamplingOptions(
        num_classes_per_batch=int(num_classes_per_batch),  # type: ignore[call-overload]
        num_images_per_class=int(num_images_per_class),  # type: ignore[call-overload]
        shuffle=do_shuffle,
        seed=seed_int,
        validation_split=split,
        subset=subset_name,
        safe_triplet=bool(safe_triplet),
        samples_per_epoch=None if samples_per_epoch is None else int(samples_per_epoch),  # type: ignore[call-overload]
        class_weights=class_weights,
        small_classes=str(small_classes),
        split_by=split_by,  # type: ignore[arg-type]
        categories=categories,
        categories_per_batch=int(categories_per_batch),  # type: ignore[call-overload]
        hard_batch_fraction=float(hard_batch_fraction),  # type: ignore[arg-type]
    )


def check_on_bad_image(on_bad_image: object) -> str:
    """Validates `on_bad_image` ("error" or "skip").

    Args:
        on_bad_image: The value to check.

    Returns:
        `on_bad_image`.

    Raises:
        ValueError: If it is not one of `ON_BAD_IMAGE`.
    """
    if not (isinstance(on_bad_image, str) and on_bad_image in ON_BAD_IMAGE):
        raise ValueError(
            '`on_bad_image` must be "error" (stop, naming the file) or "skip" (replace '
            "the file by another image of its class and warn). "
            f"Received: on_bad_image={on_bad_image!r}"
        )
    return on_bad_image
