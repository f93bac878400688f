"""Runs in one of 2 worker processes: MultiWorkerMirroredStrategy, a custom loop.

Usage: TF_CONFIG=... python multi_worker.py DIRECTORY OUTPUT_JSON
Trains a tiny embedding with `strategy.run` on every batch of 2 epochs and
writes the sample indices and labels this worker received at each step.
(Keras 3.15 `model.fit` fails under this strategy with any dataset.)
"""

# ruff: noqa: E402 (TensorFlow is configured before Keras and kerasgen_tf are imported)

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

strategy = tf.distribute.MultiWorkerMirroredStrategy()

import keras
from distributed_common import sample_indices

from kerasgen_tf import balanced_image_dataset_from_directory
from kerasgen_tf.distribute import distributed_dataset_fn
from kerasgen_tf.losses import TripletSemiHardLoss

directory, output = sys.argv[1], sys.argv[2]
ds = balanced_image_dataset_from_directory(
    directory, 2, 3, image_size=(4, 5), seed=11, safe_triplet=True, verbose=False
)
dist = strategy.distribute_datasets_from_function(distributed_dataset_fn(ds))

with strategy.scope():
    model = keras.Sequential(
        [
            keras.Input((4, 5, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(4),
        ]
    )
    optimizer = keras.optimizers.SGD(0.01)
    loss_fn = TripletSemiHardLoss()


@tf.function
def train_step(images, labels):
    def step(x, y):
        with tf.GradientTape() as tape:
            # One scalar per replica batch; the sum over replicas is the mean loss.
            loss = loss_fn(y, model(x, training=True)) / strategy.num_replicas_in_sync
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    losses = strategy.run(step, args=(images, labels))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)


played, losses = [], []
for _ in range(2):
    steps = []
    for images, labels in dist:
        losses.append(float(train_step(images, labels)))
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

with open(output, "w") as f:
    json.dump({"played": played, "losses": losses, "replicas": strategy.num_replicas_in_sync}, f)
