"""IDCor (Basile et al. 2025): correlation of two representations through intrinsic dimension.

The permutation null is cheap because the joint squared distances of [X | Y[perm]] are
D_X + D_Y[perm][:, perm]: both n x n matrices are computed once, and every permutation is one add and
a two-smallest scan, with no new distance computation. The permutations permute blocks of rows of a
once-shuffled order (a group of permutations, so the test is valid under exchangeable rows), which turns
the permuted copy of D_Y into contiguous block copies instead of an element gather.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from benchmark.errors import DataError
from benchmark.knn.graph import check_matrix
from benchmark.metrics.intrinsic_dim import twonn

#: permutations by default: the smallest attainable p-value is 1 / (DEFAULT_N_PERM + 1) = 0.001
DEFAULT_N_PERM = 999
#: above this many points IDCor runs on a seeded, declared subsample (two n x n float32 matrices: 2 x 36 MB;
#: 999 permutations ~0.4x one 50,000 x 2,048 kNN graph; 10,000 points: ~3x and 1.6 GB, see bench/README.md)
DEFAULT_MAX_N = 3000
_TIE_RTOL = 1e-10


@dataclass(frozen=True)
class IdcorResult:
    """IDCor and its permutation test. p_floor = 1 / (n_perm + 1) is the smallest p the test can return."""

    corr: float
    p_value: float
    p_floor: float
    n: int
    n_perm: int
    id_x: float
    id_y: float
    id_joint: float


def _standardise(Z: np.ndarray) -> np.ndarray:
    Z = Z.astype(np.float64)
    return (Z - Z.mean(axis=0)) / (Z.std(axis=0, ddof=1) + 1e-9)


def _id(Z: np.ndarray) -> float:
    return twonn(Z, discard_fraction=0.1, drop_ties=True)


def _sq_dists(Z: np.ndarray, block: int = 1024) -> np.ndarray:
    """n x n squared Euclidean distances, float32 (computed in float64 per row block: no n x n float64
    temporary); exact zeros on the diagonal and between identical rows. O(n^2 d) time, n^2 float32 memory."""
    n = Z.shape[0]
    sq = np.einsum("ij,ij->i", Z, Z)
    D = np.empty((n, n), dtype=np.float32)
    for a in range(0, n, block):
        e = min(a + block, n)
        B = Z[a:e] @ Z.T
        B *= -2
        B += sq[a:e, None]
        B += sq[None, :]
        np.maximum(B, 0, out=B)
        D[a:e] = B
    np.fill_diagonal(D, 0)
    _, inv, counts = np.unique(Z, axis=0, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    for grp in np.flatnonzero(counts > 1):
        rows = np.flatnonzero(inv == grp)
        D[np.ix_(rows, rows)] = 0
    return D


def _twonn_from_r(r1: np.ndarray, r2: np.ndarray) -> float:
    """The authors' TwoNN (drop r1 = 0 and r1 = r2, discard the largest 10% of log(r2 / r1)) from squared r1, r2."""
    r1, r2 = r1.astype(np.float64), r2.astype(np.float64)
    keep = (r1 > 0) & (r2 - r1 > _TIE_RTOL * r2)
    n = int(keep.sum())
    n_eff = int(n * 0.9)
    if n_eff < 2:
        return float("nan")
    x = np.sort(0.5 * np.log(r2[keep] / r1[keep]))[:n_eff]
    y = -np.log(1 - np.arange(1, n_eff + 1) / n)
    return float(x @ y / (x @ x))


def _null_ids(
    DX: np.ndarray, DY: np.ndarray, n_perm: int, rng: np.random.Generator, block: int, threads: int
) -> np.ndarray:
    """ID([X | Y[perm]]) for n_perm random permutations: of blocks of `block` rows (n a multiple of it),
    or of single rows when block < 8 (an element gather, ~3x slower).

    Row slab a of the joint matrix is DX[a] + DY[perm(a)] with DY's columns taken in the permuted order:
    one cache-sized slab at a time, then its two smallest entries per row. The permutations are drawn
    first (so the result does not depend on `threads`), then split over threads: numpy's element-wise
    loops release the GIL."""
    n = DX.shape[0]
    single = block < 8
    slab = 64 if single else block
    nb = n // block
    perms = [rng.permutation(n if single else nb) for _ in range(n_perm)]
    out = np.empty(n_perm)

    def work(todo: range) -> None:
        r1, r2 = np.empty(n), np.empty(n)
        J = np.empty((slab, n), dtype=DX.dtype)
        for p in todo:
            perm = perms[p]
            for a in range(0, n, slab):
                e = min(a + slab, n)
                Jv, rows = J[: e - a], np.arange(e - a)
                if single:
                    np.add(DX[a:e], np.take(DY[perm[a:e]], perm, axis=1), out=Jv)
                else:
                    b = perm[a // block]
                    src = DY[b * block : (b + 1) * block].reshape(block, nb, block)
                    np.add(DX[a:e], np.take(src, perm, axis=1).reshape(block, n), out=Jv)
                Jv[rows, rows + a] = np.inf
                i1 = Jv.argmin(axis=1)
                r1[a:e] = Jv[rows, i1]
                Jv[rows, i1] = np.inf
                r2[a:e] = Jv.min(axis=1)
            out[p] = _twonn_from_r(r1, r2)

    threads = max(1, min(threads, n_perm))
    chunks = [range(t, n_perm, threads) for t in range(threads)]
    if threads == 1:
        work(chunks[0])
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, chunks))
    return out


def _block_size(n: int) -> int:
    """The permutation group's block: the divisor of n nearest n / 64, at most 256 rows (1 for a prime n)."""
    divs = [b for b in range(1, min(256, n) + 1) if n % b == 0]
    return min(divs, key=lambda b: abs(b - n / 64))


def idcor_test(
    X: np.ndarray,
    Y: np.ndarray,
    n_perm: int = DEFAULT_N_PERM,
    seed: int = 0,
    max_n: int | None = DEFAULT_MAX_N,
    threads: int | None = None,
) -> IdcorResult:
    """IDCor with its one-sided permutation p-value and that p-value's floor.

    Per the IDCor authors: columns standardised (ddof = 1, + 1e-9); TwoNN that drops points with r1 = 0
    or r1 = r2 (here: r2 - r1 <= 1e-10 r2); corr = (ID(X) + ID(Y) - ID([X | Y])) / max(ID(X), ID(Y));
    p = (#{b : ID([X | Y[perm_b]]) < ID([X | Y])} + 1) / (n_perm + 1), floor 1 / (n_perm + 1).
    The observed IDs are exact (kNN graphs with float64 distances); the null IDs come from float32
    squared-distance matrices (relative error ~1e-7 in each null ID). Above max_n points (None: never)
    a seeded random subsample of max_n points is used, with a warning. threads (None: the CPUs this
    process may use) splits the permutations; the result does not depend on it.

    Cost: three exact 2-NN graphs, O(n^2 (d_X + d_Y)), and the two n x n distance matrices (same order);
    then O(n^2) memory-bound work per permutation, no distance computation: O(n^2 (d_X + d_Y) + n_perm n^2)
    time in all. Measured at d_X = d_Y = 2,048 on 2 cores (bench/bench_idcor.py): n = 3,000: 4.8 s setup +
    10-14 ms per permutation (999: 15-19 s); n = 10,000: 31 s + 78-112 ms (999: 110-143 s).
    Memory: two n^2 float32 distance matrices (72 MB at 3,000, 0.8 GB at 10,000, 7.2 GB at the IDCor authors'
    30,000) plus O(1024 n) float64 per row block and the standardised O(n (d_X + d_Y)) copies.
    """
    X, Y = check_matrix(X, "X"), check_matrix(Y, "Y")
    n = X.shape[0]
    if Y.shape[0] != n:
        raise DataError(f"X and Y must have the same rows (paired samples): {n} vs {Y.shape[0]}")
    if n_perm < 1:
        raise ValueError(f"n_perm must be >= 1, got {n_perm}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)  # the statistic ignores row order; the null's blocks are random subsets
    if max_n is not None and n > max_n:
        order = order[:max_n]
        warnings.warn(f"IDCor: N={n} > max_n={max_n}; computed on a seeded random subsample of {max_n} points "
                      f"(seed={seed})", stacklevel=2)
    Xs, Ys = _standardise(X[order]), _standardise(Y[order])
    id1, id2 = _id(Xs), _id(Ys)
    id_joint = _id(np.hstack([Xs, Ys]))
    corr = (id1 + id2 - id_joint) / max(id1, id2)
    DX, DY = _sq_dists(Xs), _sq_dists(Ys)
    threads = len(os.sched_getaffinity(0)) if threads is None else threads
    null = _null_ids(DX, DY, n_perm, rng, _block_size(Xs.shape[0]), threads)
    below = int(np.sum(null < id_joint))
    return IdcorResult(float(corr), (below + 1) / (n_perm + 1), 1 / (n_perm + 1), int(Xs.shape[0]), n_perm,
                       float(id1), float(id2), float(id_joint))


def idcor(
    X: np.ndarray, Y: np.ndarray, n_perm: int | None = None, seed: int = 0, max_n: int | None = DEFAULT_MAX_N
) -> tuple[float, float]:
    """(corr, p) of `idcor_test` (n_perm None: DEFAULT_N_PERM = 999, p floor 0.001); see there for cost."""
    r = idcor_test(X, Y, DEFAULT_N_PERM if n_perm is None else n_perm, seed, max_n)
    return r.corr, r.p_value
