"""Where a sampler stands at an epoch boundary, with its neighbour tables, saved to files.

`ClassNeighborRefresh(backup_dir=...)` writes one `NeighborRecord` per finished epoch so a
restarted run plays the epochs an uninterrupted one would: the sampler's position (its
`state_dict()` at the start of the next epoch) and every neighbour table it holds from that
epoch on (the table in force, and one already set for a later epoch). The directory holds
`class_neighbors.json` (the last two records, so a crash between this backup and Keras'
`BackupAndRestore` still finds the epoch Keras resumes at) and one `table-<hash>.npz` per
distinct table, written before the JSON that names it and replaced atomically; any path
`tf.io.gfile` can write works (local, `gs://`, ...).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import tensorflow as tf

from balanced_sampler import BalancedBatchSampler

__all__ = [
    "NeighborRecord",
    "delete_records",
    "read_records",
    "record_of",
    "restore_record",
    "write_records",
]

STATE_FILE = "class_neighbors.json"
"""The name of the records file in the backup directory."""
FORMAT = 1
KEPT_RECORDS = 2
"""Records kept: the last epoch's and the one before."""

Table = np.ndarray[Any, np.dtype[np.int64]] | dict[int, np.ndarray[Any, np.dtype[np.int64]]]


@attrs.frozen(eq=False)
class NeighborRecord:
    """Where the sampler stands when a Keras epoch starts, and its tables from there on.

    Attributes:
        epoch: The Keras epoch (counted from 0) that starts from this record.
        sampler_state: The sampler's `state_dict()` at the start of that epoch
            (`next_batch` 0), with its fingerprint.
        tables: `(first epoch, table or None)` pairs, in increasing epoch order: the table
            in force for the state's epoch (first epoch = the state's epoch) and any table
            already set for a later epoch. Tables are as `class_neighbors_for` returns them.
    """

    epoch: int
    sampler_state: dict[str, Any]
    tables: tuple[tuple[int, Table | None], ...]


def record_of(
    sampler: BalancedBatchSampler, epoch: int, later_epochs: Sequence[int] = ()
) -> NeighborRecord:
    """The record of a sampler about to play its epoch `sampler.epoch` from the start.

    Args:
        sampler: The sampler (fixed mode). If an iteration of that epoch is in progress
            (tf.data ran ahead into it), the record still starts it from batch 0.
        epoch: The Keras epoch that plays it.
        later_epochs: Sampler epochs after the state's for which a table was set (each
            gets its table in the record).

    Returns:
        The `NeighborRecord`.
    """
    state = sampler.state_dict()
    state["next_batch"] = 0
    start = int(state["epoch"])
    firsts = sorted({start, *(e for e in later_epochs if e > start)})
    tables = tuple((first, sampler.class_neighbors_for(first)) for first in firsts)
    return NeighborRecord(epoch=epoch, sampler_state=state, tables=tables)


def restore_record(sampler: BalancedBatchSampler, record: NeighborRecord) -> None:
    """Puts `sampler` where the record says: its position and its tables.

    Args:
        sampler: A sampler built with the same labels and settings as the saved one.
        record: What `record_of` returned (or `read_records` read).

    Raises:
        ValueError: If the sampler's labels or settings differ from the saved one's (the
            message names the differences).
    """
    saved = record.sampler_state
    # Position first (not checked yet: the tables are not in place), then the tables,
    # then the full check against the saved fingerprint.
    sampler.load_state_dict({key: saved[key] for key in ("seed", "epoch", "next_batch")})
    try:
        for first, table in record.tables:
            sampler.set_class_neighbors(table, from_epoch=first)
    except (TypeError, ValueError):
        sampler.load_state_dict(saved)  # names the labels or settings that differ, if any
        raise
    sampler.load_state_dict(saved)


def _table_bytes(table: Table) -> bytes:
    buffer = io.BytesIO()
    if isinstance(table, Mapping):
        keys = np.array(sorted(table), dtype=np.int64)
        rows = [np.asarray(table[key], dtype=np.int64) for key in keys.tolist()]
        lengths = np.array([len(row) for row in rows], dtype=np.int64)
        values = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        np.savez(buffer, keys=keys, lengths=lengths, values=values)
    else:
        np.savez(buffer, table=np.asarray(table, dtype=np.int64))
    return buffer.getvalue()


def _table_from_bytes(data: bytes) -> Table:
    with np.load(io.BytesIO(data)) as arrays:
        if "table" in arrays:
            table: np.ndarray[Any, np.dtype[np.int64]] = arrays["table"]
            return table
        keys, lengths, values = arrays["keys"], arrays["lengths"], arrays["values"]
    rows = np.split(values, np.cumsum(lengths)[:-1])
    return dict(zip(keys.tolist(), rows, strict=True))


def _join(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + name


def write_records(directory: str, records: Sequence[NeighborRecord]) -> None:
    """Writes the records (the last `KEPT_RECORDS`) and their tables into `directory`.

    Tables are written first, each once (`table-<hash>.npz`); the JSON that names them
    replaces the previous one atomically; tables no record names are then deleted.

    Args:
        directory: A directory path `tf.io.gfile` can write (created if needed).
        records: The records, oldest first.
    """
    tf.io.gfile.makedirs(directory)
    entries = []
    names = set()
    for record in records[-KEPT_RECORDS:]:
        tables: list[list[Any]] = []
        for first, table in record.tables:
            name = None
            if table is not None:
                data = _table_bytes(table)
                name = f"table-{hashlib.sha256(data).hexdigest()[:20]}.npz"
                path = _join(directory, name)
                if name not in names and not tf.io.gfile.exists(path):
                    with tf.io.gfile.GFile(path + ".tmp", "wb") as f:
                        f.write(data)
                    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
                names.add(name)
            tables.append([first, name])
        entries.append(
            {"epoch": record.epoch, "sampler_state": record.sampler_state, "tables": tables}
        )
    state_path = _join(directory, STATE_FILE)
    with tf.io.gfile.GFile(state_path + ".tmp", "w") as f:
        f.write(json.dumps({"format": FORMAT, "records": entries}))
    tf.io.gfile.rename(state_path + ".tmp", state_path, overwrite=True)
    for name in tf.io.gfile.listdir(directory):
        if name.startswith("table-") and name.endswith(".npz") and name not in names:
            tf.io.gfile.remove(_join(directory, name))


def read_records(directory: str) -> list[NeighborRecord] | None:
    """Reads the records of `directory`, oldest first; None if it holds none.

    Args:
        directory: What `write_records` wrote into.

    Returns:
        The records, or None when the directory or its records file does not exist.

    Raises:
        ValueError: If the records file is not one `write_records` wrote.
    """
    state_path = _join(directory, STATE_FILE)
    if not tf.io.gfile.exists(state_path):
        return None
    with tf.io.gfile.GFile(state_path, "r") as f:
        content = json.loads(f.read())
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise ValueError(
            f"{state_path} is not a ClassNeighborRefresh backup of format {FORMAT}. Delete it "
            "or choose another `backup_dir`."
        )
    records = []
    for entry in content["records"]:
        tables = []
        for first, name in entry["tables"]:
            table = None
            if name is not None:
                with tf.io.gfile.GFile(_join(directory, name), "rb") as f:
                    table = _table_from_bytes(f.read())
            tables.append((int(first), table))
        records.append(
            NeighborRecord(
                epoch=int(entry["epoch"]),
                sampler_state=entry["sampler_state"],
                tables=tuple(tables),
            )
        )
    return records


def delete_records(directory: str) -> None:
    """Deletes what `write_records` wrote (and `directory` itself if that leaves it empty).

    Args:
        directory: The backup directory.
    """
    if not tf.io.gfile.isdir(directory):
        return
    for name in tf.io.gfile.listdir(directory):
        if name.startswith(STATE_FILE) or (name.startswith("table-") and ".npz" in name):
            tf.io.gfile.remove(_join(directory, name))
    if not tf.io.gfile.listdir(directory):
        tf.io.gfile.rmtree(directory)
