"""A frozen board: one pinned reference per task, board results vs exploration runs, submit and check on it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark.cli import main as cli_main
from benchmark.pipeline.board import freeze_board
from benchmark.pipeline.run import RunConfig, run_benchmark
from benchmark.registry.loader import load_board

MODELS = """
reference:
  model: ref
  fallback: none
models:
  - {key: ref, name: Reference, family: fake, modality: atoms, domain: molecules, default: true, energy_head: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 1, energy_noise: 0.001}}
  - {key: close, name: Close, family: fake, modality: atoms, domain: molecules, default: true, energy_head: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 2, noise: 0.2, energy_noise: 0.01}}
  - {key: far, name: Far, family: fake, modality: atoms, domain: molecules, default: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 3, noise: 1.5}}
  - {key: mlip, name: MLIP, family: fake, modality: atoms, domain: molecules, version: "1",
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 4, noise: 0.3}}
"""

TASK = """
name: {name}
version: "1"
description: synthetic
loader: tests.fake_tasks:load
options: {{labelled: true}}
source: generated
level_of_theory: composition energies + noise
n_samples: 50
seed: {seed}
track: {track}
roles: {{molecules: id, materials: ood}}
"""


@pytest.fixture
def registry(make_registry):
    return make_registry(MODELS, {"syn_a": TASK.format(name="syn_a", seed=1, track="one"),
                                  "syn_b": TASK.format(name="syn_b", seed=2, track="one")})


def cfg(registry, tmp_path, **kw) -> RunConfig:
    models, tasks = registry
    kw.setdefault("leaderboard_dir", None)
    return RunConfig(models_file=models, tasks_dir=tasks, progress=False, n_boot=30, n_perm=3,
                     tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", **kw)


@pytest.fixture
def frozen(registry, tmp_path):
    """A full run without a board, then board v1 frozen from it."""
    full = run_benchmark(cfg(registry, tmp_path, board_file="none"))
    spec, path = freeze_board(full.parent_run_id, f"sqlite:///{tmp_path}/mlflow.db", out=tmp_path / "board.yaml")
    return full, spec, path


def by(summary):
    return {(r.model, r.task): r for r in summary.results}


def test_freeze_pins_the_reference_sample_and_k(frozen, tmp_path):
    full, spec, path = frozen
    assert load_board(path) == spec and spec.id == "matteralign@1" and spec.k == 10 and 25 in spec.k_reported
    assert spec.tracks == {"one": ["syn_a", "syn_b"]}
    for task, t in spec.tasks.items():
        ref = by(full)[("ref", task)]
        assert t.reference.model == "ref" and t.reference.cache_key == ref.cache_key and t.n_samples == 50
    with pytest.raises(Exception, match="never changed"):
        freeze_board(full.parent_run_id, f"sqlite:///{tmp_path}/mlflow.db", out=path, version=1)


def test_a_candidate_run_alone_scores_as_in_the_full_run(frozen, registry, tmp_path):
    full, spec, path = frozen
    alone = run_benchmark(cfg(registry, tmp_path, models=["far"], board_file=path))
    for task in ("syn_a", "syn_b"):
        a, f = by(alone)[("far", task)], by(full)[("far", task)]
        assert alone.references[task].model == "ref" and "pinned by board matteralign@1" in alone.references[task].reason
        assert a.board == spec.id and a.exploration == ""
        for name in ("cknna_to_ref", "cknna_to_ref_k25", "mutual_knn_to_ref", "cka_to_ref", "knn_tied_fraction"):
            assert a.metrics[name] == pytest.approx(f.metrics[name], abs=1e-9), name
        assert a.replicates is not None and np.array_equal(a.replicates, f.replicates)
    assert by(alone)[("ref", "syn_a")].run_id is None  # the pinned reference is used, not logged again


def test_the_pinned_reference_is_recomputed_or_read_back_never_replaced(frozen, registry, tmp_path, monkeypatch):
    full, spec, path = frozen
    models, tasks = registry
    text = models.read_text().replace('adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 1,',
                                      'adapter: "tests.fake_models:MissingWeightsAdapter", checkpoint: /no/w.pt, '
                                      'options: {dim: 12, seed: 1,')
    gone = tmp_path / "gone.yaml"
    gone.write_text(text)
    # the weights are gone and so is the cache: the board run's artifact still holds the pinned embeddings
    monkeypatch.setenv("MATTERALIGN_CACHE", str(tmp_path / "empty-cache"))
    alone = run_benchmark(cfg((gone, tasks), tmp_path, models=["close"], board_file=path))
    for task in ("syn_a", "syn_b"):
        assert alone.references[task].model == "ref" and "board run" in alone.references[task].reason
        assert by(alone)[("close", task)].metrics["cknna_to_ref"] == pytest.approx(
            by(full)[("close", task)].metrics["cknna_to_ref"], abs=1e-9)


def test_another_sample_size_is_an_exploration_run_never_on_the_board(frozen, registry, tmp_path):
    full, spec, path = frozen
    small = run_benchmark(cfg(registry, tmp_path, models=["close"], n_samples=30, board_file=path,
                              leaderboard_dir=tmp_path / "lb"))
    r = by(small)[("close", "syn_a")]
    assert r.board == spec.id and "sample of 30 structures" in r.exploration
    assert small.references["syn_a"].model == "ref"  # explored against the same pinned model
    board = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())
    assert board["board"]["id"] == spec.id
    rows = {(p["model"], p["task"]): p for p in board["per_task"]}
    assert int(rows[("close", "syn_a")]["n_samples"]) == 50
    assert rows[("close", "syn_a")]["cknna_to_ref"] == pytest.approx(by(full)[("close", "syn_a")].metrics["cknna_to_ref"])
    assert any("exploration run" in n for n in board["notes"])


def test_ranking_has_coverage_rank_intervals_and_a_labelled_reference(frozen, registry, tmp_path):
    full, spec, path = frozen
    from benchmark.leaderboard.build import write_leaderboard

    out = write_leaderboard(tmp_path / "lb", f"sqlite:///{tmp_path}/mlflow.db", board_file=path)
    data = json.loads(out["leaderboard.json"].read_text())
    rows = {m["model"]: m for m in data["models"]}
    assert rows["close"]["rank"] == 1 and rows["far"]["rank"] == 2
    assert rows["close"]["rank_low"] <= 1 <= rows["close"]["rank_high"] and rows["close"]["tied"] in ("yes", "no")
    assert rows["ref"]["rank"] is None and rows["ref"]["coverage"] == "reference on syn_a, syn_b"
    assert "mlip" not in rows  # never run
    assert data["tracks"]["one"]["ranked"] == 2 and data["tracks"]["one"]["rank_intervals"]


def test_a_model_missing_a_task_is_listed_with_its_coverage_not_ranked(frozen, registry, tmp_path):
    full, spec, path = frozen
    from benchmark.leaderboard.build import write_leaderboard

    run_benchmark(cfg(registry, tmp_path, models=["mlip"], tasks=["syn_a"], board_file=path))
    out = write_leaderboard(tmp_path / "lb", f"sqlite:///{tmp_path}/mlflow.db", board_file=path)
    rows = {m["model"]: m for m in json.loads(out["leaderboard.json"].read_text())["models"]}
    assert rows["mlip"]["rank"] is None and rows["mlip"]["cknna_to_ref"] is None
    assert rows["mlip"]["coverage"].startswith("1/2 tasks; missing syn_b")


def _check(tmp_path, capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    rc = cli_main(["check", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--max-drop", "0.02", *argv])
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_check_refuses_the_reference_and_fails_a_noise_v2(frozen, registry, tmp_path, capsys):
    full, spec, path = frozen
    models, tasks = registry
    run_benchmark(cfg(registry, tmp_path, models=["mlip"], board_file=path))
    rc, out = _check(tmp_path, capsys, "--candidate", "ref@1", "--baseline", "mlip@1")
    assert rc == 2 and "is the reference of" in out
    v2 = tmp_path / "v2.yaml"
    v2.write_text(models.read_text().replace('version: "1",\n     adapter: "tests.fake_models:FakeAtomsAdapter", '
                                             'options: {dim: 12, seed: 4, noise: 0.3}',
                                             'version: "2",\n     adapter: "tests.fake_models:FakeAtomsAdapter", '
                                             'options: {dim: 12, seed: 4, noise: 50.0}'))
    assert 'version: "2"' in v2.read_text()
    run_benchmark(cfg((v2, tasks), tmp_path, models=["mlip"], board_file=path))
    rc, out = _check(tmp_path, capsys, "--candidate", "mlip@2", "--baseline", "mlip@1")
    assert rc == 1 and "REGRESSION" in out, out
    # alone and without a board, a model is its own reference: the gate cannot pass it
    run_benchmark(cfg((v2, tasks), tmp_path, models=["mlip"], board_file="none", reference="mlip"))
    rc, out = _check(tmp_path, capsys, "--candidate", "mlip@2", "--baseline", "mlip@1")
    assert rc == 2, out


def test_submit_changes_only_the_submitted_models_rows(frozen, registry, tmp_path, capsys):
    full, spec, path = frozen
    models, tasks = registry
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    from benchmark.leaderboard.build import write_leaderboard

    lb = tmp_path / "lb"
    before = json.loads(write_leaderboard(lb, uri, board_file=path)["leaderboard.json"].read_text())
    rc = cli_main(["submit", "mlip", "--models-file", str(models), "--tasks-dir", str(tasks), "--tracking-uri", uri,
                   "--board", str(path), "--out", str(lb)])
    assert rc == 0, capsys.readouterr()
    after = json.loads((lb / "leaderboard.json").read_text())

    def rows(data, key):
        return {json.dumps({k: v for k, v in r.items() if k not in ("rank", "rank_low", "rank_high", "tied",
                                                                      "tied_with")}, sort_keys=True)
                for r in data[key] if r["model"] != "mlip"}

    assert rows(after, "per_task") == rows(before, "per_task")  # byte-identical, run ids included
    assert rows(after, "models") == rows(before, "models")
    assert {r["model"] for r in after["per_task"]} - {r["model"] for r in before["per_task"]} == {"mlip"}


def test_the_board_sample_with_other_structures_is_an_exploration_naming_the_digests(frozen, registry, tmp_path):
    """Same sample ids, other coordinates (e.g. another RDKit embedding the conformers): not a board result,
    and the reason names both data digests and the fix, instead of only a changed reference cache key."""
    full, spec, path = frozen
    other = tmp_path / "other-structures.yaml"
    other.write_text(path.read_text().replace(spec.tasks["syn_a"].data_digest, "f" * 64))
    run = run_benchmark(cfg(registry, tmp_path, models=["close"], board_file=other))
    r = by(run)[("close", "syn_a")]
    assert r.board == spec.id and "with other structures" in r.exploration
    assert f"data digest {spec.tasks['syn_a'].data_digest[:12]}" in r.exploration and "ffffffffffff" in r.exploration
    assert "./install.sh" in r.exploration
    assert not by(run)[("close", "syn_b")].exploration
