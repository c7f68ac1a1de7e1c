"""The convergence experiment of the report: do MLIPs align more with the best one as their energy error falls?

Trains the SchNet family (`benchmark.convergence.train.run_experiment`), passes the registry (the
repository's models plus one entry per checkpoint and a random-init copy of the best checkpoint) and the
qm9 task restricted to H, C, N, O to the benchmark as objects (no YAML written), and runs the benchmark on QM9 with the best checkpoint (lowest held-out test MAE) as the reference.

The alignment task is QM9 restricted to H, C, N, O molecules: a checkpoint trained on a few hundred
molecules may never have seen fluorine, and alignment needs every structure embedded by every model.
Its molecules are excluded from training and testing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from benchmark.convergence import train
from benchmark.pipeline.run import run_benchmark
from benchmark.pipeline.types import RunConfig, RunSummary
from benchmark.registry import load_models, load_tasks
from benchmark.registry.schema import ModelEntry, ModelsFile, TaskSpec
from benchmark.report.claims import mae_alignment_part
from benchmark.report.null import cosine_graph, permutation_null, random_init_entry
from benchmark.structures import Sample
from benchmark.tasks import qm9

TASK = "qm9_hcno"


@dataclass(frozen=True)
class ConvergenceSize:
    """One preset of the experiment: training grid, test set, network width, alignment sample size."""

    train_sizes: tuple[int, ...]
    epochs: tuple[int, ...]
    test_size: int
    hidden: int
    n_interactions: int
    n_samples: int


#: default: 8 checkpoints whose training totals 17,600 molecule-epochs (train.py's own grid totals ~277,000,
#: hours on 2 CPU cores; this keeps the whole reproduce under 30 minutes there)
SIZES = {
    "default": ConvergenceSize((50, 150, 500, 1500), (2, 6), train.DEFAULT_TEST_SIZE, 64, 3, 1000),
    "tiny": ConvergenceSize((20, 40, 80), (1, 3), 30, 16, 2, 60),
}


@dataclass
class ConvergenceResult:
    records: list[dict[str, Any]]
    summary: RunSummary
    best: str
    random_key: str
    frame: pd.DataFrame
    claim_parts: list[dict[str, Any]]
    nulls: dict[str, dict[str, Any]] = field(default_factory=dict)
    figure: Path | None = None


def load_qm9_hcno(n_samples: int, seed: int) -> list[Sample]:
    """A seeded uniform subset of the QM9 molecules made only of H, C, N and O, sorted by QM9 index."""
    frame = qm9.load_frame()
    frame = frame[~frame["Elements"].str.contains("F")].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(frame), size=n_samples, replace=False))
    return [qm9.row_to_sample(r) for r in frame.iloc[chosen].itertuples(index=False)]


def task_spec(n_samples: int, tasks_dir: Path | None = None) -> TaskSpec:
    """The qm9 task itself (tasks/qm9.yaml: source, labels, energy reference, roles), restricted to H, C, N, O."""
    tasks = load_tasks(tasks_dir)
    base = tasks["qm9"] if "qm9" in tasks else load_tasks()["qm9"]
    return base.model_copy(update={
        "name": TASK,
        "description": "QM9 molecules of H, C, N, O only: every convergence checkpoint can embed all of them.",
        "loader": "benchmark.report.convergence:load_qm9_hcno",
        "options": {},
        "source": f"{' '.join(base.source.split())}; fluorine-containing molecules removed",
        "n_samples": n_samples,
        "seed": 0,
    })


def with_entries(base: ModelsFile, entries: list[dict[str, Any]]) -> ModelsFile:
    """`base` plus `entries` (a base entry with a clashing key is replaced), validated by the schema."""
    new = [ModelEntry.model_validate(e) for e in entries]
    keys = {e.key for e in new}
    return base.model_copy(update={"models": [m for m in base.models if m.key not in keys] + new})


def run_convergence(
    out_dir: Path,
    size: str = "default",
    tracking_uri: str | None = None,
    experiment: str | None = None,
    models_file: Path | None = None,
    cache_dir: Path | None = None,
    tasks_dir: Path | None = None,
    k: int = 10,
    n_perm: int = 50,
    seed: int = 0,
    threads: int | None = None,
) -> ConvergenceResult:
    """Train, embed, align to the best checkpoint, and test MAE vs alignment (claim b on the family).

    threads: torch intra-op threads while training (None: torch's default); 1 is much faster on loaded cores.
    """
    import mlflow
    import torch

    if threads:
        torch.set_num_threads(threads)

    from benchmark import tracking

    preset = SIZES[size]
    out_dir = Path(out_dir)
    uri, experiment_name = tracking.setup(tracking_uri, experiment)
    mlflow.set_tracking_uri(uri)
    task_ids = [s.id for s in load_qm9_hcno(preset.n_samples, 0)]
    records = train.run_experiment(
        preset.train_sizes, preset.epochs, out_dir / "checkpoints", seed=seed, test_size=preset.test_size,
        hidden=preset.hidden, n_interactions=preset.n_interactions, exclude_ids=task_ids,
    )
    entries = train.models_yaml_entries(records)
    best = min(records, key=lambda r: r["test_mae_ev_per_atom"])["key"]
    twin = random_init_entry(next(e for e in entries if e["key"] == best), seed=seed)
    registry = with_entries(load_models(models_file), [*entries, twin])
    summary = run_benchmark(RunConfig(
        models=[e["key"] for e in entries] + [twin["key"]], tasks=[TASK], reference=best, k=k,
        tracking_uri=uri, experiment=experiment_name, models_file=registry,
        tasks_dir={TASK: task_spec(preset.n_samples, tasks_dir)},
        cache_dir=cache_dir, leaderboard_dir=None, progress=False, run_name="reproduce-convergence",
    ))
    frame, nulls = _frame(records, summary, best, twin["key"], k, n_perm, seed)
    parts = [
        mae_alignment_part("b1 convergence family: held-out test MAE", frame, mae="test_mae", seed=seed),
        mae_alignment_part(f"b2 convergence family: energy MAE on {TASK}", frame, mae="energy_mae", seed=seed),
    ]
    for p in parts:
        p["sources"] = sorted(set(p["sources"]) | {r["run_id"] for r in records} | {summary.parent_run_id})
    figure = _figure(frame, parts[0], out_dir / "convergence.png")
    return ConvergenceResult(records, summary, best, twin["key"], frame, parts, nulls, figure)


def _frame(
    records: list[dict[str, Any]], summary: RunSummary, best: str, random_key: str, k: int, n_perm: int, seed: int
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """One row per checkpoint (and the random-init copy): MAEs, alignment to the best, its permutation null."""
    by_key = {r.model: r for r in summary.results}
    ref = by_key.get(best)
    g_ref = cosine_graph(ref.features, k) if ref is not None and ref.features is not None else None
    rows, nulls = [], {}
    for rec in [*records, {"key": random_key}]:
        res = by_key.get(rec["key"])
        row = {
            "model": rec["key"], "train_size": rec.get("train_size"), "epochs": rec.get("epochs"),
            "test_mae": rec.get("test_mae_ev_per_atom", np.nan), "train_run_id": rec.get("run_id"),
            "run_id": res.run_id if res else None, "status": res.status if res else "missing",
            "reason": res.reason if res else "", "is_reference": rec["key"] == best, "random_init": rec["key"] == random_key,
        }
        metrics = res.metrics if res else {}
        for name in ("energy_mae", "cknna_to_ref", "cknna_to_ref_ci_low", "cknna_to_ref_ci_high", "mutual_knn_to_ref",
                     "intrinsic_dimension"):
            row[name] = metrics.get(name, np.nan)
        if g_ref is not None and res is not None and res.features is not None and rec["key"] != best:
            null = permutation_null(cosine_graph(res.features, k), g_ref, k, n_perm=n_perm, seed=seed)["cknna"]
            nulls[rec["key"]] = null.as_dict()
            row["null_z"], row["null_p"] = null.z, null.p_value
        rows.append(row)
    return pd.DataFrame(rows).astype({"train_size": "Int64", "epochs": "Int64"}), nulls


def _figure(frame: pd.DataFrame, claim_part: dict[str, Any], path: Path) -> Path:
    """Alignment to the best checkpoint against held-out MAE, with the random-init level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = frame[~frame["random_init"] & ~frame["is_reference"]]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for epochs, g in trained.groupby("epochs"):
        err = np.vstack([g["cknna_to_ref"] - g["cknna_to_ref_ci_low"], g["cknna_to_ref_ci_high"] - g["cknna_to_ref"]])
        ax.errorbar(g["test_mae"], g["cknna_to_ref"], yerr=np.abs(np.nan_to_num(err)), fmt="o", capsize=3,
                    label=f"{epochs} epochs")
        for _, r in g.iterrows():
            ax.annotate(f"n={r['train_size']}", (r["test_mae"], r["cknna_to_ref"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    rnd = frame[frame["random_init"]]["cknna_to_ref"].dropna()
    if len(rnd):
        ax.axhline(float(rnd.iloc[0]), ls="--", c="grey", label="random-init copy of the best")
    ax.set_xscale("log")
    ax.set_xlabel("held-out energy MAE (eV/atom)")
    ax.set_ylabel("CKNNA to the best checkpoint")
    rho = claim_part["value"]
    ax.set_title(f"Convergence family on {TASK}" + (f": Spearman rho = {rho:.2f}" if np.isfinite(rho) else ""))
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
