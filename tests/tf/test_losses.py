"""kerasgen_tf.losses against an independent numpy reference of TensorFlow Addons' triplet losses.

The reference below is written from the definitions (FaceNet semi-hard mining, batch-hard
mining) and from what Addons 0.23 did in the edge cases, with plain loops and exact pairwise
differences in float64; it shares no code with the module under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from kerasgen_tf import losses  # noqa: E402

METRICS = ("L2", "squared-L2", "angular")


# ----------------------------------------------------------------------------- reference


def ref_distances(x, metric):
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if metric == "angular":
                ni = x[i] / max(np.linalg.norm(x[i]), 1e-6)
                nj = x[j] / max(np.linalg.norm(x[j]), 1e-6)
                d[i, j] = max(1.0 - float(ni @ nj), 1e-16)
            elif i != j:
                sq = float(np.sum((x[i] - x[j]) ** 2))
                d[i, j] = sq if metric == "squared-L2" else math.sqrt(sq)
    return d


def ref_semihard(labels, x, margin, metric):
    labels = np.asarray(labels).reshape(-1)
    d = ref_distances(x, metric)
    n = len(labels)
    total, pairs = 0.0, 0
    for a in range(n):
        negatives = [d[a, k] for k in range(n) if labels[k] != labels[a]]
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            pairs += 1
            if not negatives:
                d_an = d[a].min()  # Addons: the row minimum, the anchor's own distance
            else:
                farther = [v for v in negatives if v > d[a, p]]
                d_an = min(farther) if farther else max(negatives)
            total += max(d[a, p] - d_an + margin, 0.0)
    return total / pairs if pairs else 0.0


def ref_hard(labels, x, margin, metric, soft=False):
    labels = np.asarray(labels).reshape(-1)
    d = ref_distances(x, metric)
    n = len(labels)
    total = 0.0
    for a in range(n):
        pos = [d[a, k] for k in range(n) if k != a and labels[k] == labels[a]]
        neg = [d[a, k] for k in range(n) if labels[k] != labels[a]]
        d_ap = max(pos) if pos else d[a].min()
        d_an = min(neg) if neg else d[a].max()
        gap = d_ap - d_an
        total += float(np.logaddexp(0.0, gap)) if soft else max(gap + margin, 0.0)
    return total / n


def count_fallback_pairs(labels, x, metric):
    """Positive pairs whose anchor has negatives but none farther than the positive."""
    labels = np.asarray(labels).reshape(-1)
    d = ref_distances(x, metric)
    count = 0
    for a in range(len(labels)):
        neg = [d[a, k] for k in range(len(labels)) if labels[k] != labels[a]]
        for p in range(len(labels)):
            if p != a and labels[p] == labels[a] and neg and max(neg) <= d[a, p]:
                count += 1
    return count


def random_batch(seed, n=12, dim=5, classes=4):
    rng = np.random.default_rng(seed)
    return rng.integers(0, classes, size=n), rng.normal(size=(n, dim))


def value(t):
    return float(keras.ops.convert_to_numpy(keras.ops.cast(t, "float64")))


# ------------------------------------------------------------------ values vs reference


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_semihard_matches_reference(metric, seed):
    labels, x = random_batch(seed)
    margin = [1.0, 0.2, 0.0][seed]
    got = value(losses.triplet_semihard_loss(labels, x, margin=margin, distance_metric=metric))
    np.testing.assert_allclose(got, ref_semihard(labels, x, margin, metric), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hard_matches_reference(metric, soft, seed):
    labels, x = random_batch(seed)
    margin = [1.0, 0.2, 0.0][seed]
    got = value(
        losses.triplet_hard_loss(labels, x, margin=margin, soft=soft, distance_metric=metric)
    )
    np.testing.assert_allclose(got, ref_hard(labels, x, margin, metric, soft), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("metric", METRICS)
def test_semihard_falls_back_to_farthest_negative(metric):
    # Two spread-out classes whose members sit close to the other class's members: many
    # anchors have every negative closer than their positive.
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(3, 4)) * 3.0
    x = np.concatenate([centres + rng.normal(size=(3, 4)) * 0.1 for _ in range(2)])
    x = x + np.array([1.0, 0, 0, 0])  # keep the angular case away from the origin
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert count_fallback_pairs(labels, x, metric) > 0
    got = value(losses.triplet_semihard_loss(labels, x, margin=0.5, distance_metric=metric))
    np.testing.assert_allclose(got, ref_semihard(labels, x, 0.5, metric), rtol=1e-5)


@pytest.mark.parametrize("metric", METRICS)
def test_well_separated_clusters_have_zero_loss(metric):
    x = np.repeat(np.eye(3) * 10.0, 3, axis=0) + np.random.default_rng(0).normal(size=(9, 3)) * 0.01
    labels = np.repeat(np.arange(3), 3)
    assert value(losses.triplet_semihard_loss(labels, x, 0.1, metric)) == 0.0
    assert value(losses.triplet_hard_loss(labels, x, 0.1, distance_metric=metric)) == 0.0


@pytest.mark.parametrize("metric", METRICS)
def test_anchors_without_negatives(metric):
    # All one class: Addons uses the row minimum (the self distance) as the semi-hard
    # negative and the row maximum as the hard negative.
    _, x = random_batch(3, n=5)
    labels = np.zeros(5, dtype=np.int64)
    semi = value(losses.triplet_semihard_loss(labels, x, 0.3, metric))
    np.testing.assert_allclose(semi, ref_semihard(labels, x, 0.3, metric), rtol=1e-5)
    hard = value(losses.triplet_hard_loss(labels, x, 0.3, distance_metric=metric))
    np.testing.assert_allclose(hard, 0.3, rtol=1e-5)
    soft = value(losses.triplet_hard_loss(labels, x, 0.3, soft=True, distance_metric=metric))
    np.testing.assert_allclose(soft, math.log(2.0), rtol=1e-5)
    if metric != "angular":  # the self distance is exactly 0: each pair costs d_ap + margin
        d = ref_distances(x, metric)
        np.testing.assert_allclose(semi, d[~np.eye(5, dtype=bool)].mean() + 0.3, rtol=1e-5)


@pytest.mark.parametrize("metric", METRICS)
def test_anchors_without_positives(metric):
    _, x = random_batch(4, n=6)
    labels = np.arange(6)
    # No positive pair at all: 0 (Addons returned NaN).
    assert value(losses.triplet_semihard_loss(labels, x, 1.0, metric)) == 0.0
    for soft in (False, True):
        got = value(losses.triplet_hard_loss(labels, x, 1.0, soft=soft, distance_metric=metric))
        np.testing.assert_allclose(got, ref_hard(labels, x, 1.0, metric, soft), rtol=1e-5)
    # Mixed: singletons form no semi-hard pair but count as anchors in the hard loss.
    labels = np.array([0, 0, 1, 2, 2, 3])
    got = value(losses.triplet_semihard_loss(labels, x, 1.0, metric))
    np.testing.assert_allclose(got, ref_semihard(labels, x, 1.0, metric), rtol=1e-5)


def test_soft_margin_does_not_overflow():
    # Squared distances in the hundreds: Addons' log1p(exp(gap)) gave inf in float32.
    labels = np.array([0, 0, 1, 1])
    x = np.array([[0.0, 0.0], [30.0, 0.0], [1.0, 0.0], [31.0, 0.0]], dtype=np.float32)
    got = value(losses.TripletHardLoss(soft=True, distance_metric="squared-L2")(labels, x))
    assert np.isfinite(got)
    np.testing.assert_allclose(got, ref_hard(labels, x, 1.0, "squared-L2", True), rtol=1e-5)


def test_single_sample_batch():
    x = np.array([[0.3, 0.4]])
    assert value(losses.triplet_semihard_loss([5], x)) == 0.0
    np.testing.assert_allclose(value(losses.triplet_hard_loss([5], x, margin=0.7)), 0.7)


# ------------------------------------------------------------- labels, dtypes, the class


@pytest.mark.parametrize(
    "label_dtype", ["int32", "int64", "uint8", "float32", "float64"], ids=lambda d: d
)
@pytest.mark.parametrize("shape", ["flat", "column"])
def test_label_dtypes_and_shapes(label_dtype, shape):
    labels, x = random_batch(5)
    y = labels.astype(label_dtype)
    if shape == "column":
        y = y.reshape(-1, 1)
    for loss, ref in (
        (losses.TripletSemiHardLoss(dtype="float64"), ref_semihard(labels, x, 1.0, "L2")),
        (losses.TripletHardLoss(soft=True, dtype="float64"), ref_hard(labels, x, 1.0, "L2", True)),
    ):
        np.testing.assert_allclose(value(loss(y, x)), ref, rtol=1e-5)
        np.testing.assert_allclose(value(loss(tf.constant(y), tf.constant(x))), ref, rtol=1e-5)


def test_large_integer_labels_stay_distinct():
    # 2**24 and 2**24 + 1 are equal in float32; the class must not cast labels to float32.
    x = np.array([[0.0, 0.0], [0.0, 0.1], [3.0, 0.0], [3.0, 0.1]])
    labels = np.array([2**24, 2**24, 2**24 + 1, 2**24 + 1], dtype=np.int64)
    got = value(losses.TripletHardLoss(margin=0.5)(labels, x))
    np.testing.assert_allclose(got, ref_hard(labels, x, 0.5, "L2"), rtol=1e-5)
    assert got == 0.0


@pytest.mark.parametrize("metric", METRICS)
def test_float32_class_close_to_reference(metric):
    labels, x = random_batch(6, n=16, dim=8)
    x = x.astype(np.float32)
    semi = losses.TripletSemiHardLoss(margin=0.5, distance_metric=metric)
    hard = losses.TripletHardLoss(margin=0.5, distance_metric=metric)
    assert keras.backend.standardize_dtype(semi(labels, x).dtype) == "float32"
    np.testing.assert_allclose(
        value(semi(labels, x)), ref_semihard(labels, x, 0.5, metric), rtol=1e-4
    )
    np.testing.assert_allclose(value(hard(labels, x)), ref_hard(labels, x, 0.5, metric), rtol=1e-4)


def test_low_precision_embeddings_computed_in_float32():
    labels, x = random_batch(8)
    for dtype in ("float16", "bfloat16"):
        out = losses.triplet_semihard_loss(labels, keras.ops.cast(x, dtype))
        assert keras.backend.standardize_dtype(out.dtype) == dtype
        np.testing.assert_allclose(value(out), ref_semihard(labels, x, 1.0, "L2"), rtol=2e-2)


def test_sample_weight_scales_by_mean_weight():
    labels, x = random_batch(9)
    loss = losses.TripletHardLoss(dtype="float64")
    w = np.linspace(0.5, 1.5, len(labels)) * 2
    np.testing.assert_allclose(value(loss(labels, x, w)), value(loss(labels, x)) * w.mean())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"margin": -0.1}, ValueError, r"margin=-0\.1"),
        ({"margin": float("nan")}, ValueError, "margin=nan"),
        ({"margin": float("inf")}, ValueError, "margin=inf"),
        ({"margin": "1.0"}, TypeError, "margin='1.0'"),
        ({"margin": True}, TypeError, "margin=True"),
        ({"distance_metric": "L_2"}, ValueError, "distance_metric='L_2'"),
        ({"distance_metric": "cosine"}, ValueError, "distance_metric='cosine'"),
        ({"distance_metric": None}, ValueError, "distance_metric=None"),
    ],
)
def test_invalid_arguments(kwargs, error, match):
    for cls in (losses.TripletSemiHardLoss, losses.TripletHardLoss):
        with pytest.raises(error, match=match):
            cls(**kwargs)
    with pytest.raises(error, match=match):
        losses.triplet_semihard_loss([0, 0], np.zeros((2, 2)), **kwargs)


def test_invalid_soft_and_shapes():
    with pytest.raises(TypeError, match="soft=1"):
        losses.TripletHardLoss(soft=1)
    assert losses.TripletSemiHardLoss(margin=np.float32(0.5)).margin == 0.5
    assert losses.TripletHardLoss(margin=0).margin == 0.0
    with pytest.raises(ValueError, match="y_pred"):
        losses.triplet_hard_loss([0, 1], np.zeros(2))
    with pytest.raises(ValueError, match="y_true"):
        losses.triplet_hard_loss(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="same batch size"):
        losses.triplet_hard_loss([0, 1, 2], np.zeros((2, 4)))


# --------------------------------------------------------------------- serialization


@pytest.mark.parametrize(
    "loss",
    [
        losses.TripletSemiHardLoss(),
        losses.TripletSemiHardLoss(margin=0.25, distance_metric="angular", name="semi"),
        losses.TripletHardLoss(margin=0.5, soft=True, distance_metric="squared-L2"),
        losses.TripletHardLoss(dtype="float64"),
    ],
    ids=["semi-default", "semi-angular", "hard-soft", "hard-float64"],
)
def test_config_round_trip(loss):
    config = loss.get_config()
    clone = type(loss).from_config(config)
    assert clone.get_config() == config
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == config
    assert restored.dtype == loss.dtype
    labels, x = random_batch(10)
    assert value(restored(labels, x)) == value(loss(labels, x))


def test_registered_names():
    assert keras.saving.get_registered_name(losses.TripletSemiHardLoss) == (
        "kerasgen>TripletSemiHardLoss"
    )
    for fn in (losses.triplet_semihard_loss, losses.triplet_hard_loss):
        assert keras.losses.deserialize(f"kerasgen>{fn.__name__}") is fn
        assert keras.losses.deserialize(keras.losses.serialize(fn)) is fn


def _embedding_model(dim_in=8, dim_out=4):
    return keras.Sequential(
        [
            keras.Input((dim_in,)),
            keras.layers.Dense(dim_out),
            keras.layers.UnitNormalization(),
        ]
    )


@pytest.mark.parametrize(
    "loss",
    [losses.TripletSemiHardLoss(margin=0.3, distance_metric="angular"), losses.triplet_hard_loss],
    ids=["class", "function"],
)
def test_model_save_and_load(tmp_path, loss):
    labels, x = random_batch(11, n=16, dim=8)
    model = _embedding_model()
    model.compile(optimizer="sgd", loss=loss)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    if isinstance(loss, keras.losses.Loss):
        assert type(loaded.loss) is type(loss)
        assert loaded.loss.get_config() == loss.get_config()
    else:
        assert loaded.loss is loss
    before = model.evaluate(x, labels, batch_size=16, verbose=0)
    after = loaded.evaluate(x, labels, batch_size=16, verbose=0)
    np.testing.assert_allclose(after, before, rtol=1e-6)


# ------------------------------------------------------------------- training, gradient


@pytest.mark.parametrize(
    "loss",
    [
        losses.TripletSemiHardLoss(margin=0.5),
        losses.TripletHardLoss(margin=0.5, distance_metric="squared-L2"),
    ],
    ids=["semihard", "hard"],
)
def test_fit_with_jit_compile_reduces_loss(loss):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    classes, per_class = 4, 8
    centres = rng.normal(size=(classes, 8))
    labels = np.repeat(np.arange(classes), per_class)
    x = (centres[labels] + rng.normal(size=(len(labels), 8)) * 0.6).astype("float32")
    order = rng.permutation(len(labels))
    x, labels = x[order], labels[order]
    model = _embedding_model()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss, jit_compile=True)
    assert model.jit_compile is True
    history = model.fit(x, labels, batch_size=16, epochs=8, shuffle=False, verbose=0)
    curve = history.history["loss"]
    assert all(np.isfinite(curve))
    assert curve[-1] < 0.7 * curve[0], curve


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("which", ["semihard", "hard", "soft"])
def test_gradient_finite_with_duplicates(metric, which):
    labels = np.array([0, 0, 0, 1, 1, 2])
    base = np.random.default_rng(12).normal(size=(6, 3)).astype("float32")
    base[1] = base[0]  # duplicate positive: zero L2 distance
    base[4] = base[3]
    base[5] = base[2]  # duplicate across classes: zero distance to a negative
    x = tf.Variable(base)
    with tf.GradientTape() as tape:
        if which == "semihard":
            out = losses.triplet_semihard_loss(labels, x, 1.0, metric)
        else:
            out = losses.triplet_hard_loss(labels, x, 1.0, which == "soft", metric)
    grad = tape.gradient(out, x).numpy()
    assert np.isfinite(value(out))
    assert np.all(np.isfinite(grad))
    assert np.any(grad != 0.0)


@pytest.mark.parametrize("metric", METRICS)
def test_gradient_matches_finite_differences(metric):
    labels, x0 = random_batch(13, n=6, dim=3, classes=2)

    def semi(v):
        return losses.triplet_semihard_loss(labels, v, 0.5, metric)

    def hard(v):
        return losses.triplet_hard_loss(labels, v, 0.5, True, metric)

    for fn in (semi, hard):
        x = tf.Variable(x0)
        with tf.GradientTape() as tape:
            out = fn(x)
        grad = tape.gradient(out, x).numpy()
        eps = 1e-6
        numeric = np.zeros_like(x0)
        for idx in np.ndindex(*x0.shape):
            up, down = x0.copy(), x0.copy()
            up[idx] += eps
            down[idx] -= eps
            numeric[idx] = (value(fn(up)) - value(fn(down))) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-7)
