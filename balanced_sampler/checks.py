"""Argument checks whose messages say what was received and what is allowed."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt

from balanced_sampler._classes import I64

CLASS_WEIGHT_NAMES = ("proportional", "uniform")
SMALL_CLASS_POLICIES = ("pad", "drop", "error")


def is_int(value: object) -> TypeGuard[numbers.Integral]:
    """Whether `value` is an integer (Python or numpy), but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value: object, *, minimum: int) -> int:
    """Returns `value` as an int, or raises if it is not an int >= `minimum`.

    Raises:
        TypeError: If `value` is not an integer.
        ValueError: If `value` is below `minimum`.
    """
    if not is_int(value):
        raise TypeError(
            f"`{name}` must be an integer >= {minimum}. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    number = int(value)
    if number < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
    return number


def check_bool(name: str, value: object) -> bool:
    """Returns `value` if it is a bool, else raises a TypeError naming `name`.

    Raises:
        TypeError: If `value` is not a bool.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"`{name}` must be True or False. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    return bool(value)


def check_seed(seed: object) -> int | None:
    """Returns `seed` if it is None or an int >= 0, else raises naming `seed`.

    Raises:
        TypeError: If `seed` is not None or an integer.
        ValueError: If `seed` is negative.
    """
    if seed is None:
        return None
    if not is_int(seed):
        raise TypeError(f"`seed` must be None or an integer >= 0. Received: seed={seed!r}")
    if int(seed) < 0:
        raise ValueError(f"`seed` must be None or an integer >= 0. Received: seed={seed!r}")
    return int(seed)


def check_sampler_options(
    num_classes_per_batch: object,
    num_images_per_class: object,
    *,
    safe_triplet: object = False,
    samples_per_epoch: object = None,
    class_weights: object = "proportional",
    small_classes: object = "pad",
    shuffle: object = True,
    num_shards: object = 1,
    shard_index: object = 0,
) -> None:
    """Checks every `BalancedBatchSampler` option that does not need the labels.

    `BalancedBatchSampler` runs these checks itself; callers that build a
    sampler only after expensive work (listing a folder) run them first.

    Raises:
        TypeError: If a value has the wrong type.
        ValueError: If a value is not allowed, e.g. `samples_per_epoch` not a
            multiple of P * K, or a fixed-mode option with `safe_triplet=False`.
    """
    p = check_int("num_classes_per_batch", num_classes_per_batch, minimum=1)
    k = check_int("num_images_per_class", num_images_per_class, minimum=1)
    fixed = check_bool("safe_triplet", safe_triplet)
    check_bool("shuffle", shuffle)
    shards = check_int("num_shards", num_shards, minimum=1)
    index = check_int("shard_index", shard_index, minimum=0)
    if index >= shards:
        raise ValueError(
            f"`shard_index` must be in [0, num_shards) = [0, {shards}). "
            f"Received: shard_index={index}"
        )
    if not (isinstance(small_classes, str) and small_classes in SMALL_CLASS_POLICIES):
        raise ValueError(
            f"`small_classes` must be one of {SMALL_CLASS_POLICIES}. "
            f"Received: small_classes={small_classes!r}"
        )
    _check_class_weights_kind(class_weights)
    if not fixed:
        for name, value, default in (
            ("samples_per_epoch", samples_per_epoch, None),
            ("class_weights", class_weights, "proportional"),
            ("small_classes", small_classes, "pad"),
        ):
            if not (value is default or (isinstance(value, str) and value == default)):
                raise ValueError(
                    f"`{name}` only applies when safe_triplet=True (exhaustive epochs show "
                    f"every sample exactly once). Received: {name}={value!r} with "
                    "safe_triplet=False"
                )
    elif samples_per_epoch is not None:
        samples = check_int("samples_per_epoch", samples_per_epoch, minimum=1)
        batch = p * k
        if samples % batch:
            raise ValueError(
                "`samples_per_epoch` must be a multiple of the batch size "
                f"num_classes_per_batch * num_images_per_class = {batch}. "
                f"Received: samples_per_epoch={samples} "
                f"(nearest multiples: {samples // batch * batch or batch} and "
                f"{(samples // batch + 1) * batch})"
            )


_CLASS_WEIGHTS_ALLOWED = (
    '"proportional", "uniform", a real exponent alpha (weights n_c ** alpha), '
    "a mapping {label: weight} or a sequence of weights indexed by label"
)


def _check_class_weights_kind(class_weights: object) -> None:
    """Checks the kind of `class_weights` (its per-class values need the labels)."""
    if isinstance(class_weights, str):
        if class_weights not in CLASS_WEIGHT_NAMES:
            raise ValueError(
                f"`class_weights` must be {_CLASS_WEIGHTS_ALLOWED}. "
                f"Received: class_weights={class_weights!r}"
            )
    elif isinstance(class_weights, (bool, np.bool_)) or not isinstance(
        class_weights, (numbers.Real, Mapping, Sequence, np.ndarray)
    ):
        raise TypeError(
            f"`class_weights` must be {_CLASS_WEIGHTS_ALLOWED}. "
            f"Received: class_weights={class_weights!r} of type {type(class_weights).__name__}"
        )


def as_labels(labels: object) -> I64:
    """Returns the labels as a read-only 1-D int64 array.

    Raises:
        TypeError: If the labels are not integers.
        ValueError: If the labels are empty or not one-dimensional.
    """
    if labels is None or isinstance(labels, (str, bytes)):
        raise TypeError(
            "`labels` must be a 1-D sequence of integer class labels, one per sample. "
            f"Received: labels={labels!r}"
        )
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(
            "`labels` must be one-dimensional (one integer label per sample). "
            f"Received an array of shape {array.shape}"
        )
    if array.size == 0:
        raise ValueError("`labels` is empty: there are no samples to sample from.")
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            "`labels` must hold integers (one class id per sample). "
            f"Received dtype {array.dtype}, e.g. {array[:3].tolist()!r}"
        )
    out = array.astype(np.int64, copy=True)
    out.flags.writeable = False
    return out


def class_weight_vector(
    class_weights: object, label_values: I64, sizes: I64
) -> npt.NDArray[np.float64]:
    """Resolves `class_weights` to one non-negative float per class.

    Args:
        class_weights: "proportional", "uniform", a real exponent alpha
            (weights n_c ** alpha), a mapping {label: weight} covering every
            label, or a sequence indexed by label value.
        label_values: The label value of each class.
        sizes: The number of samples of each class.

    Returns:
        A float64 array of length `len(label_values)`.

    Raises:
        TypeError: For a value of an unsupported type.
        ValueError: For unknown names, missing labels, negative or
            non-finite weights.
    """
    _check_class_weights_kind(class_weights)
    weights: npt.NDArray[np.float64]
    if isinstance(class_weights, str):
        if class_weights == "proportional":
            weights = sizes.astype(np.float64)
        else:
            weights = np.ones(len(sizes), dtype=np.float64)
    elif isinstance(class_weights, numbers.Real) and not isinstance(class_weights, bool):
        alpha = float(class_weights)
        if not np.isfinite(alpha):
            raise ValueError(
                f"`class_weights` as an exponent must be finite. Received: class_weights={alpha}"
            )
        weights = sizes.astype(np.float64) ** alpha
    elif isinstance(class_weights, Mapping):
        missing = [int(v) for v in label_values if int(v) not in class_weights]
        if missing:
            raise ValueError(
                "`class_weights` must give a weight for every label present. "
                f"Missing {len(missing)} label(s), e.g. {missing[:5]}"
            )
        weights = np.array([_weight(class_weights[int(v)]) for v in label_values])
    else:  # a sequence or an array
        table = np.asarray(class_weights, dtype=np.float64)
        if table.ndim != 1 or (len(label_values) and label_values.min() < 0):
            raise ValueError(
                "`class_weights` as a sequence must be 1-D and is indexed by label value, "
                "so labels must be >= 0."
            )
        if len(table) <= int(label_values.max()):
            raise ValueError(
                "`class_weights` as a sequence is indexed by label value and must have "
                f"length > {int(label_values.max())} (the largest label). "
                f"Received length {len(table)}"
            )
        weights = table[label_values]
    bad = ~np.isfinite(weights) | (weights < 0)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            "`class_weights` must be finite and >= 0 for every class. "
            f"Received {weights[first]!r} for label {int(label_values[first])}"
        )
    return weights


def _weight(value: Any) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"Each class weight must be a real number. Received: {value!r}")
    return float(value)
