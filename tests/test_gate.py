"""Release gate: a real drop fails (1), a drop inside the noise passes (0), incomparable runs exit 2."""

from __future__ import annotations

import pandas as pd
import pytest

from mlflow_fixtures import FakeStore


def _m(c: float, lo: float, hi: float, mae: float = 0.05) -> dict[str, float]:
    return {"cknna_to_ref": c, "cknna_to_ref_ci_low": lo, "cknna_to_ref_ci_high": hi, "energy_mae": mae,
            "intrinsic_dimension": 8.0}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = FakeStore(tmp_path_factory.mktemp("gate"))
    p = s.parent({"qm9": "ref", "crystals": "ref"})
    versions = {  # version: (qm9 metrics, crystals metrics or None, qm9 ids digest)
        "1": (_m(0.60, 0.55, 0.65), _m(0.50, 0.45, 0.55), "ids-1"),
        "2": (_m(0.50, 0.46, 0.54, mae=0.10), _m(0.50, 0.45, 0.55), "ids-1"),  # real drop on qm9
        "3": (_m(0.56, 0.50, 0.62), _m(0.49, 0.44, 0.54), "ids-1"),  # -0.04 but the CI reaches 0.60: noise
        "4": (_m(0.70, 0.65, 0.75), _m(0.60, 0.55, 0.65), "ids-2"),  # other sample ids on qm9
        "5": (_m(0.61, 0.56, 0.66), None, "ids-1"),  # never ran on crystals
        "6": (_m(0.70, 0.65, 0.75), _m(0.55, 0.50, 0.60), "ids-1"),  # better everywhere
    }
    for version, (qm9, cryst, ids) in versions.items():
        s.child(p, "m", "qm9", metrics=qm9, model_version=version, ids_digest=ids, checkpoint_digest=f"c{version}")
        if cryst is not None:
            s.child(p, "m", "crystals", role="ood", metrics=cryst, model_version=version,
                    checkpoint_digest=f"c{version}")
    s.child(p, "m", "qm9", metrics=_m(0.0, 0.0, 0.0), model_version="7", status="failed", reason="boom")
    return s


def _check(store, capsys, *args: str) -> tuple[int, str]:
    from benchmark.cli import main

    rc = main(["check", "--tracking-uri", store.uri, "--experiment", store.experiment, *args])
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_real_drop_is_a_regression(store, capsys):
    rc, out = _check(store, capsys, "--candidate", "m@2", "--baseline", "m@1")
    assert rc == 1, out
    assert "REGRESSION" in out and "qm9" in out and "FAIL" in out


def test_drop_inside_the_noise_passes(store, capsys):
    rc, out = _check(store, capsys, "--candidate", "m@3", "--baseline", "m@1")
    assert rc == 0, out
    assert "within noise" in out and "REGRESSION" not in out


def test_improvement_passes_and_a_large_tolerance_forgives_the_drop(store, capsys):
    assert _check(store, capsys, "--candidate", "m@6", "--baseline", "m@1")[0] == 0
    assert _check(store, capsys, "--candidate", "m@2", "--baseline", "m@1", "--max-drop", "0.2")[0] == 0


def test_lower_is_better_metric_without_ci_uses_the_tolerance(store, capsys):
    rc, out = _check(store, capsys, "--candidate", "m@2", "--baseline", "m@1", "--metric", "energy_mae")
    assert rc == 1 and "no CI" in out and "lower is better" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--candidate", "m@4", "--baseline", "m@1"], "different sample ids"),
        (["--candidate", "m@5", "--baseline", "m@1"], "no ok run of m@5 on crystals"),
        (["--candidate", "m@9", "--baseline", "m@1"], "no finished ok run of m@9"),
        (["--candidate", "m@7", "--baseline", "m@1"], "no finished ok run of m@7"),
        (["--candidate", "m@2", "--baseline", "m@1", "--metric", "accuracy"], "unknown metric 'accuracy'"),
        (["--candidate", "m@2", "--baseline", "m@1", "--metric", "intrinsic_dimension"], "descriptive metric"),
        (["--candidate", "m2", "--baseline", "m@1"], "expected MODEL@VERSION"),
    ],
)
def test_cannot_compare_exits_2(store, capsys, args, message):
    rc, out = _check(store, capsys, *args)
    assert rc == 2, out
    assert message in out


def test_tasks_restrict_the_comparison(store, capsys):
    rc, out = _check(store, capsys, "--candidate", "m@5", "--baseline", "m@1", "--tasks", "qm9")
    assert rc == 0 and "crystals" not in out.split("\n", 1)[1]


def test_rule_is_mirrored_for_lower_is_better_metrics():
    from benchmark.leaderboard.gate import judge

    base = pd.Series({"energy_mae": 0.10})
    drop_in_noise = pd.Series({"energy_mae": 0.15, "energy_mae_ci_low": 0.09, "energy_mae_ci_high": 0.2})
    real_drop = pd.Series({"energy_mae": 0.15, "energy_mae_ci_low": 0.12, "energy_mae_ci_high": 0.2})
    assert judge("t", "energy_mae", base, drop_in_noise, 0.02, higher=False).verdict == "within noise"
    assert judge("t", "energy_mae", base, real_drop, 0.02, higher=False).verdict == "REGRESSION"
    assert judge("t", "energy_mae", base, pd.Series({"energy_mae": 0.11}), 0.02, higher=False).verdict == "ok"
