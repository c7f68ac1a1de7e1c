"""`matteralign submit <model-key>`: validate a new models.yaml entry, run it on every task, regenerate the board.

Validation is strict: the whole models.yaml passes the schema (unknown keys rejected), the key exists and
its adapter imports and is a `ModelAdapter`; otherwise a ConfigError says what to fix (exit 2). The run
covers the submitted model, the reference and every model already on the leaderboard (their embeddings
come from the content-addressed cache, so only the new model is embedded), on every task, then the
leaderboard is rewritten. Resubmitting the same checkpoint gives the same result identity; the numbers
are compared with the previous run of that identity and any difference is reported.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from benchmark.errors import ConfigError, MatteralignError
from benchmark.registry import import_object, load_models, models_by_key
from benchmark.registry.schema import ModelEntry

REPRO_RTOL = 1e-6
NOT_COMPARED = {"extract_seconds"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_key", help="key of the models.yaml entry to submit")
    parser.add_argument("--models-file", type=Path, default=None, help="models registry (default: models.yaml)")
    parser.add_argument("--n-samples", action="append", metavar="N|TASK=N", help="sample size (default: the task's)")
    parser.add_argument("--tasks-dir", type=Path, default=None, help="task YAML folder (default: tasks/)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default $MLFLOW_TRACKING_URI or sqlite)")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default $MATTERALIGN_EXPERIMENT)")
    parser.add_argument("--out", type=Path, default=Path("leaderboard"), help="leaderboard directory")


def validate(model_key: str, models_file: Path | None) -> tuple[ModelEntry, str, list[str]]:
    """The submitted entry, the reference key and all registry keys; ConfigError when anything is off."""
    from benchmark.models.base import ModelAdapter

    models = load_models(models_file)
    registry = models_by_key(models)
    source = str(models_file or "models.yaml")
    if model_key not in registry:
        raise ConfigError(
            f"model {model_key!r} is not in {source}. Add an entry (template in CONTRIBUTING.md); "
            f"known keys: {', '.join(sorted(registry))}."
        )
    entry = registry[model_key]
    adapter = import_object(entry.adapter, f"model {model_key!r} adapter")
    if not (isinstance(adapter, type) and issubclass(adapter, ModelAdapter)):
        raise ConfigError(
            f"model {model_key!r}: adapter {entry.adapter!r} is not a subclass of "
            "benchmark.models.base.ModelAdapter. Point `adapter` at an adapter class (see benchmark/models/)."
        )
    return entry, models.reference.model, list(registry)


def board_models(tracking_uri: str | None, experiment: str | None) -> tuple[list[str], pd.DataFrame]:
    """Model keys on the current leaderboard and all child runs so far (empty when nothing ran yet)."""
    from benchmark.leaderboard.collect import load_child_runs, select_board

    try:
        frame = load_child_runs(tracking_uri, experiment)
        board = select_board(frame)
    except MatteralignError:
        return [], pd.DataFrame()
    return sorted(set(board.results["model"])), frame


def run_list(entry: ModelEntry, reference: str, on_board: list[str], known: list[str]) -> list[str]:
    """Submitted model first, then the reference, then the board's models that models.yaml still lists."""
    return list(dict.fromkeys([entry.key, reference, *[m for m in on_board if m in known]]))


def reproducibility(before: pd.DataFrame, after: pd.DataFrame, model: str, new_run_ids: set[str]) -> list[str]:
    """One line per task comparing the new run of `model` with the previous run of the same identity."""
    from benchmark.leaderboard.collect import IDENTITY, latest_per_identity
    from benchmark.metrics import METRICS

    lines = []
    new = after[after["run_id"].isin(new_run_ids) & (after["model"] == model) & (after["status"] == "ok")]
    old = latest_per_identity(before[before["status"] == "ok"]) if len(before) else before
    for _, r in new.sort_values("task").iterrows():
        prev = old[(old[IDENTITY] == r[IDENTITY]).all(axis=1)] if len(old) else old
        if prev.empty:
            lines.append(f"  {r['task']}: first result for this checkpoint")
            continue
        p = prev.iloc[0]
        diffs = [
            f"{m} {p[m]:.6g} -> {r[m]:.6g}"
            for m in METRICS
            if m not in NOT_COMPARED and m in r and m in p and math.isfinite(float(r[m])) and math.isfinite(float(p[m]))
            and not math.isclose(float(r[m]), float(p[m]), rel_tol=REPRO_RTOL, abs_tol=1e-12)
        ]
        lines.append(f"  {r['task']}: " + (f"DIFFERS from run {p['run_id']}: {'; '.join(diffs)}" if diffs
                                           else f"identical to run {p['run_id']}"))
    return lines


def main(args: argparse.Namespace) -> int:
    from benchmark.leaderboard.collect import load_child_runs
    from benchmark.pipeline.cli import parse_n_samples
    from benchmark.pipeline.run import RunConfig, run_benchmark

    entry, reference, known = validate(args.model_key, args.models_file)
    on_board, before = board_models(args.tracking_uri, args.experiment)
    models = run_list(entry, reference, on_board, known)
    print(f"submit {entry.key}: running {', '.join(models)} on every task")
    summary = run_benchmark(RunConfig(
        models=models, tasks=None, n_samples=parse_n_samples(args.n_samples), tracking_uri=args.tracking_uri,
        experiment=args.experiment, models_file=args.models_file, tasks_dir=args.tasks_dir,
        leaderboard_dir=args.out, progress=True,
    ))
    mine = [r for r in summary.results if r.model == entry.key]
    for r in mine:
        print(f"  {r.task}: {r.status}" + (f" ({r.reason})" if r.reason else ""))
    if not any(r.status == "ok" for r in mine):
        print(f"submit {entry.key}: no task ran; fix the reasons above and resubmit.")
        return 1
    after = load_child_runs(args.tracking_uri, args.experiment)
    print("reproducibility against earlier runs of the same checkpoint:")
    print("\n".join(reproducibility(before, after, entry.key, {r.run_id for r in mine if r.run_id})))
    print(f"leaderboard regenerated under {args.out}/ (parent run {summary.parent_run_id})")
    return 0
