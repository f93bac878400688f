"""Tables over classes for hard-class batches: neighbour lists and categories.

`NeighborTable.build` and `CategoryTable.build` check what the user gave
(`class_neighbors`, `categories`) against the labels, with messages that name
the argument, the value received and what is allowed, and turn it into class
indices (class i is the i-th distinct label, in increasing order) for the
dealing (`_hard_dealing`). Each carries a digest that identifies it, for the
sampler's `state_dict` fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from balanced_sampler._classes import I64
from balanced_sampler.checks import is_int

I32 = npt.NDArray[np.int32]

NEIGHBORS_ALLOWED = (
    "an integer array of shape (C, M) whose row i lists, nearest first, the labels closest "
    "to the i-th distinct label (labels in increasing order), or a mapping "
    "{label: sequence of labels}"
)


def _digest(array: npt.NDArray[Any], what: str) -> str:
    data = np.ascontiguousarray(array)
    return f"{what}, sha256:" + hashlib.sha256(data.tobytes()).hexdigest()[:16]


def _examples(items: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(item) for item in list(items)[:limit])
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return shown + more


@attrs.frozen(eq=False)
class NeighborTable:
    """A checked class-neighbour table, in class indices.

    Attributes:
        rows: int32 array `(C + 1, M)`: row c lists class c's neighbours
            (class indices, nearest first). Shorter lists (from a mapping)
            are padded with C, a placeholder class that never has groups;
            row C is all padding.
        lengths: int64 `(C,)`: how many neighbours each class has.
        label_values: The distinct labels (class i is `label_values[i]`).
        digest: A string that identifies the table (its shape and a hash of
            its class indices): the same table given as an array or a
            mapping has the same digest.
    """

    rows: I32
    lengths: I64
    label_values: I64
    digest: str

    @property
    def num_neighbors(self) -> int:
        """M, the longest neighbour list."""
        return int(self.rows.shape[1])

    def as_labels(self) -> npt.NDArray[np.int64] | dict[int, npt.NDArray[np.int64]]:
        """Returns the table in labels, as given to the sampler.

        Returns:
            An int64 array `(C, M)` of labels when every class has M
            neighbours, else a dict `{label: int64 array of labels}`.
        """
        c = len(self.label_values)
        padded = np.append(self.label_values, 0)[self.rows[:c]]
        if bool(np.all(self.lengths == self.num_neighbors)):
            return padded
        return {
            int(label): padded[i, : self.lengths[i]]
            for i, label in enumerate(self.label_values.tolist())
        }

    @classmethod
    def build(cls, value: object, label_values: I64) -> NeighborTable:
        """Checks `class_neighbors` against the labels and converts it.

        Args:
            value: An integer array `(C, M)` (row i: the neighbours of the
                i-th distinct label, nearest first) or a mapping
                `{label: sequence of labels}` with a key for every label.
            label_values: The distinct labels, in increasing order (C of them).

        Returns:
            The `NeighborTable`.

        Raises:
            TypeError: If the table is not an integer array or a mapping of
                integer sequences.
            ValueError: If its shape does not match the C classes, or it
                names a label that is not among the labels, a class among its
                own neighbours, a neighbour twice in one list, or (mapping)
                misses a label.
        """
        if isinstance(value, Mapping):
            labels_table, lengths = _mapping_rows(value, label_values)
        else:
            labels_table = _array_rows(value, len(label_values))
            lengths = np.full(len(label_values), labels_table.shape[1], dtype=np.int64)
        indices = _label_indices(labels_table, lengths, label_values)
        c, m = indices.shape
        rows = np.full((c + 1, m), c, dtype=np.int32)
        rows[:c] = indices
        _check_rows(rows[:c], lengths, label_values)
        rows.flags.writeable = False
        return cls(
            rows=rows,
            lengths=lengths,
            label_values=label_values,
            digest=_digest(rows[:c], f"{c} x {m}"),
        )


def _array_rows(value: object, num_classes: int) -> I64:
    """The table given as an array: checks its type and shape."""
    if value is None or isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(
            f"`class_neighbors` must be {NEIGHBORS_ALLOWED}. "
            f"Received: class_neighbors={value!r} of type {type(value).__name__}"
        )
    try:
        array = np.asarray(value)
    except ValueError as error:  # a ragged list of lists
        raise ValueError(
            "`class_neighbors` as an array must be rectangular (every row the same length); "
            f"use a mapping {{label: sequence of labels}} for lists of different lengths. "
            f"NumPy said: {error}"
        ) from None
    if array.dtype == object:
        raise ValueError(
            "`class_neighbors` as an array must be rectangular (every row the same length) "
            "and hold integers; use a mapping {label: sequence of labels} for lists of "
            "different lengths."
        )
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"`class_neighbors` must hold integer labels. Received an array of dtype {array.dtype}"
        )
    if array.ndim != 2 or array.shape[0] != num_classes or array.shape[1] < 1:
        raise ValueError(
            f"`class_neighbors` as an array must have shape (C, M) with C = {num_classes} (one "
            f"row per distinct label, in increasing order) and M >= 1. Received shape "
            f"{array.shape}"
        )
    if array.dtype.kind == "u" and array.size and int(array.max()) > np.iinfo(np.int64).max:
        raise ValueError(
            f"`class_neighbors` holds {int(array.max())}, which is not among the labels."
        )
    return array.astype(np.int64, copy=False)


def _mapping_rows(value: Mapping[Any, Any], label_values: I64) -> tuple[I64, I64]:
    """The table given as a mapping: checks keys and lists, pads the lists."""
    present = set(label_values.tolist())
    bad_keys = [key for key in value if not is_int(key)]
    if bad_keys:
        raise TypeError(
            "`class_neighbors` as a mapping must have integer labels as keys. Received "
            f"keys {_examples(bad_keys)}"
        )
    unknown = sorted(int(key) for key in value if int(key) not in present)
    if unknown:
        raise ValueError(
            "`class_neighbors` has keys that are not among the labels: "
            f"{_examples(unknown)} ({len(label_values)} distinct labels)."
        )
    missing = [label for label in label_values.tolist() if label not in value]
    if missing:
        raise ValueError(
            "`class_neighbors` as a mapping must have a key for every label. Missing "
            f"{len(missing)} label(s): {_examples(missing)}"
        )
    lists: list[I64] = []
    for label in label_values.tolist():
        entry = value[label]
        if isinstance(entry, (str, bytes)) or not isinstance(entry, (Sequence, np.ndarray)):
            raise TypeError(
                f"`class_neighbors[{label}]` must be a sequence of labels. Received "
                f"{entry!r} of type {type(entry).__name__}"
            )
        array = np.asarray(entry)
        if array.size == 0:
            lists.append(np.zeros(0, dtype=np.int64))
            continue
        if array.ndim != 1 or array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
            raise TypeError(
                f"`class_neighbors[{label}]` must be a flat sequence of integer labels. "
                f"Received {entry!r}"
            )
        if array.dtype.kind == "u" and int(array.max()) > np.iinfo(np.int64).max:
            raise ValueError(
                f"`class_neighbors[{label}]` holds {int(array.max())}, which is not among "
                "the labels."
            )
        lists.append(array.astype(np.int64))
    lengths = np.array([len(row) for row in lists], dtype=np.int64)
    width = int(lengths.max()) if len(lengths) else 0
    table = np.zeros((len(lists), width), dtype=np.int64)
    if width:
        mask = np.arange(width)[None, :] < lengths[:, None]
        table[mask] = np.concatenate(lists)
    return table, lengths


def _label_indices(table: I64, lengths: I64, label_values: I64) -> I64:
    """Class indices of the labels in `table` (padding: C); unknown labels raise."""
    c = len(label_values)
    used = np.arange(table.shape[1])[None, :] < lengths[:, None]
    low, high = int(label_values[0]), int(label_values[-1])
    if high - low < 4 * c + 1024:
        # Labels in a compact range: a lookup table instead of a binary search.
        lookup = np.full(high - low + 2, c, dtype=np.int64)
        lookup[label_values - low] = np.arange(c)
        offset = np.clip(table, low - 1, high + 1) - low
        indices = lookup[np.where(offset < 0, high - low + 1, offset)]
        found = indices < c
    else:
        indices = np.searchsorted(label_values, table)
        found = indices < c
        found[found] = label_values[indices[found]] == table[found]
    unknown = used & ~found
    if unknown.any():
        rows, columns = np.nonzero(unknown)
        values = sorted(set(table[rows, columns].tolist()))
        raise ValueError(
            f"`class_neighbors` names labels that are not among the labels: "
            f"{_examples(values)} (e.g. in the list of label {int(label_values[rows[0]])}, "
            f"position {int(columns[0])}). Every neighbour must be one of the "
            f"{c} distinct labels."
        )
    result: I64 = np.where(used, indices, c)
    return result


def _check_rows(rows: I32, lengths: I64, label_values: I64) -> None:
    """No class among its own neighbours, no neighbour twice in a list."""
    c = len(label_values)
    if rows.shape[1] == 0:
        return
    own = rows == np.arange(c, dtype=np.int32)[:, None]
    if own.any():
        row = int(np.nonzero(own)[0][0])
        count = int(own.any(axis=1).sum())
        raise ValueError(
            f"`class_neighbors` lists a class among its own neighbours: label "
            f"{int(label_values[row])} is in its own list ({count} such list(s)). A list holds "
            "the other classes closest to its class."
        )
    ordered = np.sort(rows, axis=1)
    twice = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] < c)
    if twice.any():
        row, column = (int(v[0]) for v in np.nonzero(twice))
        raise ValueError(
            f"`class_neighbors` names a neighbour twice in one list: label "
            f"{int(label_values[ordered[row, column]])} appears more than once in the list of "
            f"label {int(label_values[row])}."
        )


@attrs.frozen(eq=False)
class CategoryTable:
    """A checked `categories` mapping, in class indices.

    Attributes:
        category_of: int64 `(C,)`: the category index of every class.
            Categories are numbered in the order they first appear along the
            labels in increasing order.
        names: The category of every category index, as given.
        digest: A string that identifies the grouping of classes into
            categories (not the categories' names).
    """

    category_of: I64
    names: tuple[Hashable, ...]
    digest: str

    @property
    def num_categories(self) -> int:
        """The number of categories among the labels."""
        return len(self.names)

    @classmethod
    def build(cls, value: object, label_values: I64) -> CategoryTable:
        """Checks `categories` against the labels and converts it.

        Args:
            value: A mapping `{label: category}` with a key for every label
                (keys for labels that are not present are allowed and
                ignored: a mapping of a whole dataset serves its splits).
                Categories are any hashable values (ints, strings).
            label_values: The distinct labels, in increasing order.

        Returns:
            The `CategoryTable`.

        Raises:
            TypeError: If `categories` is not a mapping, or a category is
                not hashable.
            ValueError: If a label has no category.
        """
        if not isinstance(value, Mapping):
            raise TypeError(
                "`categories` must be a mapping {label: category} (e.g. {0: 'shoes', "
                f"1: 'shoes', 2: 'bags'}}). Received: categories={value!r} of type "
                f"{type(value).__name__}"
            )
        labels = label_values.tolist()
        missing = [label for label in labels if label not in value]
        if missing:
            raise ValueError(
                "`categories` must give a category for every label. Missing "
                f"{len(missing)} label(s): {_examples(missing)}"
            )
        numbers: dict[Hashable, int] = {}
        category_of = np.empty(len(labels), dtype=np.int64)
        for i, label in enumerate(labels):
            category = value[label]
            if not isinstance(category, Hashable):
                raise TypeError(
                    f"`categories[{label}]` must be hashable (an int or a string). "
                    f"Received {category!r} of type {type(category).__name__}"
                )
            category_of[i] = numbers.setdefault(category, len(numbers))
        category_of.flags.writeable = False
        return cls(
            category_of=category_of,
            names=tuple(numbers),
            digest=_digest(category_of, f"{len(numbers)} categories"),
        )
