"""Exact k-nearest-neighbour graphs: the only O(n^2) step of the alignment metrics.

Every metric downstream (CKNNA, mutual-kNN, TwoNN, MLE) reads the stored top-k lists, so the
graph is computed once per model and reused for every pair. Memory is O(block_size * n + n k):
the n x n similarity matrix is never held.

Ties are broken by index (lower index first) on every backend, so a graph is a deterministic
function of its input; points are never their own neighbours (even when duplicated).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from benchmark.errors import DataError

METRICS = ("cosine", "euclidean")
BACKENDS = ("auto", "numpy", "faiss", "torch")


@dataclass
class KnnGraph:
    """Top-k neighbour lists of n points.

    indices: (n, k) int64, row i = i's neighbours best first, i itself excluded.
    values: (n, k) cosine similarity (descending) for metric "cosine", Euclidean distance
    (ascending) for metric "euclidean".
    """

    indices: np.ndarray
    values: np.ndarray
    metric: str

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if self.indices.shape != self.values.shape or self.indices.ndim != 2:
            raise ValueError(f"indices {self.indices.shape} and values {self.values.shape} must be equal 2-D shapes")

    @property
    def n(self) -> int:
        return int(self.indices.shape[0])

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def truncate(self, k: int) -> "KnnGraph":
        """The graph with only each point's first k neighbours (k <= self.k)."""
        if not 1 <= k <= self.k:
            raise DataError(f"cannot truncate a k={self.k} graph to k={k}")
        if k == self.k:
            return self
        return KnnGraph(self.indices[:, :k].copy(), self.values[:, :k].copy(), self.metric)


def check_matrix(X: np.ndarray, name: str = "X") -> np.ndarray:
    """X as an array, validated as a non-empty 2-D real (samples x features) matrix with finite entries.

    The one input check of the kNN engine and the metrics: raises DataError naming `name`, the shape or
    dtype, and for NaN/inf how many rows (and the first ones) to fix. O(n d) time, O(8192 d) extra memory.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise DataError(f"{name} must be a 2-D (samples x features) array, got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{name} is empty: shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise DataError(f"{name} must be real numbers, got dtype {X.dtype}")
    bad = np.concatenate([~np.isfinite(X[a : a + 8192]).all(axis=1) for a in range(0, X.shape[0], 8192)])
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DataError(
            f"{name} has NaN/inf in {rows.size} of {X.shape[0]} rows (first: {rows[:5].tolist()}); "
            "fix or drop those samples before computing metrics"
        )
    return X


def _float(X: np.ndarray) -> np.ndarray:
    """float32 stays float32 (half the memory and GEMM time); everything else becomes float64."""
    return X if X.dtype in (np.float32, np.float64) else X.astype(np.float64)


def duplicate_rows(X: np.ndarray, block: int = 4096) -> np.ndarray:
    """Boolean mask of rows that equal (value for value) a row with a lower index.

    O(n d) time, O(block d) extra memory: rows are hashed exactly (integer view of the bits,
    -0.0 folded into 0.0, random odd multipliers, sums mod 2^64) so equal rows always collide;
    only colliding rows are compared exactly.
    """
    n, d = X.shape
    X = _float(X)
    uint = np.uint32 if X.dtype == np.float32 else np.uint64
    mult = np.random.default_rng(12345).integers(1, 2**63, size=d, dtype=np.uint64) | np.uint64(1)
    h = np.empty(n, dtype=np.uint64)
    for a in range(0, n, block):
        bits = (X[a : a + block] + 0.0).view(uint).astype(np.uint64)
        bits *= mult
        h[a : a + block] = bits.sum(axis=1, dtype=np.uint64)
    dup = np.zeros(n, dtype=bool)
    order = np.argsort(h, kind="stable")
    hs = h[order]
    eq = hs[1:] == hs[:-1]
    if not eq.any():
        return dup
    run = np.cumsum(np.concatenate([[True], ~eq]))
    sizes = np.bincount(run)
    for r in np.flatnonzero(sizes > 1):
        members = np.sort(order[run == r])
        _, first = np.unique(X[members] + 0.0, axis=0, return_index=True)
        dup[members] = True
        dup[members[first]] = False
    return dup


def prepare_features(X: np.ndarray, clip_quantile: float | None = 0.95, clip_mode: str = "mean") -> np.ndarray:
    """platonic-rep feature preparation: clip at a quantile of |x|, then L2-normalise each row.

    clip_mode "mean": the threshold is the mean over samples of each row's quantile of |x| (the
    platonic-rep CLI default); "global": the quantile of |x| over the whole array (its `exact`
    mode); clip_quantile None: no clipping. No mean-centring. float32 input stays float32.

    Raises DataError for non-2-D input, NaN/inf (naming how many rows), and rows that are all
    zero after clipping (their direction is undefined, so no cosine can be computed).
    """
    X = _float(check_matrix(X))
    if clip_quantile is not None:
        if not 0.0 < clip_quantile <= 1.0:
            raise ValueError(f"clip_quantile must be in (0, 1], got {clip_quantile}")
        A = np.abs(X)
        if clip_mode == "mean":
            q = float(np.quantile(A, clip_quantile, axis=1).mean())
        elif clip_mode == "global":
            q = float(np.quantile(A, clip_quantile))
        else:
            raise ValueError(f"clip_mode must be 'mean' or 'global', got {clip_mode!r}")
        del A
        X = np.clip(X, -q, q)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    zero = norms[:, 0] == 0
    if zero.any():
        rows = np.flatnonzero(zero)
        raise DataError(
            f"{rows.size} of {X.shape[0]} rows are all zero after clipping (first: {rows[:5].tolist()}); "
            "their cosine similarity is undefined: drop those samples or check the embedding"
        )
    return (X / norms).astype(X.dtype, copy=False)


SPARSE_NOTE = "clip threshold (0.95 quantile of |x|) is 0 for these sparse features: normalised without clipping"


def prepare_for_alignment(X: np.ndarray) -> tuple[np.ndarray, str | None]:
    """`prepare_features` with the benchmark's one exception, and a note saying when it applied.

    Sparse features (e.g. fingerprints) have a clipping threshold (mean over rows of the 0.95 quantile of
    |x|) of 0, so clipping would zero every row; that threshold, computed on the data, decides that they are
    L2-normalised without clipping instead. Any DataError of `prepare_features` propagates.
    """
    X = _float(check_matrix(X))
    if float(np.quantile(np.abs(X), 0.95, axis=1).mean()) == 0.0:
        return prepare_features(X, clip_quantile=None), SPARSE_NOTE
    return prepare_features(X), None


def topk_rows(S: np.ndarray, k: int, col_offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of every row of the score block S: (values, column indices + col_offset), each row
    ordered as argpartition leaves it, the k-th place decided by score descending, ties by column index.
    O(rows * cols) time (argpartition), plus a full sort of the rows that tie at the k-th score."""
    part = np.argpartition(S, S.shape[1] - k, axis=1)[:, S.shape[1] - k :]
    vals = np.take_along_axis(S, part, axis=1)
    thr = vals.min(axis=1)
    tied = np.flatnonzero((S >= thr[:, None]).sum(axis=1) > k)
    for r in tied:
        order = np.lexsort((np.arange(S.shape[1]), -S[r]))[:k]
        part[r] = order
        vals[r] = S[r, order]
    return vals, part.astype(np.int64) + col_offset


def _merge(top_v: np.ndarray, top_i: np.ndarray, cand_v: np.ndarray, cand_i: np.ndarray) -> None:
    """Merge candidates into running top-k lists in place (score descending, index ascending)."""
    v = np.concatenate([top_v, cand_v], axis=1)
    i = np.concatenate([top_i, cand_i], axis=1)
    order = np.lexsort((i, -v), axis=1)[:, : top_v.shape[1]]
    top_v[:] = np.take_along_axis(v, order, axis=1)
    top_i[:] = np.take_along_axis(i, order, axis=1)


def _merge_candidates(
    top_v: np.ndarray, top_i: np.ndarray, owner: np.ndarray, idx: np.ndarray, val: np.ndarray, n: int
) -> None:
    """Merge sparse candidates (owner = list row, grouped ascending) into the running lists."""
    if owner.size == 0:
        return
    rows, starts, counts = np.unique(owner, return_index=True, return_counts=True)
    pos = np.arange(owner.size) - np.repeat(starts, counts)
    cv = np.full((rows.size, int(counts.max())), -np.inf, dtype=top_v.dtype)
    ci = np.full(cv.shape, n, dtype=np.int64)
    slot = np.repeat(np.arange(rows.size), counts)
    cv[slot, pos] = val
    ci[slot, pos] = idx
    tv, ti = top_v[rows], top_i[rows]
    _merge(tv, ti, cv, ci)
    top_v[rows], top_i[rows] = tv, ti


def _candidates(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the True entries of a C-contiguous 2-D mask, in row-major order.

    One pass over the flat mask: np.nonzero on a 2-D array is ~15x slower (measured on 1024 x 4096).
    """
    return np.divmod(np.flatnonzero(mask), mask.shape[1])


def _update_rows(top_v: np.ndarray, top_i: np.ndarray, S: np.ndarray, col_offset: int, n: int) -> None:
    """Fold the rows of score block S (row r = list r) into the running top-k lists.

    Only entries >= a row's current k-th score can enter; after a row's first block these are
    few, so most rows need a compare + nonzero; rows with many candidates get a partition.
    """
    k = top_v.shape[1]
    if S.shape[1] > 2 * k and np.isneginf(top_v[:, -1]).all():  # the lists' first block: all rows are heavy
        _merge(top_v, top_i, *topk_rows(S, k, col_offset))
        return
    r, c = _candidates(S >= top_v[:, -1:])
    counts = np.bincount(r, minlength=S.shape[0])
    heavy = counts > 2 * k
    if heavy.any():
        rows = np.flatnonzero(heavy)
        cv, ci = topk_rows(S[rows], k, col_offset)
        tv, ti = top_v[rows], top_i[rows]
        _merge(tv, ti, cv, ci)
        top_v[rows], top_i[rows] = tv, ti
        light = ~heavy[r]
        r, c = r[light], c[light]
    _merge_candidates(top_v, top_i, r, c + col_offset, S[r, c], n)


def _update_cols(top_v: np.ndarray, top_i: np.ndarray, S: np.ndarray, row_offset: int, n: int) -> None:
    """As _update_rows for the columns of S (column c = list c), without transposing S."""
    k = top_v.shape[1]
    r, c = _candidates(S >= top_v[:, -1][None, :])
    counts = np.bincount(c, minlength=S.shape[1])
    heavy = counts > 2 * k
    if heavy.any():
        cols = np.flatnonzero(heavy)
        cv, ci = topk_rows(np.ascontiguousarray(S[:, cols].T), k, row_offset)
        tv, ti = top_v[cols], top_i[cols]
        _merge(tv, ti, cv, ci)
        top_v[cols], top_i[cols] = tv, ti
        light = ~heavy[c]
        r, c = r[light], c[light]
    order = np.argsort(c, kind="stable")
    r, c = r[order], c[order]
    _merge_candidates(top_v, top_i, c, r + row_offset, S[r, c], n)


#: a block visitor: called as visit(S, a, b) with S = X[a:a+rows] @ X[b:b+cols].T (read only, in the pass's
#: dtype: float32 for float64 X, see `_selection_dtype`) for every block pair a <= b of the upper triangle, so
#: a second quantity (e.g. rank counts, which bound float32 rounding) rides on the kNN pass's products
BlockVisitor = Callable[[np.ndarray, int, int], None]


def _knn_numpy(
    X: np.ndarray, k: int, metric: str, block_size: int, chunk: int = 1024, visit: BlockVisitor | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Blocked GEMM over the upper triangle of X X^T: each block pair is multiplied once and
    updates the lists of both its row block and its column block. Diagonal blocks go first so
    every list starts from a good threshold. Scores: inner products (cosine) or minus squared
    distances (euclidean). Temporaries are O(chunk * block_size) besides the block itself.
    visit: called with each raw product block before it is turned into scores."""
    n = X.shape[0]
    top_v = np.full((n, k), -np.inf, dtype=X.dtype)
    top_i = np.full((n, k), n, dtype=np.int64)
    sq = np.einsum("ij,ij->i", X, X) if metric == "euclidean" else None
    starts = list(range(0, n, block_size))
    pairs = [(a, a) for a in starts] + [(a, b) for a in starts for b in starts if b > a]
    for a, b in pairs:
        ea, eb = min(a + block_size, n), min(b + block_size, n)
        S = X[a:ea] @ X[b:eb].T
        if visit is not None:
            visit(S, a, b)
        if metric == "euclidean":
            S *= 2
            S -= sq[a:ea, None]
            S -= sq[None, b:eb]
        if a == b:
            np.fill_diagonal(S, -np.inf)
        for r0 in range(a, ea, chunk):
            r1 = min(r0 + chunk, ea)
            _update_rows(top_v[r0:r1], top_i[r0:r1], S[r0 - a : r1 - a], b, n)
        if a != b:
            for c0 in range(b, eb, chunk):
                c1 = min(c0 + chunk, eb)
                _update_cols(top_v[c0:c1], top_i[c0:c1], S[:, c0 - b : c1 - b], a, n)
        del S
    return top_v, top_i


def _drop_self(D_i: np.ndarray, D_v: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """From m + 1 search results per row, drop the point itself (or the last result if it is
    absent, i.e. duplicates filled the list), then order by score descending, index ascending."""
    n = D_i.shape[0]
    is_self = D_i == np.arange(n)[:, None]
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), m)
    keep = np.ones_like(is_self)
    keep[np.arange(n), drop] = False
    idx = D_i[keep].reshape(n, m).astype(np.int64)
    val = D_v[keep].reshape(n, m)
    order = np.lexsort((idx, -val), axis=1)
    return np.take_along_axis(val, order, axis=1), np.take_along_axis(idx, order, axis=1)


def _knn_faiss(X: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """faiss exact flat search (IndexFlatIP / IndexFlatL2, float32). k + 2 results per row are
    fetched so that a tie at the k-th place is detected; those rows are redone exactly here,
    so ties are broken by index as on the other backends."""
    import faiss

    n = X.shape[0]
    Xf = np.ascontiguousarray(X, dtype=np.float32)
    index = faiss.IndexFlatIP(Xf.shape[1]) if metric == "cosine" else faiss.IndexFlatL2(Xf.shape[1])
    index.add(Xf)
    m = min(k + 1, n - 1)
    D, I = index.search(Xf, m + 1)
    v, i = _drop_self(I, D if metric == "cosine" else -D, m)
    v = v.astype(X.dtype)
    if m > k:
        for r in np.flatnonzero(v[:, k] == v[:, k - 1]):
            S = X @ X[r] if metric == "cosine" else -np.einsum("ij,ij->i", X - X[r], X - X[r])
            S[r] = -np.inf
            v[r, :k], i[r, :k] = (a[0] for a in topk_rows(S[None, :], k, 0))
    return v[:, :k], i[:, :k]


def _knn_torch(
    X: np.ndarray, k: int, metric: str, block_size: int, device: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Row blocks of X X^T on a torch device (GPU if given); ties fixed exactly on the host."""
    import torch

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    n = X.shape[0]
    T = torch.from_numpy(np.ascontiguousarray(X)).to(dev)
    sq = (T * T).sum(dim=1) if metric == "euclidean" else None
    out_v = np.empty((n, k), dtype=X.dtype)
    out_i = np.empty((n, k), dtype=np.int64)
    for a in range(0, n, block_size):
        e = min(a + block_size, n)
        S = T[a:e] @ T.T
        if metric == "euclidean":
            S.mul_(2).sub_(sq[a:e, None]).sub_(sq[None, :])
        S[torch.arange(e - a, device=dev), torch.arange(a, e, device=dev)] = -torch.inf
        v, i = torch.topk(S, k, dim=1)
        thr = v[:, -1:]
        tied = torch.nonzero((S >= thr).sum(dim=1) > k).flatten()
        v, i = v.cpu().numpy(), i.cpu().numpy().astype(np.int64)
        order = np.lexsort((i, -v), axis=1)
        v, i = np.take_along_axis(v, order, axis=1), np.take_along_axis(i, order, axis=1)
        if tied.numel():
            tv, ti = topk_rows(S[tied].cpu().numpy(), k, 0)
            rows = tied.cpu().numpy()
            v[rows], i[rows] = tv, ti
        out_v[a:e], out_i[a:e] = v, i
        del S
    return out_v, out_i


def tie_tolerance(dtype: np.dtype) -> float:
    """Relative tolerance under which two scores are ties: 1e-12 for float64 input (equal rational
    cosines computed in float64 differ by a few ulps, ~1e-16, far below it; distinct cosines of
    d <= 1e6 integer features differ by >= ~1e-12), 1e-6 for float32 input (its rows are rounded to
    float32, ~6e-8 relative each, so mathematically equal cosines of differently normalised rows differ
    by up to ~1e-7)."""
    return 1e-6 if np.dtype(dtype) == np.float32 else 1e-12


def _ties(a: np.ndarray, b: np.ndarray, tol: float) -> np.ndarray:
    """a and b tie: |a - b| <= tol * max(|a|, |b|, 1) (scale 1 keeps cosines near 0 comparable)."""
    return np.abs(a - b) <= tol * np.maximum(np.maximum(np.abs(a), np.abs(b)), 1.0)


def _exact_scores(X: np.ndarray, rows: np.ndarray, idx: np.ndarray, metric: str) -> np.ndarray:
    """float64 scores of pairs (rows[r], idx[r, j]) computed directly: x.y (cosine) or -|x-y|^2."""
    out = np.empty(idx.shape, dtype=np.float64)
    step = max(1, 2**22 // max(1, idx.shape[1] * X.shape[1]))
    for a in range(0, len(rows), step):
        e = min(a + step, len(rows))
        Y = X[idx[a:e]].astype(np.float64, copy=False)
        x = X[rows[a:e], None, :].astype(np.float64, copy=False)
        if metric == "euclidean":
            diff = Y - x
            out[a:e] = -np.einsum("ijk,ijk->ij", diff, diff)
        else:
            out[a:e] = np.einsum("ijk,ik->ij", Y, x[:, 0])
    return out


def _snap_sort(s: np.ndarray, idx: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Order each row by score descending, ties (chains of gaps within tol) by index ascending;
    tied scores are snapped to their group's first (largest) value."""
    o = np.argsort(-s, axis=1, kind="stable")
    s, idx = np.take_along_axis(s, o, axis=1), np.take_along_axis(idx, o, axis=1)
    new = np.ones(s.shape, dtype=bool)
    new[:, 1:] = ~_ties(s[:, 1:], s[:, :-1], tol)
    pos = np.where(new, np.arange(s.shape[1]), 0)
    lead = np.maximum.accumulate(pos, axis=1)
    s = np.take_along_axis(s, lead, axis=1)
    o = np.lexsort((idx, -s), axis=1)
    return np.take_along_axis(s, o, axis=1), np.take_along_axis(idx, o, axis=1)


#: candidates selected per row beyond k + 1: the exact scores of k + 1 + SELECT_EXTRA points decide a row, so a
#: row is redone over all n points only when an unselected point could come within the selection's rounding
#: error of its k-th place (with one extra candidate about half the rows of 2,048-d gaussian data were redone
#: after a float32 selection, with 8 none: bench/README.md)
SELECT_EXTRA = 8


def _max_sq(X: np.ndarray) -> float:
    """The largest squared row norm of X (float64 sums)."""
    return float(np.einsum("ij,ij->i", X, X, dtype=np.float64).max())


def _selection_error(max_sq: float, d: int, metric: str, dtype: np.dtype) -> float:
    """Rigorous bound on |selection score - exact score| when the pass runs in `dtype` on d-wide rows rounded
    to it: (d + 8) u max|x|^2 (cosine) or (d + 8) u 4 max|x|^2 (euclidean scores 2 x.y - |x|^2 - |y|^2), u the
    unit roundoff: gamma_d for each float product and squared norm, plus the rounding of the inputs and adds."""
    scale = max_sq if metric == "cosine" else 4.0 * max_sq
    return (d + 8) * float(np.finfo(dtype).eps) / 2 * scale


def _selection_dtype(X: np.ndarray, backend: str, max_sq: float) -> np.dtype:
    """The dtype the pass multiplies in: float32 when X is float32, for faiss, and for float64 X on the numpy
    backend whose largest squared row norm `max_sq` lies in [1e-10, 1e30] (far from float32's overflow, and its
    underflow is negligible against the error bound); the exact float64 refine then decides, so the graph is
    the float64 one at ~1.7x the GEMM speed. float64 otherwise."""
    if X.dtype == np.float32 or backend == "faiss":
        return np.dtype(np.float32)
    if backend == "numpy" and 1e-10 <= max_sq <= 1e30:
        return np.dtype(np.float32)
    return np.dtype(X.dtype)


def _refine(
    X: np.ndarray, idx: np.ndarray, k: int, metric: str, *, err: float, scores: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the tie rule exactly to selected candidates idx (n, m >= k): recompute their scores in
    float64 directly, O(n m d) (or take `scores`, the exact float64 scores of those pairs), snap ties,
    sort (ties by index). A row whose k-th score could tie or be beaten by an unselected point (its last
    candidate within `err`, the selection error, + tol of the k-th) is redone over all n points (float64
    GEMM screen, then direct float64 scores of its near-boundary points), O(n d) per such row. Returns
    the stored values: inner products in X's dtype (cosine), exact float64 distances (euclidean;
    duplicates read exactly 0)."""
    n, m = idx.shape
    tol = tie_tolerance(X.dtype)
    rows = np.arange(n)
    s, idx = _snap_sort(_exact_scores(X, rows, idx, metric) if scores is None else scores, idx, tol)
    if m > k:
        unsafe = np.flatnonzero(s[:, -1] + 2 * err >= s[:, k - 1] - tol * np.maximum(np.abs(s[:, k - 1]), 1.0))
        if unsafe.size:
            scale = 1.0 if metric == "cosine" else 4.0 * _max_sq(X)
            Xd = X.astype(np.float64, copy=False)
            sq = np.einsum("ij,ij->i", Xd, Xd)
            for a in range(0, unsafe.size, 256):
                rows_ = unsafe[a : a + 256]
                F = Xd[rows_] @ Xd.T  # screening scores, float64 GEMM: error ~1e-16, far below tol
                if metric == "euclidean":
                    F *= 2
                    F -= sq[rows_, None]
                    F -= sq[None, :]
                F[np.arange(rows_.size), rows_] = -np.inf
                low = np.partition(F, n - m, axis=1)[:, n - m]
                for j, r in enumerate(rows_):
                    c = np.flatnonzero(F[j] >= low[j] - 4 * tol * max(abs(low[j]), 1.0) - 1e-9 * scale)
                    exact = _exact_scores(X, np.full(1, r), c[None, :], metric)
                    fs, fi = _snap_sort(exact, c[None, :].astype(np.int64), tol)
                    s[r], idx[r] = fs[0, :m], fi[0, :m]
    s, idx = s[:, :k], idx[:, :k]
    vals = np.sqrt(np.maximum(-s, 0.0)) if metric == "euclidean" else s.astype(X.dtype)
    return vals, idx


def tied_fraction(graph: KnnGraph, k: int) -> float:
    """Fraction of rows whose top-k list is not decided by the scores alone: the k-th and (k+1)-th
    stored values tie under `tie_tolerance` (float64 scale), so index decided the boundary. O(n)."""
    if not 1 <= k < graph.k:
        raise ValueError(f"tied_fraction at k={k} needs a graph of at least k+1={k + 1} neighbours, got k={graph.k}")
    a, b = graph.values[:, k - 1].astype(np.float64), graph.values[:, k].astype(np.float64)
    return float(_ties(a, b, tie_tolerance(graph.values.dtype)).mean())


def _checked(X: np.ndarray, k: int) -> np.ndarray:
    """X validated for a k-neighbour graph: DataError when n <= k or all rows are identical, a warning
    when some rows are exact duplicates (their mutual order is then decided by index)."""
    X = _float(check_matrix(X))
    n = X.shape[0]
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n <= k:
        raise DataError(f"{n} samples cannot have {k} neighbours each: need n > k (use more samples or a smaller k)")
    dup = duplicate_rows(X)
    if dup.sum() == n - 1:
        raise DataError(f"all {n} rows are identical (collapsed embedding): neighbours and alignment are undefined")
    if dup.any():
        warnings.warn(
            f"{int(dup.sum())} of {n} rows duplicate an earlier row; ties among them are broken by index",
            stacklevel=3,
        )
    return X


#: rows whose squared norm is further than this from 1 are not unit vectors for `euclidean_from_cosine`
UNIT_TOL = 1e-4


def _unit_deviation(X: np.ndarray, who: str) -> tuple[np.ndarray, float]:
    """Squared row norms (float64) and their largest deviation from 1; DataError when X's rows are not unit."""
    sq = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    dev = float(np.abs(sq - 1).max())
    if dev > UNIT_TOL:
        raise DataError(
            f"{who} needs unit-norm rows (max | |x|^2 - 1 | = {dev:.3g} > {UNIT_TOL}): pass the L2-normalised "
            "features the cosine graph was built from (prepare_features), or build the euclidean graph directly"
        )
    return sq, dev


def _euclidean_from_scores(
    X: np.ndarray, idx: np.ndarray, cos: np.ndarray, k: int, sq: np.ndarray, err: float
) -> KnnGraph:
    """Exact euclidean top-k of unit rows from candidate lists idx and their exact float64 inner products cos:
    -|x - y|^2 = 2 x.y - |x|^2 - |y|^2 (float64, relative error ~1e-15 of the distance), then the tie rule and
    the redo of boundary rows of `_refine` (err bounds how far an unlisted point's score can exceed the last
    candidate's)."""
    s = 2 * cos - sq[:, None] - sq[idx]
    v, i = _refine(X, idx, k, "euclidean", scores=s, err=err)
    return KnnGraph(np.ascontiguousarray(i, dtype=np.int64), np.ascontiguousarray(v), "euclidean")


def euclidean_from_cosine(X: np.ndarray, graph: KnnGraph, k: int) -> KnnGraph:
    """The exact euclidean k-neighbour graph of unit rows X from their cosine graph (k < graph.k), no pass
    over pairs: for unit vectors |x - y|^2 = 2 - 2 x.y, so the cosine lists hold the euclidean ones.

    Equal (indices, and values to ~1e-15 relative) to `knn_graph(X, k, "euclidean")`. Candidate inner
    products are the stored values when they are float64 and untied (rows with snapped ties are recomputed),
    else recomputed in float64, O(n graph.k d); rows where a point outside the cosine list could reach the
    k-th place (within the tie tolerance plus the norms' deviation from 1) are redone over all n, O(n d) each.
    Cost: O(n k) from a float64 graph (the pipeline's), O(n graph.k d) from a float32 one; memory O(n graph.k).
    Raises DataError when the rows are not unit vectors, the graph is not X's cosine graph, or k >= graph.k.
    """
    X = _checked(X, k)
    if graph.metric != "cosine" or graph.n != X.shape[0]:
        raise DataError(f"euclidean_from_cosine needs X's cosine graph (n={X.shape[0]}), got a {graph.metric} "
                        f"graph of n={graph.n}")
    if not k < graph.k:
        raise DataError(f"euclidean_from_cosine needs k < the cosine graph's k={graph.k}, got k={k}: "
                        "store a cosine graph with more neighbours or build the euclidean graph directly")
    sq, dev = _unit_deviation(X, "euclidean_from_cosine")
    idx = graph.indices
    tol = tie_tolerance(X.dtype)
    if graph.values.dtype == np.float64 and X.dtype == np.float64:
        cos = graph.values.copy()
        snapped = np.flatnonzero((cos[:, 1:] == cos[:, :-1]).any(axis=1))
        if snapped.size:
            cos[snapped] = _exact_scores(X, snapped, idx[snapped], "cosine")
    else:
        cos = _exact_scores(X, np.arange(X.shape[0]), idx, "cosine")
    # an unlisted point's inner product is <= the last listed one's + a tie chain (4 tol); x2 and the norms
    err = 4 * tol * max(1.0, float(np.abs(cos).max())) + dev + 1e-14
    return _euclidean_from_scores(X, idx, cos, k, sq, err)


def _select(
    X: np.ndarray, k: int, metric: str, block_size: int, backend: str, device: str | None,
    visit: BlockVisitor | None,
) -> tuple[np.ndarray, float]:
    """The selection step of `knn_graph`: (n, m) candidate indices in selection order, m = min(k + 1 +
    SELECT_EXTRA, n - 1), and the bound on how far a selection score can be from the exact one."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = "torch" if device not in (None, "cpu") else "numpy"
    if visit is not None and backend != "numpy":
        raise ValueError(f"a block visitor needs the numpy backend (it reads the blocked GEMM), got {backend!r}")
    m = min(k + 1 + SELECT_EXTRA, X.shape[0] - 1)
    max_sq = _max_sq(X)
    dtype = _selection_dtype(X, backend, max_sq)
    err = _selection_error(max_sq, X.shape[1], metric, dtype)
    if backend == "numpy":
        Xs = X if X.dtype == dtype else np.ascontiguousarray(X, dtype=dtype)
        return _knn_numpy(Xs, m, metric, block_size, visit=visit)[1], err
    if backend == "faiss":
        return _knn_faiss(X, m, metric)[1], err
    return _knn_torch(X, m, metric, block_size, device)[1], err


def knn_graph(
    X: np.ndarray,
    k: int,
    metric: str = "cosine",
    block_size: int = 4096,
    backend: str = "auto",
    device: str | None = None,
    visit: BlockVisitor | None = None,
    candidates: KnnGraph | None = None,
) -> KnnGraph:
    """Exact top-k neighbour graph of the rows of X.

    metric "cosine" ranks by inner product and expects rows already L2-normalised
    (`prepare_features`); "euclidean" ranks by distance and stores exact float64 distances.
    backend: "numpy" (blocked symmetric GEMM, each block pair once), "faiss" (exact flat index,
    float32), "torch" (row blocks on `device`, default CUDA if available else CPU), "auto"
    (torch when a non-CPU `device` is given, else numpy: importing torch costs seconds).
    Selection runs in float32 on faiss, for float32 input, and for float64 input on the numpy backend
    (rounded for the pass, see `_selection_dtype`), else in X's dtype; the stored values are then
    recomputed directly in float64 for the k + 1 + SELECT_EXTRA chosen pairs, so all
    backends store the same numbers. Tie rule (exact): scores equal within `tie_tolerance` are ties,
    broken lower index first, both for which points enter the top k and for their order; rows whose
    k-th place may tie an unselected point are redone over all points in float64 (O(n d) each).
    visit (numpy backend): a `BlockVisitor` that reads every product block of the pass (one pass, two
    uses: see `benchmark.metrics.imbalance.RankCounter`). candidates (metric "euclidean" only): X's cosine
    graph with more than k neighbours, X's rows unit vectors: the graph is then `euclidean_from_cosine`
    (no pass over pairs), so a cache of euclidean graphs can be filled from the cosine pass.

    Raises DataError when n <= k or all rows are identical; warns when some rows are exact
    duplicates (their mutual order is then decided by index).

    Cost (numpy backend): n^2 d / 2 multiply-adds (each block pair of the upper triangle once) and
    O(n^2) compares for the selection, plus O(n k d) for the refined values; memory O(block_size^2 +
    n k) besides X. The faiss and torch backends do the full n^2 d product.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if candidates is not None:
        if metric != "euclidean" or visit is not None:
            raise ValueError("candidates (a cosine graph) build a euclidean graph without a pass: metric must be "
                             "'euclidean' and there is no pass for a visitor")
        return euclidean_from_cosine(X, candidates, k)
    X = _checked(X, k)
    i, err = _select(X, k, metric, block_size, backend, device, visit)
    v, i = _refine(X, i, k, metric, err=err)
    return KnnGraph(np.ascontiguousarray(i, dtype=np.int64), np.ascontiguousarray(v), metric)


def knn_graphs(
    X: np.ndarray, k: int, k_euc: int, block_size: int = 4096, visit: BlockVisitor | None = None
) -> tuple[KnnGraph, KnnGraph]:
    """(cosine k-graph, euclidean k_euc-graph) of unit rows X from one blocked GEMM pass (numpy backend).

    Equal to (`knn_graph(X, k)`, `knn_graph(X, k_euc, "euclidean")`): indices identical, values to ~1e-15
    relative. For unit rows d^2 = |x|^2 + |y|^2 - 2 x.y orders as the inner product, so the pass selects the
    cosine candidates once, their exact float64 inner products are computed once, and the euclidean lists are
    those candidates re-scored (k_euc < k + 1 reuses them; a larger k_euc selects more cosine candidates).
    visit: as in `knn_graph`, on the same products. Cost: one `knn_graph` (n^2 d / 2 multiply-adds, O(n^2)
    compares, O(n max(k, k_euc) d) for exact values) plus O(n k log k) for the second lists; memory
    O(block_size^2 + n max(k, k_euc)). Measured (bench/bench_stage2.py, n = 50,000, d = 2,048, k = 26,
    k_euc = 20, with a `RankCounter`): 1.15x one `knn_graph`. Raises DataError for rows that are not unit vectors.
    """
    X = _checked(X, max(k, k_euc))
    sq, dev = _unit_deviation(X, "knn_graphs")
    m_sel = max(k, k_euc)
    idx, sel_err = _select(X, m_sel, "cosine", block_size, "numpy", None, visit)
    cos = _exact_scores(X, np.arange(X.shape[0]), idx, "cosine")
    v, i = _refine(X, idx, k, "cosine", scores=cos, err=sel_err)
    g = KnnGraph(np.ascontiguousarray(i, dtype=np.int64), np.ascontiguousarray(v), "cosine")
    # an unselected point's selection score is <= the last candidate's: exact ones differ by 2 selection errors
    err = 2 * sel_err + dev
    return g, _euclidean_from_scores(X, idx, cos, k_euc, sq, err)
