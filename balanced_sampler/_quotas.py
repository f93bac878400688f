"""Fixed mode's quotas: how many groups each class shows in each epoch.

Each class has an expected share `s_c` of the epoch's `B * P` groups (its
weight's share, water-filled under the cap of one group per batch, i.e. at
most `B` groups). Epoch e gives class c `floor(s_c)` or `floor(s_c) + 1`
groups, exactly `B * P` in all, and the cumulative count over epochs
`0..E-1` has a closed form, so any epoch is planned without the ones before
and a class's count never drifts from `E * s_c` (a small share is not
starved: it gets its extra groups at its own rate).

The extra groups are scheduled by a binary tree over the classes' fractional
shares `f_c = s_c - floor(s_c)` (in units of `1 / DENOMINATOR`). A node with
fractional total `F` receives one extra group in some epochs (at rate `F`);
its two children split the parent's extras by rounding the parent's
cumulative count times their share (or, when their fractional totals wrap
past 1, the epochs without an extra), which keeps every node at most one
extra per epoch and every count a closed-form function of the epoch. Nodes
are paired by similar fractional totals, level by level, so a child's share
of its parent's extras is rarely lopsided.
"""

from __future__ import annotations

import attrs
import numpy as np
import numpy.typing as npt

from balanced_sampler._classes import I64
from balanced_sampler._random import STREAM_TIES, hash_keys

F64 = npt.NDArray[np.float64]

DENOMINATOR_BITS = 30
DENOMINATOR = 1 << DENOMINATOR_BITS
"""Shares are exact multiples of 1 / DENOMINATOR groups per epoch."""

MAX_EPOCH = 1 << 31
"""Epochs are numbered below this (cumulative counts stay exact in int64)."""


def water_fill(weights: F64, caps: F64, budget: float) -> F64:
    """Splits `budget` in proportion to `weights`, no class above its cap.

    Classes whose proportional share would pass their cap get the cap and the
    rest is shared again among the others.

    Args:
        weights: Non-negative weights.
        caps: Non-negative caps (ignored where the weight is 0).
        budget: The total to share, at most the sum of the caps of the
            classes with a positive weight.

    Returns:
        The share of every class (float64), summing to `budget`.
    """
    shares = np.zeros(len(weights), dtype=np.float64)
    positive = np.flatnonzero(weights > 0)
    if len(positive) == 0 or budget <= 0:
        return shares
    w, u = weights[positive], caps[positive]
    order = np.argsort(u / w, kind="stable")
    w, u = w[order], u[order]
    # Capping the first k classes (lowest cap / weight) leaves rate t_k for the rest.
    capped_caps = np.concatenate([[0.0], np.cumsum(u)])
    rest_weight = np.concatenate([[w.sum()], w.sum() - np.cumsum(w)])
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = (budget - capped_caps) / rest_weight
    # The first k whose next class stays under its cap at that rate.
    valid = rate[:-1] * w <= u * (1 + 1e-12)
    k = int(np.argmax(valid)) if valid.any() else len(w)
    share = u if k == len(w) else np.where(np.arange(len(w)) < k, u, w * rate[k])
    shares[positive[order]] = np.minimum(share, u)
    return shares


def quantise(shares: F64, caps: I64, budget: int) -> I64:
    """Returns shares as integers over DENOMINATOR, summing to `budget` exactly.

    Args:
        shares: Real shares summing to about `budget`.
        caps: Integer caps; no quantised share exceeds its cap.
        budget: The integer total.

    Returns:
        int64 numerators `S_c` with `sum(S_c) == budget * DENOMINATOR` and
        `S_c <= caps_c * DENOMINATOR`.
    """
    scaled = np.minimum(shares, caps) * DENOMINATOR
    numerators = np.floor(scaled).astype(np.int64)
    limit = caps.astype(np.int64) * DENOMINATOR
    numerators = np.minimum(numerators, limit)
    missing = budget * DENOMINATOR - int(numerators.sum())
    if missing < 0:
        # Float rounding overshot: take units back from the largest shares.
        for index in np.argsort(-numerators, kind="stable"):
            take = min(-missing, int(numerators[index]))
            numerators[index] -= take
            missing += take
            if missing == 0:
                break
    elif missing > 0:
        room = limit - numerators
        order = np.lexsort((-room, -(scaled - np.floor(scaled))))
        order = order[room[order] > 0]
        # One unit each to the largest remainders, then whatever room is left.
        first = order[:missing]
        numerators[first] += 1
        missing -= len(first)
        for index in order:
            if missing == 0:
                break
            take = min(missing, int(limit[index] - numerators[index]))
            numerators[index] += take
            missing -= take
    result: I64 = numerators
    return result


@attrs.frozen(eq=False)
class _Level:
    """One level of the extras tree: pairs of nodes merged into parents.

    The parents of this level are numbered `0..len(left)-1`, then the nodes
    passed up unpaired (`passed`) follow in order.
    """

    left: I64
    right: I64
    wrapped: npt.NDArray[np.bool_]
    ratio_num: I64
    ratio_den: I64
    passed: I64


@attrs.frozen(eq=False)
class ExtrasTree:
    """A closed-form schedule of one extra group per epoch at fractional rates.

    Attributes:
        levels: The pairing levels, leaves first.
        leaves: The class of each level-0 node (classes with a fraction).
        num_leaves: The number of classes.
        per_epoch: Extras handed out in every epoch (an integer).
    """

    levels: tuple[_Level, ...]
    leaves: I64
    num_leaves: int
    per_epoch: int

    @classmethod
    def build(cls, fractions: I64, tie_keys: npt.NDArray[np.uint64]) -> ExtrasTree:
        """Builds the tree over fractional shares (numerators in [0, DENOMINATOR)).

        Args:
            fractions: Every class's fractional share times DENOMINATOR; the
                total is a multiple of DENOMINATOR.
            tie_keys: Orders classes of equal fractional share.

        Returns:
            The `ExtrasTree`.
        """
        total = int(fractions.sum())
        per_epoch = total // DENOMINATOR
        live = np.flatnonzero(fractions > 0)
        # Leaves with a zero fraction never get an extra: left out of the tree.
        lam = fractions[live].astype(np.int64)
        key = tie_keys[live]
        levels: list[_Level] = []
        node_ids = live  # leaf class of each level-0 node
        while len(lam) > 1:
            frac = lam % DENOMINATOR
            order = np.lexsort((key, frac))
            pairs = len(order) // 2
            left, right = order[0 : 2 * pairs : 2], order[1 : 2 * pairs : 2]
            passed = order[2 * pairs :]
            f_left, f_right = frac[left], frac[right]
            parent = lam[left] + lam[right]
            f_parent = parent % DENOMINATOR
            wrapped = f_left + f_right >= DENOMINATOR
            levels.append(
                _Level(
                    left=left,
                    right=right,
                    wrapped=wrapped,
                    ratio_num=np.where(wrapped, DENOMINATOR - f_left, f_left),
                    ratio_den=np.where(wrapped, DENOMINATOR - f_parent, f_parent),
                    passed=passed,
                )
            )
            lam = np.concatenate([parent, lam[passed]])
            key = np.concatenate([np.minimum(key[left], key[right]), key[passed]])
        return cls(
            levels=tuple(levels), leaves=node_ids, num_leaves=len(fractions), per_epoch=per_epoch
        )

    def extras_before(self, epoch: int) -> I64:
        """Returns the extra groups every class had in epochs `0..epoch-1`."""
        out = np.zeros(self.num_leaves, dtype=np.int64)
        if len(self.leaves) == 0:
            return out
        # The root's fractional total is 0: it never has an extra of its own.
        count = np.zeros(1, dtype=np.int64)
        for level in reversed(self.levels):
            pairs = len(level.left)
            parent, passed = count[:pairs], count[pairs:]
            # Wrapped pairs split the epochs WITHOUT an extra instead.
            drive = np.where(level.wrapped, epoch - parent, parent)
            den = np.maximum(level.ratio_den, 1)
            first = (2 * drive * level.ratio_num + den) // (2 * den)
            first = np.where(level.ratio_den > 0, first, 0)
            second = drive - first
            children = np.empty(2 * pairs + len(level.passed), dtype=np.int64)
            children[level.left] = np.where(level.wrapped, epoch - first, first)
            children[level.right] = np.where(level.wrapped, epoch - second, second)
            children[level.passed] = passed
            count = children
        out[self.leaves] = count
        return out


@attrs.frozen(eq=False)
class Quotas:
    """Groups per epoch for every class, as a closed-form schedule.

    Epoch e gives class c `base[c]` groups, plus one when the schedule says
    so (only classes with `can_extra`).

    Attributes:
        base: Groups every class gets in every epoch, shape `(C,)`.
        can_extra: Whether a class gets one more group in some epochs.
        extras: The schedule of those extra groups.
    """

    base: I64
    can_extra: npt.NDArray[np.bool_]
    extras: ExtrasTree

    def extras_before(self, epoch: int) -> I64:
        """Returns the extra groups every class had in epochs `0..epoch-1`."""
        return self.extras.extras_before(epoch)

    def shown_before(self, epoch: int) -> I64:
        """Returns the groups each class has shown in epochs `0..epoch-1`."""
        return epoch * self.base + self.extras_before(epoch)

    def of_epoch(self, epoch: int) -> I64:
        """Returns the groups of every class in `epoch`."""
        return self.base + self.extras_before(epoch + 1) - self.extras_before(epoch)


def expected_shares(
    weights: F64, num_batches: int, p: int, *, sizes: I64 | None = None, k: int = 1
) -> F64:
    """Returns every class's expected groups per epoch (summing to `num_batches * p`).

    Without `sizes`, groups are shared in proportion to `weights`, water-filled
    under the cap of one group per batch (`num_batches` per epoch).

    With `sizes` (the "proportional" weighting) the split is the one that
    shows the most distinct images: first every class's whole groups
    (floor(n_c / K), shared in proportion to n_c if they do not all fit), then
    one group for the classes with the most images left over (shared equally
    among classes tied at the cut-off), then, if groups remain, shares in
    proportion to n_c. Any split with these expected shares and quotas of
    `floor` or `ceil` of them reaches the coverage ceiling in every epoch.

    Args:
        weights: Non-negative weight of every class; at least `p` positive.
        num_batches: Batches per epoch.
        p: `num_classes_per_batch`.
        sizes: Images per class, for the coverage-optimal split.
        k: `num_images_per_class`, with `sizes`.

    Returns:
        float64 shares, each at most `num_batches`.
    """
    budget = num_batches * p
    cap = np.where(weights > 0, float(num_batches), 0.0)
    if sizes is None:
        return water_fill(weights, cap, budget)
    whole = np.minimum(cap, sizes // k)
    if budget <= whole.sum():
        return water_fill(weights, whole, budget)
    left_over = np.where(whole < cap, sizes - whole * k, 0)
    left = budget - int(whole.sum())
    if left <= int(np.count_nonzero(left_over)):
        cutoff = np.sort(left_over)[-left]
        above = left_over > cutoff
        tied = left_over == cutoff
        share = (left - int(above.sum())) / int(tied.sum())
        shares: F64 = whole + above + np.where(tied, share, 0.0)
        return shares
    base = whole + (left_over > 0)
    rest = budget - float(base.sum())
    return base + water_fill(weights, cap - base, rest)


def schedule(shares: F64, num_batches: int, p: int, *, shuffle: bool, seed: int) -> Quotas:
    """Turns expected shares into the closed-form `Quotas` schedule.

    Args:
        shares: Expected groups per epoch of every class (from
            `expected_shares`).
        num_batches: Batches per epoch (the cap on any class's groups).
        p: `num_classes_per_batch`.
        shuffle: Whether the seed orders classes of equal fractional share
            (False: label order, seed-free).
        seed: The sampler's seed.

    Returns:
        The `Quotas`.
    """
    budget = num_batches * p
    # A class never rounds past the next whole group of its share (nor past B).
    caps = np.minimum(num_batches, np.ceil(shares - 1e-9)).astype(np.int64)
    numerators = quantise(shares, caps, budget)
    base = numerators // DENOMINATOR
    fractions = numerators % DENOMINATOR
    classes = np.arange(len(shares), dtype=np.int64)
    tie_keys = hash_keys(seed, STREAM_TIES, classes) if shuffle else classes.astype(np.uint64)
    tree = ExtrasTree.build(fractions, tie_keys)
    return Quotas(base=base, can_extra=fractions > 0, extras=tree)
