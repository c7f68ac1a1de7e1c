"""Exact kNN graph cost per backend, and the pair stage as a fraction of it.

Each backend runs in its own subprocess on the same seeded float32 features (prepared: clipped
and L2-normalised, cosine metric; built once and loaded from a .npy file); reported: wall
time, peak-RSS delta over the worker's high-water mark once the features are loaded, and the
worker's total peak RSS.

Pair stage: for M models the pipeline builds M graphs (M kNN searches) and then compares
M (M - 1) / 2 pairs from the stored lists: cknna both orders + mutual_knn per pair. Its cost is
measured on two real graphs of n points (the second one from cheap d=32 features) and
extrapolated; the per-model bootstrap CI (to the reference only, M - 1 of them) is reported too.

    python bench/bench_knn.py --n 50000 --d 2048 --k 10 --models 20
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.bench_cknna import gb, run_worker, spawn  # noqa: E402  (shared subprocess measurement)


def make_features(n: int, d: int, seed: int) -> np.ndarray:
    """Low-rank-plus-noise features (a crude stand-in for embeddings), float32, prepared."""
    from benchmark.knn import prepare_features

    rng = np.random.default_rng(seed)
    X = np.empty((n, d), dtype=np.float32)
    W = rng.standard_normal((64, d)).astype(np.float32)
    for a in range(0, n, 8192):
        b = min(a + 8192, n)
        X[a:b] = rng.standard_normal((b - a, 64)).astype(np.float32) @ W
        X[a:b] += rng.standard_normal((b - a, d)).astype(np.float32)
    return prepare_features(X)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--models", type=int, default=20)
    p.add_argument("--backends", default="numpy,faiss")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        from benchmark.knn import knn_graph

        X = np.load(a.data)
        if a.worker == "faiss":
            import faiss  # noqa: F401  (imported before the baseline RSS is taken)

        def work():
            g = knn_graph(X, a.k, backend=a.worker)
            if a.save:
                np.savez(a.save, indices=g.indices, values=g.values)
            return {}

        run_worker(work)
        return

    from benchmark.knn import KnnGraph, knn_graph
    from benchmark.metrics import alignment_ci, cknna, mutual_knn
    from benchmark.metrics.knn_alignment import _self_hsic

    print(f"kNN n={a.n} d={a.d} k={a.k} float32 cosine ({os.cpu_count()} cpus)")
    tmp = tempfile.mkdtemp()
    data = os.path.join(tmp, "X.npy")
    np.save(data, make_features(a.n, a.d, a.seed))
    results = {}
    for backend in a.backends.split(","):
        save = os.path.join(tmp, f"{backend}.npz")
        args = ["--k", str(a.k), "--data", data, "--worker", backend, "--save", save]
        results[backend] = r = spawn(__file__, args)
        print(f"{backend:>6}: {r['seconds']:8.2f} s  peak +{gb(r['peak_delta_bytes'])}  (process peak {gb(r['peak_rss_bytes'])})")
    names = list(results)
    graphs = {b: np.load(os.path.join(tmp, f"{b}.npz")) for b in names}
    if len(names) > 1:
        same = np.mean(graphs[names[0]]["indices"] == graphs[names[1]]["indices"])
        print(f"{names[0]} vs {names[1]}: identical neighbour entries {same:.6f}")
        print(f"time ratio {names[0]} / {names[1]} = {results[names[0]]['seconds'] / results[names[1]]['seconds']:.2f}")
    ga = KnnGraph(graphs[names[0]]["indices"], graphs[names[0]]["values"], "cosine")
    gb_ = knn_graph(make_features(a.n, 32, a.seed + 1), a.k)
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        cknna(ga, gb_)
        cknna(gb_, ga)
        mutual_knn(ga, gb_)
        times.append(time.perf_counter() - t0)
    pair = float(np.median(times))
    print(f"pair timings over 7 repeats: min {min(times) * 1e3:.1f} ms, median {pair * 1e3:.1f} ms (median used)")
    once = []
    for _ in range(3):  # per-graph work cached on the graph object (transposed slots, self-HSIC), paid once per model
        fresh = KnnGraph(ga.indices, ga.values, "cosine")
        t0 = time.perf_counter()
        _self_hsic(fresh, a.k, True)
        once.append(time.perf_counter() - t0)
    per_graph = float(np.median(once))
    t0 = time.perf_counter()
    alignment_ci(ga, gb_, n_boot=200)
    ci = time.perf_counter() - t0
    m = a.models
    knn_total = m * results[names[0]]["seconds"]
    pair_total = m * (m - 1) / 2 * pair + m * per_graph
    print(f"pair stage: {pair * 1e3:.1f} ms per pair (cknna x2 + mutual_knn) + {per_graph * 1e3:.1f} ms once per graph; "
          f"{m} models -> {m * (m - 1) // 2} pairs = {pair_total:.1f} s vs {knn_total:.0f} s of {names[0]} kNN "
          f"= {100 * pair_total / knn_total:.2f}%")
    print(f"bootstrap CI (200 resamples): {ci:.2f} s per model pair; {m - 1} to the reference = "
          f"{100 * (m - 1) * ci / knn_total:.2f}% of kNN time")


if __name__ == "__main__":
    main()
