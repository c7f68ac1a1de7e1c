"""Read child runs back from MLflow into one tidy DataFrame, then select what a leaderboard may show.

A result's identity is (model key, checkpoint digest, task, task version, benchmark version)
(docs/run-schema.md); for each identity only the newest complete finished child run counts (a run whose
stage 2 never ended is skipped, and said so in the board's notes). A board uses one
benchmark version, one task version per task and one reference per task, so numbers computed under
different definitions are never mixed; runs left out for that reason are reported, not dropped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmark import tracking
from benchmark.errors import MatteralignError
from benchmark.registry.schema import BoardSpec
from benchmark.tracking import schema as S

IDENTITY = list(S.IDENTITY)
#: frame column -> child-run tag (schema names)
TAG_COLUMNS = {
    "model": S.MODEL, "task": S.TASK, "role": S.ROLE, "status": S.STATUS, "reason": S.REASON,
    "family": S.FAMILY, "modality": S.MODALITY, "domain": S.DOMAIN, "reference": S.REFERENCE,
    "is_reference": S.IS_REFERENCE, "benchmark_version": S.BENCHMARK_VERSION, "cache_reused": S.CACHE_REUSED,
    "complete": S.COMPLETE, "board": S.BOARD, "exploration": S.EXPLORATION, "exploration_reason": S.EXPLORATION_REASON, "track": S.TRACK,
}
PARAM_COLUMNS = [S.P[p] for p in (
    "model_name", "model_version", "checkpoint_digest", "task_version", "data_digest", "ids_digest",
    "n_samples", "seed", "k", "parameters", "training_data", "energy_head", "embedding_dim", "cache_key",
)]


def client(tracking_uri: str | None = None):
    """An MlflowClient on the given store (no global MLflow state is touched)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking.tracking_uri(tracking_uri))


def experiment_id(cl, experiment: str | None = None) -> str:
    """The experiment's id; a missing experiment is an actionable error (readers never create one)."""
    name = tracking.experiment_name(experiment)
    try:
        exp = cl.get_experiment_by_name(name)
    except Exception as exc:  # noqa: BLE001 - any store failure becomes one actionable message
        raise MatteralignError(
            f"cannot read the MLflow tracking store {cl.tracking_uri!r}: {type(exc).__name__}: {str(exc)[:300]}. "
            "Pass --tracking-uri (or set MLFLOW_TRACKING_URI) to the store `matteralign run` wrote to."
        ) from None
    if exp is None:
        raise MatteralignError(
            f"no experiment {name!r} in the MLflow store {cl.tracking_uri!r}. Run `matteralign run` first, or "
            "pass --tracking-uri / --experiment (MLFLOW_TRACKING_URI / MATTERALIGN_EXPERIMENT) naming where it wrote."
        )
    return exp.experiment_id


def search(cl, exp_id: str, kind: str) -> list:
    """Every run of one kind (schema `Kind`) in the experiment, all pages."""
    runs, token = [], None
    while True:
        page = cl.search_runs(
            [exp_id], filter_string=S.kind_filter(kind), max_results=5000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def runs_frame(runs: list, parents: dict[str, dict[str, str]] | None = None) -> pd.DataFrame:
    """One row per child run: tags and params under their schema names, metrics under the metric name.

    When a child lacks its reference tag, the parent's per-task reference tag is used.
    """
    parents = parents or {}
    rows = []
    for r in runs:
        tags, params = r.data.tags, r.data.params
        row: dict = {col: tags.get(tag, "") for col, tag in TAG_COLUMNS.items()}
        row["model"] = row["model"] or params.get("model_key", "")
        row["task"] = row["task"] or params.get("task", "")
        row["benchmark_version"] = row["benchmark_version"] or params.get("benchmark_version", "")
        for p in PARAM_COLUMNS:
            row[p] = params.get(p, "")
        parent_id = tags.get("mlflow.parentRunId", "")
        parent_tags = parents.get(parent_id, {})
        if not row["reference"]:
            row["reference"] = parent_tags.get(S.per_task(S.REFERENCE, row["task"]), "")
        if not row["is_reference"]:
            row["is_reference"] = str(bool(row["reference"]) and row["reference"] == row["model"]).lower()
        row["reference_reason"] = parent_tags.get(S.per_task(S.REFERENCE_REASON, row["task"]), "")
        row.update(
            run_id=r.info.run_id, parent_run_id=parent_id, run_status=r.info.status,
            start_time=int(r.info.start_time or 0), end_time=int(r.info.end_time or 0),
        )
        row.update({name: float(v) for name, v in r.data.metrics.items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=[*TAG_COLUMNS, *PARAM_COLUMNS, "reference_reason", "run_id", "parent_run_id",
                                     "run_status", "start_time", "end_time"])
    return frame


def load_child_runs(tracking_uri: str | None = None, experiment: str | None = None) -> pd.DataFrame:
    """All child runs of the experiment (any status), newest first."""
    cl = client(tracking_uri)
    exp_id = experiment_id(cl, experiment)
    parents = {p.info.run_id: p.data.tags for p in search(cl, exp_id, S.Kind.PARENT)}
    frame = runs_frame(search(cl, exp_id, S.Kind.MODEL_TASK), parents)
    return sort_newest_first(frame)


def sort_newest_first(frame: pd.DataFrame) -> pd.DataFrame:
    """Newest start first; end time then run id break ties so the order is deterministic."""
    return frame.sort_values(["start_time", "end_time", "run_id"], ascending=False, kind="mergesort").reset_index(
        drop=True
    )


def is_complete(frame: pd.DataFrame) -> pd.Series:
    """Runs whose stage 2 ended: FINISHED with tag `complete` not `false` (runs from before the tag count as
    complete), or a skipped / failed (model, task) ended with its S.END_STATUS and `complete` = `true` (a crash
    or kill leaves `complete` = `false`, so it is never taken for a recorded failure)."""
    flag = (frame["complete"] if "complete" in frame.columns else pd.Series("", index=frame.index)).fillna("")
    status = frame["status"].fillna("") if "status" in frame.columns else pd.Series("", index=frame.index)
    recorded = pd.Series([S.END_STATUS.get(s) == rs and s != "ok" for s, rs in zip(status, frame["run_status"])],
                         index=frame.index, dtype=bool)
    return ((frame["run_status"] == "FINISHED") & (flag != S.COMPLETE_NO)) | (recorded & (flag == S.COMPLETE_YES))


def incomplete_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """Child runs a reader skips: stage 1 logged, stage 2 never finished (a crash, a kill)."""
    return frame[~is_complete(frame)]


def incomplete_note(frame: pd.DataFrame) -> str | None:
    """One line naming the incomplete runs a reader skipped (None when there are none)."""
    bad = incomplete_runs(frame)
    if bad.empty:
        return None
    names = [f"{m}/{t} (run {rid[:8]}, {st.lower()})"
             for m, t, rid, st in zip(bad["model"], bad["task"], bad["run_id"], bad["run_status"])]
    more = f" and {len(names) - 10} more" if len(names) > 10 else ""
    return (f"skipped {len(names)} incomplete run(s) (stage 2 never finished: a crashed or killed run), using the "
            f"newest complete result instead: {', '.join(names[:10])}{more}")


def latest_per_identity(frame: pd.DataFrame) -> pd.DataFrame:
    """The newest complete FINISHED child run for each result identity (see `is_complete`)."""
    done = sort_newest_first(frame[is_complete(frame)])
    return done.drop_duplicates(subset=IDENTITY, keep="first").reset_index(drop=True)


def version_key(version: str) -> tuple:
    """Order versions numerically where they are numbers ('0.10' > '0.9'), else as text."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.\-+]", str(version)))


@dataclass
class Board:
    """What one leaderboard shows: ok results, runs that could not be ranked, and the versions used."""

    benchmark_version: str
    results: pd.DataFrame
    not_ranked: pd.DataFrame
    task_versions: dict[str, str] = field(default_factory=dict)
    references: dict[str, str] = field(default_factory=dict)
    reference_reasons: dict[str, str] = field(default_factory=dict)
    roles: dict[str, dict[str, str]] = field(default_factory=dict)
    #: what the reader skipped and why (incomplete runs), for the board's notes
    notes: list[str] = field(default_factory=list)
    #: the frozen board definition these results were selected for (None: the provisional board of runs made
    #: without one)
    definition: BoardSpec | None = None
    #: task -> model -> bootstrap replicates of cknna_to_ref (`artifacts.load_replicates`; {} until loaded)
    replicates: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def select_board(frame: pd.DataFrame, benchmark_version: str | None = None,
                 definition: BoardSpec | None = None) -> Board:
    """The results a leaderboard shows.

    With a frozen board `definition` whose results are in the store: only that board's results (tag `board`
    = its id, not an exploration), on its tasks, against its pinned references. Otherwise the provisional
    board of the runs made without a board: one benchmark version (the highest, unless given), per task its
    highest task version and the reference of its newest run. Either way per model its newest checkpoint; ok
    runs are ranked, the rest are listed with their reason. A (model, task) with an ok result is not also
    listed as skipped/failed; an ok run computed against another task version or reference is listed as
    excluded, with what to rerun. Exploration runs (another sample, seed or k) never appear.
    """
    latest = latest_per_identity(frame)
    if latest.empty:
        raise MatteralignError(
            "no finished model-task runs in the experiment. Run `matteralign run` (or check --tracking-uri / "
            "--experiment) before building the leaderboard."
        )
    board_col = latest["board"].fillna("") if "board" in latest else pd.Series("", index=latest.index)
    explore = (latest["exploration"].fillna("") == "true") if "exploration" in latest else board_col != board_col
    notes = [n for n in [incomplete_note(frame)] if n]
    if definition is not None and (board_col == definition.id).any():
        mine = (board_col == definition.id) & latest["task"].isin(list(definition.tasks))
        n_explore = int((mine & explore).sum())
        if n_explore:
            notes.append(f"{n_explore} exploration run(s) of board {definition.id} (another sample size, seed, k "
                         "or reference) are in MLflow and never on the board")
        runs = latest[mine & ~explore]
        versions = sorted(set(runs["benchmark_version"]), key=version_key)
        version = definition.benchmark_version
        task_versions = {t: definition.tasks[t].version for t in definition.tasks if (runs["task"] == t).any()}
        references = {t: definition.tasks[t].reference.model for t in task_versions}
        reasons = {t: f"pinned by board {definition.id}: {definition.tasks[t].reference.reason}" for t in task_versions}
        ok = runs[runs["status"] == "ok"]
        keep, excluded = [r for _, r in ok.iterrows()], []
        if len(versions) > 1:
            notes.append(f"results of benchmark versions {', '.join(versions)} against the same frozen board")
    else:
        runs = latest[(board_col == "") & ~explore]
        if runs.empty:
            raise MatteralignError(
                "every finished run in the experiment belongs to a frozen board other than the one given, or is "
                "an exploration run; pass the board file they were run against (--board) or run the default "
                "benchmark first.")
        versions = sorted(set(runs["benchmark_version"]), key=version_key)
        version = benchmark_version or versions[-1]
        if version not in versions:
            raise MatteralignError(
                f"benchmark version {version!r} has no runs; versions in the store: {', '.join(versions)}."
            )
        runs = runs[runs["benchmark_version"] == version]
        keep, excluded, task_versions, references, reasons = _provisional(runs)
        definition = None
    results = pd.DataFrame(keep, columns=runs.columns)
    if not results.empty:
        newest_digest = results.groupby("model", sort=False)["checkpoint_digest"].first()
        same = results["checkpoint_digest"] == results["model"].map(newest_digest)
        for _, r in results[~same].iterrows():
            excluded.append({**r.to_dict(), "status": "excluded",
                             "reason": "an older checkpoint of this model; the board shows the newest"})
        results = results[same]
    results = results.drop_duplicates(subset=["model", "task"], keep="first").reset_index(drop=True)
    ranked = set(zip(results["model"], results["task"]))
    failed = runs[runs["status"] != "ok"].drop_duplicates(subset=["model", "task"], keep="first")
    excluded_frame = pd.DataFrame(excluded, columns=runs.columns)
    not_ranked = pd.concat([_unranked(failed, ranked), _unranked(excluded_frame, ranked)], ignore_index=True)
    not_ranked = not_ranked.drop_duplicates(subset=["model", "task"], keep="first")
    not_ranked = not_ranked.sort_values(["model", "task"], kind="mergesort").reset_index(drop=True)
    roles: dict[str, dict[str, str]] = {}
    for _, r in results.iterrows():
        roles.setdefault(r["model"], {})[r["task"]] = r["role"]
    return Board(version, results, not_ranked, task_versions, references, reasons, roles, notes, definition)


def _provisional(runs: pd.DataFrame) -> tuple[list, list[dict], dict[str, str], dict[str, str], dict[str, str]]:
    """Per task of a provisional board: its highest task version and the reference of its newest ok run; ok
    rows on those are kept, the others excluded with what to rerun."""
    ok = runs[runs["status"] == "ok"]
    excluded: list[dict] = []
    keep = []
    task_versions, references, reasons = {}, {}, {}
    for task in sorted(set(runs["task"])):
        task_runs = ok[ok["task"] == task]
        if task_runs.empty:
            continue
        top = max(task_runs["task_version"], key=version_key)
        newest = task_runs[task_runs["task_version"] == top].iloc[0]
        task_versions[task] = newest["task_version"]
        references[task] = newest["reference"]
        reasons[task] = newest["reference_reason"]
        for _, r in task_runs.iterrows():
            if r["task_version"] != newest["task_version"]:
                why = f"task version {r['task_version']} (board uses {newest['task_version']}); rerun it"
            elif r["reference"] != newest["reference"]:
                why = f"aligned to reference {r['reference']!r} (board uses {newest['reference']!r}); rerun it"
            else:
                keep.append(r)
                continue
            excluded.append({**r.to_dict(), "status": "excluded", "reason": why})
    return keep, excluded, task_versions, references, reasons


def _unranked(frame: pd.DataFrame, ranked: set[tuple[str, str]]) -> pd.DataFrame:
    """Rows whose (model, task) has no ranked result."""
    mask = np.array([(m, t) not in ranked for m, t in zip(frame["model"], frame["task"])], dtype=bool)
    return frame.loc[mask]


def metric(frame: pd.DataFrame, name: str) -> pd.Series:
    """A metric column as floats (NaN where a run did not log it)."""
    if name not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[name], errors="coerce").astype(float)
