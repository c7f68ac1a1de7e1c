"""Leaderboard from a synthetic MLflow store: ranking, tie-breaks, ID/OOD, collapse, directions, versions, escaping."""

from __future__ import annotations

import csv
import json
import math
import textwrap

import numpy as np
import pandas as pd
import pytest

from mlflow_fixtures import FakeStore

EVIL = "<script>alert('x')</script>"


def _m(cknna: float, idim: float = 10.0, **extra: float) -> dict[str, float]:
    return {"cknna_to_ref": cknna, "cknna_to_ref_ci_low": cknna - 0.05, "cknna_to_ref_ci_high": cknna + 0.05,
            "intrinsic_dimension": idim, "info_imbalance_model_to_ref": 0.3, "info_imbalance_ref_to_model": 0.4,
            "energy_mae": 0.05, "probe_energy_mae": 0.08, **extra}


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """A store with two benchmark versions, stale task versions, repeats, a running run, a skip and a tie."""
    tmp = tmp_path_factory.mktemp("lb")
    store = FakeStore(tmp)
    old = store.parent({"qm9": "ref"}, benchmark_version="0.0.9")
    store.child(old, "old-model", "qm9", metrics=_m(0.95), benchmark_version="0.0.9", reference="ref")
    store.child(old, "b", "qm9", metrics=_m(0.99), benchmark_version="0.0.9", reference="ref")
    p = store.parent({"qm9": "ref", "crystals": "ref"})
    store.child(p, "b", "qm9", metrics=_m(0.10), embed=True)  # superseded by the newer run of the same identity
    store.child(p, "d", "qm9", metrics=_m(0.90), task_version="0", embed=True)  # stale task version
    specs = [  # model, family, name, qm9 (id), crystals (ood), crystals intrinsic dimension
        ("ref", "mlip", "Reference", 1.0, 1.0, 10.0),
        ("a", "mlip", "A", 0.40, 0.70, 4.0),  # OOD alignment up, dimension down: collapse
        ("b", "smiles", "B", 0.60, 0.50, 12.0),
        ("evil", "text", EVIL, 0.30, 0.30, 9.0),
        ("t-beta", "text", "T beta", 0.45, 0.45, 9.0),
        ("t-alpha", "text", "T alpha", 0.45, 0.45, 9.0),
    ]
    for i, (key, fam, name, qm9, cryst, idim) in enumerate(specs):
        store.child(p, key, "qm9", role="id", metrics=_m(qm9), family=fam, name=name, embed=True, seed=i)
        store.child(p, key, "crystals", role="ood", metrics=_m(cryst, idim), family=fam, name=name, embed=True,
                    seed=10 + i)
    store.child(p, "b", "qm9", metrics=_m(0.0), run_status="RUNNING")  # unfinished: ignored
    store.child(p, "c", "qm9", status="skipped", reason="package 'fairchem' is not installed; pip install fairchem")
    from benchmark.leaderboard.build import write_leaderboard

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", store.uri)
        mp.setenv("MATTERALIGN_EXPERIMENT", store.experiment)
        out = write_leaderboard(tmp / "leaderboard")
    return store, out


def _json(board):
    return json.loads(board[1]["leaderboard.json"].read_text())


def test_ranking_tie_breaks_and_versions(board):
    models = _json(board)["models"]
    order = [m["model"] for m in models]
    # a: mean 0.55 (0.4, 0.7); b: 0.55 (0.6, 0.5) -> tie broken by the ID score (b first); t-alpha/t-beta fully
    # tied -> by key; the reference is listed as the reference, after the ranked models, without a rank.
    assert order == ["b", "a", "t-alpha", "t-beta", "evil", "ref"]
    assert [m["rank"] for m in models] == [1, 2, 3, 4, 5, None]
    assert {m["track"] for m in models} == {"all"} and models[-1]["coverage"] == "reference on crystals, qm9"
    by = {m["model"]: m for m in models}
    assert by["b"]["cknna_to_ref[qm9]"] == pytest.approx(0.60)  # the newest run, not 0.10, 0.99 (old) or 0.0
    assert by["ref"]["cknna_to_ref"] is None and by["ref"]["reference_on"] == "crystals,qm9"
    assert "old-model" not in by and "d" not in by
    assert _json(board)["benchmark_version"] == "0.1.0"
    assert _json(board)["tasks"]["qm9"] == {"version": "1", "reference": "ref", "reference_reason": "configured"}


def test_id_ood_scores_and_collapse(board):
    by = {m["model"]: m for m in _json(board)["models"]}
    assert by["a"]["id_score"] == pytest.approx(0.40) and by["a"]["ood_score"] == pytest.approx(0.70)
    assert by["a"]["ood_collapse"] == "yes"
    assert by["b"]["ood_collapse"] == "no"
    assert by["ref"]["ood_collapse"] == "n/a"


def test_not_ranked_lists_skips_and_stale_runs_with_reasons(board):
    rows = {(r["model"], r["task"]): r for r in _json(board)["not_ranked"]}
    assert rows[("c", "qm9")]["status"] == "skipped" and "fairchem" in rows[("c", "qm9")]["reason"]
    assert rows[("d", "qm9")]["status"] == "excluded" and "task version 0" in rows[("d", "qm9")]["reason"]
    assert ("b", "qm9") not in rows


def test_every_metric_header_states_its_direction(board):
    from benchmark.metrics import direction

    data = _json(board)
    for key, col in data["columns"].items():
        if col["better"] is not None:
            assert col["better"] == direction(key.split("[")[0])
            if col["better"] == "none":
                assert "neither higher nor lower is better" in col["header"], col
            else:
                assert f"({col['better']} is better)" in col["header"], col
    with board[1]["leaderboard.csv"].open() as fh:
        header = next(csv.reader(fh))
    assert "ID score (mean CKNNA, id tasks) (higher is better)" in header
    assert "energy MAE (eV/atom) (lower is better)" in header
    md = board[1]["leaderboard.md"].read_text()
    assert "probe energy MAE (eV/atom) (lower is better)" in md
    assert "CKNNA to reference on qm9 (higher is better)" in md


def test_outputs_escape_model_strings_and_are_self_contained(board):
    html = board[1]["index.html"].read_text()
    assert EVIL not in html and html.lower().count("<script") == 1  # only the page's own inlined script
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "http://" not in html and "https://" not in html
    n_figures = sum(1 for k in board[1] if k.startswith("figures/"))
    assert html.count('<img alt="') == n_figures >= 8
    assert html.count("data:image/png;base64,") == n_figures
    md = board[1]["leaderboard.md"].read_text()
    assert EVIL not in md and "&lt;script&gt;" in md


def test_figures_are_pngs_and_logged_to_a_leaderboard_run(board):
    store, out = board
    for name in ("cknna_qm9", "cknna_family_qm9", "dendrogram_qm9", "alignment_vs_energy", "intrinsic_dimension",
                 "info_imbalance", "id_vs_ood"):
        assert out[f"figures/{name}.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = store.client.search_runs([store.exp_id], "tags.`matteralign.kind` = 'leaderboard'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    logged = {a.path for a in store.client.list_artifacts(runs[0].info.run_id, "figures")}
    assert "figures/id_vs_ood.png" in logged and "figures/cknna_qm9.png" in logged


def test_one_leaderboard_run_per_board_version(board, tmp_path):
    """Writing the board again replaces its leaderboard run (the older one is soft-deleted), never piles up."""
    from benchmark.leaderboard.build import write_leaderboard

    store, _ = board
    kind = "tags.`matteralign.kind` = 'leaderboard'"
    before = store.client.search_runs([store.exp_id], kind)
    write_leaderboard(tmp_path / "again", store.uri, store.experiment)
    after = store.client.search_runs([store.exp_id], kind)
    assert len(before) == len(after) == 1 and after[0].info.run_id != before[0].info.run_id
    assert store.client.get_run(before[0].info.run_id).info.lifecycle_stage == "deleted"


def test_cli_writes_the_board_and_reports_a_missing_experiment(tmp_path, capsys):
    from benchmark.cli import main

    store = FakeStore(tmp_path)
    p = store.parent({"qm9": "ref", "crystals": "ref"})
    store.child(p, "solo", "qm9", metrics=_m(0.5))  # ok runs without an embeddings artifact
    store.child(p, "duo", "qm9", metrics=_m(0.6))
    store.child(p, "solo", "crystals", status="failed", reason="RuntimeError: out of memory")
    out = tmp_path / "lb"
    rc = main(["leaderboard", "--out", str(out), "--tracking-uri", store.uri, "--experiment", store.experiment,
               "--no-log"])
    assert rc == 0 and (out / "index.html").is_file()
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert [r["model"] for r in rows] == ["duo", "solo"]
    data = json.loads((out / "leaderboard.json").read_text())
    assert list(data["tasks"]) == ["qm9"]
    assert [(r["model"], r["task"], r["status"]) for r in data["not_ranked"]] == [("solo", "crystals", "failed")]
    assert any(n.startswith("No CKNNA matrix for qm9") for n in data["notes"])
    assert not store.client.search_runs([store.exp_id], "tags.`matteralign.kind` = 'leaderboard'")
    assert main(["leaderboard", "--out", str(out), "--tracking-uri", store.uri, "--experiment", "nope"]) == 2
    assert "no experiment 'nope'" in capsys.readouterr().err


def test_collapse_definition_edges():
    from benchmark.leaderboard.table import collapse

    def rows(c, d, info=None):
        return pd.DataFrame({"cknna_to_ref": [c], "intrinsic_dimension": [d], "info_imbalance_model_to_ref": [info]})

    assert collapse(rows(0.4, 10, 0.3), rows(0.6, 5, 0.3)) == "yes"  # alignment up, dimension down
    assert collapse(rows(0.4, 10, 0.3), rows(0.6, 12, 0.5)) == "yes"  # alignment up, information down
    assert collapse(rows(0.4, 10, 0.3), rows(0.6, 12, 0.2)) == "no"  # alignment up, representation richer
    assert collapse(rows(0.6, 10, 0.3), rows(0.4, 5, 0.5)) == "no"  # alignment down
    assert collapse(rows(0.4, math.nan, math.nan), rows(0.6, math.nan, math.nan)) == "n/a"


def test_rank_is_deterministic_under_float_noise_and_nan():
    from benchmark.leaderboard.table import rank

    table = pd.DataFrame({
        "model": ["z", "y", "x", "w"],
        "cknna_to_ref": [0.5 + 1e-12, 0.5, np.nan, 0.5],
        "id_score": [0.5, 0.5, np.nan, 0.5],
        "ood_score": [0.5, 0.5, np.nan, 0.5],
        "probe_energy_mae": [0.1, 0.1, 0.0, 0.05],
    })
    ranked = rank(table)
    assert list(ranked["model"]) == ["w", "y", "z", "x"]  # lower probe MAE, then key; NaN alignment last
    assert list(rank(table.iloc[::-1].reset_index(drop=True))["model"]) == ["w", "y", "z", "x"]


MODELS_YAML = """
reference: {{model: ref}}
models:
  - {{key: ref, name: Ref, family: f, modality: atoms, domain: materials, adapter: "benchmark.models.base:ModelAdapter"}}
  - {{key: new, name: New, family: f, modality: atoms, domain: materials, adapter: "{adapter}"{extra}}}
"""


@pytest.mark.parametrize(
    ("adapter", "extra", "key", "message"),
    [
        ("benchmark.models.base:ModelAdapter", "", "nope", "model 'nope' is not in"),
        ("not_a_package.mod:Adapter", "", "new", "cannot import module 'not_a_package.mod'"),
        ("benchmark.errors:ConfigError", "", "new", "is not a subclass of benchmark.models.base.ModelAdapter"),
        ("benchmark.models.base:ModelAdapter", ", colour: red", "new", "unknown key"),
    ],
)
def test_submit_rejects_invalid_entries(tmp_path, capsys, adapter, extra, key, message):
    from benchmark.cli import main

    path = tmp_path / "models.yaml"
    path.write_text(MODELS_YAML.format(adapter=adapter, extra=extra))
    assert main(["submit", key, "--models-file", str(path), "--tracking-uri", f"sqlite:///{tmp_path}/x.db"]) == 2
    assert message in capsys.readouterr().err


def test_submit_runs_only_the_new_model_and_reports_reproducibility(tmp_path, monkeypatch, capsys):
    """Resubmission: only the new model runs, on the board's tasks; changed numbers are flagged."""
    import types

    import benchmark.pipeline.run as pipeline
    from benchmark.cli import main

    store = FakeStore(tmp_path)
    p = store.parent({"qm9": "ref"})
    for key, c in (("ref", 1.0), ("new", 0.5), ("gone", 0.4)):
        store.child(p, key, "qm9", metrics=_m(c))
    path = tmp_path / "models.yaml"
    path.write_text(MODELS_YAML.format(adapter="benchmark.models.base:ModelAdapter", extra=""))
    seen = {}

    def fake_run(cfg):
        seen["models"], seen["tasks"] = cfg.models, cfg.tasks
        parent = store.parent({"qm9": "ref"})
        run_id = store.child(parent, "new", "qm9", metrics=_m(0.5, idim=11.0))
        result = types.SimpleNamespace(model="new", task="qm9", status="ok", reason="", run_id=run_id)
        return types.SimpleNamespace(parent_run_id=parent, results=[result])

    monkeypatch.setattr(pipeline, "run_benchmark", fake_run)
    argv = ["submit", "new", "--models-file", str(path), "--tracking-uri", store.uri,
            "--experiment", store.experiment, "--out", str(tmp_path / "lb")]
    assert main(argv) == 2 and "no frozen board" in capsys.readouterr().err  # a submission needs a board
    board = tmp_path / "board.yaml"
    board.write_text(textwrap.dedent("""\
        version: 1
        benchmark_version: 0.1.0
        k: 10
        k_reported: [10, 25]
        tasks:
          qm9: {version: "1", n_samples: 30, seed: 0, ids_digest: ids-1,
                reference: {model: ref, checkpoint_digest: ckpt-1, cache_key: k1, reason: configured}}
        tracks: {molecules: [qm9]}
    """))
    rc = main([*argv, "--board", str(board)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert seen["models"] == ["new"] and seen["tasks"] == ["qm9"]  # the reference and other models do not rerun
    assert "qm9: DIFFERS from run" in out and "intrinsic_dimension 10 -> 11" in out


def test_rank_intervals_rank_each_joint_replicate():
    """Replicate b of every model is one resample: a model better on every replicate has a point interval;
    models that swap places across replicates share an interval; misaligned replicates give none."""
    from benchmark.leaderboard.table import rank_intervals

    rng = np.random.default_rng(0)
    noise = rng.normal(size=200)
    reps = {"t1": {"a": 0.8 + 0.01 * noise, "b": 0.5 + 0.01 * noise, "c": 0.5 + 0.05 * rng.normal(size=200)},
            "t2": {"a": 0.7 + 0.01 * noise, "b": 0.4 + 0.01 * noise, "c": 0.4 + 0.05 * rng.normal(size=200)}}
    iv = rank_intervals(reps, ["a", "b", "c"])
    assert iv["a"] == (1, 1) and iv["b"][0] == 2 and iv["c"][0] == 2 and iv["b"][1] == iv["c"][1] == 3
    assert rank_intervals(reps, ["a", "b", "missing"]) == {}
    reps["t2"]["c"] = reps["t2"]["c"][:100]
    assert rank_intervals(reps, ["a", "b", "c"]) == {}
    low_is_good = rank_intervals({"t": {"a": np.full(5, 0.1), "b": np.full(5, 0.9)}}, ["a", "b"], higher=False)
    assert low_is_good == {"a": (1, 1), "b": (2, 2)}
