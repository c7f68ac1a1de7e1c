"""The metrics the pipeline logs: name, direction (declared once, here), description, unit."""

from __future__ import annotations

from dataclasses import dataclass

DIRECTIONS = ("higher", "lower", "none")


@dataclass(frozen=True)
class MetricInfo:
    """direction: "higher" / "lower" = better; "none" = descriptive, no better or worse."""

    name: str
    direction: str
    description: str
    unit: str = ""

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"metric {self.name!r}: direction must be one of {DIRECTIONS}, got {self.direction!r}")


_ALL = [
    MetricInfo("cknna_to_ref", "higher", "unbiased CKNNA (k = 10, eps = 1e-6) to the reference model"),
    MetricInfo("cknna_to_ref_ci_low", "higher", "lower end of the 95% query-point bootstrap interval of cknna_to_ref"),
    MetricInfo("cknna_to_ref_ci_high", "higher", "upper end of the 95% query-point bootstrap interval of cknna_to_ref"),
    MetricInfo("mutual_knn_to_ref", "higher", "mean fraction of shared k nearest neighbours with the reference model"),
    MetricInfo("cka_to_ref", "higher", "biased linear CKA (feature space) to the reference model"),
    MetricInfo("intrinsic_dimension", "none", "TwoNN intrinsic dimension (DADApy defaults, duplicates dropped)"),
    MetricInfo("mle_dimension", "none", "Levina-Bickel MLE intrinsic dimension, k = 20"),
    MetricInfo("info_imbalance_ref_to_model", "lower", "information imbalance Delta(reference -> model)"),
    MetricInfo("info_imbalance_model_to_ref", "lower", "information imbalance Delta(model -> reference)"),
    MetricInfo("idcor_to_ref", "higher", "IDCor correlation with the reference model"),
    MetricInfo("idcor_pvalue", "lower", "one-sided permutation p-value of idcor_to_ref"),
    MetricInfo("energy_mae", "lower", "energy mean absolute error", "eV/atom"),
    MetricInfo("probe_energy_mae", "lower", "linear-probe energy mean absolute error", "eV/atom"),
    MetricInfo("id_score", "higher", "mean cknna_to_ref over in-distribution tasks"),
    MetricInfo("ood_score", "higher", "mean cknna_to_ref over out-of-distribution tasks"),
]

METRICS: dict[str, MetricInfo] = {m.name: m for m in _ALL}


def direction(name: str) -> str:
    """"higher", "lower" or "none" for a registered metric; KeyError naming the known ones otherwise."""
    try:
        return METRICS[name].direction
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; registered: {sorted(METRICS)}") from None
