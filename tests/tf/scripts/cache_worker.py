"""A separate process that builds a dataset with a cache file, for the cache tests.

Usage: python cache_worker.py DIRECTORY CACHE_PATH MODE

The dataset: `balanced_image_dataset_from_directory(DIRECTORY, 2, 2,
image_size=(6, 7), seed=5, cache=CACHE_PATH)`. Prints one JSON line per
step (flushed). MODE:

- "epoch": plays one epoch, prints `{"role", "filled_at_start", "filled",
  "batches": [[sample indices, pixel sums]...]}`, exits normally.
- "killed": with short fixed epochs (`safe_triplet=True`,
  `samples_per_epoch=8`: 2 batches, so prefetching cannot fill the whole
  cache), plays epoch 0, commits (syncs and records its rows), plays
  epoch 1 (written, recorded only if the committer's 10 s interval
  passes), prints `{"role", "committed": [rows], "filled"}`, then kills
  itself (SIGKILL: no exit handler runs).
- "hold": with the same short epochs, plays epoch 0 and commits, prints
  `{"role", "filled"}`, waits for a line on stdin, plays epochs until
  the cache is complete, prints `{"filled"}`, exits.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from kerasgen_tf import balanced_image_dataset_from_directory


def say(message: dict[str, object]) -> None:
    print(json.dumps(message), flush=True)


def main() -> None:
    directory, path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    # Sampling options are no part of the cache file's key: the tests' datasets reuse it.
    short = {"safe_triplet": True, "samples_per_epoch": 8} if mode != "epoch" else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = balanced_image_dataset_from_directory(
            directory, 2, 2, image_size=(6, 7), seed=5, cache=path, verbose=False, **short
        )
    cache = ds.decoded_cache
    start = {
        "role": cache.file.role,
        "filled_at_start": cache.num_filled,
        "warnings": [str(w.message) for w in caught],
    }
    plan = ds.sampler.plan(ds.sampler.epoch)
    iterator = iter(ds)
    if mode == "epoch":
        batches = [
            [index.tolist(), x.numpy().sum(axis=(1, 2, 3)).tolist()]
            for index, (x, _) in zip(plan, iterator, strict=True)
        ]
        say({**start, "filled": cache.num_filled, "batches": batches})
    elif mode == "killed":
        for _ in iterator:
            pass
        cache.file.commit()
        committed = np.flatnonzero(cache.filled).tolist()
        for _ in ds:
            pass
        say({**start, "committed": committed, "filled": cache.num_filled})
        os.kill(os.getpid(), signal.SIGKILL)
    elif mode == "hold":
        for _ in iterator:
            pass
        cache.file.commit()
        say({**start, "filled": cache.num_filled})
        sys.stdin.readline()
        for _ in range(200):
            if cache.file.complete:
                break
            for _ in ds:
                pass
        say({"filled": cache.num_filled})


if __name__ == "__main__":
    main()
