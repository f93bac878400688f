"""Retrieval evaluation for Keras 3: Recall@K and MAP@R as metrics of `fit`.

```python
from kerasgen_tf.evaluation import RetrievalEvaluation, retrieval_metrics

callbacks = [
    RetrievalEvaluation(val_ds),                                   # first: it writes the logs
    keras.callbacks.EarlyStopping(monitor="val_map@r", mode="max", patience=5),
    keras.callbacks.ModelCheckpoint("best.keras", monitor="val_map@r", mode="max",
                                    save_best_only=True),
    keras.callbacks.CSVLogger("log.csv"),
]
model.fit(train_ds, epochs=50, callbacks=callbacks)
```

`retrieval_metrics` is `balanced_sampler.retrieval.retrieval_metrics` (numpy only, so it
also runs without TensorFlow); see that module for the definitions, the conventions
(those of pytorch-metric-learning's `AccuracyCalculator`) and the rule for ties.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import keras

from balanced_sampler.checks import check_int
from balanced_sampler.retrieval import (
    DEFAULT_K,
    check_distance,
    check_k,
    check_retrieval_labels,
    nearest_neighbors,
    retrieval_metrics,
)
from kerasgen_tf.embedding import embed_dataset, is_balanced_dataset, sequential_dataset

__all__ = [
    "DEFAULT_K",
    "RetrievalEvaluation",
    "embed_dataset",
    "nearest_neighbors",
    "retrieval_metrics",
    "sequential_dataset",
]


class RetrievalEvaluation(keras.callbacks.Callback):  # type: ignore[misc,unused-ignore]  # keras is untyped
    """Writes retrieval metrics of a held-out set into the logs of `fit`.

    At the end of an evaluated epoch the callback embeds every sample of `dataset` once
    with the model (inference mode), computes `retrieval_metrics` (each embedding queries
    all the others) and adds them to the epoch's `logs` as `val_recall@1`, `val_recall@2`,
    ..., `val_precision@1`, `val_r_precision` and `val_map@r` (with the default `prefix`).
    Callbacks that come after it in the `callbacks` list see them: `EarlyStopping` and
    `ModelCheckpoint` (`monitor="val_map@r", mode="max"`), `CSVLogger`, `TensorBoard`, the
    progress bar and `model.fit(...).history`. Put it first in the list.

    Evaluated epochs: the first epoch of every `fit` call and each epoch `e` (counted from
    0) with `(e + 1) % every == 0`. In the other epochs its keys are absent from the logs,
    as Keras leaves `val_loss` out of epochs skipped by `validation_freq`: `EarlyStopping`
    and `ModelCheckpoint` skip those epochs (so patience counts evaluations; Keras warns
    that the metric is missing), `CSVLogger` writes "NA" (it takes its columns from
    the first epoch, which is why that one is always evaluated), and `fit`'s `history`
    lists of these keys hold one value per evaluation. `self.epochs` and `self.history`
    record every evaluation with its epoch.

    Args:
        dataset: The held-out set: a balanced dataset (every file once, in the order of
            `dataset.file_paths`, decoded with its options; its P x K plan is not used and
            its sampler does not move), any batched `tf.data.Dataset` of
            `(images, labels)` (one pass per evaluation; one-hot labels become class
            indices), or a tuple `(images, labels)` of arrays.
        every: Evaluate every `every` epochs (an int >= 1). Defaults to 1.
        k: The K of Recall@K: an int or a sequence of distinct ints >= 1. Defaults to
            `(1, 2, 4, 8)`.
        distance: `"euclidean"` (default) or `"cosine"`.
        prefix: Prepended to every key. Defaults to `"val_"`.
        batch_size: Images per batch when embedding a balanced dataset or arrays
            (default: the dataset's P x K; 64 for arrays).
        verbose: 1 prints one line per evaluation with its time; 0 (default) is silent
            (the progress bar shows the values anyway).

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an argument has a wrong value, or the labels of a balanced
            dataset leave nothing to measure (every class a single sample, or a K above
            its size minus one).
    """

    def __init__(
        self,
        dataset: Any,
        *,
        every: int = 1,
        k: int | Sequence[int] = DEFAULT_K,
        distance: str = "euclidean",
        prefix: str = "val_",
        batch_size: int | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__()
        self.every = check_int("every", every, minimum=1)
        self.k = check_k(k)
        self.distance = check_distance(distance)
        if not isinstance(prefix, str):
            raise TypeError(
                f"`prefix` must be a string. Received: prefix={prefix!r} of type "
                f"{type(prefix).__name__}"
            )
        self.prefix = prefix
        self.batch_size = None if batch_size is None else check_int(
            "batch_size", batch_size, minimum=1
        )
        if verbose not in (0, 1):
            raise ValueError(f"`verbose` must be 0 or 1. Received: verbose={verbose!r}")
        self.verbose = verbose
        if is_balanced_dataset(dataset):
            check_retrieval_labels(dataset.sampler.labels, self.k)
        self.dataset = dataset
        self.epochs: list[int] = []
        self.history: dict[str, list[float]] = {}
        self._evaluated_in_this_fit = False

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Notes that the next epoch is the first of this `fit` call."""
        self._evaluated_in_this_fit = False

    def evaluate(self) -> dict[str, float]:
        """Embeds the dataset with the current model and returns its metrics.

        Returns:
            The metrics, keys without the prefix (`"recall@1"`, ..., `"map@r"`).
        """
        embeddings, labels = embed_dataset(self.model, self.dataset, batch_size=self.batch_size)
        return retrieval_metrics(embeddings, labels, k=self.k, distance=self.distance)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Evaluates if this epoch is due and writes the metrics into `logs`."""
        if self._evaluated_in_this_fit and (epoch + 1) % self.every:
            return
        self._evaluated_in_this_fit = True
        start = time.perf_counter()
        metrics = {self.prefix + name: value for name, value in self.evaluate().items()}
        if logs is not None:
            logs.update(metrics)
        self.epochs.append(epoch)
        for name, value in metrics.items():
            self.history.setdefault(name, []).append(value)
        if self.verbose:
            values = ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())
            print(
                f"RetrievalEvaluation, epoch {epoch + 1}: {values} "
                f"({time.perf_counter() - start:.1f} s)"
            )
