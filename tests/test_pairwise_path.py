"""The one pairwise path: a run with a sparse fingerprint-like model, then the leaderboard matrices and
`matteralign compare` on it; pairwise CKNNA(model, reference) equals the child run's cknna_to_ref, and
dcor_to_ref is logged, ranked on the board and equals the `dcor` package."""

from __future__ import annotations

import io
import json
import textwrap
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pytest

from benchmark.models.base import EmbedOutput, ModelAdapter
from benchmark.structures import Sample


class SparseBitsAdapter(ModelAdapter):
    """A fingerprint-like embedding: 512 bits, ~8 set per structure (chosen by composition and size)."""

    modality = "atoms"
    feature_source = "hashed sparse bits (test fixture)"

    def _load(self) -> None:
        return None

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        X = np.zeros((len(samples), 512))
        for i, s in enumerate(samples):
            counts = [int(np.sum(s.numbers == z)) for z in (1, 6, 7, 8)]
            rng = np.random.default_rng(zlib.crc32(repr(counts).encode()))
            X[i, rng.choice(512, size=6, replace=False)] = 1.0
            X[i, zlib.crc32(s.id.encode()) % 512] = 1.0
            X[i, 100 + s.n_atoms] = 1.0
        return EmbedOutput(X)


MODELS = """
reference:
  model: good
  fallback: auto
models:
  - {key: good, name: Good, family: fake, modality: atoms, domain: molecules, default: true, energy_head: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 1, energy_noise: 0.001}}
  - {key: noisy, name: Noisy, family: fake, modality: atoms, domain: molecules, default: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 2, noise: 1.0}}
  - {key: bits, name: Sparse bits, family: fingerprint, modality: atoms, domain: molecules, default: true,
     adapter: "tests.test_pairwise_path:SparseBitsAdapter"}
"""

TASK = """
name: syn
version: "1"
description: synthetic
loader: tests.fake_tasks:load
source: generated
level_of_theory: composition energies + noise
n_samples: 50
seed: 3
roles: {molecules: id}
"""


@pytest.fixture(scope="module")
def board(tmp_path_factory, monkeypatch_module):
    from benchmark.pipeline.run import run_benchmark
    from benchmark.pipeline.types import RunConfig

    tmp = tmp_path_factory.mktemp("pairwise")
    monkeypatch_module.setenv("MATTERALIGN_CACHE", str(tmp / "cache"))
    models = tmp / "models.yaml"
    models.write_text(textwrap.dedent(MODELS))
    tasks = tmp / "tasks"
    tasks.mkdir()
    (tasks / "syn.yaml").write_text(TASK)
    uri = f"sqlite:///{tmp}/mlflow.db"
    summary = run_benchmark(RunConfig(models_file=models, tasks_dir=tasks, leaderboard_dir=tmp / "lb",
                                      progress=False, tracking_uri=uri, experiment="pairwise", n_boot=10,
                                      n_perm=3, cache_dir=tmp / "cache", k=5))
    return tmp, uri, summary


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_sparse_model_is_aligned_and_on_the_board_matrices(board):
    tmp, _, summary = board
    by = {r.model: r for r in summary.results}
    assert by["bits"].status == "ok"
    assert "cknna_to_ref" in by["bits"].metrics
    assert "sparse" in by["bits"].errors.get("warning.prepare", "")
    notes = json.loads((tmp / "lb" / "leaderboard.json").read_text())["notes"]
    assert not [n for n in notes if n.startswith("No CKNNA matrix")], notes
    assert (tmp / "lb" / "figures" / "cknna_syn.png").exists()
    assert (tmp / "lb" / "figures" / "dendrogram_syn.png").exists()


def test_compare_with_a_sparse_model_and_pairwise_equals_cknna_to_ref(board, capsys):
    import mlflow

    from benchmark.cli import main

    tmp, uri, summary = board
    rc = main(["compare", "--task", "syn", "--k", "5", "--tracking-uri", uri, "--experiment", "pairwise",
               "--cache-dir", str(tmp / "cache")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    client = mlflow.tracking.MlflowClient(uri)
    exp = client.get_experiment_by_name("pairwise")
    (run,) = client.search_runs([exp.experiment_id], "tags.`matteralign.kind` = 'compare'")
    csv = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/matrices/cknna.csv")
    matrix = pd.read_csv(io.StringIO(csv), index_col=0)
    ref = summary.references["syn"].model
    for r in summary.results:
        if r.model != ref:
            assert matrix.loc[r.model, ref] == pytest.approx(r.metrics["cknna_to_ref"], abs=1e-12), r.model


def test_dcor_to_ref_logged_and_on_the_board(board):
    import dcor
    import mlflow

    from benchmark.knn import prepare_for_alignment

    tmp, uri, summary = board
    by = {r.model: r for r in summary.results}
    ref = by[summary.references["syn"].model]
    for key in ("noisy", "bits"):
        r = by[key]
        x, y = (prepare_for_alignment(np.asarray(f, dtype=np.float64))[0] for f in (r.features, ref.features))
        expected = dcor.distance_correlation(x, y)
        assert r.metrics["dcor_to_ref"] == pytest.approx(expected, abs=1e-9)
        logged = mlflow.tracking.MlflowClient(uri).get_run(r.run_id).data.metrics
        assert logged["dcor_to_ref"] == pytest.approx(expected, abs=1e-9)
    lb = json.loads((tmp / "lb" / "leaderboard.json").read_text())
    assert all("dcor_to_ref" in row for row in lb["per_task"])
    page = (tmp / "lb" / "index.html").read_text()
    md = (tmp / "lb" / "leaderboard.md").read_text()
    assert "dCor to reference" in md
    assert "dCor to reference" in page or "dcor_to_ref" in page


def test_distance_correlation_matches_the_dcor_package():
    import dcor

    from benchmark.metrics.dcor_alignment import distance_correlation

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 7))
    for Y in (X[:, :3] ** 2 + 0.1 * rng.normal(size=(120, 3)), rng.normal(size=(120, 4)), X @ rng.normal(size=(7, 5))):
        assert distance_correlation(X, Y) == pytest.approx(dcor.distance_correlation(X, Y), abs=1e-10)
    assert distance_correlation(X, np.ones((120, 2))) == 0.0
