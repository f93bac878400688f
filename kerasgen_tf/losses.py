"""Triplet losses for Keras 3: semi-hard and batch-hard mining over a mini-batch.

kerasgen 0.1.3 paired its balanced batches with TensorFlow Addons' `TripletSemiHardLoss` and
`TripletHardLoss`. Addons is end-of-life and does not import on TensorFlow >= 2.16, so this
module provides the same two losses written with `keras.ops` only (no backend-specific code;
tested on the TensorFlow backend): they run inside `model.fit(..., jit_compile=True)`, and
they serialize with the model
(registered as `"kerasgen>TripletSemiHardLoss"`, `"kerasgen>TripletHardLoss"`,
`"kerasgen>triplet_semihard_loss"` and `"kerasgen>triplet_hard_loss"`).

The definitions, including what happens to anchors that have no positive or no negative in
the batch, are those of TensorFlow Addons 0.23 (see each docstring). Deliberate differences:

- A batch without any positive pair gives a semi-hard loss of 0 (Addons divided 0 by 0 and
  returned NaN, which stops training).
- `margin` must be a finite Python number >= 0, and `distance_metric` one of `"L2"`,
  `"squared-L2"`, `"angular"` (Addons also took a tensor margin, a negative margin and a
  callable metric; none of those serializes with a Keras 3 model). Early Addons releases
  spelled the metrics `"L_1"` / `"L_2"`, where `"L_2"` meant the squared distance; those
  spellings are rejected rather than silently given a different meaning.
- `soft=True` uses a numerically stable softplus; Addons' `log1p(exp(gap))` overflowed to
  inf once `d_ap - d_an` exceeded about 88 in float32.
- Labels are compared in their own dtype: the classes do not cast `y_true` to float32 as
  `keras.losses.Loss` does, so integer labels above 2**24 stay distinct.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import keras
from keras import ops

__all__ = [
    "DISTANCE_METRICS",
    "TripletHardLoss",
    "TripletSemiHardLoss",
    "triplet_hard_loss",
    "triplet_semihard_loss",
]

DISTANCE_METRICS = ("L2", "squared-L2", "angular")
"""The accepted values of `distance_metric`."""

_LOW_PRECISION = ("float16", "bfloat16")


def _check_margin(margin: Any) -> float:
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real):
        raise TypeError(
            "Argument `margin` must be a finite real number >= 0 (a Python or NumPy scalar). "
            f"Received: margin={margin!r} of type {type(margin).__name__}"
        )
    value = float(margin)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(
            f"Argument `margin` must be a finite real number >= 0. Received: margin={margin!r}"
        )
    return value


def _check_distance_metric(distance_metric: Any) -> str:
    if not isinstance(distance_metric, str) or distance_metric not in DISTANCE_METRICS:
        raise ValueError(
            f"Argument `distance_metric` must be one of {DISTANCE_METRICS}. "
            f"Received: distance_metric={distance_metric!r}"
        )
    return distance_metric


def _check_soft(soft: Any) -> bool:
    if not isinstance(soft, bool):
        raise TypeError(
            f"Argument `soft` must be a bool. Received: soft={soft!r} of type {type(soft).__name__}"
        )
    return soft


def _prepare(y_true: Any, y_pred: Any) -> tuple[Any, Any, str]:
    """Return labels of shape (B,), embeddings in a precise float dtype, and the output dtype."""
    labels = ops.convert_to_tensor(y_true)
    embeddings = ops.convert_to_tensor(y_pred)
    if len(embeddings.shape) != 2:
        raise ValueError(
            "`y_pred` must be a 2-D tensor of embeddings with shape (batch_size, dim). "
            f"Received: y_pred.shape={tuple(embeddings.shape)}"
        )
    rank = len(labels.shape)
    if rank not in (1, 2) or (rank == 2 and labels.shape[1] not in (1, None)):
        raise ValueError(
            "`y_true` must hold one class label per sample, with shape (batch_size,) or "
            f"(batch_size, 1). Received: y_true.shape={tuple(labels.shape)}"
        )
    batch, batch_pred = labels.shape[0], embeddings.shape[0]
    if batch is not None and batch_pred is not None and batch != batch_pred:
        raise ValueError(
            "`y_true` and `y_pred` must have the same batch size. Received: "
            f"y_true.shape={tuple(labels.shape)}, y_pred.shape={tuple(embeddings.shape)}"
        )
    labels = ops.reshape(labels, (-1,))
    out_dtype = keras.backend.standardize_dtype(embeddings.dtype)
    if out_dtype in _LOW_PRECISION:
        embeddings = ops.cast(embeddings, "float32")
    elif not out_dtype.startswith("float"):
        embeddings = ops.cast(embeddings, keras.backend.floatx())
        out_dtype = keras.backend.floatx()
    return labels, embeddings, out_dtype


def _pairwise_distances(embeddings: Any, distance_metric: str) -> Any:
    """Pairwise distance matrix (B, B), as TensorFlow Addons computed it.

    `"L2"` and `"squared-L2"` expand ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b, clip the
    rounding negatives to 0 and set the diagonal to exactly 0; `"L2"` takes the square root
    only where the squared distance is positive (the value and its gradient are 0 elsewhere,
    so duplicate embeddings give no NaN). `"angular"` is 1 - cosine similarity of the
    L2-normalised embeddings (norm floored at 1e-6, as `tf.math.l2_normalize`), clipped
    below at 1e-16; its diagonal is left as computed (about 0).
    """
    if distance_metric == "angular":
        squared_norms = ops.sum(ops.square(embeddings), axis=1, keepdims=True)
        normalized = embeddings * ops.rsqrt(ops.maximum(squared_norms, 1e-12))
        cosine = ops.matmul(normalized, ops.transpose(normalized))
        return ops.maximum(1.0 - cosine, 1e-16)

    squared_norms = ops.sum(ops.square(embeddings), axis=1, keepdims=True)
    squared = (
        squared_norms
        + ops.transpose(squared_norms)
        - 2.0 * ops.matmul(embeddings, ops.transpose(embeddings))
    )
    squared = ops.maximum(squared, 0.0)
    if distance_metric == "squared-L2":
        distances = squared
    else:
        zero = ops.less_equal(squared, 0.0)
        distances = ops.where(zero, 0.0, ops.sqrt(ops.where(zero, 1.0, squared)))
    index = ops.arange(ops.shape(distances)[0])
    diagonal = ops.equal(ops.expand_dims(index, 1), ops.expand_dims(index, 0))
    return ops.where(diagonal, ops.zeros_like(distances), distances)


def _masks(labels: Any) -> tuple[Any, Any]:
    """Boolean (B, B) masks: positives (same label, not the anchor itself), negatives."""
    same = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0))
    index = ops.arange(ops.shape(labels)[0])
    diagonal = ops.equal(ops.expand_dims(index, 1), ops.expand_dims(index, 0))
    return ops.logical_and(same, ops.logical_not(diagonal)), ops.logical_not(same)


def triplet_semihard_loss(
    y_true: Any,
    y_pred: Any,
    margin: float = 1.0,
    distance_metric: str = "L2",
) -> Any:
    """Computes the triplet loss with semi-hard negative mining (FaceNet).

    Every ordered pair (anchor a, positive p) of distinct samples with the same label is a
    triplet; its negative n is the closest negative that is farther from the anchor than the
    positive (`d(a, n) > d(a, p)`, the semi-hard negative of Schroff et al., 2015). When no
    negative is that far, the farthest negative of the anchor is used instead. The loss is
    the mean over all positive pairs of `max(d(a, p) - d(a, n) + margin, 0)`.

    Edge cases, as in TensorFlow Addons:

    - an anchor without any positive in the batch forms no pair and adds nothing;
    - an anchor with positives but no negative in the batch (every sample has its label)
      uses the smallest entry of its distance row, its distance to itself (0 for `"L2"` and
      `"squared-L2"`, about 0 for `"angular"`), so each of its pairs costs
      `d(a, p) + margin`;
    - a batch with no positive pair at all has a loss of 0 (Addons returned NaN).

    Cost: O(B^3) memory and time for a batch of B embeddings, like Addons.

    Args:
        y_true: Class labels, shape `(batch_size,)` or `(batch_size, 1)`, any integer or
            float dtype. Only equality between labels matters.
        y_pred: Embeddings, shape `(batch_size, dim)`, floating point. `float16` and
            `bfloat16` are computed in `float32`. Addons recommended L2-normalised
            embeddings for `"L2"` and `"squared-L2"` (for example a final
            `keras.layers.UnitNormalization()`); `"angular"` normalises by itself.
        margin: Finite number >= 0, the margin between positive and negative distances.
        distance_metric: `"L2"` (Euclidean distance), `"squared-L2"` (squared Euclidean
            distance) or `"angular"` (1 - cosine similarity).

    Returns:
        A scalar tensor, in the dtype of `y_pred` (`floatx()` for integer embeddings).

    Raises:
        TypeError: If `margin` is not a real number.
        ValueError: If `margin` is negative or not finite, `distance_metric` is not one of
            the three names, or the shapes of `y_true` and `y_pred` do not fit.

    Example:
    >>> import numpy as np
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6], [-0.6, 0.8]])
    >>> loss = triplet_semihard_loss(labels, embeddings, margin=0.5)
    >>> round(float(loss), 4)
    0.4004
    """
    margin = _check_margin(margin)
    distance_metric = _check_distance_metric(distance_metric)
    labels, embeddings, out_dtype = _prepare(y_true, y_pred)
    distances = _pairwise_distances(embeddings, distance_metric)
    positives, negatives = _masks(labels)

    row_max = ops.max(distances, axis=1, keepdims=True)
    row_min = ops.min(distances, axis=1, keepdims=True)
    # Indexed [anchor, positive, negative]: negatives farther than the positive.
    d_ap = ops.expand_dims(distances, 2)
    d_an = ops.expand_dims(distances, 1)
    outside = ops.logical_and(ops.expand_dims(negatives, 1), ops.greater(d_an, d_ap))
    closest_outside = ops.min(ops.where(outside, d_an, ops.expand_dims(row_max, 2)), axis=2)
    # Farthest negative of the anchor (its row minimum if it has no negative).
    farthest = ops.max(ops.where(negatives, distances, row_min), axis=1, keepdims=True)
    semi_hard = ops.where(ops.any(outside, axis=2), closest_outside, farthest)

    per_pair = ops.maximum(distances - semi_hard + margin, 0.0)
    total = ops.sum(ops.where(positives, per_pair, ops.zeros_like(per_pair)))
    num_positives = ops.sum(ops.cast(positives, per_pair.dtype))
    return ops.cast(ops.divide_no_nan(total, num_positives), out_dtype)


def triplet_hard_loss(
    y_true: Any,
    y_pred: Any,
    margin: float = 1.0,
    soft: bool = False,
    distance_metric: str = "L2",
) -> Any:
    """Computes the triplet loss with batch-hard mining (Hermans et al., 2017).

    For every anchor, the hardest positive is its farthest sample of the same label and the
    hardest negative its closest sample of another label. The loss is the mean over all
    anchors of `max(d_ap - d_an + margin, 0)`, or of `softplus(d_ap - d_an)` when
    `soft=True` (the soft-margin variant, which ignores `margin`; computed stably, where
    Addons' `log1p(exp(.))` overflowed to inf for gaps above about 88 in float32).

    Edge cases, as in TensorFlow Addons (every anchor counts in the mean):

    - an anchor without any positive uses the smallest entry of its distance row, its
      distance to itself (0 for `"L2"` and `"squared-L2"`, about 0 for `"angular"`), as
      `d_ap`;
    - an anchor without any negative uses the largest entry of its distance row as `d_an`,
      which is its hardest positive when it has one, so it costs exactly `margin`
      (`softplus(0) = log 2` when `soft=True`);
    - a batch of one sample costs `margin` (`log 2` when `soft=True`).

    Args:
        y_true: Class labels, shape `(batch_size,)` or `(batch_size, 1)`, any integer or
            float dtype. Only equality between labels matters.
        y_pred: Embeddings, shape `(batch_size, dim)`, floating point. `float16` and
            `bfloat16` are computed in `float32`. Addons recommended L2-normalised
            embeddings for `"L2"` and `"squared-L2"`; `"angular"` normalises by itself.
        margin: Finite number >= 0, the margin between positive and negative distances.
            Unused when `soft=True`.
        soft: Whether to use the soft margin `softplus(d_ap - d_an)`.
        distance_metric: `"L2"` (Euclidean distance), `"squared-L2"` (squared Euclidean
            distance) or `"angular"` (1 - cosine similarity).

    Returns:
        A scalar tensor, in the dtype of `y_pred` (`floatx()` for integer embeddings).

    Raises:
        TypeError: If `margin` is not a real number or `soft` is not a bool.
        ValueError: If `margin` is negative or not finite, `distance_metric` is not one of
            the three names, or the shapes of `y_true` and `y_pred` do not fit.

    Example:
    >>> import numpy as np
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6], [-0.6, 0.8]])
    >>> loss = triplet_hard_loss(labels, embeddings, margin=0.5)
    >>> round(float(loss), 4)
    1.0548
    """
    margin = _check_margin(margin)
    soft = _check_soft(soft)
    distance_metric = _check_distance_metric(distance_metric)
    labels, embeddings, out_dtype = _prepare(y_true, y_pred)
    distances = _pairwise_distances(embeddings, distance_metric)
    positives, negatives = _masks(labels)

    row_max = ops.max(distances, axis=1, keepdims=True)
    row_min = ops.min(distances, axis=1, keepdims=True)
    hardest_positive = ops.max(ops.where(positives, distances, row_min), axis=1)
    hardest_negative = ops.min(ops.where(negatives, distances, row_max), axis=1)
    gap = hardest_positive - hardest_negative
    per_anchor = ops.softplus(gap) if soft else ops.maximum(gap + margin, 0.0)
    return ops.cast(ops.mean(per_anchor), out_dtype)


# Registered without decorator syntax so that type checkers keep the signatures.
keras.saving.register_keras_serializable(package="kerasgen")(triplet_semihard_loss)
keras.saving.register_keras_serializable(package="kerasgen")(triplet_hard_loss)


class _TripletLoss(keras.losses.Loss):  # type: ignore[misc,unused-ignore]  # keras is untyped
    """Shared `__call__` for the triplet losses: a batch-level scalar, labels left uncast."""

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """Computes the loss of one batch.

        Unlike `keras.losses.Loss.__call__`, `y_true` keeps its dtype (labels are only
        compared for equality). The loss is a scalar for the whole batch: a `sample_weight`
        scales it by the mean weight, which is what Keras' default reduction does to a
        scalar loss.

        Args:
            y_true: Class labels, shape `(batch_size,)` or `(batch_size, 1)`.
            y_pred: Embeddings, shape `(batch_size, dim)`.
            sample_weight: Optional weights, shape `(batch_size,)`.

        Returns:
            A scalar tensor in the loss dtype.
        """
        with keras.name_scope(self.name):
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            y_true = ops.convert_to_tensor(y_true)
            loss = ops.cast(self.call(y_true, y_pred), self.dtype)
            if sample_weight is not None:
                weights = ops.convert_to_tensor(sample_weight, dtype=self.dtype)
                loss = loss * ops.mean(weights)
            return loss


@keras.saving.register_keras_serializable(package="kerasgen")
class TripletSemiHardLoss(_TripletLoss):
    """Triplet loss with semi-hard negative mining (FaceNet), a `keras.losses.Loss`.

    A drop-in replacement for TensorFlow Addons' `tfa.losses.TripletSemiHardLoss`, written
    with `keras.ops`. Every pair of distinct samples with the same label is an
    (anchor, positive) pair; its negative is the closest sample of another label that is
    farther from the anchor than the positive, or the anchor's farthest negative when none
    is. The loss is the mean over positive pairs of `max(d_ap - d_an + margin, 0)`.
    See `triplet_semihard_loss` for the handling of anchors without positives or negatives
    (as in Addons), except that a batch without any positive pair gives 0, not NaN.

    Batches must contain several samples per class, such as kerasgen's P x K batches.

    Args:
        margin: Finite number >= 0, the margin between positive and negative distances.
            Defaults to `1.0`.
        distance_metric: `"L2"` (Euclidean, the default), `"squared-L2"` or `"angular"`
            (1 - cosine similarity).
        name: Name of the loss instance. Defaults to `"triplet_semi_hard_loss"`.
        dtype: Dtype of the loss computation, as in `keras.losses.Loss`. Defaults to
            `keras.backend.floatx()`.

    Raises:
        TypeError: If `margin` is not a real number.
        ValueError: If `margin` is negative or not finite, or `distance_metric` is not one
            of `"L2"`, `"squared-L2"`, `"angular"`.

    Example:
    ```python
    import keras
    from kerasgen_tf.losses import TripletSemiHardLoss

    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(32),
        keras.layers.UnitNormalization(),
    ])
    model.compile(optimizer="adam", loss=TripletSemiHardLoss(margin=0.5))
    model.fit(balanced_dataset, epochs=5)  # yields (images, integer labels) P x K batches
    ```
    """

    def __init__(
        self,
        margin: float = 1.0,
        distance_metric: str = "L2",
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        self.margin = _check_margin(margin)
        self.distance_metric = _check_distance_metric(distance_metric)
        self._dtype_argument = dtype
        super().__init__(name=name or "triplet_semi_hard_loss", dtype=dtype)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """Computes the batch loss; see `triplet_semihard_loss`."""
        return triplet_semihard_loss(
            y_true, y_pred, margin=self.margin, distance_metric=self.distance_metric
        )

    def get_config(self) -> dict[str, Any]:
        """Returns the constructor arguments, for `from_config` and model saving."""
        return {
            "name": self.name,
            "margin": self.margin,
            "distance_metric": self.distance_metric,
            "dtype": None if self._dtype_argument is None else self.dtype,
        }


@keras.saving.register_keras_serializable(package="kerasgen")
class TripletHardLoss(_TripletLoss):
    """Triplet loss with batch-hard mining (Hermans et al., 2017), a `keras.losses.Loss`.

    A drop-in replacement for TensorFlow Addons' `tfa.losses.TripletHardLoss`, written with
    `keras.ops`. Each anchor is paired with its farthest positive and its closest negative
    in the batch; the loss is the mean over anchors of `max(d_ap - d_an + margin, 0)`, or
    of `softplus(d_ap - d_an)` with `soft=True`. See `triplet_hard_loss` for the handling
    of anchors without positives or negatives (exactly as in Addons).

    Args:
        margin: Finite number >= 0, the margin between positive and negative distances.
            Defaults to `1.0`. Unused when `soft=True`.
        soft: Whether to use the soft margin `softplus(d_ap - d_an)`. Defaults to `False`.
        distance_metric: `"L2"` (Euclidean, the default), `"squared-L2"` or `"angular"`
            (1 - cosine similarity).
        name: Name of the loss instance. Defaults to `"triplet_hard_loss"`.
        dtype: Dtype of the loss computation, as in `keras.losses.Loss`. Defaults to
            `keras.backend.floatx()`.

    Raises:
        TypeError: If `margin` is not a real number or `soft` is not a bool.
        ValueError: If `margin` is negative or not finite, or `distance_metric` is not one
            of `"L2"`, `"squared-L2"`, `"angular"`.

    Example:
    ```python
    import keras
    from kerasgen_tf.losses import TripletHardLoss

    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(32),
        keras.layers.UnitNormalization(),
    ])
    model.compile(optimizer="adam", loss=TripletHardLoss(margin=0.3), jit_compile=True)
    model.fit(balanced_dataset, epochs=5)  # yields (images, integer labels) P x K batches
    ```
    """

    def __init__(
        self,
        margin: float = 1.0,
        soft: bool = False,
        distance_metric: str = "L2",
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        self.margin = _check_margin(margin)
        self.soft = _check_soft(soft)
        self.distance_metric = _check_distance_metric(distance_metric)
        self._dtype_argument = dtype
        super().__init__(name=name or "triplet_hard_loss", dtype=dtype)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """Computes the batch loss; see `triplet_hard_loss`."""
        return triplet_hard_loss(
            y_true,
            y_pred,
            margin=self.margin,
            soft=self.soft,
            distance_metric=self.distance_metric,
        )

    def get_config(self) -> dict[str, Any]:
        """Returns the constructor arguments, for `from_config` and model saving."""
        return {
            "name": self.name,
            "margin": self.margin,
            "soft": self.soft,
            "distance_metric": self.distance_metric,
            "dtype": None if self._dtype_argument is None else self.dtype,
        }
