"""Hard-class batches: which classes share a batch, by neighbourhood or category.

Fixed planning (`_fixed.plan_epoch`) decides two things per epoch: how many
groups every class shows (its quota), then which classes share a batch. This
module replaces the second step only, so quotas, coverage and rotation are
those of the plain dealing; it returns the class of every slot of every batch,
batches in play order.

An epoch of B batches has H = round(`hard_batch_fraction` * B) hard batches
(half up), built one after the other from the groups left:

1. Forced classes. With R batches left (this one included), a class with R
   groups left must be in every remaining batch, or its groups would not
   fit: it joins this batch and every later one. (This keeps every class at
   most R groups, which is exactly what lets the batches that follow be
   dealt at all.)
2. An anchor: the class of the next group of the epoch's seeded group order
   that still has groups left (the order spreads each class's groups evenly,
   see `_group_order`; classes with more groups anchor more batches, a class
   of one group is often taken as a neighbour before its turn comes).
3. With neighbours (`NeighborTable`): the first classes of the anchor's
   list, nearest first, that have groups left. With categories
   (`CategoryTable`): classes of the anchor's category, taken round-robin
   in a seeded order of the epoch, up to the category's share of the batch;
   then, with `categories_per_batch` > 1, the next groups of the anchor order
   whose category is new to the batch start the next categories (each takes
   the free slots over the categories still to come, so a category that runs
   short hands its share to the next).
4. When the list (or the batch's categories) runs out, the batch is
   completed from the back of the same group order: classes with groups
   left that are not in the batch yet (a class with more groups left is
   more likely, as in the plain dealing).

A hard batch is pure when step 4 added nothing. Forced classes are counted
apart: no dealing that keeps the quotas can leave them out.

The B - H other batches take the groups left, dealt column by column as in
the plain dealing (`_column_major.deal_column_major`); then all B batches are
put in a seeded order. Every step is a pure function of the quotas, the
table, the seed and the epoch. The loop over hard batches is plain Python
over short lists (a few microseconds per batch), not over samples.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from itertools import chain, islice

import attrs
import numpy as np
import numpy.typing as npt

from balanced_sampler._classes import I64, segment_arange, sort_within_segments
from balanced_sampler._column_major import deal_column_major, slot_classes
from balanced_sampler._random import (
    STREAM_CATEGORY_ORDER,
    STREAM_GROUP_ORDER,
    STREAM_HARD_BATCH_ORDER,
    hash_keys,
)
from balanced_sampler.class_tables import CategoryTable, NeighborTable

Bools = npt.NDArray[np.bool_]


@attrs.frozen(eq=False)
class HardDealing:
    """How an epoch's hard-class batches are dealt.

    Attributes:
        source: The neighbour table or the categories.
        fraction: `hard_batch_fraction`, the share of the epoch's batches
            dealt from `source`.
        categories_per_batch: With categories, how many a batch takes its
            classes from.
    """

    source: NeighborTable | CategoryTable
    fraction: float
    categories_per_batch: int = 1

    def num_hard(self, num_batches: int) -> int:
        """Returns H: `fraction * num_batches`, rounded half up."""
        return min(num_batches, math.floor(self.fraction * num_batches + 0.5))


@attrs.frozen(eq=False)
class Dealt:
    """The classes that share each batch of one epoch, and how they were chosen.

    Per batch (arrays of shape `(B,)`, batches in play order; 0 or False for
    the batches that are not hard):

    Attributes:
        classes: int64 `(B, P)`: the class of every slot.
        hard: Whether the batch was dealt as a neighbourhood or category batch.
        pure: Whether it is a pure hard batch: nothing completed from the
            remaining groups.
        listed: Slots (anchor excluded) whose class came from the anchor's
            neighbour list or the batch's categories.
        forced: Slots taken by classes that had to be in every remaining batch.
        filled: Slots completed from the remaining groups after the list (or
            the batch's categories) ran out.
    """

    classes: I64
    hard: Bools
    pure: Bools
    listed: I64
    forced: I64
    filled: I64


_CHUNK = 4096
"""Groups of the group order turned into Python ints at a time (most are never needed)."""


def _group_order(groups: I64, *, shuffle: bool, seed: int, epoch: int, turn: int = 0) -> I64:
    """Returns the class of every group, each class's groups spread evenly over the order.

    Group j of class c (of g_c groups) has the key (j + u_c) / g_c, u_c a
    seeded uniform in [0, 1) (one half without shuffle; `turn` draws a fresh
    one); groups come in the order of their keys (ties: class order). Any
    stretch of the order holds each class about in proportion to its groups,
    and a class's groups are about `len / g_c` apart, so a short stretch
    rarely names a class twice.
    """
    classes = np.repeat(np.arange(len(groups), dtype=np.int64), groups)
    if len(classes) == 0:
        return classes
    if shuffle:
        bits = hash_keys(seed, STREAM_GROUP_ORDER, epoch, turn, np.arange(len(groups)))
        offset = (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53
    else:
        offset = np.full(len(groups), 0.5)
    keys = (segment_arange(groups) + offset[classes]) / groups[classes]
    scaled = (keys * 2.0**40).astype(np.uint64)
    order = sort_within_segments(np.zeros(len(classes), dtype=np.int64), scaled, key_width=40)
    result: I64 = classes[order]
    return result


def _ints(array: I64) -> Iterator[int]:
    """The values of `array` as Python ints, converted a chunk at a time."""
    return chain.from_iterable(
        array[start : start + _CHUNK].tolist() for start in range(0, len(array), _CHUNK)
    )


class _Dealer:
    """The state of one epoch's hard batches while they are built.

    `free[c]` counts the groups class c has left, except that a forced class
    (in every remaining batch, see `start`) has 0: it is placed by `start`
    and never chosen otherwise. Class C (the last entry) is a placeholder
    that never has groups (the padding of neighbour lists).

    Anchors are drawn from the front of the epoch's seeded group order and
    fills from its back; groups of classes that are not free are passed over
    (they never become free again). A class that is free always has a group
    ahead of the anchors (each group taken as an anchor is one of the
    class's groups shown), so anchors never run out; fills pass over groups
    of classes already in the batch and start a new order of the free
    groups when theirs runs out.
    """

    def __init__(
        self,
        groups: I64,
        num_batches: int,
        p: int,
        num_hard: int,
        *,
        shuffle: bool,
        seed: int,
        epoch: int,
    ) -> None:
        self.p = p
        self.num_batches = num_batches
        self.num_hard = num_hard
        self.free: list[int] = [*groups.tolist(), 0]
        order = _group_order(groups, shuffle=shuffle, seed=seed, epoch=epoch)
        self.anchors = filter(self.free.__getitem__, _ints(order))
        self.fills = filter(self.free.__getitem__, _ints(order[::-1]))
        self.pending: deque[int] = deque()  # anchors drawn ahead (category starters)
        self.shuffle, self.seed, self.epoch, self.fill_pass = shuffle, seed, epoch, 0
        # Class c must be in batch i once B - (its groups left) == i. It is
        # looked at when that batch comes (again later if it was dealt
        # meanwhile: each group it shows moves its due batch by one).
        due = num_batches - groups
        watched = np.flatnonzero((groups > 0) & (due < num_hard))
        watched = watched[np.argsort(due[watched], kind="stable")]
        dues, starts = np.unique(due[watched], return_index=True)
        parts = np.split(watched, starts[1:]) if len(watched) else []
        self.checks: dict[int, list[int]] = {
            d: part.tolist() for d, part in zip(dues.tolist(), parts, strict=True)
        }
        self.forced: list[int] = []

    def start(self, i: int, due: list[int]) -> list[int]:
        """Starts batch i, whose `checks` were `due`: returns its forced classes.

        A class due at batch i is forced if its groups left still equal the
        batches left; otherwise (it was dealt meanwhile) it is due later.
        """
        free, num_batches, checks = self.free, self.num_batches, self.checks
        for c in due:
            if free[c]:
                later = num_batches - free[c]
                if later == i:
                    self.forced.append(c)
                    free[c] = 0
                elif later < self.num_hard:
                    checks.setdefault(later, []).append(c)
        if len(self.forced) > self.p:  # pragma: no cover - the quotas make this impossible
            raise AssertionError("more forced classes than slots")
        return self.forced[:]

    def anchor(self) -> int:
        """Returns the next anchor: the next group of the order whose class is free."""
        free, pending = self.free, self.pending
        while pending:
            c = pending.popleft()
            if free[c]:
                return c
        return next(self.anchors)

    def starter(self, used: set[int], category_of: list[int], lookahead: int) -> int:
        """Returns the next anchor whose category is not in `used`, or -1.

        Looks at most `lookahead` groups ahead; the groups passed over stay
        for later anchors. (A free class of a category not yet in the batch
        is not in the batch: forced classes are not free.)
        """
        free, pending = self.free, self.pending
        if pending:
            pending = deque(c for c in pending if free[c])
            self.pending = pending
            for j, c in enumerate(pending):
                if category_of[c] not in used:
                    del pending[j]
                    return c
        while len(pending) < lookahead:
            c = next(self.anchors, -1)
            if c < 0:
                break
            if category_of[c] not in used:
                return c
            pending.append(c)
        return -1

    def fill(self, batch: list[int], count: int) -> list[int]:
        """Returns `count` free classes not in `batch`, from the back of the order.

        Groups drawn whose class is in the batch (or drawn twice) are passed
        over; when the order runs out, a new seeded order of the groups
        still free continues it.
        """
        drawn = list(islice(self.fills, count))
        inside = set(batch)
        if len(drawn) == count and inside.isdisjoint(drawn) and len(set(drawn)) == count:
            return drawn  # the usual case
        taken: list[int] = []
        while True:
            for c in drawn:
                if c not in inside:
                    inside.add(c)
                    taken.append(c)
                    if len(taken) == count:
                        return taken
            want = count - len(taken)
            drawn = list(islice(self.fills, want))
            if len(drawn) < want:
                self._new_fill_order()

    def _new_fill_order(self) -> None:
        """Continues the fills with a new seeded order of the groups still free."""
        self.fill_pass += 1
        free = np.array(self.free, dtype=np.int64)
        order = _group_order(
            free, shuffle=self.shuffle, seed=self.seed, epoch=self.epoch, turn=self.fill_pass
        )
        self.fills = filter(self.free.__getitem__, _ints(order[::-1]))

    def left(self) -> I64:
        """Returns the groups every class has left (forced ones included)."""
        left = np.array(self.free[:-1], dtype=np.int64)
        left[self.forced] = self.num_batches - self.num_hard
        return left


def _take_one_group(free: list[int], classes: list[int]) -> None:
    """Takes one group of every class of `classes` (distinct)."""
    for c in classes:
        free[c] -= 1


@attrs.define
class _Origins:
    """Per hard batch: slots by origin (see `Dealt`)."""

    listed: list[int] = attrs.Factory(list)
    forced: list[int] = attrs.Factory(list)
    filled: list[int] = attrs.Factory(list)


def _neighborhoods(dealer: _Dealer, table: NeighborTable) -> tuple[list[int], _Origins]:
    """Builds the hard batches as neighbourhoods (anchor, then its neighbours).

    Returns:
        The classes of the hard batches, one after the other, and their origins.
    """
    p, rows, free, checks = dealer.p, table.rows, dealer.free, dealer.checks
    anchors = dealer.anchors
    out: list[int] = []
    origins = _Origins()
    listed_of, forced_of, filled_of = origins.listed, origins.forced, origins.filled
    for i in range(dealer.num_hard):
        due = checks.pop(i, None)
        batch = dealer.forced[:] if due is None else dealer.start(i, due)
        forced = len(batch)
        need = p - forced
        listed = 0
        if need:
            anchor = next(anchors)  # (`dealer.pending` is for categories only)
            batch.append(anchor)
            need -= 1
            # The anchor is not in its own list and a list names a class once,
            # so the first free classes of the list are all new to the batch.
            batch.extend(islice(filter(free.__getitem__, rows[anchor].tolist()), need))
            listed = len(batch) - forced - 1
            need -= listed
            if need:
                batch.extend(dealer.fill(batch, need))
            _take_one_group(free, batch[forced:])
        listed_of.append(listed)
        forced_of.append(forced)
        filled_of.append(need)
        out.extend(batch)
    return out, origins


def _category_members(
    table: CategoryTable, groups: I64, *, shuffle: bool, seed: int, epoch: int
) -> list[list[int]]:
    """The classes with groups of every category, in a seeded order of the epoch."""
    active = np.flatnonzero(groups > 0)
    category = table.category_of[active]
    if shuffle:
        keys = hash_keys(seed, STREAM_CATEGORY_ORDER, epoch, active)
    else:
        keys = active.astype(np.uint64)
    order = sort_within_segments(category.copy(), keys)
    counts = np.bincount(category, minlength=table.num_categories)
    members = active[order].tolist()
    ends = np.cumsum(counts).tolist()
    return [members[end - n : end] for end, n in zip(ends, counts.tolist(), strict=True)]


def _categories(
    dealer: _Dealer,
    table: CategoryTable,
    per_batch: int,
    groups: I64,
    *,
    shuffle: bool,
    seed: int,
    epoch: int,
) -> tuple[list[int], _Origins]:
    """Builds the hard batches from categories (see the module docstring).

    Each category's classes form a cycle in a seeded order of the epoch; a
    batch takes the next free ones after where the category's last batch
    stopped (round robin). Classes that ran out are passed over (and dropped
    from the cycle once they make up most of what a batch passes over).

    Returns:
        The classes of the hard batches, one after the other, and their origins.
    """
    p, free, checks = dealer.p, dealer.free, dealer.checks
    category_of: list[int] = [*table.category_of.tolist(), -1]
    cycles = _category_members(table, groups, shuffle=shuffle, seed=seed, epoch=epoch)
    turns = [0] * len(cycles)  # where each category's round robin goes on
    out: list[int] = []
    origins = _Origins()
    for i in range(dealer.num_hard):
        due = checks.pop(i, None)
        batch = dealer.forced[:] if due is None else dealer.start(i, due)
        forced = len(batch)
        used: set[int] = set()
        starter = dealer.anchor() if forced < p else -1
        while starter >= 0:
            k = category_of[starter]
            # This category's share: the free slots over the categories to come.
            share = -(-(p - len(batch)) // max(1, per_batch - len(used))) - 1
            used.add(k)
            batch.append(starter)
            if share:
                cycle, turn = cycles[k], turns[k]
                ahead = chain(islice(cycle, turn, None), islice(cycle, 0, turn))
                taken = list(islice(filter(free.__getitem__, ahead), share + 1))
                if starter in taken:
                    taken.remove(starter)
                del taken[share:]
                if taken:
                    batch.extend(taken)
                    last = taken[-1]
                    try:
                        stop = cycle.index(last, turn)
                    except ValueError:
                        stop = cycle.index(last)
                    passed = (stop - turn) % len(cycle) + 1
                    turns[k] = (stop + 1) % len(cycle)
                    if passed > 4 * (len(taken) + 1):  # mostly classes that ran out
                        cycles[k] = [c for c in cycle if free[c]]
                        turns[k] = 0
            if len(batch) == p or len(used) == per_batch:
                break
            starter = dealer.starter(used, category_of, 4 * p)
        filled = p - len(batch)
        if filled:
            batch.extend(dealer.fill(batch, filled))
        origins.listed.append(p - forced - filled - min(1, len(used)))
        origins.forced.append(forced)
        origins.filled.append(filled)
        _take_one_group(free, batch[forced:])
        out.extend(batch)
    return out, origins


def deal_hard_batches(
    groups: I64,
    num_batches: int,
    p: int,
    hard: HardDealing,
    *,
    shuffle: bool,
    seed: int,
    epoch: int,
) -> Dealt:
    """Deals an epoch's groups into hard-class batches and plain ones.

    Args:
        groups: Groups of every class this epoch (its quota; at most
            `num_batches` each, `num_batches * p` in all).
        num_batches: B.
        p: `num_classes_per_batch`.
        hard: The table (or categories) and the fraction of hard batches.
        shuffle: Whether to randomise anchors, fills, category order and the
            order of the batches (False: class order, hard batches first).
        seed: The sampler's seed.
        epoch: The epoch to plan.

    Returns:
        The `Dealt`: the class of every slot, batches in play order, and how
        the hard batches were made.
    """
    num_hard = hard.num_hard(num_batches)
    dealer = _Dealer(groups, num_batches, p, num_hard, shuffle=shuffle, seed=seed, epoch=epoch)
    if isinstance(hard.source, NeighborTable):
        batches, origins = _neighborhoods(dealer, hard.source)
    else:
        batches, origins = _categories(
            dealer,
            hard.source,
            hard.categories_per_batch,
            groups,
            shuffle=shuffle,
            seed=seed,
            epoch=epoch,
        )
    parts = [np.array(batches, dtype=np.int64).reshape(num_hard, p)]
    rest = num_batches - num_hard
    if rest:
        left = dealer.left()
        slot = deal_column_major(left, rest, p, shuffle=shuffle, seed=seed, epoch=epoch)
        parts.append(slot_classes(left, slot, rest * p).reshape(rest, p))
    classes = np.concatenate(parts)
    figures = {}
    for name in ("listed", "forced", "filled"):
        values = np.zeros(num_batches, dtype=np.int64)
        values[:num_hard] = getattr(origins, name)
        figures[name] = values
    is_hard = np.arange(num_batches) < num_hard
    pure = is_hard & (figures["filled"] == 0)
    if shuffle:
        keys = hash_keys(seed, STREAM_HARD_BATCH_ORDER, epoch, np.arange(num_batches))
        order = np.argsort(keys, kind="stable")
        classes, is_hard, pure = classes[order], is_hard[order], pure[order]
        figures = {name: values[order] for name, values in figures.items()}
    return Dealt(classes=classes, hard=is_hard, pure=pure, **figures)
