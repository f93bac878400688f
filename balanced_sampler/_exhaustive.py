"""Exhaustive plans (`safe_triplet=False`): every sample exactly once per epoch.

A class's images are cut into groups of K (its last images split so that no
group holds a single image unless the class has one image), and the groups are
dealt into batches of at most P groups with no class twice in a batch.

The layout (`Layout.build`, from the class sizes, P and K only, so the number
of batches never depends on the seed) has two parts:

1. Exact batches. An exact P x K batch takes one full K-group from each of P
   classes, so no exactly-once plan holds more than
   B* = max B with sum_c min(full_c, B) >= P * B of them (`full_c`: the
   class's groups of exactly K images). The layout takes `num_exact` <= B*
   exact batches, their groups taken from the classes with the most groups
   (levelling them down), dealt column by column into `num_exact` rows.
2. The tail: every class's remaining images, cut the same way, dealt into a
   grid of rows column by column (a class's groups are contiguous, so it
   never lands twice in a row). When the groups allow it, the columns are
   shaped so that all rows but one or two are full (P groups); otherwise (a
   class has more groups than that shape has rows) the grid has as many rows
   as that class has groups, and the other classes' remaining images are cut
   into more, smaller groups (never below two images, at most one per row) so
   that as many rows as possible hold a second class.

With `priority="exact"`, `num_exact` is the largest number (at most B*) that
adds no batch and leaves no more tail rows without a second class than a plan
without exact batches would have (B* itself but in rare shapes, e.g. when one
class dominates the others). With
`priority="spread"`, there are no reserved exact batches (`num_exact` = 0):
every class's groups are spread over all the batches, which keeps more classes
in each batch when one class dominates.
"""

from __future__ import annotations

import attrs
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


def full_groups_per_class(sizes: I64, k: int) -> I64:
    """Returns how many groups of exactly K images each class is cut into.

    Args:
        sizes: Images per class.
        k: `num_images_per_class`.

    Returns:
        int64 counts (a class of K q + 1 images, q >= 1, K >= 2, has q - 1).
    """
    q, r = np.divmod(sizes, k)
    full = np.where((r == 1) & (q >= 1) & (k >= 2), q - 1, q)
    return np.where(sizes < k, 0, full).astype(np.int64)


def max_exact_batches(full: I64, p: int) -> int:
    """B*: the most exact P x K batches any exactly-once plan can hold.

    Args:
        full: Groups of exactly K images of every class.
        p: `num_classes_per_batch`.

    Returns:
        The largest B with `sum(min(full, B)) >= p * B`.
    """
    ordered = np.sort(full)
    prefix = np.concatenate([[0], np.cumsum(ordered)])
    low, high = 0, int(full.sum()) // p
    while low < high:
        b = (low + high + 1) // 2
        below = int(np.searchsorted(ordered, b, side="left"))
        if int(prefix[below]) + b * (len(ordered) - below) >= p * b:
            low = b
        else:
            high = b - 1
    return low


def _level(groups: I64, limit: I64, total: int) -> I64:
    """Takes `total` groups, at most `limit[c]` from class c, from the largest classes.

    Returns `x` with `x_c = clip(groups_c - L, 0, limit_c)` for the largest
    level L that gives at least `total`, minus the surplus (taken back from
    the first classes, in class order, that gave a group at level L).
    """
    if total == 0:
        return np.zeros(len(groups), dtype=np.int64)
    low, high = 0, int(groups.max())
    while low < high:
        level = (low + high + 1) // 2
        if int(np.clip(groups - level, 0, limit).sum()) >= total:
            low = level
        else:
            high = level - 1
    taken = np.clip(groups - low, 0, limit)
    surplus = int(taken.sum()) - total
    if surplus:
        marginal = np.flatnonzero(taken > np.clip(groups - low - 1, 0, limit))
        taken[marginal[:surplus]] -= 1
    return taken.astype(np.int64)


def _even_cut(images: I64, pieces: I64) -> I64:
    """Cuts each class's images into `pieces` near-equal groups, classes in order."""
    cls = segment_ids(pieces)
    rank = segment_arange(pieces)
    base = images // np.maximum(pieces, 1)
    extra = images % np.maximum(pieces, 1)
    return (base[cls] + (rank < extra[cls])).astype(np.int64)


@attrs.frozen(eq=False)
class _Tail:
    """The tail grid for one choice of exact batches (internal)."""

    pieces: I64  # groups of every class in the tail
    piece_sizes: I64  # their sizes, class by class
    lengths: I64 | None  # column lengths (full shape), or None for uniform rows
    rows: int
    lonely_rows: int  # rows holding a single group


def _tail(images: I64, p: int, k: int) -> _Tail:
    """Lays out the tail: the classes' remaining images (0 for none)."""
    present = images > 0
    groups = np.where(present, groups_per_class(np.maximum(images, 1), k), 0)
    sizes_std = group_sizes(images[present], k, groups[present])
    total = int(groups.sum())
    if total == 0:
        return _Tail(groups, sizes_std, np.zeros(p, dtype=np.int64), 0, 0)
    lengths, rows = _layout(groups, p)
    if lengths is not None:
        ordered = np.sort(lengths)[::-1]
        lonely = int(ordered[0] - (ordered[1] if p > 1 else 0)) if p > 1 else 0
        return _Tail(groups, sizes_std, lengths, rows, lonely)
    pieces = groups
    if p >= 2 and k >= 2 and total < 2 * rows:
        # Cut other classes' images smaller (>= 2 images, <= one group per row)
        # until every row can hold two groups, or no class can give more.
        room = np.minimum(rows, np.maximum(groups, images // 2)) - groups
        wanted = min(2 * rows, total + int(room.sum())) - total
        if wanted > 0:
            pieces = groups + _split_more(images, groups, room, wanted)
    sizes = sizes_std
    if not np.array_equal(pieces, groups):
        # Split classes take an even cut; the others keep the usual one.
        split = pieces > groups
        sizes = _even_cut(images, pieces)
        keep = ~split[segment_ids(pieces)]
        sizes[keep] = sizes_std[~split[present][segment_ids(groups[present])]]
    lonely = max(0, 2 * rows - int(pieces.sum()))
    return _Tail(pieces, sizes, None, rows, lonely)


def _split_more(images: I64, groups: I64, room: I64, wanted: int) -> I64:
    """Extra groups per class: `wanted` in all, largest groups cut first.

    Finds the largest group size s such that cutting every class into groups
    of at most s images (within its room) gives at least `wanted` extra
    groups, then gives back the surplus.
    """

    def extra_at(size: int) -> I64:
        need = -(-images // size)
        extra: I64 = np.clip(need - groups, 0, room)
        return extra

    low, high = 2, max(3, int(images.max()))
    while low < high:  # largest size with enough extra groups
        size = (low + high + 1) // 2
        if int(extra_at(size).sum()) >= wanted:
            low = size
        else:
            high = size - 1
    extra = extra_at(low)
    surplus = int(extra.sum()) - wanted
    if surplus > 0:
        coarser = extra_at(low + 1)
        marginal = np.flatnonzero(extra > coarser)
        give_back = np.zeros(len(extra), dtype=np.int64)
        # Each marginal class gives back at most its step; take in class order.
        step = extra[marginal] - coarser[marginal]
        cumulative = np.cumsum(step)
        take = np.minimum(step, np.maximum(0, surplus - (cumulative - step)))
        give_back[marginal] = take
        extra = extra - give_back
    return extra.astype(np.int64)


@attrs.frozen(eq=False)
class Layout:
    """The shape of every exhaustive epoch: seed-free, from class sizes, P and K.

    Attributes:
        p: `num_classes_per_batch`.
        k: `num_images_per_class`.
        max_exact: B*, the most exact P x K batches any exactly-once plan
            can hold.
        num_exact: The exact P x K batches of every epoch.
        exact_groups: Full K-groups of every class in the exact batches.
        tail_pieces: Groups of every class in the tail.
        tail_piece_sizes: Their sizes, class by class.
        tail_lengths: Column lengths of the tail grid, or None for equal
            columns of `tail_rows` rows.
        tail_rows: Batches of the tail.
        lonely_rows: Tail batches holding a single group (no negative).
    """

    p: int
    k: int
    max_exact: int
    num_exact: int
    exact_groups: I64
    tail_pieces: I64
    tail_piece_sizes: I64
    tail_lengths: I64 | None
    tail_rows: int
    lonely_rows: int

    @property
    def num_batches(self) -> int:
        """Batches per epoch (exact ones and the tail)."""
        return self.num_exact + self.tail_rows

    @classmethod
    def build(cls, sizes: I64, p: int, k: int, *, priority: str = "exact") -> Layout:
        """Chooses the exact batches and lays out the tail.

        Args:
            sizes: Images per class (all > 0).
            p: `num_classes_per_batch`.
            k: `num_images_per_class`.
            priority: "exact" (the most exact batches, at most B*, that
                leave no more lonely tail rows than none would) or "spread"
                (no reserved exact batches).

        Returns:
            The `Layout`.
        """
        groups = groups_per_class(sizes, k)
        full = full_groups_per_class(sizes, k)
        best = max_exact_batches(full, p)

        def attempt(b: int) -> tuple[I64, _Tail]:
            taken = _level(groups, np.minimum(full, b), p * b)
            return taken, _tail(sizes - taken * k, p, k)

        chosen = best if priority == "exact" else 0
        taken, tail = attempt(chosen)
        if chosen > 0:
            spread = attempt(0)[1]

            def keeps(b: int, tail: _Tail) -> bool:
                # No more batches, and no more lone ones, than without exact batches.
                lonely_ok = p < 2 or tail.lonely_rows <= spread.lonely_rows
                return lonely_ok and b + tail.rows <= spread.rows

            if not keeps(chosen, tail):
                low, high = 0, best - 1  # the largest b that keeps both
                while low < high:
                    b = (low + high + 1) // 2
                    if keeps(b, attempt(b)[1]):
                        low = b
                    else:
                        high = b - 1
                chosen = low
                taken, tail = attempt(chosen)
        return cls(
            p=p,
            k=k,
            max_exact=best,
            num_exact=chosen,
            exact_groups=taken,
            tail_pieces=tail.pieces,
            tail_piece_sizes=tail.piece_sizes,
            tail_lengths=tail.lengths,
            tail_rows=tail.rows,
            lonely_rows=tail.lonely_rows,
        )


def plan_epoch(
    index: ClassIndex, layout: Layout, *, shuffle: bool, seed: int, epoch: int
) -> tuple[I64, I64]:
    """Plans one exhaustive epoch.

    Args:
        index: The class index of the labels.
        layout: The epoch's shape (`Layout.build`).
        shuffle: Whether to randomise image, class and batch order.
        seed: The sampler's seed.
        epoch: The epoch to plan.

    Returns:
        `(order, batch_sizes)`: the sample indices of all batches
        concatenated, and the length of each batch, largest first.
    """
    p, k = layout.p, layout.k
    sizes = index.sizes
    num_classes = len(sizes)
    if shuffle:
        class_of_member = segment_ids(sizes)
        keys = hash_keys(seed, STREAM_IMAGE_ORDER, epoch, index.members)
        members = index.members[sort_within_segments(class_of_member, keys)]
        del keys, class_of_member
    else:
        members = index.members
    if shuffle:
        tie = hash_keys(seed, STREAM_CLASS_ORDER, epoch, np.arange(num_classes))
    else:
        tie = np.arange(num_classes, dtype=np.uint64)

    # Exact part: class c's first exact_groups[c] * K images, dealt into equal columns.
    exact = layout.exact_groups
    num_exact = layout.num_exact
    exact_class = segment_ids(exact)
    exact_start = index.offsets[exact_class] + segment_arange(exact) * k
    exact_order = np.argsort(tie, kind="stable")
    first = np.empty(num_classes, dtype=np.int64)
    first[exact_order] = np.cumsum(exact[exact_order]) - exact[exact_order]
    position = first[exact_class] + segment_arange(exact)
    exact_row = position % max(num_exact, 1)
    exact_column = position // max(num_exact, 1)
    del position

    # Tail: the remaining images, in groups of the layout's sizes.
    pieces = layout.tail_pieces
    piece_class = segment_ids(pieces)
    piece_sizes = layout.tail_piece_sizes
    within = np.cumsum(piece_sizes) - piece_sizes  # start in all pieces' images
    class_first = (np.cumsum(pieces) - pieces)[piece_class]  # the class's first piece
    piece_start = index.offsets[piece_class] + exact[piece_class] * k
    piece_start += within - within[class_first]
    lengths, rows = layout.tail_lengths, layout.tail_rows
    threshold = int(lengths.min()) if lengths is not None else rows
    heavy = np.where(pieces > threshold, pieces, 0)
    tail_order = np.lexsort((tie, -heavy))
    first[tail_order] = np.cumsum(pieces[tail_order]) - pieces[tail_order]
    position = first[piece_class] + segment_arange(pieces)
    if lengths is None:
        tail_row, tail_column = position % max(rows, 1), position // max(rows, 1)
    else:
        column_ends = np.cumsum(lengths)
        tail_column = np.searchsorted(column_ends, position, side="right")
        tail_row = position - (column_ends[tail_column] - lengths[tail_column])
    del position

    # All groups: rows numbered exact first, then the tail.
    group_row = np.concatenate([exact_row, num_exact + tail_row])
    del exact_row, tail_row
    group_column = np.concatenate([exact_column, tail_column])
    del exact_column, tail_column
    group_size = np.concatenate([np.full(len(exact_start), k, dtype=np.int64), piece_sizes])
    group_start = np.concatenate([exact_start, piece_start])
    del exact_start, piece_start, within, class_first, piece_class, exact_class
    total_rows = layout.num_batches
    row_sizes = np.bincount(group_row, weights=group_size, minlength=total_rows).astype(np.int64)
    if shuffle:
        row_keys = hash_keys(seed, STREAM_BATCH_ORDER, epoch, np.arange(total_rows))
    else:
        row_keys = np.arange(total_rows, dtype=np.uint64)
    # Largest batches first, random otherwise.
    row_order = np.lexsort((row_keys, -row_sizes))
    rank = np.empty(total_rows, dtype=np.int64)
    rank[row_order] = np.arange(total_rows, dtype=np.int64)
    sort_key = rank[group_row]
    del group_row
    sort_key *= p + 1
    sort_key += group_column
    del group_column
    group_order = np.argsort(sort_key, kind="stable")
    del sort_key
    where = expand_ranges(group_start[group_order], group_size[group_order])
    del group_order, group_start, group_size
    order = members[where]
    return order, row_sizes[row_order]
