"""Column-major dealing: which classes share a batch in the plain fixed plan.

Also the step that hands a class's groups to the batches it was dealt into,
so that any other dealing keeps every class's groups in the same play order.
"""

from __future__ import annotations

import numpy as np

from balanced_sampler._classes import I64, segment_arange, segment_ids, sort_within_segments
from balanced_sampler._random import STREAM_BATCH_ORDER, STREAM_CLASS_ORDER, hash_keys


def deal_column_major(
    groups: I64, num_batches: int, p: int, *, shuffle: bool, seed: int, epoch: int
) -> I64:
    """Deals the groups into batches: returns the slot `batch * P + column` of each.

    Classes are laid out one after the other (in a seeded order) and group i
    of that sequence goes to batch `i mod B`, column `i // B`; since no class
    has more than B groups, no batch holds a class twice. Batches are then
    put in a seeded order.

    Args:
        groups: Groups of every class this epoch (at most `num_batches`
            each, `num_batches * p` in all).
        num_batches: B.
        p: `num_classes_per_batch`.
        shuffle: Whether to randomise class and batch order.
        seed: The sampler's seed.
        epoch: The epoch to plan.

    Returns:
        An int64 array with the slot of every group, groups in the order of
        `class_groups` (class 0's first).
    """
    active = np.flatnonzero(groups > 0)
    if shuffle:
        class_order = np.argsort(hash_keys(seed, STREAM_CLASS_ORDER, epoch, active), kind="stable")
    else:
        class_order = np.arange(len(active))
    counts = groups[active]
    first = np.empty(len(active), dtype=np.int64)
    first[class_order] = np.cumsum(counts[class_order]) - counts[class_order]
    position = np.repeat(first, counts) + segment_arange(counts)
    if shuffle:
        batch_keys = hash_keys(seed, STREAM_BATCH_ORDER, epoch, np.arange(num_batches))
        rank = np.empty(num_batches, dtype=np.int64)
        rank[np.argsort(batch_keys, kind="stable")] = np.arange(num_batches)
    else:
        rank = np.arange(num_batches, dtype=np.int64)
    slot: I64 = rank[position % num_batches] * p + position // num_batches
    return slot


def slot_classes(groups: I64, slot: I64, num_slots: int) -> I64:
    """Returns the class in every slot, given the slot of every group.

    Args:
        groups: Groups of every class (groups in class order).
        slot: The slot of every group (from `deal_column_major`).
        num_slots: B * P.

    Returns:
        An int64 array of length `num_slots`.
    """
    classes = np.empty(num_slots, dtype=np.int64)
    classes[slot] = np.repeat(np.arange(len(groups), dtype=np.int64), groups)
    return classes


def in_play_order(groups: I64, slot: I64) -> I64:
    """Reorders the slots of every class's groups so the class plays them in order.

    The groups of a class (consecutive in `slot`, classes in order) get the
    same slots, sorted: the class's first group is played first, and so on.
    Any dealing that hands every class its slots this way plays each class's
    images in the same order (the order `class_groups` made).

    Args:
        groups: Groups of every class.
        slot: The slot of every group, groups in class order.

    Returns:
        The reordered slots.
    """
    bits = max((int(slot.max(initial=0))).bit_length(), 1)
    played = sort_within_segments(segment_ids(groups), slot.astype(np.uint64), key_width=bits)
    result: I64 = slot[played]
    return result


def slots_by_class(classes: I64) -> I64:
    """Returns every slot, ordered by (class, slot): each class's slots in play order.

    Args:
        classes: The class of every slot (length B * P, batches in play order).

    Returns:
        The slots of class 0 in increasing order, then those of class 1, ...
        (with `in_play_order`, the slot of every group in class order).
    """
    bits = max(int(len(classes) - 1).bit_length(), 1)
    positions = np.arange(len(classes), dtype=np.uint64)
    return sort_within_segments(classes.copy(), positions, key_width=bits)
