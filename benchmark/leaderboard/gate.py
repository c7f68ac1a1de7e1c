"""The release gate behind `matteralign check`: comparing a candidate model version with a baseline version.

Both sides are read from MLflow child runs (tag `model` + param `model_version`, newest finished
ok board result per task: exploration runs never count). They are compared only as results of the same board
(tag `board`: the same frozen board, or both of none), on the same tasks, task version, reference and sample
ids (param `ids_digest`); a side that is itself the reference of a task (self-alignment is 1 by construction:
what a model run alone without a board becomes), or any other mismatch, cannot be compared (exit 2).

Rule, per task, for a metric where higher is better (mirrored where lower is better):

    regression  iff  candidate < baseline - max_drop                       (outside the tolerance)
                AND  candidate's <metric>_ci_high < baseline's point value (the drop is beyond the noise)

so a drop larger than the tolerance whose bootstrap interval still reaches the baseline is reported as
"within noise" and passes. A metric that has no CI by definition (no `<metric>_ci_low/_ci_high` in the
metric registry, e.g. energy MAE) is judged by the tolerance alone, and the table says so; a candidate run
lacking a CI its metric has (a `--no-ci` run) cannot be compared. Only complete runs count (stage 2 ended).
Exit 0: no regression; 1: a regression on at least one task; 2: cannot compare (missing runs, different
ids / task version / reference, unknown or missing metric or CI, a version against itself).

The two conditions are checked with MLflow's validation API, `mlflow.validate_evaluation_results` with
`mlflow.models.MetricThreshold`: its `min_absolute_change` is a required *improvement* over the baseline,
not an allowed drop, so each condition is an absolute `threshold` (baseline -/+ max_drop; the baseline for
the CI bound) validated on the candidate alone. A regression is the AND of two failures, which one call
(that fails when any threshold fails) cannot express, hence one call per condition.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import pandas as pd

from benchmark.errors import ConfigError, DataError
from benchmark.leaderboard.collect import is_complete, sort_newest_first
from benchmark.tracking import schema as S


def parse_spec(spec: str, what: str) -> tuple[str, str]:
    model, sep, version = spec.rpartition("@")
    if not sep or not model or not version:
        raise ConfigError(
            f"--{what} {spec!r}: expected MODEL@VERSION, e.g. my-mlip@2 (VERSION = models.yaml 'version')."
        )
    return model, version


@dataclass
class TaskVerdict:
    task: str
    baseline: float
    candidate: float
    ci_low: float
    ci_high: float
    outside_tolerance: bool
    beyond_noise: bool | None

    @property
    def regression(self) -> bool:
        return self.outside_tolerance and self.beyond_noise is not False

    @property
    def verdict(self) -> str:
        if self.regression:
            return "REGRESSION"
        return "within noise" if self.outside_tolerance else "ok"


def _runs(frame: pd.DataFrame, model: str, version: str) -> pd.DataFrame:
    """Newest complete finished ok run per task of one model version (incomplete runs are skipped)."""
    explore = frame["exploration"].fillna("") == "true" if "exploration" in frame else frame["model"] != frame["model"]
    sel = frame[(frame["model"] == model) & (frame["model_version"] == version) & (frame["status"] == "ok")
                & is_complete(frame) & ~explore]
    return sort_newest_first(sel).drop_duplicates(subset=["task"], keep="first").set_index("task")


def _fails(name: str, value: float, threshold: float, greater_is_better: bool) -> bool:
    """True when `value` misses `threshold` according to mlflow.validate_evaluation_results."""
    import mlflow
    from mlflow.models import MetricThreshold
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import ModelValidationFailedException

    log = logging.getLogger("mlflow.models.evaluation.validation")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        mlflow.validate_evaluation_results(
            {name: MetricThreshold(threshold=threshold, greater_is_better=greater_is_better)},
            EvaluationResult(metrics={name: value}, artifacts={}),
        )
        return False
    except ModelValidationFailedException:
        return True
    finally:
        log.setLevel(level)


def judge(task: str, metric: str, base: pd.Series, cand: pd.Series, max_drop: float, higher: bool) -> TaskVerdict:
    """Apply the module's rule to one task's baseline and candidate runs."""
    b, c = float(base[metric]), float(cand[metric])
    lo = float(cand.get(f"{metric}_ci_low", math.nan))
    hi = float(cand.get(f"{metric}_ci_high", math.nan))
    outside = _fails(metric, c, b - max_drop if higher else b + max_drop, higher)
    bound = hi if higher else lo
    ci_name = f"{metric}_ci_{'high' if higher else 'low'}"
    beyond = _fails(ci_name, bound, b, higher) if math.isfinite(bound) else None
    return TaskVerdict(task, b, c, lo, hi, outside, beyond)


def compare_versions(frame: pd.DataFrame, candidate: str, baseline: str, metric: str, max_drop: float,
            tasks: list[str] | None) -> list[TaskVerdict]:
    """Verdicts per task; raises MatteralignError (exit 2) whenever the two cannot be compared fairly."""
    from benchmark.leaderboard.table import higher_is_better
    from benchmark.metrics import METRICS, direction

    gateable = sorted(n for n in METRICS if direction(n) != "none")
    if metric not in METRICS or direction(metric) == "none":
        why = "unknown metric" if metric not in METRICS else "descriptive metric (neither higher nor lower is better)"
        raise ConfigError(f"{why} {metric!r}: a release gate needs a metric with a direction: {', '.join(gateable)}.")
    if not max_drop >= 0:
        raise ConfigError(f"--max-drop must be >= 0, got {max_drop}.")
    (cm, cv), (bm, bv) = parse_spec(candidate, "candidate"), parse_spec(baseline, "baseline")
    if (cm, cv) == (bm, bv):
        raise ConfigError(f"--candidate and --baseline are the same model version ({candidate}): a version always "
                          "passes against itself. Name the released version as --baseline.")
    cruns, bruns = _runs(frame, cm, cv), _runs(frame, bm, bv)
    for spec, runs in ((candidate, cruns), (baseline, bruns)):
        if runs.empty:
            raise DataError(f"no finished ok run of {spec} (tag {S.MODEL} + param model_version) in the "
                            "experiment. Run `matteralign run --models <key>` for that version first.")
    tasks = sorted(tasks or bruns.index)
    missing = [f"{spec} on {t}" for t in tasks for spec, runs in ((candidate, cruns), (baseline, bruns))
               if t not in runs.index]
    if missing:
        raise DataError(f"cannot compare: no ok run of {'; '.join(missing)}. Run both versions on the same tasks.")
    higher = higher_is_better(metric)
    verdicts = []
    for t in tasks:
        b, c = bruns.loc[t], cruns.loc[t]
        for spec, run in ((candidate, c), (baseline, b)):
            if str(run.get("is_reference", "")) == "true":
                raise DataError(f"cannot compare on {t}: {spec} is the reference of {t} in run {run['run_id']} "
                                f"(its self-alignment is 1 by construction). Leave {t} out with --tasks, or compare "
                                "on a board whose pinned reference is another model (a model run alone without "
                                "a board becomes its own reference: see `matteralign board show`).")
        for field, what in (("board", "boards"), ("task_version", "task versions"),
                            ("ids_digest", "sample ids (ids_digest)"), ("reference", "references"),
                            ("benchmark_version", "benchmark versions")):
            if b[field] != c[field]:
                raise DataError(f"cannot compare on {t}: different {what} ({baseline}: {b[field]!r}, {candidate}: "
                                f"{c[field]!r}). Rerun both versions with the same benchmark, task version, "
                                "reference and sample (--n-samples / --seed).")
        for spec, run in ((baseline, b), (candidate, c)):
            if not math.isfinite(float(run.get(metric, math.nan))):
                raise DataError(f"cannot compare on {t}: run {run['run_id']} of {spec} has no {metric!r} metric.")
        ci_name = f"{metric}_ci_{'high' if higher else 'low'}"
        if ci_name in METRICS and not math.isfinite(float(c.get(ci_name, math.nan))):
            raise DataError(f"cannot compare on {t}: run {c['run_id']} of {candidate} has no confidence interval "
                            f"({ci_name!r}; run with --no-ci or --n-boot 0?). Rerun it with --n-boot 200 or more: "
                            "without a CI the gate cannot tell a regression from noise.")
        verdicts.append(judge(t, metric, b, c, max_drop, higher))
    return verdicts


def format_table(verdicts: list[TaskVerdict], metric: str, higher: bool) -> str:
    def f(x: float) -> str:
        return f"{x:.4f}" if math.isfinite(x) else "-"

    head = f"{'task':<14} {'baseline':>9} {'candidate':>9} {'delta':>8} {'candidate CI':>17}  verdict"
    lines = [f"metric {metric} ({'higher' if higher else 'lower'} is better)", head, "-" * len(head)]
    for v in verdicts:
        ci = f"[{f(v.ci_low)}, {f(v.ci_high)}]" if v.beyond_noise is not None else "no CI"
        lines.append(f"{v.task:<14} {f(v.baseline):>9} {f(v.candidate):>9} {v.candidate - v.baseline:>+8.4f} "
                     f"{ci:>17}  {v.verdict}")
    return "\n".join(lines)
