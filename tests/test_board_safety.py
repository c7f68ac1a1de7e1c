"""Issue 14 items 9 and 11: hostile names cannot poison the published board.

A model named like a spreadsheet formula must not become a live formula in leaderboard.csv (OWASP: text cells
starting with = + - @ TAB CR get a leading single quote; numbers, negative ones included, stay numbers and
leaderboard.json keeps the true strings); a family or model name with `$...$` must be drawn as typed, never
parsed as mathtext (an unknown command used to crash every later board); a leaderboard folder that is a file
is a clear error naming it.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest

from mlflow_fixtures import FakeStore

FORMULA = '=HYPERLINK("http://x","y")'
MATH = r"$\notacommand$"
PNG = b"\x89PNG\r\n\x1a\n"


def _m(cknna: float, idim: float = 6.0) -> dict[str, float]:
    return {"cknna_to_ref": cknna, "cknna_to_ref_ci_low": cknna - 0.05, "cknna_to_ref_ci_high": cknna + 0.05,
            "intrinsic_dimension": idim, "info_imbalance_model_to_ref": 0.3, "info_imbalance_ref_to_model": 0.4,
            "energy_mae": 0.05, "probe_energy_mae": 0.08}


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """Three models and a reference on an id and an ood task; hostile name, family, training data and key."""
    tmp = tmp_path_factory.mktemp("safety")
    store = FakeStore(tmp)
    p = store.parent({"qm9": "ref", "crystals": "ref"})
    specs = [  # key, family, name, training data, qm9 cknna, crystals cknna
        ("ref", "mlip", "Reference", "MPtrj", 1.0, 1.0),
        ("evil", MATH, FORMULA, "@SUM(1+1)*cmd|' /C calc'!A0", -0.25, -0.5),
        ("neg", "mlip", "-2+3", "\tTAB", -0.125, 0.25),
        (f"key{MATH}", "smiles", f"+{MATH}", "plain", 0.5, 0.5),
    ]
    for i, (key, fam, name, data, qm9, cryst) in enumerate(specs):
        store.child(p, key, "qm9", role="id", metrics=_m(qm9), family=fam, name=name, training_data=data,
                    embed=True, seed=i, model_version="-1")
        store.child(p, key, "crystals", role="ood", metrics=_m(cryst, 5.0), family=fam, name=name,
                    training_data=data, embed=True, seed=10 + i, model_version="-1")
    from benchmark.leaderboard.build import write_leaderboard

    out = write_leaderboard(tmp / "leaderboard", tracking_uri=store.uri, experiment=store.experiment,
                            log_to_mlflow=False)
    return store, out


def _csv_rows(out) -> dict[str, dict[str, str]]:
    with out["leaderboard.csv"].open(newline="") as fh:
        return {r["model"]: r for r in csv.DictReader(fh)}


def test_csv_text_cells_are_neutralised_and_numbers_stay_numbers(board):
    rows = _csv_rows(board[1])
    assert rows["evil"]["name"] == "'" + FORMULA
    assert rows["evil"]["training data"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert rows["neg"]["name"] == "'-2+3" and rows["neg"]["training data"] == "'\tTAB"
    assert rows[f"key{MATH}"]["name"] == f"'+{MATH}"
    assert rows["ref"]["name"] == "Reference" and rows["evil"]["family"] == MATH
    header = next(iter(rows.values())).keys()
    mean_col = next(h for h in header if h.startswith("CKNNA to reference, mean"))
    qm9_col = next(h for h in header if h.startswith("CKNNA to reference on qm9"))
    # negative numbers are written as numbers (no quote) and read back to the same value
    assert rows["evil"][qm9_col] == "-0.25" and float(rows["evil"][mean_col]) == pytest.approx(-0.375)
    assert rows["neg"][qm9_col] == "-0.125"
    assert rows["evil"]["version"] == "-1"  # a text cell that is a plain number cannot be a formula
    for row in rows.values():  # no cell a spreadsheet would read as a formula
        for value in row.values():
            assert value[:1] not in ("=", "+", "-", "@", "\t", "\r") or float(value) < 0, value
    frame = pd.read_csv(board[1]["leaderboard.csv"])
    assert frame[qm9_col].dtype == float and (frame[qm9_col] < 0).sum() == 2


def test_json_keeps_the_true_strings(board):
    by = {m["model"]: m for m in json.loads(board[1]["leaderboard.json"].read_text())["models"]}
    assert by["evil"]["name"] == FORMULA and by["evil"]["family"] == MATH
    assert by["neg"]["name"] == "-2+3" and by["neg"]["training_data"] == "\tTAB"
    assert by["evil"]["cknna_to_ref[qm9]"] == pytest.approx(-0.25)


def test_figures_draw_dollar_names_as_typed(board):
    out = board[1]
    for name in ("cknna_qm9", "cknna_family_qm9", "dendrogram_qm9", "alignment_vs_energy", "intrinsic_dimension",
                 "info_imbalance", "id_vs_ood"):
        assert out[f"figures/{name}.png"].read_bytes()[:8] == PNG, name


def test_figures_stay_plain_when_rc_params_were_reset(monkeypatch, tmp_path):
    import matplotlib

    from benchmark.leaderboard import figures as F

    monkeypatch.setitem(matplotlib.rcParams, "text.parse_math", True)  # e.g. a style applied after import
    names = [f"a{MATH}", "b", "c"]
    matrix = pd.DataFrame([[1.0, 0.5, 0.2], [0.5, 1.0, 0.3], [0.2, 0.3, 1.0]], index=names, columns=names)
    figs = [F.matrix_figure(matrix, MATH), F.dendrogram_figure(matrix, f"on {MATH}"),
            F.matrix_figure(F.family_blocks(matrix, {n: MATH for n in names}), MATH)]
    assert [F.save(f, tmp_path / f"{i}.png").read_bytes()[:8] for i, f in enumerate(figs)] == [PNG] * 3


def test_report_figures_draw_dollar_names_as_typed(monkeypatch, tmp_path):
    import matplotlib

    from benchmark.report import reproduce as R

    monkeypatch.setitem(matplotlib.rcParams, "text.parse_math", True)  # not helped by an earlier import

    models = ["ref", f"m{MATH}", "plain"]
    pairs = pd.DataFrame([
        {"task": "qm9", "model_a": a, "model_b": b, "group_a": MATH, "group_b": "3D", "cknna": 0.5,
         "null_mean": 0.01, "null_std": 0.01}
        for i, a in enumerate(models) for b in models[i + 1:]])
    results = pd.DataFrame({"task": ["qm9"] * 3, "model": models, "intrinsic_dimension": [4.0, 5.0, 6.0],
                            "rotational": [True, False, True]})
    table = pd.DataFrame({"model": models, "align_id": [0.5, 0.6, 0.7], "align_ood": [0.4, 0.7, 0.6],
                          "twonn_id": [5.0, 6.0, 7.0], "twonn_ood": [4.0, 6.5, 7.5], "asym_id": [0.1, 0.0, 0.2],
                          "asym_ood": [0.2, 0.1, 0.0], "collapse": [False, True, False]})
    written = [R.alignment_figure(pairs, tmp_path / "a.png"), R.intrinsic_dimension_figure(results, tmp_path / "b.png"),
               R.id_ood_figure(table, tmp_path / "c.png"), R.null_figure(pairs.assign(task=MATH), tmp_path / "d.png")]
    assert [p.read_bytes()[:8] for p in written] == [PNG] * 4


def test_leaderboard_dir_that_is_a_file_names_it(tmp_path):
    from benchmark.errors import ConfigError
    from benchmark.leaderboard.build import write_leaderboard

    store = FakeStore(tmp_path)
    target = tmp_path / "board.txt"
    target.write_text("not a folder")
    for out in (target, target / "sub"):
        with pytest.raises(ConfigError) as exc:
            write_leaderboard(out, tracking_uri=store.uri, experiment=store.experiment)
        assert str(target) in str(exc.value) and "not a folder" in str(exc.value)
    (tmp_path / "lb").mkdir()
    (tmp_path / "lb" / "figures").write_text("")
    with pytest.raises(ConfigError, match=str(tmp_path / "lb" / "figures")):
        write_leaderboard(tmp_path / "lb", tracking_uri=store.uri, experiment=store.experiment)
    assert target.read_text() == "not a folder"
    assert not store.client.search_runs([store.exp_id], "tags.`matteralign.kind` = 'leaderboard'")


def test_cli_leaderboard_out_file_is_one_line_error(tmp_path, capsys):
    from benchmark.cli import main

    store = FakeStore(tmp_path)
    target = tmp_path / "board.txt"
    target.write_text("")
    rc = main(["leaderboard", "--out", str(target), "--tracking-uri", store.uri, "--experiment", store.experiment])
    err = capsys.readouterr().err
    assert rc == 2 and str(target) in err and "Traceback" not in err


def test_csv_cell_rule_unit():
    from benchmark.leaderboard.build import csv_safe

    frame = pd.DataFrame({"t": ["=1", "+x", "-x", "@x", "\tx", "\rx", "ok", "-3.5", "1e-3", "", None],
                          "n": [-1.5, 2.0, np.nan, -0.0, 1.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]})
    safe = csv_safe(frame)
    assert safe["t"].tolist()[:7] == ["'=1", "'+x", "'-x", "'@x", "'\tx", "'\rx", "ok"]
    assert safe["t"].tolist()[7:10] == ["-3.5", "1e-3", ""] and pd.isna(safe["t"].iloc[10])
    assert safe["n"].equals(frame["n"]) and frame["t"].iloc[0] == "=1"  # numbers untouched, input not mutated
