"""Runs in a fresh process: MirroredStrategy over 2 logical CPUs, then `fit` for 2 epochs.

Usage: python mirrored_fit.py DIRECTORY SAFE_TRIPLET(0/1)
Prints one JSON line: per epoch, per step, per replica the sample indices
and labels it received, then the steps `fit` ran per epoch and the losses.
"""

# ruff: noqa: E402 (TensorFlow is configured before Keras and kerasgen_tf are imported)

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import keras
from distributed_common import sample_indices

from kerasgen_tf import balanced_image_dataset_from_directory
from kerasgen_tf.distribute import distributed_dataset_fn
from kerasgen_tf.losses import TripletSemiHardLoss

directory, fixed = sys.argv[1], sys.argv[2] == "1"
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
ds = balanced_image_dataset_from_directory(
    directory, 2, 3, image_size=(4, 5), seed=11, safe_triplet=fixed, verbose=False
)
dist = strategy.distribute_datasets_from_function(distributed_dataset_fn(ds))

played = []
for _ in range(2):
    steps = []
    for images, labels in dist:
        steps.append(
            [
                [sample_indices(x.numpy()), y.numpy().tolist()]
                for x, y in zip(
                    strategy.experimental_local_results(images),
                    strategy.experimental_local_results(labels),
                    strict=True,
                )
            ]
        )
    played.append(steps)


class StepCounter(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.steps = []

    def on_epoch_begin(self, epoch, logs=None):
        self.steps.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.steps[-1] += 1


with strategy.scope():
    model = keras.Sequential(
        [
            keras.Input((4, 5, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(4),
        ]
    )
    model.compile(optimizer="sgd", loss=TripletSemiHardLoss())
counter = StepCounter()
history = model.fit(dist, epochs=2, verbose=0, callbacks=[counter])
print(
    json.dumps(
        {
            "played": played,
            "fit_steps": counter.steps,
            "loss": history.history["loss"],
            "replicas": strategy.num_replicas_in_sync,
        }
    )
)
