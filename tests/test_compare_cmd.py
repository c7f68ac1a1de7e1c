"""`matteralign compare`: matrices from the runs' embeddings artifacts, logged to a compare run; id checks."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from mlflow_fixtures import FakeStore


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = FakeStore(tmp_path_factory.mktemp("compare"))
    p = s.parent({"qm9": "ref", "nci_large": "ref"})
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 6))
    ids = [f"q{i}" for i in range(40)]
    feats = {"ref": base, "near": base + 0.01 * rng.normal(size=base.shape), "far": rng.normal(size=(40, 6))}
    for key, x in feats.items():
        s.child(p, key, "qm9", features=x, ids=ids)
    s.child(p, "ref", "nci_large", features=base, ids=ids)
    s.child(p, "near", "nci_large", features=base, ids=ids[::-1])  # same ids, other order
    return s


def _compare(store, capsys, *args: str) -> tuple[int, str]:
    from benchmark.cli import main

    rc = main(["compare", "--tracking-uri", store.uri, "--experiment", store.experiment, *args])
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_compare_logs_matrices_and_figures(store, capsys):
    rc, out = _compare(store, capsys, "--task", "qm9", "--k", "5")
    assert rc == 0, out
    first_pair = out.splitlines()[2].split()
    assert sorted(first_pair[:2]) == ["near", "ref"]  # the most similar pair is printed first
    runs = store.client.search_runs([store.exp_id], "tags.`matteralign.kind` = 'compare'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["matteralign.task"] == "qm9"
    assert run.data.params["k"] == "5" and run.data.params["models"] == "far,near,ref"
    paths = {a.path for a in store.client.list_artifacts(run.info.run_id, "matrices")}
    assert paths == {"matrices/cknna.csv", "matrices/mutual_knn.csv", "matrices/cka.csv"}
    figures = {a.path for a in store.client.list_artifacts(run.info.run_id, "figures")}
    assert figures == {"figures/cknna_qm9.png", "figures/dendrogram_qm9.png"}
    import mlflow

    csv = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/matrices/cknna.csv")
    matrix = pd.read_csv(io.StringIO(csv), index_col=0)
    assert sorted(matrix.index) == sorted(matrix.columns) == ["far", "near", "ref"]
    assert matrix.loc["near", "ref"] > matrix.loc["far", "ref"]


def test_ids_in_another_order_cannot_be_compared(store, capsys):
    rc, out = _compare(store, capsys, "--task", "nci_large")
    assert rc == 2 and "in a different order" in out


def test_unknown_task_needs_two_models(store, capsys):
    rc, out = _compare(store, capsys, "--task", "crystals")
    assert rc == 2 and "compare needs at least 2" in out


def test_top_pairs_are_sorted_with_deterministic_ties():
    from benchmark.leaderboard.artifacts import check_same_ids
    from benchmark.metrics.pairwise import top_pairs

    m = pd.DataFrame([[1, 0.5, 0.5], [0.5, 1, 0.9], [0.5, 0.9, 1]], index=list("abc"), columns=list("abc"))
    assert top_pairs(m, 3) == [("b", "c", 0.9), ("a", "b", 0.5), ("a", "c", 0.5)]
    check_same_ids({"x": [1, 2], "y": [1, 2]}, "t")
    from benchmark.errors import DataError

    with pytest.raises(DataError, match="different sample ids"):
        check_same_ids({"x": [1, 2], "y": [1, 3]}, "t")
