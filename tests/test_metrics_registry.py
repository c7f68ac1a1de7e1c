"""METRICS registry, direction() and check_paired."""

from __future__ import annotations

import pytest

from benchmark.errors import DataError
from benchmark.metrics import METRICS, MetricInfo, check_paired, direction

REQUIRED = {
    "cknna_to_ref": "higher",
    "cknna_to_ref_ci_low": "higher",
    "cknna_to_ref_ci_high": "higher",
    "mutual_knn_to_ref": "higher",
    "cka_to_ref": "higher",
    "intrinsic_dimension": "none",
    "mle_dimension": "none",
    "info_imbalance_ref_to_model": "lower",
    "info_imbalance_model_to_ref": "lower",
    "idcor_to_ref": "higher",
    "idcor_pvalue": "lower",
    "energy_mae": "lower",
    "probe_energy_mae": "lower",
    "id_score": "higher",
    "ood_score": "higher",
}


def test_required_metrics_and_directions():
    for name, d in REQUIRED.items():
        assert METRICS[name].name == name
        assert direction(name) == d
    assert METRICS["energy_mae"].unit == METRICS["probe_energy_mae"].unit == "eV/atom"
    with pytest.raises(KeyError, match="unknown metric"):
        direction("cknna")
    with pytest.raises(ValueError):
        MetricInfo("x", "up", "bad direction")


def test_check_paired():
    check_paired(["a", "b"], ("a", "b"), "m1", "m2")
    with pytest.raises(DataError, match=r"sample 1 is 'b' in m1 but 'c' in m2"):
        check_paired(["a", "b", "d"], ["a", "c", "d"], "m1", "m2")
    with pytest.raises(DataError, match=r"'c' \(index 2\) in m2"):
        check_paired(["a", "b"], ["a", "b", "c"], "m1", "m2")
    with pytest.raises(DataError, match="m1 has 3 samples and m2 has 2"):
        check_paired(["a", "b", "c"], ["a", "b"], "m1", "m2")
