"""Retrieval metrics benchmark: ours against pytorch-metric-learning's AccuracyCalculator.

Command (from the repository root; needs torch and pytorch-metric-learning, and faiss-cpu
for the faiss row):

    python benchmarks/bench_retrieval.py [--num 20000] [--dim 128] [--repeats 5]

The same metrics from the same embeddings: Recall@1/2/4/8, precision@1, R-precision and
MAP@R of N clustered float32 embeddings (class sizes drawn from 1-40), each querying all the
others, euclidean distance. AccuracyCalculator gets k = max(largest class, 8) neighbours
(what MAP@R and Recall@8 need; its default k=None ranks all N) and Recall@2/4/8 as three
extra metrics computed from its own k-NN labels. Its default k-NN backend is faiss, which
it requires: without faiss installed it must be given a torch k-NN (`CustomKNN`), the
"torch" row. Times: medians of `--repeats` calls, implementations alternating within one
run, CPU only, torch and BLAS on all cores (the best run is printed too: on a shared machine
the median carries other processes' load; so is the process's CPU time over all threads,
which that load disturbs less). Peak memory: each implementation once in a
fresh process, the growth of the process's peak resident size over the call (Linux), plus
what tracemalloc sees numpy allocate (all of ours; little of torch's or faiss's).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from balanced_sampler.retrieval import retrieval_metrics

KS = (1, 2, 4, 8)


def clustered(num: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clustered float32 embeddings, class sizes 1-40, in random order."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 41, size=num)
    sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), num)) + 1]
    sizes[-1] -= int(sizes.sum()) - num
    labels = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    centres = rng.normal(size=(len(sizes), dim))
    x = centres[labels] + 1.5 * rng.normal(size=(num, dim))
    return x.astype(np.float32), labels


def ours(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return retrieval_metrics(x, y, k=KS)


def accuracy_calculator(backend: str) -> Callable[[np.ndarray, np.ndarray], dict[str, float]]:
    import torch
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import (
        AccuracyCalculator,
        try_getting_not_lone_labels,
    )
    from pytorch_metric_learning.utils.inference import CustomKNN, FaissKNN

    class WithRecall(AccuracyCalculator):  # type: ignore[misc]
        def _recall(self, k: int, knn_labels: Any, query_labels: Any,
                    not_lone_query_mask: Any, **kwargs: Any) -> float:
            knn_labels, query_labels = try_getting_not_lone_labels(
                knn_labels, query_labels, not_lone_query_mask
            )
            return (knn_labels[:, :k] == query_labels[:, None]).any(1).double().mean().item()

        def calculate_recall_at_2(self, **kwargs: Any) -> float:
            return self._recall(2, **kwargs)

        def calculate_recall_at_4(self, **kwargs: Any) -> float:
            return self._recall(4, **kwargs)

        def calculate_recall_at_8(self, **kwargs: Any) -> float:
            return self._recall(8, **kwargs)

        def requires_knn(self) -> list[str]:
            return [*super().requires_knn(), "recall_at_2", "recall_at_4", "recall_at_8"]

    knn = FaissKNN() if backend == "faiss" else CustomKNN(LpDistance(normalize_embeddings=False))

    def run(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        k = max(int(np.bincount(y).max()), max(KS))
        calc = WithRecall(
            include=("precision_at_1", "r_precision", "mean_average_precision_at_r",
                     "recall_at_2", "recall_at_4", "recall_at_8"),
            k=k, knn_func=knn, device=torch.device("cpu"),
        )
        out = calc.get_accuracy(x, y)
        return {
            "recall@1": out["precision_at_1"], "recall@2": out["recall_at_2"],
            "recall@4": out["recall_at_4"], "recall@8": out["recall_at_8"],
            "precision@1": out["precision_at_1"], "r_precision": out["r_precision"],
            "map@r": out["mean_average_precision_at_r"],
        }

    return run


def implementations() -> dict[str, Callable[[np.ndarray, np.ndarray], dict[str, float]]]:
    found: dict[str, Callable[[np.ndarray, np.ndarray], dict[str, float]]] = {"ours": ours}
    try:
        import pytorch_metric_learning  # noqa: F401
    except ImportError:
        print("pytorch-metric-learning is not installed: only our row.", file=sys.stderr)
        return found
    found["AccuracyCalculator (torch k-NN)"] = accuracy_calculator("torch")
    try:
        import faiss  # noqa: F401

        found["AccuracyCalculator (faiss)"] = accuracy_calculator("faiss")
    except ImportError:
        print("faiss is not installed: no faiss row.", file=sys.stderr)
    return found


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def memory_child(name: str, num: int, dim: int) -> None:
    """Runs one implementation once in this (fresh) process and prints its memory.

    The growth of the peak resident size over the call: Linux's peak (VmHWM) is reset to
    the current size just before the call (/proc/self/clear_refs), so what the data
    generation allocated before does not hide it.
    """
    fn = implementations()[name]
    x, y = clustered(num, dim)
    fn(x[:200], y[:200])  # import and warm up outside the measured call
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    before = _status_kib("VmRSS")
    tracemalloc.start()
    fn(x, y)
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak = _status_kib("VmHWM")
    print(json.dumps({"rss_growth": (peak - before) * 1024, "traced": traced}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.num, args.dim)
        return 0
    x, y = clustered(args.num, args.dim)
    print(f"{args.num} embeddings x {args.dim} float32, {y.max() + 1} classes of 1-40, "
          f"largest {np.bincount(y).max()}; {args.repeats} alternating repeats")
    fns = implementations()
    results = {name: fn(x, y) for name, fn in fns.items()}  # warm-up and values
    times: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(args.repeats):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn(x, y)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    memory = {}
    for name in fns:
        child = subprocess.run(
            [sys.executable, __file__, "--memory-child", name, "--num", str(args.num),
             "--dim", str(args.dim)],
            capture_output=True, text=True, check=True,
        )
        memory[name] = json.loads(child.stdout.strip().splitlines()[-1])
    base = statistics.median(times["ours"])
    print()
    best = min(times["ours"])
    base_cpu = statistics.median(cpu["ours"])
    print("| implementation | median s | best s | median / ours | best / ours | CPU s (all "
          "threads) | CPU / ours | peak RSS growth MB | numpy traced MB | max abs diff to ours |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in fns:
        diff = max(abs(results[name][key] - results["ours"][key]) for key in results["ours"])
        median = statistics.median(times[name])
        low = min(times[name])
        cpu_s = statistics.median(cpu[name])
        print(f"| {name} | {median:.2f} | {low:.2f} | {median / base:.2f} | {low / best:.2f} | "
              f"{cpu_s:.2f} | {cpu_s / base_cpu:.2f} | "
              f"{memory[name]['rss_growth'] / 2**20:.0f} | {memory[name]['traced'] / 2**20:.0f} "
              f"| {diff:.1e} |")
    print()
    print("values (ours):", {key: round(value, 6) for key, value in results["ours"].items()})
    for name in fns:
        print(f"runs s, {name}: " + ", ".join(f"{t:.2f}" for t in times[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
