"""Stage 2 of one (model, task) against that model's kNN graph, every metric timed in this one process.

    python bench/bench_stage2.py --n 50000 --d 2048

Synthetic related float32 features for a reference and one model (noisy nonlinear views of one latent
space). The reference's prepared features and cosine graph are built first and not counted: they are
shared by every model of the task (the pipeline caches them). Then the model's stage 2 runs as the
pipeline's jobs do (`model_geometry`, `model_alignment`), one metric at a time, each with its seconds and
its peak memory: the process's VmHWM high-water mark, reset before each step through /proc/self/clear_refs,
and its rise over the resident size when the step began.

Information imbalance is timed as its two passes: Delta(ref -> model) counts in the model's distances (one
pass over the model's Gram matrix, per model), Delta(model -> ref) in the reference's (one pass that
`information_imbalances_many` shares among all models of a task). Their sum is what
`information_imbalances(ref, model)` costs; the values are checked against it at small n by the tests.

Printed last: `stage2/knn ratio: X` = (all of the model's stage 2, its two kNN graphs included) / (its
cosine kNN graph), both measured here, so machine load drifts affect numerator and denominator alike;
then the same ratio with the reference's imbalance pass divided among --models-per-task models.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.knn import knn_graph, prepare_features  # noqa: E402
from benchmark.metrics import (  # noqa: E402
    alignment_ci,
    cknna,
    idcor_test,
    information_imbalance,
    linear_cka,
    mle_id,
    mutual_knn,
    twonn,
)


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def features(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference and model: float32 noisy nonlinear views of one 16-dimensional latent space."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 16)).astype(np.float32)
    out = []
    for _ in range(2):
        W = rng.standard_normal((16, d)).astype(np.float32)
        F = np.empty((n, d), dtype=np.float32)
        for a in range(0, n, 8192):
            F[a : a + 8192] = np.tanh(z[a : a + 8192] @ W) + 0.3 * rng.standard_normal((min(8192, n - a), d))
        out.append(F)
    return out[0], out[1]


class Steps:
    """Runs and records one step at a time: seconds, process peak, peak rise over the step's start."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, int, int]] = []
        self.can_reset = _reset_peak()

    def __call__(self, name: str, fn: Callable[[], object]) -> object:
        _reset_peak()
        start_rss = _status("VmRSS")
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn()
        sec = time.perf_counter() - t0
        peak = _status("VmHWM")
        self.rows.append((name, sec, peak, peak - start_rss))
        print(f"  {name:<34} {sec:9.2f} s   peak {peak / 2**30:6.2f} GiB (+{(peak - start_rss) / 2**30:5.2f})",
              flush=True)
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50000)
    p.add_argument("--d", type=int, default=2048)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--k-euc", type=int, default=20)
    p.add_argument("--n-boot", type=int, default=200)
    p.add_argument("--n-perm", type=int, default=999)
    p.add_argument("--idcor-n", type=int, default=None, help="IDCor points (default: its DEFAULT_MAX_N)")
    p.add_argument("--models-per-task", type=int, default=60, help="models sharing the reference's pass")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    print(f"stage 2 of one (model, task): n={a.n} d={a.d} k={a.k} k_euc={a.k_euc} n_boot={a.n_boot} "
          f"n_perm={a.n_perm}, float32 features, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")
    ref_raw, raw = features(a.n, a.d, a.seed)
    t0 = time.perf_counter()
    p_ref = prepare_features(ref_raw)
    g_ref = knn_graph(p_ref, a.k)
    print(f"reference (shared by every model, not counted): prepare + cosine graph {time.perf_counter() - t0:.1f} s")
    step = Steps()
    if not step.can_reset:
        print("  (cannot reset VmHWM here: peaks are the process's running maximum)")
    print("model:")
    P = step("prepare (clip + L2)", lambda: prepare_features(raw))
    g = step("kNN graph, cosine (the baseline)", lambda: knn_graph(P, a.k))
    g_euc = step("kNN graph, euclidean (raw)", lambda: knn_graph(raw, a.k_euc, metric="euclidean"))
    step("TwoNN (stored graph)", lambda: twonn(g_euc))
    step("MLE (stored graph)", lambda: mle_id(g_euc, a.k_euc))
    step("CKNNA", lambda: cknna(g, g_ref, k=a.k))
    step("mutual kNN", lambda: mutual_knn(g, g_ref, k=a.k))
    step(f"CKNNA bootstrap CI ({a.n_boot})", lambda: alignment_ci(g, g_ref, "cknna", k=a.k, n_boot=a.n_boot))
    step("linear CKA", lambda: linear_cka(P, p_ref))
    rm = step("imbalance ref->model (model pass)", lambda: information_imbalance(p_ref, P, graph_x=g_ref))
    mr = step("imbalance model->ref (ref pass)", lambda: information_imbalance(P, p_ref, graph_x=g))
    kw = {} if a.idcor_n is None else {"max_n": a.idcor_n}
    ic = step(f"IDCor ({a.n_perm} permutations)", lambda: idcor_test(raw, ref_raw, n_perm=a.n_perm, seed=a.seed, **kw))
    print(f"information imbalance ref->model {rm:.6f}, model->ref {mr:.6f} (all {a.n} queries, exact)")
    print(f"IDCor {ic.corr:.4f} on {ic.n} points, p = {ic.p_value:.4g} (floor {ic.p_floor:.4g})")
    knn = next(sec for name, sec, _, _ in step.rows if name.startswith("kNN graph, cosine"))
    total = sum(sec for _, sec, _, _ in step.rows)
    peak = max(pk for _, _, pk, _ in step.rows)
    print(f"stage 2 total {total:.1f} s (beyond the cosine graph: {total - knn:.1f} s), process peak "
          f"{peak / 2**30:.2f} GiB")
    print(f"stage2/knn ratio: {total / knn:.2f}")
    ref_pass = next(sec for name, sec, _, _ in step.rows if name.startswith("imbalance model->ref"))
    m = a.models_per_task
    shared = total - ref_pass * (1 - 1 / m)
    print(f"stage2/knn ratio, reference's imbalance pass shared by {m} models: {shared / knn:.2f}")


if __name__ == "__main__":
    main()
