"""Argument checks whose messages say what was received and what is allowed."""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt

from balanced_sampler._classes import I64

CLASS_WEIGHT_NAMES = ("proportional", "uniform")
SMALL_CLASS_POLICIES = ("pad", "drop", "error")
EXHAUSTIVE_PRIORITIES = ("exact", "spread")


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


def check_seed(seed: object, *, required_because: str | None = None) -> int | None:
    """Returns `seed` if it is None or an int >= 0, else raises naming `seed`.

    Args:
        seed: The value to check.
        required_because: If given, None is refused too, with this reason in
            the message (e.g. why the same seed must be passed twice).

    Returns:
        The seed as an int, or None (only without `required_because`).

    Raises:
        TypeError: If `seed` is not None or an integer.
        ValueError: If `seed` is negative, or None when it is required.
    """
    allowed = "a non-negative integer" if required_because else "None or an integer >= 0"
    if seed is None:
        if required_because:
            raise ValueError(
                f"`seed` is required: {required_because}. Pass {allowed}. Received: seed=None"
            )
        return None
    if not is_int(seed):
        raise TypeError(f"`seed` must be {allowed}. Received: seed={seed!r}")
    if int(seed) < 0:
        raise ValueError(f"`seed` must be {allowed}. Received: seed={seed!r}")
    return int(seed)


def check_validation_split(validation_split: object) -> float:
    """Returns `validation_split` as a float strictly between 0 and 1, or raises.

    Raises:
        TypeError: If it is not a real number.
        ValueError: If it is not strictly between 0 and 1 (NaN included).
    """
    if isinstance(validation_split, (bool, np.bool_)) or not isinstance(
        validation_split, numbers.Real
    ):
        raise TypeError(
            "`validation_split` must be a float strictly between 0 and 1. "
            f"Received: validation_split={validation_split!r}"
        )
    value = float(validation_split)
    if not 0.0 < value < 1.0:  # Also rejects NaN.
        raise ValueError(
            "`validation_split` must be strictly between 0 and 1. "
            f"Received: validation_split={validation_split!r}"
        )
    return value


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
    exhaustive_priority: object = "exact",
    class_neighbors: object = None,
    categories: object = None,
    hard_batch_fraction: object = 1.0,
    categories_per_batch: object = 1,
) -> None:
    """Checks every `BalancedBatchSampler` option that does not need the labels.

    `BalancedBatchSampler` runs these checks itself; callers that build a
    sampler only after expensive work (listing a folder) run them first.
    (`class_neighbors` and `categories` are checked against the labels by
    `balanced_sampler.class_tables`; here only whether they may be given.)

    Raises:
        TypeError: If a value has the wrong type.
        ValueError: If a value is not allowed, e.g. `samples_per_epoch` not a
            multiple of P * K, a fixed-mode option with `safe_triplet=False`,
            `exhaustive_priority` other than "exact" with
            `safe_triplet=True`, both `class_neighbors` and `categories`,
            `hard_batch_fraction` outside [0, 1] or `categories_per_batch`
            without `categories` or above P.
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
    if not (isinstance(exhaustive_priority, str) and exhaustive_priority in EXHAUSTIVE_PRIORITIES):
        raise ValueError(
            f"`exhaustive_priority` must be one of {EXHAUSTIVE_PRIORITIES}. "
            f"Received: exhaustive_priority={exhaustive_priority!r}"
        )
    _check_class_weights_kind(class_weights)
    check_hard_batch_options(
        p,
        fixed=fixed,
        class_neighbors=class_neighbors,
        categories=categories,
        hard_batch_fraction=hard_batch_fraction,
        categories_per_batch=categories_per_batch,
    )
    if fixed and exhaustive_priority != "exact":
        raise ValueError(
            "`exhaustive_priority` only applies when safe_triplet=False (fixed epochs hold "
            f"exact P x K batches only). Received: exhaustive_priority={exhaustive_priority!r} "
            "with safe_triplet=True"
        )
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
            below, above = samples // batch * batch, (samples // batch + 1) * batch
            hint = (
                f"nearest multiples: {below} and {above}"
                if below
                else f"the smallest allowed value is {above}"
            )
            raise ValueError(
                "`samples_per_epoch` must be a multiple of the batch size "
                f"num_classes_per_batch * num_images_per_class = {batch}. "
                f"Received: samples_per_epoch={samples} ({hint})"
            )


def check_hard_batch_options(
    p: int,
    *,
    fixed: bool,
    class_neighbors: object,
    categories: object,
    hard_batch_fraction: object,
    categories_per_batch: object,
) -> float:
    """Checks the hard-class batch options that do not need the labels.

    Args:
        p: `num_classes_per_batch` (already checked).
        fixed: `safe_triplet`.
        class_neighbors: The neighbour table or None (its content is checked
            against the labels elsewhere).
        categories: The categories mapping or None (idem).
        hard_batch_fraction: The share of hard batches.
        categories_per_batch: Categories per batch.

    Returns:
        `hard_batch_fraction` as a float.

    Raises:
        TypeError: If `hard_batch_fraction` is not a real number or
            `categories_per_batch` not an integer.
        ValueError: If an option is given with `safe_triplet=False`, both
            `class_neighbors` and `categories` are given, the fraction is
            outside [0, 1], or `categories_per_batch` is given without
            `categories` or above `num_classes_per_batch`.
    """
    if isinstance(hard_batch_fraction, (bool, np.bool_)) or not isinstance(
        hard_batch_fraction, numbers.Real
    ):
        raise TypeError(
            "`hard_batch_fraction` must be a number between 0 and 1 (the share of each "
            "epoch's batches dealt as neighbourhoods or categories). Received: "
            f"hard_batch_fraction={hard_batch_fraction!r} of type "
            f"{type(hard_batch_fraction).__name__}"
        )
    fraction = float(hard_batch_fraction)
    if not 0.0 <= fraction <= 1.0:  # also rejects NaN
        raise ValueError(
            "`hard_batch_fraction` must be between 0 and 1. "
            f"Received: hard_batch_fraction={hard_batch_fraction!r}"
        )
    per_batch = check_int("categories_per_batch", categories_per_batch, minimum=1)
    if not fixed:
        for name, value, given in (
            ("class_neighbors", class_neighbors, class_neighbors is not None),
            ("categories", categories, categories is not None),
            ("hard_batch_fraction", fraction, fraction != 1.0),
            ("categories_per_batch", per_batch, per_batch != 1),
        ):
            if given:
                raise ValueError(
                    f"`{name}` only applies when safe_triplet=True. Hard-class batches change "
                    "which classes share a batch while every class keeps its quota of groups; "
                    "exhaustive epochs have no quotas to keep (each class's groups are fixed "
                    "by its size, and which classes share a batch is set by the layout that "
                    "keeps every sample exactly once and the exact P x K batches first). "
                    f"Received: {name}={_short(value)} with safe_triplet=False"
                )
    if class_neighbors is not None and categories is not None:
        raise ValueError(
            "Pass either `class_neighbors` or `categories`, not both: a hard batch is either "
            "an anchor class with its neighbours or classes of one category. (For "
            "neighbourhoods inside categories, give each class neighbours of its own "
            "category only.)"
        )
    if per_batch != 1 and categories is None:
        raise ValueError(
            "`categories_per_batch` only applies with `categories`. "
            f"Received: categories_per_batch={per_batch} with categories=None"
        )
    if per_batch > p:
        raise ValueError(
            "`categories_per_batch` must be at most `num_classes_per_batch` (every category "
            f"of a batch gives it at least one class). Received: categories_per_batch="
            f"{per_batch} with num_classes_per_batch={p}"
        )
    return fraction


def _short(value: object) -> str:
    """`repr(value)`, cut short for big tables."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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


_INT64_MAX = np.iinfo(np.int64).max


def as_labels(labels: object) -> I64:
    """Returns the labels as a read-only 1-D int64 array.

    Raises:
        TypeError: If the labels are not a list, tuple or array of integers.
        ValueError: If the labels are empty, not one-dimensional, or do not
            fit in int64.
    """
    array_like = hasattr(labels, "__array__") or (
        hasattr(labels, "__len__") and hasattr(labels, "__getitem__")
    )
    if labels is None or isinstance(labels, (str, bytes, Mapping, Iterator)) or not array_like:
        hint = ""
        if isinstance(labels, Iterator):
            hint = " (an iterator or generator: pass list(...) of it)"
        raise TypeError(
            "`labels` must be a list, tuple or 1-D array of integer class labels, one per "
            f"sample. Received: labels={labels!r} of type {type(labels).__name__}{hint}"
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
    if array.dtype.kind == "u" and array.dtype.itemsize == 8 and int(array.max()) > _INT64_MAX:
        raise ValueError(
            f"`labels` must fit in int64 (at most {_INT64_MAX}). "
            f"Received a {array.dtype} label of {int(array.max())}"
        )
    out = array.astype(np.int64, copy=True)
    out.flags.writeable = False
    return out


def check_class_names(class_names: object, label_values: I64) -> Mapping[int, str] | None:
    """Checks the names given to classes for messages, as a mapping label -> name.

    Args:
        class_names: None, a sequence of names indexed by label value, or a
            mapping {label: name}; it must name every label present.
        label_values: The distinct labels.

    Returns:
        None, or a mapping from every label present to its name.

    Raises:
        TypeError: If `class_names` is not a sequence or mapping of strings.
        ValueError: If a label present has no name.
    """
    if class_names is None:
        return None
    if isinstance(class_names, (str, bytes)) or not isinstance(
        class_names, (Sequence, Mapping, np.ndarray)
    ):
        raise TypeError(
            "`class_names` must be None, a sequence of names indexed by label or a mapping "
            f"{{label: name}}. Received: class_names={class_names!r} of type "
            f"{type(class_names).__name__}"
        )
    labels = label_values.tolist()
    if isinstance(class_names, Mapping):
        missing = [label for label in labels if label not in class_names]
        names = {label: class_names[label] for label in labels if label in class_names}
    else:
        size = len(class_names)
        missing = [label for label in labels if not 0 <= label < size]
        names = {label: class_names[label] for label in labels if 0 <= label < size}
    if missing:
        raise ValueError(
            f"`class_names` must name every label present. Missing {len(missing)} label(s), "
            f"e.g. {missing[:5]} (received {len(class_names)} name(s))"
        )
    bad = [name for name in names.values() if not isinstance(name, str)]
    if bad:
        raise TypeError(
            f"`class_names` must hold strings. Received non-string names, e.g. {bad[:3]!r}"
        )
    return names


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
        # n_c ** alpha relative to the largest weight: finite for any alpha.
        logs = np.log(sizes.astype(np.float64)) * alpha
        weights = np.exp(logs - logs.max())
    elif isinstance(class_weights, Mapping):
        missing = [int(v) for v in label_values if int(v) not in class_weights]
        if missing:
            raise ValueError(
                "`class_weights` must give a weight for every label present. "
                f"Missing {len(missing)} label(s), e.g. {missing[:5]}"
            )
        weights = np.array(
            [_weight(class_weights[int(v)], int(v)) for v in label_values], dtype=np.float64
        )
    else:  # a sequence or an array
        weights = _weight_table(class_weights, label_values)
    bad = ~np.isfinite(weights) | (weights < 0)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            "`class_weights` must be finite and >= 0 for every class. "
            f"Received {weights[first]!r} for label {int(label_values[first])}"
        )
    if not (weights > 0).any():
        raise ValueError(
            "`class_weights` must give at least one class a positive weight. "
            "Received only zero weights"
        )
    # Scale-free: the largest weight becomes 1, so sums never overflow.
    scaled: npt.NDArray[np.float64] = weights / weights.max()
    return scaled


def _weight_table(class_weights: object, label_values: I64) -> npt.NDArray[np.float64]:
    """Looks the weight of every label up in a sequence indexed by label value."""
    numeric = np.asarray(class_weights) if isinstance(class_weights, np.ndarray) else None
    if numeric is None:
        try:
            numeric = np.asarray(class_weights, dtype=np.float64)
        except (TypeError, ValueError):
            numeric = None
    items = np.asarray(class_weights, dtype=object) if numeric is None else numeric
    if items.ndim != 1:
        raise ValueError(
            "`class_weights` as a sequence must be one-dimensional (one weight per label "
            f"value). Received a sequence of shape {items.shape}"
        )
    if label_values.min() < 0:
        raise ValueError(
            "`class_weights` as a sequence is indexed by label value, so it needs labels "
            f">= 0. Received label {int(label_values.min())}: use a mapping {{label: weight}}"
        )
    if len(items) <= int(label_values.max()):
        raise ValueError(
            "`class_weights` as a sequence is indexed by label value and must have "
            f"length > {int(label_values.max())} (the largest label). "
            f"Received length {len(items)}"
        )
    if numeric is not None and numeric.dtype.kind in "iuf":
        return numeric[label_values].astype(np.float64)
    return np.array([_weight(items[v], v) for v in label_values.tolist()], dtype=np.float64)


def _weight(value: Any, label: int) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise TypeError(
            "`class_weights` must hold real numbers. "
            f"Received {value!r} of type {type(value).__name__} for label {label}"
        )
    return float(value)
