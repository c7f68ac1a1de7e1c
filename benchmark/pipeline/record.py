"""MLflow logging of a run, through the fluent API only, with every name from benchmark.tracking.schema.

One parent run per invocation; one child run per (model, task), written when its embeddings exist (stage 1)
and reopened once to add the stage-2 metrics and tags, so nothing computed is lost if a later step fails.
A child with embeddings carries tag `complete` = `false` until the very end of its stage 2, and readers skip
it until then, so a run that dies in between never reaches the board or the gate.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmark import __version__
from benchmark.embeddings.cache import Embeddings
from benchmark.metrics.registry import logged_in_stage2
from benchmark.pipeline import run_figures
from benchmark.pipeline.types import ModelTaskResult, ReferenceChoice, RunConfig
from benchmark.registry.schema import ModelEntry, TaskSpec
from benchmark.structures import Dataset, ids_digest
from benchmark.tracking import schema as S

MAX_TAG = 4900


def leave_foreign_project_run(experiment: str | None, tracking_uri: str | None = None) -> str | None:
    """Under `mlflow run` (MLFLOW_RUN_ID set) whose project run is not in the benchmark's experiment (e.g.
    "Default"), stop resuming it: the benchmark's own parent run goes to the benchmark experiment, where the
    leaderboard reads. Returns the project run id left, or None. An explicit --experiment or
    $MATTERALIGN_EXPERIMENT names the benchmark experiment; the project run is kept when it is already there.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    from benchmark import tracking

    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return None
    mlflow.set_tracking_uri(tracking.tracking_uri(tracking_uri))
    client = MlflowClient()
    try:
        exp = client.get_experiment(client.get_run(run_id).info.experiment_id)
    except Exception:  # noqa: BLE001 - an unreadable project run is not ours to adopt
        exp = None
    if exp is not None and exp.name == tracking.experiment_name(experiment):
        return None
    os.environ.pop("MLFLOW_RUN_ID", None)
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    return run_id


def mark_experiment_kind(experiment: str) -> None:
    """Tag the experiment as model development, so MLflow 3's UI opens it on the training-runs view."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is not None and exp.tags.get(S.EXPERIMENT_KIND_TAG) != S.EXPERIMENT_KIND:
        client.set_experiment_tag(exp.experiment_id, S.EXPERIMENT_KIND_TAG, S.EXPERIMENT_KIND)


def parent_tags(sha: str, board: str = "") -> dict[str, str]:
    """Kind, versions, the board measured against ("" = none), and the host + pid of this process (how the
    next run recognises a dead parent)."""
    return {S.KIND: S.Kind.PARENT, S.BENCHMARK_VERSION: __version__, S.GIT_SHA: sha, S.BOARD: board,
            S.HOST: socket.gethostname(), S.PID: str(os.getpid())}


def mark_dead_parents(experiment: str) -> list[str]:
    """Mark KILLED every RUNNING parent run of `experiment` started on this host by a process that no longer
    exists, and its RUNNING child runs; returns their run ids. A parent of a live process, one from another
    host, or one without host/pid tags is never touched."""
    from mlflow.tracking import MlflowClient

    from benchmark.embeddings.cache import pid_alive

    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    host = socket.gethostname()
    killed = []
    for run in client.search_runs([exp.experiment_id], filter_string=f"{S.kind_filter(S.Kind.PARENT)} "
                                  "and attributes.status = 'RUNNING'", max_results=1000):
        tags = run.data.tags
        pid = tags.get(S.PID, "")
        if tags.get(S.HOST) != host or not pid.isdigit() or int(pid) == os.getpid() or pid_alive(int(pid)):
            continue
        children = client.search_runs(
            [exp.experiment_id], max_results=5000,
            filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}' and attributes.status = 'RUNNING'")
        for r in [*children, run]:
            client.set_terminated(r.info.run_id, "KILLED")
            killed.append(r.info.run_id)
    return killed


def parent_params(entries: list[ModelEntry], specs: list[TaskSpec], cfg: RunConfig, ref: str, fallback: str) -> dict:
    return {
        "models": ",".join(e.key for e in entries),
        "tasks": ",".join(s.name for s in specs),
        "k": cfg.k,
        "seed": "task default" if cfg.seed is None else cfg.seed,
        "reference_configured": ref,
        "reference_fallback": fallback,
    }


def log_parent_params(params: dict[str, Any]) -> None:
    """Log the parent's params, skipping those already logged with the same value (an `mlflow run` project
    run arrives with its entry-point parameters, e.g. `models`, logged); a different value goes to a tag
    `<name>` under the schema prefix instead of crashing with "Changing param values is not allowed"."""
    import mlflow

    run = mlflow.active_run()
    existing = mlflow.tracking.MlflowClient().get_run(run.info.run_id).data.params if run else {}
    fresh = {k: v for k, v in params.items() if k not in existing}
    for k, v in params.items():
        if k in existing and existing[k] != str(v):
            mlflow.set_tag(S.tag(f"param.{k}"), str(v)[:MAX_TAG])
    if fresh:
        mlflow.log_params(fresh)


def log_reference(task: str, choice: ReferenceChoice) -> None:
    import mlflow

    mlflow.set_tag(S.per_task(S.REFERENCE, task), choice.model or "none")
    mlflow.set_tag(S.per_task(S.REFERENCE_REASON, task), choice.reason[:MAX_TAG])


def log_child(
    res: ModelTaskResult, entry: ModelEntry, spec: TaskSpec, ds: Dataset, cfg: RunConfig, parent_id: str, sha: str,
    emb: Embeddings | None,
) -> None:
    """Stage 1: create the (model, task) child run with its tags, params, input, embeddings (with a PCA
    preview PNG, ~10 ms of projection plus the drawing) and metrics; a board result or a run without a board
    also gets its model's LoggedModel (found or created), to which stage 2 links the board metrics."""
    import mlflow

    excluded = excluded_counts(ds)
    with mlflow.start_run(run_name=f"{entry.key}/{spec.name}", nested=True, parent_run_id=parent_id) as run:
        res.run_id = run.info.run_id
        mlflow.set_tags({
            S.KIND: S.Kind.MODEL_TASK, S.MODEL: entry.key, S.TASK: spec.name, S.ROLE: res.role,
            S.STATUS: res.status, S.REASON: res.reason[:MAX_TAG], S.FAMILY: entry.family,
            S.COMPLETE: S.COMPLETE_NO if res.status == "ok" else S.COMPLETE_YES,
            S.MODALITY: entry.modality, S.DOMAIN: entry.domain, S.BENCHMARK_VERSION: __version__,
            S.GIT_SHA: sha, S.CACHE_REUSED: str(res.reused).lower(),
            S.EXCLUDED: json.dumps(excluded, sort_keys=True)[:MAX_TAG],
            S.BOARD: res.board, S.TRACK: spec.track,
            S.EXPLORATION: str(bool(res.exploration)).lower(),
            S.EXPLORATION_REASON: res.exploration[:MAX_TAG],
        })
        params: dict[str, Any] = {
            "model_key": entry.key, "model_name": entry.name, "model_version": entry.version,
            "layer": entry.layer, "pooling": entry.pooling, "dtype": entry.dtype, "batch_size": entry.batch_size,
            "task": spec.name, "task_version": spec.version, "data_digest": ds.digest,
            "ids_digest": ids_digest(ds.ids), "n_samples": len(ds), "excluded_structures": sum(excluded.values()),
            "seed": spec.seed if cfg.seed is None else cfg.seed, "k": cfg.k, "benchmark_version": __version__,
            "parameters": entry.parameters if entry.parameters is not None else "unknown",
            "training_data": entry.training_data[:500], "energy_head": entry.energy_head,
        }
        if emb is not None:
            params.update({
                "checkpoint_digest": emb.meta.get("checkpoint_digest", ""),
                "embedding_dim": int(emb.features.shape[1]),
                "feature_source": str(emb.meta.get("feature_source", ""))[:500],
                "cache_key": emb.key,
            })
        unknown = set(params) - set(S.P)
        if unknown:
            raise AssertionError(f"child-run params {sorted(unknown)} are not declared in benchmark/tracking/schema.py")
        mlflow.log_params(params)
        mlflow.log_dict(entry.model_dump(mode="json"), "model_entry.json")
        mlflow.log_dict(spec.model_dump(mode="json"), "task_spec.json")
        dataset = _mlflow_dataset(ds, spec)
        mlflow.log_input(dataset, context=res.role or "ood")
        link = None
        if emb is not None:
            with tempfile.TemporaryDirectory() as tmp:
                d = Path(tmp) / "embeddings"
                d.mkdir()
                np.save(d / f"{spec.name}.npy", emb.features.astype(np.float32))
                (d / f"{spec.name}.ids.json").write_text(json.dumps(emb.ids))
                if emb.energies is not None:
                    np.save(d / f"{spec.name}.energies.npy", emb.energies)
                preview = Path(tmp) / S.EMBEDDING_PREVIEW_ARTIFACT.format(task=spec.name)
                labels = ds.energies if len(ds) == len(emb.features) else None
                title = f"{entry.key} on {spec.name}: PCA of {emb.features.shape[0]} x {emb.features.shape[1]}"
                _draw(preview, lambda: run_figures.embedding_preview(emb.features, labels, title, preview))
                mlflow.log_artifacts(str(d), "embeddings")
            if not res.exploration:
                model_id = _logged_model(entry, emb.meta.get("checkpoint_digest", "") or res.checkpoint_digest)
                link = (model_id, dataset) if model_id else None
            _STAGE2[res.run_id] = link
        finite = {k: float(v) for k, v in res.metrics.items() if np.isfinite(v)}
        _log_metrics(finite, link)
    if res.status != "ok":
        _end(res.run_id, res.status)


def _end(run_id: str | None, status: str) -> None:
    """End a skipped / failed child run with the MLflow status the UI shows as not successful (S.END_STATUS)."""
    from mlflow.tracking import MlflowClient

    if run_id is not None:
        MlflowClient().set_terminated(run_id, S.END_STATUS.get(status, "FAILED"))


def excluded_counts(ds: Dataset) -> dict[str, int]:
    """{reason: count} of the candidates the task's sampler left out (Dataset.metadata["excluded"]; {} if none)."""
    raw = ds.metadata.get("excluded") or {}
    return {str(reason): int(count) for reason, count in raw.items()}


def log_task_skipped(task: str, reason: str) -> None:
    """A parent-run tag saying why a task did not run (its data could not be loaded)."""
    import mlflow

    mlflow.set_tag(S.per_task(S.TASK_SKIPPED, task), reason[:MAX_TAG])


def log_alignment(r: ModelTaskResult, choice: ReferenceChoice) -> None:
    """Stage 2: reopen the child run and add the geometry/alignment metrics (the board ones also linked to
    the LoggedModel and the task dataset), the replicates and their bootstrap figure, the reference and
    metric errors."""
    import mlflow

    if r.run_id is None:
        return
    with mlflow.start_run(run_id=r.run_id, nested=True):
        metrics = {name: float(r.metrics[name]) for name in logged_in_stage2() if name in r.metrics}
        link = _STAGE2.pop(r.run_id, None)
        link = link if r.status == "ok" else None
        _log_metrics(metrics, link, skip=REF_METRICS if r.model == choice.model else ())
        if r.replicates is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / Path(S.REPLICATES_ARTIFACT).name
                np.save(path, np.asarray(r.replicates, dtype=np.float64))
                mlflow.log_artifact(str(path), str(Path(S.REPLICATES_ARTIFACT).parent))
                _log_bootstrap_figure(r, Path(tmp))
        tags = {
            S.REFERENCE: choice.model or "none",
            S.IS_REFERENCE: str(r.model == choice.model).lower(),
            S.REFERENCE_REASON: choice.reason[:MAX_TAG],
        }
        if r.status != "ok":
            tags.update({S.STATUS: r.status, S.REASON: r.reason[:MAX_TAG]})
        tags.update({S.metric_tag(name): msg for name, msg in r.errors.items()})
        mlflow.set_tags(tags)
        mlflow.set_tag(S.COMPLETE, S.COMPLETE_YES)  # last: until here, readers skip this run
    if r.status != "ok":  # failed in stage 2
        _end(r.run_id, r.status)


#: the board metrics linked to a model's LoggedModel per task dataset (what `search_logged_models` ranks on)
MODEL_METRICS = ("cknna_to_ref", "cknna_to_ref_k25", "mutual_knn_to_ref", "cka_to_ref", "energy_mae")
#: those that compare with the reference: not linked for the reference itself (it would rank first at 1.0)
REF_METRICS = ("cknna_to_ref", "cknna_to_ref_k25", "mutual_knn_to_ref", "cka_to_ref")
#: child run id -> (LoggedModel id, MLflow dataset) from stage 1, for stage 2; None when not linked
_STAGE2: dict[str, tuple[str, Any] | None] = {}
#: (tracking URI, experiment id, model key, checkpoint digest) -> LoggedModel id: searched for once per process
_MODELS: dict[tuple[str, str, str, str], str] = {}


def _draw(path: Path, draw) -> None:
    """Run `draw()` (which writes the figure at `path`); a figure that fails is recorded as tag figure_error
    on the active run, never failing it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        draw()
    except Exception as exc:  # noqa: BLE001 - a preview must never cost the run
        import mlflow

        path.unlink(missing_ok=True)
        mlflow.set_tag(S.FIGURE_ERROR, f"{path.name}: {type(exc).__name__}: {exc}"[:MAX_TAG])


def _log_bootstrap_figure(r: ModelTaskResult, tmp: Path) -> None:
    """figures/cknna_bootstrap_<task>.png on the active run, when r has cknna_to_ref and finite replicates."""
    import mlflow

    reps = np.asarray(r.replicates, dtype=np.float64)
    if "cknna_to_ref" not in r.metrics or not np.isfinite(reps).any():
        return
    lo, hi = r.metrics.get("cknna_to_ref_ci_low", np.nan), r.metrics.get("cknna_to_ref_ci_high", np.nan)
    rel = S.BOOTSTRAP_FIGURE_ARTIFACT.format(task=r.task)
    path = tmp / rel
    _draw(path, lambda: run_figures.bootstrap_figure(
        reps, float(r.metrics["cknna_to_ref"]), (float(lo), float(hi)), f"{r.model} on {r.task}", path))
    if path.exists():
        mlflow.log_artifact(str(path), str(Path(rel).parent))


def _logged_model(entry: ModelEntry, digest: str) -> str | None:
    """The id of the external LoggedModel of (entry.key, digest) in the active run's experiment, created on
    first use (its source run is the active child run) and found by name and digest tag afterwards. Tags the
    active run with the id, or with the reason and returns None on any failure (the run goes on)."""
    import mlflow

    digest = digest or "unknown"
    try:
        exp_id = mlflow.active_run().info.experiment_id
        key = (mlflow.get_tracking_uri(), exp_id, entry.key, digest)
        if key not in _MODELS:
            found = mlflow.search_logged_models(
                experiment_ids=[exp_id], max_results=1, output_format="list",
                filter_string=f"name = '{entry.key}' AND tags.`{S.CHECKPOINT_DIGEST}` = '{digest}'")
            if not found:
                found = [mlflow.create_external_model(
                    name=entry.key, experiment_id=exp_id, model_type=entry.family,
                    tags={S.MODEL: entry.key, S.CHECKPOINT_DIGEST: digest, S.FAMILY: entry.family,
                          S.MODALITY: entry.modality, S.DOMAIN: entry.domain},
                    params={"model_name": entry.name, "model_version": entry.version,
                            "parameters": str(entry.parameters if entry.parameters is not None else "unknown"),
                            "training_data": entry.training_data[:500], "checkpoint_digest": digest})]
            _MODELS[key] = found[0].model_id
        mlflow.set_tag(S.LOGGED_MODEL, _MODELS[key])
        return _MODELS[key]
    except Exception as exc:  # noqa: BLE001 - the model view must never fail the run
        mlflow.set_tag(S.LOGGED_MODEL_ERROR, f"{type(exc).__name__}: {exc}"[:MAX_TAG])
        return None


def _log_metrics(metrics: dict[str, float], link: tuple[str, Any] | None, skip: tuple[str, ...] = ()) -> None:
    """Log `metrics` on the active run; with `link` = (model id, dataset), those in MODEL_METRICS (less
    `skip`) are logged linked to that LoggedModel and dataset. A failed link is tagged logged_model_error and
    those metrics are logged on the run alone."""
    import mlflow

    linked = {k: v for k, v in metrics.items() if link and k in MODEL_METRICS and k not in skip}
    rest = {k: v for k, v in metrics.items() if k not in linked}
    if rest:
        mlflow.log_metrics(rest)
    if not linked:
        return
    try:
        mlflow.log_metrics(linked, model_id=link[0], dataset=link[1])
    except Exception as exc:  # noqa: BLE001 - the model view must never fail the run
        mlflow.set_tag(S.LOGGED_MODEL_ERROR, f"{type(exc).__name__}: {exc}"[:MAX_TAG])
        mlflow.log_metrics(linked)


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
