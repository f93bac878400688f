"""Counter-based randomness: reproducible keys from (seed, stream, counters).

Every random decision of a plan is a pure function of the seed, the epoch and
the identity of the thing being decided (a class, an image, a batch). Keys come
from a vectorised SplitMix64 finaliser applied to those integers, so a plan
never reads or writes a global random state, gives the same result in any
process, and any epoch can be computed without computing the ones before it.
"""

from __future__ import annotations

import secrets

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)

# One stream id per kind of random decision, so that no two decisions share keys.
STREAM_IMAGE_ORDER = 1  # exhaustive mode: order of a class's images in an epoch
STREAM_CLASS_ORDER = 2  # order in which classes are dealt into batches
STREAM_BATCH_ORDER = 3  # order of the batches of an epoch
STREAM_CYCLE = 4  # fixed mode: a class's jitter for one pass over it
STREAM_GROUPING = 5  # fixed mode: how an epoch's images of a class form groups
STREAM_TIES = 6  # fixed mode: rotation order of classes tied for an extra group
STREAM_BASE_ORDER = 7  # fixed mode: a class's fixed base order of its images
STREAM_GROUP_ORDER = 8  # hard batches: anchors (from the front) and fills (from the back)
STREAM_CATEGORY_ORDER = 9  # category batches: order of each category's classes
STREAM_HARD_BATCH_ORDER = 10  # hard batches: play order of hard and other batches


def draw_seed() -> int:
    """Draws a fresh seed from the operating system's entropy pool.

    Returns:
        A non-negative int below 2**32. The global `random` and `numpy.random`
        states are neither read nor changed.
    """
    return secrets.randbits(32)


def _mix(x: U64) -> U64:
    """Applies the SplitMix64 finaliser to every element, in place.

    Wrapping uint64 arithmetic; works on `x` itself to keep memory at two
    arrays.
    """
    with np.errstate(over="ignore"):
        x += _GOLDEN
        tmp = x >> _S30
        x ^= tmp
        x *= _MIX1
        np.right_shift(x, _S27, out=tmp)
        x ^= tmp
        x *= _MIX2
        np.right_shift(x, _S31, out=tmp)
        x ^= tmp
    return x


def hash_keys(seed: int, stream: int, *counters: npt.ArrayLike) -> U64:
    """Returns uniformly distributed 64-bit keys for the given counters.

    Args:
        seed: The sampler's seed (a non-negative int).
        stream: Which kind of decision the keys are for (a `STREAM_*` id).
        *counters: Integer scalars or arrays, broadcast against each other;
            each combination of values gets its own independent key.

    Returns:
        A uint64 array of the broadcast shape of `counters`.
    """
    h = _mix(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    h ^= np.uint64(stream)
    h = _mix(h)
    for counter in counters:
        value = _mix(np.array(counter, dtype=np.uint64, ndmin=1))
        if value.shape == np.broadcast_shapes(value.shape, h.shape):
            value ^= h
            h = _mix(value)
        else:
            h = _mix(h ^ value)
    return h


def hash_segmented(
    seed: int,
    stream: int,
    segment: npt.NDArray[np.int64],
    position: npt.NDArray[np.int64],
    *segment_counters: npt.ArrayLike,
) -> U64:
    """Returns keys for elements identified by (segment, position in segment).

    Hashes each segment's counters once, then mixes in the positions; this
    is `hash_keys(seed, stream, *counters_of_segment, position)` in spirit,
    with less memory for many elements.

    Args:
        seed: The sampler's seed.
        stream: Which kind of decision the keys are for.
        segment: The segment of every element (indexes `segment_counters`).
        position: Every element's position inside its segment.
        *segment_counters: Integer arrays with one value per segment.

    Returns:
        A uint64 array with one key per element.
    """
    per_segment = hash_keys(seed, stream, *segment_counters)
    keys = per_segment[segment]
    keys ^= position.view(np.uint64)
    return _mix(keys)
