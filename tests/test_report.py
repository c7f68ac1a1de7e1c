"""The report: claim statistics on synthetic inputs with known answers, the null calibration, and an
end-to-end `reproduce --size tiny` on fake models plus a tiny convergence experiment."""

from __future__ import annotations

import dataclasses
import re
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main as cli_main
from benchmark.report import claims as C
from benchmark.report.null import cosine_graph, permutation_null, permute_graph, pooled_permutation_null
from tests import fake_tasks

RUN_ID = re.compile(r"\b[0-9a-f]{32}\b")


def load_with_smiles(n_samples: int, seed: int, labelled: bool = True) -> list:
    """The synthetic molecules of tests.fake_tasks with a stand-in SMILES, so string models can run."""
    return [dataclasses.replace(s, smiles="C" * int(np.sum(s.numbers == 6)) or "O")
            for s in fake_tasks.load(n_samples, seed, labelled=labelled)]


# --- claims on synthetic data ---------------------------------------------------------------------------


def mae_frame(mae, align) -> pd.DataFrame:
    n = len(mae)
    return pd.DataFrame({"model": [f"m{i}" for i in range(n)], "energy_mae": mae, "cknna_to_ref": align,
                         "is_reference": [False] * n, "run_id": [f"{i:032x}" for i in range(n)]})


def test_planted_monotone_relation_holds_and_shuffled_does_not():
    mae = np.geomspace(0.005, 0.5, 10)
    planted = C.claim_b(mae_frame(mae, 0.9 - 0.05 * np.arange(10)))
    (p,) = planted["parts"]
    assert planted["verdict"] == C.HELD and p["value"] == pytest.approx(-1.0) and p["p_value"] < 1e-6
    assert p["ci"][1] <= -0.9 and p["n"] == 10 and len(p["sources"]) == 10
    shuffled = C.claim_b(mae_frame(mae, np.array([0.5, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4, 0.9, 0.35, 0.55])))
    assert shuffled["verdict"] == C.NOT_HELD and shuffled["parts"][0]["p_value"] > 0.05
    assert C.claim_b(mae_frame(mae[:3], [0.9, 0.8, 0.7]))["verdict"] == C.UNTESTABLE


def pairs_for(values: dict[tuple[str, str], float], groups: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame([{"task": "t", "model_a": a, "model_b": b, "group_a": groups[a], "group_b": groups[b],
                          "run_a": "a" * 32, "run_b": "b" * 32, "cknna": v} for (a, b), v in values.items()])


def test_modality_test_separates_planted_groups():
    groups = {f"x{i}": "3D" for i in range(4)} | {f"s{i}": "string" for i in range(3)}
    models = sorted(groups)
    rng = np.random.default_rng(0)
    planted = {(a, b): (0.7 if groups[a] == groups[b] else 0.2) + 0.02 * rng.normal()
               for i, a in enumerate(models) for b in models[i + 1:]}
    s3 = {"observed": 0.2, "null_mean": 0.0, "null_std": 0.01, "z": 20.0, "p_value": 0.02, "n_perm": 49}
    held = C.claim_a(pairs_for(planted, groups), s3, n_perm=500)
    a1, a2 = held["parts"]
    assert held["verdict"] == C.HELD and a1["value"] == pytest.approx(0.5, abs=0.05) and a1["p_value"] < 0.05
    assert a1["ci"][0] > 0.4 and a2["verdict"] == C.HELD
    flat = {k: 0.4 + 0.02 * rng.normal() for k in planted}
    assert C.claim_a(pairs_for(flat, groups), s3, n_perm=500)["parts"][0]["verdict"] == C.NOT_HELD
    within_chance = dict(s3, observed=0.001, p_value=0.4, z=0.1)
    assert C.claim_a(pairs_for(planted, groups), within_chance, n_perm=200)["verdict"] == C.NOT_HELD
    assert C.claim_a(pairs_for(planted, groups), None, n_perm=200)["parts"][1]["verdict"] == C.UNTESTABLE
    few = {k: v for k, v in planted.items() if "s2" not in k}  # 4 + 2 models: 15 labellings, p >= 1/15
    a1 = C.claim_a(pairs_for(few, groups), s3, n_perm=500)["parts"][0]
    assert a1["extra"]["n_labellings"] == 15 and a1["p_value"] > 0.05
    assert a1["verdict"] == C.HELD and "bootstrap CI" in a1["reason"]


def test_intrinsic_dimension_band():
    rows = [{"model": f"m{i}", "task": "qm9", "intrinsic_dimension": 5 + 0.2 * i, "run_id": "c" * 32} for i in range(5)]
    rows += [{"model": f"m{i}", "task": "crystals", "intrinsic_dimension": 3 + 4 * i, "run_id": "d" * 32}
             for i in range(5)]
    out = C.claim_c(pd.DataFrame(rows))
    by = {p["name"]: p for p in out["parts"]}
    assert by["c-qm9 band"]["verdict"] == C.HELD and by["c-qm9 band"]["value"] == pytest.approx(5.4)
    assert by["c-crystals band"]["verdict"] == C.NOT_HELD and "not narrow" in by["c-crystals band"]["reason"]
    assert by["c-rotational higher"]["verdict"] == C.UNTESTABLE and out["verdict"] == C.NOT_HELD
    off = C.claim_c(pd.DataFrame([dict(r, intrinsic_dimension=r["intrinsic_dimension"] + 4) for r in rows[:5]]))
    assert off["verdict"] == C.NOT_HELD and "outside" in off["parts"][0]["reason"]


def id_ood_rows(collapse: bool) -> pd.DataFrame:
    rows = []
    for i in range(6):
        up = 0.3 if collapse else -0.1 * (i % 2)
        base = {"model": f"m{i}", "is_reference": False, "run_id": f"{i:032x}", "energy_mae": 0.01 * (i + 1)}
        rows.append(base | {"task": "t_id", "role": "id", "cknna_to_ref": 0.6 - 0.05 * i, "intrinsic_dimension": 8.0,
                            "info_imbalance_model_to_ref": 0.3, "info_imbalance_ref_to_model": 0.3})
        rows.append(base | {"task": "t_ood", "role": "ood", "cknna_to_ref": 0.6 - 0.05 * i + up + 0.01 * i,
                            "intrinsic_dimension": 4.0 if collapse else 8.5, "info_imbalance_model_to_ref": 0.5 + 0.01 * i,
                            "info_imbalance_ref_to_model": 0.2 if collapse else 0.6})
    return pd.DataFrame(rows)


def test_id_ood_collapse():
    held = C.claim_d(id_ood_rows(True))
    assert held["verdict"] == C.HELD, held["reason"]
    assert [p["verdict"] for p in held["parts"]] == [C.HELD] * 3
    assert held["parts"][1]["extra"]["collapse_share"] == 1.0
    diverged = C.claim_d(id_ood_rows(False))
    assert diverged["verdict"] == C.NOT_HELD
    assert diverged["parts"][1]["verdict"] == C.NOT_HELD and diverged["parts"][2]["verdict"] == C.NOT_HELD


# --- null calibration ------------------------------------------------------------------------------------


def test_permuted_graph_equals_graph_of_permuted_rows():
    X = np.random.default_rng(1).normal(size=(80, 6))
    perm = np.random.default_rng(2).permutation(80)
    direct, relabelled = cosine_graph(X[perm], 5), permute_graph(cosine_graph(X, 5), perm)
    assert np.array_equal(direct.indices, relabelled.indices)
    assert np.allclose(direct.values, relabelled.values)


def test_sparse_fingerprints_are_normalised_without_clipping():
    X = np.zeros((40, 500))
    rng = np.random.default_rng(3)
    for i in range(40):
        X[i, rng.choice(500, 6, replace=False)] = rng.integers(1, 4, 6)
    g = cosine_graph(X, 5)
    assert g.n == 40 and np.all(g.values <= 1 + 1e-9)


def test_identical_far_above_null_and_independent_within_it():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    g = cosine_graph(X, 10)
    same = permutation_null(g, cosine_graph(X.copy(), 10), 10, n_perm=30)
    assert same["cknna"].observed == pytest.approx(1.0, abs=1e-4) and same["cknna"].z > 10
    assert same["cknna"].p_value == pytest.approx(1 / 31) and same["mutual_knn"].percentile == 100.0
    other = permutation_null(g, cosine_graph(Y, 10), 10, n_perm=30)
    for r in other.values():
        assert abs(r.z) < 3 and r.p_value > 0.05
    pooled = pooled_permutation_null([(g, cosine_graph(Y, 10)), (g, cosine_graph(X + 0.01 * Y, 10))], 10, n_perm=20)
    assert pooled.observed > pooled.null_mean + 3 * pooled.null_std


# --- end to end ------------------------------------------------------------------------------------------

MODELS = """
reference:
  model: good
  fallback: auto
models:
  - {key: good, name: Good, family: fake, modality: atoms, domain: molecules, default: true, energy_head: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 1, energy_noise: 0.001}}
  - {key: mid, name: Mid, family: fake, modality: atoms, domain: molecules, default: true, energy_head: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 3, noise: 0.3, energy_noise: 0.05}}
  - {key: noisy, name: Noisy, family: fake, modality: atoms, domain: materials, default: true, energy_head: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 2, noise: 1.0, energy_noise: 0.2}}
  - {key: smiles-lm, name: SMILES LM, family: fake, modality: smiles, domain: text, default: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 10, seed: 4, noise: 0.5}}
  - {key: text-lm, name: Text LM, family: fake, modality: text, domain: text, default: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 10, seed: 5, noise: 0.8}}
"""

TASK = """
name: {name}
version: "1"
description: synthetic
loader: tests.test_report:load_with_smiles
options: {{labelled: {labelled}}}
source: generated
level_of_theory: composition energies + noise
energy_reference: per_element
n_samples: 60
seed: {seed}
roles: {{molecules: {role}, materials: {other}, text: ood}}
"""


@pytest.mark.slow
def test_reproduce_tiny_end_to_end(tmp_path: Path, monkeypatch):
    models = tmp_path / "models.yaml"
    models.write_text(textwrap.dedent(MODELS))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "syn_a.yaml").write_text(TASK.format(name="syn_a", labelled="true", seed=1, role="id", other="ood"))
    (tasks / "syn_b.yaml").write_text(TASK.format(name="syn_b", labelled="false", seed=2, role="ood", other="id"))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MATTERALIGN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "report"
    previous = mlflow.get_tracking_uri()
    try:
        code = cli_main(["reproduce", "--size", "tiny", "--out", str(out), "--tracking-uri", uri, "--models-file",
                         str(models), "--tasks-dir", str(tasks), "--n-perm", "39"])
    finally:
        mlflow.set_tracking_uri(previous)
    assert code == 0
    text = (out / "REPORT.md").read_text()
    for cid in "abcd":
        assert re.search(rf"^## Claim \({cid}\): (HELD|DID NOT HOLD|NOT TESTABLE HERE)$", text, re.M), cid
        assert re.search(rf"^\| \({cid}\) .*\| \*\*(held|did not hold|not testable here)\*\* \|", text, re.M), cid
    for fig in ("alignment", "intrinsic_dimension", "null_calibration", "convergence"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 1000

    client = mlflow.MlflowClient(tracking_uri=uri)
    known = {r.info.run_id for e in client.search_experiments() for r in client.search_runs([e.experiment_id])}
    numeric = [line for line in text.splitlines() if re.search(r"\d\.\d", line)]
    assert len(numeric) > 20
    for line in numeric:
        ids = RUN_ID.findall(line)
        assert ids and set(ids) <= known, line
    (report_run,) = [r for e in client.search_experiments() for r in client.search_runs(
        [e.experiment_id], filter_string="tags.`matteralign.kind` = 'report'")]
    assert report_run.info.run_id in text
    assert report_run.data.metrics["wall_seconds"] > 0
    assert any(k.startswith("claim_b.b1_convergence") for k in report_run.data.metrics)
    assert {a.path for a in client.list_artifacts(report_run.info.run_id)} >= {"REPORT.md", "figures"}
    assert "schnet-n80-e3" in text and "random-init" in text


def test_committed_report_is_portable():
    """report/REPORT.md names no path of the machine that produced it and says it was produced elsewhere."""
    import re
    from pathlib import Path

    from benchmark.report.reproduce import PRODUCED_ELSEWHERE, portable

    text = (Path(__file__).resolve().parents[1] / "report" / "REPORT.md").read_text()
    assert PRODUCED_ELSEWHERE in text
    assert not re.search(r"(?<![\w/.])/(?:work|tmp|root|home|Users)/", text)
    out = portable("store `sqlite:////x/rep/store/mlflow.db`, cache /tmp/c/envs/abc, https://a.org/b", Path("/x/rep"))
    assert out == "store `sqlite:store/mlflow.db`, cache .../abc, https://a.org/b"


def test_reproduce_adds_runnable_equivariant_models_for_claim_c(tmp_path):
    """Claim (c) compares equivariant with invariant features: reproduce runs the default models plus every
    runnable `options.features: equivariant` entry, and is a plain default run when there is none."""
    from benchmark.report.reproduce import claim_models

    path = tmp_path / "models.yaml"
    path.write_text(textwrap.dedent(MODELS))
    assert claim_models(path) is None
    path.write_text(textwrap.dedent(MODELS) + (
        '  - {key: rot, name: Rot, family: fake, modality: atoms, domain: molecules, default: false,\n'
        '     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 7, features: equivariant}}\n'
        '  - {key: rot-missing, name: Rot missing, family: fake, modality: atoms, domain: molecules, default: false,\n'
        '     adapter: "tests.fake_models:MissingWeightsAdapter", options: {features: equivariant}}\n'))
    assert claim_models(path) == ["good", "mid", "noisy", "smiles-lm", "text-lm", "rot"]
