"""Stage 2 of one (model, task) against that model's kNN graph, every metric timed in this one process.

    /usr/bin/time -v python bench/bench_stage2.py --n 50000 --d 2048

Synthetic related float32 features for a reference and one model (noisy nonlinear views of one latent
space). The reference's prepared features and cosine graph are built first and not counted: they are
shared by every model of the task (the pipeline caches them). The baseline, the model's plain cosine kNN
graph (`knn_graph`), is timed next: it is the denominator, not part of the stage. Then the model's stage 2
runs as the pipeline's jobs do (`align.model_geometry`, `align.model_alignment`, `align_task`), one step at a
time, each with its seconds and peak memory (the process's VmHWM high-water mark, reset before each step
through /proc/self/clear_refs, and its rise over the resident size when the step began):

- one pass over the prepared features (`knn_graph` with a `RankCounter`): the cosine graph and
  Delta(ref -> model), from one GEMM of the model's features;
- the euclidean graph of the raw features (TwoNN and MLE read it, as the metric contract defines them), a
  second pass;
- Delta(model -> ref): `imbalances_to_reference`, one pass over the reference's Gram matrix shared by all
  models of a task. It is timed for 1 and for 2 models, which splits it into the shared pass (s) and the
  per-model counts (c): per model it costs s / M + c for a task of M models;
- TwoNN and MLE on that stored graph, CKNNA, mutual kNN, the bootstrap CI, linear CKA, IDCor.

Printed last: `stage2/knn ratio: X` = (the model's stage 2 with the reference's pass divided among the
default run's models) / (its cosine kNN graph, timed before and after the stage: the mean of both), all
measured here, so machine load drifts affect numerator and denominator alike; before it the same ratio with
the pass not shared (a task of one model) and shared by --models-per-task models.
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

from benchmark.errors import ConfigError  # noqa: E402
from benchmark.knn import knn_graph, prepare_features  # noqa: E402
from benchmark.metrics import (  # noqa: E402
    alignment_ci,
    cknna,
    idcor_test,
    imbalances_to_reference,
    linear_cka,
    mle_id,
    mutual_knn,
    twonn,
)
from benchmark.metrics.imbalance import RankCounter  # noqa: E402


def default_model_count() -> int | None:
    """How many models the default run embeds (models.yaml), None when the file cannot be read."""
    from benchmark.registry.loader import load_models

    try:
        return sum(bool(m.default) for m in load_models().models)
    except (ConfigError, OSError, AttributeError):
        return None


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
        self.measured: list[tuple[str, float, int, int]] = []
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
        self.measured.append(self.rows[-1])
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
    kg = max(a.k, 25) + 1  # the pipeline's graph_k: one cosine graph per model serves k and k = 25
    print(f"stage 2 of one (model, task): n={a.n} d={a.d} k={a.k} (graph k={kg}) k_euc={a.k_euc} "
          f"n_boot={a.n_boot} n_perm={a.n_perm}, float32 features, {os.cpu_count()} cpus, "
          f"load {os.getloadavg()[0]:.1f}")
    ref_raw, raw = features(a.n, a.d, a.seed)
    t0 = time.perf_counter()
    p_ref = prepare_features(ref_raw)
    g_ref = knn_graph(p_ref, kg)
    print(f"reference (shared by every model, not counted): prepare + cosine graph {time.perf_counter() - t0:.1f} s")
    step = Steps()
    if not step.can_reset:
        print("  (cannot reset VmHWM here: peaks are the process's running maximum)")
    print("baseline (the denominator):")
    P = prepare_features(raw)
    base = step("kNN graph, cosine (knn_graph)", lambda: knn_graph(P, kg))
    baseline = step.rows.pop()
    print("model:")
    P = step("prepare (clip + L2)", lambda: prepare_features(raw))
    counter = RankCounter(P, g_ref.indices[:, :1])
    g = step("cosine pass + ii ref->m (prepared)", lambda: knn_graph(P, kg, visit=counter))
    g_euc = step("euclidean graph, raw features (k_euc)", lambda: knn_graph(raw, a.k_euc, metric="euclidean"))
    assert (g.indices == base.indices).all(), "the counting pass's cosine graph differs from knn_graph's"
    rm = counter.delta()
    one = step("ii model->ref, 1 model (ref pass)", lambda: imbalances_to_reference(p_ref, [g]))[0]
    step.rows.pop()
    two = step("ii model->ref, 2 models (ref pass)", lambda: imbalances_to_reference(p_ref, [g, g]))
    step.rows.pop()
    assert two == [one, one]
    step("TwoNN (stored graph)", lambda: twonn(g_euc))
    step("MLE (stored graph)", lambda: mle_id(g_euc, a.k_euc))
    step("CKNNA", lambda: cknna(g, g_ref, k=a.k))
    step("CKNNA k=25", lambda: cknna(g, g_ref, k=25))
    step("mutual kNN", lambda: mutual_knn(g, g_ref, k=a.k))
    step(f"CKNNA bootstrap CI ({a.n_boot})", lambda: alignment_ci(g, g_ref, "cknna", k=a.k, n_boot=a.n_boot))
    step("linear CKA (float32)", lambda: linear_cka(P, p_ref))
    kw = {} if a.idcor_n is None else {"max_n": a.idcor_n}
    ic = step(f"IDCor ({a.n_perm} permutations)", lambda: idcor_test(raw, ref_raw, n_perm=a.n_perm, seed=a.seed, **kw))
    print("baseline again (machine load drifts: the denominator is the mean of both):")
    step("kNN graph, cosine (knn_graph)", lambda: knn_graph(P, kg))
    again = step.rows.pop()
    print(f"information imbalance ref->model {rm:.6f}, model->ref {one:.6f} (all {a.n} queries, exact)")
    print(f"IDCor {ic.corr:.4f} on {ic.n} points, p = {ic.p_value:.4g} (floor {ic.p_floor:.4g})")
    knn = (baseline[1] + again[1]) / 2
    t1, t2 = (next(sec for name, sec, _, _ in step.measured if name.startswith(f"ii model->ref, {m} ")) for m in (1, 2))
    c = max(t2 - t1, 0.0)
    shared = t1 - c
    rest = sum(sec for _, sec, _, _ in step.rows)
    peak = max(pk for _, _, pk, _ in step.measured)
    print(f"reference pass: {t1:.1f} s for 1 model, {t2:.1f} s for 2: shared part {shared:.1f} s + {c:.1f} s per model")
    print(f"stage 2 beyond the reference pass {rest:.1f} s; baseline kNN graph {knn:.1f} s (mean of "
          f"{baseline[1]:.1f} and {again[1]:.1f}); process peak {peak / 2**30:.2f} GiB")
    default = default_model_count()
    shares = (("not shared (1 model per task)", 1), (f"shared by {a.models_per_task} models", a.models_per_task))
    for label, m in shares:
        print(f"stage2/knn ratio, reference's pass {label}: {(rest + shared / m + c) / knn:.2f}")
    if default:
        print(f"stage2/knn ratio (reference's pass shared by the default run's {default} models): "
              f"{(rest + shared / default + c) / knn:.2f}")
    m = default or a.models_per_task
    print(f"stage2/knn ratio: {(rest + shared / m + c) / knn:.2f}")


if __name__ == "__main__":
    main()
