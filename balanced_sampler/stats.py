"""How good a plan is for metric learning.

The figures, for any plan given as batches of sample indices: the fraction of
exact P x K batches, the fraction of batch entries that can anchor a triplet
(another distinct image of their class and an image of another class in their
batch), coverage (distinct samples / N), the fraction of samples seen exactly
once, the largest repeat count and the duplicates inside batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np
import numpy.typing as npt

from balanced_sampler.checks import as_labels, check_int

_FIELDS_DOC = {
    "num_batches": "batches in the plan",
    "exact_pxk_fraction": "batches of exactly P distinct classes x exactly K images",
    "triplet_valid_fraction": (
        "batch entries with another distinct image of their class and an image of "
        "another class in their batch"
    ),
    "coverage": "distinct samples in the plan / N",
    "exactly_once_fraction": "samples that appear exactly once / N",
    "max_repeats": "most times any sample appears",
    "in_batch_duplicates": "entries that repeat a sample already in their batch",
}


@attrs.frozen
class PlanStats:
    """Quality figures of one epoch's plan.

    Attributes:
        num_batches: Batches in the plan.
        exact_pxk_fraction: Fraction of batches with exactly P distinct
            classes of exactly K images each.
        triplet_valid_fraction: Fraction of batch entries whose batch holds
            another distinct image of their class and an image of another
            class (the entry can anchor a triplet).
        coverage: Distinct samples in the plan divided by N.
        exactly_once_fraction: Samples appearing exactly once, divided by N.
        max_repeats: The most times any sample appears in the plan.
        in_batch_duplicates: Entries that repeat a sample already in their
            batch.
    """

    num_batches: int
    exact_pxk_fraction: float
    triplet_valid_fraction: float
    coverage: float
    exactly_once_fraction: float
    max_repeats: int
    in_batch_duplicates: int

    def as_dict(self) -> dict[str, float]:
        """Returns the figures as a plain dict."""
        return attrs.asdict(self)

    def __str__(self) -> str:
        """Formats the figures as a two-column table."""
        rows = []
        for name, value in attrs.asdict(self).items():
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            rows.append(f"{name:<24} {shown:>10}   {_FIELDS_DOC[name]}")
        return "\n".join(rows)


@attrs.frozen(eq=False)
class HardBatchStats:
    """How one epoch's hard-class batches were dealt (one shard's batches).

    A hard batch is an anchor class and P - 1 others: from the anchor's
    neighbour list (`class_neighbors`) or from the batch's categories
    (`categories`), except classes the quotas force into every remaining
    batch (a class whose groups left equal the batches left: no dealing that
    keeps the quotas can leave it out) and, when the list or the categories
    run out, classes completed from the epoch's remaining groups. A hard
    batch is pure when nothing was completed that way.

    Every attribute is an array with one entry per batch of `plan(epoch)`;
    the properties sum them.

    Attributes:
        is_hard: bool: the batch was dealt as a neighbourhood or by category.
        is_pure: bool: a pure hard batch.
        listed: int: slots (the anchor's excluded) whose class came from the
            anchor's neighbour list or the batch's categories.
        forced: int: slots taken by forced classes.
        filled: int: slots completed from the remaining groups.
    """

    is_hard: npt.NDArray[np.bool_]
    is_pure: npt.NDArray[np.bool_]
    listed: npt.NDArray[np.int64]
    forced: npt.NDArray[np.int64]
    filled: npt.NDArray[np.int64]

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(type(self)):
            getattr(self, field.name).flags.writeable = False

    @property
    def num_batches(self) -> int:
        """Batches of the shard's plan."""
        return len(self.is_hard)

    @property
    def hard_batches(self) -> int:
        """Hard batches."""
        return int(self.is_hard.sum())

    @property
    def pure_batches(self) -> int:
        """Pure hard batches."""
        return int(self.is_pure.sum())

    @property
    def pure_fraction(self) -> float:
        """Pure hard batches / hard batches (NaN without hard batches)."""
        hard = self.hard_batches
        return self.pure_batches / hard if hard else float("nan")

    @property
    def listed_slots(self) -> int:
        """Slots of hard batches filled from the anchors' lists or the batches' categories."""
        return int(self.listed.sum())

    @property
    def forced_slots(self) -> int:
        """Slots of hard batches taken by forced classes."""
        return int(self.forced.sum())

    @property
    def filled_slots(self) -> int:
        """Slots of hard batches completed from the remaining groups."""
        return int(self.filled.sum())

    def as_dict(self) -> dict[str, float]:
        """Returns the summed figures as a plain dict."""
        names = (
            "num_batches",
            "hard_batches",
            "pure_batches",
            "pure_fraction",
            "listed_slots",
            "forced_slots",
            "filled_slots",
        )
        return {name: getattr(self, name) for name in names}

    def __str__(self) -> str:
        """Formats the summed figures as a two-column table."""
        return "\n".join(
            f"{name:<18} {value:>10.4f}" if isinstance(value, float) else f"{name:<18} {value:>10}"
            for name, value in self.as_dict().items()
        )


def plan_stats(
    plan: Sequence[npt.ArrayLike],
    labels: npt.ArrayLike,
    num_classes_per_batch: int,
    num_images_per_class: int,
) -> PlanStats:
    """Measures a plan: the quality figures of `PlanStats`.

    Works for any plan given as batches of sample indices, so the same
    figures can be printed for other samplers.

    Args:
        plan: The batches of one epoch, each a sequence of sample indices.
        labels: One integer label per sample (N labels).
        num_classes_per_batch: P.
        num_images_per_class: K.

    Returns:
        A `PlanStats`.

    Raises:
        ValueError: If the plan is empty or holds an index outside `[0, N)`.
    """
    labels_array = as_labels(labels)
    p = check_int("num_classes_per_batch", num_classes_per_batch, minimum=1)
    k = check_int("num_images_per_class", num_images_per_class, minimum=1)
    n = len(labels_array)
    batches = [np.asarray(batch, dtype=np.int64).reshape(-1) for batch in plan]
    if not batches:
        raise ValueError("`plan` is empty: it has no batch to measure.")
    sizes = np.array([len(batch) for batch in batches], dtype=np.int64)
    flat = np.concatenate(batches)
    if flat.size and (flat.min() < 0 or flat.max() >= n):
        raise ValueError(
            f"`plan` holds sample indices outside [0, {n}): "
            f"min {int(flat.min())}, max {int(flat.max())}"
        )
    batch_of = np.repeat(np.arange(len(batches), dtype=np.int64), sizes)
    _, classes = np.unique(labels_array, return_inverse=True)
    cls = classes.reshape(-1)[flat].astype(np.int64)
    num_classes = int(cls.max()) + 1 if cls.size else 1

    # Entries, distinct images and classes per batch.
    entry_key = batch_of * n + flat
    unique_entries, first = np.unique(entry_key, return_index=True)
    duplicates = int(len(flat) - len(unique_entries))
    distinct_batch = unique_entries // n
    distinct_class = cls[first]
    pair = distinct_batch * num_classes + distinct_class
    pair_keys, distinct_per_pair = np.unique(pair, return_counts=True)
    entry_pair = np.searchsorted(pair_keys, batch_of * num_classes + cls)
    entries_per_pair = np.bincount(entry_pair, minlength=len(pair_keys))
    pair_batch = pair_keys // num_classes
    classes_per_batch = np.bincount(pair_batch, minlength=len(batches))

    # Exact P x K: P distinct classes, each with exactly K entries (padding counts
    # as entries; it shows up in `in_batch_duplicates`).
    good_pair = entries_per_pair == k
    good_pairs_per_batch = np.bincount(pair_batch, weights=good_pair, minlength=len(batches))
    exact = (classes_per_batch == p) & (good_pairs_per_batch == p)

    # Triplet-valid entries.
    valid = (distinct_per_pair[entry_pair] >= 2) & (classes_per_batch[batch_of] >= 2)

    counts = np.bincount(flat, minlength=n)
    return PlanStats(
        num_batches=len(batches),
        exact_pxk_fraction=float(exact.mean()),
        triplet_valid_fraction=float(valid.mean()) if valid.size else 0.0,
        coverage=float(np.count_nonzero(counts) / n),
        exactly_once_fraction=float(np.count_nonzero(counts == 1) / n),
        max_repeats=int(counts.max()),
        in_batch_duplicates=duplicates,
    )


def coverage_ceiling(
    class_sizes: npt.ArrayLike,
    num_batches: int,
    num_classes_per_batch: int,
    num_images_per_class: int,
) -> float:
    """The highest coverage any exact P x K plan of `num_batches` batches can reach.

    A plan of B exact P x K batches shows B * P groups of K images, at most
    one group of a class per batch. A class's first floor(n_c / K) groups each
    show K new images, one more group shows its n_c mod K remaining images,
    and further groups show nothing new; the best plan spends the B * P groups
    on the largest gains.

    Args:
        class_sizes: Images per class (classes that may be chosen).
        num_batches: B, batches per epoch.
        num_classes_per_batch: P.
        num_images_per_class: K.

    Returns:
        The largest possible number of distinct samples per epoch divided by
        the total of `class_sizes`.

    Raises:
        TypeError: If a count is not an integer.
        ValueError: If a count is below 1 or `class_sizes` is empty or
            holds a negative size.
    """
    sizes = np.asarray(class_sizes, dtype=np.int64).reshape(-1)
    if sizes.size == 0 or sizes.min() < 0:
        raise ValueError(
            "`class_sizes` must be a non-empty sequence of non-negative class sizes. "
            f"Received: {class_sizes!r}"
        )
    num_batches = check_int("num_batches", num_batches, minimum=1)
    p = check_int("num_classes_per_batch", num_classes_per_batch, minimum=1)
    k = check_int("num_images_per_class", num_images_per_class, minimum=1)
    full = np.minimum(sizes // k, num_batches)
    budget = num_batches * p
    full_groups = int(full.sum())
    if full_groups >= budget:
        return budget * k / float(sizes.sum())
    rest = np.where(full < num_batches, sizes - full * k, 0)
    gains = np.sort(rest[rest > 0])[::-1][: budget - full_groups]
    return (full_groups * k + int(gains.sum())) / float(sizes.sum())
