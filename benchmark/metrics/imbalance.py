"""Information imbalance (Glielmo et al. 2022): exact, at the full N, from counts instead of sorts.

The rank of j among i's distances is 1 + the number of points closer to i than j (ties by index), so
Delta needs no sort: given each point's nearest neighbours in one space (a kNN graph), one blocked pass
over the other space's Gram matrix counts, for every query, the points inside its threshold distance.
Each block pair (a, b) of the upper triangle is multiplied once and counts for the queries of both a and b.
The products run in float32; entries whose float32 score lies within a rigorous rounding bound of the
threshold are recounted from exact float64 distances, so the counts are those of exact arithmetic.

Delta(X -> Y) counts in Y's distances and Delta(Y -> X) in X's: one pass per space. Counters that count in
the same space share its pass, so `information_imbalances_many(ref, models)` makes M + 1 passes for M
models (the reference's serves all of them) instead of 2 M.
"""

from __future__ import annotations

import warnings

import numpy as np

from benchmark.errors import DataError
from benchmark.knn.graph import KnnGraph, check_matrix, knn_graph

_U32 = float(np.finfo(np.float32).eps) / 2


def _neighbours(Z: np.ndarray, g: KnnGraph | None, k: int, name: str) -> np.ndarray:
    """(n, k) first k Euclidean neighbours of every row of Z (ties by index): from g when given, else computed.

    A cosine graph is accepted when the rows of Z are unit vectors (cosine order = Euclidean order there).
    """
    n = Z.shape[0]
    if g is None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*duplicate an earlier row.*")
            return knn_graph(Z, k, metric="euclidean").indices
    if g.n != n or g.k < k:
        raise DataError(f"graph_{name} has n={g.n}, k={g.k}; information imbalance needs n={n} and k >= {k}")
    if g.metric == "cosine":
        norms = np.sqrt(np.einsum("ij,ij->i", Z, Z, dtype=np.float64))
        if np.abs(norms - 1).max() > 1e-6:
            raise DataError(
                f"graph_{name} is a cosine graph but the rows of {name} are not unit vectors: pass a euclidean "
                f"graph of {name}, or the L2-normalised features the cosine graph was built from"
            )
    return g.indices[:, :k]


class _Space:
    """One space's features as the counting passes read them: float64 rows for the exact recount, a float32
    copy for the products (no copy when already float32), squared norms in both precisions, the row norms."""

    def __init__(self, Z: np.ndarray) -> None:
        self.Z = Z
        self.sq = np.einsum("ij,ij->i", Z, Z, dtype=np.float64)
        self.sq32 = self.sq.astype(np.float32)
        self.norm = np.sqrt(self.sq)
        self._z32: np.ndarray | None = None

    @property
    def Z32(self) -> np.ndarray:
        """float32 rows for the products, made on first use (a visitor of a kNN pass never needs them)."""
        if self._z32 is None:
            self._z32 = np.ascontiguousarray(self.Z, dtype=np.float32)
        return self._z32


class _Counter:
    """Counts, for query rows q and thresholds c[q, t] = |z_q - z_j(q,t)|^2 in `space`, the points l != q with
    |z_q - z_l|^2 < c[q, t], or equal to it with l < j(q, t): rank(j) - 1 of the contract (ties by index).
    nbrs (the j's) come from the other space's kNN graph."""

    def __init__(self, space: _Space, nbrs: np.ndarray) -> None:
        self.space = space
        Z = space.Z
        self.Z = Z
        self.nbrs = nbrs
        n, d = Z.shape
        sq = space.sq
        self.c = np.empty(nbrs.shape)
        for a in range(0, n, 4096):
            diff = Z[nbrs[a : a + 4096]].astype(np.float64) - Z[a : a + 4096, None, :]
            self.c[a : a + 4096] = np.einsum("ijk,ijk->ij", diff, diff)
        norm = space.norm
        m = float(norm.max())
        # |H32 - H| for H = |z_l|^2 - 2 z_q.z_l: float32 inputs and GEMM (gamma_d), the add, the threshold's cast
        tol = (2 * d + 16) * _U32 * m * (norm + m)[:, None] + 4 * _U32 * (np.abs(self.c) + sq[:, None])
        tau = self.c - sq[:, None]
        self.lo = (tau - 1.01 * tol).astype(np.float32)
        self.hi = (tau + 1.01 * tol).astype(np.float32)
        self.count = np.zeros(nbrs.shape, dtype=np.int64)
        self.rechecked = 0

    def add(self, H: np.ndarray, q: np.ndarray, cols: np.ndarray, mask: np.ndarray, axis: int = 1) -> None:
        """Fold a float32 score block into the counts: H[r, s] = |z_cols[s]|^2 - 2 z_q[r].z_cols[s] (axis 1),
        or H[s, r] for axis 0 (queries along the columns, no transposed copy); +inf where cols[s] == q[r].
        mask: a bool buffer of H's shape (no allocation per block: fresh pages cost as much as the compares).
        The mask sums run in uint16 (2.7x faster than int64 on a 4096 x 4096 block), so a block has < 65,536 rows."""
        m8 = mask.view(np.uint8)
        for t in range(self.nbrs.shape[1]):
            lo, hi = self.lo[q, t], self.hi[q, t]
            lo_b, hi_b = (lo[:, None], hi[:, None]) if axis == 1 else (lo[None, :], hi[None, :])
            np.less(H, lo_b, out=mask)
            below = m8.sum(axis=axis, dtype=np.uint16).astype(np.int64)
            self.count[q, t] += below
            np.less_equal(H, hi_b, out=mask)
            rows = np.flatnonzero(m8.sum(axis=axis, dtype=np.uint16) != below)
            if rows.size == 0:
                continue
            if axis == 1:
                sub = H[rows]
                r, s = np.nonzero((sub >= lo[rows, None]) & (sub <= hi[rows, None]))
            else:
                sub = H[:, rows]
                s, r = np.nonzero((sub >= lo[None, rows]) & (sub <= hi[None, rows]))
            qi, li = q[rows[r]], cols[s]
            diff = self.Z[li].astype(np.float64) - self.Z[qi]
            d2 = np.einsum("ij,ij->i", diff, diff)
            ct, j = self.c[qi, t], self.nbrs[qi, t]
            closer = (d2 < ct) | ((d2 == ct) & (li < j))
            np.add.at(self.count[:, t], qi[closer], 1)
            self.rechecked += int(r.size)


class RankCounter:
    """Delta(Y -> Z) counted on the products of Z's own kNN pass, so that direction costs no pass of its own.

    Pass it as `knn_graph(Z, k, visit=counter)` (or `knn_graphs`): each product block S = Z_a Z_b^T of the
    pass becomes H = |z_l|^2 - 2 z_q.z_l for the queries of both blocks, and every query's count of points
    closer (in Z) than its Y-neighbour j(q) is the one of `information_imbalance(Y, Z, graph_x=...)`, exact
    (entries within rounding of a threshold are recounted in float64). nbrs: (n, k) Y's first k Euclidean
    neighbours (e.g. the reference's cosine graph of unit rows, `.indices[:, :k]`).

    Cost on top of the pass: O(n^2 k) compares (2 per entry and neighbour, memory-bound) and two block-sized
    buffers; memory O(n k) thresholds and counts. Measured (bench/bench_stage2.py run F, n = 50,000, d = 2,048,
    k = 1): the cosine pass with it costs 1.12x a plain kNN graph (44.4 s against 39.6 s). A counter serves one
    pass; `complete` says whether it saw every pair (False when the graph came from a cache: then `finish()`
    counts with a pass of its own).
    """

    def __init__(self, Z: np.ndarray, nbrs: np.ndarray) -> None:
        Z = check_matrix(Z, "Z")
        nbrs = np.asarray(nbrs)
        if nbrs.ndim != 2 or nbrs.shape[0] != Z.shape[0] or not np.issubdtype(nbrs.dtype, np.integer):
            raise DataError(f"nbrs must be an (n, k) integer array of neighbour indices with n={Z.shape[0]}, got "
                            f"shape {nbrs.shape} and dtype {nbrs.dtype}")
        if nbrs.size and (nbrs.min() < 0 or nbrs.max() >= Z.shape[0]):
            raise DataError(f"nbrs holds indices outside 0..{Z.shape[0] - 1}: pass the other space's kNN indices")
        self.n = Z.shape[0]
        self._counter = _Counter(_Space(Z if Z.dtype in (np.float32, np.float64) else Z.astype(np.float64)), nbrs)
        self._buf: dict[np.dtype, tuple[np.ndarray, np.ndarray]] = {}
        self.pairs = 0

    def _buffers(self, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        size = S.size
        buf = self._buf.get(S.dtype)
        if buf is None or buf[0].size < size:
            buf = (np.empty(size, dtype=S.dtype), np.empty(size, dtype=bool))
            self._buf[S.dtype] = buf
        return buf[0][:size].reshape(S.shape), buf[1][:size].reshape(S.shape)

    def __call__(self, S: np.ndarray, a: int, b: int) -> None:
        """Fold the product block S = Z[a:a+r] @ Z[b:b+c].T (a <= b, S read only) into the counts."""
        cnt = self._counter
        r, c = S.shape
        sq = cnt.space.sq32 if S.dtype == np.float32 else cnt.space.sq
        H, mask = self._buffers(S)
        qa, qb = np.arange(a, a + r), np.arange(b, b + c)
        np.multiply(S, -2, out=H)
        H += sq[None, b : b + c]
        if a == b:
            np.fill_diagonal(H, np.inf)
        cnt.add(H, qa, qb, mask)
        if a == b:
            self.pairs += r * (r - 1) // 2
            return
        np.multiply(S, -2, out=H)
        H += sq[a : a + r, None]
        cnt.add(H, qb, qa, mask, axis=0)
        self.pairs += r * c

    @property
    def complete(self) -> bool:
        """Whether every pair of points was counted (one full pass, each block once)."""
        return self.pairs == self.n * (self.n - 1) // 2

    def finish(self, block_size: int = 4096) -> "RankCounter":
        """Count with a pass of its own when no kNN pass fed this counter (e.g. the graph came from a cache):
        one float32 pass over Z's Gram matrix, N^2 d / 2 multiply-adds. A no-op after a full pass."""
        if not self.complete:
            self._counter.count[:] = 0
            _count_all([self._counter], block_size)
            self.pairs = self.n * (self.n - 1) // 2
        return self

    def ranks(self) -> np.ndarray:
        """(n, k) int64 ranks, as `information_imbalance_ranks(Y, Z, graph_x=...)`; DataError before a full pass."""
        if not self.complete:
            raise DataError(f"RankCounter saw {self.pairs} of {self.n * (self.n - 1) // 2} pairs: run one full "
                            "numpy kNN pass with visit=counter (a cached graph makes no pass)")
        return self._counter.count + 1

    def delta(self) -> float:
        """Delta(Y -> Z) = 2 mean(rank) / n."""
        return _delta(self.ranks(), self.n)


def _count_all(counters: list[_Counter], block: int) -> None:
    """Every query's counts. Counters are grouped by the space they count in: one float32 product per block
    pair (a <= b) of the upper triangle per space, folded into every counter of that space (so the reference's
    pass serves all models of a task). The block buffers are allocated once and reused."""
    n = counters[0].Z.shape[0]
    block = min(block, n, 65535)
    G = np.empty((block, block), dtype=np.float32)
    H = np.empty_like(G)
    mask = np.empty(G.shape, dtype=bool)
    starts = list(range(0, n, block))
    groups: dict[int, list[_Counter]] = {}
    for cnt in counters:
        groups.setdefault(id(cnt.space), []).append(cnt)
    for group in groups.values():
        sp = group[0].space
        for a in starts:
            ea = min(a + block, n)
            qa = np.arange(a, ea)
            za = -2 * sp.Z32[a:ea]
            for b in starts:
                if b < a:
                    continue
                eb = min(b + block, n)
                qb = np.arange(b, eb)
                g, h, m = G[: ea - a, : eb - b], H[: ea - a, : eb - b], mask[: ea - a, : eb - b]
                np.matmul(za, sp.Z32[b:eb].T, out=g)
                np.add(g, sp.sq32[None, b:eb], out=h)
                if a == b:
                    np.fill_diagonal(h, np.inf)
                for cnt in group:
                    cnt.add(h, qa, qb, m)
                if a != b:
                    g += sp.sq32[a:ea, None]
                    for cnt in group:
                        cnt.add(g, qb, qa, m, axis=0)


def _count_queries(counters: list[_Counter], queries: np.ndarray, block: int) -> None:
    """Counts for a subset of query rows only: one float32 product of each query block with all rows."""
    n = counters[0].Z.shape[0]
    cols = np.arange(n)
    step = max(1, min(block, 2**24 // n))
    for a in range(0, queries.size, step):
        q = queries[a : a + step]
        for cnt in counters:
            sp = cnt.space
            H = sp.Z32[q] @ sp.Z32.T
            H *= -2
            H += sp.sq32[None, :]
            H[np.arange(q.size), q] = np.inf
            cnt.add(H, q, cols, np.empty(H.shape, dtype=bool))
            del H


def _imbalances(
    X: np.ndarray, Y: np.ndarray, k: int, max_exact_n: int | None, seed: int,
    graph_x: KnnGraph | None, graph_y: KnnGraph | None, directions: tuple[bool, bool], block_size: int,
) -> tuple[list[np.ndarray], int]:
    """Ranks for the requested directions (X -> Y, Y -> X), restricted to the query rows, and N."""
    X, Y = check_matrix(X, "X"), check_matrix(Y, "Y")
    n = X.shape[0]
    if Y.shape[0] != n:
        raise DataError(f"X and Y must have the same rows (paired samples): {n} vs {Y.shape[0]}")
    if not 1 <= k < n:
        raise DataError(f"information imbalance needs 1 <= k < n, got k={k}, n={n}")
    queries = None
    if max_exact_n is not None and n > max_exact_n:
        queries = np.sort(np.random.default_rng(seed).choice(n, max_exact_n, replace=False))
        warnings.warn(
            f"information imbalance: N={n} > max_exact_n={max_exact_n}; exact ranks averaged over "
            f"{max_exact_n} random query points (seed={seed})",
            stacklevel=3,
        )
    # Delta(X -> Y) counts in Y's distances around X's neighbours, and vice versa
    counters = []
    if directions[0]:
        counters.append(_Counter(_Space(Y), _neighbours(X, graph_x, k, "x")))
    if directions[1]:
        counters.append(_Counter(_Space(X), _neighbours(Y, graph_y, k, "y")))
    if queries is None:
        _count_all(counters, block_size)
        rows = slice(None)
    else:
        _count_queries(counters, queries, block_size)
        rows = queries
    return [c.count[rows] + 1 for c in counters], n


def _delta(ranks: np.ndarray, n: int) -> float:
    return 2.0 * float(ranks.sum()) / (ranks.size * n)


def information_imbalance_ranks(
    X: np.ndarray, Y: np.ndarray, k: int = 1, graph_x: KnnGraph | None = None, block_size: int = 4096
) -> np.ndarray:
    """(N, k) int64: entry (i, t) is the rank (nearest = 1, ties by index) among Y-distances from i of i's
    t-th nearest X-neighbour; Delta(X -> Y) = 2 * mean / N. Same cost as `information_imbalance`."""
    return _imbalances(X, Y, k, None, 0, graph_x, None, (True, False), block_size)[0][0]


def information_imbalance(
    X: np.ndarray,
    Y: np.ndarray,
    k: int = 1,
    max_exact_n: int | None = None,
    seed: int = 0,
    graph_x: KnnGraph | None = None,
    block_size: int = 4096,
) -> float:
    """Delta(X -> Y) = (2 / N) * mean over points i (and over i's first k X-neighbours j) of the
    rank of j among Y-distances from i (nearest = 1). Euclidean distances; ties by index.

    Identical spaces give (k + 1) / N, unrelated ones about 1. Every point is a query: the exact
    full-N value (DADApy's `return_information_imbalace` with subset_size >= N), not DADApy's default
    of averaging disjoint 2,000-point subsets (a different, subset-size-dependent quantity).
    max_exact_n (opt-in, default None): above it, exact ranks are averaged over a seeded random subset
    of max_exact_n query points, declared with a warning. graph_x: X's kNN graph (euclidean, or cosine
    when X's rows are unit vectors) with >= k neighbours; without it one is computed.

    Cost: the rank counts are one blocked float32 pass over Y's Gram matrix (upper triangle, N^2 d_Y / 2
    multiply-adds, O(N^2 k) compares) plus an exact float64 recount of the few entries within rounding of
    a threshold; without graph_x add one exact kNN graph of X (N^2 d_X / 2). Memory O(N (d_X + d_Y))
    for float32 copies plus O(block_size^2) per block.
    """
    (ranks,), n = _imbalances(X, Y, k, max_exact_n, seed, graph_x, None, (True, False), block_size)
    return _delta(ranks, n)


def information_imbalances(
    X: np.ndarray,
    Y: np.ndarray,
    k: int = 1,
    max_exact_n: int | None = None,
    seed: int = 0,
    graph_x: KnnGraph | None = None,
    graph_y: KnnGraph | None = None,
    block_size: int = 4096,
) -> tuple[float, float]:
    """(Delta(X -> Y), Delta(Y -> X)), both exact at the full N: one pass over each space's Gram matrix
    (the same numbers as two `information_imbalance` calls). graph_x / graph_y: the spaces' kNN graphs
    (see `information_imbalance`); the pipeline's cosine graphs of its L2-normalised features qualify.
    Several models against one reference: `information_imbalances_many` shares the reference's pass.

    Cost: N^2 (d_X + d_Y) / 2 float32 multiply-adds and O(N^2 k) compares, plus one exact kNN graph per
    space whose graph is not given; memory O(N (d_X + d_Y) + block_size^2), never an N x N matrix.
    Measured (bench/bench_stage2.py, N = 50,000, d = 2,048, k = 1, 2 cores): 47.6 s + 43.0 s for the two
    passes (each ~1x the 44.4 s cosine kNN graph of the same features), peak +0.19 GiB.
    """
    (xy, yx), n = _imbalances(X, Y, k, max_exact_n, seed, graph_x, graph_y, (True, True), block_size)
    return _delta(xy, n), _delta(yx, n)


def information_imbalances_many(
    ref: np.ndarray,
    models: list[np.ndarray],
    k: int = 1,
    graph_ref: KnnGraph | None = None,
    graphs: list[KnnGraph | None] | None = None,
    block_size: int = 4096,
) -> list[tuple[float, float]]:
    """[(Delta(ref -> m), Delta(m -> ref)) for m in models]: the values of `information_imbalances(ref, m,
    graph_x=graph_ref, graph_y=g_m)`, exact at the full N, with the reference's distance pass shared.

    Delta(m -> ref) counts in the reference's distances (thresholds from each model's graph): one pass over
    the reference's Gram matrix serves every model. Delta(ref -> m) counts in m's distances: one pass per model.

    Cost for M models: (M + 1) N^2 d / 2 float32 multiply-adds (d the features of each space) instead of
    2 M N^2 d / 2, O(M N^2 k) compares (2 per entry per direction, memory-bound: ~25 ms per 4096^2 block
    and direction here), plus an exact kNN graph per space whose graph is not given. Memory: float32 copies
    of the spaces (none for float32 input), O(M N k) for thresholds and counts, one set of block_size^2
    buffers (64 MB at 4096), never an N x N matrix. To hold one model at a time instead of all of them,
    call `imbalances_to_reference` (graphs only) and `information_imbalance(ref, m, graph_x=graph_ref)` per model.
    """
    ref = check_matrix(ref, "ref")
    if not models:
        return []
    graphs = [None] * len(models) if graphs is None else list(graphs)
    if len(graphs) != len(models):
        raise DataError(f"graphs has {len(graphs)} entries for {len(models)} models: pass one graph (or None) per model")
    n = ref.shape[0]
    if not 1 <= k < n:
        raise DataError(f"information imbalance needs 1 <= k < n, got k={k}, n={n}")
    ref_space = _Space(ref)
    ref_nbrs = _neighbours(ref, graph_ref, k, "ref")
    counters = []
    for i, (Z, g) in enumerate(zip(models, graphs)):
        Z = check_matrix(Z, f"models[{i}]")
        if Z.shape[0] != n:
            raise DataError(f"models[{i}] has {Z.shape[0]} rows, the reference {n}: the rows must be paired samples")
        counters.append(_Counter(_Space(Z), ref_nbrs))
        counters.append(_Counter(ref_space, _neighbours(Z, g, k, f"models[{i}]")))
    _count_all(counters, block_size)
    return [(_delta(counters[2 * i].count + 1, n), _delta(counters[2 * i + 1].count + 1, n))
            for i in range(len(models))]


def imbalances_to_reference(
    ref: np.ndarray, graphs: list[KnnGraph], k: int = 1, block_size: int = 4096
) -> list[float]:
    """[Delta(m -> ref) for each model graph]: every model's imbalance towards the reference from one pass
    over the reference's Gram matrix, without the models' features (only their neighbour lists).

    graphs: each model's kNN graph in the Euclidean order of its features (a euclidean graph, or a cosine
    graph of L2-normalised rows, as the pipeline stores; the rows cannot be checked here), n = ref's rows,
    >= k neighbours. With `information_imbalance(ref, m, graph_x=graph_ref)` per model (a pass over m's Gram
    matrix) this gives both directions of a task's M models in M + 1 passes, holding one model at a time.

    Cost: N^2 d_ref / 2 float32 multiply-adds once, O(M N^2 k) compares (memory-bound, 2 per entry and
    model); memory O(N d_ref) + O(M N k) thresholds and counts + one set of block_size^2 buffers. Measured
    (bench/bench_stage2.py run F, N = 50,000, d = 2,048, 2 quiet cores): 29.2 s shared + 4.6 s per model, i.e.
    0.74x + 0.12x per model of one kNN graph of the same size (39.6 s).
    """
    ref = check_matrix(ref, "ref")
    n = ref.shape[0]
    if not 1 <= k < n:
        raise DataError(f"information imbalance needs 1 <= k < n, got k={k}, n={n}")
    space = _Space(ref)
    counters = []
    for i, g in enumerate(graphs):
        if not isinstance(g, KnnGraph):
            raise DataError(f"graphs[{i}] is {type(g).__name__}, not a KnnGraph: pass each model's kNN graph")
        if g.n != n or g.k < k:
            raise DataError(f"graphs[{i}] has n={g.n}, k={g.k}; the reference has n={n} and k >= {k} is needed")
        counters.append(_Counter(space, g.indices[:, :k]))
    if counters:
        _count_all(counters, block_size)
    return [_delta(c.count + 1, n) for c in counters]
