"""Every MLproject entry point runs through `mlflow run . --env-manager local`, with its defaults and with
parameters, into the benchmark's experiment (not "Default"), on fake models and a tiny synthetic task."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

MODELS = """
reference:
  model: good
  fallback: auto
models:
  - {key: good, name: Good, family: fake, modality: atoms, domain: molecules, default: true, energy_head: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 1, energy_noise: 0.001}}
  - {key: noisy, name: Noisy, family: fake, modality: atoms, domain: materials, default: true, energy_head: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 2, noise: 1.0, energy_noise: 0.2}}
  - {key: other, name: Other, family: fake, modality: atoms, domain: molecules,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 10, seed: 3, noise: 0.3}}
"""

TASK = """
name: syn
version: "1"
description: synthetic
loader: tests.fake_tasks:load
source: generated
level_of_theory: composition energies + noise
n_samples: 40
seed: 1
roles: {molecules: id, materials: ood}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlproject")
    (tmp / "models.yaml").write_text(textwrap.dedent(MODELS))
    (tmp / "tasks").mkdir()
    (tmp / "tasks" / "syn.yaml").write_text(TASK)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MATTERALIGN_"))}
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/mlflow.db", MATTERALIGN_CACHE=str(tmp / "cache"),
               PYTHONPATH=str(ROOT))
    return tmp, env


def mlflow_run(env: dict, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mlflow", "run", str(ROOT), "--env-manager", "local", *args]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    return out


def _runs(tmp: Path, experiment: str, kind: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], f"tags.`matteralign.kind` = '{kind}'")


@pytest.mark.slow
def test_main_with_defaults_then_with_parameters_then_leaderboard(project):
    tmp, env = project
    reg = ["-P", f"models_file={tmp / 'models.yaml'}", "-P", f"tasks_dir={tmp / 'tasks'}",
           "-P", f"leaderboard_dir={tmp / 'lb'}"]
    out = mlflow_run(env, *reg)  # models, tasks, n_samples: their '' defaults
    assert "summary (ranked by CKNNA" in out.stdout
    parents = _runs(tmp, "matteralign", "parent")
    assert len(parents) == 1
    assert parents[0].data.params["models"] == "good,noisy"
    assert len(_runs(tmp, "matteralign", "model-task")) == 2
    assert not _runs(tmp, "Default", "model-task")
    from mlflow.tracking import MlflowClient

    exp = MlflowClient(f"sqlite:///{tmp}/mlflow.db").get_experiment_by_name("matteralign")
    assert exp.tags.get("mlflow.experimentKind") == "custom_model_development"

    mlflow_run(env, "-e", "main", *reg, "-P", "models=good,other", "-P", "tasks=syn", "-P", "n_samples=20",
               "-P", "k=5")
    parents = _runs(tmp, "matteralign", "parent")
    assert len(parents) == 2
    newest = max(parents, key=lambda r: r.info.start_time)
    assert newest.data.params["models"] == "good,other" and newest.data.params["n_samples.syn"] == "20"
    assert "Downloading artifacts" not in out.stderr

    mlflow_run(env, "-e", "leaderboard", "-P", f"out={tmp / 'board'}")
    assert (tmp / "board" / "leaderboard.json").exists()
    assert _runs(tmp, "matteralign", "leaderboard")


@pytest.mark.slow
def test_main_inside_the_benchmark_experiment_keeps_the_project_run(project):
    """With --experiment-name matteralign the project run itself is the parent: no param clash."""
    tmp, env = project
    mlflow_run(env, "--experiment-name", "matteralign", "-P", f"models_file={tmp / 'models.yaml'}",
               "-P", f"tasks_dir={tmp / 'tasks'}", "-P", "models=noisy", "-P", "n_samples=15",
               "-P", f"leaderboard_dir={tmp / 'lb2'}")
    parents = [r for r in _runs(tmp, "matteralign", "parent") if r.data.params.get("n_samples.syn") == "15"]
    assert len(parents) == 1
    p = parents[0]
    assert p.data.params["models"] == "noisy"  # as `mlflow run` logged it
    assert p.data.tags["matteralign.param.models"] == "good,noisy"  # what ran (the reference prepended)


@pytest.mark.slow
def test_reproduce_entry_point_tiny(project):
    tmp, env = project
    mlflow_run(env, "-e", "reproduce", "-P", "size=tiny", "-P", f"out={tmp / 'report'}",
               "-P", f"models_file={tmp / 'models.yaml'}", "-P", f"tasks_dir={tmp / 'tasks'}")
    assert (tmp / "report" / "REPORT.md").exists()
    assert _runs(tmp, "matteralign", "report")
