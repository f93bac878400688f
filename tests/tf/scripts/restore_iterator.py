"""Runs in a fresh process: restores a checkpointed iterator and plays the rest of the epoch.

Usage: python restore_iterator.py DIRECTORY SAFE_TRIPLET(0/1) EPOCH CHECKPOINT
Prints one JSON line: the sample indices and labels of every remaining batch.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf
from distributed_common import sample_indices

from kerasgen_tf import balanced_image_dataset_from_directory
from kerasgen_tf.distribute import checkpointable_dataset

directory, fixed, epoch, checkpoint = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), sys.argv[4]
ds = balanced_image_dataset_from_directory(
    directory, 2, 3, image_size=(4, 5), seed=11, safe_triplet=fixed, verbose=False
)
iterator = iter(checkpointable_dataset(ds, epoch))
tf.train.Checkpoint(iterator=iterator).restore(checkpoint).assert_consumed()
print(json.dumps([[sample_indices(x.numpy()), y.numpy().tolist()] for x, y in iterator]))
