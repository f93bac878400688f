"""Throughput and call-to-first-batch benchmark of the kerasgen_tf input pipeline.

Compares `kerasgen_tf.balanced_image_dataset_from_directory` with a plain
`tf.data` pipeline (list the files, map read + decode + resize, batch,
prefetch) and with Keras' own `image_dataset_from_directory`, on data
built (once, then cached) under `--data-dir`:

- `photos_2000/`: 2,000 real-photo JPEGs (~500x375) in 100 long-tailed
  classes, made from random crops, scales and flips of the two photos that
  scikit-learn ships (`load_sample_images()`), for throughput.
- `classes_2000/` and `classes_10000/`: 2,000 and 10,000 classes of 5
  small JPEGs (10,000 and 50,000 files), for the time from the call to the
  first batch.

Run:

    python benchmarks/bench_pipeline.py --epochs 7 --startup-repeats 7

Throughput: the median of `--epochs` full epochs after one warm-up epoch;
the pipelines being compared run alternately, epoch after epoch, so that
machine noise hits them alike. Call to first batch: every measurement is a
fresh process (TensorFlow and the library imported, one op run, then the
clock starts at the call and stops at the first batch); the three
pipelines take turns, `--startup-repeats` rounds, medians.
"""

from __future__ import annotations

import argparse
import io
import os
import shlex
import statistics
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

DEFAULT_DATA_DIR = Path("/tmp/kerasgen_bench")
PHOTO_SET = "photos_2000"
NUM_PHOTOS = 2000
NUM_PHOTO_CLASSES = 100
STARTUP_CLASSES = (2_000, 10_000)
FILES_PER_MANY_CLASS = 5


def _long_tail_sizes(total: int, num_classes: int, exponent: float = 1.0) -> list[int]:
    """Zipf-like class sizes summing to `total`, each at least 2."""
    weights = 1.0 / np.arange(1, num_classes + 1) ** exponent
    sizes = np.maximum(2, np.floor(weights / weights.sum() * total)).astype(int)
    i = 0
    while sizes.sum() < total:
        sizes[i % num_classes] += 1
        i += 1
    while sizes.sum() > total:
        j = int(np.argmax(sizes))
        sizes[j] -= 1
    return sizes.tolist()


def _done_marker(root: Path) -> Path:
    return root / ".complete"


def build_photo_set(data_dir: Path) -> Path:
    """Write the long-tailed 2,000-JPEG set once and return its folder."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    root = data_dir / PHOTO_SET
    if _done_marker(root).exists():
        return root
    photos = [Image.fromarray(img) for img in load_sample_images().images]
    rng = np.random.default_rng(20240601)
    sizes = _long_tail_sizes(NUM_PHOTOS, NUM_PHOTO_CLASSES)
    for c, size in enumerate(sizes):
        class_dir = root / f"class_{c:03d}"
        class_dir.mkdir(parents=True, exist_ok=True)
        for i in range(size):
            photo = photos[int(rng.integers(len(photos)))]
            pw, ph = photo.size
            # A random 4:3 window (scale 45-100 % of the largest one) ...
            max_w = min(pw, ph * 4 // 3)
            w = int(max_w * rng.uniform(0.45, 1.0))
            h = w * 3 // 4
            x0 = int(rng.integers(0, pw - w + 1))
            y0 = int(rng.integers(0, ph - h + 1))
            img = photo.crop((x0, y0, x0 + w, y0 + h))
            # ... resized to about 500x375, maybe mirrored.
            out_w = int(rng.integers(480, 521))
            img = img.resize((out_w, out_w * 3 // 4), Image.Resampling.BILINEAR)
            if rng.random() < 0.5:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            img.save(class_dir / f"img_{i:04d}.jpg", quality=90)
    _done_marker(root).touch()
    return root


def build_many_classes_set(data_dir: Path, num_classes: int) -> Path:
    """Write `num_classes` classes x 5 small JPEGs once and return the folder."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    root = data_dir / f"classes_{num_classes}"
    if _done_marker(root).exists():
        return root
    photo = Image.fromarray(load_sample_images().images[0])
    rng = np.random.default_rng(7)
    blobs = []
    for _ in range(64):
        x0, y0 = int(rng.integers(0, 500)), int(rng.integers(0, 340))
        buf = io.BytesIO()
        photo.crop((x0, y0, x0 + 64, y0 + 48)).save(buf, format="JPEG", quality=85)
        blobs.append(buf.getvalue())
    for c in range(num_classes):
        class_dir = root / f"c{c:05d}"
        class_dir.mkdir(parents=True, exist_ok=True)
        for i in range(FILES_PER_MANY_CLASS):
            (class_dir / f"{i}.jpg").write_bytes(blobs[(c * 7 + i) % len(blobs)])
    _done_marker(root).touch()
    return root


# --------------------------------------------------------------------------- pipelines

BATCH_P, BATCH_K = 4, 4


def _ours(directory: Path, image_size: int, **kwargs: object) -> object:
    from kerasgen_tf import balanced_image_dataset_from_directory

    return balanced_image_dataset_from_directory(
        directory,
        BATCH_P,
        BATCH_K,
        image_size=(image_size, image_size),
        seed=1,
        verbose=False,
        **kwargs,
    )


def _keras(directory: Path, image_size: int) -> object:
    import keras

    return keras.utils.image_dataset_from_directory(
        directory,
        batch_size=BATCH_P * BATCH_K,
        image_size=(image_size, image_size),
        seed=1,
        verbose=False,
    )


def plain_pipeline(
    paths: list[str], image_size: int, batch_size: int = BATCH_P * BATCH_K
) -> object:
    """The bare pipeline: list -> map(read + decode + resize, AUTOTUNE) -> batch -> prefetch."""
    import tensorflow as tf

    def load(path: object) -> object:
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return tf.image.resize(image, (image_size, image_size))

    ds = tf.data.Dataset.from_tensor_slices(paths)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _plain(directory: Path, image_size: int) -> object:
    """`plain_pipeline` over the files of `directory`'s class folders."""
    import glob

    return plain_pipeline(sorted(glob.glob(os.path.join(directory, "*", "*"))), image_size)


STARTUP_PIPELINES = {"bare tf.data": _plain, "kerasgen_tf": _ours, "keras": _keras}


def _first_batch_child(name: str, directory: Path) -> float:
    """In a fresh process: seconds from the call to the first batch (after start-up)."""
    import tensorflow as tf

    import kerasgen_tf  # noqa: F401 (imported before the clock starts, as TensorFlow is)

    _ = (tf.constant(1) + 1).numpy()  # TensorFlow's start-up: runtime and thread pools
    make = STARTUP_PIPELINES[name]
    start = time.perf_counter()
    next(iter(make(directory, 224)))  # type: ignore[call-overload]
    return time.perf_counter() - start


def _startup(directory: Path, repeats: int) -> dict[str, list[float]]:
    """`repeats` rounds; in each, every pipeline in a fresh process, in a rotating order."""
    import subprocess

    names = list(STARTUP_PIPELINES)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats + 1):  # round 0 warms the file system cache
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            out = subprocess.run(
                [sys.executable, __file__, "--first-batch-child", name, str(directory)],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            if round_:
                times[name].append(float(out.stdout.strip().splitlines()[-1]))
    return times


def epoch_rate(ds: Iterable[object]) -> tuple[float, float]:
    """Plays one full epoch: images per second, and per CPU second of this process."""
    start, cpu = time.perf_counter(), time.process_time()
    images = 0
    for batch in ds:
        x = batch[0] if isinstance(batch, tuple) else batch
        images += int(x.shape[0])  # type: ignore[attr-defined]
    return images / (time.perf_counter() - start), images / (time.process_time() - cpu)


def _throughput(
    pipelines: dict[str, object], epochs: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """One warm-up epoch each, then `epochs` epochs of each, alternating.

    Returns:
        Images per second and images per CPU second, of every epoch, by pipeline.
        The second does not depend on how many cores other processes leave
        free (this machine's 2 cores are shared): it compares the work the
        pipelines do per image.
    """
    for ds in pipelines.values():
        epoch_rate(ds)  # type: ignore[arg-type]
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    per_cpu: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(epochs):
        for name, ds in pipelines.items():
            rate, efficiency = epoch_rate(ds)  # type: ignore[arg-type]
            rates[name].append(rate)
            per_cpu[name].append(efficiency)
    return rates, per_cpu


# --------------------------------------------------------------------------- report


def _row(cells: Iterable[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _fmt_runs(values: list[float], digits: int = 0) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs (>= 3)")
    parser.add_argument("--startup-repeats", type=int, default=5)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument(
        "--first-batch-child", nargs=2, metavar=("PIPELINE", "DIR"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.first_batch_child:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        name, directory = args.first_batch_child
        print(f"{_first_batch_child(name, Path(directory)):.4f}")
        return 0
    if args.epochs < 3:
        parser.error("--epochs must be at least 3")

    command = shlex.join([os.path.basename(sys.executable), *sys.argv])
    print(f"Command: {command}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    photos = None if args.skip_throughput else build_photo_set(args.data_dir)
    trees = (
        []
        if args.skip_startup
        else [(n, build_many_classes_set(args.data_dir, n)) for n in STARTUP_CLASSES]
    )

    import tensorflow as tf

    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs; data in {args.data_dir}")
    header = _row(["measure", "pipeline", "median", "ratio", "best ratio", "goal", "runs"])
    if photos is not None:
        print(
            f"{NUM_PHOTOS} JPEGs in {NUM_PHOTO_CLASSES} long-tailed classes, P={BATCH_P}, "
            f"K={BATCH_K} (others: batch_size={BATCH_P * BATCH_K}); medians of "
            f"{args.epochs} epochs after one warm-up epoch, pipelines alternating. "
            "Ratio: of medians; best ratio: of the best epochs."
        )
        big, big_cpu = _throughput(
            {
                "kerasgen_tf": _ours(photos, 224),
                "kerasgen_tf fixed": _ours(photos, 224, safe_triplet=True),
                "plain tf.data": _plain(photos, 224),
                "keras": _keras(photos, 224),
            },
            args.epochs,
        )
        small, small_cpu = _throughput(
            {"kerasgen_tf": _ours(photos, 8), "plain tf.data": _plain(photos, 8)}, args.epochs
        )
        rows = []

        def add(
            what: str,
            name: str,
            runs: list[float],
            ref: list[float] | None,
            cpu: list[float],
            ref_cpu: list[float] | None,
            goal: str,
        ) -> None:
            med = statistics.median(runs)
            cells = [what, name, f"{med:.0f}"]
            if ref is None or ref_cpu is None:
                cells += ["", "", ""]
            else:
                cells.append(f"{med / statistics.median(ref):.3f}")
                # This machine's 2 cores are shared with other jobs: an epoch gets one or
                # two of them. Images per CPU second compare the work per image whatever
                # the share; the best epochs compare both pipelines with two cores.
                cells.append(f"{statistics.median(cpu) / statistics.median(ref_cpu):.3f}")
                cells.append(f"{max(runs) / max(ref):.3f}")
            rows.append(_row([*cells, goal, _fmt_runs(runs)]))

        p224, p224_cpu = big["plain tf.data"], big_cpu["plain tf.data"]
        add("224x224 epoch, img/s", "plain tf.data", p224, None, p224_cpu, None, "")
        for name, label, goal in (
            ("keras", "keras", "(info)"),
            ("kerasgen_tf", "kerasgen_tf exhaustive", ">= 1.0"),
            ("kerasgen_tf fixed", "kerasgen_tf safe_triplet", "(info)"),
        ):
            add("224x224 epoch, img/s", label, big[name], p224, big_cpu[name], p224_cpu, goal)
        p8, p8_cpu = small["plain tf.data"], small_cpu["plain tf.data"]
        add("8x8 epoch, img/s", "plain tf.data", p8, None, p8_cpu, None, "")
        add(
            "8x8 epoch, img/s",
            "kerasgen_tf exhaustive",
            small["kerasgen_tf"],
            p8,
            small_cpu["kerasgen_tf"],
            p8_cpu,
            ">= 0.95",
        )
        print()
        columns = ["measure", "pipeline", "median", "ratio", "per-CPU ratio", "best ratio"]
        print(_row([*columns, "goal", "runs"]))
        print(_row(["---"] * 8))
        for row in rows:
            print(row)
    for num_classes, tree in trees:
        files = num_classes * FILES_PER_MANY_CLASS
        print(
            f"\nCall to first batch (224x224), {num_classes:,} classes / {files:,} files: fresh "
            f"process each, after TensorFlow's start-up; {args.startup_repeats} rounds, "
            "pipelines in turn. Ratio: of medians, to bare tf.data."
        )
        times = _startup(tree, args.startup_repeats)
        print(header)
        print(_row(["---"] * 7))
        bare = times["bare tf.data"]
        for name, runs in times.items():
            ref = None if name == "bare tf.data" else bare
            ratio = "" if ref is None else f"{statistics.median(runs) / statistics.median(ref):.2f}"
            best = "" if ref is None else f"{min(runs) / min(ref):.2f}"
            goal = "<= 1.5" if name == "kerasgen_tf" else ""
            what = f"call -> 1st batch, {files:,} files, s"
            print(
                _row(
                    [
                        what,
                        name,
                        f"{statistics.median(runs):.3f}",
                        ratio,
                        best,
                        goal,
                        _fmt_runs(runs, 3),
                    ]
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
