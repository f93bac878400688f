"""Decoding on tf.data service workers against decoding in the training process.

Plays epochs of the 2,000-photo set of `bench_pipeline.py` (built once
under `--data-dir`) three ways, in one run, taking turns epoch by epoch:

- local: `balanced_image_dataset_from_directory(...)` itself;
- `data_service_dataset(ds, dispatcher, num_epochs=1, first_epoch=e)` with
  a dispatcher in this process and N workers, each a process of its own
  (`--workers 1 2`: one dispatcher per N) on loopback.

Every service epoch includes registering it and starting its job. A second
table plays all the epochs in one job (`num_epochs=E`, as `fit` does with
one `data_service_dataset` for the whole run) and times each epoch's
batches after the first epoch, against the local pipeline's epochs played
just before. Workers that run on the same cores as the consumer cannot be
faster than decoding locally: this measures the service's overhead (a
decoded batch is serialised, sent and received). Scaling shows on a host
with more cores, or with workers on other machines:

    python benchmarks/bench_data_service.py --workers 1 2 4 8 --epochs 5

(and see the README, "Scaling out", to start the dispatcher and workers on
other machines).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_pipeline import BATCH_K, BATCH_P, DEFAULT_DATA_DIR, build_photo_set, epoch_rate


def _worker(dispatcher_address: str) -> None:
    """Runs one tf.data service worker until killed."""
    import tensorflow as tf

    service = tf.data.experimental.service
    worker = service.WorkerServer(
        service.WorkerConfig(dispatcher_address=dispatcher_address, port=0)
    )
    print("ready", flush=True)
    worker.join()


def _epoch_rates_in_one_job(dataset: object, batches_per_epoch: int) -> list[float]:
    """Images per second of each epoch of `dataset` (epochs of `batches_per_epoch` batches)."""
    rates, images = [], 0
    start = time.perf_counter()
    for batches, (images_batch, _) in enumerate(dataset, start=1):  # type: ignore[call-overload]
        images += int(images_batch.shape[0])
        if batches % batches_per_epoch == 0:
            now = time.perf_counter()
            rates.append(images / (now - start))
            images, start = 0, now
    return rates


def _print_rates(rates: dict[object, list[float]]) -> None:
    local = rates["local"]
    print("| pipeline | median img/s | ratio to local | runs |")
    print("| --- | --- | --- | --- |")
    for name, runs in rates.items():
        label = "local" if name == "local" else f"tf.data service, {name} loopback worker(s)"
        ratio = statistics.median(runs) / statistics.median(local)
        print(
            f"| {label} | {statistics.median(runs):.0f} | {ratio:.2f} | "
            + ", ".join(f"{r:.0f}" for r in runs)
            + " |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per setting")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument(
        "--compression", choices=["AUTO", "none"], default="none", help="of the service"
    )
    parser.add_argument("--worker-of", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.worker_of:
        _worker(args.worker_of)
        return 0

    print(f"Command: {shlex.join([os.path.basename(sys.executable), *sys.argv])}")
    photos = build_photo_set(args.data_dir)

    import tensorflow as tf

    from kerasgen_tf import balanced_image_dataset_from_directory
    from kerasgen_tf.distribute import data_service_dataset

    service = tf.data.experimental.service
    compression = None if args.compression == "none" else "AUTO"
    size = args.image_size
    ds = balanced_image_dataset_from_directory(
        photos, BATCH_P, BATCH_K, image_size=(size, size), seed=1, verbose=False
    )
    print(
        f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs; {len(ds.file_paths)} JPEGs, "
        f"P={BATCH_P}, K={BATCH_K}, {size}x{size}, compression={compression}; workers are "
        "processes on this machine (loopback)."
    )
    dispatchers, workers = {}, []
    try:
        for count in args.workers:
            dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
            address = dispatcher.target.split("://")[1]
            for _ in range(count):
                proc = subprocess.Popen(
                    [sys.executable, __file__, "--worker-of", address],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                workers.append(proc)
                assert proc.stdout is not None
                proc.stdout.readline()  # "ready"
            dispatchers[count] = dispatcher

        settings = ["local", *dispatchers]
        rates: dict[object, list[float]] = {name: [] for name in settings}
        for epoch in range(args.epochs + 1):  # epoch 0 warms up every setting
            for name in settings:
                if name == "local":
                    dataset = ds
                else:
                    dataset = data_service_dataset(
                        ds,
                        dispatchers[name].target,  # type: ignore[index]
                        num_epochs=1,
                        first_epoch=epoch,
                        compression=compression,
                    )
                rate = epoch_rate(dataset)[0]  # type: ignore[arg-type]
                if epoch:
                    rates[name].append(rate)
        # One job for all the epochs: the first epoch (job start) is left out.
        in_job: dict[object, list[float]] = {}
        first = args.epochs + 1
        for name in settings:
            if name == "local":
                in_job[name] = [epoch_rate(ds)[0] for _ in range(args.epochs)]
                continue
            dataset = data_service_dataset(
                ds,
                dispatchers[name].target,  # type: ignore[index]
                num_epochs=args.epochs + 1,
                first_epoch=first,
                compression=compression,
            )
            in_job[name] = _epoch_rates_in_one_job(dataset, len(ds))[1:]
    finally:
        for proc in workers:
            proc.kill()
            proc.wait()

    print()
    print("A new service job per epoch (every epoch includes starting its job):")
    _print_rates(rates)
    print()
    print(f"One service job of {args.epochs + 1} epochs, its first epoch left out; local: "
          f"{args.epochs} epochs played before the jobs:")
    _print_rates(in_job)
    return 0


if __name__ == "__main__":
    sys.exit(main())
