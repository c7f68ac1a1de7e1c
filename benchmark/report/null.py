"""Null calibration of alignment scores: how far above chance is a CKNNA / mutual-kNN value?

Two nulls. (1) Permutation: shuffling the rows of one embedding breaks the pairing while keeping both
geometries, so its scores are what two unrelated representations of these points give; it costs one
relabelling of the stored kNN graph per draw (no new neighbour search). (2) Random init: a model's
alignment with an untrained copy of its own architecture (`SchNetAdapter` option `random_init`), i.e.
what the architecture and inputs alone give; those entries are built by `random_init_entry`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmark.knn import KnnGraph
from benchmark.metrics import cknna, mutual_knn
from benchmark.metrics.pairwise import prepare

METRICS = ("cknna", "mutual_knn")


@dataclass(frozen=True)
class NullResult:
    """An observed score against its permutation null.

    z: (observed - null mean) / null std; p_value: one-sided (#null >= observed + 1) / (n_perm + 1);
    percentile: share of null draws strictly below the observed score, in percent.
    """

    metric: str
    observed: float
    null_mean: float
    null_std: float
    z: float
    p_value: float
    percentile: float
    n_perm: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cosine_graph(X: np.ndarray, k: int, knn_dir: Path | None = None, cache_key: str | None = None) -> KnnGraph:
    """The pipeline's alignment graph, from the one pairwise path (`benchmark.metrics.pairwise.prepare`):
    the same preparation, cosine top-k, read from the kNN cache when a folder and cache key are given."""
    return prepare(X, k, knn_dir, cache_key).graph


def permute_graph(g: KnnGraph, perm: np.ndarray) -> KnnGraph:
    """The kNN graph of X[perm] from the graph of X: point i of the result is point perm[i] of X."""
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(perm.size)
    return KnnGraph(inverse[g.indices[perm]], g.values[perm].copy(), g.metric)


def _score(metric: str, ga: KnnGraph, gb: KnnGraph, k: int) -> float:
    if metric == "cknna":
        return float(cknna(ga, gb, k=k))
    if metric == "mutual_knn":
        return float(mutual_knn(ga, gb, k=k))
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def _summarise(metric: str, observed: float, null: np.ndarray) -> NullResult:
    null = null[np.isfinite(null)]
    if null.size < 2:
        raise ValueError(f"permutation null of {metric}: fewer than 2 finite draws")
    mean, std = float(null.mean()), float(null.std(ddof=1))
    z = (observed - mean) / std if std > 0 else (np.inf if observed > mean else 0.0)
    p = float((np.sum(null >= observed) + 1) / (null.size + 1))
    pct = float(100.0 * np.mean(null < observed))
    return NullResult(metric, float(observed), mean, std, float(z), p, pct, int(null.size))


def permutation_null(
    ga: KnnGraph, gb: KnnGraph, k: int, n_perm: int = 50, seed: int = 0, metrics: Sequence[str] = METRICS
) -> dict[str, NullResult]:
    """Each metric of the pair (ga, gb) against `n_perm` row permutations of gb."""
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(gb.n) for _ in range(n_perm)]
    out = {}
    for metric in metrics:
        observed = _score(metric, ga, gb, k)
        null = np.array([_score(metric, ga, permute_graph(gb, p), k) for p in perms])
        out[metric] = _summarise(metric, observed, null)
    return out


def pooled_permutation_null(
    pairs: Sequence[tuple[KnnGraph, KnnGraph]], k: int, n_perm: int = 50, seed: int = 0, metric: str = "cknna"
) -> NullResult:
    """The mean score over several pairs against the mean over the same pairs with gb's rows permuted.

    Tests "these pairs align above chance" as one statistic; each draw permutes every pair independently.
    """
    if not pairs:
        raise ValueError("pooled permutation null needs at least one pair")
    rng = np.random.default_rng(seed)
    observed = float(np.mean([_score(metric, ga, gb, k) for ga, gb in pairs]))
    null = np.array(
        [np.mean([_score(metric, ga, permute_graph(gb, rng.permutation(gb.n)), k) for ga, gb in pairs])
         for _ in range(n_perm)]
    )
    return _summarise(metric, observed, null)


def random_init_entry(entry: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """A models.yaml entry for an untrained copy of a SchNet-family entry (same checkpoint architecture).

    Only `SchNetAdapter` builds a random-init twin cheaply; other adapters would need their own
    architecture code without weights, which the zoo's wheels do not expose uniformly.
    """
    if not entry.get("adapter", "").endswith("schnet_adapter:SchNetAdapter"):
        raise ValueError(f"model {entry.get('key')!r}: a random-init copy is only built for SchNetAdapter entries")
    twin = dict(entry)
    twin.update(
        key=f"{entry['key']}-random-init",
        name=f"{entry.get('name', entry['key'])}, random init (seed {seed})",
        options={**entry.get("options", {}), "random_init": True, "seed": seed},
        energy_head=False,
        default=False,
        description=f"Untrained copy of {entry['key']} (same architecture, seed {seed}): the random-init null.",
    )
    return twin
