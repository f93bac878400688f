"""Class-neighbour tables: time and quality of each class's M nearest classes.

Commands (from the repository root):

    python benchmarks/bench_neighbors.py --repeats 3            # 100,000 and 20,000 classes
    python benchmarks/bench_neighbors.py --exact-large          # + the exact search on 100,000
    python benchmarks/bench_neighbors.py --refresh --repeats 5  # ClassNeighborRefresh's step

Centroids: C classes in 128 dimensions, drawn near a random 16- or 32-dimensional
subspace (z @ W + 0.1 noise, as class centroids of a trained embedding tend to be), or
plain Gaussian (no structure at all: every class about as far from every other). For
each, `nearest_classes` with the default search (`"auto"`: exact up to 20,000 classes,
clustered beyond), M = 64; quality on 1,000 classes drawn at random, against their
exact neighbours: the share of the exact M found, the share of the exact 10 nearest
found, and the mean distance of the neighbours found over that of the exact ones.
Also `class_centroids` on 1,000,000 embeddings of 100,000 classes. Times are medians of
`--repeats` runs on a shared 2-core machine.

`--refresh`: the neighbour step of `kerasgen_tf.hard_classes.ClassNeighborRefresh` alone
(`class_neighbor_table`: centroids, then nearest classes; the embedding pass is the model's
cost and not measured): 100,000 classes of 128 dimensions (16 intrinsic), embeddings of
unit length around each centroid, 4 or 10 per class (`samples_per_class`), cosine distance
(the callback's default) and euclidean, M = 64 and 128 (the callback's default 4 x P for
P = 32); wall and CPU seconds (all threads).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from balanced_sampler.neighbors import class_centroids, nearest_classes
from balanced_sampler.retrieval import nearest_neighbors

M = 64
DIMENSIONS = 128


def centroids(num_classes: int, kind: str, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.standard_normal((num_classes, DIMENSIONS), dtype=np.float32)
    intrinsic = int(kind.split()[0])
    z = rng.standard_normal((num_classes, intrinsic)).astype(np.float32)
    w = rng.standard_normal((intrinsic, DIMENSIONS)).astype(np.float32) / np.sqrt(intrinsic)
    noise = 0.1 * rng.standard_normal((num_classes, DIMENSIONS)).astype(np.float32)
    return z @ w + noise


def quality(x: np.ndarray, found: np.ndarray, distances: np.ndarray, distance: str) -> str:
    rows = np.random.default_rng(2).choice(len(x), size=min(1000, len(x)), replace=False)
    exact, exact_distances = nearest_neighbors(x[rows], x, M + 1, distance=distance)
    share, top, ratio = [], [], []
    for i, row in enumerate(rows.tolist()):
        keep = exact[i] != row
        truth, truth_d = exact[i][keep][:M], exact_distances[i][keep][:M]
        share.append(len(set(found[row].tolist()) & set(truth.tolist())) / M)
        top.append(len(set(found[row].tolist()) & set(truth[:10].tolist())) / 10)
        ratio.append(float(distances[row].mean() / truth_d.mean()))
    return f"{np.mean(share):>8.3f} {np.mean(top):>8.3f} {np.mean(ratio):>8.3f}"


def run(num_classes: int, kind: str, distance: str, search: str, repeats: int) -> None:
    x = centroids(num_classes, kind)
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = nearest_classes(x, M, distance=distance, search=search)
        times.append(time.perf_counter() - start)
    assert result is not None
    figures = quality(x, result[0], result[1], distance)
    used = search if search != "auto" else ("exact" if num_classes <= 20_000 else "clustered")
    print(
        f"{num_classes:>8,} {kind:<16} {distance:<9} {used:<9} "
        f"{statistics.median(times):>7.2f} {figures}"
    )


def refresh_step(repeats: int) -> None:
    """Times `class_neighbor_table` as `ClassNeighborRefresh` calls it on 100,000 classes."""
    from balanced_sampler.neighbors import class_neighbor_table

    num_classes = 100_000
    x = centroids(num_classes, "16 intrinsic")
    rng = np.random.default_rng(4)
    print(f"{'embeddings':>10} {'distance':<9} {'M':>4} {'wall s':>7} {'CPU s':>7}")
    for per_class in (4, 10):
        labels = np.repeat(np.arange(num_classes), per_class)
        embeddings = x[labels] + 0.05 * rng.standard_normal((len(labels), DIMENSIONS), np.float32)
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
        for distance, m in (("cosine", 64), ("cosine", 128), ("euclidean", 128)):
            if per_class == 10 and distance == "euclidean":
                continue
            walls, cpus = [], []
            for _ in range(repeats):
                start, cpu = time.perf_counter(), time.process_time()
                class_neighbor_table(embeddings, labels, m, distance=distance)
                walls.append(time.perf_counter() - start)
                cpus.append(time.process_time() - cpu)
            print(
                f"{len(labels):>10,} {distance:<9} {m:>4} {statistics.median(walls):>7.2f} "
                f"{statistics.median(cpus):>7.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--exact-large", action="store_true", help="exact search on 100,000")
    parser.add_argument("--refresh", action="store_true",
                        help="only ClassNeighborRefresh's neighbour step (100,000 classes)")
    args = parser.parse_args()
    if args.refresh:
        print(f"# python benchmarks/bench_neighbors.py --refresh --repeats {args.repeats}")
        refresh_step(args.repeats)
        return
    print(
        f"# python benchmarks/bench_neighbors.py --repeats {args.repeats}"
        f"{' --exact-large' if args.exact_large else ''}"
    )
    print(f"# M={M}, {DIMENSIONS} dimensions, float32; times are medians of {args.repeats} runs")
    print(
        f"{'classes':>8} {'centroids':<16} {'distance':<9} {'search':<9} {'time s':>7} "
        f"{'of M':>8} {'top 10':>8} {'dist/ex':>8}"
    )
    for kind in ("16 intrinsic", "32 intrinsic", "gaussian"):
        run(100_000, kind, "euclidean", "auto", args.repeats)
    run(100_000, "16 intrinsic", "cosine", "auto", args.repeats)
    run(20_000, "16 intrinsic", "euclidean", "auto", args.repeats)
    run(20_000, "16 intrinsic", "euclidean", "clustered", args.repeats)
    if args.exact_large:
        run(100_000, "16 intrinsic", "euclidean", "exact", 1)
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 100_000, 1_000_000)
    embeddings = rng.standard_normal((1_000_000, DIMENSIONS), dtype=np.float32)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        class_centroids(embeddings, labels)
        times.append(time.perf_counter() - start)
    print(
        f"# class_centroids: 1,000,000 embeddings of 100,000 classes in "
        f"{statistics.median(times):.2f} s"
    )


if __name__ == "__main__":
    main()
