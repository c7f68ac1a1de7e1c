"""The end-to-end run on fake models and synthetic tasks: MLflow layout, fallbacks, failures, cache reuse."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from benchmark.cli import main as cli_main
from benchmark.errors import ConfigError
from benchmark.pipeline.run import RunConfig, run_benchmark

MODELS = """
reference:
  model: ref-missing
  fallback: auto
models:
  - {key: ref-missing, name: Missing reference, family: hub, modality: atoms, domain: materials,
     adapter: "tests.fake_models:MissingWeightsAdapter", checkpoint: /nowhere/uma.pt}
  - {key: good, name: Good, family: fake, modality: atoms, domain: molecules, default: true, energy_head: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 1, energy_noise: 0.001}}
  - {key: noisy, name: "Noisy <b>", family: fake, modality: atoms, domain: materials, default: true, energy_head: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 2, noise: 1.0, energy_noise: 0.2}}
  - {key: broken, name: Broken, family: fake, modality: atoms, domain: molecules, default: true,
     adapter: "tests.fake_models:BrokenAdapter"}
  - {key: text-only, name: Text, family: fake, modality: smiles, domain: text, default: true,
     adapter: "tests.fake_models:FakeAtomsAdapter"}
"""

TASK = """
name: {name}
version: "1"
description: synthetic
loader: tests.fake_tasks:load
options: {{labelled: {labelled}}}
source: generated
level_of_theory: composition energies + noise
n_samples: 60
seed: {seed}
roles: {{molecules: {role}, materials: ood}}
"""


@pytest.fixture
def registry(make_registry) -> tuple[Path, Path]:
    return make_registry(MODELS, {"syn_a": TASK.format(name="syn_a", labelled="true", seed=1, role="id"),
                                  "syn_b": TASK.format(name="syn_b", labelled="false", seed=2, role="ood")})


def config(registry, tmp_path, **kw) -> RunConfig:
    models, tasks = registry
    return RunConfig(models_file=models, tasks_dir=tasks, leaderboard_dir=None, progress=False,
                     tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", n_boot=20, n_perm=3, **kw)


def child_runs(tmp_path: Path, parent_id: str):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    runs = mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    return {(r["tags.matteralign.model"], r["tags.matteralign.task"]): r for _, r in runs.iterrows()}


def test_end_to_end_layout_and_fallback(registry, tmp_path):
    summary = run_benchmark(config(registry, tmp_path))
    by = {(r.model, r.task): r for r in summary.results}
    assert by[("ref-missing", "syn_a")].status == "skipped" and "not found" in by[("ref-missing", "syn_a")].reason
    assert by[("broken", "syn_a")].status == "failed" and "simulated model crash" in by[("broken", "syn_a")].reason
    assert by[("text-only", "syn_a")].status == "skipped" and "no SMILES" in by[("text-only", "syn_a")].reason
    # the configured reference is missing, so auto picks the lowest energy MAE; unlabelled task: best mean rank
    for task in ("syn_a", "syn_b"):
        choice = summary.references[task]
        assert choice.model == "good" and "ref-missing" in choice.reason and "auto" in choice.reason
    assert "no energy labels" in summary.references["syn_b"].reason
    good, noisy = by[("good", "syn_a")].metrics, by[("noisy", "syn_a")].metrics
    assert good["energy_mae"] < noisy["energy_mae"]
    assert good["cknna_to_ref"] == pytest.approx(1.0, abs=1e-4)
    assert noisy["cknna_to_ref"] < 0.9
    assert noisy["cknna_to_ref_ci_low"] <= noisy["cknna_to_ref"] <= noisy["cknna_to_ref_ci_high"]
    assert "probe_energy_mae" in noisy and "intrinsic_dimension" in noisy
    assert "energy_mae" not in by[("good", "syn_b")].metrics

    runs = child_runs(tmp_path, summary.parent_run_id)
    assert len(runs) == 10
    r = runs[("noisy", "syn_a")]
    assert r["tags.matteralign.status"] == "ok" and r["tags.matteralign.role"] == "ood"
    assert r["tags.matteralign.reference"] == "good" and r["tags.matteralign.is_reference"] == "false"
    assert r["params.model_key"] == "noisy" and r["params.k"] == "10" and r["params.n_samples"] == "60"
    assert len(r["params.checkpoint_digest"]) == 64 and r["params.task_version"] == "1"
    assert r["metrics.cknna_to_ref"] == pytest.approx(noisy["cknna_to_ref"])
    assert runs[("good", "syn_a")]["tags.matteralign.role"] == "id"
    assert runs[("broken", "syn_a")]["tags.matteralign.status"] == "failed"
    client = MlflowClient()
    arts = {a.path for a in client.list_artifacts(r["run_id"], "embeddings")}
    assert {"embeddings/syn_a.npy", "embeddings/syn_a.ids.json", "embeddings/syn_a.energies.npy"} <= arts
    local = Path(client.download_artifacts(r["run_id"], "embeddings/syn_a.npy", str(tmp_path)))
    emb = np.load(local)
    assert emb.shape[0] == 60 and np.array_equal(emb, by[("noisy", "syn_a")].features.astype(np.float32))
    entry = json.loads(Path(client.download_artifacts(r["run_id"], "model_entry.json", str(tmp_path))).read_text())
    assert entry["key"] == "noisy"
    run = client.get_run(r["run_id"])
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["syn_a-v1"]
    parent = client.get_run(summary.parent_run_id)
    assert parent.data.tags["matteralign.reference.syn_a"] == "good"


def test_second_run_recomputes_nothing(registry, tmp_path, capsys):
    run_benchmark(config(registry, tmp_path, models=["good", "noisy"], tasks=["syn_a"]))
    summary = run_benchmark(config(registry, tmp_path, models=["good", "noisy"], tasks=["syn_a"]))
    ok = [r for r in summary.results if r.status == "ok"]
    assert ok and all(r.reused for r in ok)
    assert "nothing recomputed" in capsys.readouterr().err


def test_configured_reference_used_when_it_runs(registry, tmp_path):
    summary = run_benchmark(config(registry, tmp_path, models=["good", "noisy"], tasks=["syn_a"], reference="noisy"))
    assert summary.references["syn_a"].model == "noisy"
    assert summary.references["syn_a"].reason == "configured reference"


def test_unknown_model_key_is_a_config_error(registry, tmp_path):
    with pytest.raises(ConfigError, match="unknown model key 'nope'"):
        run_benchmark(config(registry, tmp_path, models=["nope"]))


def test_cli_reports_errors_without_traceback(registry, tmp_path, capsys):
    models, tasks = registry
    code = cli_main(["run", "--models", "nope", "--models-file", str(models), "--tasks-dir", str(tasks),
                     "--no-leaderboard", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown model key 'nope'" in err and "Traceback" not in err
    assert cli_main(["run", "--n-samples", "x=y", "--models-file", str(models)]) == 2


def test_cli_unknown_command_suggests_the_closest(capsys):
    assert cli_main(["rn", "--models", "x"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'rn'. Did you mean 'run'?" in err and "reproduce" in err and "Traceback" not in err
    assert cli_main(["zzzz"]) == 2 and "Did you mean" not in capsys.readouterr().err


# --- issue-17 follow-ups: stored graphs for information imbalance, IDCor test, exclusions, task failures ---


def _prepared_pair(tmp_path, n=80):
    from benchmark.pipeline.align import model_geometry

    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, 6))
    Y = X[:, :4] + 0.3 * rng.normal(size=(n, 4))
    model_geometry(X, "x", 5, 10, tmp_path)
    model_geometry(Y, "y", 5, 10, tmp_path)
    return X, Y


def test_alignment_reuses_the_stored_graphs_for_information_imbalance(tmp_path, monkeypatch):
    import benchmark.metrics.imbalance as imb
    from benchmark.knn import prepare_for_alignment
    from benchmark.pipeline.align import model_alignment

    X, Y = _prepared_pair(tmp_path)
    expected = imb.information_imbalances(prepare_for_alignment(Y)[0], prepare_for_alignment(X)[0])
    built = []
    monkeypatch.setattr(imb, "knn_graph", lambda *a, **kw: built.append(a) or pytest.fail("graph rebuilt"))
    ali, err, _ = model_alignment(X, "x", Y, "y", 5, tmp_path, n_boot=5, n_perm=3)
    assert not built and "info_imbalance" not in err
    assert (ali["info_imbalance_ref_to_model"], ali["info_imbalance_model_to_ref"]) == pytest.approx(expected)


def test_idcor_is_the_permutation_test_with_its_floor(tmp_path, monkeypatch):
    import benchmark.pipeline.align as align
    from benchmark.metrics.idcor import idcor_test

    assert RunConfig().n_perm == 99 and not hasattr(align, "_idcor_subsample")
    X, Y = _prepared_pair(tmp_path)
    ali, err, _ = align.model_alignment(X, "x", Y, "y", 5, tmp_path, n_boot=5, n_perm=9)
    ref = idcor_test(X, Y, n_perm=9)
    assert ali["idcor_to_ref"] == pytest.approx(ref.corr) and ali["idcor_pvalue"] == pytest.approx(ref.p_value)
    assert ali["idcor_pvalue_floor"] == pytest.approx(0.1) and "note.idcor_to_ref" not in err
    monkeypatch.setattr(align, "IDCOR_MAX_N", 50)
    ali, err, _ = align.model_alignment(X, "x", Y, "y", 5, tmp_path, n_boot=5, n_perm=9)
    assert "50 of 80" in err["note.idcor_to_ref"] and not any(k.startswith("warning.idcor") for k in err)


def test_n_samples_comma_list_and_unknown_task(registry, tmp_path):
    from benchmark.cli.options import parse_n_samples

    assert parse_n_samples(["mp_energies=100,pdb_ligands=30"]) == {"mp_energies": 100, "pdb_ligands": 30}
    assert parse_n_samples(["'qm9=10,crystals=20'", "pdb=5"]) == {"qm9": 10, "crystals": 20, "pdb": 5}
    assert parse_n_samples(["40"]) == 40
    with pytest.raises(ConfigError, match="not both"):
        parse_n_samples(["40,qm9=10"])
    with pytest.raises(ConfigError, match=r"unknown task\(s\) 'nope'.*syn_a, syn_b"):
        run_benchmark(config(registry, tmp_path, n_samples={"syn_a": 10, "nope": 5}))


@pytest.mark.slow
def test_missing_task_data_skips_that_task_and_logs_exclusions(registry, tmp_path, capsys):
    models, tasks = registry
    (tasks / "syn_a.yaml").write_text(
        (tasks / "syn_a.yaml").read_text().replace("tests.fake_tasks:load", "tests.fake_tasks:load_screened"))
    (tasks / "nodata.yaml").write_text(
        TASK.format(name="nodata", labelled="true", seed=3, role="id").replace(":load", ":load_missing_package"))
    argv = ["run", "--models", "good,noisy", "--reference", "good", "--tasks", "nodata,syn_a", "--models-file",
            str(models), "--tasks-dir", str(tasks), "--no-leaderboard", "--no-progress", "--n-boot", "5",
            "--n-perm", "3", "--n-samples", "syn_a=25,nodata=10", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    code = cli_main(argv)
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.count("pip install fakedata-test-files") == 1 and "Traceback" not in err
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    parent = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`matteralign.kind` = 'parent'")
    assert "fakedata-test-files" in parent.iloc[0]["tags.matteralign.task_skipped.nodata"]
    runs = child_runs(tmp_path, parent.iloc[0]["run_id"])
    assert set(runs) == {("good", "syn_a"), ("noisy", "syn_a")}
    r = runs[("noisy", "syn_a")]
    assert r["params.n_samples"] == "25" and r["params.excluded_structures"] == "5"
    assert json.loads(r["tags.matteralign.excluded"]) == {"atoms closer than 0.5 A": 3, "too many atoms": 2}
    assert np.isfinite(r["metrics.cknna_to_ref"])
    # only the task without data: nothing usable
    assert cli_main([*argv[:6], "nodata", *argv[7:]]) == 2


def test_leaderboard_dir_that_is_a_file_fails_before_any_work(registry, tmp_path, capsys):
    models, tasks = registry
    blocker = tmp_path / "board"
    blocker.write_text("not a folder")
    cache = tmp_path / "cache"
    common = ["--models-file", str(models), "--tasks-dir", str(tasks), "--tracking-uri",
              f"sqlite:///{tmp_path}/mlflow.db"]
    assert cli_main(["run", "--models", "good", "--leaderboard-dir", str(blocker), "--cache-dir", str(cache),
                     *common]) == 2
    assert cli_main(["submit", "good", "--out", str(blocker), *common]) == 2
    err = capsys.readouterr().err
    assert err.count(f"{blocker} exists and is not a folder") == 2
    assert not cache.exists() and not (tmp_path / "mlflow.db").exists()


def test_skipped_and_failed_runs_end_as_not_successful_and_stay_on_the_board_as_not_ranked(registry, tmp_path):
    """MLflow shows a skipped (model, task) as KILLED and a failed one as FAILED; the board still lists both."""
    from benchmark.leaderboard.collect import load_child_runs, select_board

    summary = run_benchmark(config(registry, tmp_path, tasks=["syn_a"]))
    runs = child_runs(tmp_path, summary.parent_run_id)
    assert runs[("ref-missing", "syn_a")]["status"] == "KILLED"
    assert runs[("broken", "syn_a")]["status"] == "FAILED"
    assert runs[("good", "syn_a")]["status"] == "FINISHED"
    board = select_board(load_child_runs(f"sqlite:///{tmp_path}/mlflow.db"))
    listed = dict(zip(zip(board.not_ranked["model"], board.not_ranked["task"]), board.not_ranked["status"]))
    assert listed[("ref-missing", "syn_a")] == "skipped" and listed[("broken", "syn_a")] == "failed"
    assert not board.notes  # recorded failures are not reported as incomplete (crashed) runs


def test_models_of_another_modality_are_summarised_once_per_task(registry, tmp_path, capsys):
    """A model that can read no structure of a task (a SMILES model on a 3D-only task) is skipped with its
    reason kept on the result, and the run prints one line per task and reason instead of one per model."""
    summary = run_benchmark(config(registry, tmp_path, models=["good", "text-only"]))
    res = next(r for r in summary.results if (r.model, r.task) == ("text-only", "syn_a"))
    assert res.status == "skipped" and res.outside_modality == "no SMILES" and "60 of 60" in res.reason
    err = capsys.readouterr().err
    assert "[task syn_a] skipped 1 model(s) that read another modality (no SMILES): text-only" in err
    assert "text-only: skipped" not in err


def test_a_run_that_fails_between_the_stages_releases_its_embeddings(registry, tmp_path, monkeypatch):
    """Stage 1 holds each task's embeddings for stage 2's figures; a run that dies before stage 2 must not
    leave them held for the rest of the process (the next run of the same process would carry them)."""
    from benchmark.pipeline import record, run

    def crash(*a, **kw):
        raise RuntimeError("killed between the stages")

    monkeypatch.setattr(run, "align_task", crash)
    with pytest.raises(RuntimeError, match="between the stages"):
        run_benchmark(config(registry, tmp_path))
    assert not record._STAGE2 and not record._GROUPS and not record._GRAPHS and not record._ALIGN
