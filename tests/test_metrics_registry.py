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


def test_every_metric_declared_once_with_label_and_stage():
    from benchmark.metrics.registry import STAGES, _ALL, names

    assert len({m.name for m in _ALL}) == len(_ALL)
    for m in METRICS.values():
        assert m.label and m.stage in STAGES, m.name
    assert METRICS["dcor_to_ref"].higher_is_better is True and METRICS["intrinsic_dimension"].higher_is_better is None
    assert set(names("board")) == {"id_score", "ood_score"}


def test_lists_of_metric_names_derive_from_the_registry(tmp_path):
    """The pipeline's stage-2 keys, the board's columns and labels, the run summary all come from METRICS."""
    import numpy as np

    from benchmark.leaderboard import table
    from benchmark.metrics.registry import logged_in_stage2, names
    from benchmark.pipeline.align import model_alignment, model_geometry
    from benchmark.pipeline.run import summary_frame

    assert table.TASK_METRICS == names("embed", "geometry", "alignment", per_task=True)
    assert "dcor_to_ref" in table.TASK_METRICS and table.LABELS["dcor_to_ref"] == METRICS["dcor_to_ref"].label
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(60, 5)), rng.normal(size=(60, 4))
    geo, _ = model_geometry(X, "x", 5, 10, tmp_path)
    model_geometry(Y, "y", 5, 10, tmp_path)
    ali, _, _ = model_alignment(X, "x", Y, "y", 5, tmp_path, n_boot=5, n_perm=3)
    assert set(geo) | set(ali) <= set(logged_in_stage2())
    assert set(logged_in_stage2()) - set(geo) - set(ali) == set()
    frame = summary_frame([], {})
    assert list(frame.columns)[5:] == names(summary=True)
