"""Can the raw-feature euclidean graph (TwoNN/MLE) ride on the clipped cosine pass (CKNNA) exactly?

    python bench/clip_bounds.py $MATTERALIGN_CACHE        # a cache holding the default run's embeddings

The cosine pass multiplies the prepared rows c / |c|, c = clip(x, -q, q) (metric contract); TwoNN/MLE need
|x - y| on the raw rows x = c + r. From the clipped product alone the raw one is known only to within
|x.y - c_x.c_y| <= q (|r_x|_1 + |r_y|_1) + |r_x| |r_y|, so a point can be ruled out of i's 20 raw-euclidean
neighbours only when its lower bound exceeds i's 20th distance. For every cached embedding this prints the
share of the row norm that clipping removes (median |r| / |x|) and, with the exact 20th-neighbour distance as
the threshold (the best any pass could know), the share of all points that would stay candidates. Dense
n x n arithmetic: meant for the default run's small tasks (n <= a few thousand).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

K = 20


def candidate_share(X: np.ndarray, k: int = K) -> tuple[float, float] | None:
    """(median |r| / |x|, mean share of points whose lower bound is within the exact k-th distance); None when
    the clip threshold is 0 (sparse features: no clipping, the two geometries are one)."""
    q = float(np.quantile(np.abs(X), 0.95, axis=1).mean())
    if q == 0:
        return None
    C = np.clip(X, -q, q)
    R = X - C
    rho, l1 = np.linalg.norm(R, axis=1), np.abs(R).sum(1)
    nsq = np.einsum("ij,ij->i", X, X)
    D2 = nsq[:, None] + nsq[None, :] - 2 * X @ X.T
    bound = q * (l1[:, None] + l1[None, :]) + rho[:, None] * rho[None, :]
    low = nsq[:, None] + nsq[None, :] - 2 * (C @ C.T) - 2 * bound
    assert (low <= D2 + 1e-6 * np.abs(D2).max()).all()
    np.fill_diagonal(D2, np.inf)
    np.fill_diagonal(low, np.inf)
    tau = np.partition(D2, k - 1, axis=1)[:, k - 1]
    share = (low <= tau[:, None]).mean(axis=1)
    return float(np.median(rho / np.sqrt(nsq))), float(share.mean())


def main() -> None:
    cache = Path(sys.argv[1] if len(sys.argv) > 1 else Path.home() / ".cache" / "matteralign")
    rows = []
    for meta in sorted(cache.glob("embeddings/*/meta.json")):
        m = json.loads(meta.read_text())
        X = np.load(meta.parent / "features.npy").astype(np.float64)
        if X.ndim != 2 or X.shape[0] <= K:
            continue
        out = candidate_share(X)
        if out is not None:
            rows.append((m["model"], m["task"], X.shape[0], X.shape[1], *out))
    print("| model | task | n | d | median clipped share of the norm | candidates (share of n) |\n|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: -r[5]):
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.3f} | {r[5]:.3f} |")
    if rows:
        clip, cand = np.array([r[4] for r in rows]), np.array([r[5] for r in rows])
        print(f"\n{len(rows)} embeddings: clipped share of the norm {clip.min():.2f}-{clip.max():.2f} (median "
              f"{np.median(clip):.2f}); candidates {cand.min():.3f}-{cand.max():.3f} of n (median {np.median(cand):.3f})")


if __name__ == "__main__":
    main()
