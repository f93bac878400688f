"""A process that uses a cache file, for the two-process and killed-writer tests.

Usage: python cache_file_worker.py PATH MODE

Row r of the cache holds the value r + 1 everywhere. MODE:
- "hold": write rows 0-4 and commit, print the role, wait for a line on
  stdin, write rows 5-9, close, print "done";
- "complete-hold": write every row and commit, print the role, wait for a
  line on stdin, close;
- "killed": write rows 0-3 and commit, write rows 4-7 without committing,
  print the role, then kill itself (SIGKILL: no exit handler runs).
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np

from balanced_sampler.cache_file import CacheFile
from balanced_sampler.decoded_cache import CacheLayout

LAYOUT = CacheLayout(10, (4, 5, 3), "uint8")


def rows(values: range) -> tuple[np.ndarray, np.ndarray]:
    index = np.array(list(values), dtype=np.int64)
    images = np.broadcast_to(
        (index + 1).astype(np.uint8)[:, None, None, None], (len(index), 4, 5, 3)
    )
    return index, images


def main() -> None:
    path, mode = sys.argv[1], sys.argv[2]
    store = CacheFile.open(path, LAYOUT, "key-1", commit_interval=3600)
    if mode == "hold":
        store.write(*rows(range(5)))
        store.commit()
        print(store.role, flush=True)
        sys.stdin.readline()
        store.write(*rows(range(5, 10)))
        store.close()
        print("done", flush=True)
    elif mode == "complete-hold":
        store.write(*rows(range(10)))
        store.commit()
        print(store.role, flush=True)
        sys.stdin.readline()
        store.close()
    elif mode == "killed":
        store.write(*rows(range(4)))
        store.commit()
        store.write(*rows(range(4, 8)))
        print(store.role, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
