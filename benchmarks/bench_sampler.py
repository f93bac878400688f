"""Sampler benchmark: construction, planning, memory and plan quality at scale.

Command (from the repository root):

    python benchmarks/bench_sampler.py [--repeats 5] [--peers]

Long-tailed labels: class c has a share proportional to 1 / (c + 1) (Zipf,
exponent 1), every class at least one sample. Sizes: (a) 100,000 samples over
1,000 classes, (b) 1,000,000 samples over 100,000 classes; P=32, K=4.
Times are medians of `--repeats` runs (planning: a different epoch each run,
nothing cached). Peak memory is what tracemalloc sees numpy allocate while
constructing and planning one epoch, per sample. With `--peers`, the same is
measured for pytorch-metric-learning's MPerClassSampler where it is installed
(its epoch on (b) takes minutes).
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

from balanced_sampler import BalancedBatchSampler, plan_stats
from balanced_sampler.stats import coverage_ceiling

P, K = 32, 4
SIZES = {"a": (100_000, 1_000), "b": (1_000_000, 100_000)}


def zipf_labels(num_samples: int, num_classes: int) -> np.ndarray:
    """Labels with Zipf (1 / rank) class sizes, at least one sample a class, shuffled."""
    share = 1.0 / np.arange(1, num_classes + 1)
    sizes = np.maximum(1, np.floor(share / share.sum() * num_samples)).astype(np.int64)
    sizes[0] += num_samples - sizes.sum()
    labels = np.repeat(np.arange(num_classes), sizes)
    return labels[np.random.default_rng(0).permutation(num_samples)]


def median_time(fn: Callable[[int], object], repeats: int) -> float:
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_bytes(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del result
    return peak


def ours(labels: np.ndarray, safe_triplet: bool, repeats: int) -> dict[str, float | str]:
    def build(_: int = 0) -> BalancedBatchSampler:
        return BalancedBatchSampler(labels, P, K, safe_triplet=safe_triplet, seed=1)

    construct = median_time(build, repeats)
    sampler = build()
    plan = median_time(lambda i: sampler._shard_batches(100 + i), repeats)
    memory = peak_bytes(lambda: build()._shard_batches(0))
    stats = [sampler.stats(e) for e in range(3)]
    sizes = np.bincount(labels)
    ceiling = coverage_ceiling(sizes, sampler.global_batches, P, K) if safe_triplet else 1.0
    return {
        "sampler": f"kerasgen {'fixed' if safe_triplet else 'exhaustive'}",
        "construct_s": construct,
        "plan_epoch_s": plan,
        "peak_bytes_per_sample": memory / len(labels),
        "batches": len(sampler),
        "coverage": statistics.mean(s.coverage for s in stats),
        "ceiling": ceiling,
        "exact_pxk": statistics.mean(s.exact_pxk_fraction for s in stats),
        "triplet_valid": statistics.mean(s.triplet_valid_fraction for s in stats),
    }


def mperclass(labels: np.ndarray, repeats: int) -> dict[str, float | str] | None:
    try:
        from pytorch_metric_learning.samplers import MPerClassSampler
    except ImportError:
        return None
    batch = P * K
    length = len(labels) // batch * batch

    def build(_: int = 0) -> MPerClassSampler:
        return MPerClassSampler(labels, m=K, batch_size=batch, length_before_new_iter=length)

    construct = median_time(build, repeats)
    sampler = build()
    epochs: list[list[int]] = []
    plan = median_time(lambda _: epochs.append(list(iter(sampler))), repeats)
    memory = peak_bytes(lambda: list(iter(build())))
    stats = [
        plan_stats(np.asarray(e).reshape(-1, batch), labels, P, K) for e in epochs[:3]
    ]
    return {
        "sampler": "pml MPerClassSampler",
        "construct_s": construct,
        "plan_epoch_s": plan,
        "peak_bytes_per_sample": memory / len(labels),
        "batches": length // batch,
        "coverage": statistics.mean(s.coverage for s in stats),
        "ceiling": float("nan"),
        "exact_pxk": statistics.mean(s.exact_pxk_fraction for s in stats),
        "triplet_valid": statistics.mean(s.triplet_valid_fraction for s in stats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peers", action="store_true", help="also time MPerClassSampler")
    parser.add_argument("--sizes", default="ab", help="which sizes to run: a, b or ab")
    args = parser.parse_args()
    print(f"# python benchmarks/bench_sampler.py --repeats {args.repeats}"
          f"{' --peers' if args.peers else ''} --sizes {args.sizes}")
    print(f"# P={P} K={K}, Zipf labels; times are medians of {args.repeats} runs")
    header = (
        f"{'size':<4} {'sampler':<24} {'construct s':>11} {'plan s':>8} {'B/sample':>9} "
        f"{'batches':>8} {'coverage':>9} {'ceiling':>8} {'exact PxK':>9} {'triplet ok':>10}"
    )
    print(header)
    for size in args.sizes:
        n, c = SIZES[size]
        labels = zipf_labels(n, c)
        rows = [ours(labels, False, args.repeats), ours(labels, True, args.repeats)]
        if args.peers:
            peer = mperclass(labels, 1 if size == "b" else args.repeats)
            if peer is None:
                print("# pytorch-metric-learning is not installed: no MPerClassSampler row")
            else:
                rows.append(peer)
        for row in rows:
            print(
                f"{size:<4} {row['sampler']:<24} {row['construct_s']:>11.3f} "
                f"{row['plan_epoch_s']:>8.3f} {row['peak_bytes_per_sample']:>9.1f} "
                f"{row['batches']:>8} {row['coverage']:>9.4f} {row['ceiling']:>8.4f} "
                f"{row['exact_pxk']:>9.3f} {row['triplet_valid']:>10.4f}"
            )


if __name__ == "__main__":
    main()
