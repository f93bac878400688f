"""Benchmark of the per-sample decoded cache of the dataset builders (`cache=`).

Everything runs through `balanced_image_dataset_from_directory` itself,
against a plain `tf.data` pipeline on the same files (list -> map(read +
decode + resize, AUTOTUNE) -> batch(16) -> prefetch), in one process,
pipelines taking turns round after round; medians of the rounds.

1. (default) 600 JPEGs of 400x300 written with Pillow, output 128x128,
   P=4, K=4 (exhaustive epochs: every image once, as the plain pipeline):
   - later epochs served from the cache (`cache="memory"` and a cache
     file), goal >= 10x the plain pipeline;
   - the filling epoch (a new dataset and cache every round), goal >=
     0.9x the first epoch of a new dataset without a cache (both build
     and start their pipeline), and against later uncached epochs;
   - a cache file reused by a new dataset (the next run);
   - fixed P x K epochs (`safe_triplet=True`) served from memory (info);
   - memory: bytes per cached image against H x W x C, and the resident
     memory a new cache adds.
2. `--zipf`: the 2,000 long-tailed photo JPEGs of `bench_pipeline.py`
   (~500x375) at 224x224: the filling epoch and later epochs against
   Keras' `image_dataset_from_directory`, plain `tf.data` and the dataset
   without a cache.

Ratios: "median ratio" divides the medians of images/s; "round ratio" is
the median over rounds of the ratio within a round (both pipelines a few
seconds apart, so they meet the same load from the other jobs sharing this
machine); "CPU ratio" compares CPU time per image of this process (all
threads), which depends least on the machine's load.

Run:

    python benchmarks/bench_cache.py --rounds 9 [--zipf]
"""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

DEFAULT_DATA_DIR = Path("/tmp/kerasgen_bench")
CACHE_SET = "jpeg600_400x300"
P, K = 4, 4
NEW = "kerasgen, no cache, epoch 1 of a new dataset"


# --------------------------------------------------------------------------- data


def build_jpeg_set(data_dir: Path, count: int = 600, classes: int = 30) -> Path:
    """Writes `count` 400x300 JPEGs (smooth gradients, shapes, noise) once."""
    from PIL import Image, ImageDraw, ImageFilter

    root = data_dir / CACHE_SET
    if (root / ".complete").exists():
        return root
    rng = np.random.default_rng(0)
    height, width = 300, 400
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(count):
        folder = root / f"class_{i % classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        base = rng.uniform(0, 255, 3)
        slopes = rng.uniform(-0.4, 0.4, (3, 2))
        pixels = np.stack([base[c] + slopes[c, 0] * xx + slopes[c, 1] * yy for c in range(3)], -1)
        pixels += rng.normal(0, 12, (height, width, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
            box = [x0, y0, x0 + int(rng.integers(10, 150)), y0 + int(rng.integers(10, 120))]
            draw.ellipse(box, fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        image.filter(ImageFilter.GaussianBlur(0.8)).save(folder / f"img_{i:04d}.jpg", quality=90)
    (root / ".complete").touch()
    return root


# --------------------------------------------------------------------------- pipelines


def plain_pipeline(paths: list[str], size: int) -> object:
    """`bench_pipeline.plain_pipeline`: list -> map(read + decode + resize) -> batch(P x K)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_pipeline import plain_pipeline as bare

    return bare(paths, size, P * K)


def ours(root: Path, size: int, **kwargs: object) -> object:
    """`balanced_image_dataset_from_directory` with this benchmark's settings."""
    from kerasgen_tf import balanced_image_dataset_from_directory

    return balanced_image_dataset_from_directory(
        root, P, K, image_size=(size, size), seed=1, verbose=False, **kwargs
    )


# --------------------------------------------------------------------------- timing


def epoch(ds: Iterable[object]) -> tuple[float, float]:
    """Plays one epoch: (images per second, CPU microseconds per image)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_pipeline import epoch_rate

    rate, per_cpu_second = epoch_rate(ds)
    return rate, 1e6 / per_cpu_second


class Runs:
    """Rates and CPU costs per pipeline and round, and their ratios."""

    def __init__(self) -> None:
        self.rate: dict[str, list[list[float]]] = {}
        self.cpu: dict[str, list[list[float]]] = {}

    def new_round(self) -> None:
        """Starts a round: the epochs measured next are compared with each other."""
        for table in (self.rate, self.cpu):
            for rounds in table.values():
                rounds.append([])

    def add(self, name: str, measured: tuple[float, float]) -> None:
        """Records one epoch of `name` in the current round."""
        if name not in self.rate:
            done = max((len(r) for r in self.rate.values()), default=1)
            self.rate[name] = [[] for _ in range(done)]
            self.cpu[name] = [[] for _ in range(done)]
        self.rate[name][-1].append(measured[0])
        self.cpu[name][-1].append(measured[1])

    def _all(self, table: dict[str, list[list[float]]], name: str) -> list[float]:
        return [v for r in table[name] for v in r]

    def round_ratio(self, name: str, reference: str) -> float:
        """Median over rounds of (median rate of `name` / median rate of `reference`)."""
        ratios = [
            statistics.median(a) / statistics.median(b)
            for a, b in zip(self.rate[name], self.rate[reference], strict=True)
            if a and b
        ]
        return statistics.median(ratios)

    def row(self, name: str, reference: str | None, goal: str = "") -> str:
        """A markdown row: medians, and ratios to `reference`."""
        rates, cpus = self._all(self.rate, name), self._all(self.cpu, name)
        rate, cpu = statistics.median(rates), statistics.median(cpus)
        cells = [name, f"{rate:,.0f}", f"{cpu:,.0f}", "", "", "", goal]
        if reference is not None:
            cells[3] = f"{rate / statistics.median(self._all(self.rate, reference)):.2f}"
            cells[4] = f"{self.round_ratio(name, reference):.2f}"
            cells[5] = f"{statistics.median(self._all(self.cpu, reference)) / cpu:.2f}"
            cells[6] = f"{goal} vs {reference}" if goal else f"vs {reference}"
        runs = ", ".join(f"{v:,.0f}" for v in rates)
        return "| " + " | ".join([*cells, runs]) + " |"


HEADER = (
    "| pipeline | img/s (median) | CPU us/img | median ratio | round ratio | CPU ratio | "
    "goal / against | all epochs img/s |\n|---|---|---|---|---|---|---|---|"
)


def rss_bytes() -> int:
    """The resident memory of this process."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def fresh(make: Callable[[], object]) -> object:
    """A new dataset, after the last one's memory is freed."""
    gc.collect()
    return make()


# --------------------------------------------------------------------------- parts


def cache_part(root: Path, size: int, rounds: int, later: int, folder: str) -> None:
    """Part 1: 600 JPEGs 400x300 -> `size`, every figure the issue asks for."""
    from balanced_sampler import index_directory

    paths, _, _ = index_directory(root)
    plain = plain_pipeline(paths, size)
    uncached = ours(root, size)
    files = iter(range(10**6))

    def cache_file() -> str:
        return os.path.join(folder, f"c{next(files)}.kgcache")

    memory = ours(root, size, cache="memory")
    disk_path = cache_file()
    disk = ours(root, size, cache=disk_path)
    fixed = ours(root, size, cache="memory", safe_triplet=True)
    for ds in (plain, uncached, memory, disk):
        epoch(ds)  # type: ignore[arg-type]
    while fixed.decoded_cache.num_filled < len(paths):  # type: ignore[attr-defined]
        epoch(fixed)  # type: ignore[arg-type]
    disk.decoded_cache.close()  # type: ignore[attr-defined]
    reused = ours(root, size, cache=disk_path)  # the next run: the file is complete
    assert reused.decoded_cache.num_filled == len(paths)  # type: ignore[attr-defined]
    runs = Runs()
    for _ in range(rounds):
        runs.new_round()
        runs.add("plain tf.data", epoch(plain))
        runs.add("kerasgen, no cache", epoch(uncached))
        first = fresh(lambda: ours(root, size))
        runs.add(NEW, epoch(first))  # type: ignore[arg-type]
        filling = fresh(lambda: ours(root, size, cache="memory"))
        runs.add('cache="memory", epoch 1 (filling)', epoch(filling))  # type: ignore[arg-type]
        path = cache_file()
        filling = fresh(lambda: ours(root, size, cache=path))  # noqa: B023
        runs.add("cache file, epoch 1 (filling)", epoch(filling))  # type: ignore[arg-type]
        filling.decoded_cache.close()  # type: ignore[attr-defined]
        del filling
        os.unlink(path)
        runs.add("plain tf.data", epoch(plain))
        for _ in range(later):
            runs.add('cache="memory", later epoch', epoch(memory))
            runs.add("cache file, later epoch", epoch(reused))
            runs.add('cache="memory", later epoch, safe_triplet=True', epoch(fixed))
    layout = memory.decoded_cache.layout  # type: ignore[attr-defined]
    gc.collect()
    before = rss_bytes()
    extra = ours(root, size, cache="memory")
    created = rss_bytes() - before
    epoch(extra)  # type: ignore[arg-type]
    filled = rss_bytes() - before
    print(f"\n### {len(paths)} JPEGs 400x300 -> {size}x{size}, P={P}, K={K}, {rounds} rounds\n")
    print(HEADER)
    print(runs.row("plain tf.data", None))
    print(runs.row("kerasgen, no cache", "plain tf.data"))
    print(runs.row(NEW, "plain tf.data"))
    print(runs.row('cache="memory", epoch 1 (filling)', NEW, ">= 0.9"))
    print(runs.row("cache file, epoch 1 (filling)", NEW, ">= 0.9"))
    print(runs.row('cache="memory", epoch 1 (filling)', "kerasgen, no cache"))
    print(runs.row("cache file, epoch 1 (filling)", "kerasgen, no cache"))
    print(runs.row('cache="memory", later epoch', "plain tf.data", ">= 10"))
    print(runs.row('cache="memory", later epoch, safe_triplet=True', "plain tf.data"))
    print(runs.row("cache file, later epoch", "plain tf.data"))
    height, width, channels = layout.image_shape
    print(
        f"\nMemory cache: {layout.describe()}: {layout.row_nbytes:,} bytes per image = "
        f"H x W x C = {height} x {width} x {channels} (uint8). A new memory cache added "
        f"{created:,} bytes of resident memory when the dataset was built "
        f"({created / len(paths):,.0f} per image) and {filled:,} bytes once its first epoch "
        f"had filled it ({filled / len(paths):,.0f} per image)."
    )
    print(
        f"Cache file: {os.path.getsize(disk_path):,} bytes = a 4,096-byte header + "
        f"{layout.nbytes:,} bytes of rows + {len(paths)} bytes of completeness records."
    )


def zipf_part(data_dir: Path, rounds: int, later: int) -> None:
    """Part 2: the long-tailed photo set at 224x224 against Keras and plain tf.data."""
    import keras

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_pipeline import build_photo_set

    from balanced_sampler import index_directory

    root = build_photo_set(data_dir)
    size = 224
    paths, _, _ = index_directory(root)
    keras_ds = keras.utils.image_dataset_from_directory(
        root, batch_size=P * K, image_size=(size, size), seed=1, verbose=False
    )
    plain = plain_pipeline(paths, size)
    uncached = ours(root, size)
    memory = ours(root, size, cache="memory")
    for ds in (keras_ds, plain, uncached, memory):
        epoch(ds)  # type: ignore[arg-type]
    runs = Runs()
    for _ in range(rounds):
        runs.new_round()
        runs.add("keras image_dataset_from_directory", epoch(keras_ds))
        runs.add("plain tf.data", epoch(plain))
        runs.add("kerasgen, no cache", epoch(uncached))
        first = fresh(lambda: ours(root, size))
        runs.add(NEW, epoch(first))  # type: ignore[arg-type]
        del first
        filling = fresh(lambda: ours(root, size, cache="memory"))
        runs.add('cache="memory", epoch 1 (filling)', epoch(filling))  # type: ignore[arg-type]
        del filling
        runs.add("kerasgen, no cache", epoch(uncached))
        for _ in range(later):
            runs.add('cache="memory", later epoch', epoch(memory))
    print(f"\n### Zipf photo set: {len(paths)} JPEGs (~500x375) -> 224x224, P={P}, K={K}\n")
    print(HEADER)
    print(runs.row("keras image_dataset_from_directory", None))
    print(runs.row("plain tf.data", "keras image_dataset_from_directory"))
    print(runs.row("kerasgen, no cache", "keras image_dataset_from_directory"))
    print(runs.row(NEW, "keras image_dataset_from_directory"))
    fill = 'cache="memory", epoch 1 (filling)'
    print(runs.row(fill, NEW, ">= 0.9"))
    print(runs.row(fill, "kerasgen, no cache"))
    print(runs.row(fill, "keras image_dataset_from_directory"))
    print(runs.row(fill, "plain tf.data"))
    print(runs.row('cache="memory", later epoch', "keras image_dataset_from_directory"))
    print(runs.row('cache="memory", later epoch', "plain tf.data"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--rounds", type=int, default=7, help="rounds of alternating epochs")
    parser.add_argument("--later", type=int, default=3, help="cached epochs per round")
    parser.add_argument("--size", type=int, default=128, help="output size of part 1")
    parser.add_argument("--zipf", action="store_true", help="also the 224x224 zipf photo set")
    parser.add_argument("--only-zipf", action="store_true", help="only the zipf photo set")
    args = parser.parse_args(argv)
    print(f"Command: {shlex.join([os.path.basename(sys.executable), *sys.argv])}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = build_jpeg_set(args.data_dir)

    import tensorflow as tf

    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs; data in {args.data_dir}")
    with tempfile.TemporaryDirectory(prefix="kerasgen_cache_bench_") as folder:
        if not args.only_zipf:
            cache_part(root, args.size, args.rounds, args.later, folder)
        if args.zipf or args.only_zipf:
            zipf_part(args.data_dir, args.rounds, args.later)
    return 0


if __name__ == "__main__":
    sys.exit(main())
