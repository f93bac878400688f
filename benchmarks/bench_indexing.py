"""Time `balanced_sampler.index_directory` against Keras' own indexing.

Builds (once, then reuses) a tree of `--classes` class folders holding
`--per-class` empty `.jpg` files each (default 10,000 x 10 = 100,000 files)
and times, in the same process on the same files:

- ours: `balanced_sampler.index_directory(root)` with a few `max_workers`;
- Keras: `keras.src.utils.dataset_utils.index_directory(root, "inferred",
  formats=..., shuffle=False)`, the indexing that
  `keras.utils.image_dataset_from_directory` runs (skipped if Keras is not
  installed).

Runs are interleaved (ours, Keras, ours, ...) after one warm-up of each, so
that a noisy machine slows both alike; the table gives the median, min and
max seconds of `--repeats` runs and the ratio of medians.

    python benchmarks/bench_indexing.py [--root /tmp/kerasgen_bench_indexing]
        [--classes 10000] [--per-class 10] [--repeats 5] [--workers 1 4 default]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

from balanced_sampler.indexing import ALLOWED_FORMATS, index_directory

KERAS_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


def build_tree(root: str, classes: int, per_class: int) -> None:
    """Create the tree unless a complete one with this layout is already there."""
    marker = os.path.join(root, f".complete_{classes}x{per_class}")
    if os.path.exists(marker):
        print(f"reusing {root} ({classes} classes x {per_class} files)")
        return
    print(f"building {root} ({classes} classes x {per_class} files) ...", flush=True)
    start = time.perf_counter()
    os.makedirs(root, exist_ok=True)
    for c in range(classes):
        folder = os.path.join(root, f"class_{c:05d}")
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            fd = os.open(os.path.join(folder, f"img_{i:03d}.jpg"), os.O_CREAT | os.O_WRONLY, 0o644)
            os.close(fd)
    with open(marker, "w", encoding="utf-8") as f:
        f.write("complete\n")
    print(f"built in {time.perf_counter() - start:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=os.path.join("/tmp", "kerasgen_bench_indexing"))
    parser.add_argument("--classes", type=int, default=10_000)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--workers",
        nargs="+",
        default=["1", "4", "default"],
        help="max_workers values to time ours with ('default' = None)",
    )
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras column")
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error("--repeats must be at least 3 (medians of 3 or more runs)")

    print("command: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPU(s)")
    root = args.root.rstrip(os.sep) + "-" + f"{args.classes}x{args.per_class}"
    build_tree(root, args.classes, args.per_class)

    keras_index: Callable[[], Any] | None = None
    if not args.no_keras:
        try:
            import keras
            from keras.src.utils import dataset_utils
        except ImportError:
            print("keras is not installed: Keras column skipped")
        else:
            print(f"keras {keras.__version__}")

            def keras_index() -> Any:
                return dataset_utils.index_directory(
                    root, "inferred", formats=KERAS_FORMATS, shuffle=False, verbose=False
                )

    candidates: dict[str, Callable[[], Any]] = {}
    for w in args.workers:
        workers = None if w == "default" else int(w)
        label = f"ours max_workers={w}"

        def ours(workers: int | None = workers) -> Any:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return index_directory(root, formats=ALLOWED_FORMATS, max_workers=workers)

        candidates[label] = ours
    if keras_index is not None:
        candidates["keras index_directory"] = keras_index

    # Warm-up (page cache, imports) and a check that all list the same files.
    results = {name: fn() for name, fn in candidates.items()}
    n_files = len(next(iter(results.values()))[0])
    expected = args.classes * args.per_class
    for name, result in results.items():
        assert len(result[0]) == expected, (name, len(result[0]), expected)
    if keras_index is not None:
        mine = results[next(iter(candidates))]
        theirs = results["keras index_directory"]
        assert mine[0] == theirs[0], "ours and Keras list different files"
        assert list(mine[1]) == list(theirs[1]), "ours and Keras give different labels"
    del results

    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(args.repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)

    reference = statistics.median(times["keras index_directory"]) if keras_index else None
    print()
    print(f"{n_files} files in {args.classes} class folders, {args.repeats} runs each")
    header = f"{'indexer':<28} {'median s':>9} {'min s':>8} {'max s':>8} {'keras / this':>13}"
    print(header)
    print("-" * len(header))
    for name, values in times.items():
        med = statistics.median(values)
        ratio = f"{reference / med:.2f}x" if reference is not None else "-"
        print(f"{name:<28} {med:>9.3f} {min(values):>8.3f} {max(values):>8.3f} {ratio:>13}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
