"""What `matteralign submit <model-key>` does: validate a new models.yaml entry, run it alone against the
frozen board, regenerate the leaderboard.

Validation is strict: the whole models.yaml passes the schema (unknown keys rejected), the key exists and
its adapter imports and is a `ModelAdapter`; otherwise a ConfigError says what to fix (exit 2). The run
covers only the submitted model, on every task of the board, aligned to the board's pinned references
(their embeddings come from the content-addressed cache and get no new run), so the submission adds or
replaces exactly that model's rows and cannot change the reference or any other model's numbers.
Resubmitting the same checkpoint gives the same result identity; the numbers are compared with the previous
run of that identity and any difference is reported.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from benchmark.errors import ConfigError, MatteralignError
from benchmark.models import adapter_class
from benchmark.registry import load_models, models_by_key
from benchmark.registry.schema import ModelEntry

REPRO_RTOL = 1e-6
NOT_COMPARED = {"extract_seconds"}


def validate(model_key: str, models_file: Path | None) -> ModelEntry:
    """The submitted entry; ConfigError when the registry, the key or its adapter is off."""
    models = load_models(models_file)
    registry = models_by_key(models)
    source = str(models_file or "models.yaml")
    if model_key not in registry:
        raise ConfigError(
            f"model {model_key!r} is not in {source}. Add an entry (template in CONTRIBUTING.md); "
            f"known keys: {', '.join(sorted(registry))}."
        )
    entry = registry[model_key]
    adapter_class(entry)
    return entry


def previous_runs(tracking_uri: str | None, experiment: str | None) -> pd.DataFrame:
    """All child runs so far (empty when nothing ran yet), for the reproducibility comparison."""
    from benchmark.leaderboard.collect import load_child_runs

    try:
        return load_child_runs(tracking_uri, experiment)
    except MatteralignError:
        return pd.DataFrame()


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
