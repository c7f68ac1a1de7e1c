"""The end-to-end run on fake models and synthetic tasks: MLflow layout, fallbacks, failures, cache reuse."""

from __future__ import annotations

import json
import textwrap
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
def registry(tmp_path: Path) -> tuple[Path, Path]:
    models = tmp_path / "models.yaml"
    models.write_text(textwrap.dedent(MODELS))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "syn_a.yaml").write_text(TASK.format(name="syn_a", labelled="true", seed=1, role="id"))
    (tasks / "syn_b.yaml").write_text(TASK.format(name="syn_b", labelled="false", seed=2, role="ood"))
    return models, tasks


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
