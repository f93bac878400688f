"""Per-batch training statistics of a triplet loss, for the training benchmark's arms.

`batch_statistics(margin)` gives Keras metrics whose value is that of the last batch (not
a running mean), so `BatchLog` can record, batch after batch of `fit`:

- `classes`: distinct classes in the batch;
- `valid_anchors`: the fraction of the batch's samples that have another sample of their
  class and one of another class in the batch (anchors a triplet loss can use);
- `active_triplets`: the fraction of the batch's valid triplets (anchor, positive,
  negative) whose loss is not zero, d(a, p) - d(a, n) + margin > 0 (euclidean distances,
  as `TripletSemiHardLoss(distance_metric="L2")` computes them);
- `batch_size`.

```python
model.compile(optimizer, loss=TripletSemiHardLoss(margin), metrics=batch_statistics(margin))
log = BatchLog()
model.fit(train_ds, epochs=10, callbacks=[log])
log.values["active_triplets"]        # one value per gradient step
```
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

STATISTICS = ("classes", "valid_anchors", "active_triplets", "batch_size")


class LastBatch(keras.metrics.Metric):  # type: ignore[misc]
    """A metric whose result is `fn(y_true, y_pred)` on the last batch seen."""

    def __init__(self, fn: Callable[[Any, Any], Any], name: str, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.fn = fn
        self.value = self.add_variable(shape=(), initializer="zeros", name="value")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Replaces the value by that of this batch."""
        self.value.assign(ops.cast(self.fn(y_true, y_pred), self.value.dtype))

    def result(self) -> Any:
        """The value of the last batch."""
        return self.value

    def reset_state(self) -> None:
        """Sets the value to 0."""
        self.value.assign(0.0)


def _masks(y_true: Any) -> tuple[Any, Any]:
    labels = ops.reshape(y_true, (-1,))
    same = ops.equal(ops.expand_dims(labels, 0), ops.expand_dims(labels, 1))
    eye = ops.eye(ops.shape(labels)[0], dtype="bool")
    return ops.logical_and(same, ops.logical_not(eye)), ops.logical_not(same)


def _classes(y_true: Any, y_pred: Any) -> Any:
    positive, _ = _masks(y_true)
    # A sample is the first of its class if no earlier sample has its label.
    earlier = ops.tril(ops.cast(positive, "int32"), k=-1)
    first = ops.equal(ops.sum(earlier, axis=1), 0)
    return ops.sum(ops.cast(first, "float32"))


def _valid_anchors(y_true: Any, y_pred: Any) -> Any:
    positive, negative = _masks(y_true)
    valid = ops.logical_and(ops.any(positive, axis=1), ops.any(negative, axis=1))
    return ops.mean(ops.cast(valid, "float32"))


def _distances(y_pred: Any) -> Any:
    x = ops.cast(y_pred, "float32")
    squared = ops.sum(ops.square(x), axis=1, keepdims=True)
    d2 = squared + ops.transpose(squared) - 2.0 * ops.matmul(x, ops.transpose(x))
    return ops.sqrt(ops.maximum(d2, 1e-12))


def _active_triplets(margin: float) -> Callable[[Any, Any], Any]:
    def fraction(y_true: Any, y_pred: Any) -> Any:
        positive, negative = _masks(y_true)
        d = _distances(y_pred)
        # [a, p, n]: valid if p is a positive and n a negative of a.
        valid = ops.logical_and(ops.expand_dims(positive, 2), ops.expand_dims(negative, 1))
        gap = ops.expand_dims(d, 2) - ops.expand_dims(d, 1) + margin
        active = ops.logical_and(valid, ops.greater(gap, 0.0))
        count = ops.sum(ops.cast(valid, "float32"))
        return ops.sum(ops.cast(active, "float32")) / ops.maximum(count, 1.0)

    return fraction


def _batch_size(y_true: Any, y_pred: Any) -> Any:
    return ops.cast(ops.shape(y_pred)[0], "float32")


def batch_statistics(margin: float) -> list[LastBatch]:
    """The per-batch statistics as Keras metrics (see the module docstring)."""
    return [
        LastBatch(_classes, "classes"),
        LastBatch(_valid_anchors, "valid_anchors"),
        LastBatch(_active_triplets(margin), "active_triplets"),
        LastBatch(_batch_size, "batch_size"),
    ]


class BatchLog(keras.callbacks.Callback):  # type: ignore[misc]
    """Records chosen keys of every training batch's logs (one value per step)."""

    def __init__(self, keys: tuple[str, ...] = STATISTICS) -> None:
        super().__init__()
        self.keys = keys
        self.values: dict[str, list[float]] = {key: [] for key in keys}

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Appends this batch's values."""
        logs = logs or {}
        for key in self.keys:
            if key in logs:
                self.values[key].append(float(np.asarray(logs[key])))

    def arrays(self) -> dict[str, np.ndarray]:
        """The recorded values as float arrays, one entry per step."""
        return {key: np.asarray(values, dtype=np.float64) for key, values in self.values.items()}
