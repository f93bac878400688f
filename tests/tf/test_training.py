"""Real training: `model.fit` sees exact step counts and one planned epoch per epoch."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from kerasgen_tf import balanced_image_dataset_from_directory

keras = pytest.importorskip("keras")

EPOCHS = 3


def tiny_model(num_classes, image_size=8):
    model = keras.Sequential(
        [
            keras.Input((image_size, image_size, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(num_classes),
        ]
    )
    return model


class StepCounter(keras.callbacks.Callback):
    """Records Keras' announced steps and the steps run in each epoch."""

    def on_train_begin(self, logs=None):
        self.announced = self.params["steps"]
        self.steps = []

    def on_epoch_begin(self, epoch, logs=None):
        self.steps.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.steps[-1] += 1


class LabelRecorder(keras.metrics.Metric):
    """A metric that keeps every label batch it sees (needs run_eagerly)."""

    def __init__(self):
        super().__init__(name="recorder")
        self.seen = []

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.seen.append(np.asarray(y_true))

    def result(self):
        return 0.0

    def reset_state(self):
        pass


def test_fit_three_epochs_without_steps_per_epoch(class_tree):
    ds = balanced_image_dataset_from_directory(
        class_tree, 2, 2, image_size=8, seed=11, verbose=False
    )
    model = tiny_model(len(ds.class_names))
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    counter = StepCounter()
    history = model.fit(ds, epochs=EPOCHS, callbacks=[counter], verbose=0)
    assert counter.announced == len(ds)
    assert counter.steps == [len(ds)] * EPOCHS
    assert len(history.history["loss"]) == EPOCHS
    # Each Keras epoch played exactly one sampler epoch, and they differ.
    assert ds.sampler.epoch == EPOCHS
    plans = [np.concatenate(ds.sampler.plan(e)) for e in range(EPOCHS)]
    assert not np.array_equal(plans[0], plans[1])
    assert not np.array_equal(plans[1], plans[2])


def test_fit_sees_the_planned_batches_of_each_epoch(class_tree):
    ds = balanced_image_dataset_from_directory(
        class_tree, 2, 2, image_size=8, seed=12, verbose=False
    )
    recorder = LabelRecorder()
    model = tiny_model(len(ds.class_names))
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[recorder],
        run_eagerly=True,
    )
    model.fit(ds, epochs=EPOCHS, verbose=0)
    expected = [ds.sampler.labels[b] for e in range(EPOCHS) for b in ds.sampler.plan(e)]
    assert len(recorder.seen) == len(expected) == EPOCHS * len(ds)
    for seen, planned in zip(recorder.seen, expected, strict=True):
        np.testing.assert_array_equal(seen, planned)
    first, second = recorder.seen[: len(ds)], recorder.seen[len(ds) : 2 * len(ds)]
    assert any(not np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_fixed_batches_compile_once(class_tree):
    p, k = 2, 2
    ds = balanced_image_dataset_from_directory(
        class_tree, p, k, image_size=8, seed=13, safe_triplet=True, verbose=False
    )
    assert ds.element_spec[0].shape[0] == p * k
    model = tiny_model(len(ds.class_names))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = keras.optimizers.SGD()

    @tf.function(jit_compile=True)
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            value = loss(labels, model(images, training=True))
        grads = tape.gradient(value, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return value

    for _ in range(2):
        for images, labels in ds:
            train_step(images, labels)
    assert train_step.experimental_get_tracing_count() == 1

    model.compile(optimizer="sgd", loss=loss, jit_compile=True)
    counter = StepCounter()
    model.fit(ds, epochs=2, callbacks=[counter], verbose=0)
    assert counter.steps == [len(ds)] * 2


def test_validation_data(class_tree):
    train, val = balanced_image_dataset_from_directory(
        class_tree,
        2,
        2,
        image_size=8,
        seed=14,
        validation_split=0.3,
        subset="both",
        verbose=False,
    )
    model = tiny_model(len(train.class_names))
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    history = model.fit(train, validation_data=val, epochs=2, verbose=0)
    assert len(history.history["val_loss"]) == 2
    assert train.sampler.epoch == 2
    assert val.sampler.epoch == 2
