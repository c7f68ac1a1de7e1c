"""The end-to-end run: tasks -> structures -> adapters -> cached embeddings -> kNN graphs -> metrics -> MLflow.

Two stages per invocation. Stage 1 embeds every (model, task) and logs one child run each as soon as its
embeddings exist (nothing computed is lost if a later step fails). Stage 2 picks the reference per task
and adds the alignment metrics to those child runs.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark import __version__
from benchmark.embeddings import cache_root, extract
from benchmark.embeddings.extract import ExtractResult
from benchmark.errors import ConfigError, DataError, MatteralignError, ModelUnavailable
from benchmark.metrics.energy import energy_mae_per_atom, probe_energy_mae
from benchmark.pipeline.align import align_task
from benchmark.pipeline.reference import ReferenceChoice, choose_references
from benchmark.registry import ModelEntry, TaskSpec, import_object, load_models, load_tasks, models_by_key, select
from benchmark.registry.loader import DEFAULT_MODELS, DEFAULT_TASKS_DIR
from benchmark.structures import Dataset, ids_digest
from benchmark.tasks import build_dataset
from benchmark import tracking


@dataclass
class RunConfig:
    """What one invocation runs. None means: the default models / all tasks / the task's own size."""

    models: list[str] | None = None
    tasks: list[str] | None = None
    n_samples: int | dict[str, int] | None = None
    seed: int | None = None
    k: int = 10
    n_boot: int = 200
    n_perm: int = 20
    reference: str | None = None
    tracking_uri: str | None = None
    experiment: str | None = None
    models_file: Path | None = None
    tasks_dir: Path | None = None
    cache_dir: Path | None = None
    leaderboard_dir: Path | None = Path("leaderboard")
    progress: bool = True
    device: str = "cpu"
    run_name: str | None = None
    executor: str = "local"
    build_envs: bool = False
    ray_address: str | None = None
    workers: int | None = None


@dataclass
class ModelTaskResult:
    model: str
    task: str
    status: str
    reason: str = ""
    role: str = ""
    run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    features: np.ndarray | None = None
    ids: list[str] = field(default_factory=list)
    energies: np.ndarray | None = None
    cache_key: str = ""
    reused: bool = False


@dataclass
class RunSummary:
    parent_run_id: str
    tracking_uri: str
    results: list[ModelTaskResult]
    references: dict[str, ReferenceChoice]
    leaderboard: dict[str, Path] = field(default_factory=dict)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _n_for(cfg: RunConfig, task: str) -> int | None:
    if isinstance(cfg.n_samples, dict):
        return cfg.n_samples.get(task)
    return cfg.n_samples


def _entries(cfg: RunConfig) -> tuple[list[ModelEntry], str, str]:
    """Models to run (the reference always included), the reference key, and the fallback policy."""
    models_file = load_models(cfg.models_file)
    registry = models_by_key(models_file)
    source = str(cfg.models_file or DEFAULT_MODELS)
    if cfg.models:
        entries = select(registry, cfg.models, "model key", source)
    else:
        entries = [m for m in models_file.models if m.default]
        if not entries:
            raise ConfigError(f"{source}: no entry has 'default: true'; name models with --models")
    ref = cfg.reference or models_file.reference.model
    if ref not in registry:
        raise ConfigError(f"reference model {ref!r} is not a key in {source}")
    if ref not in [e.key for e in entries]:
        entries = [registry[ref], *entries]
    return entries, ref, models_file.reference.fallback


def run_benchmark(cfg: RunConfig) -> RunSummary:
    """Run every selected (model, task), log it to MLflow, and (optionally) regenerate the leaderboard."""
    import mlflow

    if cfg.k < 1:
        raise ConfigError(f"k must be a positive integer, got {cfg.k}")
    entries, ref_key, fallback = _entries(cfg)
    tasks = load_tasks(cfg.tasks_dir)
    specs: list[TaskSpec] = select(tasks, cfg.tasks, "task", str(cfg.tasks_dir or DEFAULT_TASKS_DIR))
    root = cfg.cache_dir or cache_root()
    uri, experiment = tracking.setup(cfg.tracking_uri, cfg.experiment)
    sha = tracking.git_sha()
    results: list[ModelTaskResult] = []
    with mlflow.start_run(run_name=cfg.run_name or f"benchmark-{time.strftime('%Y%m%d-%H%M%S')}") as parent:
        mlflow.set_tags(
            {
                f"{tracking.TAG}kind": tracking.KIND_PARENT,
                f"{tracking.TAG}benchmark_version": __version__,
                f"{tracking.TAG}git_sha": sha,
            }
        )
        mlflow.log_params(
            {
                "models": ",".join(e.key for e in entries),
                "tasks": ",".join(s.name for s in specs),
                "k": cfg.k,
                "seed": "task default" if cfg.seed is None else cfg.seed,
                "reference_configured": ref_key,
                "reference_fallback": fallback,
            }
        )
        datasets: dict[str, Dataset] = {}
        for spec in specs:
            _say(f"[task {spec.name}] loading {(_n_for(cfg, spec.name) or spec.n_samples)} structures ...")
            ds = build_dataset(spec, _n_for(cfg, spec.name), cfg.seed)
            datasets[spec.name] = ds
            mlflow.log_param(f"n_samples.{spec.name}", len(ds))
            if cfg.executor == "ray":
                from benchmark.executors.ray_executor import prefetch_embeddings

                prefetch_embeddings(entries, ds, root, cfg)
            elif cfg.executor != "local":
                raise ConfigError(f"executor {cfg.executor!r}: expected 'local' or 'ray'")
            for entry in entries:
                res = _embed_one(entry, spec, ds, cfg, root, parent.info.run_id, sha)
                results.append(res)
                note = "(cache: nothing recomputed)" if res.reused else ""
                _say(f"[task {spec.name}] {entry.key}: {res.status} {res.reason} {note}".rstrip())
        references = choose_references(specs, results, ref_key, fallback)
        for spec in specs:
            choice = references[spec.name]
            mlflow.set_tag(f"{tracking.TAG}reference.{spec.name}", choice.model or "none")
            mlflow.set_tag(f"{tracking.TAG}reference_reason.{spec.name}", choice.reason[:4900])
            _say(f"[task {spec.name}] reference: {choice.model or 'none'} ({choice.reason})")
            task_results = [r for r in results if r.task == spec.name]
            align_task(task_results, choice, cfg, root)
        summary_df = summary_frame(results, references)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "summary.csv"
            summary_df.to_csv(path, index=False)
            mlflow.log_artifact(str(path))
        summary = RunSummary(parent.info.run_id, uri, results, references)
    if cfg.leaderboard_dir is not None:
        summary.leaderboard = _write_leaderboard(cfg, uri, experiment)
    print(summary_df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return summary


def _write_leaderboard(cfg: RunConfig, uri: str, experiment: str) -> dict[str, Path]:
    try:
        from benchmark.leaderboard.build import write_leaderboard
    except ImportError as exc:
        warnings.warn(f"leaderboard not written: {exc}", stacklevel=2)
        return {}
    out = write_leaderboard(Path(cfg.leaderboard_dir), tracking_uri=uri, experiment=experiment)  # type: ignore[arg-type]
    _say(f"leaderboard written to {cfg.leaderboard_dir}/")
    return out


def summary_frame(results: list[ModelTaskResult], references: dict[str, ReferenceChoice]):
    import pandas as pd

    cols = ["energy_mae", "probe_energy_mae", "cknna_to_ref", "mutual_knn_to_ref", "cka_to_ref", "intrinsic_dimension"]
    rows = []
    for r in results:
        row: dict[str, Any] = {"model": r.model, "task": r.task, "role": r.role, "status": r.status}
        row["reference"] = references[r.task].model if r.task in references else None
        for c in cols:
            row[c] = r.metrics.get(c, np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


# --- stage 1: one (model, task) -----------------------------------------------------------------------


def _adapter_for(entry: ModelEntry, device: str):
    cls = import_object(entry.adapter, f"model {entry.key!r} (models.yaml): adapter")
    return cls(entry, device=device)


def _embed_one(
    entry: ModelEntry, spec: TaskSpec, ds: Dataset, cfg: RunConfig, root: Path, parent_id: str, sha: str
) -> ModelTaskResult:
    res = ModelTaskResult(entry.key, spec.name, "ok", role=spec.role_for(entry.domain))
    try:
        adapter = _adapter_for(entry, cfg.device)
        if entry.environment == "isolated":
            out: ExtractResult = _extract_isolated(entry, adapter, ds, cfg, root)
        else:
            reason = adapter.unavailable_reason()
            if reason:
                raise ModelUnavailable(reason)
            _check_supported(adapter, ds)
            out = extract(adapter, ds, root, progress=cfg.progress)
    except ModelUnavailable as exc:
        res.status, res.reason = "skipped", str(exc)
        _log_child(res, entry, spec, ds, cfg, parent_id, sha, None)
        return res
    except (MatteralignError, RuntimeError, ValueError, OSError, ImportError) as exc:
        res.status, res.reason = "failed", f"{type(exc).__name__}: {exc}"
        _log_child(res, entry, spec, ds, cfg, parent_id, sha, None)
        return res
    emb = out.embeddings
    if emb.ids != ds.ids:
        raise DataError(f"cache entry {emb.path} holds other sample ids than task {spec.name}; delete it and rerun")
    res.features, res.ids, res.energies = emb.features, emb.ids, emb.energies
    res.cache_key, res.reused = emb.key, out.reused
    res.metrics["extract_seconds"] = out.seconds
    _energy_metrics(res, entry, spec, ds)
    _log_child(res, entry, spec, ds, cfg, parent_id, sha, emb)
    return res


def _check_supported(adapter, ds: Dataset) -> None:
    bad = [(s.id, why) for s in ds.samples if (why := adapter.unsupported(s))]
    if bad:
        raise ModelUnavailable(
            f"{len(bad)} of {len(ds)} structures are outside what the model can embed "
            f"(e.g. {bad[0][0]}: {bad[0][1]}); alignment needs every structure, so this task is skipped"
        )


def _extract_isolated(entry: ModelEntry, adapter, ds: Dataset, cfg: RunConfig, root: Path) -> ExtractResult:
    """Embed in the entry's own venv. Building one can take minutes and a GB, so it needs --build-envs once."""
    from benchmark.embeddings.isolated import env_dir, env_ready, extract_isolated

    if not env_ready(entry.requirements, root=root) and not cfg.build_envs:
        raise ModelUnavailable(
            f"runs in an isolated environment built from {entry.requirements} that is not built yet "
            f"(would live in {env_dir(entry.requirements, root=root)}); rerun with --build-envs to build it once"
        )
    if not adapter.missing_packages():
        _check_supported(adapter, ds)
    return extract_isolated(entry, ds, cfg.models_file or DEFAULT_MODELS, root, device=cfg.device)


def _energy_metrics(res: ModelTaskResult, entry: ModelEntry, spec: TaskSpec, ds: Dataset) -> None:
    labels = ds.energies
    numbers = [s.numbers if s.numbers is not None else np.zeros(1, dtype=int) for s in ds.samples]
    per_element = spec.energy_reference == "per_element"
    n_labelled = int(np.isfinite(labels).sum())
    if entry.energy_head and res.energies is not None and n_labelled >= 2 and all(s.numbers is not None for s in ds.samples):
        res.metrics["energy_mae"] = energy_mae_per_atom(res.energies, labels, numbers, per_element)
    if n_labelled >= 10 and res.features is not None and all(s.numbers is not None for s in ds.samples):
        res.metrics["probe_energy_mae"] = probe_energy_mae(res.features, labels, numbers, per_element)


def _log_child(
    res: ModelTaskResult, entry: ModelEntry, spec: TaskSpec, ds: Dataset, cfg: RunConfig, parent_id: str, sha: str, emb
) -> None:
    import mlflow

    T = tracking.TAG
    with mlflow.start_run(run_name=f"{entry.key}/{spec.name}", nested=True, parent_run_id=parent_id) as run:
        res.run_id = run.info.run_id
        mlflow.set_tags(
            {
                f"{T}kind": tracking.KIND_MODEL_TASK,
                f"{T}model": entry.key,
                f"{T}task": spec.name,
                f"{T}role": res.role,
                f"{T}status": res.status,
                f"{T}reason": res.reason[:4900],
                f"{T}family": entry.family,
                f"{T}modality": entry.modality,
                f"{T}domain": entry.domain,
                f"{T}benchmark_version": __version__,
                f"{T}git_sha": sha,
                f"{T}cache_reused": str(res.reused).lower(),
            }
        )
        params: dict[str, Any] = {
            "model_key": entry.key,
            "model_name": entry.name,
            "model_version": entry.version,
            "layer": entry.layer,
            "pooling": entry.pooling,
            "dtype": entry.dtype,
            "batch_size": entry.batch_size,
            "task": spec.name,
            "task_version": spec.version,
            "data_digest": ds.digest,
            "ids_digest": ids_digest(ds.ids),
            "n_samples": len(ds),
            "seed": spec.seed if cfg.seed is None else cfg.seed,
            "k": cfg.k,
            "benchmark_version": __version__,
            "parameters": entry.parameters if entry.parameters is not None else "unknown",
            "training_data": entry.training_data[:500],
            "energy_head": entry.energy_head,
        }
        if emb is not None:
            params.update(
                {
                    "checkpoint_digest": emb.meta.get("checkpoint_digest", ""),
                    "embedding_dim": int(emb.features.shape[1]),
                    "feature_source": str(emb.meta.get("feature_source", ""))[:500],
                    "cache_key": emb.key,
                }
            )
        mlflow.log_params(params)
        mlflow.log_dict(entry.model_dump(mode="json"), "model_entry.json")
        mlflow.log_dict(spec.model_dump(mode="json"), "task_spec.json")
        mlflow.log_input(_mlflow_dataset(ds, spec), context=res.role or "ood")
        if emb is not None:
            with tempfile.TemporaryDirectory() as tmp:
                d = Path(tmp) / "embeddings"
                d.mkdir()
                np.save(d / f"{spec.name}.npy", emb.features.astype(np.float32))
                (d / f"{spec.name}.ids.json").write_text(json.dumps(emb.ids))
                if emb.energies is not None:
                    np.save(d / f"{spec.name}.energies.npy", emb.energies)
                mlflow.log_artifacts(str(d), "embeddings")
        finite = {k: float(v) for k, v in res.metrics.items() if np.isfinite(v)}
        if finite:
            mlflow.log_metrics(finite)


_DATASET_CACHE: dict[str, Any] = {}


def _mlflow_dataset(ds: Dataset, spec: TaskSpec):
    """The task sample as an MLflow dataset (ids, SMILES, atom counts, labels), built once per task."""
    if ds.digest not in _DATASET_CACHE:
        import mlflow
        import pandas as pd

        frame = pd.DataFrame(
            {
                "id": ds.ids,
                "smiles": [s.smiles or "" for s in ds.samples],
                "n_atoms": np.array([s.n_atoms for s in ds.samples], dtype=np.float64),
                "energy_eV": ds.energies,
            }
        )
        _DATASET_CACHE[ds.digest] = mlflow.data.from_pandas(
            frame, name=f"{spec.name}-v{spec.version}", digest=ds.digest[:16]
        )
    return _DATASET_CACHE[ds.digest]
