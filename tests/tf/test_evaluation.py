"""Retrieval evaluation in Keras: sequential embedding and the RetrievalEvaluation callback."""

from __future__ import annotations

import csv
import importlib.util
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasgen_tf import balanced_image_dataset_from_directory
from kerasgen_tf.evaluation import (
    RetrievalEvaluation,
    embed_dataset,
    retrieval_metrics,
    sequential_dataset,
)
from kerasgen_tf.losses import TripletSemiHardLoss

SIZE = (6, 5)  # (height, width) of every file: no resizing, so pixels can be compared


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """6 classes of 3 to 7 PNG images; class c is bright in channel c % 3."""
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    for c, count in enumerate([7, 6, 5, 4, 3, 3]):
        folder = root / f"class_{c}"
        folder.mkdir()
        for i in range(count):
            pixels = rng.integers(0, 100, (*SIZE, 3), dtype=np.uint8)
            pixels[..., c % 3] += 120
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def balanced(tree, **kwargs):
    options = {"num_classes_per_batch": 3, "num_images_per_class": 4, "image_size": SIZE,
               "safe_triplet": True, "seed": 3, "verbose": False}
    options.update(kwargs)
    return balanced_image_dataset_from_directory(tree, **options)


def pixels_model():
    """Embedding = the image's pixels."""
    return keras.Sequential([keras.Input((*SIZE, 3)), keras.layers.Flatten()])


def file_pixels(paths):
    return np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32) for p in paths])


def trainable_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((*SIZE, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Flatten(),
        keras.layers.Dense(8),
        keras.layers.UnitNormalization(),
    ])


def test_sequential_dataset_reads_every_file_once_in_order(tree):
    ds = balanced(tree)  # fixed mode: class sizes 3 < K=4 are padded in the plan
    epoch = ds.sampler.epoch
    images, labels = sequential_dataset(ds, batch_size=8)
    pixels = np.concatenate(list(images.as_numpy_iterator()))
    np.testing.assert_array_equal(pixels, file_pixels(ds.file_paths))
    np.testing.assert_array_equal(labels, ds.sampler.labels)
    assert [len(b) for b in images.as_numpy_iterator()] == [8, 8, 8, 4]
    assert ds.sampler.epoch == epoch  # the training plan did not move


def test_sequential_dataset_keeps_the_image_options(tree):
    ds = balanced(tree, image_size=(4, 4), color_mode="grayscale", crop_to_aspect_ratio=True)
    images, _ = sequential_dataset(ds)
    first_batch = next(iter(ds))[0]
    assert next(iter(images)).shape[1:] == first_batch.shape[1:] == (4, 4, 1)
    # The same file decodes to the same pixels in both pipelines.
    index = ds.sampler.plan(0)[0][0]
    sequential = np.concatenate(list(images.as_numpy_iterator()))
    np.testing.assert_array_equal(sequential[index], first_batch[0].numpy())


def test_embed_balanced_dataset_equals_pixels_of_the_files(tree):
    ds = balanced(tree)
    embeddings, labels = embed_dataset(pixels_model(), ds)
    np.testing.assert_array_equal(embeddings, file_pixels(ds.file_paths).reshape(28, -1))
    np.testing.assert_array_equal(labels, ds.sampler.labels)


def test_embed_generic_datasets_and_arrays(tree):
    ds = balanced(tree)
    x = file_pixels(ds.file_paths)
    y = np.asarray(ds.sampler.labels)
    model = pixels_model()
    expected = x.reshape(len(x), -1)
    one_hot = tf.data.Dataset.from_tensor_slices((x, np.eye(6)[y])).batch(5)
    weighted = tf.data.Dataset.from_tensor_slices((x, y[:, None], np.ones(len(y)))).batch(4)
    for source in (one_hot, weighted, (x, y)):
        embeddings, labels = embed_dataset(model, source)
        np.testing.assert_array_equal(embeddings, expected)
        np.testing.assert_array_equal(labels, y)


def test_embed_errors(tree):
    ds = balanced(tree)
    x = file_pixels(ds.file_paths)
    y = np.asarray(ds.sampler.labels)
    model = pixels_model()
    with pytest.raises(ValueError, match=r"must yield `\(images, labels\)` batches"):
        embed_dataset(model, tf.data.Dataset.from_tensor_slices(x).batch(4))
    with pytest.raises(ValueError, match="must be one-hot"):
        embed_dataset(model, (x, np.stack([y, y], axis=1)))
    with pytest.raises(TypeError, match="`dataset` must be a balanced dataset"):
        embed_dataset(model, [x, y])
    image_model = keras.Sequential([keras.Input((*SIZE, 3)), keras.layers.Identity()])
    with pytest.raises(ValueError, match=r"one embedding per sample, a tensor of shape \(batch, dim\)"):
        embed_dataset(image_model, ds)


def test_unreadable_file_is_named(tree, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(tree, root)
    (root / "class_2" / "broken.png").write_bytes(b"not a png at all")
    ds = balanced(root)
    with pytest.raises(ValueError, match=r"class_2/broken\.png \(dataset\.file_paths\[\d+\]\)"):
        embed_dataset(pixels_model(), ds)


def test_metrics_in_logs_equal_retrieval_metrics_of_the_embeddings(tree):
    train = balanced(tree)
    val = balanced(tree, safe_triplet=False, shuffle=False)
    model = trainable_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=TripletSemiHardLoss(0.5))
    callback = RetrievalEvaluation(val, k=(1, 3))
    history = model.fit(train, epochs=2, verbose=0, shuffle=False, callbacks=[callback])
    expected = retrieval_metrics(*embed_dataset(model, val), k=(1, 3))
    assert list(expected) == ["recall@1", "recall@3", "precision@1", "r_precision", "map@r"]
    for name, value in expected.items():
        assert history.history[f"val_{name}"][-1] == pytest.approx(value, abs=1e-12)
        assert callback.history[f"val_{name}"] == history.history[f"val_{name}"]
    assert callback.epochs == [0, 1]


def test_early_stopping_checkpoint_and_csv_logger_read_the_metrics(tree, tmp_path):
    data = balanced(tree)
    model = trainable_model()
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=TripletSemiHardLoss(0.5))
    evaluation = RetrievalEvaluation(data, every=2, prefix="heldout_")
    stopper = keras.callbacks.EarlyStopping(monitor="heldout_map@r", mode="max", patience=2)
    best = tmp_path / "best.keras"
    checkpoint = keras.callbacks.ModelCheckpoint(
        best, monitor="heldout_map@r", mode="max", save_best_only=True
    )
    log = tmp_path / "log.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Keras: "metric ... not available"
        history = model.fit(
            data, epochs=10, verbose=0,
            callbacks=[evaluation, stopper, checkpoint, keras.callbacks.CSVLogger(log)],
        )
    # The weights never change (learning rate 0), so the metric never improves: evaluated
    # at epochs 0 (the first), 1 and 3; patience 2 counts evaluations, not epochs.
    assert evaluation.epochs == [0, 1, 3]
    assert stopper.stopped_epoch == 3
    assert history.epoch == [0, 1, 2, 3]
    assert best.exists()
    with open(log, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["epoch"] for row in rows] == ["0", "1", "2", "3"]
    assert [row["heldout_recall@1"] == "NA" for row in rows] == [False, False, True, False]
    assert float(rows[3]["heldout_map@r"]) == pytest.approx(evaluation.history["heldout_map@r"][-1])
    assert len(history.history["heldout_map@r"]) == 3


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="needs tensorboard")
def test_tensorboard_writes_the_metrics(tree, tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    data = balanced(tree)
    model = trainable_model()
    model.compile(optimizer="adam", loss=TripletSemiHardLoss(0.5))
    model.fit(data, epochs=1, verbose=0, shuffle=False, callbacks=[
        RetrievalEvaluation(data), keras.callbacks.TensorBoard(tmp_path / "tb")])
    (event_file,) = (tmp_path / "tb" / "validation").glob("events*")
    events = event_accumulator.EventAccumulator(str(event_file))
    events.Reload()
    assert {"epoch_recall@1", "epoch_map@r"} <= set(events.Tags()["tensors"])


def test_callback_arguments_are_checked(tree):
    ds = balanced(tree)
    with pytest.raises(ValueError, match="`every` must be an integer >= 1"):
        RetrievalEvaluation(ds, every=0)
    with pytest.raises(ValueError, match="distinct"):
        RetrievalEvaluation(ds, k=(1, 1))
    with pytest.raises(ValueError, match="distance"):
        RetrievalEvaluation(ds, distance="l1")
    with pytest.raises(TypeError, match="prefix"):
        RetrievalEvaluation(ds, prefix=1)
    with pytest.raises(ValueError, match="verbose"):
        RetrievalEvaluation(ds, verbose=2)
    with pytest.raises(ValueError, match=r"must not exceed the number of references each query ranks \(27"):
        RetrievalEvaluation(ds, k=(1, 28))


def test_a_set_of_single_images_is_refused_up_front(tmp_path):
    for c in range(3):
        (tmp_path / f"c{c}").mkdir()
        Image.fromarray(np.full((*SIZE, 3), c * 50, np.uint8)).save(tmp_path / f"c{c}" / "0.png")
    ds = balanced_image_dataset_from_directory(
        tmp_path, num_classes_per_batch=2, num_images_per_class=1, image_size=SIZE, verbose=False
    )
    with pytest.raises(ValueError, match="No query has another reference of its class"):
        RetrievalEvaluation(ds, k=1)
