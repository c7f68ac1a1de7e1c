"""Rank models and build the leaderboard tables from a selected Board.

The ranking rule, the ID / OOD scores and OOD collapse are defined once, in RANKING, ID_OOD and
OOD_COLLAPSE below (the board's notes print them); metric names, labels and directions come from
benchmark.metrics.registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmark.leaderboard.collect import Board, metric
from benchmark.metrics.registry import METRICS, direction, label, names

RANKING = """per track (a board's group of tasks: materials, molecules, proteins), by `cknna_to_ref` averaged over
every task of the track: a model is ranked in a track only with a board result on each of its tasks (the
coverage rule of MTEB and Matbench Discovery), so every aggregated column averages the same tasks for every
ranked model; a model missing a task is listed with its coverage and the reason, and the reference of a task
is listed as the reference (self-alignment is 1 by construction), never ranked. Ties, compared after rounding
to 1e-6 so float noise cannot reorder rows, are broken by the ID score, then the OOD score, then the lower
probe energy MAE, then the model key."""

RANK_INTERVAL = """the 2.5-97.5% range of a model's rank over the bootstrap replicates of CKNNA: every replicate
resamples the same structure ids for all models of a task (seeded by the sample size), recomputes each model's
CKNNA from its stored kNN lists, and ranks the track means; models whose intervals overlap are marked tied."""

ID_OOD = "mean `cknna_to_ref` over the model's tasks whose role is id / ood."

OOD_COLLAPSE = """the model aligns *better* with the reference out of distribution than in distribution
(OOD score > ID score) while its representation gets poorer there: mean OOD intrinsic dimension < mean ID
intrinsic dimension, or mean OOD information imbalance model->ref worse (by its METRICS direction) than
the ID one. Alignment that rises because everything maps onto a few directions is collapse, not
generality. `n/a` where the model lacks ID or OOD tasks or the numbers."""

#: the per-task table's metric columns, in registry order (every declared per-task metric)
TASK_METRICS = names("embed", "geometry", "alignment", per_task=True)
#: display label of every declared metric
LABELS = {name: label(name) for name in METRICS}
TIE_DECIMALS = 6


def higher_is_better(name: str) -> bool:
    """True for a metric whose direction (benchmark.metrics.registry, the one source of truth) is "higher"."""
    return direction(name) == "higher"


def header(name: str, label: str | None = None) -> str:
    """A metric column header that says which way is better (or that neither is, for descriptive ones)."""
    word = direction(name)
    how = f"{word} is better" if word in ("higher", "lower") else "descriptive: neither higher nor lower is better"
    return f"{label or LABELS.get(name, name)} ({how})"


@dataclass
class Tables:
    """The leaderboard as frames with plain keys, plus the display header of every column."""

    models: pd.DataFrame
    per_task: pd.DataFrame
    not_ranked: pd.DataFrame
    headers: dict[str, str]
    task_headers: dict[str, str]
    directions: dict[str, str]
    #: per track: tasks, ranked count, Kendall tau between the k = 10 and k = 25 rankings (`track_summaries`)
    tracks: dict[str, dict] = field(default_factory=dict)


def _mean(frame: pd.DataFrame, name: str) -> float:
    values = metric(frame, name).dropna()
    return float(values.mean()) if len(values) else float("nan")


def collapse(id_rows: pd.DataFrame, ood_rows: pd.DataFrame) -> str:
    """'yes' / 'no' / 'n/a' per OOD_COLLAPSE."""
    id_c, ood_c = _mean(id_rows, "cknna_to_ref"), _mean(ood_rows, "cknna_to_ref")
    if not (np.isfinite(id_c) and np.isfinite(ood_c)):
        return "n/a"
    signals = []
    id_d, ood_d = _mean(id_rows, "intrinsic_dimension"), _mean(ood_rows, "intrinsic_dimension")
    if np.isfinite(id_d) and np.isfinite(ood_d):
        signals.append(ood_d < id_d)
    name = "info_imbalance_model_to_ref"
    id_i, ood_i = _mean(id_rows, name), _mean(ood_rows, name)
    if np.isfinite(id_i) and np.isfinite(ood_i):
        signals.append(ood_i < id_i if higher_is_better(name) else ood_i > id_i)
    if not signals:
        return "n/a"
    return "yes" if ood_c > id_c and any(signals) else "no"


def _first(rows: pd.DataFrame, col: str) -> str:
    vals = [v for v in rows[col].tolist() if isinstance(v, str) and v] if col in rows else []
    return vals[0] if vals else ""


def _parameters(value: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def board_tracks(board: Board) -> dict[str, list[str]]:
    """Track -> its tasks: the frozen board's tracks (tasks that have results), else the tracks the runs were
    tagged with (tag `track`; "all" for runs from before tracks)."""
    if board.definition is not None:
        tracks = {t: [x for x in names if x in board.task_versions] for t, names in board.definition.tracks.items()}
        return {t: names for t, names in tracks.items() if names}
    res = board.results
    track_of = dict(zip(res["task"], res["track"].fillna("").replace("", "all"))) if "track" in res else {}
    out: dict[str, list[str]] = {}
    for task in sorted(board.task_versions):
        out.setdefault(track_of.get(task, "all"), []).append(task)
    return out


def _missing_reason(board: Board, model: str, task: str, rows: pd.DataFrame) -> str:
    one = rows[rows["task"] == task]
    if len(one):
        return "no CKNNA (no reference alignment)"
    nr = board.not_ranked
    hit = nr[(nr["model"] == model) & (nr["task"] == task)] if len(nr) else nr
    if len(hit):
        return f"{hit.iloc[0]['status']}: {str(hit.iloc[0]['reason'])[:160]}"
    return "not run"


def _labelled_mean(rows: pd.DataFrame, name: str, labelled: list[str]) -> float:
    """Mean of `name` over exactly the tasks in `labelled`; NaN unless the model has it on every one."""
    values = [_mean(rows[rows["task"] == t], name) for t in labelled]
    return float(np.mean(values)) if labelled and all(np.isfinite(values)) else float("nan")


def rank_intervals(replicates: dict[str, dict[str, np.ndarray]], models: list[str], higher: bool = True,
                   level: float = 0.95) -> dict[str, tuple[int, int]]:
    """Rank interval per model from joint bootstrap replicates: replicates[task][model] are one model's
    replicates of a task (replicate b of every model is the same resample); each replicate's track means
    are ranked (1 = best) and the interval is the (1-level)/2 .. (1+level)/2 range of each model's ranks.
    A replicate undefined for any model is dropped; {} when the replicates do not line up (different counts,
    a model without them). Cost O(n_boot m log m) for m models."""
    if not models or not replicates:
        return {}
    per_task = []
    for reps in replicates.values():
        if any(m not in reps for m in models) or len({len(reps[m]) for m in models}) != 1:
            return {}
        per_task.append(np.array([np.asarray(reps[m], dtype=float) for m in models]))
    if len({a.shape[1] for a in per_task}) != 1:
        return {}
    means = np.mean(per_task, axis=0)  # models x replicates
    keep = np.isfinite(means).all(axis=0)
    if keep.sum() < 2:
        return {}
    means = means[:, keep]
    order = np.argsort(-means if higher else means, axis=0, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, len(models) + 1)[:, None].repeat(means.shape[1], axis=1), axis=0)
    lo = np.quantile(ranks, (1 - level) / 2, axis=1, method="lower")
    hi = np.quantile(ranks, (1 + level) / 2, axis=1, method="higher")
    return {m: (int(a), int(b)) for m, a, b in zip(models, lo, hi)}


def kendall_tau(a: pd.Series, b: pd.Series) -> float:
    """Kendall's tau-b between two score columns over the rows where both are finite (NaN with < 3 rows)."""
    from scipy.stats import kendalltau

    x, y = a.astype(float), b.astype(float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan")
    return float(kendalltau(x[ok], y[ok]).statistic)


def model_table(board: Board) -> pd.DataFrame:
    """One row per (track, model) with a result on the track: ranked rows first (see RANKING), each with its
    rank interval (RANK_INTERVAL), then the unranked ones with their coverage or reference role."""
    frames = [track_table(board, track, tasks) for track, tasks in board_tracks(board).items()]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=_columns([]))


def _columns(tasks: list[str]) -> list[str]:
    return ["track", "rank", "rank_low", "rank_high", "tied", "model", "name", "family", "modality", "domain",
            "version", "parameters", "training_data", "coverage", "reference_on", "tied_with", "cknna_to_ref",
            "cknna_to_ref_k25", "id_score", "ood_score", "ood_collapse", "energy_mae", "probe_energy_mae",
            "intrinsic_dimension", *[f"cknna_to_ref[{t}]" for t in tasks]]


def track_table(board: Board, track: str, tasks: list[str]) -> pd.DataFrame:
    """The ranking of one track (see model_table)."""
    res = board.results[board.results["task"].isin(tasks)]
    labelled = {name: [t for t in tasks if metric(res[res["task"] == t], name).notna().any()]
                for name in ("energy_mae", "probe_energy_mae")}
    rows = []
    for model, rows_m in res.groupby("model", sort=True):
        ref_on = sorted(rows_m.loc[rows_m["is_reference"] == "true", "task"])
        scored = rows_m[rows_m["is_reference"] != "true"]
        missing = [t for t in tasks if t not in ref_on and not metric(scored[scored["task"] == t], "cknna_to_ref")
                   .notna().any()]
        ranked = not ref_on and not missing
        if ref_on:
            coverage = f"reference on {', '.join(ref_on)}"
        elif missing:
            coverage = (f"{len(tasks) - len(missing)}/{len(tasks)} tasks; missing "
                        + "; ".join(f"{t} ({_missing_reason(board, model, t, rows_m)})" for t in missing))
        else:
            coverage = f"all {len(tasks)} task{'s' if len(tasks) != 1 else ''}"
        nan = float("nan")
        row = {
            "track": track, "model": model,
            "name": _first(rows_m, "model_name") or model,
            "family": _first(rows_m, "family"),
            "modality": _first(rows_m, "modality"),
            "domain": _first(rows_m, "domain"),
            "version": _first(rows_m, "model_version"),
            "parameters": _parameters(_first(rows_m, "parameters")),
            "training_data": _first(rows_m, "training_data"),
            "coverage": coverage, "reference_on": ",".join(ref_on), "tied_with": "", "tied": "",
            "cknna_to_ref": _mean(scored, "cknna_to_ref") if ranked else nan,
            "cknna_to_ref_k25": _labelled_mean(scored, "cknna_to_ref_k25", tasks) if ranked else nan,
            "id_score": _mean(scored[scored["role"] == "id"], "cknna_to_ref") if ranked else nan,
            "ood_score": _mean(scored[scored["role"] == "ood"], "cknna_to_ref") if ranked else nan,
            "ood_collapse": collapse(scored[scored["role"] == "id"], scored[scored["role"] == "ood"]) if ranked
            else "n/a",
            "energy_mae": _labelled_mean(rows_m, "energy_mae", labelled["energy_mae"]),
            "probe_energy_mae": _labelled_mean(rows_m, "probe_energy_mae", labelled["probe_energy_mae"]),
            "intrinsic_dimension": _labelled_mean(rows_m, "intrinsic_dimension", tasks),
            "_ranked": ranked,
        }
        for task in tasks:
            row[f"cknna_to_ref[{task}]"] = _mean(scored[scored["task"] == task], "cknna_to_ref")
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=_columns(tasks))
    table = pd.DataFrame(rows)
    ranked = rank(table[table["_ranked"]].copy())
    ranked["rank_low"] = ranked["rank_high"] = np.nan
    reps = {t: board.replicates.get(t, {}) for t in tasks}
    iv = rank_intervals(reps, list(ranked["model"]), higher_is_better("cknna_to_ref"))
    if iv:
        ranked["rank_low"] = [float(iv[m][0]) for m in ranked["model"]]
        ranked["rank_high"] = [float(iv[m][1]) for m in ranked["model"]]
        for i, m in enumerate(ranked["model"]):
            lo, hi = iv[m]
            tied = [o for o in ranked["model"] if o != m and iv[o][0] <= hi and lo <= iv[o][1]]
            ranked.iloc[i, ranked.columns.get_loc("tied_with")] = ", ".join(tied)
            ranked.iloc[i, ranked.columns.get_loc("tied")] = "yes" if tied else "no"
    rest = table[~table["_ranked"]].copy()
    rest["_ref"] = rest["reference_on"] == ""
    rest = rest.sort_values(["_ref", "model"], kind="mergesort").drop(columns="_ref")
    rest["rank"] = rest["rank_low"] = rest["rank_high"] = np.nan
    out = pd.concat([ranked, rest], ignore_index=True)
    return out[_columns(tasks)]


def track_summaries(board: Board, models: pd.DataFrame) -> dict[str, dict]:
    """Per track: its tasks, how many models are ranked, Kendall's tau between the rankings at k = 10 and
    k = 25, and whether rank intervals could be computed."""
    out = {}
    for track, tasks in board_tracks(board).items():
        rows = models[(models["track"] == track) & models["rank"].notna()] if len(models) else models
        out[track] = {"tasks": tasks, "ranked": int(len(rows)),
                      "kendall_tau_k10_k25": kendall_tau(rows["cknna_to_ref"], rows["cknna_to_ref_k25"])
                      if len(rows) else float("nan"),
                      "rank_intervals": bool(len(rows) and rows["rank_low"].notna().all())}
    return out


def rank(table: pd.DataFrame) -> pd.DataFrame:
    """Sort by the ranking rule with its deterministic tie-breaks and number the rows 1..n."""
    keys, ascending = [], []
    for name in ("cknna_to_ref", "id_score", "ood_score", "probe_energy_mae"):
        hib = higher_is_better(name)
        values = table[name].astype(float).round(TIE_DECIMALS)
        # NaN always sorts last: fill with the worst possible value in the sort direction.
        table[f"_{name}"] = values.fillna(-np.inf if hib else np.inf)
        keys.append(f"_{name}")
        ascending.append(not hib)
    keys.append("model")
    ascending.append(True)
    ranked = table.sort_values(keys, ascending=ascending, kind="mergesort").reset_index(drop=True)
    ranked["rank"] = np.arange(1, len(ranked) + 1, dtype=float)
    return ranked.drop(columns=[k for k in keys if k.startswith("_")])


def per_task_table(board: Board) -> pd.DataFrame:
    """One row per (model, task) ranked result with every metric it logged."""
    res = board.results
    cols = ["model", "task", "task_version", "role", "reference", "is_reference", "n_samples", "model_version",
            "checkpoint_digest", "run_id"]
    frame = res[cols].copy() if not res.empty else pd.DataFrame(columns=cols)
    for name in TASK_METRICS:
        frame[name] = metric(res, name) if not res.empty else pd.Series(dtype=float)
    return frame.sort_values(["task", "model"], kind="mergesort").reset_index(drop=True)


def build_tables(board: Board) -> Tables:
    """Model table, per-task table and the not-ranked list, with display headers and metric directions."""
    models = model_table(board)
    per_task = per_task_table(board)
    not_ranked = board.not_ranked[["model", "task", "status", "reason", "run_id"]].reset_index(drop=True)
    metric_names = ["cknna_to_ref", "cknna_to_ref_k25", "id_score", "ood_score", "energy_mae", "probe_energy_mae",
                    "intrinsic_dimension", *TASK_METRICS]
    directions = {n: direction(n) for n in dict.fromkeys(metric_names)}
    headers = {
        "rank": "rank", "model": "model", "name": "name", "family": "family", "modality": "modality",
        "domain": "domain", "version": "version", "parameters": "parameters", "training_data": "training data",
        "reference_on": "is the reference on", "ood_collapse": "OOD collapse", "track": "track",
        "rank_low": "rank interval low", "rank_high": "rank interval high", "tied": "statistically tied",
        "tied_with": "tied with (overlapping rank intervals)", "coverage": "coverage",
        "task": "task", "task_version": "task version", "role": "role", "reference": "reference",
        "is_reference": "is reference", "n_samples": "samples", "model_version": "model version",
        "checkpoint_digest": "checkpoint digest", "run_id": "MLflow run", "status": "status", "reason": "reason",
    }
    for name in directions:
        headers[name] = header(name)
    task_headers = dict(headers)
    headers["cknna_to_ref"] = header("cknna_to_ref", "CKNNA to reference, mean over the track's tasks")
    headers["cknna_to_ref_k25"] = header("cknna_to_ref_k25", "CKNNA to reference at k = 25, mean over the track's tasks")
    for task in board.task_versions:
        headers[f"cknna_to_ref[{task}]"] = header("cknna_to_ref", f"CKNNA to reference on {task}")
        directions[f"cknna_to_ref[{task}]"] = directions["cknna_to_ref"]
    return Tables(models, per_task, not_ranked, headers, task_headers, directions, track_summaries(board, models))


def display(frame: pd.DataFrame, headers: dict[str, str]) -> pd.DataFrame:
    """The frame with display headers and numbers formatted for people (4 significant digits)."""
    out = frame.copy()
    for col in out.columns:
        if col in ("rank", "rank_low", "rank_high"):
            out[col] = [f"{int(v)}" if np.isfinite(v) else "" for v in out[col].astype(float)]
        elif col == "parameters":
            out[col] = [f"{int(v):,}" if np.isfinite(v) else "unknown" for v in out[col].astype(float)]
        elif col != "rank" and pd.api.types.is_float_dtype(out[col]):
            out[col] = [f"{v:.4g}" if np.isfinite(v) else "" for v in out[col]]
    return out.rename(columns={c: headers.get(c, c) for c in out.columns})
