"""Rank models and build the leaderboard tables from a selected Board.

The ranking rule, the ID / OOD scores and OOD collapse are defined once, in RANKING, ID_OOD and
OOD_COLLAPSE below (the board's notes print them); metric names, labels and directions come from
benchmark.metrics.registry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmark.leaderboard.collect import Board, metric
from benchmark.metrics.registry import METRICS, direction, label, names

RANKING = """by `cknna_to_ref` averaged over the model's ranked tasks (tasks where the model is itself the
reference are left out: self-alignment is 1 by construction). Ties, compared after rounding to 1e-6 so
float noise cannot reorder rows, are broken by the ID score, then the OOD score, then the lower probe
energy MAE, then the model key; a model without any alignment number ranks last."""

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


def model_table(board: Board) -> pd.DataFrame:
    """One row per model, ranked (see RANKING)."""
    res = board.results
    tasks = sorted(board.task_versions)
    rows = []
    for model, rows_m in res.groupby("model", sort=True):
        scored = rows_m[rows_m["is_reference"] != "true"]
        row = {
            "model": model,
            "name": _first(rows_m, "model_name") or model,
            "family": _first(rows_m, "family"),
            "modality": _first(rows_m, "modality"),
            "domain": _first(rows_m, "domain"),
            "version": _first(rows_m, "model_version"),
            "parameters": _parameters(_first(rows_m, "parameters")),
            "training_data": _first(rows_m, "training_data"),
            "reference_on": ",".join(sorted(rows_m.loc[rows_m["is_reference"] == "true", "task"])),
            "cknna_to_ref": _mean(scored, "cknna_to_ref"),
            "id_score": _mean(scored[scored["role"] == "id"], "cknna_to_ref"),
            "ood_score": _mean(scored[scored["role"] == "ood"], "cknna_to_ref"),
            "ood_collapse": collapse(scored[scored["role"] == "id"], scored[scored["role"] == "ood"]),
            "energy_mae": _mean(rows_m, "energy_mae"),
            "probe_energy_mae": _mean(rows_m, "probe_energy_mae"),
            "intrinsic_dimension": _mean(rows_m, "intrinsic_dimension"),
        }
        for task in tasks:
            one = scored[scored["task"] == task]
            row[f"cknna_to_ref[{task}]"] = _mean(one, "cknna_to_ref")
        rows.append(row)
    columns = ["rank", "model", "name", "family", "modality", "domain", "version", "parameters", "training_data",
               "reference_on", "cknna_to_ref", "id_score", "ood_score", "ood_collapse", "energy_mae",
               "probe_energy_mae", "intrinsic_dimension", *[f"cknna_to_ref[{t}]" for t in tasks]]
    if not rows:
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame(rows)
    return rank(table)[columns]


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
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
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
    metric_names = ["cknna_to_ref", "id_score", "ood_score", "energy_mae", "probe_energy_mae",
                    "intrinsic_dimension", *TASK_METRICS]
    directions = {n: direction(n) for n in dict.fromkeys(metric_names)}
    headers = {
        "rank": "rank", "model": "model", "name": "name", "family": "family", "modality": "modality",
        "domain": "domain", "version": "version", "parameters": "parameters", "training_data": "training data",
        "reference_on": "is the reference on", "ood_collapse": "OOD collapse",
        "task": "task", "task_version": "task version", "role": "role", "reference": "reference",
        "is_reference": "is reference", "n_samples": "samples", "model_version": "model version",
        "checkpoint_digest": "checkpoint digest", "run_id": "MLflow run", "status": "status", "reason": "reason",
    }
    for name in directions:
        headers[name] = header(name)
    task_headers = dict(headers)
    headers["cknna_to_ref"] = header("cknna_to_ref", "CKNNA to reference, mean over tasks")
    for task in board.task_versions:
        headers[f"cknna_to_ref[{task}]"] = header("cknna_to_ref", f"CKNNA to reference on {task}")
        directions[f"cknna_to_ref[{task}]"] = directions["cknna_to_ref"]
    return Tables(models, per_task, not_ranked, headers, task_headers, directions)


def display(frame: pd.DataFrame, headers: dict[str, str]) -> pd.DataFrame:
    """The frame with display headers and numbers formatted for people (4 significant digits)."""
    out = frame.copy()
    for col in out.columns:
        if col == "parameters":
            out[col] = [f"{int(v):,}" if np.isfinite(v) else "unknown" for v in out[col].astype(float)]
        elif col != "rank" and pd.api.types.is_float_dtype(out[col]):
            out[col] = [f"{v:.4g}" if np.isfinite(v) else "" for v in out[col]]
    return out.rename(columns={c: headers.get(c, c) for c in out.columns})
