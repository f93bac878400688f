"""The class index: which samples belong to which class, as flat arrays."""

from __future__ import annotations

import attrs
import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]


@attrs.frozen(eq=False)
class ClassIndex:
    """Samples grouped by class in a compressed (CSR) layout.

    Classes are the distinct label values, in increasing order; class `c`
    holds the samples `members[offsets[c]:offsets[c + 1]]`, in increasing
    sample order.

    Attributes:
        label_values: The label value of each class, shape `(C,)`.
        sizes: The number of samples of each class, shape `(C,)`.
        offsets: Start of each class in `members`, shape `(C + 1,)`.
        members: Sample indices sorted by class, shape `(N,)`.
    """

    label_values: I64
    sizes: I64
    offsets: I64
    members: I64

    @classmethod
    def from_labels(cls, labels: I64) -> ClassIndex:
        """Builds the index from one integer label per sample.

        Args:
            labels: A 1-D int64 array of labels (already validated).

        Returns:
            The `ClassIndex` of `labels`.
        """
        members = np.argsort(labels, kind="stable").astype(np.int64, copy=False)
        sorted_labels = labels[members]
        starts = np.flatnonzero(np.diff(sorted_labels)) + 1
        offsets = np.concatenate([[0], starts, [len(labels)]]).astype(np.int64)
        label_values = sorted_labels[offsets[:-1]]
        del sorted_labels
        return cls(
            label_values=label_values.astype(np.int64, copy=False),
            sizes=np.diff(offsets),
            offsets=offsets,
            members=members,
        )

    @property
    def num_classes(self) -> int:
        """The number of classes (distinct labels)."""
        return len(self.sizes)

    @property
    def num_samples(self) -> int:
        """The number of samples."""
        return len(self.members)


def segment_arange(lengths: I64) -> I64:
    """Returns `0..l-1` for every length `l`, concatenated.

    Args:
        lengths: Non-negative int64 segment lengths.

    Returns:
        An int64 array of total length `lengths.sum()`.
    """
    return expand_ranges(np.zeros(len(lengths), dtype=np.int64), lengths)


def expand_ranges(starts: I64, lengths: I64) -> I64:
    """Returns `start..start+l-1` for every (start, l), concatenated.

    Args:
        starts: int64 start of every range.
        lengths: Non-negative int64 length of every range.

    Returns:
        An int64 array of total length `lengths.sum()`.
    """
    total = int(lengths.sum())
    out = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    out += np.arange(total, dtype=np.int64)
    return out


def segment_ids(lengths: I64) -> I64:
    """Returns the segment number of every element of concatenated segments.

    Args:
        lengths: Non-negative int64 segment lengths.

    Returns:
        An int64 array of total length `lengths.sum()`.
    """
    return np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)


def sort_within_segments(segment: I64, keys: npt.NDArray[np.uint64], *, key_width: int = 64) -> I64:
    """Returns the order that sorts elements by (segment, key, position).

    The segment, the key and the element's position are packed into one
    unique 64-bit word, so a plain (fast, unstable) sort gives the same order
    with any numpy version and CPU.

    Args:
        segment: Non-negative segment number of every element. Overwritten
            (used as scratch space to keep memory low).
        keys: A uint64 key per element. Overwritten too.
        key_width: How many low bits of the keys are significant. Full-width
            random keys (64) may lose low bits to the packing; narrower keys
            are kept whole, or sorted with a stable lexicographic sort when
            they do not fit.

    Returns:
        The int64 permutation that orders elements by segment, then key,
        then position.
    """
    size = len(segment)
    if size == 0:
        return np.zeros(0, dtype=np.int64)
    index_bits = max((size - 1).bit_length(), 1)
    key_bits = key_bits_available(int(segment.max()) + 1, size)
    if key_width == 64 and key_bits >= 16:
        keys >>= np.uint64(64 - key_bits)
    elif key_width > key_bits:
        return np.lexsort((keys, segment)).astype(np.int64, copy=False)
    packed = np.arange(size, dtype=np.uint64)
    keys <<= np.uint64(index_bits)
    packed |= keys
    high = segment.view(np.uint64)
    high <<= np.uint64(key_bits + index_bits)
    packed |= high
    packed.sort()
    packed &= np.uint64((1 << index_bits) - 1)
    return packed.view(np.int64)


def key_bits_available(num_segments: int, size: int) -> int:
    """How many key bits `sort_within_segments` keeps whole for this shape."""
    segment_bits = max((num_segments - 1).bit_length(), 1)
    index_bits = max((size - 1).bit_length(), 1)
    return 64 - segment_bits - index_bits
