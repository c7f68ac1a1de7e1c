"""IDCor's cost in n: setup (exact observed IDs + two float32 distance matrices) and per-permutation time.

    python bench/bench_idcor.py --n 3000 10000 --perms 999 41

For each n, `idcor_test` on the first n rows of bench_stage2's synthetic features (d = 2,048 each), once
with 1 permutation (the setup) and once with --perms permutations; the difference over (perms - 1) is the
cost of one permutation. Peak: VmHWM rise over the call's starting RSS (reset through /proc/self/clear_refs).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_stage2 import _reset_peak, _status, features  # noqa: E402

from benchmark.metrics import idcor_test  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[3000, 10000])
    p.add_argument("--perms", type=int, nargs="+", default=[999, 41], help="one per --n")
    p.add_argument("--d", type=int, default=2048)
    a = p.parse_args()
    if len(a.perms) != len(a.n):
        p.error("give one --perms value per --n value")
    for n, perms in zip(a.n, a.perms):
        A, B = features(n, a.d, 0)
        secs = []
        for n_perm in (1, perms):
            _reset_peak()
            start = _status("VmRSS")
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = idcor_test(A, B, n_perm=n_perm, max_n=None)
            secs.append(time.perf_counter() - t0)
            print(f"n={n} n_perm={n_perm}: {secs[-1]:.2f} s, peak +{(_status('VmHWM') - start) / 2**30:.2f} GiB, "
                  f"corr {r.corr:.4f}, p {r.p_value:.4g} (floor {r.p_floor:.4g})", flush=True)
        per = (secs[1] - secs[0]) / max(perms - 1, 1)
        print(f"n={n}: setup {secs[0]:.2f} s, {per * 1e3:.1f} ms per permutation, "
              f"999 permutations ~{secs[0] + 999 * per:.0f} s", flush=True)


if __name__ == "__main__":
    main()
