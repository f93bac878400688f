"""Hard-class batches: which classes share a batch, by neighbourhood or category.

Fixed planning (`_fixed.plan_epoch`) decides two things per epoch: how many
groups every class shows (its quota), then which classes share a batch. This
module replaces the second step only, so quotas, coverage and rotation are
those of the plain dealing; it returns the class of every slot of every batch,
batches in play order.

An epoch of B batches has H = round(`hard_batch_fraction` * B) hard batches,
built one after the other from the groups left (`r_c` for class c, starting
at its quota):

1. Forced classes first. With R batches left (this one included), a class
   with `r_c == R` must be in every remaining batch, or its groups would not
   fit; such a class is put in the batch (this keeps `r_c <= R` for every
   class, which is exactly what lets the other batches be dealt as usual).
2. An anchor class: the next group of a seeded random order of the epoch's
   groups whose class still has groups left and is not in the batch (so a
   class anchors in proportion to its groups).
3. The anchor's neighbours (`NeighborTable`), nearest first, that still have
   groups left; or, for categories (`CategoryTable`), classes of the
   anchor's category taken round-robin in a seeded order of the epoch, then
   further categories (each started from the next class of a second seeded
   group order whose category is not in the batch yet) until the batch holds
   `categories_per_batch` categories. A category that runs short hands its
   share to the batch's next categories; when all of them run short, more
   categories are added.
4. Neighbour lists that run out: the batch is completed from the epoch's
   remaining groups in the second seeded group order, as the plain dealing
   would pick them (a class with more groups left is more likely).

A hard batch is *pure* when every class but the anchor comes from the
anchor's neighbour list (or from its `categories_per_batch` categories):
no class was forced in from elsewhere and nothing was completed by step 4.

The B - H other batches take the groups left, dealt column by column as in
the plain dealing (`_fixed.deal_column_major`); then all B batches are put in
a seeded order. Every step is a pure function of the quotas, the table, the
seed and the epoch. The loop over hard batches is plain Python over short
lists (a few microseconds per batch), not over samples.
"""

from __future__ import annotations

import math

import attrs
import numpy as np
import numpy.typing as npt

from balanced_sampler._classes import I64, sort_within_segments
from balanced_sampler._column_major import deal_column_major, slot_classes
from balanced_sampler._random import (
    STREAM_ANCHOR_ORDER,
    STREAM_CATEGORY_ORDER,
    STREAM_FILL_ORDER,
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
            remaining groups, no category beyond `categories_per_batch`, and
            an anchor (not a batch of forced classes only).
        listed: Slots (anchor excluded) whose class came from the anchor's
            neighbour list or the batch's categories.
        forced: Slots taken by classes that had to be in every remaining batch.
        filled: Slots completed from the remaining groups after the list (or
            the categories) ran out.
        extra_categories: Categories beyond `categories_per_batch`.
    """

    classes: I64
    hard: Bools
    pure: Bools
    listed: I64
    forced: I64
    filled: I64
    extra_categories: I64


def _group_order(groups: I64, *, stream: int, shuffle: bool, seed: int, epoch: int) -> list[int]:
    """Returns the class of every group of the epoch, in a seeded random order."""
    tokens = np.repeat(np.arange(len(groups), dtype=np.int64), groups)
    if not shuffle or len(tokens) == 0:
        return list(tokens.tolist())
    keys = hash_keys(seed, stream, epoch, np.arange(len(tokens), dtype=np.int64))
    order = sort_within_segments(np.zeros(len(tokens), dtype=np.int64), keys)
    return list(tokens[order].tolist())


class _Dealer:
    """The state of one epoch's hard batches while they are built.

    `left[c]` counts the groups class c has left; `mark[c] == i` says class c
    is in batch i already (no reset needed between batches).
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
        # Class C is a placeholder that never has groups (padding, used tokens).
        self.left: list[int] = [*groups.tolist(), 0]
        self.mark: list[int] = [-1] * (len(groups) + 1)
        self.anchors = _group_order(
            groups, stream=STREAM_ANCHOR_ORDER, shuffle=shuffle, seed=seed, epoch=epoch
        )
        self.anchor_at = 0
        self.fills = _group_order(
            groups, stream=STREAM_FILL_ORDER, shuffle=shuffle, seed=seed, epoch=epoch
        )
        self.fill_at = 0
        self.held: list[int] = []
        # Forced classes: class c must be in batch i once B - left[c] == i. It
        # is looked at when that batch comes (again later if it was dealt
        # meanwhile, since each group it shows moves its due batch by one).
        due = num_batches - groups
        watched = np.flatnonzero((groups > 0) & (due < num_hard))
        watched = watched[np.argsort(due[watched], kind="stable")]
        self.watched: list[int] = watched.tolist()
        self.watched_due: list[int] = due[watched].tolist()
        self.watched_at = 0
        self.later: dict[int, list[int]] = {}
        self.forced: list[int] = []
        self.is_forced: list[bool] = [False] * (len(groups) + 1)

    def start(self, i: int) -> list[int]:
        """Starts batch i: returns its forced classes (marked as in the batch)."""
        left, num_batches = self.left, self.num_batches
        newly: list[int] = []
        watched, watched_due = self.watched, self.watched_due
        at = self.watched_at
        while at < len(watched) and watched_due[at] == i:
            newly.append(watched[at])
            at += 1
        self.watched_at = at
        newly.extend(self.later.pop(i, ()))
        for c in newly:
            if not left[c]:
                continue
            due = num_batches - left[c]
            if due == i:
                if not self.is_forced[c]:
                    self.is_forced[c] = True
                    self.forced.append(c)
            elif due < self.num_hard:
                self.later.setdefault(due, []).append(c)
        batch = list(self.forced)
        if len(batch) > self.p:  # pragma: no cover - the quotas make this impossible
            raise AssertionError("more forced classes than slots")
        mark = self.mark
        for c in batch:
            mark[c] = i
        return batch

    def anchor(self, i: int) -> int:
        """Returns the next anchor for batch i (a class with groups left, not in the batch)."""
        anchors, left, mark = self.anchors, self.left, self.mark
        at = self.anchor_at
        # Skipped groups belong to classes that ran out or are forced (in
        # every batch from now on): neither can anchor later.
        while not left[anchors[at]] or mark[anchors[at]] == i:
            at += 1
        self.anchor_at = at + 1
        c = anchors[at]
        mark[c] = i
        return c

    def fill(self, i: int, count: int) -> list[int]:
        """Returns the next `count` classes of the fill order that can join batch i.

        Groups whose class is in the batch are held back for later batches,
        unless the class is forced (then it is in every batch from now on);
        groups of classes that ran out are dropped.
        """
        left, mark = self.left, self.mark
        taken: list[int] = []
        held: list[int] = []
        for c in self.held:
            if not left[c]:
                continue
            if len(taken) < count and mark[c] != i:
                mark[c] = i
                taken.append(c)
            else:
                held.append(c)
        fills, is_forced = self.fills, self.is_forced
        at = self.fill_at
        while len(taken) < count:
            c = fills[at]
            at += 1
            if not left[c] or is_forced[c]:
                continue
            if mark[c] == i:
                held.append(c)
                continue
            mark[c] = i
            taken.append(c)
        self.fill_at = at
        self.held = held
        return taken

    def finish(self, batch: list[int]) -> None:
        """Takes one group of every class of a completed batch."""
        left = self.left
        for c in batch:
            left[c] -= 1


@attrs.define
class _Origins:
    """Per hard batch: slots by origin (see `Dealt`); pure: no fill, no extra category."""

    listed: list[int] = attrs.Factory(list)
    forced: list[int] = attrs.Factory(list)
    filled: list[int] = attrs.Factory(list)
    extra_categories: list[int] = attrs.Factory(list)


def _neighborhoods(dealer: _Dealer, table: NeighborTable) -> tuple[list[int], _Origins]:
    """Builds the hard batches as neighbourhoods (anchor, then its neighbours).

    Returns:
        The classes of the hard batches, one after the other, and their origins.
    """
    p, rows = dealer.p, table.rows
    left, mark = dealer.left, dealer.mark
    out: list[int] = []
    origins = _Origins()
    listed_of, forced_of, filled_of = origins.listed, origins.forced, origins.filled
    for i in range(dealer.num_hard):
        batch = dealer.start(i)
        forced = len(batch)
        need = p - forced
        if need:
            batch.append(dealer.anchor(i))
            need -= 1
            if need:
                for c in rows[batch[-1]].tolist():
                    if left[c] and mark[c] != i:
                        batch.append(c)
                        mark[c] = i
                        need -= 1
                        if not need:
                            break
                listed_of.append(p - forced - 1 - need)
                if need:
                    batch.extend(dealer.fill(i, need))
            else:
                listed_of.append(0)
        else:
            listed_of.append(0)
        forced_of.append(forced)
        filled_of.append(need)
        for c in batch:
            left[c] -= 1
        out.extend(batch)
    origins.extra_categories = [0] * dealer.num_hard
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

    Returns:
        The classes of the hard batches, one after the other, and their origins.
    """
    p, left, mark = dealer.p, dealer.left, dealer.mark
    category_of: list[int] = [*table.category_of.tolist(), -1]
    members = _category_members(table, groups, shuffle=shuffle, seed=seed, epoch=epoch)
    turn = [0] * len(members)  # where each category's round-robin goes on
    lookahead = 4 * p
    out: list[int] = []
    origins = _Origins()
    for i in range(dealer.num_hard):
        batch = dealer.start(i)
        forced = len(batch)
        used: list[int] = []
        filled = 0
        starter = dealer.anchor(i) if forced < p else -1
        while starter >= 0:
            k = category_of[starter]
            # This category's share: the free slots over the categories to come.
            share = -(-(p - len(batch)) // max(1, per_batch - len(used))) - 1
            used.append(k)
            batch.append(starter)
            if share:
                cycle = members[k]
                n = len(cycle)
                at = turn[k]
                exhausted = 0
                step = 0
                while step < n:
                    c = cycle[(at + step) % n]
                    step += 1
                    if not left[c]:
                        exhausted += 1
                    elif mark[c] != i:
                        batch.append(c)
                        mark[c] = i
                        share -= 1
                        if not share:
                            break
                turn[k] = (at + step) % n
                if 2 * exhausted > n:
                    members[k] = [c for c in cycle if left[c]]
                    turn[k] = 0
            if len(batch) == p:
                break
            starter = _next_category_starter(dealer, i, used, category_of, lookahead)
            if starter < 0:
                filled = p - len(batch)
                batch.extend(dealer.fill(i, filled))
        origins.listed.append(p - forced - filled - min(1, len(used)))
        origins.forced.append(forced)
        origins.filled.append(filled)
        origins.extra_categories.append(max(0, len(used) - per_batch))
        for c in batch:
            left[c] -= 1
        out.extend(batch)
    return out, origins


def _next_category_starter(
    dealer: _Dealer, i: int, used: list[int], category_of: list[int], lookahead: int
) -> int:
    """The next group of the anchor order whose class can start a new category in batch i.

    Looks at most `lookahead` groups ahead; the group taken is used up (the
    ones passed over stay for later anchors). Returns -1 if none is found.
    """
    anchors, left, mark, is_forced = dealer.anchors, dealer.left, dealer.mark, dealer.is_forced
    placeholder = len(left) - 1
    start = dealer.anchor_at
    # Groups of classes that ran out or are forced can never anchor again.
    while start < len(anchors) and (not left[anchors[start]] or is_forced[anchors[start]]):
        start += 1
    dealer.anchor_at = start
    end = min(len(anchors), start + lookahead)
    for at in range(start, end):
        c = anchors[at]
        if left[c] and mark[c] != i and category_of[c] not in used:
            anchors[at] = placeholder
            mark[c] = i
            return c
    return -1


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
        left = np.array(dealer.left[:-1], dtype=np.int64)
        slot = deal_column_major(left, rest, p, shuffle=shuffle, seed=seed, epoch=epoch)
        parts.append(slot_classes(left, slot, rest * p).reshape(rest, p))
    classes = np.concatenate(parts)
    figures = {}
    for name in ("listed", "forced", "filled", "extra_categories"):
        values = np.zeros(num_batches, dtype=np.int64)
        values[:num_hard] = getattr(origins, name)
        figures[name] = values
    is_hard = np.arange(num_batches) < num_hard
    pure = (
        is_hard
        & (figures["filled"] == 0)
        & (figures["extra_categories"] == 0)
        & (figures["forced"] < p)
    )
    if shuffle:
        keys = hash_keys(seed, STREAM_HARD_BATCH_ORDER, epoch, np.arange(num_batches))
        order = np.argsort(keys, kind="stable")
        classes, is_hard, pure = classes[order], is_hard[order], pure[order]
        figures = {name: values[order] for name, values in figures.items()}
    return Dealt(classes=classes, hard=is_hard, pure=pure, **figures)
