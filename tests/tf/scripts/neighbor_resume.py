"""Trains the colour model 4 epochs with a resume backup; cut at an epoch if asked.

    python neighbor_resume.py ROOT MODEL_BACKUP NEIGHBOR_BACKUP OUT.json STOP_AT

STOP_AT > 0 raises at the start of that epoch (exit status 3), as a crash would; 0 trains
to the end. OUT.json receives the file positions of every batch played, by Keras epoch.
Used by tests/tf/test_hard_classes.py, in this process or a fresh one.
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import keras
from hard_class_models import BatchRecorder, EpochMark, KernelSwitch, colour_model

from kerasgen_tf import ClassNeighborRefresh, balanced_image_dataset_from_directory

EPOCHS = 4


class Crash(RuntimeError):
    pass


class CrashAt(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        if epoch == self.epoch:
            raise Crash(f"cut at epoch {epoch}")


def train(
    root: Any, model_dir: str | None, neighbor_dir: str | None, out: str | None, stop_at: int
) -> dict[int, list[list[int]]]:
    dataset = balanced_image_dataset_from_directory(
        root, 3, 2, safe_triplet=True, seed=3, verbose=False, image_size=8
    )
    recorder = BatchRecorder()
    model = colour_model(recorder)
    callbacks = [
        EpochMark(recorder),
        KernelSwitch(),
        ClassNeighborRefresh(dataset, num_neighbors=4, backup_dir=neighbor_dir),
    ]
    if model_dir is not None:
        callbacks.append(keras.callbacks.BackupAndRestore(model_dir))
    if stop_at:
        callbacks.append(CrashAt(stop_at))
    try:
        model.fit(dataset, epochs=EPOCHS, callbacks=callbacks, verbose=0)
    finally:
        if out is not None:
            pathlib.Path(out).write_text(json.dumps(recorder.batches))
    return recorder.batches


def main(argv: list[str]) -> int:
    root, model_dir, neighbor_dir, out, stop_at = argv
    try:
        train(root, model_dir, neighbor_dir, out, int(stop_at))
    except Crash:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
