"""MLflow logging of a run, through the fluent API (the client only to give a child run its measured start
time and its end status), with every name from benchmark.tracking.schema.

One parent run per invocation (with MLflow's system metrics when psutil is installed); one child run per
(model, task), written when its embeddings exist (stage 1) with its start time set to when its embedding
started, and reopened once to add the stage-2 metrics, tags and figures (which ends it), so nothing computed
is lost if a later step fails and its duration spans its real work.
A child with embeddings carries tag `complete` = `false` until the very end of its stage 2, and readers skip
it until then, so a run that dies in between never reaches the board or the gate.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from benchmark import __version__
from benchmark.embeddings.cache import Embeddings
from benchmark.errors import DataError
from benchmark.knn import cached_knn_graph, knn_graph
from benchmark.metrics import cknna
from benchmark.metrics import pairwise
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
    """Tag the experiment as model development, so MLflow 3's UI opens it on the training-runs view.
    Concurrent first runs of a new experiment race on that tag's insert; the loser finds it set and goes on."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from benchmark import tracking

    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None or exp.tags.get(S.EXPERIMENT_KIND_TAG) == S.EXPERIMENT_KIND:
        return
    try:
        client.set_experiment_tag(exp.experiment_id, S.EXPERIMENT_KIND_TAG, S.EXPERIMENT_KIND)
    except MlflowException as exc:
        if not tracking.lost_insert_race(exc):
            raise


def system_metrics_off() -> str:
    """Why the parent run cannot log MLflow's system metrics ("" when it can): they need psutil, which the
    benchmark does not require. Pass `not system_metrics_off()` as start_run's log_system_metrics."""
    if importlib.util.find_spec("psutil") is None:
        return "psutil is not installed (pip install psutil to sample the run's CPU, memory, disk and GPU use)"
    return ""


def parent_tags(sha: str, board: str = "") -> dict[str, str]:
    """Kind, versions, the board measured against ("" = none), whether system metrics are sampled, and the
    host + pid of this process (how the next run recognises a dead parent)."""
    off = system_metrics_off()
    return {S.KIND: S.Kind.PARENT, S.BENCHMARK_VERSION: __version__, S.GIT_SHA: sha, S.BOARD: board,
            S.HOST: socket.gethostname(), S.PID: str(os.getpid()),
            S.SYSTEM_METRICS: f"false: {off}" if off else "true"}


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
    emb: Embeddings | None, started: float | None = None, knn_dir: Path | None = None,
) -> None:
    """Stage 1: create the (model, task) child run with its tags, params, input, embeddings (with a PCA
    preview PNG, ~10 ms of projection plus the drawing) and metrics; a board result or a run without a board
    also gets its model's LoggedModel (found or created), to which stage 2 links the board metrics.

    started: `time.time()` when this (model, task)'s stage 1 began: the run's start time, and embed_seconds
    is the time from then to this call. knn_dir: the kNN graph cache stage 2 fills, where the stage-2
    figures read the graphs (None: they compute their own).
    """
    import mlflow

    excluded = excluded_counts(ds)
    embed_seconds = None if started is None else time.time() - started
    with _open_child(f"{entry.key}/{spec.name}", parent_id, started) as run:
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
        _log_input(dataset, res.role or "ood")
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
                _tag_figure_errors([_draw(preview, lambda: run_figures.embedding_preview(
                    emb.features, labels, title, preview))])
                mlflow.log_artifacts(str(d), "embeddings")
            if not res.exploration:
                model_id = _logged_model(entry, emb.meta.get("checkpoint_digest", "") or res.checkpoint_digest)
                link = (model_id, dataset) if model_id else None
            group = (parent_id, spec.name)
            _STAGE2[res.run_id] = _Stage2(link, group, knn_dir, cfg.k)
            _GROUPS.setdefault(group, {})[entry.key] = res
        finite = {k: float(v) for k, v in res.metrics.items() if np.isfinite(v)}
        if embed_seconds is not None:
            finite[S.EMBED_SECONDS] = embed_seconds
        _log_metrics(finite, link)
    if res.status != "ok":
        _end(res.run_id, res.status)


def _open_child(name: str, parent_id: str, started: float | None):
    """The child run `name` under `parent_id`, active (a context manager, as mlflow.start_run): created with
    start time `started` (epoch seconds; None = now) and the tags mlflow.start_run would give it."""
    import mlflow
    from mlflow.tracking import MlflowClient
    from mlflow.tracking.context import registry as context_registry
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

    if started is None:
        return mlflow.start_run(run_name=name, nested=True, parent_run_id=parent_id)
    client = MlflowClient()
    tags = context_registry.resolve_tags({MLFLOW_PARENT_RUN_ID: parent_id, MLFLOW_RUN_NAME: name})
    run = client.create_run(client.get_run(parent_id).info.experiment_id, start_time=int(started * 1000),
                            tags=tags, run_name=name)
    return mlflow.start_run(run_id=run.info.run_id, nested=True)


def stage2_started(task: str) -> None:
    """Mark the start of `task`'s stage 2 in the active parent run: each child run of the task then logs
    align_seconds, the time from here to the first of them reaching `log_alignment` (the task's stage-2
    computation, one fan-out over its models)."""
    import mlflow

    run = mlflow.active_run()
    if run is not None:
        _ALIGN[(run.info.run_id, task)] = [time.time(), None]


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
    the LoggedModel and the task dataset) and align_seconds, the replicates, the figures (bootstrap
    distribution, CKNNA row to the task's other models, TwoNN fit), the reference and metric errors; closing
    it ends the run."""
    import mlflow

    if r.run_id is None:
        return
    state = _STAGE2.pop(r.run_id, None)
    with mlflow.start_run(run_id=r.run_id, nested=True):
        metrics = {name: float(r.metrics[name]) for name in logged_in_stage2() if name in r.metrics}
        span = _ALIGN.get(state.group) if state else None
        if span is not None:
            span[1] = span[1] or time.time()
            metrics[S.ALIGN_SECONDS] = span[1] - span[0]
        link = state.link if state is not None and r.status == "ok" else None
        _log_metrics(metrics, link, skip=REF_METRICS if r.model == choice.model else ())
        with tempfile.TemporaryDirectory() as tmp:
            if r.replicates is not None:
                path = Path(tmp) / Path(S.REPLICATES_ARTIFACT).name
                np.save(path, np.asarray(r.replicates, dtype=np.float64))
                mlflow.log_artifact(str(path), str(Path(S.REPLICATES_ARTIFACT).parent))
            if r.status == "ok" and r.features is not None:
                _tag_figure_errors([_log_bootstrap_figure(r, Path(tmp)),
                                    *_log_geometry_figures(r, state, choice.model, Path(tmp))])
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
    if state is not None and not any(s.group == state.group for s in _STAGE2.values()):
        _GROUPS.pop(state.group, None)  # the task's last child run: its embeddings and graphs are released
        _GRAPHS.pop(state.group, None)
        _ALIGN.pop(state.group, None)
    if r.status != "ok":  # failed in stage 2
        _end(r.run_id, r.status)


@contextlib.contextmanager
def stage2_scope(parent_id: str) -> Iterator[None]:
    """Hold the stage-2 state of the parent run `parent_id`'s child runs for the span of the block, then
    release what is left: a task whose stage 2 never ran (the run failed or was interrupted between the
    stages) would otherwise keep its embeddings and graphs for the life of the process."""
    try:
        yield
    finally:
        for run_id in [i for i, s in _STAGE2.items() if s.group[0] == parent_id]:
            del _STAGE2[run_id]
        for held in (_GROUPS, _GRAPHS, _ALIGN):
            for group in [g for g in held if g[0] == parent_id]:
                del held[group]


#: the board metrics linked to a model's LoggedModel per task dataset (what `search_logged_models` ranks on)
MODEL_METRICS = ("cknna_to_ref", "cknna_to_ref_k25", "mutual_knn_to_ref", "cka_to_ref", "energy_mae")
#: those that compare with the reference: not linked for the reference itself (it would rank first at 1.0)
REF_METRICS = ("cknna_to_ref", "cknna_to_ref_k25", "mutual_knn_to_ref", "cka_to_ref")


@dataclass(frozen=True)
class _Stage2:
    """What stage 1 leaves a child run with embeddings for its stage 2: (LoggedModel id, MLflow dataset) or
    None when not linked, its (parent run id, task), the kNN graph cache and k."""

    link: tuple[str, Any] | None
    group: tuple[str, str]
    knn_dir: Path | None
    k: int


#: child run id -> its stage-1 state, until its stage 2
_STAGE2: dict[str, _Stage2] = {}
#: (parent run id, task) -> {model key: result} of the child runs with embeddings, for the CKNNA row figure
_GROUPS: dict[tuple[str, str], dict[str, ModelTaskResult]] = {}
#: (parent run id, task) -> {model key: cosine kNN graph at k}, read once per model for the CKNNA rows
_GRAPHS: dict[tuple[str, str], dict[str, Any]] = {}
#: (parent run id, task) -> [stage-2 start, end of its computation or None] (epoch seconds)
_ALIGN: dict[tuple[str, str], list] = {}
#: (tracking URI, experiment id, model key, checkpoint digest) -> LoggedModel id: searched for once per process
_MODELS: dict[tuple[str, str, str, str], str] = {}


def _draw(path: Path, draw) -> str | None:
    """Run `draw()` (which writes the figure at `path`, its warnings silenced); returns None, or for a figure
    that fails "<file>: <error>" for the figure_error tag (a figure never fails the run)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            draw()
        return None
    except Exception as exc:  # noqa: BLE001 - a preview must never cost the run
        path.unlink(missing_ok=True)
        return f"{path.name}: {type(exc).__name__}: {exc}"


def _tag_figure_errors(errors: list[str | None]) -> None:
    """Add the figure errors (Nones skipped) to the active run's figure_error tag, after any it has."""
    import mlflow

    errors = [e for e in errors if e]
    if not errors:
        return
    run = mlflow.active_run()
    before = mlflow.tracking.MlflowClient().get_run(run.info.run_id).data.tags.get(S.FIGURE_ERROR)
    mlflow.set_tag(S.FIGURE_ERROR, "; ".join([*([before] if before else []), *errors])[:MAX_TAG])


def _log_figure(rel: str, tmp: Path, draw) -> str | None:
    """Draw the figure at tmp/rel with `draw(path)` and log it under rel's folder; the error or None."""
    import mlflow

    path = tmp / rel
    error = _draw(path, lambda: draw(path))
    if error is None:
        mlflow.log_artifact(str(path), str(Path(rel).parent))
    return error


def _log_bootstrap_figure(r: ModelTaskResult, tmp: Path) -> str | None:
    """figures/cknna_bootstrap_<task>.png on the active run, when r has cknna_to_ref and finite replicates."""
    if r.replicates is None or "cknna_to_ref" not in r.metrics:
        return None
    reps = np.asarray(r.replicates, dtype=np.float64)
    if not np.isfinite(reps).any():
        return None
    lo, hi = r.metrics.get("cknna_to_ref_ci_low", np.nan), r.metrics.get("cknna_to_ref_ci_high", np.nan)
    return _log_figure(S.BOOTSTRAP_FIGURE_ARTIFACT.format(task=r.task), tmp, lambda path: run_figures.bootstrap_figure(
        reps, float(r.metrics["cknna_to_ref"]), (float(lo), float(hi)), f"{r.model} on {r.task}", path))


def _log_geometry_figures(r: ModelTaskResult, state: _Stage2 | None, reference: str | None, tmp: Path
                          ) -> list[str | None]:
    """figures/cknna_row_<task>.png (when 2 or more models of the task have embeddings in this invocation)
    and figures/intrinsic_dimension_<task>.png (when r has intrinsic_dimension) on the active run; their
    errors. Cost: one cosine graph read per model and task (kept for the task's other runs), O(n k) per
    CKNNA and for the TwoNN distances, ~0.2-0.4 s of drawing per figure."""
    if state is None:
        return []
    errors = []
    peers = [p for p in _GROUPS.get(state.group, {}).values() if p.status == "ok" and p.features is not None]
    if len(peers) >= 2:
        errors.append(_log_figure(S.CKNNA_ROW_FIGURE_ARTIFACT.format(task=r.task), tmp, lambda path: (
            run_figures.cknna_row_figure(cknna_row(r, peers, state), reference,
                                         f"{r.model} on {r.task}:\nCKNNA (k = {state.k}) to the other models", path))))
    if "intrinsic_dimension" in r.metrics:
        def draw(path: Path) -> None:
            x, y, d = run_figures.twonn_curve(*_first_two_distances(r, state))
            run_figures.id_curve_figure(x, y, d, f"{r.model} on {r.task}: TwoNN fit", path)
        errors.append(_log_figure(S.ID_CURVE_FIGURE_ARTIFACT.format(task=r.task), tmp, draw))
    return errors


def cknna_row(r: ModelTaskResult, peers: list[ModelTaskResult], state: _Stage2) -> dict[str, float]:
    """{other model: CKNNA(r's graph, its graph, k)}: entry [r, other] of the pairwise path's CKNNA matrix
    (benchmark.metrics.pairwise, same preparation, graphs read from the kNN cache), so the reference's entry
    is r's cknna_to_ref. A peer whose features cannot be prepared is left out."""
    graphs = _GRAPHS.setdefault(state.group, {})

    def graph(p: ModelTaskResult):
        if p.model not in graphs:
            graphs[p.model] = pairwise.prepare(p.features, state.k, state.knn_dir, p.cache_key or None).graph
        return graphs[p.model]

    own = graph(r)
    row = {}
    for p in peers:
        if p.model == r.model:
            continue
        try:
            row[p.model] = float(cknna(own, graph(p), state.k))
        except DataError:
            continue
    return row


def _first_two_distances(r: ModelTaskResult, state: _Stage2) -> tuple[np.ndarray, np.ndarray]:
    """The first and second euclidean neighbour distances of r's raw features, the graph stage 2's
    intrinsic_dimension reads (read from the kNN cache when stage 2 stored it; else one O(n^2 d) pass)."""
    raw = np.asarray(r.features, dtype=np.float64)
    if state.knn_dir is not None and r.cache_key:
        g = cached_knn_graph(raw, 2, "euclidean", pairwise.euclidean_graph_path(state.knn_dir, r.cache_key))
    else:
        g = knn_graph(raw, 2, metric="euclidean")
    return g.values[:, 0], g.values[:, 1]


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


def _log_input(dataset: Any, context: str, attempts: int = 4) -> None:
    """Link the task dataset to the active run. The tracking server looks a dataset up and inserts it when
    missing in two steps, so concurrent runs of one task race on that insert and the loser gets a unique-key
    error although the row now exists: that error is retried (the retry finds the row); any other propagates."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from benchmark import tracking

    for attempt in range(attempts):
        try:
            mlflow.log_input(dataset, context=context)
            return
        except MlflowException as exc:
            if attempt == attempts - 1 or not tracking.lost_insert_race(exc):
                raise
            time.sleep(0.2 * (attempt + 1))


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
