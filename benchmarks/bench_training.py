"""Training benchmark: balanced P x K batches against random ones, same training.

Command (from the repository root; the MPerClassSampler arm needs torch and
pytorch-metric-learning, and is left out without them):

    python benchmarks/bench_training.py [--seeds 3] [--epochs 40] [--quick] [--out results.json]

Data: `examples/photo_identities.py` (no download): 150 training identities cut from the
two photos scikit-learn ships (long-tailed, 6-40 images each, 32x32 JPEGs) and 60 held-out
identities from other parts of the photos (class-disjoint). Every arm trains the same
network (`photo_identities.embedding_network`, 64-d unit embeddings) from the same initial
weights (per seed) with the same loss (`kerasgen_tf.losses.TripletSemiHardLoss`, margin
MARGIN), optimizer (Adam, LEARNING_RATE) and number of gradient steps (epochs x
ceil(N / (P*K)) steps); only the batches differ (the ARMS table):

- keras-random: `keras.utils.image_dataset_from_directory(batch_size=P*K, shuffle=True)`;
- kerasgen-exhaustive: `balanced_image_dataset_from_directory(safe_triplet=False)`;
- kerasgen-fixed: `balanced_image_dataset_from_directory(safe_triplet=True)`;
- pml-mperclass: pytorch-metric-learning's `MPerClassSampler(m=K, batch_size=P*K)`,
  decoded by a tf.data pipeline like the others;
- hard-0.5, hard-1.0: hard-class batches: the fixed sampler (same labels, seed, quotas and
  images as kerasgen-fixed) with `hard_batch_fraction` 0.5 or 1.0, its class-neighbour
  table recomputed from the model at the end of every epoch (after `--warmup-epochs`) by
  `kerasgen_tf.hard_classes.ClassNeighborRefresh` (`--neighbors` M, cosine centroids of
  every training image) and dealt from the next epoch on. Until the first table, and in
  the other batches, they play kerasgen-fixed's batches.

No arm has settings of its own. After training, Recall@1 and MAP@R of the held-out
identities (`kerasgen_tf.evaluation.retrieval_metrics`, each image querying the others);
mean +- sd over the seeds. Seconds per epoch: median over the epochs of `fit`, the data
decoded from JPEG every epoch by each arm's own pipeline. Per batch (training_stats.py):
classes in the batch, the fraction of samples with a positive and a negative in it, and
the fraction of its valid triplets with a non-zero loss, reported over the first, middle
and last 20 % of the steps. Hard arms: the share of pure hard batches and of the slots
taken from the anchors' lists (`hard_batch_stats`), averaged over the epochs with a table.

To add an arm (e.g. hard-class batches), add an `Arm` to ARMS: a function from the shared
`Setup` to the infinite training dataset and any callbacks it needs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from kerasgen.native_stderr import quiet_native_logs_until_exit

quiet_native_logs_until_exit()  # TensorFlow's C++ log lines

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from photo_identities import IMAGE_SIZE, embedding_network, write_identities  # noqa: E402
from training_stats import STATISTICS, BatchLog, batch_statistics  # noqa: E402

from balanced_sampler import BalancedBatchSampler, index_directory  # noqa: E402
from kerasgen_tf import balanced_image_dataset_from_directory  # noqa: E402
from kerasgen_tf.evaluation import embed_dataset, retrieval_metrics, sequential_dataset  # noqa: E402
from kerasgen_tf.hard_classes import ClassNeighborRefresh  # noqa: E402
from kerasgen_tf.losses import TripletSemiHardLoss  # noqa: E402

# Every run builds a new model, whose predict function TensorFlow traces anew and then
# warns about "retracing"; nothing to act on here.
tf.get_logger().setLevel("ERROR")

P, K = 8, 4
MARGIN = 0.2
LEARNING_RATE = 1e-3
DEFAULT_DATA_DIR = Path("/tmp/kerasgen_bench/identities")


@dataclasses.dataclass(frozen=True)
class Setup:
    """What every arm of one run shares."""

    train_dir: Path
    seed: int
    num_classes_per_batch: int = P
    num_images_per_class: int = K
    image_size: int = IMAGE_SIZE
    num_neighbors: int | None = None  # hard arms: M (None: ClassNeighborRefresh's default)
    refresh_every: int = 1
    warmup_epochs: int = 1

    @property
    def batch_size(self) -> int:
        """P * K."""
        return self.num_classes_per_batch * self.num_images_per_class


@dataclasses.dataclass
class ArmInput:
    """An arm's training data: a dataset of (images, labels), its callbacks, its figures.

    The dataset is infinite, or one epoch per pass (fit makes a new iterator each epoch).
    `report()` returns arm-specific figures after training (kept in the JSON results).
    """

    dataset: tf.data.Dataset
    callbacks: list[keras.callbacks.Callback] = dataclasses.field(default_factory=list)
    report: Callable[[], dict[str, Any]] = lambda: {}


@dataclasses.dataclass(frozen=True)
class Arm:
    """One way of making training batches."""

    name: str
    description: str
    make: Callable[[Setup], ArmInput]
    missing: Callable[[], str | None] = lambda: None  # why the arm cannot run, if it cannot


def _keras_random(setup: Setup) -> ArmInput:
    dataset = keras.utils.image_dataset_from_directory(
        setup.train_dir,
        batch_size=setup.batch_size,
        image_size=(setup.image_size, setup.image_size),
        shuffle=True,
        seed=setup.seed,
        verbose=False,
    )
    return ArmInput(dataset.repeat())


def _kerasgen(safe_triplet: bool) -> Callable[[Setup], ArmInput]:
    def make(setup: Setup) -> ArmInput:
        dataset = balanced_image_dataset_from_directory(
            setup.train_dir,
            num_classes_per_batch=setup.num_classes_per_batch,
            num_images_per_class=setup.num_images_per_class,
            image_size=setup.image_size,
            safe_triplet=safe_triplet,
            seed=setup.seed,
            verbose=False,
        )
        return ArmInput(dataset.repeat())  # every pass is the sampler's next epoch

    return make


def index_batches_dataset(
    setup: Setup, epoch_batches: Callable[[np.ndarray], list[np.ndarray]]
) -> tf.data.Dataset:
    """An infinite dataset decoding the batches `epoch_batches(labels)` yields per epoch.

    Files and labels in Keras' order (`balanced_sampler.index_directory`); images decoded
    and resized as Keras does (`decode_image`, bilinear `resize`).
    """
    _, labels, _ = index_directory(setup.train_dir)

    def batches() -> Any:
        while True:
            yield from (np.asarray(batch, dtype=np.int64) for batch in epoch_batches(labels))

    indices = tf.data.Dataset.from_generator(
        batches, output_signature=tf.TensorSpec((None,), tf.int64)
    )
    return _decoded(setup, indices)


def sampler_batches_dataset(setup: Setup, sampler: BalancedBatchSampler) -> tf.data.Dataset:
    """One epoch of `sampler` per pass (as the balanced datasets: a new iterator per epoch).

    The sampler is asked for an epoch when a pass's first batch is requested, so a table
    given at the end of an epoch deals the next one. Decoded as `index_batches_dataset`.
    """

    def batches() -> Any:
        yield from sampler.iter_arrays()

    indices = tf.data.Dataset.from_generator(
        batches, output_signature=tf.TensorSpec((sampler.batch_size,), tf.int64)
    )
    indices = indices.apply(tf.data.experimental.assert_cardinality(len(sampler)))
    return _decoded(setup, indices)


def _decoded(setup: Setup, indices: tf.data.Dataset) -> tf.data.Dataset:
    """Batches of images and labels for a dataset of index vectors into Keras' file order."""
    paths, labels, _ = index_directory(setup.train_dir)
    path_table = tf.constant(paths)
    label_table = tf.constant(labels.astype(np.int32))
    size = (setup.image_size, setup.image_size)

    def load(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        def one(path: tf.Tensor) -> tf.Tensor:
            image = tf.io.decode_image(tf.io.read_file(path), 3, expand_animations=False)
            return tf.image.resize(image, size)

        images = tf.map_fn(
            one,
            tf.gather(path_table, index),
            fn_output_signature=tf.TensorSpec((*size, 3), tf.float32),
        )
        return images, tf.gather(label_table, index)

    return indices.map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _pml_missing() -> str | None:
    try:
        import pytorch_metric_learning  # noqa: F401
    except ImportError:
        return "pytorch-metric-learning is not installed"
    return None


def _pml_mperclass(setup: Setup) -> ArmInput:
    import torch
    from pytorch_metric_learning.samplers import MPerClassSampler

    torch.manual_seed(setup.seed)

    def epoch_batches(labels: np.ndarray) -> list[np.ndarray]:
        length = len(labels) // setup.batch_size * setup.batch_size
        sampler = MPerClassSampler(
            labels, m=setup.num_images_per_class, batch_size=setup.batch_size,
            length_before_new_iter=length,
        )
        flat = np.fromiter(iter(sampler), dtype=np.int64)
        return list(flat.reshape(-1, setup.batch_size))

    return ArmInput(index_batches_dataset(setup, epoch_batches))


class HardBatchLog(keras.callbacks.Callback):  # type: ignore[misc]
    """The sampler's hard-batch figures of every epoch played (list before the refresh)."""

    def __init__(self, sampler: BalancedBatchSampler) -> None:
        super().__init__()
        self.sampler = sampler
        self.epochs: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:  # noqa: D102
        stats = self.sampler.hard_batch_stats(self.sampler.epoch - 1)
        if stats is None:
            return
        hard = stats.is_hard
        others = (stats.listed + stats.forced + stats.filled)[hard].sum()
        self.epochs.append({
            "hard": float(hard.mean()),
            "pure": float(stats.is_pure[hard].mean()),
            "listed": float(stats.listed[hard].sum() / others),
        })


def _hard(fraction: float) -> Callable[[Setup], ArmInput]:
    def make(setup: Setup) -> ArmInput:
        # The dataset's files, labels and decoding options for the embedding pass; its
        # own sampler is not used. Training plays `sampler`, with the same labels.
        files = balanced_image_dataset_from_directory(
            setup.train_dir,
            num_classes_per_batch=setup.num_classes_per_batch,
            num_images_per_class=setup.num_images_per_class,
            image_size=setup.image_size,
            safe_triplet=True,
            shuffle=False,
            verbose=False,
        )
        sampler = BalancedBatchSampler(
            files.sampler.labels, setup.num_classes_per_batch, setup.num_images_per_class,
            safe_triplet=True, seed=setup.seed, hard_batch_fraction=fraction,
        )
        refresh = ClassNeighborRefresh(
            files, sampler=sampler, num_neighbors=setup.num_neighbors,
            every=setup.refresh_every, warmup_epochs=setup.warmup_epochs, batch_size=256,
        )
        log = HardBatchLog(sampler)

        def report() -> dict[str, Any]:
            return {
                "num_neighbors": refresh.num_neighbors,
                "refreshes": [attrs.asdict(r) for r in refresh.refreshes],
                "hard_batches": log.epochs,
            }

        return ArmInput(sampler_batches_dataset(setup, sampler), [log, refresh], report)

    return make


ARMS: dict[str, Arm] = {
    arm.name: arm
    for arm in (
        Arm("keras-random", "Keras image_dataset_from_directory, random batches of P*K",
            _keras_random),
        Arm("kerasgen-exhaustive", "ours, safe_triplet=False (every image once per epoch)",
            _kerasgen(False)),
        Arm("kerasgen-fixed", "ours, safe_triplet=True (exact P x K)", _kerasgen(True)),
        Arm("pml-mperclass", "pytorch-metric-learning MPerClassSampler(m=K)", _pml_mperclass,
            _pml_missing),
        Arm("hard-0.5", "ours, fixed, half the batches class neighbourhoods (refreshed)",
            _hard(0.5)),
        Arm("hard-1.0", "ours, fixed, every batch a class neighbourhood (refreshed)",
            _hard(1.0)),
    )
}
DEFAULT_ARMS = ("keras-random", "kerasgen-exhaustive", "kerasgen-fixed", "pml-mperclass")
"""The arms run without --arms (issue 12's table); --arms picks others, e.g. the hard ones."""


class EpochTimer(keras.callbacks.Callback):  # type: ignore[misc]
    """Wall seconds of every epoch of `fit`."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:  # noqa: D102
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:  # noqa: D102
        self.seconds.append(time.perf_counter() - self._start)


def heldout_arrays(heldout_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The held-out images, each once, decoded once (as float32 0..255) with labels."""
    dataset = balanced_image_dataset_from_directory(
        heldout_dir, num_classes_per_batch=P, num_images_per_class=K,
        image_size=IMAGE_SIZE, shuffle=False, verbose=False,
    )
    images, labels = sequential_dataset(dataset, batch_size=256)
    return np.concatenate(list(images.as_numpy_iterator())), labels


def heldout_metrics(model: keras.Model, heldout: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    embeddings, labels = embed_dataset(model, heldout, batch_size=256)
    return retrieval_metrics(embeddings, labels)


def run_arm(
    arm: Arm, setup: Setup, heldout: tuple[np.ndarray, np.ndarray], epochs: int,
    steps_per_epoch: int,
) -> dict[str, Any]:
    """Trains from the seed's initial weights on the arm's batches; returns its figures."""
    keras.utils.set_random_seed(setup.seed)  # same initial weights in every arm
    model = embedding_network()
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss=TripletSemiHardLoss(MARGIN),
        metrics=batch_statistics(MARGIN),
    )
    untrained = heldout_metrics(model, heldout)
    arm_input = arm.make(setup)
    log, timer = BatchLog(), EpochTimer()
    model.fit(
        arm_input.dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, shuffle=False,
        verbose=0, callbacks=[*arm_input.callbacks, log, timer],
    )
    stats = log.arrays()
    return {
        "arm": arm.name,
        "seed": setup.seed,
        "untrained": untrained,
        "trained": heldout_metrics(model, heldout),
        "seconds_per_epoch": statistics.median(timer.seconds[1:] or timer.seconds),
        "batches": {key: stats[key].tolist() for key in STATISTICS},
        "arm_report": arm_input.report(),
    }


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} +- {statistics.stdev(values):.3f}"


def _phase(values: list[float], phase: int) -> np.ndarray:
    """The first (0), middle (1) or last (2) 20 % of a run's per-step values."""
    n = len(values)
    width = max(1, n // 5)
    first = (0, (n - width) // 2, n - width)[phase]
    return np.asarray(values[first : first + width], dtype=np.float64)


def summary(results: list[dict[str, Any]], arms: list[str]) -> str:
    """The markdown table of the runs."""
    lines = [
        "| batches | held-out Recall@1 | held-out MAP@R | s / epoch | classes / batch "
        "| anchors with a positive and a negative | triplets with non-zero loss, first / "
        "middle / last 20 % of steps | hard batches pure | hard-batch slots from the lists |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    untrained = [r for r in results if r["arm"] == arms[0]]
    lines.append(
        f"| untrained network | {_mean_sd([r['untrained']['recall@1'] for r in untrained])} "
        f"| {_mean_sd([r['untrained']['map@r'] for r in untrained])} | | | | | | |"
    )
    for name in arms:
        runs = [r for r in results if r["arm"] == name]
        batches = {key: np.concatenate([r["batches"][key] for r in runs]) for key in STATISTICS}
        active = [r["batches"]["active_triplets"] for r in runs]
        phases = " / ".join(
            f"{np.concatenate([_phase(values, p) for values in active]).mean():.3f}"
            for p in range(3)
        )
        hard = [e for r in runs for e in r.get("arm_report", {}).get("hard_batches", [])]
        pure = f"{np.mean([e['pure'] for e in hard]):.2f}" if hard else ""
        listed = f"{np.mean([e['listed'] for e in hard]):.2f}" if hard else ""
        lines.append(
            f"| {name} | {_mean_sd([r['trained']['recall@1'] for r in runs])} "
            f"| {_mean_sd([r['trained']['map@r'] for r in runs])} "
            f"| {statistics.median(r['seconds_per_epoch'] for r in runs):.2f} "
            f"| {batches['classes'].mean():.1f} | {batches['valid_anchors'].mean():.2f} "
            f"| {phases} | {pure} | {listed} |"
        )
    return "\n".join(lines)


def paired_differences(results: list[dict[str, Any]], arms: list[str], baseline: str) -> str:
    """Each arm minus `baseline`, seed by seed (same initial weights): mean +- sd."""
    lines = []
    base = {r["seed"]: r["trained"] for r in results if r["arm"] == baseline}
    for name in arms:
        if name == baseline:
            continue
        runs = [r for r in results if r["arm"] == name and r["seed"] in base]
        if not runs:
            continue
        figures = []
        for metric in ("recall@1", "map@r"):
            deltas = [r["trained"][metric] - base[r["seed"]][metric] for r in runs]
            better = sum(delta > 0 for delta in deltas)
            figures.append(
                f"{metric} {statistics.mean(deltas):+.3f}"
                + (f" +- {statistics.stdev(deltas):.3f}" if len(deltas) > 1 else "")
                + f" (higher in {better} of {len(deltas)} seeds)"
            )
        lines.append(f"{name} - {baseline}: " + ", ".join(figures))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--quick", action="store_true",
                        help="one seed, 8 epochs: a smoke run of a few minutes")
    parser.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=None)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=None, help="save every run as JSON")
    parser.add_argument("--neighbors", type=int, default=None,
                        help="hard arms: neighbours per class (default: ClassNeighborRefresh's)")
    parser.add_argument("--refresh-every", type=int, default=1, help="hard arms: refresh cadence")
    parser.add_argument("--warmup-epochs", type=int, default=1,
                        help="hard arms: epochs of plain batches before the first table")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs = 1, 8
    start = time.perf_counter()
    done = args.data_dir / ".complete"
    train_dir, heldout_dir = args.data_dir / "train", args.data_dir / "heldout"
    if not done.exists():
        write_identities(args.data_dir)
        done.touch()
    arms = []
    for name in args.arms or DEFAULT_ARMS:
        reason = ARMS[name].missing()
        if reason:
            print(f"Leaving out {name}: {reason}.")
        else:
            arms.append(name)
    heldout = heldout_arrays(heldout_dir)
    num_train = len(index_directory(train_dir)[0])
    steps = math.ceil(num_train / (P * K))
    print(f"{num_train} training images, {len(heldout[1])} held-out; P={P}, K={K}; "
          f"{args.epochs} epochs x {steps} steps; seeds 0..{args.seeds - 1}")
    results = []
    for seed in range(args.seeds):  # arms alternate within a seed: machine noise hits all
        for name in arms:
            setup = Setup(train_dir, seed, num_neighbors=args.neighbors,
                          refresh_every=args.refresh_every, warmup_epochs=args.warmup_epochs)
            result = run_arm(ARMS[name], setup, heldout, args.epochs, steps)
            results.append(result)
            print(f"seed {seed} {name}: Recall@1 {result['trained']['recall@1']:.3f}, "
                  f"MAP@R {result['trained']['map@r']:.3f} "
                  f"({result['seconds_per_epoch']:.2f} s / epoch)", flush=True)
    print()
    print(summary(results, arms))
    if "kerasgen-fixed" in arms and len(arms) > 1:
        print()
        print(paired_differences(results, arms, "kerasgen-fixed"))
    print(f"\nTotal {time.perf_counter() - start:.0f} s.")
    if args.out:
        args.out.write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
