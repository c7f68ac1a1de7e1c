"""Stage 2 of a run: per-model geometry metrics and alignment to the task's reference model.

Every model's kNN graphs are cached next to its embeddings (keyed by the embedding's cache key) and reused by
every metric. One pass over its prepared features (platonic-rep preparation: clip + L2 normalise) gives the
cosine graph (CKNNA, mutual kNN) and, riding on the same products, Delta(reference -> model) (`RankCounter`);
Delta(model -> reference) of all models of a task is one pass over the reference's Gram matrix
(`imbalances_to_reference`). Intrinsic dimension (TwoNN, MLE) reads a euclidean graph of the raw features, as
the metric contract defines it (docs/metric-definitions.md): a second pass. A metric that cannot be
computed for a model (degenerate embedding, too few points) is recorded as a metric-error tag
(benchmark.tracking.schema.metric_tag) with the reason, never logged as a number.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from benchmark.errors import DataError
from benchmark.knn import KnnGraph, cached_knn_graph, prepare_for_alignment, tied_fraction
from benchmark.metrics import (
    alignment_replicates,
    check_paired,
    cknna,
    imbalances_to_reference,
    information_imbalances,
    linear_cka,
    mle_id,
    mutual_knn,
    replicate_interval,
    twonn,
)
from benchmark.metrics.dcor_alignment import dcor_subsample, distance_correlation
from benchmark.metrics.idcor import DEFAULT_MAX_N as IDCOR_MAX_N
from benchmark.metrics.idcor import IdcorResult, idcor_test
from benchmark.metrics.imbalance import RankCounter
from benchmark.metrics.pairwise import euclidean_graph_path, graph_path
from benchmark.pipeline import record
from benchmark.pipeline.executors import Executor
from benchmark.pipeline.types import ModelTaskResult, ReferenceChoice, RunConfig

MLE_K = 20
#: the second k at which CKNNA is reported (the paper's released similarity data uses k = 25)
K_PAPER = 25


def graph_k(k: int, n: int) -> int:
    """The k of the one cosine graph a model gets per task: max(k, K_PAPER) + 1 neighbours (the extra one tells
    whether the k-th place is tied), at most n - 1. Every reported k is a truncation of it."""
    return min(max(k, K_PAPER) + 1, n - 1)


def _safe(errors: dict[str, str], name: str, fn: Callable[[], object]):
    """Run one metric; a DataError or a numerical warning becomes a recorded error instead of a number."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = fn()
        for w in caught:
            errors.setdefault(f"warning.{name}", str(w.message)[:500])
        return value
    except (DataError, ValueError, FloatingPointError) as exc:
        errors[name] = f"{type(exc).__name__}: {exc}"[:500]
        return None


def _prepare(raw: np.ndarray, err: dict[str, str]) -> np.ndarray | None:
    """The shared alignment preparation; its sparse-feature note or error is recorded on the run."""
    try:
        prepared, note = prepare_for_alignment(raw)
    except DataError as exc:
        err["prepare"] = f"DataError: {exc}"[:500]
        return None
    if note:
        err["warning.prepare"] = note
    return prepared


def _idcor(features: np.ndarray, ref_features: np.ndarray, n_perm: int) -> IdcorResult:
    """`idcor_test` on the raw features; its subsample warning is the note model_alignment records instead."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IDCor: N=.*subsample")
        return idcor_test(features, ref_features, n_perm=n_perm, max_n=IDCOR_MAX_N)


def model_geometry(
    features: np.ndarray, cache_key: str, k: int, k_euc: int, knn_dir: Path, ref_nbrs: np.ndarray | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """One model's kNN graphs (cached under knn_dir by its embedding cache key), the fraction of its cosine kNN
    lists tied at k, its intrinsic dimensions, and with ref_nbrs (the reference's nearest neighbour of each
    point, (n, 1)) Delta(reference -> model), all from one pass over its prepared features.

    Intrinsic dimension reads the euclidean graph of the raw features, as the metric contract defines TwoNN
    (docs/metric-definitions.md): a second pass, since the prepared (clipped, unit-norm) rows of the cosine
    pass are another geometry. A job of stage 2: pure apart from the graph cache, so the local loop and a Ray
    task run the same code. Returns (metrics, errors/notes).
    Cost: two `knn_graph` passes (n^2 d / 2 multiply-adds each) + O(n^2) compares for the rank counts; a cached
    graph costs its O(n d) digest (and, with ref_nbrs, one counting pass).
    """
    metrics: dict[str, float] = {}
    err: dict[str, str] = {}
    raw = np.asarray(features, dtype=np.float64)
    p = _prepare(raw, err)
    if p is not None:
        kg = graph_k(k, p.shape[0])
        counter = _safe(err, "info_imbalance", lambda: RankCounter(p, ref_nbrs)) if ref_nbrs is not None else None
        g = _safe(err, "knn_cosine", lambda: cached_knn_graph(p, kg, "cosine", graph_path(knn_dir, cache_key),
                                                              visit=counter))
        if g is not None and kg > k:
            metrics["knn_tied_fraction"] = tied_fraction(g, k)
        elif g is not None:
            err["note.knn_tied_fraction"] = f"not measured: n = {p.shape[0]} leaves no (k+1)-th neighbour at k = {k}"
        if g is not None and counter is not None:
            v = _safe(err, "info_imbalance", lambda: counter.finish().delta())
            if v is not None:
                metrics["info_imbalance_ref_to_model"] = float(v)
    g_euc = _safe(err, "knn_euclidean",
                  lambda: cached_knn_graph(raw, k_euc, "euclidean", euclidean_graph_path(knn_dir, cache_key)))
    if g_euc is not None:
        v = _safe(err, "intrinsic_dimension", lambda: twonn(g_euc))
        if v is not None:
            metrics["intrinsic_dimension"] = float(v)
        if k_euc >= 3:
            v = _safe(err, "mle_dimension", lambda: mle_id(g_euc, k=k_euc))
            if v is not None:
                metrics["mle_dimension"] = float(v)
    return metrics, err


def model_alignment(
    features: np.ndarray, cache_key: str, ref_features: np.ndarray, ref_cache_key: str, k: int, knn_dir: Path,
    n_boot: int, n_perm: int, imbalance: tuple[float, float] | None = None,
) -> tuple[dict[str, float], dict[str, str], np.ndarray | None]:
    """One model's alignment to the reference, from both models' cached cosine graphs (`model_geometry` first).

    A job of stage 2, like `model_geometry`. The samples must already be paired (same ids, same order).
    imbalance: (Delta(ref -> model), Delta(model -> ref)) when the task's shared passes computed them
    (`align_task`); without it both directions are computed here (one pass over each space).
    Returns (metrics, errors/notes, the n_boot bootstrap replicates of cknna_to_ref or None): the replicates
    are seeded by (n, n_boot) only, so all models of a task share their resamples (the board's rank intervals).
    """
    err: dict[str, str] = {}
    p = _prepare(np.asarray(features, dtype=np.float64), err)
    p_ref = _prepare(np.asarray(ref_features, dtype=np.float64), {})
    if p is None or p_ref is None:
        return {}, err, None
    kg = graph_k(k, p.shape[0])
    g = _safe(err, "knn_cosine", lambda: cached_knn_graph(p, kg, "cosine", graph_path(knn_dir, cache_key)))
    g_ref = cached_knn_graph(p_ref, kg, "cosine", graph_path(knn_dir, ref_cache_key))
    if g is None:
        return {}, err, None
    values = {
        "cknna_to_ref": _safe(err, "cknna_to_ref", lambda: cknna(g, g_ref, k=k)),
        "mutual_knn_to_ref": _safe(err, "mutual_knn_to_ref", lambda: mutual_knn(g, g_ref, k=k)),
        "cka_to_ref": _safe(err, "cka_to_ref", lambda: linear_cka(p, p_ref)),
    }
    if kg >= K_PAPER:
        values["cknna_to_ref_k25"] = _safe(err, "cknna_to_ref_k25", lambda: cknna(g, g_ref, k=K_PAPER))
    else:
        err["note.cknna_to_ref_k25"] = f"not measured: n = {p.shape[0]} has fewer than {K_PAPER} neighbours per point"
    # the stored cosine graphs of the unit-norm prepared features give the Euclidean neighbours it needs
    ii = imbalance if imbalance is not None else _safe(
        err, "info_imbalance", lambda: information_imbalances(p_ref, p, graph_x=g_ref, graph_y=g))
    if ii is not None:
        values["info_imbalance_ref_to_model"], values["info_imbalance_model_to_ref"] = ii
    ci = reps = None
    if n_boot == 0:
        err["note.cknna_to_ref_ci"] = "no confidence interval: run with --no-ci (n_boot = 0)"
    else:
        reps = _safe(err, "cknna_to_ref_ci", lambda: alignment_replicates(g, g_ref, "cknna", k=k, n_boot=n_boot))
        if reps is not None:
            ci = _safe(err, "cknna_to_ref_ci", lambda: replicate_interval(reps))
    if ci is not None:
        values["cknna_to_ref_ci_low"], values["cknna_to_ref_ci_high"] = ci
    n = p.shape[0]
    if n > IDCOR_MAX_N:
        err["note.idcor_to_ref"] = (f"IDCor on a seeded subsample of {IDCOR_MAX_N} of {n} points (two n x n "
                                    "distance matrices, O(n_perm n^2) null)")
    ic = _safe(err, "idcor_to_ref", lambda: _idcor(features, ref_features, n_perm))
    if ic is not None:
        values["idcor_to_ref"], values["idcor_pvalue"], values["idcor_pvalue_floor"] = ic.corr, ic.p_value, ic.p_floor
    dsub = dcor_subsample(n)
    if len(dsub) < n:
        err["note.dcor_to_ref"] = f"dCor on a seeded subsample of {len(dsub)} of {n} points (cost: O(n^2) memory)"
    values["dcor_to_ref"] = _safe(err, "dcor_to_ref", lambda: distance_correlation(p[dsub], p_ref[dsub]))
    metrics = {name: float(v) for name, v in values.items() if v is not None and np.isfinite(v)}
    return metrics, err, reps


CRASH = "stage2"


def contained(job: Callable[..., tuple], model: str, **kw: object) -> tuple:
    """`job(**kw)`, with any exception it raises returned as the error `stage2` naming the model, so one
    model's broken metrics cost only that model (a job of stage 2 itself, picklable for Ray). Either way the
    result is (metrics, errors, *whatever else the job returns, None on a crash)."""
    try:
        return job(**kw)
    except Exception as exc:  # noqa: BLE001 - containment is the point
        msg = " ".join(str(exc).split())[:800]
        return {}, {CRASH: f"{type(exc).__name__} in {job.__name__} of model {model!r}: {msg}"}, None


def _fail_if_crashed(r: ModelTaskResult, err: dict[str, str]) -> None:
    if CRASH in err:
        r.status, r.reason = "failed", err[CRASH]
        print(f"[task {r.task}] {r.model}: failed in stage 2: {r.reason}", file=sys.stderr, flush=True)


def _reference_graph(ref: ModelTaskResult, kg: int, knn_dir: Path) -> tuple[np.ndarray, KnnGraph] | None:
    """The reference's prepared features and cosine graph (from the cache once its geometry job ran)."""
    p_ref = _prepare(np.asarray(ref.features, dtype=np.float64), {})
    if p_ref is None:
        return None
    g = _safe({}, "knn_cosine", lambda: cached_knn_graph(p_ref, kg, "cosine", graph_path(knn_dir, ref.cache_key)))
    return None if g is None else (p_ref, g)


def _to_reference(todo: list[ModelTaskResult], p_ref: np.ndarray, kg: int, knn_dir: Path) -> dict[str, float]:
    """Delta(model -> reference) of every model in todo from one pass over the reference's Gram matrix; empty
    when it cannot be computed (then each model's alignment job computes both directions and records why not)."""
    graphs = []
    for r in todo:
        p = _prepare(np.asarray(r.features, dtype=np.float64), {})
        graphs.append(cached_knn_graph(p, kg, "cosine", graph_path(knn_dir, r.cache_key)))
    values = _safe({}, "info_imbalance", lambda: imbalances_to_reference(p_ref, graphs))
    return {} if values is None else {r.model: float(v) for r, v in zip(todo, values)}


def align_task(results: list[ModelTaskResult], choice: ReferenceChoice, cfg: RunConfig, root: Path,
               executor: Executor, ref_result: ModelTaskResult | None = None) -> None:
    """Add geometry and alignment metrics to every ok result of one task and to its MLflow child run.

    Fan-outs of independent per-model jobs through the executor: `model_geometry` of the reference, then of
    every other model (its kNN pass also counts Delta(reference -> model), so it needs the reference's graph),
    one pass over the reference's Gram matrix for Delta(model -> reference) of all of them
    (`imbalances_to_reference`), then `model_alignment` of every model to the reference (the graphs meet in the
    shared cache). Either way the same functions compute the same numbers. `ref_result`: the reference's
    embeddings when they come from elsewhere than this run's own result of that model (a board's stored
    reference). Cost of the information imbalance for M models: M + 1 passes' products shared with the
    kNN passes and one reference pass, instead of 2 M passes.
    """
    ok = [r for r in results if r.status == "ok" and r.features is not None]
    if not ok:
        return
    label = f"[task {ok[0].task}] {executor.name}"
    n = len(ok[0].ids)
    k, k_euc, knn_dir = cfg.k, min(MLE_K, n - 1), root / "knn"  # k <= n - 1: checked by the run (check_k)
    kg = graph_k(k, n)
    ref = next((r for r in ok if r.model == choice.model), None)
    external_ref = ref is None and ref_result is not None and ref_result.model == choice.model
    common = {"job": model_geometry, "k": k, "k_euc": k_euc, "knn_dir": knn_dir}
    usable = set()

    def geometry(batch: list[ModelTaskResult], extra: dict) -> None:
        if not batch:
            return
        out = executor.map(contained, [{"model": r.model, "features": r.features, "cache_key": r.cache_key}
                                       for r in batch], {**common, **extra}, f"{label}: model_geometry")
        for r, (metrics, err, *_) in zip(batch, out):
            r.metrics.update(metrics)
            r.errors = dict(err)
            _fail_if_crashed(r, err)
            if r.status == "ok" and "prepare" not in err and "knn_cosine" not in err:
                usable.add(r.model)

    geometry([ref] if ref is not None else [], {})
    if external_ref:
        ref = ref_result
        usable.add(ref.model)
    ref_graph = _reference_graph(ref, kg, knn_dir) if ref is not None and ref.model in usable else None
    nbrs = {"ref_nbrs": ref_graph[1].indices[:, :1]} if ref_graph is not None else {}
    geometry([r for r in ok if r is not ref], nbrs)

    if ref_graph is not None:
        todo = [r for r in ok if r.model in usable]
        for r in todo:
            check_paired(r.ids, ref.ids, r.model, ref.model)
        to_ref = _to_reference(todo, ref_graph[0], kg, knn_dir)
        imbalance = {}
        for r in todo:
            from_ref = to_ref.get(r.model) if r is ref else r.metrics.get("info_imbalance_ref_to_model")
            if r.model in to_ref and from_ref is not None:
                imbalance[r.model] = (from_ref, to_ref[r.model])
        aligned = executor.map(
            contained, [{"model": r.model, "features": r.features, "cache_key": r.cache_key,
                         "imbalance": imbalance.get(r.model)} for r in todo],
            {"job": model_alignment, "ref_features": ref.features, "ref_cache_key": ref.cache_key, "k": k,
             "knn_dir": knn_dir, "n_boot": cfg.n_boot, "n_perm": cfg.n_perm}, f"{label}: model_alignment",
        )
        for r, (metrics, err, reps) in zip(todo, aligned):
            r.metrics.update(metrics)
            r.replicates = reps
            r.errors.update(err)
            if "info_imbalance_ref_to_model" in metrics:  # a failed count in geometry was redone here
                r.errors.pop("info_imbalance", None)
            _fail_if_crashed(r, err)
    for r in ok:
        record.log_alignment(r, choice)
