"""Seeded training / validation splits of a labelled dataset.

`split` is a pure function of its arguments: it reads and writes no global
random state, so the same `(labels, validation_split, seed, by)` gives the
same split in every process, and `"training"` and `"validation"` asked in
two separate calls never overlap.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from typing import Any, Literal, overload

import numpy as np
from numpy.typing import NDArray

from balanced_sampler.checks import as_labels

__all__ = ["check_validation_split", "split"]

# Mixed into the seed so that a split and a sampler built from the same
# seed draw from unrelated random streams.
_SPLIT_STREAM_TAG = 0x5B1173D
_SUBSETS = ("training", "validation", "both")
_BY = ("samples", "classes")

IndexArray = NDArray[np.int64]
LabelsLike = Sequence[int] | NDArray[np.integer[Any]]


def check_validation_split(validation_split: object) -> float:
    """Returns `validation_split` as a float, or raises if it is not in (0, 1).

    Raises:
        TypeError: If it is not a real number.
        ValueError: If it is not strictly between 0 and 1.
    """
    if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real):
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


def _check_seed(seed: object) -> int:
    if seed is None:
        raise ValueError(
            "`seed` is required: the training and the validation subsets are "
            "disjoint only when both are made with the same seed. Pass a "
            "non-negative integer. Received: seed=None"
        )
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"`seed` must be a non-negative integer. Received: seed={seed!r}")
    if int(seed) < 0:
        raise ValueError(f"`seed` must be a non-negative integer. Received: seed={seed!r}")
    return int(seed)


def _allocate_units(
    counts: NDArray[np.int64], fraction: float, total: int, tie_keys: NDArray[np.float64]
) -> NDArray[np.int64]:
    """Return how many samples of each class go to validation (general case).

    Every class of size `n` gets `floor(fraction * n)` and the remaining
    units go to the largest remainders. Among the remainders, classes of 2
    or more samples that would otherwise get none come first, then the
    larger remainder, then the seeded `tie_keys`. A class of `n >= 2`
    samples gets at most `n - 1`, a class of one sample at most 1.

    Vectorised as a selection of units: unit `j` (0-based) of class `c` has
    score `fraction * n_c - j`, units with score >= 1 are the floors, and the
    `total` best units by (tier, score, tie key) are taken. This handles
    every case (also a class taking several units beyond its floor when
    others are capped) in O(N log N); `_allocate` uses it only when its
    O(C) path does not apply.
    """
    n_classes = counts.size
    cap = np.where(counts >= 2, counts - 1, counts)
    unit_class = np.repeat(np.arange(n_classes), cap)
    unit_rank = np.arange(unit_class.size) - np.repeat(np.cumsum(cap) - cap, cap)
    score = fraction * counts.astype(np.float64)[unit_class] - unit_rank
    tier = np.where(score >= 1.0, 2, 0)
    tier[(unit_rank == 0) & (score < 1.0) & (counts[unit_class] >= 2)] = 1
    # lexsort: the last key is the primary one.
    order = np.lexsort((tie_keys[unit_class], -score, -tier))
    chosen = unit_class[order[:total]]
    return np.bincount(chosen, minlength=n_classes).astype(np.int64)


def _allocate(
    counts: NDArray[np.int64], fraction: float, total: int, tie_keys: NDArray[np.float64]
) -> NDArray[np.int64]:
    """Return how many samples of each class go to validation.

    Same result as `_allocate_units`, in O(C log C) when every class needs
    at most one unit beyond its floor (always the case unless classes hit
    their cap of `n - 1`, i.e. with a large `validation_split`).
    """
    cap = np.where(counts >= 2, counts - 1, counts)
    quota = fraction * counts.astype(np.float64)
    floors = np.minimum(np.floor(quota).astype(np.int64), cap)
    remaining = total - int(floors.sum())
    open_ = floors < cap
    if remaining < 0 or remaining > int(open_.sum()):
        return _allocate_units(counts, fraction, total, tie_keys)
    candidates = np.flatnonzero(open_)
    score = quota[candidates] - floors[candidates]
    tier = ((floors[candidates] == 0) & (counts[candidates] >= 2)).astype(np.int64)
    order = np.lexsort((tie_keys[candidates], -score, -tier))
    floors[candidates[order[:remaining]]] += 1
    return floors


def _split_samples(
    inverse: NDArray[np.intp],
    counts: NDArray[np.int64],
    fraction: float,
    rng: np.random.Generator,
) -> NDArray[np.bool_]:
    n = inverse.size
    total = int(fraction * n)  # As Keras: int(validation_split * len(samples)).
    if total == 0:
        raise ValueError(
            "`validation_split` is too small for this dataset: "
            f"int(validation_split * number of samples) = int({fraction} * {n}) = 0, "
            "so the validation subset would be empty. Received: "
            f"validation_split={fraction} with {n} samples"
        )
    capacity = int(np.where(counts >= 2, counts - 1, counts).sum())
    if total > capacity:
        warnings.warn(
            f"validation_split={fraction} asks for {total} of {n} samples in validation, "
            "but every class with 2 or more samples keeps at least one in training, "
            f"so only {capacity} can go to validation. The validation subset has "
            f"{capacity} samples.",
            UserWarning,
            stacklevel=3,
        )
        total = capacity
    tie_keys = rng.random(counts.size)
    sample_keys = rng.integers(0, 1 << 32, size=n, dtype=np.int64)
    val_counts = _allocate(counts, fraction, total, tie_keys)
    # One random permutation per class at once: a stable sort by
    # (class, random 32-bit key) packed in one int64 (a radix sort); the
    # first `val_counts[c]` samples of class c in that order go to validation.
    order = np.argsort((inverse.astype(np.int64) << 32) | sample_keys, kind="stable")
    starts = np.cumsum(counts) - counts
    rank = np.arange(n) - np.repeat(starts, counts)
    is_val = np.empty(n, dtype=np.bool_)
    is_val[order] = rank < np.repeat(val_counts, counts)
    return is_val


def _split_classes(
    inverse: NDArray[np.intp], n_classes: int, fraction: float, rng: np.random.Generator
) -> NDArray[np.bool_]:
    if n_classes < 2:
        raise ValueError(
            '`by="classes"` needs at least 2 distinct classes to put at least one '
            f"on each side. Received: labels with {n_classes} class"
        )
    n_val = min(max(int(fraction * n_classes), 1), n_classes - 1)
    val_class = np.zeros(n_classes, dtype=np.bool_)
    val_class[rng.permutation(n_classes)[:n_val]] = True
    is_val: NDArray[np.bool_] = val_class[inverse]
    return is_val


@overload
def split(
    labels: LabelsLike,
    validation_split: float,
    subset: Literal["training", "validation"],
    seed: int,
    by: Literal["samples", "classes"] = ...,
) -> IndexArray: ...


@overload
def split(
    labels: LabelsLike,
    validation_split: float,
    subset: Literal["both"],
    seed: int,
    by: Literal["samples", "classes"] = ...,
) -> tuple[IndexArray, IndexArray]: ...


def split(
    labels: LabelsLike,
    validation_split: float,
    subset: Literal["training", "validation", "both"],
    seed: int,
    by: Literal["samples", "classes"] = "samples",
) -> IndexArray | tuple[IndexArray, IndexArray]:
    """Split sample indices into a training and a validation subset.

    The split is a pure function of the arguments (seeded
    `numpy.random.Generator(PCG64)`, no global random state): for one seed,
    `"training"` and `"validation"` are disjoint and together hold every
    index `0 .. len(labels) - 1`, even when asked in separate calls or
    processes. Another seed gives another split.

    `by="samples"` (closed set: every class on both sides) is stratified:
    the validation subset has `int(validation_split * len(labels))` samples
    in total, as in Keras, and class `c` of `n_c` samples gets
    `floor(validation_split * n_c)` or one more (largest remainder, seeded
    tie-breaks). Two guarantees shape the remainder:

    - every class of 2 or more samples keeps at least one sample in
      training (so at most `n_c - 1` in validation; if that caps the total
      below `int(validation_split * len(labels))`, a `UserWarning` says so);
    - where the remainder allows, every class of 2 or more samples gets at
      least one sample in validation: such classes that would otherwise
      get none are served first, ordered by their share then by seed. When
      there are more of them than remainder units, some get none (the
      proportions are kept rather than forcing one per class).

    Classes of a single sample go wherever the largest remainder puts them.
    Which samples of a class go to validation is a seeded permutation.

    `by="classes"` (open set, as in metric-learning evaluation: the
    validation classes are never seen in training) puts whole classes on
    one side: `int(validation_split * number_of_classes)` classes, clipped
    to leave at least one class on each side, chosen at random by seed.

    Args:
        labels: Non-empty 1-D array-like of integer class labels, one per
            sample (any integers; they need not be contiguous).
        validation_split: Fraction of the samples (`by="samples"`) or of the
            classes (`by="classes"`) for validation, strictly between 0 and
            1.
        subset: `"training"`, `"validation"`, or `"both"` for the tuple
            `(training, validation)`.
        seed: Non-negative integer. Required: the same seed must be passed
            for the training and the validation subsets.
        by: `"samples"` (stratified split of each class) or `"classes"`
            (split by whole classes).

    Returns:
        The sorted int64 indices into `labels` of the subset, or, with
        `subset="both"`, a tuple `(training_indices, validation_indices)`.

    Raises:
        TypeError: If `validation_split` is not a real number or `seed` is
            not an integer.
        ValueError: If `labels` is not a non-empty 1-D sequence of integers,
            `validation_split` is not strictly between 0 and 1, `subset` or
            `by` is not one of the allowed values, `seed` is missing or
            negative, the validation subset would be empty
            (`int(validation_split * len(labels)) == 0` with
            `by="samples"`), or `by="classes"` with fewer than 2 classes.
    """
    if not isinstance(subset, str) or subset not in _SUBSETS:
        raise ValueError(
            '`subset` must be one of "training", "validation" or "both". '
            f"Received: subset={subset!r}"
        )
    if not isinstance(by, str) or by not in _BY:
        raise ValueError(f'`by` must be "samples" or "classes". Received: by={by!r}')
    fraction = check_validation_split(validation_split)
    seed_int = _check_seed(seed)
    array = as_labels(labels)

    _, inverse, counts = np.unique(array, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    rng = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([seed_int, _SPLIT_STREAM_TAG, _BY.index(by)]))
    )
    if by == "samples":
        is_val = _split_samples(inverse, counts.astype(np.int64), fraction, rng)
    else:
        is_val = _split_classes(inverse, counts.size, fraction, rng)

    if subset == "validation":
        return np.flatnonzero(is_val).astype(np.int64, copy=False)
    training = np.flatnonzero(~is_val).astype(np.int64, copy=False)
    if subset == "training":
        return training
    return training, np.flatnonzero(is_val).astype(np.int64, copy=False)
