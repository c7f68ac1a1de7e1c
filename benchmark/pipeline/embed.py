"""Stage 1 of a run: one (model, task) -> embeddings (cached) and the energy metrics, as a ModelTaskResult.

Logging is not done here (benchmark.pipeline.record writes the child run), so a failure of one model is a
result with status skipped/failed and a reason, never an exception that stops the run.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from benchmark.embeddings import extract
from benchmark.embeddings.cache import Embeddings
from benchmark.embeddings.extract import ExtractResult, check_supported
from benchmark.errors import DataError, ModelUnavailable, OutsideModality
from benchmark.metrics.energy import energy_mae_per_atom, probe_energy_mae
from benchmark.models import build_adapter
from benchmark.models.base import ModelAdapter
from benchmark.pipeline.types import ModelTaskResult, RunConfig
from benchmark.registry.schema import ModelEntry, TaskSpec
from benchmark.structures import Dataset


def embed_one(
    entry: ModelEntry, spec: TaskSpec, ds: Dataset, cfg: RunConfig, root: Path, models_path: Path
) -> tuple[ModelTaskResult, Embeddings | None]:
    """(result, embeddings or None). models_path: the models.yaml an isolated worker reads the entry from.

    Warnings raised while embedding are collected on the result (deduplicated, counted), so the run prints
    them once, naming the model and task, instead of third-party lines that name neither.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res, emb = _embed_one(entry, spec, ds, cfg, root, models_path)
    counts: dict[str, int] = {}
    for w in caught:
        if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)):
            continue  # addressed to the packages' developers, not to whoever runs the benchmark
        text = f"{w.category.__name__}: {' '.join(str(w.message).split())}"[:300]
        counts[text] = counts.get(text, 0) + 1
    res.warnings = [f"{t} (x{n})" if n > 1 else t for t, n in counts.items()]
    return res, emb


def _embed_one(
    entry: ModelEntry, spec: TaskSpec, ds: Dataset, cfg: RunConfig, root: Path, models_path: Path
) -> tuple[ModelTaskResult, Embeddings | None]:
    res = ModelTaskResult(entry.key, spec.name, "ok", role=spec.role_for(entry.domain))
    try:
        adapter = build_adapter(entry, cfg.device)
        if entry.environment == "isolated":
            out: ExtractResult = _extract_isolated(entry, adapter, ds, cfg, root, models_path)
        else:
            reason = adapter.unavailable_reason()
            if reason:
                raise ModelUnavailable(reason)
            check_supported(adapter, ds)
            out = extract(adapter, ds, root, progress=cfg.progress)
    except ModelUnavailable as exc:
        res.status, res.reason = "skipped", str(exc)
        res.outside_modality = exc.why if isinstance(exc, OutsideModality) else ""
        return res, None
    except Exception as exc:  # noqa: BLE001 - any adapter bug (KeyError, not a class, abstract, SyntaxError) costs only this model
        return _failed(res, entry, exc), None
    emb = out.embeddings
    try:
        if emb.ids != ds.ids:
            raise DataError(f"cache entry {emb.path} holds other sample ids than task {spec.name}; delete it and rerun")
        check_embeddings(emb.features, emb.energies, entry.key, len(ds))
        res.features, res.ids, res.energies = emb.features, emb.ids, emb.energies
        res.cache_key, res.reused = emb.key, out.reused
        res.checkpoint_digest = str(emb.meta.get("checkpoint_digest", ""))
        res.metrics["extract_seconds"] = out.seconds
        energy_metrics(res, entry, spec, ds)
    except Exception as exc:  # noqa: BLE001 - one model's bad output or metric never stops the run
        res.features = res.energies = None
        return _failed(res, entry, exc), None
    return res, emb


def _failed(res: ModelTaskResult, entry: ModelEntry, exc: BaseException) -> ModelTaskResult:
    """Mark the result failed with the exception type and message (the run's status line and child run
    name the model)."""
    msg = " ".join(str(exc).split())[:1000]
    res.status, res.reason = "failed", f"{type(exc).__name__}: {msg}"
    return res


def check_embeddings(features: np.ndarray, energies: np.ndarray | None, model: str, n: int) -> None:
    """DataError naming the model unless the features are n x d with d >= 1 and finite (and the energies, when
    there are any, finite): a zero-width or non-finite embedding would otherwise crash or poison stage 2."""
    f = np.asarray(features)
    if f.ndim != 2 or f.shape[0] != n:
        raise DataError(f"model {model!r} returned features of shape {f.shape}, expected ({n}, d)")
    if f.shape[1] == 0:
        raise DataError(f"model {model!r} returned zero-width embeddings ({n} x 0); check its layer / feature source")
    bad = int((~np.isfinite(f)).any(axis=1).sum())
    if bad:
        raise DataError(f"model {model!r} returned non-finite features (NaN/inf) for {bad} of {n} structures")
    if energies is not None:
        e = np.asarray(energies, dtype=np.float64)
        bad = int((~np.isfinite(e)).sum())
        if bad:
            raise DataError(f"model {model!r} returned non-finite energies (NaN/inf) for {bad} of {e.size} structures")


def _extract_isolated(
    entry: ModelEntry, adapter: ModelAdapter, ds: Dataset, cfg: RunConfig, root: Path, models_path: Path
) -> ExtractResult:
    """Embed in the entry's own venv. Building one can take minutes and a GB, so it needs --build-envs once."""
    from benchmark.embeddings.isolated import env_dir, env_ready, extract_isolated

    if not env_ready(entry.requirements, root=root) and not cfg.build_envs:
        raise ModelUnavailable(isolated_missing_message(entry, adapter, env_dir(entry.requirements, root=root)))
    if not adapter.missing_packages():
        check_supported(adapter, ds)
    return extract_isolated(entry, ds, models_path, root, device=cfg.device)


def isolated_missing_message(entry: ModelEntry, adapter: ModelAdapter, where: Path) -> str:
    """What is really missing for an isolated model whose environment is not built: the weights first (a
    build would not help without them), then the environment; and the one step that fixes it."""
    env = f"its isolated environment ({', '.join(entry.requirements)}, would live in {where}) is not built"
    try:
        adapter.weights_path()
    except ModelUnavailable as exc:
        return f"weights missing: {exc}. Once they are there, {env}: rerun with --build-envs (once; minutes, ~1 GB)"
    except Exception:  # noqa: BLE001 - the check needs the model's own packages, which live in that environment
        if "gated" in entry.license.lower():
            return (f"weights are licence-gated ({entry.license}) and cannot be checked before its environment "
                    f"exists: get them first (docs/real-weights.md), then build {env.split(' is ')[0]} with "
                    "--build-envs (once; minutes, ~1 GB)")
    return f"{env}: rerun with --build-envs to build it once (minutes, ~1 GB)"


def energy_metrics(res: ModelTaskResult, entry: ModelEntry, spec: TaskSpec, ds: Dataset) -> None:
    labels = ds.energies
    numbers = [s.numbers if s.numbers is not None else np.zeros(1, dtype=int) for s in ds.samples]
    per_element = spec.energy_reference == "per_element"
    n_labelled = int(np.isfinite(labels).sum())
    if entry.energy_head and res.energies is not None and n_labelled >= 2 and all(s.numbers is not None for s in ds.samples):
        res.metrics["energy_mae"] = energy_mae_per_atom(res.energies, labels, numbers, per_element)
    if n_labelled >= 10 and res.features is not None and all(s.numbers is not None for s in ds.samples):
        res.metrics["probe_energy_mae"] = probe_energy_mae(res.features, labels, numbers, per_element)
