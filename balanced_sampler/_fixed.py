"""Fixed plans (`safe_triplet=True`): every batch exactly P classes x K images.

Each class gets a quota of groups per epoch from its weight, by largest
remainder, capped at one group per batch. Quotas are the same every epoch
except for classes tied at the rounding cut-off, which take the extra groups
in a seeded rotation; so how many groups a class has shown before any epoch
has a closed form, and any epoch is planned without planning the ones before.

Each class walks a stream of its images: its pass number k over the class is
a seeded permutation of the class. Epoch e shows the stream positions
[Q_c(e) K, Q_c(e + 1) K), where Q_c(e) counts the groups shown before epoch e,
so images come back in rotation across epochs. A window that crosses from one
pass into the next takes the end of the old pass and, from the new pass, the
first images that are not already in the window (so an epoch shows
min(n_c, quota_c K) distinct images of the class; images taken ahead are shown
again next epoch, none is skipped). The epoch's images of a class are then
shuffled into groups; a class smaller than its window repeats cyclically, each
distinct image before any repeat, so no group holds an image twice unless the
class has fewer than K images.
"""

from __future__ import annotations

import attrs
import numpy as np
import numpy.typing as npt

from balanced_sampler._classes import (
    I64,
    ClassIndex,
    expand_ranges,
    segment_arange,
    segment_ids,
    sort_within_segments,
)
from balanced_sampler._random import (
    STREAM_BATCH_ORDER,
    STREAM_CLASS_ORDER,
    STREAM_CYCLE,
    STREAM_GROUPING,
    STREAM_TIES,
    hash_keys,
    hash_segmented,
)

_TOP_BIT = np.uint64(1 << 63)
_INT_WEIGHT_LIMIT = 1 << 62


@attrs.frozen(eq=False)
class Quotas:
    """Groups per epoch for every class, as a closed-form schedule.

    Attributes:
        base: Groups every class gets in every epoch, shape `(C,)`.
        tie_rank: Rank of each class in the rotation of tied classes, or -1.
        tie_size: How many classes share the extra groups in rotation.
        tie_extras: How many of them get an extra group each epoch.
    """

    base: I64
    tie_rank: I64
    tie_size: int
    tie_extras: int

    def shown_before(self, epoch: int) -> I64:
        """Returns the groups each class has shown in epochs `0..epoch-1`."""
        shown = epoch * self.base
        if self.tie_extras:
            tied = self.tie_rank >= 0
            turns = epoch * self.tie_extras - self.tie_rank[tied]
            shown[tied] += np.maximum(0, -(-turns // self.tie_size))
        return shown

    def of_epoch(self, epoch: int) -> I64:
        """Returns the groups of every class in `epoch`."""
        return self.shown_before(epoch + 1) - self.shown_before(epoch)


def integer_weights(weights: npt.NDArray[np.float64], budget: int) -> I64:
    """Turns non-negative weights into integers that keep their ratios.

    `compute_quotas` multiplies weights by the group budget, so their sum is
    kept below 2**62 / budget. Integral weights (class sizes, uniform) stay
    exact within that bound; other weights are scaled to about 30 bits.

    Args:
        weights: Non-negative finite weights, at least one positive.
        budget: The number of groups per epoch.

    Returns:
        int64 weights, zero exactly where `weights` is zero.
    """
    limit = _INT_WEIGHT_LIMIT // max(budget, 1)
    total = float(weights.sum())
    if bool(np.all(weights == np.floor(weights))) and total <= limit:
        return weights.astype(np.int64)
    scale = min(float(1 << 30) / float(weights.max()), limit / total)
    scaled = np.floor(weights * scale).astype(np.int64)
    # A tiny positive weight must not vanish: keep at least 1.
    return np.where(weights > 0, np.maximum(scaled, 1), 0)


def _shares(weights: I64, caps: I64, budget: int) -> tuple[I64, I64]:
    """Splits `budget` in proportion to `weights`, no class above its cap.

    Water-filling in exact integer arithmetic: classes whose share would pass
    their cap get the cap, the rest is shared again among the others.

    Returns:
        `(floor, remainder)`: each class's whole share and the numerator of
        its fractional part (all over one common denominator, so remainders
        compare exactly).
    """
    capped = np.zeros(len(weights), dtype=bool)
    while True:
        free = ~capped & (weights > 0)
        free_budget = budget - int(caps[capped].sum())
        total = max(int(weights[free].sum()), 1)
        over = free & (weights * free_budget > caps * total)
        if not over.any():
            break
        capped |= over
    floor = np.where(free, (weights * free_budget) // total, 0)
    remainder = np.where(free, (weights * free_budget) % total, 0)
    floor[capped] = caps[capped]
    return floor, remainder


def _round(base: I64, score: I64, extras: int, seed: int) -> Quotas:
    """Gives `extras` more groups to the classes of highest score.

    Classes tied at the cut-off share their extra groups in a seeded
    rotation, one epoch after another.
    """
    tie_rank = np.full(len(base), -1, dtype=np.int64)
    if extras == 0:
        return Quotas(base=base, tie_rank=tie_rank, tie_size=0, tie_extras=0)
    cutoff = np.sort(score)[-extras]
    above = score > cutoff
    tied = np.flatnonzero(score == cutoff)
    keys = hash_keys(seed, STREAM_TIES, tied)
    tie_rank[tied[np.argsort(keys, kind="stable")]] = np.arange(len(tied))
    return Quotas(
        base=base + above,
        tie_rank=tie_rank,
        tie_size=len(tied),
        tie_extras=extras - int(above.sum()),
    )


def compute_quotas(
    weights: I64, num_batches: int, p: int, seed: int, *, sizes: I64 | None = None, k: int = 1
) -> Quotas:
    """Splits the epoch's `num_batches * p` groups among classes.

    With `sizes` (the "proportional" weighting) the split is the one that
    shows the most distinct images: first every class's whole groups
    (floor(n_c / K), shared in proportion to n_c if they do not all fit),
    then one group for the rest of the classes with the most images left
    over, then, if groups remain, shares in proportion to n_c. Otherwise
    groups are shared in proportion to `weights`. No class gets more than one
    group per batch.

    Args:
        weights: Non-negative integer weight of every class; at least `p`
            of them positive.
        num_batches: Batches per epoch (the cap on any class's groups).
        p: `num_classes_per_batch`.
        seed: The sampler's seed (breaks ties at the rounding cut-off).
        sizes: Images per class, for the proportional split.
        k: `num_images_per_class`, with `sizes`.

    Returns:
        The `Quotas` schedule.
    """
    budget = num_batches * p
    cap = np.where(weights > 0, num_batches, 0).astype(np.int64)
    if sizes is None:
        floor, remainder = _shares(weights, cap, budget)
        return _round(floor, remainder, budget - int(floor.sum()), seed)
    whole = np.minimum(cap, sizes // k)
    if budget <= int(whole.sum()):
        floor, remainder = _shares(weights, whole, budget)
        return _round(floor, remainder, budget - int(floor.sum()), seed)
    left_over = np.where(whole < cap, sizes - whole * k, 0)
    left = budget - int(whole.sum())
    if left <= int(np.count_nonzero(left_over)):
        return _round(whole, left_over, left, seed)
    base = whole + (left_over > 0)
    floor, remainder = _shares(weights, cap - base, budget - int(base.sum()))
    return _round(base + floor, remainder, budget - int((base + floor).sum()), seed)


def _cycle_permutations(
    sizes: I64, pair_class: I64, pair_cycle: I64, *, shuffle: bool, seed: int
) -> tuple[I64, I64]:
    """Returns the permutations of the given (class, pass) pairs.

    Returns:
        `(perm, starts)`: `perm[starts[i] + j]` is the class-local index of
        the image at position j of pass `pair_cycle[i]` over class
        `pair_class[i]`.
    """
    lengths = sizes[pair_class]
    local = segment_arange(lengths)
    starts = np.cumsum(lengths) - lengths
    if not shuffle:
        return local, starts
    segment = segment_ids(lengths)
    keys = hash_segmented(seed, STREAM_CYCLE, segment, local, pair_class, pair_cycle)
    order = sort_within_segments(segment, keys)
    del keys, segment
    return local[order], starts


def _mark_partial_images(
    index: ClassIndex, start: I64, length: I64, *, shuffle: bool, seed: int
) -> npt.NDArray[np.bool_]:
    """Marks the images of every class's stream window [start, start + length).

    `length` is below the class size; a window that crosses into the next pass
    is completed with that pass's first images not already marked.
    """
    sizes, offsets = index.sizes, index.offsets
    marked = np.zeros(index.num_samples, dtype=bool)
    classes = np.flatnonzero(length > 0)
    n = sizes[classes]
    cycle, at = np.divmod(start[classes], n)
    perm, perm_start = _cycle_permutations(sizes, classes, cycle, shuffle=shuffle, seed=seed)
    first = np.minimum(length[classes], n - at)
    taken = np.repeat(perm_start + at, first) + segment_arange(first)
    marked[np.repeat(offsets[classes], first) + perm[taken]] = True

    cross = length[classes] > first
    if cross.any():
        c = classes[cross]
        need = length[c] - first[cross]
        perm, perm_start = _cycle_permutations(
            sizes, c, cycle[cross] + 1, shuffle=shuffle, seed=seed
        )
        segment = segment_ids(sizes[c])
        slot = offsets[c][segment] + perm
        fresh = ~marked[slot]
        count = np.cumsum(fresh)
        before = np.concatenate([[0], count])[perm_start][segment]
        marked[slot[fresh & (count - before <= need[segment])]] = True
    return marked


def plan_epoch(
    index: ClassIndex,
    quotas: Quotas,
    num_batches: int,
    p: int,
    k: int,
    *,
    shuffle: bool,
    seed: int,
    epoch: int,
) -> I64:
    """Plans one fixed epoch.

    Args:
        index: The class index of the labels.
        quotas: The class quotas (classes with no quota are never chosen).
        num_batches: Batches in the epoch (global, before sharding).
        p: `num_classes_per_batch`.
        k: `num_images_per_class`.
        shuffle: Whether to randomise image, class and batch order.
        seed: The sampler's seed.
        epoch: The epoch to plan.

    Returns:
        An int64 array of shape `(num_batches, p * k)`: the sample indices of
        every batch, P groups of K images each.
    """
    sizes, offsets = index.sizes, index.offsets
    window = quotas.of_epoch(epoch) * k
    start = quotas.shown_before(epoch) * k
    marked = _mark_partial_images(index, start, window % sizes, shuffle=shuffle, seed=seed)

    # The epoch's images of each active class: marked ones first, shuffled.
    # (In-place steps and early `del`s keep planning memory low.)
    active = np.flatnonzero(window > 0)
    n = sizes[active]
    slot = expand_ranges(offsets[active], n)
    if shuffle:
        keys = hash_keys(seed, STREAM_GROUPING, epoch, index.members[slot])
        keys >>= np.uint64(1)
    else:
        keys = segment_arange(n).astype(np.uint64)
    keys[~marked[slot]] |= _TOP_BIT
    del marked
    order = sort_within_segments(segment_ids(n), keys)
    del keys
    slot = slot[order]
    del order
    slot_start = np.cumsum(n) - n

    # Lay classes out in dealing order, each repeating its images cyclically.
    if shuffle:
        class_order = np.argsort(hash_keys(seed, STREAM_CLASS_ORDER, epoch, active), kind="stable")
    else:
        class_order = np.arange(len(active))
    w = window[active][class_order]
    where = segment_arange(w)
    where %= np.repeat(n[class_order], w)
    where += np.repeat(slot_start[class_order], w)
    chosen = slot[where]
    del where, slot
    sequence = index.members[chosen]
    del chosen

    # Deal group i to batch (i mod B) in column i // B; then order the batches.
    group = np.arange(num_batches * p, dtype=np.int64)
    if shuffle:
        batch_keys = hash_keys(seed, STREAM_BATCH_ORDER, epoch, np.arange(num_batches))
        rank = np.empty(num_batches, dtype=np.int64)
        rank[np.argsort(batch_keys, kind="stable")] = np.arange(num_batches)
    else:
        rank = np.arange(num_batches, dtype=np.int64)
    out = np.empty((num_batches * p, k), dtype=np.int64)
    out[rank[group % num_batches] * p + group // num_batches] = sequence.reshape(-1, k)
    return out.reshape(num_batches, p * k)
