"""Which model is the reference on each task, and why: never a silent fallback.

The configured reference (models.yaml `reference.model`, UMA Medium by default) is used wherever it ran.
Where it did not, `fallback: auto` takes the model with the lowest energy MAE on that task (the paper's
convergence figure uses the best-performing model as the anchor). A task without energy labels takes the
model with the best mean energy-MAE rank over the labelled tasks, among the models that ran on it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from benchmark.pipeline.types import ModelTaskResult, ReferenceChoice


def _mean_mae_rank(results: Sequence[ModelTaskResult]) -> dict[str, float]:
    """Mean rank (1 = lowest MAE) of each model's energy MAE over the tasks where it has one."""
    ranks: dict[str, list[int]] = {}
    for task in sorted({r.task for r in results}):
        scored = sorted(
            (r.metrics["energy_mae"], r.model)
            for r in results
            if r.task == task and r.status == "ok" and np.isfinite(r.metrics.get("energy_mae", np.nan))
        )
        for rank, (_, model) in enumerate(scored, start=1):
            ranks.setdefault(model, []).append(rank)
    return {m: float(np.mean(v)) for m, v in ranks.items()}


def choose_references(specs, results: Sequence[ModelTaskResult], configured: str, fallback: str) -> dict[str, ReferenceChoice]:
    """One ReferenceChoice per task name; the reason says what was configured and what happened."""
    ok = {(r.model, r.task): r for r in results if r.status == "ok"}
    status = {(r.model, r.task): r for r in results}
    mean_rank = _mean_mae_rank(results)
    out: dict[str, ReferenceChoice] = {}
    for spec in specs:
        task = spec.name
        own = getattr(spec, "reference", None)
        if own and (own, task) in ok:
            out[task] = ReferenceChoice(own, f"task reference (reference: in the {task} task YAML)")
            continue
        if (configured, task) in ok:
            out[task] = ReferenceChoice(configured, "configured reference")
            continue
        prior = status.get((configured, task))
        why = f"configured reference {configured!r} did not run on {task}: {prior.reason if prior else 'not selected'}"
        if fallback == "none":
            out[task] = ReferenceChoice(None, f"{why}; fallback is 'none', so no alignment is computed")
            continue
        scored = sorted(
            (r.metrics["energy_mae"], r.model)
            for (m, t), r in ok.items()
            if t == task and np.isfinite(r.metrics.get("energy_mae", np.nan))
        )
        if scored:
            mae, model = scored[0]
            out[task] = ReferenceChoice(
                model,
                f"auto: lowest energy MAE on {task} ({mae:.4g} eV/atom) among {len(scored)} models with an energy head; "
                + why,
            )
            continue
        ranked = sorted((mean_rank[m], m) for (m, t) in ok if t == task and m in mean_rank)
        if ranked:
            rank, model = ranked[0]
            out[task] = ReferenceChoice(
                model,
                f"auto: {task} has no energy labels; {model} has the best mean energy-MAE rank ({rank:.2f}) over "
                f"the labelled tasks among the models that ran on {task}; " + why,
            )
        else:
            out[task] = ReferenceChoice(None, f"{why}; no model with an energy MAE ran on {task}, so no reference")
    return out
