"""Sampler benchmark: construction, planning, memory and plan quality at scale.

Commands (from the repository root):

    python benchmarks/bench_sampler.py --repeats 5              # sizes a and b
    python benchmarks/bench_sampler.py --repeats 3 --sizes c    # 10M samples / 1M classes
    python benchmarks/bench_sampler.py --repeats 3 --peers      # + MPerClassSampler
    python benchmarks/bench_sampler.py --layout                 # exhaustive layouts only
    python benchmarks/bench_sampler.py --neighbors --repeats 9  # hard-class batches

Long-tailed labels: class c has a share proportional to 1 / (c + 1) (Zipf,
exponent 1), every class at least one sample. Sizes: (a) 100,000 samples over
1,000 classes, (b) 1,000,000 over 100,000, (c) 10,000,000 over 1,000,000;
P=32, K=4. Times are medians of `--repeats` runs (planning: a different epoch
each run, nothing cached). Peak memory is what tracemalloc sees numpy allocate
while constructing and planning one epoch, per sample. With `--peers`, the same
is measured for pytorch-metric-learning's MPerClassSampler where it is
installed (its epoch on (b) takes minutes).

`--layout` prints, for the exhaustive mode on the label sets of issue 11
(uniform sizes 5-50 over 500 classes with P=16, Zipf 2,000 / 200 with P=8, and
(a), (b), (c) with P=32; K=4), the exact P x K batches against two bounds:
B* with floor(n_c / K) full groups per class (the issue's bound) and B* with
the groups the cut rule can make (a class of K q + 1 images has q - 1 full
groups: no group may hold a single image); then the triplet-valid fraction,
the classes per tail batch (batches that are not exact P x K) and the batches
holding a single class, for each `exhaustive_priority`. Run it with
PYTHONPATH pointing at another checkout to measure that code (older samplers
without `exhaustive_priority` give one row).
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time
import tracemalloc
import warnings
from collections.abc import Callable

import numpy as np

from balanced_sampler import BalancedBatchSampler, plan_stats
from balanced_sampler.stats import coverage_ceiling

P, K = 32, 4
SIZES = {"a": (100_000, 1_000), "b": (1_000_000, 100_000), "c": (10_000_000, 1_000_000)}
HAS_PRIORITY = "exhaustive_priority" in inspect.signature(BalancedBatchSampler).parameters


def zipf_sizes(num_samples: int, num_classes: int) -> np.ndarray:
    """Zipf (1 / rank) class sizes, at least one sample a class, summing to num_samples."""
    share = 1.0 / np.arange(1, num_classes + 1)
    sizes = np.maximum(1, np.floor(share / share.sum() * num_samples)).astype(np.int64)
    sizes[0] += num_samples - sizes.sum()
    return sizes


def zipf_labels(num_samples: int, num_classes: int) -> np.ndarray:
    """Labels with Zipf class sizes, shuffled."""
    labels = np.repeat(np.arange(num_classes), zipf_sizes(num_samples, num_classes))
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
    plan = median_time(lambda i: sampler.plan(100 + i), repeats)
    memory = peak_bytes(lambda: build().plan(0))
    stats = [sampler.stats(e) for e in range(3)]
    sizes = np.bincount(labels)
    ceiling = (
        coverage_ceiling(
            sizes, sampler.global_batches, num_classes_per_batch=P, num_images_per_class=K
        )
        if safe_triplet
        else 1.0
    )
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
    stats = [plan_stats(np.asarray(e).reshape(-1, batch), labels, P, K) for e in epochs[:3]]
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


def b_star(full: np.ndarray, p: int) -> int:
    """The largest B with sum(min(full, B)) >= p * B."""
    ordered = np.sort(full)
    prefix = np.concatenate([[0], np.cumsum(ordered)])
    low, high = 0, int(full.sum()) // p
    while low < high:
        b = (low + high + 1) // 2
        below = int(np.searchsorted(ordered, b))
        if prefix[below] + b * (len(ordered) - below) >= p * b:
            low = b
        else:
            high = b - 1
    return low


def layout_rows(name: str, sizes: np.ndarray, p: int, k: int) -> None:
    labels = np.repeat(np.arange(len(sizes)), sizes)
    q, r = np.divmod(sizes, k)
    by_floor = b_star(q, p)
    by_cut = b_star(np.where((r == 1) & (q >= 1), q - 1, q), p)
    for priority in ("exact", "spread") if HAS_PRIORITY else (None,):
        kwargs = {} if priority is None else {"exhaustive_priority": priority}
        sampler = BalancedBatchSampler(labels, p, k, seed=1, **kwargs)
        plan = sampler.plan(0)
        stats = plan_stats(plan, labels, p, k)
        batch_of = np.repeat(np.arange(len(plan)), [len(b) for b in plan])
        pairs = np.unique(batch_of * (len(sizes) + 1) + labels[np.concatenate(plan)])
        classes = np.bincount(pairs // (len(sizes) + 1), minlength=len(plan))
        exact = _exact_mask(plan, labels, p, k, classes)
        tail = classes[~exact]
        print(
            f"{name:<26} {priority or 'before'!s:<7} {len(plan):>8} {by_floor:>8} {by_cut:>8} "
            f"{int(exact.sum()):>7} {exact.sum() / max(by_floor, 1):>7.3f} "
            f"{stats.triplet_valid_fraction:>8.4f} "
            f"{(tail.mean() if tail.size else float('nan')):>9.2f} "
            f"{int((classes == 1).sum()):>7}"
        )


def _exact_mask(plan, labels, p, k, classes) -> np.ndarray:  # type: ignore[no-untyped-def]
    sizes = np.array([len(b) for b in plan])
    full = (sizes == p * k) & (classes == p)
    out = np.zeros(len(plan), dtype=bool)
    for i in np.flatnonzero(full):
        out[i] = bool(np.all(np.unique(labels[plan[i]], return_counts=True)[1] == k))
    return out


def layouts(sizes_arg: str) -> None:
    print("# exhaustive layouts; K=4; B*: floor = issue's bound, cut = with the cut rule")
    print(
        f"{'labels':<26} {'prio':<7} {'batches':>8} {'B*floor':>8} {'B*cut':>8} {'exact':>7} "
        f"{'/B*fl':>7} {'trip ok':>8} {'cls/tail':>9} {'lone':>7}"
    )
    rng = np.random.default_rng(0)
    layout_rows("uniform 5-50, C=500 P16", rng.integers(5, 51, 500), 16, 4)
    layout_rows("zipf 2k/200 P8", zipf_sizes(2_000, 200), 8, 4)
    for size in sizes_arg:
        n, c = SIZES[size]
        layout_rows(f"({size}) {n:,}/{c:,} P32", zipf_sizes(n, c), P, K)


def class_table(num_classes: int, num_neighbors: int) -> np.ndarray:
    """A neighbour table over synthetic class centroids (16 intrinsic dimensions in 128)."""
    from balanced_sampler.neighbors import nearest_classes

    rng = np.random.default_rng(0)
    z = rng.standard_normal((num_classes, 16)).astype(np.float32)
    centroids = z @ (rng.standard_normal((16, 128)).astype(np.float32) / 4)
    centroids += 0.1 * rng.standard_normal((num_classes, 128)).astype(np.float32)
    start = time.perf_counter()
    table, _ = nearest_classes(centroids, num_neighbors)
    print(f"# table: {num_classes:,} x {num_neighbors} in {time.perf_counter() - start:.1f} s")
    return table


def hard_batches(sizes_arg: str, repeats: int, num_neighbors: int) -> None:
    """Planning time with hard-class batches against the plain fixed plan, alternating."""
    print(
        f"# python benchmarks/bench_sampler.py --neighbors --repeats {repeats} "
        f"--sizes {sizes_arg} --num-neighbors {num_neighbors}"
    )
    print(
        f"# P={P} K={K}, Zipf labels, fixed mode; plan times are medians of {repeats} runs "
        "(a different epoch each), the ratio the median of each run's time over the plain "
        "plan's in the same round"
    )
    print(
        f"{'size':<4} {'dealing':<28} {'plan s':>7} {'ratio':>6} {'hard':>6} {'pure':>6} "
        f"{'listed':>7} {'forced':>7} {'filled':>7}"
    )
    for size in sizes_arg:
        n, c = SIZES[size]
        labels = zipf_labels(n, c)
        table = class_table(c, num_neighbors)
        categories = {label: label % max(1, c // 100) for label in range(c)}
        variants = {
            "plain": {},
            "neighbours, fraction 1.0": {"class_neighbors": table},
            "neighbours, fraction 0.5": {"class_neighbors": table, "hard_batch_fraction": 0.5},
            "categories (100 classes)": {"categories": categories},
        }
        samplers = {
            name: BalancedBatchSampler(labels, P, K, safe_triplet=True, seed=1, **kwargs)
            for name, kwargs in variants.items()
        }
        times: dict[str, list[float]] = {name: [] for name in samplers}
        for i in range(repeats):
            for name, sampler in samplers.items():
                epoch = 100 + i
                start = time.perf_counter()
                sampler.plan(epoch)
                times[name].append(time.perf_counter() - start)
        for name, sampler in samplers.items():
            ratios = [a / b for a, b in zip(times[name], times["plain"], strict=True)]
            stats = sampler.hard_batch_stats(0)
            figures = ""
            if stats is not None:
                slots = stats.hard_batches * (P - 1)
                figures = (
                    f"{stats.hard_batches:>6} {stats.pure_fraction:>6.3f} "
                    f"{stats.listed_slots / slots:>7.3f} {stats.forced_slots / slots:>7.3f} "
                    f"{stats.filled_slots / slots:>7.3f}"
                )
            print(
                f"{size:<4} {name:<28} {statistics.median(times[name]):>7.3f} "
                f"{statistics.median(ratios):>6.2f} {figures}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peers", action="store_true", help="also time MPerClassSampler")
    parser.add_argument("--sizes", default="ab", help="which sizes to run: any of a, b, c")
    parser.add_argument("--layout", action="store_true", help="exhaustive layouts only")
    parser.add_argument(
        "--neighbors", action="store_true", help="hard-class batches against plain fixed plans"
    )
    parser.add_argument("--num-neighbors", type=int, default=2 * P)
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    if args.layout:
        layouts(args.sizes)
        return
    if args.neighbors:
        hard_batches(args.sizes, args.repeats, args.num_neighbors)
        return
    print(
        f"# python benchmarks/bench_sampler.py --repeats {args.repeats}"
        f"{' --peers' if args.peers else ''} --sizes {args.sizes}"
    )
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
            peer = mperclass(labels, 1 if size != "a" else args.repeats)
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
