"""Per-model containment (issue 14, item 7): any exception from an adapter or from one model's metrics costs
only that (model, task), which is marked failed with the exception type and message naming the model."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pytest

from benchmark.pipeline import align
from benchmark.pipeline.run import RunConfig, run_benchmark

BAD_ADAPTERS = '''
from typing import Sequence
import numpy as np
from benchmark.models.base import EmbedOutput, ModelAdapter
from tests.fake_models import FakeAtomsAdapter

NOT_A_CLASS = 42


class KeyErrorAdapter(ModelAdapter):
    modality = "atoms"

    def _load(self):
        pass

    def embed(self, samples):
        return {}["features"]


class AbstractAdapter(ModelAdapter):
    modality = "atoms"


class ZeroWidthAdapter(ModelAdapter):
    modality = "atoms"

    def _load(self):
        pass

    def embed(self, samples):
        return EmbedOutput(np.zeros((len(samples), 0)))


class InfiniteEnergyAdapter(FakeAtomsAdapter):
    def embed(self, samples):
        out = super().embed(samples)
        out.energies = np.full(len(samples), np.inf)
        return out
'''

ENTRY = "  - {{key: {key}, name: {key}, family: fake, modality: atoms, domain: molecules, default: true, {extra}adapter: \"{adapter}\"}}\n"

BROKEN = {
    "keyerror": ("bad_adapters_k:KeyErrorAdapter", "KeyError"),
    "not-a-class": ("bad_adapters_k:NOT_A_CLASS", ""),
    "abstract": ("bad_adapters_k:AbstractAdapter", ""),
    "syntax": ("syntax_error_k:Adapter", "SyntaxError"),
    "zero-width": ("bad_adapters_k:ZeroWidthAdapter", "zero-width"),
    "inf-energy": ("bad_adapters_k:InfiniteEnergyAdapter", "non-finite energies"),
}

TASK = """
name: syn_a
version: "1"
description: synthetic
loader: tests.fake_tasks:load
options: {labelled: true}
source: generated
level_of_theory: composition energies + noise
n_samples: 40
seed: 1
roles: {molecules: id, materials: ood}
"""


@pytest.fixture
def registry(tmp_path: Path, monkeypatch, make_registry) -> tuple[Path, Path]:
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "bad_adapters_k.py").write_text(BAD_ADAPTERS)
    (mods / "syntax_error_k.py").write_text("class Adapter(:\n    pass\n")
    monkeypatch.syspath_prepend(str(mods))
    text = "reference:\n  model: good\n  fallback: auto\nmodels:\n"
    text += ENTRY.format(key="good", extra="energy_head: true, options: {dim: 12, seed: 1, energy_noise: 0.001}, ",
                         adapter="tests.fake_models:FakeAtomsAdapter")
    text += ENTRY.format(key="other", extra="options: {dim: 7, seed: 3, noise: 0.5}, ",
                         adapter="tests.fake_models:FakeAtomsAdapter")
    for key, (adapter, _) in BROKEN.items():
        extra = "energy_head: true, options: {dim: 12, seed: 2, energy_noise: 0.01}, " if key == "inf-energy" else ""
        text += ENTRY.format(key=key, extra=extra, adapter=adapter)
    yield make_registry(text, {"syn_a": TASK})
    for name in ("bad_adapters_k", "syntax_error_k"):
        sys.modules.pop(name, None)


def _config(registry, tmp_path) -> RunConfig:
    models, tasks = registry
    return RunConfig(models_file=models, tasks_dir=tasks, leaderboard_dir=None, progress=False,
                     tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", n_boot=10, n_perm=3,
                     cache_dir=tmp_path / "cache")


def _children(tmp_path: Path, parent_id: str) -> dict[str, dict]:
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    runs = mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    return {r["tags.matteralign.model"]: r for _, r in runs.iterrows()}


@pytest.mark.slow  # one run of eight models: ~12 s on the loaded 2-core box
def test_every_broken_adapter_costs_only_its_model(registry, tmp_path, monkeypatch, capsys):
    real = align.model_geometry

    def crashing_geometry(features, cache_key, k, k_euc, knn_dir, **kw):
        if np.asarray(features).shape[1] == 7:  # only "other" is 7 wide
            raise TypeError("simulated metric bug")
        return real(features, cache_key, k, k_euc, knn_dir, **kw)

    monkeypatch.setattr(align, "model_geometry", crashing_geometry)
    summary = run_benchmark(_config(registry, tmp_path))
    err = capsys.readouterr().err
    by_model = {r.model: r for r in summary.results}
    assert by_model["good"].status == "ok"
    assert summary.references["syn_a"].model == "good"
    for key, (_, word) in BROKEN.items():
        r = by_model[key]
        assert r.status == "failed", (key, r.status, r.reason)
        assert word in r.reason, (key, r.reason)
        assert f"[task syn_a] {key}: failed: {r.reason}" in err
    assert "KeyError: 'features'" == by_model["keyerror"].reason
    other = by_model["other"]
    assert other.status == "failed" and other.reason.startswith("TypeError in ")
    assert "of model 'other': simulated metric bug" in other.reason
    assert f"[task syn_a] other: failed in stage 2: {other.reason}" in err
    runs = _children(tmp_path, summary.parent_run_id)
    assert runs["other"]["tags.matteralign.status"] == "failed"
    assert runs["zero-width"]["tags.matteralign.status"] == "failed"
    assert summary.exit_code() == 1


# --- issue 14, item 1: a crashed run never reaches the board or the gate; its dead parent is marked ---------

THREE = """
reference:
  model: ref
  fallback: none
models:
  - {key: ref, name: Ref, family: fake, modality: atoms, domain: molecules, default: true, energy_head: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 1, energy_noise: 0.001}}
  - {key: a, name: A, family: fake, modality: atoms, domain: molecules, default: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 2, noise: 0.3}}
  - {key: b, name: B, family: fake, modality: atoms, domain: molecules, default: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 3, noise: 0.3}}
"""


def _dead_pid() -> int:
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.slow  # three pipeline runs: ~11 s on the loaded 2-core box
def test_a_crashed_run_never_reaches_the_board_or_the_gate(tmp_path, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    from benchmark.cli import main as cli_main
    from benchmark.leaderboard.collect import load_child_runs, select_board
    from benchmark.pipeline import run as run_mod
    from benchmark.tracking import schema as S

    models = tmp_path / "models.yaml"
    models.write_text(textwrap.dedent(THREE))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "syn_a.yaml").write_text(textwrap.dedent(TASK))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = RunConfig(models_file=models, tasks_dir=tasks, leaderboard_dir=None, progress=False, tracking_uri=uri,
                    n_boot=10, n_perm=3, cache_dir=tmp_path / "cache")
    first = run_benchmark(cfg)
    good = {r.model: r.metrics["cknna_to_ref"] for r in first.results if r.model != "ref"}

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash in stage 2")

    monkeypatch.setattr(run_mod, "align_task", crash)
    with pytest.raises(RuntimeError):
        run_benchmark(cfg)
    monkeypatch.undo()
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("matteralign")
    parents = client.search_runs([exp.experiment_id], S.kind_filter(S.Kind.PARENT), order_by=["start_time DESC"])
    crashed = parents[0].info.run_id
    assert crashed != first.parent_run_id
    # as a kill -9 leaves it: RUNNING, owned by a process that is gone
    client.update_run(crashed, status="RUNNING")
    client.set_tag(crashed, S.PID, str(_dead_pid()))

    frame = load_child_runs(uri, "matteralign")
    stale = frame[frame["parent_run_id"] == crashed]
    assert len(stale) == 3 and set(stale["complete"]) == {"false"}
    assert "cknna_to_ref" not in stale.columns or stale["cknna_to_ref"].isna().all()
    board = select_board(frame)
    assert board.references["syn_a"] == "ref"
    ranked = dict(zip(board.results["model"], board.results["cknna_to_ref"]))
    assert ranked["a"] == pytest.approx(good["a"]) and ranked["b"] == pytest.approx(good["b"])
    assert any("incomplete" in n and "a/syn_a" in n for n in board.notes)

    capsys.readouterr()
    rc = cli_main(["check", "--candidate", "a@1", "--baseline", "b@1", "--max-drop", "1.0",
                   "--tracking-uri", uri, "--experiment", "matteralign"])
    out = capsys.readouterr()
    assert rc == 0, out
    assert "incomplete" in out.err

    # a live process's RUNNING parent is never touched; the dead one is marked KILLED by the next run
    live = client.create_run(exp.experiment_id, tags={S.KIND: S.Kind.PARENT, S.HOST: __import__("socket").gethostname(),
                                                      S.PID: str(__import__("os").getppid())})
    third = run_benchmark(cfg)
    assert third.exit_code() == 0
    assert client.get_run(crashed).info.status == "KILLED"
    assert client.get_run(live.info.run_id).info.status == "RUNNING"
    assert client.get_run(first.parent_run_id).info.status == "FINISHED"
    assert "KILLED" in capsys.readouterr().err


# --- issue 14, item 5: options that silently changed what is measured are errors ------------------------


@pytest.mark.parametrize("argv, message", [
    (["--k", "50"], "--k 50 is larger than n - 1 = 39 on task 'syn_a' (n = 40"),
    (["--n-boot", "0"], "pass --no-ci"),
    (["--no-ci", "--n-boot", "5"], "give one or the other"),
    (["--models", "good,good"], "'good' more than once"),
])
def test_options_that_change_the_measurement_silently_are_errors(registry, tmp_path, capsys, argv, message):
    from benchmark.cli import main as cli_main

    models, tasks = registry
    rc = cli_main(["run", "--models-file", str(models), "--tasks-dir", str(tasks), "--no-leaderboard",
                   "--no-progress", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
                   "--cache-dir", str(tmp_path / "cache"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert "Traceback" not in err
    if "--k" not in argv:
        assert not (tmp_path / "cache").exists()  # refused before any work


def test_a_no_ci_run_is_marked_and_the_gate_refuses_it(tmp_path, capsys):
    from benchmark.cli import main as cli_main

    models = tmp_path / "models.yaml"
    models.write_text(textwrap.dedent(THREE).replace("{key: b, name: B,", "{key: b, name: B, version: '2',"))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "syn_a.yaml").write_text(textwrap.dedent(TASK))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    common = ["--models-file", str(models), "--tasks-dir", str(tasks), "--no-leaderboard", "--no-progress",
              "--tracking-uri", uri, "--cache-dir", str(tmp_path / "cache"), "--n-perm", "3"]
    assert cli_main(["run", *common, "--n-boot", "10", "--models", "a"]) == 0
    assert cli_main(["run", *common, "--no-ci", "--models", "b"]) == 0
    capsys.readouterr()
    check = ["check", "--tracking-uri", uri, "--experiment", "matteralign", "--max-drop", "1.0"]
    assert cli_main([*check, "--candidate", "a@1", "--baseline", "a@1"]) == 2
    assert "same model version (a@1)" in capsys.readouterr().err
    assert cli_main([*check, "--candidate", "b@2", "--baseline", "a@1"]) == 2
    assert "has no confidence interval" in capsys.readouterr().err
    assert cli_main([*check, "--candidate", "a@1", "--baseline", "b@2"]) == 0


# --- issue 14, item 6: exit 2 with one clear line when nothing usable can run ---------------------------


def _run_cli(registry, tmp_path, capsys, *argv: str) -> tuple[int, str]:
    from benchmark.cli import main as cli_main

    models, tasks = registry
    rc = cli_main(["run", "--models-file", str(models), "--tasks-dir", str(tasks), "--no-leaderboard",
                   "--no-progress", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--n-boot", "5",
                   "--n-perm", "2", *argv])
    return rc, capsys.readouterr().err


def test_a_cache_dir_that_is_a_file_exits_2_naming_it(registry, tmp_path, capsys):
    blocker = tmp_path / "cache-file"
    blocker.write_text("not a folder")
    rc, err = _run_cli(registry, tmp_path, capsys, "--cache-dir", str(blocker), "--models", "good")
    assert rc == 2 and f"embedding cache {blocker} is a file" in err and "Traceback" not in err


def test_a_read_only_cache_exits_2_naming_it(registry, tmp_path, capsys):
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.geteuid() == 0:  # root ignores folder permissions; /sys is a read-only file system even for root
        ro = Path("/sys/matteralign-read-only-cache")
    try:
        rc, err = _run_cli(registry, tmp_path, capsys, "--cache-dir", str(ro), "--models", "good")
    finally:
        (tmp_path / "ro").chmod(0o700)
    assert rc == 2 and f"embedding cache {ro} is not writable" in err and "Traceback" not in err


def test_no_reference_anywhere_exits_2_with_one_line(registry, tmp_path, capsys):
    models, _ = registry
    models.write_text(models.read_text().replace("model: good\n  fallback: auto", "model: keyerror\n  fallback: none"))
    rc, err = _run_cli(registry, tmp_path, capsys, "--cache-dir", str(tmp_path / "cache"), "--models", "good")
    lines = [line for line in err.splitlines() if line.startswith("matteralign run:")]
    assert rc == 2 and len(lines) == 1 and "no task has a reference" in lines[0], err
    assert "keyerror" in lines[0]
