"""The end-to-end run: tasks -> structures -> adapters -> cached embeddings -> kNN graphs -> metrics -> MLflow.

Two stages per invocation. Stage 1 (benchmark.pipeline.embed) embeds every (model, task) and logs one child
run each as soon as its embeddings exist (benchmark.pipeline.record), so nothing computed is lost if a later
step fails. Stage 2 (benchmark.pipeline.align) picks the reference per task and adds the alignment metrics
to those child runs. Where jobs execute is an Executor (benchmark.pipeline.executors).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.embeddings import cache_root
from benchmark.errors import ConfigError, DataError
from benchmark.metrics.registry import METRICS, names
from benchmark.pipeline import record
from benchmark.pipeline.align import align_task
from benchmark.pipeline.board import TaskBoard, freeze_board, pinned_models, pinned_reference, run_board, task_board
from benchmark.pipeline.embed import embed_one
from benchmark.pipeline.executors import executor_for
from benchmark.pipeline.reference import choose_references
from benchmark.pipeline.types import ModelTaskResult, ReferenceChoice, RunConfig, RunSummary
from benchmark.registry import ModelEntry, TaskSpec, load_models, load_tasks, models_by_key, select
from benchmark.registry.loader import DEFAULT_TASKS_DIR, resolve_models_file
from benchmark.registry.schema import ModelsFile
from benchmark.structures import Dataset
from benchmark.tasks import build_dataset
from benchmark import tracking

__all__ = ["ModelTaskResult", "RunConfig", "RunSummary", "run_benchmark", "summary_frame"]


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _models(cfg: RunConfig) -> tuple[ModelsFile, str]:
    if isinstance(cfg.models_file, ModelsFile):
        return cfg.models_file, "the given models registry"
    path = resolve_models_file(cfg.models_file)
    return load_models(path), str(path)


def _tasks(cfg: RunConfig) -> tuple[dict[str, TaskSpec], str]:
    if isinstance(cfg.tasks_dir, dict):
        return cfg.tasks_dir, "the given tasks"
    return load_tasks(cfg.tasks_dir), str(cfg.tasks_dir or DEFAULT_TASKS_DIR)


def _entries(models_file: ModelsFile, source: str, cfg: RunConfig, pinned: list[str], unpinned: bool
             ) -> tuple[list[ModelEntry], set[str], str, str]:
    """Models to run, the keys of those selected (not added as references), the configured reference key and
    the fallback policy. The board's pinned references of the selected tasks are always included (those in the
    registry), and the configured reference when some selected task has no pinned one (`unpinned`)."""
    registry = models_by_key(models_file)
    if cfg.models:
        entries = select(registry, cfg.models, "model key", source)
    else:
        entries = [m for m in models_file.models if m.default]
        if not entries:
            raise ConfigError(f"{source}: no entry has 'default: true'; name models with --models")
    ref = cfg.reference or models_file.reference.model
    if ref not in registry:
        raise ConfigError(f"reference model {ref!r} is not a key in {source}")
    refs = [*pinned, ref] if unpinned else pinned
    extra = [registry[m] for m in dict.fromkeys(refs) if m in registry and m not in [e.key for e in entries]]
    return [*extra, *entries], {e.key for e in entries}, ref, models_file.reference.fallback


def _models_path(cfg: RunConfig, models_file: ModelsFile, tmp: Path) -> Path:
    """A models.yaml path for isolated workers: the given file, or the given registry written once to tmp."""
    if isinstance(cfg.models_file, ModelsFile):
        import yaml

        path = tmp / "models.yaml"
        path.write_text(yaml.safe_dump(models_file.model_dump(mode="json", exclude_unset=True), sort_keys=False))
        return path
    return resolve_models_file(cfg.models_file)


def run_benchmark(cfg: RunConfig) -> RunSummary:
    """Run every selected (model, task), log it to MLflow, and (optionally) regenerate the leaderboard."""
    import mlflow

    check_options(cfg)
    models_file, source = _models(cfg)
    tasks, task_source = _tasks(cfg)
    specs: list[TaskSpec] = select(tasks, cfg.tasks, "task", task_source)
    board = run_board(cfg)
    on_board = [s.name for s in specs if board is not None and s.name in board.tasks and cfg.reference is None]
    entries, selected, ref_key, fallback = _entries(models_file, source, cfg, pinned_models(board, on_board),
                                          unpinned=len(on_board) < len(specs))
    check_n_samples(cfg, tasks, task_source)
    if cfg.leaderboard_dir is not None:
        from benchmark.leaderboard.build import check_out_dir

        check_out_dir(Path(cfg.leaderboard_dir))  # a file in the way fails now, not after every model has run
    executor = executor_for(cfg)
    root = cfg.cache_dir or cache_root()
    check_cache_dir(Path(root))
    record.leave_foreign_project_run(cfg.experiment, cfg.tracking_uri)
    uri, experiment = tracking.setup(cfg.tracking_uri, cfg.experiment)
    record.mark_experiment_kind(experiment)
    for run_id in record.mark_dead_parents(experiment):
        _say(f"marked run {run_id} KILLED: it was left RUNNING by a process of this host that no longer exists")
    sha = tracking.git_sha()
    results: list[ModelTaskResult] = []
    said: dict[tuple[str, str], str] = {}
    with tempfile.TemporaryDirectory() as tmp, \
            mlflow.start_run(run_name=cfg.run_name or f"benchmark-{time.strftime('%Y%m%d-%H%M%S')}",
                             log_system_metrics=not record.system_metrics_off()) as parent, \
            record.stage2_scope(parent.info.run_id):
        models_path = _models_path(cfg, models_file, Path(tmp))
        mlflow.set_tags(record.parent_tags(sha, board.id if board else ""))
        record.log_parent_params(record.parent_params(entries, specs, cfg, ref_key, fallback))
        datasets: dict[str, Dataset] = {}
        boards: dict[str, TaskBoard] = {}
        skipped_tasks: dict[str, str] = {}
        for spec in specs:
            _say(f"[task {spec.name}] loading {(cfg.n_for(spec.name) or spec.n_samples)} structures ...")
            try:
                ds = build_dataset(spec, cfg.n_for(spec.name), cfg.seed)
            except (ConfigError, DataError, ImportError, OSError) as exc:
                reason = f"task data could not be loaded: {type(exc).__name__}: {exc}"
                skipped_tasks[spec.name] = reason
                said[("", reason)] = spec.name
                record.log_task_skipped(spec.name, reason)
                _say(f"[task {spec.name}] skipped for every model; {reason}")
                results.extend(ModelTaskResult(e.key, spec.name, "skipped", reason=reason,
                                               role=spec.role_for(e.domain)) for e in entries)
                continue
            try:
                check_k(cfg.k, spec.name, len(ds))
            except ConfigError as exc:
                reason = str(exc)
                skipped_tasks[spec.name] = reason
                record.log_task_skipped(spec.name, reason)
                _say(f"[task {spec.name}] skipped for every model; {reason}")
                results.extend(ModelTaskResult(e.key, spec.name, "skipped", reason=reason,
                                               role=spec.role_for(e.domain)) for e in entries)
                continue
            datasets[spec.name] = ds
            tb = boards[spec.name] = _task_board(board, spec, ds, cfg)
            if tb.exploration:
                _say(f"[task {spec.name}] exploration run, not a result of board {tb.board}: {tb.exploration}")
            excluded = record.excluded_counts(ds)
            if excluded:
                _say(f"[task {spec.name}] the sampler left out {sum(excluded.values())} candidates: "
                     + ", ".join(f"{why} ({n})" for why, n in excluded.items()))
            mlflow.log_param(f"n_samples.{spec.name}", len(ds))
            executor.prefetch(entries, ds, root)
            outside: dict[str, list[str]] = {}
            for entry in entries:
                started = time.time()  # the child run's start time: its duration covers the embedding
                res, emb = embed_one(entry, spec, ds, cfg, root, models_path)
                res.board, res.exploration = tb.board, tb.exploration
                if entry.key in selected or tb.task is None:  # a board's pinned reference not asked for: no run
                    record.log_child(res, entry, spec, ds, cfg, parent.info.run_id, sha, emb, started=started,
                                     knn_dir=Path(root) / "knn")
                results.append(res)
                if res.outside_modality:
                    outside.setdefault(res.outside_modality, []).append(entry.key)
                else:
                    _say(f"[task {spec.name}] {entry.key}: {_status_line(res, said)}")
                for w in res.warnings:
                    _say(f"[task {spec.name}] {entry.key}: warning: {w}")
            for why, keys in outside.items():
                _say(f"[task {spec.name}] skipped {len(keys)} model(s) that read another modality ({why}): "
                     + ", ".join(keys))
        free = [s for s in specs if s.name not in boards or boards[s.name].task is None]
        references = choose_references(free, results, ref_key, fallback)
        stored: dict[str, ModelTaskResult | None] = {}
        for spec in specs:
            if spec.name not in references:
                references[spec.name], stored[spec.name] = pinned_reference(
                    boards[spec.name], [r for r in results if r.task == spec.name], board, spec.name, Path(root),
                    uri)
        for spec in specs:
            choice = references[spec.name]
            record.log_reference(spec.name, choice)
            _say(f"[task {spec.name}] reference: {choice.model or 'none'} ({_short_reason(choice, said)})")
            record.stage2_started(spec.name)  # each child run's align_seconds counts from here
            align_task([r for r in results if r.task == spec.name], choice, cfg, root, executor,
                       ref_result=stored.get(spec.name))
        summary_df = summary_frame(results, references)
        path = Path(tmp) / "summary.csv"
        summary_df.to_csv(path, index=False)
        mlflow.log_artifact(str(path))
        summary = RunSummary(parent.info.run_id, uri, results, references, skipped_tasks=skipped_tasks)
    if board is None and _freezes_first_board(cfg, summary):
        spec_, path_ = freeze_board(parent.info.run_id, uri, experiment, version=1, root=Path(root))
        _say(f"froze board {spec_.id} to {path_}: later runs are aligned to its pinned references "
             "(commit it; `matteralign board show` says what it holds)")
    if cfg.leaderboard_dir is not None:
        summary.leaderboard = _write_leaderboard(cfg, uri, experiment)
    print(ranked_summary(results, references))
    return summary


def _task_board(board, spec: TaskSpec, ds: Dataset, cfg: RunConfig) -> TaskBoard:
    """`task_board`, with --reference on a board task making it an exploration against that reference."""
    tb = task_board(board, spec, ds, cfg.k)
    if tb.task is not None and cfg.reference is not None:
        why = (f"--reference {cfg.reference} instead of the board's pinned {tb.task.reference.model}")
        return TaskBoard(tb.board, "; ".join(w for w in (tb.exploration, why) if w), None)
    return tb


def _freezes_first_board(cfg: RunConfig, summary: RunSummary) -> bool:
    """The default run (models.yaml's default models on tasks/, each at its own size, seed, k and reference)
    freezes board v1 when no board exists yet and some task got a reference."""
    from benchmark.registry.loader import BOARD_ENV
    import os

    default = (cfg.models is None and cfg.tasks is None and cfg.n_samples is None and cfg.seed is None
               and cfg.k == RunConfig.k and cfg.reference is None and cfg.board_file is None
               and os.environ.get(BOARD_ENV) is None and cfg.models_file is None and cfg.tasks_dir is None)
    return default and summary.exit_code() <= 1 and any(c.model for c in summary.references.values())


def check_options(cfg: RunConfig) -> None:
    """ConfigError for option values that would silently change what is measured: k < 1, a model or task named
    twice, or no bootstrap resamples without the explicit no_ci (`--no-ci`)."""
    if cfg.k < 1:
        raise ConfigError(f"k must be a positive integer, got {cfg.k}")
    for what, values in (("--models", cfg.models), ("--tasks", cfg.tasks)):
        dup = sorted({v for v in values or [] if (values or []).count(v) > 1})
        if dup:
            raise ConfigError(f"{what} names {', '.join(map(repr, dup))} more than once; name each once")
    if cfg.no_ci and cfg.n_boot != 0:
        raise ConfigError(f"--no-ci runs without confidence intervals, but --n-boot {cfg.n_boot} asks for them; "
                          "give one or the other")
    if not cfg.no_ci and cfg.n_boot < 2:
        raise ConfigError(f"--n-boot {cfg.n_boot}: the confidence intervals (which `matteralign check` needs) take "
                          "at least 2 resamples; pass --no-ci to run without them on purpose")


def check_cache_dir(root: Path) -> None:
    """ConfigError unless the embedding cache `root` is (or can be made) a writable folder: a file in the way
    or a read-only folder would otherwise fail every model one by one."""
    fix = "pass --cache-dir (or set MATTERALIGN_CACHE) to a writable folder"
    if root.exists() and not root.is_dir():
        raise ConfigError(f"embedding cache {root} is a file, not a folder; {fix}")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-probe-"):
            pass
    except OSError as exc:
        raise ConfigError(f"embedding cache {root} is not writable ({type(exc).__name__}: {exc.strerror or exc}); "
                          f"{fix}") from None


def check_k(k: int, task: str, n: int) -> None:
    """ConfigError unless k <= n - 1 on `task` (a kNN graph of n points has at most n - 1 neighbours per
    point; cutting k silently would log one k and measure another)."""
    if k > n - 1:
        raise ConfigError(f"--k {k} is larger than n - 1 = {n - 1} on task {task!r} (n = {n} structures); "
                          f"pass --k {max(n - 1, 1)} or less, or a larger --n-samples for {task}")


def check_n_samples(cfg: RunConfig, tasks: dict[str, TaskSpec], source: str) -> None:
    """ConfigError naming any task of a per-task --n-samples that is not a task, and the valid names."""
    if not isinstance(cfg.n_samples, dict):
        return
    unknown = [t for t in cfg.n_samples if t not in tasks]
    if unknown:
        raise ConfigError(f"--n-samples names unknown task(s) {', '.join(map(repr, unknown))}; "
                          f"tasks in {source}: {', '.join(sorted(tasks))}")


def _status_line(res: ModelTaskResult, said: dict[tuple[str, str], str]) -> str:
    """"ok", or the status with its reason the first time a model gives that reason in this run, then "(as above)"."""
    if res.status == "ok":
        return "ok (cache: nothing recomputed)" if res.reused else "ok"
    key = (res.model, res.reason)
    if key in said:
        return f"{res.status} (as on {said[key]})"
    said[key] = res.task
    return f"{res.status}: {res.reason}"


def _short_reason(choice: ReferenceChoice, said: dict[tuple[str, str], str]) -> str:
    """The reference reason without repeating a skip reason already printed."""
    text = choice.reason
    for (_, reason), task in said.items():
        if reason and reason in text:
            text = text.replace(reason, f"see {task} above")
    return text


def _write_leaderboard(cfg: RunConfig, uri: str, experiment: str) -> dict[str, Path]:
    from benchmark.leaderboard.build import write_leaderboard

    out = write_leaderboard(Path(cfg.leaderboard_dir), tracking_uri=uri, experiment=experiment,  # type: ignore[arg-type]
                            board_file=cfg.board_file)
    _say(f"leaderboard written to {cfg.leaderboard_dir}/")
    return out


def summary_frame(results: list[ModelTaskResult], references: dict[str, ReferenceChoice]):
    """One row per (model, task) with the registry's summary metrics (NaN where not computed)."""
    import pandas as pd

    cols = names(summary=True)
    rows = []
    for r in results:
        row: dict[str, Any] = {"model": r.model, "task": r.task, "role": r.role, "status": r.status}
        row["reference"] = references[r.task].model if r.task in references else None
        for c in cols:
            row[c] = r.metrics.get(c, np.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=["model", "task", "role", "status", "reference", *cols])


def ranked_summary(results: list[ModelTaskResult], references: dict[str, ReferenceChoice], top: int = 10) -> str:
    """Per task: the ok models ranked by CKNNA to the reference (best first), then how many did not run."""
    rank_by = "cknna_to_ref"
    lines = ["", "summary (ranked by CKNNA to the reference; higher is better)"]
    for task in sorted({r.task for r in results}):
        ref = references.get(task)
        rows = [r for r in results if r.task == task]
        ok = [r for r in rows if r.status == "ok" and (ref is None or r.model != ref.model)]
        ok.sort(key=lambda r: (-r.metrics.get(rank_by, -np.inf), r.model))
        lines.append(f"  {task} (reference {ref.model if ref and ref.model else 'none'}):")
        for i, r in enumerate(ok[:top], start=1):
            v = r.metrics.get(rank_by)
            mae = r.metrics.get("energy_mae", r.metrics.get("probe_energy_mae"))
            lines.append(f"    {i:>2}. {r.model:<28} {METRICS[rank_by].display} "
                         f"{'n/a' if v is None else f'{v:.3f}'}"
                         + ("" if mae is None else f"   MAE {mae:.4g} eV/atom"))
        if len(ok) > top:
            lines.append(f"        ... {len(ok) - top} more on the leaderboard")
        other = [r for r in rows if r.status != "ok"]
        if other:
            lines.append(f"    not run: {', '.join(f'{r.model} ({r.status})' for r in other)}")
    return "\n".join(lines)

