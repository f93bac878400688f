"""Fixed plans (`safe_triplet=True`): every batch exactly P classes x K images.

Each class gets a quota of groups per epoch (`_quotas`: floor or ceil of its
expected share, capped at one group per batch, with a closed-form cumulative
count), so any epoch is planned without planning the ones before.

An epoch shows a class's window of w = quota * K images: every image
floor(w / n) times, plus a partial set of w mod n images. Partial sets walk a
stream of passes over the class: pass m orders the images by a fixed seeded
base rank plus a seeded jitter of at most D ranks, and epoch e takes the next
w mod n positions of that stream. Because no image moves more than D ranks
between passes (D is set from the largest partial size), an image's two
appearances in consecutive passes are at least that far apart, so a partial
set never holds an image twice, every pass shows each image exactly once, and
counts over any number of epochs differ by at most one between images of a
class. The jitter reshuffles each pass, strongly when partial sets are small.

The epoch's images of a class are shuffled into groups (partial set first,
then the rest, repeated cyclically), so no group holds an image twice unless
the class has fewer than K images; then each distinct image comes before any
repeat.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from balanced_sampler._classes import (
    I64,
    ClassIndex,
    expand_ranges,
    key_bits_available,
    segment_arange,
    segment_ids,
    sort_within_segments,
)
from balanced_sampler._column_major import deal_column_major, in_play_order, slots_by_class
from balanced_sampler._hard_dealing import Dealt, HardDealing, deal_hard_batches
from balanced_sampler._quotas import Quotas
from balanced_sampler._random import (
    STREAM_BASE_ORDER,
    STREAM_CYCLE,
    STREAM_GROUPING,
    hash_keys,
    hash_segmented,
)

_TOP_BIT = np.uint64(1 << 63)


def base_ranks(index: ClassIndex, *, shuffle: bool, seed: int) -> npt.NDArray[np.int32]:
    """Returns every sample's fixed rank inside its class, by member slot.

    Args:
        index: The class index.
        shuffle: False keeps sample order.
        seed: The sampler's seed.

    Returns:
        An int32 array: `ranks[j]` is the rank of `index.members[j]`.
    """
    if not shuffle:
        return segment_arange(index.sizes).astype(np.int32)
    keys = hash_keys(seed, STREAM_BASE_ORDER, index.members)
    order = sort_within_segments(segment_ids(index.sizes), keys)
    del keys
    ranks = np.empty(index.num_samples, dtype=np.int32)
    ranks[order] = segment_arange(index.sizes)
    return ranks


def _partial_windows(
    quotas: Quotas, groups: I64, sizes: I64, k: int, epoch: int
) -> tuple[I64, I64, I64]:
    """Returns each class's partial window: stream start, length and jitter D.

    `groups` is `quotas.of_epoch(epoch)`, which the caller has already.
    """
    low = (quotas.base * k) % sizes
    high = ((quotas.base + 1) * k) % sizes
    extras_before = quotas.extras_before(epoch)
    extra_now = groups > quotas.base
    start = (epoch - extras_before) * low + extras_before * high
    length = np.where(extra_now, high, low)
    largest = np.where(quotas.can_extra, np.maximum(low, high), low)
    return start, length, (sizes - largest + 1) // 2


def _pass_orders(
    index: ClassIndex,
    ranks: npt.NDArray[np.int32],
    pair_class: I64,
    pair_pass: I64,
    jitter: I64,
    *,
    seed: int,
) -> tuple[I64, I64]:
    """Returns the member slots of the given (class, pass) pairs in pass order.

    Pass m of class c orders its images by `rank * R + floor(D * R * u)`, `u`
    a seeded uniform per (c, m, image): an image moves at most D ranks.

    Returns:
        `(slots, starts)`: `slots[starts[i] + j]` is the member slot at
        position j of pair i's pass.
    """
    lengths = index.sizes[pair_class]
    starts = np.cumsum(lengths) - lengths
    segment = segment_ids(lengths)
    slots = expand_ranges(index.offsets[pair_class], lengths)
    span = int((lengths + jitter).max())
    available = key_bits_available(len(pair_class), len(slots))
    # Jitter resolution: as fine as the packed sort key and uint64 products allow.
    resolution = max(0, min(24, available - span.bit_length(), 40 - span.bit_length()))
    keys = hash_segmented(seed, STREAM_CYCLE, segment, slots, pair_class, pair_pass)
    keys >>= np.uint64(40)
    keys *= (jitter << resolution).astype(np.uint64)[segment]
    keys >>= np.uint64(24)
    base = ranks[slots].astype(np.uint64)
    base <<= np.uint64(resolution)
    keys += base
    del base
    width = max(((span << resolution) - 1).bit_length(), 1)
    order = sort_within_segments(segment, keys, key_width=width)
    del keys, segment
    return slots[order], starts


def _mark_partial_sets(
    index: ClassIndex,
    ranks: npt.NDArray[np.int32],
    start: I64,
    length: I64,
    jitter: I64,
    *,
    seed: int,
) -> npt.NDArray[np.bool_]:
    """Marks every class's stream positions [start, start + length)."""
    marked = np.zeros(index.num_samples, dtype=bool)
    classes = np.flatnonzero(length > 0)
    if len(classes) == 0:
        return marked
    n = index.sizes[classes]
    first_pass, at = np.divmod(start[classes], n)
    # Positions [at, at + length) of the first pass, then [0, rest) of the next.
    take_first = np.minimum(length[classes], n - at)
    rest = length[classes] - take_first
    crossing = rest > 0
    pair_class = np.concatenate([classes, classes[crossing]])
    pair_pass = np.concatenate([first_pass, first_pass[crossing] + 1])
    begin = np.concatenate([at, np.zeros(int(crossing.sum()), dtype=np.int64)])
    count = np.concatenate([take_first, rest[crossing]])
    slots, starts = _pass_orders(index, ranks, pair_class, pair_pass, jitter[pair_class], seed=seed)
    marked[slots[expand_ranges(starts + begin, count)]] = True
    return marked


def plan_epoch(
    index: ClassIndex,
    quotas: Quotas,
    ranks: npt.NDArray[np.int32],
    num_batches: int,
    p: int,
    k: int,
    *,
    shuffle: bool,
    seed: int,
    epoch: int,
    hard: HardDealing | None = None,
) -> tuple[I64, Dealt | None]:
    """Plans one fixed epoch in three steps: quotas, groups, dealing.

    1. `quotas.of_epoch`: how many groups each class shows this epoch.
    2. `class_groups`: which images form those groups, from each class's
       stream of passes.
    3. `deal_column_major`: which batch and column every group goes to (no
       batch holds a class twice); a class's groups are played in the order
       `class_groups` made them (`in_play_order`). With `hard` (hard-class
       batches), a share of the batches is dealt as neighbourhoods or
       categories instead (`deal_hard_batches`), and each class's groups go
       to its batches in the same order: quotas, coverage, rotation and each
       class's sequence of images stay those of the plain plan.

    Args:
        index: The class index of the labels.
        quotas: The class quotas (classes with no quota are never chosen).
        ranks: Every sample's base rank in its class, from `base_ranks`.
        num_batches: Batches in the epoch (global, before sharding).
        p: `num_classes_per_batch`.
        k: `num_images_per_class`.
        shuffle: Whether to randomise image, class and batch order.
        seed: The sampler's seed.
        epoch: The epoch to plan.
        hard: The hard-class dealing, or None for the plain one.

    Returns:
        `(table, dealt)`: an int64 array of shape `(num_batches, p * k)` with
        the sample indices of every batch (P groups of K images each), and
        the hard-class dealing's `Dealt` (None without hard batches).
    """
    groups = quotas.of_epoch(epoch)
    table = class_groups(index, quotas, ranks, groups, k, shuffle=shuffle, seed=seed, epoch=epoch)
    dealt = None
    if hard is not None and hard.num_hard(num_batches) > 0:
        dealt = deal_hard_batches(
            groups, num_batches, p, hard, shuffle=shuffle, seed=seed, epoch=epoch
        )
        slot = slots_by_class(dealt.classes.reshape(-1))
    else:
        slot = deal_column_major(groups, num_batches, p, shuffle=shuffle, seed=seed, epoch=epoch)
        slot = in_play_order(groups, slot)
    out = np.empty((num_batches * p, k), dtype=np.int64)
    out[slot] = table
    return out.reshape(num_batches, p * k), dealt


def class_groups(
    index: ClassIndex,
    quotas: Quotas,
    ranks: npt.NDArray[np.int32],
    groups: I64,
    k: int,
    *,
    shuffle: bool,
    seed: int,
    epoch: int,
) -> I64:
    """Returns the epoch's groups of every class, classes in label order.

    Class c shows `groups[c] * K` images: its partial set of the stream first
    (shuffled), then its other images, repeated cyclically; consecutive runs
    of K images are its groups.

    Args:
        index: The class index of the labels.
        quotas: The class quotas (for the stream positions).
        ranks: Every sample's base rank in its class, from `base_ranks`.
        groups: `quotas.of_epoch(epoch)`.
        k: `num_images_per_class`.
        shuffle: Whether to randomise image order.
        seed: The sampler's seed.
        epoch: The epoch to plan.

    Returns:
        An int64 array of shape `(groups.sum(), K)`: the sample indices of
        each group, class 0's groups first.
    """
    sizes, offsets = index.sizes, index.offsets
    window = groups * k
    start, length, jitter = _partial_windows(quotas, groups, sizes, k, epoch)
    if not shuffle:
        jitter = np.zeros_like(jitter)
    marked = _mark_partial_sets(index, ranks, start, length, jitter, seed=seed)

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

    # Each class's window: its images repeated cyclically.
    w = window[active]
    where = segment_arange(w)
    where %= np.repeat(n, w)
    where += np.repeat(slot_start, w)
    chosen = slot[where]
    del where, slot
    table: I64 = index.members[chosen].reshape(-1, k)
    return table
