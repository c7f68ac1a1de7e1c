"""Stage 2 (kNN graphs, intrinsic dimension, alignment to the reference) locally and as Ray tasks.

    python bench/bench_stage2_ray.py --models 6 --n 5000 --d 256 --workers 1 2

The same per-model jobs (`model_geometry`, then `model_alignment` to model 0) run in turn in this process,
then through `map_jobs` on a fresh local Ray instance with each worker count. Every measurement starts from an
empty graph cache, so nothing is reused; ray.init is timed apart from the jobs. The metrics of every Ray run
are checked equal to the local ones. The free parallel capacity of the machine is measured first (2 busy
processes vs 1), since other jobs on a shared machine cap the possible speed-up.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_ray_scaling import machine_capacity  # noqa: E402
from benchmark.pipeline.align import model_alignment, model_geometry  # noqa: E402


def features(models: int, n: int, d: int, seed: int) -> list[np.ndarray]:
    """Related float32 representations: noisy nonlinear views of one latent space."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 16))
    return [(np.tanh(z @ rng.standard_normal((16, d))) + 0.3 * rng.standard_normal((n, d))).astype(np.float32)
            for _ in range(models)]


def stage2(run, feats: list[np.ndarray], knn_dir: Path, n_perm: int) -> list:
    """Both fan-outs of align_task with the given mapper; returns the metric dicts."""
    keys = [f"m{i}" for i in range(len(feats))]
    calls = [{"features": f, "cache_key": key} for f, key in zip(feats, keys)]
    run(model_geometry, calls, {"k": 10, "k_euc": 20, "knn_dir": knn_dir})
    out = run(model_alignment, calls, {"ref_features": feats[0], "ref_cache_key": keys[0], "k": 10,
                                       "knn_dir": knn_dir, "n_boot": 200, "n_perm": n_perm})
    return [metrics for metrics, _ in out]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=int, default=6)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--n-perm", type=int, default=20)
    p.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="Ray worker counts; none: local only")
    a = p.parse_args()
    import ray

    from benchmark.executors.ray_executor import map_jobs

    feats = features(a.models, a.n, a.d, 0)
    print(f"stage 2: {a.models} models x {a.n} points x {a.d} dims, n_perm={a.n_perm}")
    print(f"free parallel capacity: {machine_capacity():.2f}x (2 busy processes vs 1)")
    tmp = Path(tempfile.mkdtemp())
    t0 = time.perf_counter()
    local = stage2(lambda fn, calls, shared: [fn(**c, **shared) for c in calls], feats, tmp / "local", a.n_perm)
    base = time.perf_counter() - t0
    print(f"local, in process: {base:.1f} s")
    for w in a.workers:
        if ray.is_initialized():
            ray.shutdown()
        t0 = time.perf_counter()
        ray.init(num_cpus=w, include_dashboard=False, logging_level="WARNING")
        init = time.perf_counter() - t0
        cfg = SimpleNamespace(workers=w, ray_address=None)
        t0 = time.perf_counter()
        got = stage2(lambda fn, calls, shared: map_jobs(fn, calls, shared, cfg, f"ray {w} workers: {fn.__name__}"),
                     feats, tmp / f"ray{w}", a.n_perm)
        wall = time.perf_counter() - t0
        same = got == local
        print(f"ray, {w} worker(s): {wall:.1f} s (+ ray.init {init:.1f} s); local / ray = {base / wall:.2f}x; "
              f"metrics equal to local: {same}")
    ray.shutdown()


if __name__ == "__main__":
    main()
