"""Every metric the benchmark logs or shows, declared once: name, direction, label, stage, description, unit.

Every list of logged or displayed metric names derives from `METRICS` (the pipeline's stage-2 keys, the
run summary, the leaderboard's per-task columns and headers, the report's columns, docs/run-schema.md), so
adding a metric is one `MetricInfo` here plus its function. Modelled on torchmetrics' `higher_is_better`
and lm-eval's MetricSpec.

Stages: "embed" (stage 1, from the embeddings and energy labels), "geometry" (stage 2, one model's own kNN
graphs), "alignment" (stage 2, against the task's reference), "board" (computed by the leaderboard from the
runs, never logged on a child run).
"""

from __future__ import annotations

from dataclasses import dataclass

DIRECTIONS = ("higher", "lower", "none")
STAGES = ("embed", "geometry", "alignment", "board")


@dataclass(frozen=True)
class MetricInfo:
    """direction: "higher" / "lower" = better; "none" = descriptive, no better or worse.

    label: the short display name (leaderboard headers, the page); per_task: shown as a column of the
    leaderboard's per-task table; summary: shown in the closing summary of `matteralign run`.
    """

    name: str
    direction: str
    description: str
    unit: str = ""
    label: str = ""
    stage: str = "alignment"
    per_task: bool = True
    summary: bool = False

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"metric {self.name!r}: direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.stage not in STAGES:
            raise ValueError(f"metric {self.name!r}: stage must be one of {STAGES}, got {self.stage!r}")

    @property
    def higher_is_better(self) -> bool | None:
        """True / False by direction; None for a descriptive metric."""
        return None if self.direction == "none" else self.direction == "higher"

    @property
    def display(self) -> str:
        return self.label or self.name


_ALL = [
    MetricInfo("cknna_to_ref", "higher", "unbiased CKNNA (k = 10, eps = 1e-6) to the reference model",
               label="CKNNA to reference", summary=True),
    MetricInfo("cknna_to_ref_ci_low", "higher", "lower end of the 95% query-point bootstrap interval of cknna_to_ref",
               label="CKNNA CI low"),
    MetricInfo("cknna_to_ref_ci_high", "higher", "upper end of the 95% query-point bootstrap interval of cknna_to_ref",
               label="CKNNA CI high"),
    MetricInfo("cknna_to_ref_k25", "higher",
               "unbiased CKNNA at k = 25 (the k of the paper's released similarity data), from the same k_max graph "
               "as cknna_to_ref", label="CKNNA to reference, k = 25"),
    MetricInfo("mutual_knn_to_ref", "higher", "mean fraction of shared k nearest neighbours with the reference model",
               label="mutual kNN to reference", summary=True),
    MetricInfo("cka_to_ref", "higher", "biased linear CKA (feature space) to the reference model",
               label="CKA to reference", summary=True),
    MetricInfo("intrinsic_dimension", "none", "TwoNN intrinsic dimension (DADApy defaults, duplicates dropped)",
               label="intrinsic dimension", stage="geometry", summary=True),
    MetricInfo("knn_tied_fraction", "none",
               "fraction of the model's cosine kNN lists whose k-th neighbour ties (equal similarity, within the "
               "documented tie tolerance) with the (k+1)-th: there the lower-index-first rule decides the list",
               label="tied kNN lists (fraction)", stage="geometry"),
    MetricInfo("mle_dimension", "none", "Levina-Bickel MLE intrinsic dimension, k = 20",
               label="MLE dimension", stage="geometry"),
    MetricInfo("info_imbalance_ref_to_model", "lower", "information imbalance Delta(reference -> model)",
               label="info imbalance ref->model"),
    MetricInfo("info_imbalance_model_to_ref", "lower", "information imbalance Delta(model -> reference)",
               label="info imbalance model->ref"),
    MetricInfo("idcor_to_ref", "higher", "IDCor correlation with the reference model", label="IdCor to reference"),
    MetricInfo("idcor_pvalue", "lower", "one-sided permutation p-value of idcor_to_ref", label="IdCor p-value"),
    MetricInfo("idcor_pvalue_floor", "none",
               "smallest p-value the IDCor permutation test can return, 1 / (n_perm + 1): idcor_pvalue at this "
               "value means no permutation beat the observed IDCor", label="IdCor p-value floor", per_task=False),
    MetricInfo("dcor_to_ref", "higher",
               "distance correlation (Szekely et al. 2007, biased V-statistic) with the reference model on the "
               "alignment-prepared features; O(n^2) time and memory, so above 2000 points a declared seeded "
               "subsample of 2000 is used", label="dCor to reference"),
    MetricInfo("energy_mae", "lower", "energy mean absolute error", "eV/atom", label="energy MAE (eV/atom)",
               stage="embed", summary=True),
    MetricInfo("probe_energy_mae", "lower", "linear-probe energy mean absolute error", "eV/atom",
               label="probe energy MAE (eV/atom)", stage="embed", summary=True),
    MetricInfo("extract_seconds", "none", "wall time of embedding extraction (0 when read from the cache)", "s",
               label="extraction time (s)", stage="embed", per_task=False),
    MetricInfo("id_score", "higher", "mean cknna_to_ref over in-distribution tasks",
               label="ID score (mean CKNNA, id tasks)", stage="board", per_task=False),
    MetricInfo("ood_score", "higher", "mean cknna_to_ref over out-of-distribution tasks",
               label="OOD score (mean CKNNA, ood tasks)", stage="board", per_task=False),
]

METRICS: dict[str, MetricInfo] = {m.name: m for m in _ALL}

#: the distance-correlation subsample size declared in dcor_to_ref's description (cost O(n^2))
DCOR_MAX_N = 2000


def direction(name: str) -> str:
    """"higher", "lower" or "none" for a registered metric; KeyError naming the known ones otherwise."""
    try:
        return METRICS[name].direction
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; registered: {sorted(METRICS)}") from None


def label(name: str) -> str:
    """The display label of a registered metric (its name when none is declared or it is unknown)."""
    info = METRICS.get(name)
    return info.display if info else name


def names(*stages: str, per_task: bool | None = None, summary: bool | None = None) -> list[str]:
    """Declared metric names in declaration order, filtered by stage(s) and flags (None = any)."""
    return [
        m.name for m in _ALL
        if (not stages or m.stage in stages)
        and (per_task is None or m.per_task == per_task)
        and (summary is None or m.summary == summary)
    ]


def logged_in_stage2() -> list[str]:
    """The names stage 2 of a run writes onto a child run (geometry and alignment metrics)."""
    return names("geometry", "alignment")


def child_run_metrics() -> list[MetricInfo]:
    """The metrics a (model, task) child run may carry, in declaration order (stages embed, geometry, alignment)."""
    return [m for m in _ALL if m.stage in ("embed", "geometry", "alignment")]
