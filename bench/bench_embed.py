"""Embedding throughput of the atomistic adapters (SevenNet, CHGNet, CGCNN, ANI): structures/s per batch size.

    python bench/bench_embed.py --n 64 --threads 2
    python bench/bench_embed.py --device cuda --threads 8        # where a GPU is available

For each adapter and structure set (a seeded sample of the qm9 task's molecules and of the crystals task's
crystals, loaded with the options of tasks/*.yaml) the same N structures are embedded in consecutive batches
of each size (1, 2, 4, ..., 64; the adapters' atom cap is lifted so the batch size alone decides), after one
warm-up batch. Printed per batch size: structures/s and the largest deviation of the features from batch
size 1 (relative to the largest |feature|), so a batching bug shows up here as well as in
tests/test_adapters_batching.py. Model loading is timed apart. The crystals task reads its built pool from
$MATTERALIGN_CACHE/data (built there on first use).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.registry.schema import ModelEntry  # noqa: E402
from benchmark.structures import Sample  # noqa: E402

ADAPTERS = {
    "sevennet-7net-0": ("benchmark.models.sevenn_adapter:SevenNetAdapter", "7net-0", True),
    "chgnet-0.3.0": ("benchmark.models.chgnet_adapter:CHGNetAdapter", "0.3.0", True),
    "cgcnn-formation-energy": ("benchmark.models.cgcnn_adapter:CGCNNAdapter", "formation-energy-per-atom", True),
    "ani-1x": ("benchmark.models.ani_adapter:ANIAdapter", None, False),
}
TASKS = Path(__file__).resolve().parents[1] / "tasks"


def build(path: str, checkpoint: str | None, device: str):
    module, name = path.split(":")
    entry = ModelEntry(key="bench", name="bench", family="bench", modality="atoms", domain="none", adapter=path,
                       checkpoint=checkpoint, options={"max_atoms_per_batch": 10**9})
    adapter = getattr(importlib.import_module(module), name)(entry, device)
    reason = adapter.unavailable_reason()
    if reason:
        return None, reason
    t0 = time.perf_counter()
    adapter.load()
    return adapter, time.perf_counter() - t0


def molecules(n: int) -> list[Sample]:
    """A seeded sample of the qm9 task (its loader, its options)."""
    from benchmark.registry.loader import load_task
    from benchmark.tasks import qm9

    return list(qm9.load(n, seed=0, **load_task(TASKS / "qm9.yaml").options))


def crystals(n: int) -> list[Sample]:
    """A seeded sample of the crystals task (half equilibrium crystals, half perturbed variants, <= 48 atoms)."""
    from benchmark.registry.loader import load_task
    from benchmark.tasks import crystals as task

    return list(task.load(n, seed=0, **load_task(TASKS / "crystals.yaml").options))


def throughput(adapter, samples: list[Sample], sizes: list[int]) -> list[tuple[int, float, float]]:
    adapter.embed(samples[: sizes[-1]])  # warm-up (lazy initialisation, allocator)
    rows, ref = [], None
    for b in sizes:
        t0 = time.perf_counter()
        feats = np.vstack([adapter.embed(samples[a : a + b]).features for a in range(0, len(samples), b)])
        sec = time.perf_counter() - t0
        if ref is None:
            ref = feats
        dev = float(np.abs(feats - ref).max() / max(np.abs(ref).max(), 1e-30))
        rows.append((b, len(samples) / sec, dev))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=64, help="structures per set")
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--models", nargs="+", default=list(ADAPTERS))
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    print(f"embedding throughput: {a.n} structures per set, device {a.device}, {a.threads} torch thread(s)")
    sets = {"qm9 molecules": molecules(a.n), "crystals task": crystals(a.n)}
    for key in a.models:
        path, checkpoint, periodic = ADAPTERS[key]
        adapter, load = build(path, checkpoint, a.device)
        if adapter is None:
            print(f"{key}: skipped ({load})")
            continue
        print(f"{key}: load {load:.1f} s")
        for name, samples in sets.items():
            if samples[0].pbc and not periodic:
                continue
            samples = [s for s in samples if adapter.unsupported(s) is None]
            atoms = np.mean([s.n_atoms for s in samples])
            for b, rate, dev in throughput(adapter, samples, a.sizes):
                print(f"  {name:<22} {len(samples):3d} x {atoms:4.1f} atoms  batch {b:3d}: {rate:8.1f} structures/s   "
                      f"max |diff| vs batch 1: {dev:.1e}", flush=True)


if __name__ == "__main__":
    main()
