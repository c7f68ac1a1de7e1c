"""CKNNA: our sparse exact implementation vs a dense platonic-rep-style reference.

The reference builds the n x n kernels in torch float32 and follows platonic-rep's operations
(clone + fill_diagonal(-inf), topk, scatter masks, masked products, dense unbiased HSIC). Ours
is two exact kNN graphs (numpy blocked GEMM) plus the O(n k) sparse HSIC, both on float32 input. Each method
runs in its own subprocess on the same seeded data (built once, loaded from a file, so the
baseline RSS holds only the inputs); the figures are wall time and peak-RSS delta over that
baseline, and the ratios reference / ours.

    python bench/bench_cknna.py --n 20000 --d 256 --k 10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


# Measurement (shared with bench_knn.py): each method runs alone in a fresh interpreter. Its
# peak is VmHWM from /proc/self/status, the high-water mark of that process image (ru_maxrss is
# not used: Linux carries it over from the forking parent through exec); the reported memory is
# the rise of VmHWM over its value once the inputs are loaded and the libraries imported.


def peak_rss_bytes() -> int:
    """VmHWM of this process image, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def run_worker(fn: Callable[[], dict[str, Any]]) -> None:
    """Inside the subprocess: time fn() and print its result plus memory figures as JSON."""
    base = peak_rss_bytes()
    t0 = time.perf_counter()
    out = fn()
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_bytes"] = peak_rss_bytes()
    out["peak_delta_bytes"] = out["peak_rss_bytes"] - base
    print("RESULT " + json.dumps(out), flush=True)


def spawn(script: str, args: list[str]) -> dict[str, Any]:
    """Run `python script args` and return the JSON its worker printed."""
    proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"worker {args} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def gb(x: float) -> str:
    return f"{x / 2**30:.3f} GiB"


def make_data(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two related float32 representations of n samples, prepared (clipped + L2-normalised)."""
    from benchmark.knn import prepare_features

    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, d))
    B = np.tanh(A @ (rng.standard_normal((d, d)) / np.sqrt(d))) + 0.5 * rng.standard_normal((n, d))
    return prepare_features(A.astype(np.float32)), prepare_features(B.astype(np.float32))


def dense_reference(A: np.ndarray, B: np.ndarray, k: int) -> float:
    import torch

    fa, fb = torch.from_numpy(A).float(), torch.from_numpy(B).float()
    n = fa.shape[0]

    def hsic_u(K, L):
        Kt, Lt = K.clone().fill_diagonal_(0), L.clone().fill_diagonal_(0)
        val = (
            torch.sum(Kt * Lt.T)
            + torch.sum(Kt) * torch.sum(Lt) / ((n - 1) * (n - 2))
            - 2 * torch.sum(torch.mm(Kt, Lt)) / (n - 2)
        )
        return val / (n * (n - 3))

    def sim(K, L):
        _, ik = torch.topk(K.clone().fill_diagonal_(float("-inf")), k, dim=1)
        _, il = torch.topk(L.clone().fill_diagonal_(float("-inf")), k, dim=1)
        mask = torch.zeros(n, n).scatter_(1, ik, 1) * torch.zeros(n, n).scatter_(1, il, 1)
        return hsic_u(mask * K, mask * L)

    with torch.no_grad():
        K, L = fa @ fa.T, fb @ fb.T
        return (sim(K, L) / (torch.sqrt(sim(K, K) * sim(L, L)) + 1e-6)).item()


def ours(A: np.ndarray, B: np.ndarray, k: int) -> float:
    from benchmark.knn import knn_graph
    from benchmark.metrics import cknna

    return cknna(knn_graph(A, k, backend="numpy"), knn_graph(B, k, backend="numpy"), k)


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    return info["MemAvailable"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", choices=["dense", "ours"], help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        with np.load(a.data) as z:
            A, B = z["A"], z["B"]
        if a.worker == "dense":
            import torch  # noqa: F401  (imported before the baseline RSS is taken)
        else:
            import benchmark.metrics  # noqa: F401
        fn = dense_reference if a.worker == "dense" else ours
        run_worker(lambda: {"value": fn(A, B, a.k)})
        return
    data = os.path.join(tempfile.mkdtemp(), "data.npz")
    np.savez(data, **dict(zip("AB", make_data(a.n, a.d, a.seed))))
    args = ["--k", str(a.k), "--data", data]
    print(f"CKNNA n={a.n} d={a.d} k={a.k} (threads: {os.cpu_count()} cpus)")
    o = spawn(__file__, args + ["--worker", "ours"])
    print(f"ours (numpy kNN f32 + sparse HSIC): {o['value']:.9f}  {o['seconds']:.2f} s  peak +{gb(o['peak_delta_bytes'])}")
    need = 9 * 4 * a.n**2  # measured peak at n = 10,000: 8.1 n x n float32 buffers
    if need > 0.85 * available_bytes():
        print(f"dense reference skipped: needs ~{gb(need)} (9 n x n float32), {gb(available_bytes())} available")
        return
    r = spawn(__file__, args + ["--worker", "dense"])
    print(f"dense reference (torch f32 n x n):  {r['value']:.9f}  {r['seconds']:.2f} s  peak +{gb(r['peak_delta_bytes'])}")
    print(f"|diff| = {abs(o['value'] - r['value']):.2e}")
    print(f"speed-up {r['seconds'] / o['seconds']:.1f}x, peak-memory ratio {r['peak_delta_bytes'] / max(o['peak_delta_bytes'], 1):.1f}x")


if __name__ == "__main__":
    main()
