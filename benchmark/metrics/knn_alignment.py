"""CKNNA and mutual-kNN from stored kNN lists: exact, O(n k^2) time, O(n k) memory.

Every HSIC term of CKNNA is a sum over the non-zero entries of a masked kernel, and those
entries are exactly the stored top-k similarities, so the n x n matrices of the reference
(platonic-rep) implementation are never needed. Transposed entries are found by scanning the
k slots of the partner row (k^2 compares per row: cache-friendly, no sort), once per graph. See
docs/metric-definitions.md.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from benchmark.errors import DataError
from benchmark.knn.graph import KnnGraph


@dataclass
class _Sparse:
    """Two n x n matrices A, B on one support, stored as padded rows: row i holds entries at
    columns idx[i, s] where valid[i, s], with values a[i, s], b[i, s] (0 where not valid).
    tslot[i, s] is the slot of the transposed entry (idx[i, s], i), or -1 if not in the support."""

    idx: np.ndarray
    valid: np.ndarray
    a: np.ndarray
    b: np.ndarray
    tslot: np.ndarray

    @property
    def n(self) -> int:
        return int(self.idx.shape[0])


def _transpose_slots(g: KnnGraph, k: int, unbiased: bool) -> np.ndarray:
    """For each slot (i, s) of the graph's row-mask lists: the slot of i in the list of idx[i, s], else -1.

    O(n k^2) compares with a gather of partner rows; cached on the graph object, since a model's graph
    meets many partners and every pair needs it.
    """
    cache = g.__dict__.setdefault("_tslot_cache", {})
    key = (k, unbiased)
    if key not in cache:
        idx, _ = _lists(g, k, unbiased)
        n, w = idx.shape
        out = np.empty(n * w, dtype=np.int64)
        idx32, flat = idx.astype(np.int32), idx.ravel()
        rows = np.repeat(np.arange(n, dtype=np.int32), w)
        block = max(1, 2**20 // w)
        for a in range(0, flat.size, block):
            hit = idx32[flat[a : a + block]] == rows[a : a + block, None]
            slot = hit.argmax(axis=1)
            out[a : a + block] = np.where(hit[np.arange(slot.size), slot], slot, -1)
        cache[key] = out.reshape(n, w)
    return cache[key]


def _same_row_slots(ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """For each (i, s): the slot t with ib[i, t] == ia[i, s], else -1. Rows are aligned, so no gather."""
    out = np.empty(ia.shape, dtype=np.int64)
    block = max(1, 2**20 // (ia.shape[1] * ib.shape[1]))
    for a in range(0, ia.shape[0], block):
        eq = ia[a : a + block, :, None] == ib[a : a + block, None, :]
        out[a : a + block] = np.where(eq.any(axis=2), eq.argmax(axis=2), -1)
    return out


def _support(idx: np.ndarray, valid: np.ndarray | None, a: np.ndarray, b: np.ndarray, tslot: np.ndarray) -> _Sparse:
    """The support of the lists `idx` restricted to `valid` slots (None: all); `tslot` is the lists'
    `_transpose_slots`, from which the transposed slots inside the support follow."""
    if valid is None:
        return _Sparse(idx, np.ones(idx.shape, dtype=bool), a, b, tslot)
    t = np.where(valid, tslot, -1)
    has = t >= 0
    t[has] = np.where(valid[idx[has], t[has]], t[has], -1)
    return _Sparse(idx, valid, np.where(valid, a, 0.0), np.where(valid, b, 0.0), t)


def _vdot(x: np.ndarray, y: np.ndarray) -> float:
    """Dot product without BLAS: threaded ddot costs milliseconds on a loaded machine."""
    return float(np.multiply(x, y).sum())


def _hsic(s: _Sparse, unbiased: bool) -> float:
    """HSIC of the two matrices of `s`.

    unbiased: HSIC_u with zero diagonals, m = n (Song et al. 2012, platonic-rep's hsic_unbiased);
    biased: trace(A H B H), H = I - 11^T / n.
    """
    n = s.n
    a, b = s.a, s.b
    if unbiased:
        off = s.idx != np.arange(n)[:, None]
        a, b = np.where(off, a, 0.0), np.where(off, b, 0.0)
    has_t = s.tslot >= 0
    t_rows, t_slots = s.idx[has_t], s.tslot[has_t]
    t1 = _vdot(a[has_t], b[t_rows, t_slots])
    sum_a, sum_b = float(a.sum()), float(b.sum())
    cols = s.idx.ravel()
    col_a = np.bincount(cols, weights=a.ravel(), minlength=n + 1)[:n]
    row_b = b.sum(axis=1)
    if unbiased:
        m = n
        val = t1 + sum_a * sum_b / ((m - 1) * (m - 2)) - 2.0 / (m - 2) * _vdot(col_a, row_b)
        return val / (m * (m - 3))
    col_b = np.bincount(cols, weights=b.ravel(), minlength=n + 1)[:n]
    row_a = a.sum(axis=1)
    return t1 - (_vdot(col_a, row_b) + _vdot(col_b, row_a)) / n + sum_a * sum_b / n**2


class _WeightedHsic:
    """HSIC_u of `s` with row i of both matrices scaled by w_i, for many weight vectors at once.

    Row weights make every term of HSIC_u a quadratic form in w on the support's pattern:
    HSIC_u(w) = (w^T Z w + (w . ra)(w . rb) / ((n-1)(n-2))) / (n (n-3)), with
    Z[i, j_s] = [transposed entry exists] a_is b_(j_s, t) - 2 / (n-2) a_is rb_(j_s) and ra, rb the row
    sums of a, b. One sparse product per batch of weight vectors, O(n k) per vector.
    """

    def __init__(self, s: _Sparse) -> None:
        from scipy import sparse

        n = self.n = s.n
        off = s.idx != np.arange(n)[:, None]
        a, b = np.where(off, s.a, 0.0), np.where(off, s.b, 0.0)
        self.ra, self.rb = a.sum(axis=1), b.sum(axis=1)
        has_t = s.tslot >= 0
        bt = np.zeros_like(b)
        bt[has_t] = b[s.idx[has_t], s.tslot[has_t]]
        z = a * bt - 2.0 / (n - 2) * a * self.rb[s.idx]
        rows = np.repeat(np.arange(n), s.idx.shape[1])
        self.Z = sparse.csr_matrix((z.ravel(), (rows, s.idx.ravel())), shape=(n, n))

    def __call__(self, W: np.ndarray) -> np.ndarray:
        """HSIC_u for each row of W (shape: replicates x n)."""
        n = self.n
        quad = np.einsum("bi,ib->b", W, self.Z @ W.T)
        return (quad + (W @ self.ra) * (W @ self.rb) / ((n - 1) * (n - 2))) / (n * (n - 3))


def _check_pair(ga: KnnGraph, gb: KnnGraph, k: int | None) -> int:
    if ga.n != gb.n:
        raise DataError(
            f"the two kNN graphs have different numbers of points ({ga.n} vs {gb.n}); pair by sample id first"
        )
    k = min(ga.k, gb.k) if k is None else k
    if k > ga.k or k > gb.k:
        raise DataError(
            f"k={k} exceeds the stored neighbours (k={ga.k} and k={gb.k}); recompute the graphs with k >= {k}"
        )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return k


def _lists(g: KnnGraph, k: int, unbiased: bool) -> tuple[np.ndarray, np.ndarray]:
    """The row-mask lists of one graph: top-k without the point itself (unbiased), or, as
    platonic-rep's biased variant (top-k of K with the diagonal included), the point itself with
    K_ii = 1 (rows are L2-normalised) followed by its first k - 1 neighbours."""
    if g.metric != "cosine":
        raise DataError(f"CKNNA needs cosine (inner-product) kNN graphs, got metric {g.metric!r}")
    idx, val = g.indices[:, :k], g.values[:, :k].astype(np.float64)
    if unbiased:
        return idx, val
    self_idx = np.arange(g.n, dtype=np.int64)[:, None]
    return np.hstack([self_idx, idx[:, : k - 1]]), np.hstack([np.ones((g.n, 1)), val[:, : k - 1]])


def _both_support(ga: KnnGraph, gb: KnnGraph, k: int, unbiased: bool) -> _Sparse:
    """Support of (M*K, M*L), M = M_K * M_L (row masks, not symmetrised)."""
    ia, va = _lists(ga, k, unbiased)
    ib, vb = _lists(gb, k, unbiased)
    slot_b = _same_row_slots(ia, ib)
    hit = slot_b >= 0
    vb_on_a = np.take_along_axis(vb, np.maximum(slot_b, 0), axis=1)
    return _support(ia, hit, va, vb_on_a, _transpose_slots(ga, k, unbiased))


def _self_support(g: KnnGraph, k: int, unbiased: bool) -> _Sparse:
    idx, val = _lists(g, k, unbiased)
    return _support(idx, None, val, val, _transpose_slots(g, k, unbiased))


def _self_hsic(g: KnnGraph, k: int, unbiased: bool) -> float:
    """HSIC(M_K*K, M_K*K), cached on the graph object: a model's graph meets many partners."""
    cache = g.__dict__.setdefault("_self_hsic_cache", {})
    key = (k, unbiased)
    if key not in cache:
        cache[key] = _hsic(_self_support(g, k, unbiased), unbiased)
    return cache[key]


def _ratio(kl: float, kk: float, ll: float, eps: float) -> float:
    prod = kk * ll
    if prod < 0 or not np.isfinite(prod):
        warnings.warn(f"CKNNA undefined: HSIC_KK * HSIC_LL = {prod:.3g} < 0; returning nan", stacklevel=3)
        return float("nan")
    return kl / (np.sqrt(prod) + eps)


def _weighted_cknna(kl: np.ndarray, kk: np.ndarray, ll: np.ndarray, eps: float) -> np.ndarray:
    """`_ratio` over arrays of replicates, nan (silently: the caller drops them) where HSIC_KK * HSIC_LL < 0."""
    prod = kk * ll
    ok = np.isfinite(prod) & (prod >= 0)
    return np.where(ok, kl / (np.sqrt(np.where(ok, prod, 0.0)) + eps), np.nan)


def cknna(ga: KnnGraph, gb: KnnGraph, k: int | None = None, eps: float = 1e-6, unbiased: bool = True) -> float:
    """CKNNA (Huh et al. 2024) between two cosine kNN graphs of the same points, exactly as
    platonic-rep computes it densely: HSIC(M*K, M*L) / (sqrt(HSIC(M_K*K) HSIC(M_L*L)) + eps).

    k defaults to the smaller stored k. unbiased=True (default): HSIC_u, masks exclude the
    point itself. unbiased=False: biased HSIC, masks are the top-k of K including the point
    itself (its self-similarity taken as 1, the rows being L2-normalised), like platonic-rep.
    Not exactly symmetric in (ga, gb): the asymmetric row masks make the colsum . rowsum term
    order-dependent. Returns nan with a warning if HSIC_KK * HSIC_LL < 0 (degenerate masks).

    Cost (after the two graphs): O(n k^2) time (slot matching) + O(n k) for the HSIC sums, O(n k)
    memory; each graph's transposed slots and self-HSIC (O(n k^2)) are cached on the graph object.
    """
    k = _check_pair(ga, gb, k)
    if ga.n < 4:
        raise DataError(f"CKNNA needs at least 4 points, got {ga.n}")
    if not unbiased and k < 2:
        raise DataError("biased CKNNA needs k >= 2 (the point itself fills one slot)")
    kl = _hsic(_both_support(ga, gb, k, unbiased), unbiased)
    return _ratio(kl, _self_hsic(ga, k, unbiased), _self_hsic(gb, k, unbiased), eps)


def _overlaps(ga: KnnGraph, gb: KnnGraph, k: int) -> np.ndarray:
    """|N_A(i) ∩ N_B(i)| for every point i (lists hold distinct indices)."""
    out = np.empty(ga.n, dtype=np.int64)
    step = max(1, 2**22 // (k * k))
    for a in range(0, ga.n, step):
        ia, ib = ga.indices[a : a + step, :k], gb.indices[a : a + step, :k]
        out[a : a + step] = (ia[:, :, None] == ib[:, None, :]).any(axis=2).sum(axis=1)
    return out


def mutual_knn(ga: KnnGraph, gb: KnnGraph, k: int | None = None) -> float:
    """Mean over points of |N_A(i) ∩ N_B(i)| / k (neighbour lists exclude the point itself).
    Any graph metric is accepted; the pipeline uses cosine graphs as platonic-rep does.
    Cost: O(n k^2) time, O(n k) memory (blocks of 2^22 / k^2 rows)."""
    k = _check_pair(ga, gb, k)
    return float(_overlaps(ga, gb, k).mean() / k)


def alignment_replicates(
    ga: KnnGraph,
    gb: KnnGraph,
    metric: str = "cknna",
    k: int | None = None,
    n_boot: int = 200,
    seed: int = 0,
    eps: float = 1e-6,
) -> np.ndarray:
    """Bootstrap replicates of cknna or mutual_knn, resampling points as queries (NaN where undefined).

    Each replicate draws multinomial counts w (sum n) over points and weights row i of every
    masked kernel (or point i's overlap) by w_i, keeping the stored neighbour lists fixed: the
    replicates reflect which points' neighbourhoods enter the sums, conditional on the two
    graphs (re-running the kNN on each resample is what it saves). For mutual_knn this is the
    ordinary bootstrap of a mean of per-point overlaps. The draws depend only on (n, n_boot, seed),
    so every model of a task aligned to the same reference with the same seed is resampled on the
    same structure ids: replicate b of two models is one joint resample (what rank intervals need).

    Cost: O(n_boot n k) time (one sparse product per batch of replicates, `_WeightedHsic`),
    O(n k + batch n) memory (batch = min(n_boot, 2^23 / n) replicates).
    """
    if metric not in ("cknna", "mutual_knn"):
        raise ValueError(f"alignment_replicates supports 'cknna' and 'mutual_knn', got {metric!r}")
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    k = _check_pair(ga, gb, k)
    n = ga.n
    if metric == "cknna" and n < 4:
        raise DataError(f"CKNNA needs at least 4 points, got {n}")
    rng = np.random.default_rng(seed)
    p = np.full(n, 1.0 / n)
    batch = max(1, min(n_boot, 2**23 // n))  # replicates per sparse product: O(batch n) memory
    if metric == "mutual_knn":
        ov = _overlaps(ga, gb, k) / k
    else:
        both, sa, sb = (_WeightedHsic(_both_support(ga, gb, k, True)), _WeightedHsic(_self_support(ga, k, True)),
                        _WeightedHsic(_self_support(gb, k, True)))

    def replicates(W: np.ndarray) -> np.ndarray:
        return W @ ov / n if metric == "mutual_knn" else _weighted_cknna(both(W), sa(W), sb(W), eps)

    return np.concatenate([replicates(rng.multinomial(n, p, size=min(batch, n_boot - a)).astype(np.float64))
                           for a in range(0, n_boot, batch)])


def replicate_interval(reps: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (undefined replicates dropped); DataError when fewer
    than 2 are defined (degenerate kNN masks on almost every resample)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    reps = np.asarray(reps, dtype=np.float64)
    reps = reps[np.isfinite(reps)]
    if reps.size < 2:
        raise DataError("bootstrap CKNNA is undefined on almost every resample (degenerate kNN masks)")
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def alignment_ci(
    ga: KnnGraph,
    gb: KnnGraph,
    metric: str = "cknna",
    k: int | None = None,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
    eps: float = 1e-6,
) -> tuple[float, float]:
    """Percentile bootstrap interval for cknna or mutual_knn over `alignment_replicates` (same cost).

    A mutual_knn replicate is always defined; an undefined CKNNA replicate is dropped.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return replicate_interval(alignment_replicates(ga, gb, metric, k, n_boot, seed, eps), level)
