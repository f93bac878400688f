"""Exhaustive plans (`safe_triplet=False`): every sample exactly once per epoch.

A class's images are cut into groups of K (its last images split so that no
group holds a single image unless the class has one image), and the groups are
dealt into batches of at most P groups with no class twice in a batch.

Dealing lays the groups of each class out contiguously and fills a grid of
batches (rows) column by column. With equal column lengths any class of at
most that many groups lands in distinct rows. When the groups allow it, the
columns are shaped so that all batches but the last one or two are full
(P groups); otherwise (a class has more groups than that shape has rows) the
grid uses as many rows as the largest class has groups and spreads the other
classes evenly over them, which keeps a negative in as many batches as
possible. Either way the number of batches depends on the class sizes, P and K
only, never on the seed.
"""

from __future__ import annotations

import numpy as np

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
    STREAM_IMAGE_ORDER,
    hash_keys,
)


def groups_per_class(sizes: I64, k: int) -> I64:
    """Returns how many groups each class is cut into.

    Args:
        sizes: Images per class.
        k: `num_images_per_class`.

    Returns:
        The number of groups of every class (int64).
    """
    q, r = np.divmod(sizes, k)
    groups = np.where(r == 0, q, q + 1)
    if k == 2:
        # 2q + 1 images: q - 1 pairs and one group of 3.
        groups = np.where((r == 1) & (q >= 1), q, groups)
    return np.where(sizes <= k, 1, groups).astype(np.int64)


def group_sizes(sizes: I64, k: int, groups: I64) -> I64:
    """Returns the size of every group, classes one after the other.

    Args:
        sizes: Images per class.
        k: `num_images_per_class`.
        groups: Groups per class, from `groups_per_class`.

    Returns:
        An int64 array of length `groups.sum()`.
    """
    out = np.full(int(groups.sum()), k, dtype=np.int64)
    last = np.cumsum(groups) - 1
    r = sizes % k
    small = sizes <= k
    out[last[small]] = sizes[small]
    big = ~small
    tail = big & (r >= 2)
    out[last[tail]] = r[tail]
    if k >= 3:
        # K q + 1 images: q - 1 groups of K, then K - 1 and 2.
        one = big & (r == 1)
        out[last[one]] = 2
        out[last[one] - 1] = k - 1
    elif k == 2:
        one = big & (r == 1)
        out[last[one]] = 3
    return out


def _full_shape(total: int, p: int) -> I64:
    """Column lengths that make every batch full but the last one or two."""
    full, rest = divmod(total, p)
    lengths = np.full(p, full, dtype=np.int64)
    lengths[:rest] += 1
    if rest == 1 and p >= 3 and full >= 1:
        # Avoid a last batch of a single group (no negative): P - 1 and 2.
        lengths[1] += 1
        lengths[-1] -= 1
    return lengths


def _fits(groups_in_order: I64, lengths: I64) -> bool:
    """Whether column-major filling puts every class in distinct rows."""
    starts = np.cumsum(groups_in_order) - groups_in_order
    column_ends = np.cumsum(lengths)
    start_column = np.searchsorted(column_ends, starts, side="right")
    return bool(np.all(groups_in_order <= lengths[start_column]))


def _layout(groups: I64, p: int) -> tuple[I64 | None, int]:
    """Chooses the grid: column lengths of the full shape, or uniform rows.

    Returns:
        `(lengths, rows)`: `lengths` is None when the grid has `rows` equal
        columns.
    """
    total = int(groups.sum())
    lengths = _full_shape(total, p)
    big = np.sort(groups[groups > lengths.min()])[::-1]
    if _fits(big, lengths):
        return lengths, int(lengths[0])
    return None, max(-(-total // p), int(groups.max()))


def num_batches(sizes: I64, p: int, k: int) -> int:
    """Returns the number of batches of an exhaustive epoch.

    Args:
        sizes: Images per class (all > 0).
        p: `num_classes_per_batch`.
        k: `num_images_per_class`.

    Returns:
        The batch count, the same for every seed and epoch.
    """
    lengths, rows = _layout(groups_per_class(sizes, k), p)
    return rows if lengths is None else int(lengths[0])


def plan_epoch(
    index: ClassIndex, p: int, k: int, *, shuffle: bool, seed: int, epoch: int
) -> tuple[I64, I64]:
    """Plans one exhaustive epoch.

    Args:
        index: The class index of the labels.
        p: `num_classes_per_batch`.
        k: `num_images_per_class`.
        shuffle: Whether to randomise image, class and batch order.
        seed: The sampler's seed.
        epoch: The epoch to plan.

    Returns:
        `(order, batch_sizes)`: the sample indices of all batches
        concatenated, and the length of each batch, in batch order.
    """
    sizes = index.sizes
    num_classes = len(sizes)
    if shuffle:
        class_of_member = segment_ids(sizes)
        keys = hash_keys(seed, STREAM_IMAGE_ORDER, epoch, index.members)
        members = index.members[sort_within_segments(class_of_member, keys)]
        del keys, class_of_member
    else:
        members = index.members

    groups = groups_per_class(sizes, k)
    sizes_of_groups = group_sizes(sizes, k, groups)
    group_class = segment_ids(groups)
    group_rank_in_class = segment_arange(groups)
    group_start = np.cumsum(sizes_of_groups) - sizes_of_groups

    lengths, rows = _layout(groups, p)
    threshold = int(lengths.min()) if lengths is not None else rows
    heavy = np.where(groups > threshold, groups, 0)
    if shuffle:
        tie = hash_keys(seed, STREAM_CLASS_ORDER, epoch, np.arange(num_classes))
        class_order = np.lexsort((tie, -heavy))
    else:
        class_order = np.lexsort((np.arange(num_classes), -heavy))
    ordered_groups = groups[class_order]
    class_start = np.empty(num_classes, dtype=np.int64)
    class_start[class_order] = np.cumsum(ordered_groups) - ordered_groups
    position = class_start[group_class] + group_rank_in_class

    if lengths is None:
        row, column = position % rows, position // rows
    else:
        column_ends = np.cumsum(lengths)
        column = np.searchsorted(column_ends, position, side="right")
        row = position - (column_ends[column] - lengths[column])

    row_sizes = np.bincount(row, weights=sizes_of_groups, minlength=rows).astype(np.int64)
    row_groups = np.bincount(row, minlength=rows)
    if shuffle:
        row_keys = hash_keys(seed, STREAM_BATCH_ORDER, epoch, np.arange(rows))
    else:
        row_keys = np.arange(rows, dtype=np.uint64)
    # Batches with more groups first (late batches may be smaller), random otherwise.
    row_order = np.lexsort((row_keys, -row_groups))
    rank = np.empty(rows, dtype=np.int64)
    rank[row_order] = np.arange(rows, dtype=np.int64)

    group_order = np.argsort(rank[row] * p + column, kind="stable")
    del position, row, column, group_class, group_rank_in_class
    where = expand_ranges(group_start[group_order], sizes_of_groups[group_order])
    order = members[where]
    return order, row_sizes[row_order]
