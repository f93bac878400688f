"""Benchmark of the per-sample decoded cache (`kerasgen_tf.decoded_cache`).

Three parts, each measured in one process, pipelines alternating round
after round, medians of the rounds:

1. (default) 600 JPEGs of 400x300 written with Pillow, output 128x128,
   P=4, K=4: an epoch served from the cache against a plain `tf.data` decode
   pipeline (list -> map(decode + resize, AUTOTUNE) -> batch(16) ->
   prefetch); the filling epoch against the same pipeline without a cache;
   memory and disk caches; bytes per cached image.
2. `--mechanisms`: the candidate mechanisms for cached epochs on the same
   files: a `tf.Variable` gathered in the graph, a numpy array or a
   `np.memmap` gathered by one `py_function` per batch, `from_generator`
   yielding the gathered images; with the live plan source
   (`from_generator`, one element per batch) and a materialised plan
   (`from_tensor_slices`).
3. `--zipf`: the 2,000 long-tailed photo JPEGs of `bench_pipeline.py` at
   224x224: the filling epoch and later epochs against Keras'
   `image_dataset_from_directory` and plain `tf.data`.

The cached pipelines here are a stand-in with the builders' shape (the
live sampler through `from_generator`, one planned batch per element, one
map stage `index -> images`); once the cache is wired into the builders
they replace it. Every figure is given as wall-clock images/s and as CPU
time per image (`time.process_time`), whose ratio is less sensitive to the
other processes sharing this machine.

Run:

    python benchmarks/bench_cache.py [--rounds 7] [--mechanisms] [--zipf]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

DEFAULT_DATA_DIR = Path("/tmp/kerasgen_bench")
CACHE_SET = "jpeg600_400x300"
P, K = 4, 4


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


def image_options(size: int) -> object:
    from kerasgen_tf._args import check_image_options

    return check_image_options(
        color_mode="rgb",
        image_size=size,
        interpolation="bilinear",
        crop_to_aspect_ratio=False,
        pad_to_aspect_ratio=False,
        data_format="channels_last",
    )


def plain_pipeline(paths: list[str], size: int) -> object:
    """A plain pipeline: list -> map(decode + resize, AUTOTUNE) -> batch(16) -> prefetch."""
    import tensorflow as tf

    def load(path: object) -> object:
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return tf.image.resize(image, (size, size))

    ds = tf.data.Dataset.from_tensor_slices(paths)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(P * K).prefetch(tf.data.AUTOTUNE)


def live_plan(sampler: object) -> object:
    """The builders' plan source: each iterator plays the sampler's next epoch."""
    import tensorflow as tf

    def epoch() -> Iterable[np.ndarray]:
        for batch in sampler.iter_arrays():  # type: ignore[attr-defined]
            yield np.asarray(batch, np.int64)

    ds = tf.data.Dataset.from_generator(epoch, output_signature=tf.TensorSpec((None,), tf.int64))
    return ds.apply(tf.data.experimental.assert_cardinality(len(sampler)))  # type: ignore[arg-type]


def epoch_plan(sampler: object) -> object:
    """A live source with one Python call per epoch, not per batch.

    Each iterator calls the sampler once (a `numpy_function`) for its next
    epoch as a padded (batches, largest batch) array plus the batch sizes;
    `unbatch` and a slice give one planned batch per element. A candidate
    for the builders' live plan source (see the mechanisms table).
    """
    import tensorflow as tf

    def next_epoch(_: object) -> tuple[np.ndarray, np.ndarray]:
        batches = list(sampler.iter_arrays())  # type: ignore[attr-defined]
        sizes = np.array([len(b) for b in batches], np.int64)
        padded = np.zeros((len(batches), int(sizes.max())), np.int64)
        padded[np.arange(padded.shape[1]) < sizes[:, None]] = np.concatenate(batches)
        return padded, sizes

    def plan(_: object) -> tuple[object, object]:
        padded, sizes = tf.numpy_function(next_epoch, [_], (tf.int64, tf.int64), stateful=True)
        padded.set_shape((None, None))
        sizes.set_shape((None,))
        return padded, sizes

    ds = tf.data.Dataset.from_tensors(0).map(plan).unbatch()
    ds = ds.map(lambda row, size: row[:size])
    return ds.apply(tf.data.experimental.assert_cardinality(len(sampler)))  # type: ignore[arg-type]


def tensor_plan(sampler: object, epoch: int = 0) -> object:
    """A materialised epoch (`from_tensor_slices` of batch bounds), as `checkpointable_dataset`."""
    import tensorflow as tf

    batches = sampler.plan(epoch)  # type: ignore[attr-defined]
    sizes = np.array([len(b) for b in batches], np.int64)
    ends = np.cumsum(sizes)
    flat = tf.constant(np.concatenate(batches).astype(np.int64))
    return tf.data.Dataset.from_tensor_slices((ends - sizes, ends)).map(lambda s, e: flat[s:e])


def mapped(plan: object, load_batch: Callable[..., object]) -> object:
    import tensorflow as tf

    ds = plan.map(load_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)  # type: ignore[attr-defined]
    return ds.prefetch(tf.data.AUTOTUNE)


def uncached_loader(paths: list[str], options: object) -> Callable[..., object]:
    """The builders' decode stage without a cache (`_pipeline.load_batches`)."""
    import tensorflow as tf

    from kerasgen_tf._decode import make_image_loader

    table = tf.constant(paths)
    load = make_image_loader(options)  # type: ignore[arg-type]
    spec = tf.TensorSpec(options.image_shape, tf.float32)  # type: ignore[attr-defined]

    def load_batch(index: object) -> object:
        paths = tf.gather(table, index)
        return tf.map_fn(load, paths, fn_output_signature=spec, parallel_iterations=16)

    return load_batch


def new_cache(kind: str, paths: list[str], options: object, folder: str) -> object:
    from kerasgen_tf.decoded_cache import open_decoded_cache

    cache = "memory" if kind == "memory" else tempfile.mktemp(suffix=".kgcache", dir=folder)
    return open_decoded_cache(
        cache,
        paths,
        options.image_shape,  # type: ignore[attr-defined]
        options.interpolation,  # type: ignore[attr-defined]
        {"image_size": list(options.image_size)},  # type: ignore[attr-defined]
    )


# --------------------------------------------------------------------------- timing


def epoch(ds: Iterable[object]) -> tuple[float, float]:
    """Plays one epoch: (images per second, CPU microseconds per image)."""
    wall, cpu = time.perf_counter(), time.process_time()
    images = 0
    for batch in ds:
        x = batch[0] if isinstance(batch, tuple) else batch
        images += int(x.shape[0])  # type: ignore[attr-defined]
    return images / (time.perf_counter() - wall), (time.process_time() - cpu) / images * 1e6


class Runs:
    """Wall rates and CPU costs per pipeline, and their ratios."""

    def __init__(self) -> None:
        self.rate: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}

    def add(self, name: str, measured: tuple[float, float]) -> None:
        """Records one epoch of `name`."""
        self.rate.setdefault(name, []).append(measured[0])
        self.cpu.setdefault(name, []).append(measured[1])

    def row(self, name: str, reference: str | None, goal: str = "") -> str:
        """A markdown row: medians, and ratios to `reference` (wall rate, CPU per image)."""
        rate, cpu = statistics.median(self.rate[name]), statistics.median(self.cpu[name])
        cells = [name, f"{rate:,.0f}", f"{cpu:,.0f}", "", "", goal]
        if reference is not None:
            cells[3] = f"{rate / statistics.median(self.rate[reference]):.2f}"
            cells[4] = f"{statistics.median(self.cpu[reference]) / cpu:.2f}"
            cells[5] = f"{goal} vs {reference}" if goal else f"vs {reference}"
        runs = ", ".join(f"{v:,.0f}" for v in self.rate[name])
        return "| " + " | ".join([*cells, runs]) + " |"


HEADER = (
    "| pipeline | img/s (median) | CPU us/img | wall ratio | CPU ratio | against | runs img/s |\n"
    "|---|---|---|---|---|---|---|"
)


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# --------------------------------------------------------------------------- parts


def cache_part(root: Path, size: int, rounds: int, later: int, folder: str) -> None:
    from balanced_sampler import BalancedBatchSampler, index_directory

    paths, labels, _ = index_directory(root)
    options = image_options(size)
    sampler = BalancedBatchSampler(labels, P, K, seed=1)
    plain = plain_pipeline(paths, size)
    uncached = mapped(live_plan(sampler), uncached_loader(paths, options))
    from kerasgen_tf._decode import make_image_loader

    load = make_image_loader(options)  # type: ignore[arg-type]
    filled = {kind: new_cache(kind, paths, options, folder) for kind in ("memory", "disk")}
    cached = {
        kind: mapped(live_plan(sampler), cache.batch_loader(paths, load, decoder_key=options))  # type: ignore[attr-defined]
        for kind, cache in filled.items()
    }
    cached_epoch = mapped(
        epoch_plan(sampler), filled["memory"].batch_loader(paths, load, decoder_key=options)
    )  # type: ignore[attr-defined]
    cached_tensor = mapped(
        tensor_plan(sampler), filled["memory"].batch_loader(paths, load, decoder_key=options)
    )  # type: ignore[attr-defined]
    runs = Runs()
    for ds in (plain, uncached):
        epoch(ds)  # warm-up
    before = rss_bytes()
    start = time.perf_counter()
    epoch(cached["memory"])  # fills the memory cache; the first fill of the process
    first_fill = time.perf_counter() - start
    memory_growth = rss_bytes() - before
    epoch(cached["disk"])
    for ds in (*cached.values(), cached_tensor, cached_epoch):
        epoch(ds)
    for _ in range(rounds):
        runs.add("plain tf.data", epoch(plain))
        runs.add("uncached (stand-in)", epoch(uncached))
        for kind in ("memory", "disk"):
            fresh = new_cache(kind, paths, options, folder)
            fill = mapped(live_plan(sampler), fresh.batch_loader(paths, load, decoder_key=options))  # type: ignore[attr-defined]
            runs.add(f"{kind} cache, epoch 1 (filling)", epoch(fill))
            fresh.close()  # type: ignore[attr-defined]
        for _ in range(later):
            runs.add("memory cache, later epoch", epoch(cached["memory"]))
            runs.add("disk cache, later epoch", epoch(cached["disk"]))
            runs.add("memory cache, later epoch, tensor plan", epoch(cached_tensor))
            runs.add("memory cache, later epoch, per-epoch live plan", epoch(cached_epoch))
    before = rss_bytes()
    extra = new_cache("memory", paths, options, folder)
    epoch(mapped(live_plan(sampler), extra.batch_loader(paths, load, decoder_key=options)))  # type: ignore[attr-defined]
    second_growth = rss_bytes() - before
    layout = filled["memory"].layout  # type: ignore[attr-defined]
    print(f"\n### {len(paths)} JPEGs 400x300 -> {size}x{size}, P={P}, K={K}, {rounds} rounds\n")
    print(HEADER)
    print(runs.row("plain tf.data", None))
    print(runs.row("uncached (stand-in)", "plain tf.data"))
    print(runs.row("memory cache, epoch 1 (filling)", "uncached (stand-in)", ">= 0.9"))
    print(runs.row("disk cache, epoch 1 (filling)", "uncached (stand-in)", ">= 0.9"))
    print(runs.row("memory cache, later epoch", "plain tf.data", ">= 10"))
    print(runs.row("memory cache, later epoch, tensor plan", "plain tf.data", ">= 10"))
    print(runs.row("memory cache, later epoch, per-epoch live plan", "plain tf.data", ">= 10"))
    print(runs.row("disk cache, later epoch", "plain tf.data", "(info)"))
    print(
        f"\nThe first filling epoch of the process took {first_fill:.2f} s (it includes "
        "TensorFlow's one-time instantiation of the shared decode function, 0.1-0.4 s); "
        "the rows above are later fresh caches."
    )
    print(
        f"\nMemory cache: {layout.describe()} ({layout.row_nbytes:,} bytes per image = "
        f"N x H x W x C); resident memory grew by {memory_growth:,} bytes while filling it "
        f"= {memory_growth / len(paths):,.0f} bytes per image (the process's first fill: "
        "this includes TensorFlow's one-time allocations); filling one more memory cache "
        f"afterwards: {second_growth:,} bytes = {second_growth / len(paths):,.0f} bytes per image."
    )
    for cache in filled.values():
        cache.close()  # type: ignore[attr-defined]


def mechanisms_part(root: Path, size: int, rounds: int, folder: str) -> None:
    import tensorflow as tf

    from balanced_sampler import BalancedBatchSampler, index_directory
    from kerasgen_tf._decode import load_images

    paths, labels, _ = index_directory(root)
    sampler = BalancedBatchSampler(labels, P, K, seed=1)
    full = (load_images(paths, (size, size)) + 0.5).astype(np.uint8)
    variable = tf.Variable(full, trainable=False)
    memmap = np.memmap(os.path.join(folder, "mechanisms.bin"), np.uint8, "w+", shape=full.shape)
    memmap[:] = full
    memmap.flush()

    def gather_variable(index: object) -> object:
        return tf.cast(tf.gather(variable, index), tf.float32)

    def gather_numpy(array: np.ndarray) -> Callable[..., object]:
        def take(index: object) -> np.ndarray:
            return array[index.numpy()]  # type: ignore[attr-defined]

        def load_batch(index: object) -> object:
            batch = tf.py_function(take, [index], tf.uint8)
            batch.set_shape((None, size, size, 3))
            return tf.cast(batch, tf.float32)

        return load_batch

    def yielded() -> object:
        def epoch_images() -> Iterable[np.ndarray]:
            for batch in sampler.iter_arrays():
                yield full[batch]

        spec = tf.TensorSpec((None, size, size, 3), tf.uint8)
        ds = tf.data.Dataset.from_generator(epoch_images, output_signature=spec)
        ds = ds.map(lambda x: tf.cast(x, tf.float32), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    pipelines = {
        "plain tf.data": plain_pipeline(paths, size),
        "tf.Variable gather, live plan": mapped(live_plan(sampler), gather_variable),
        "tf.Variable gather, tensor plan": mapped(tensor_plan(sampler), gather_variable),
        "tf.Variable gather, per-epoch live plan": mapped(epoch_plan(sampler), gather_variable),
        "numpy + py_function, live plan": mapped(live_plan(sampler), gather_numpy(full)),
        "numpy + py_function, tensor plan": mapped(tensor_plan(sampler), gather_numpy(full)),
        "np.memmap + py_function, live plan": mapped(live_plan(sampler), gather_numpy(memmap)),
        "from_generator yielding images": yielded(),
    }
    runs = Runs()
    for ds in pipelines.values():
        epoch(ds)
    for _ in range(rounds):
        for name, ds in pipelines.items():
            for _ in range(1 if name == "plain tf.data" else 3):
                runs.add(name, epoch(ds))
    print(f"\n### Mechanisms for cached epochs, {len(paths)} images at {size}x{size}\n")
    print(HEADER)
    print(runs.row("plain tf.data", None))
    for name in list(pipelines)[1:]:
        print(runs.row(name, "plain tf.data"))


def zipf_part(data_dir: Path, rounds: int, later: int, folder: str) -> None:
    import keras

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_pipeline import build_photo_set

    from balanced_sampler import BalancedBatchSampler, index_directory
    from kerasgen_tf._decode import make_image_loader

    root = build_photo_set(data_dir)
    size = 224
    paths, labels, _ = index_directory(root)
    options = image_options(size)
    sampler = BalancedBatchSampler(labels, P, K, seed=1)
    load = make_image_loader(options)  # type: ignore[arg-type]
    keras_ds = keras.utils.image_dataset_from_directory(
        root, batch_size=P * K, image_size=(size, size), seed=1, verbose=False
    )
    plain = plain_pipeline(paths, size)
    uncached = mapped(live_plan(sampler), uncached_loader(paths, options))
    memory = new_cache("memory", paths, options, folder)
    cached = mapped(live_plan(sampler), memory.batch_loader(paths, load, decoder_key=options))  # type: ignore[attr-defined]
    for ds in (keras_ds, plain, uncached, cached):
        epoch(ds)
    runs = Runs()
    for _ in range(rounds):
        runs.add("keras image_dataset_from_directory", epoch(keras_ds))
        runs.add("plain tf.data", epoch(plain))
        runs.add("uncached (stand-in)", epoch(uncached))
        fresh = new_cache("memory", paths, options, folder)
        fill = mapped(live_plan(sampler), fresh.batch_loader(paths, load, decoder_key=options))  # type: ignore[attr-defined]
        runs.add("memory cache, epoch 1 (filling)", epoch(fill))
        del fresh, fill
        for _ in range(later):
            runs.add("memory cache, later epoch", epoch(cached))
    print(f"\n### Zipf photo set: {len(paths)} JPEGs (~500x375) -> 224x224, P={P}, K={K}\n")
    print(HEADER)
    print(runs.row("keras image_dataset_from_directory", None))
    print(runs.row("plain tf.data", "keras image_dataset_from_directory"))
    print(runs.row("uncached (stand-in)", "keras image_dataset_from_directory"))
    print(runs.row("memory cache, epoch 1 (filling)", "uncached (stand-in)", ">= 0.9"))
    print(runs.row("memory cache, epoch 1 (filling)", "keras image_dataset_from_directory"))
    print(runs.row("memory cache, later epoch", "keras image_dataset_from_directory"))
    print(runs.row("memory cache, later epoch", "plain tf.data"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--rounds", type=int, default=7, help="rounds of alternating epochs")
    parser.add_argument("--later", type=int, default=3, help="cached epochs per round")
    parser.add_argument("--size", type=int, default=128, help="output size of part 1")
    parser.add_argument("--mechanisms", action="store_true", help="also compare mechanisms")
    parser.add_argument("--zipf", action="store_true", help="also the 224x224 zipf photo set")
    parser.add_argument("--only", choices=("mechanisms", "zipf"), default=None)
    args = parser.parse_args(argv)
    print(f"Command: {shlex.join([os.path.basename(sys.executable), *sys.argv])}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = build_jpeg_set(args.data_dir)

    import tensorflow as tf

    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs; data in {args.data_dir}")
    with tempfile.TemporaryDirectory(prefix="kerasgen_cache_bench_") as folder:
        if args.only is None:
            cache_part(root, args.size, args.rounds, args.later, folder)
        if args.mechanisms or args.only == "mechanisms":
            mechanisms_part(root, args.size, args.rounds, folder)
        if args.zipf or args.only == "zipf":
            zipf_part(args.data_dir, args.rounds, args.later, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
