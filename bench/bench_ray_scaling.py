"""Ray executor scaling on this machine: the same embedding job with 1 and 2 workers, plus the sequential baseline.

    python bench/bench_ray_scaling.py                      # structural-rdf + ani-1x on 400 QM9 molecules
    python bench/bench_ray_scaling.py --models structural-rdf --n 300 --workers 1 2 4
    python bench/bench_ray_scaling.py --models sevenn-7net-0,chgnet-0.3.0 --n 100 --workers   # throughput only

Every measurement embeds into a fresh cache root, so nothing is reused. Ray start-up (`ray.init`) is timed
separately from the job: it is paid once per run, not per model. The sequential pass also gives the per-model
throughput (structures/s, one CPU thread) that docs/distributed.md extrapolates from.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmark.embeddings import extract  # noqa: E402
from benchmark.registry import import_object, load_models, load_tasks, models_by_key, select  # noqa: E402
from benchmark.tasks import build_dataset  # noqa: E402


def _spin(n: int) -> float:
    t0 = time.perf_counter()
    x = 0
    for i in range(n):
        x += i * i % 7
    return time.perf_counter() - t0


def machine_capacity(n: int = 15_000_000) -> float:
    """Throughput of 2 concurrent CPU-bound processes relative to 1: 2.0 on 2 idle cores, less when shared."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as pool:
        one = pool.submit(_spin, n).result()
        two = max(f.result() for f in [pool.submit(_spin, n), pool.submit(_spin, n)])
    return 2 * one / two


def sequential(entries, dataset, root: Path) -> dict[str, float]:
    """Seconds per model for the plain local extraction (the `--executor local` path), one thread.

    Prints the model load time (import + weights) and the embedding throughput separately.
    """
    out = {}
    for entry in entries:
        adapter = import_object(entry.adapter, entry.key)(entry)
        t0 = time.perf_counter()
        adapter.load()
        t1 = time.perf_counter()
        extract(adapter, dataset, root, progress=False)
        t2 = time.perf_counter()
        out[entry.key] = t2 - t0
        print(f"sequential  {entry.key:24s} load {t1 - t0:6.2f} s, embed {t2 - t1:7.2f} s = "
              f"{len(dataset) / (t2 - t1):8.1f} structures/s")
    return out


def with_ray(entries, dataset, root: Path, workers: int) -> tuple[float, float]:
    """(ray.init seconds, prefetch seconds) for a fresh local Ray instance with `workers` CPUs."""
    import ray

    from benchmark.executors.ray_executor import prefetch_embeddings

    t0 = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, logging_level="WARNING")
    t1 = time.perf_counter()
    try:
        prefetch_embeddings(entries, dataset, root, SimpleNamespace(device="cpu", ray_address=None, workers=workers))
        t2 = time.perf_counter()
    finally:
        ray.shutdown()
    return t1 - t0, t2 - t1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="structural-rdf,ani-1x", help="comma-separated models.yaml keys")
    p.add_argument("--task", default="qm9")
    p.add_argument("--n", type=int, default=400, help="structures")
    p.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="worker counts (none: sequential only)")
    p.add_argument("--models-file", type=Path, default=REPO / "models.yaml")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the sequential baseline uses one thread, like one Ray worker
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    entries = select(models_by_key(load_models(args.models_file)), args.models.split(","), "model key", "models.yaml")
    full = build_dataset(load_tasks()[args.task], 2 * args.n, 0)
    adapters = [import_object(e.adapter, e.key)(e) for e in entries]
    keep = [i for i, s in enumerate(full.samples) if not any(a.unsupported(s) for a in adapters)][: args.n]
    dataset = full.subset(keep)  # only structures every model can embed (e.g. no F for ANI-1x)
    print(f"{len(dataset)} structures of {args.task}; models {args.models}; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"machine capacity: 2 busy processes do {machine_capacity():.2f}x the work of 1 (ideal 2.00)")
    with tempfile.TemporaryDirectory() as tmp:
        seq = sequential(entries, dataset, Path(tmp) / "sequential")
        total = sum(seq.values())
        print(f"sequential  {'all':24s} {total:7.2f} s")
        times = {}
        for w in args.workers:
            init, job = with_ray(entries, dataset, Path(tmp) / f"ray-{w}", w)
            times[w] = job
            print(f"ray {w} worker(s): ray.init {init:5.1f} s, job {job:7.2f} s "
                  f"({total / job:.2f}x the sequential pass)")
    base = times[min(times)] if times else 0.0
    for w, t in sorted(times.items()):
        print(f"speed-up {w} vs {min(times)} worker(s): {base / t:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
