"""What a child run shows in MLflow: an embedding preview, its bootstrap figure, and a LoggedModel per
(model, checkpoint digest) whose task-linked metrics `mlflow.search_logged_models` ranks on."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.pipeline import record, run_figures
from benchmark.pipeline.run import RunConfig, run_benchmark
from benchmark.tracking import schema as S

MODELS = """
reference:
  model: ref
  fallback: none
models:
  - {key: ref, name: Reference, family: fake, modality: atoms, domain: molecules, default: true, energy_head: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 1, energy_noise: 0.001}}
  - {key: close, name: Close, family: fake, modality: atoms, domain: molecules, default: true, energy_head: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 2, noise: 0.2, energy_noise: 0.05}}
  - {key: far, name: Far, family: fake, modality: atoms, domain: molecules, default: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 3, noise: 1.5}}
"""

TASK = """
name: {name}
version: "1"
description: synthetic
loader: tests.fake_tasks:load
options: {{labelled: {labelled}}}
source: generated
level_of_theory: composition energies + noise
n_samples: 50
seed: 1
roles: {{molecules: id, materials: ood}}
"""


@pytest.fixture
def registry(make_registry):
    return make_registry(MODELS, {"syn_a": TASK.format(name="syn_a", labelled="true"),
                                  "syn_b": TASK.format(name="syn_b", labelled="false")})


def run(registry, tmp_path, **kw):
    models, tasks = registry
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    summary = run_benchmark(RunConfig(models_file=models, tasks_dir=tasks, progress=False, n_boot=30, n_perm=3,
                                      tracking_uri=uri, board_file="none", leaderboard_dir=None, **kw))
    import mlflow

    mlflow.set_tracking_uri(uri)
    return summary


def _client():
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def _files(run_id: str, folder: str) -> dict[str, int]:
    return {f.path: f.file_size for f in _client().list_artifacts(run_id, folder)}


def test_every_child_run_with_embeddings_carries_small_figures(registry, tmp_path):
    import matplotlib.image

    summary = run(registry, tmp_path)
    ok = [r for r in summary.results if r.status == "ok"]
    assert len(ok) == 6
    for r in ok:
        tags = _client().get_run(r.run_id).data.tags
        assert S.FIGURE_ERROR not in tags and S.LOGGED_MODEL_ERROR not in tags
        preview = S.EMBEDDING_PREVIEW_ARTIFACT.format(task=r.task)
        emb = _files(r.run_id, "embeddings")
        assert f"embeddings/{r.task}.npy" in emb and 0 < emb[preview] <= 60_000, (r.model, r.task, emb)
        image = matplotlib.image.imread(_client().download_artifacts(r.run_id, preview, str(tmp_path)))
        assert image.shape[:2] == (320, 320)
        figure = S.BOOTSTRAP_FIGURE_ARTIFACT.format(task=r.task)
        has_reps = r.replicates is not None and np.isfinite(r.replicates).any() and "cknna_to_ref" in r.metrics
        figs = _files(r.run_id, "figures")
        assert (figure in figs) == has_reps, (r.model, r.task, figs)
        if r.model != "ref":
            assert has_reps and 0 < figs[figure] <= 60_000


def test_search_logged_models_answers_the_best_model_on_a_task(registry, tmp_path):
    import mlflow

    summary = run(registry, tmp_path)
    runs = {(r.model, r.task): r for r in summary.results}
    exp = _client().get_run(summary.parent_run_id).info.experiment_id

    def search(**kw):
        return mlflow.search_logged_models(experiment_ids=[exp], output_format="list", **kw)

    models = search(filter_string=f"tags.`{S.MODEL}` != ''")
    assert sorted(m.name for m in models) == ["close", "far", "ref"]
    for m in models:
        for task in ("syn_a", "syn_b"):
            assert _client().get_run(runs[(m.name, task)].run_id).data.tags[S.LOGGED_MODEL] == m.model_id
        assert m.tags[S.CHECKPOINT_DIGEST] == runs[(m.name, "syn_a")].checkpoint_digest
        linked = {(x.key, x.dataset_name): x.value for x in m.metrics}
        if m.name == "ref":  # compared with itself it would rank first: only its energy error is linked
            assert set(linked) == {("energy_mae", "syn_a-v1")}
            continue
        for task in ("syn_a", "syn_b"):
            for name in ("cknna_to_ref", "cknna_to_ref_k25", "mutual_knn_to_ref", "cka_to_ref"):
                assert linked[(name, f"{task}-v1")] == pytest.approx(runs[(m.name, task)].metrics[name])
        assert (("energy_mae", "syn_a-v1") in linked) == (m.name == "close")
        assert ("energy_mae", "syn_b-v1") not in linked  # syn_b has no labels

    for task in ("syn_a", "syn_b"):
        best = search(filter_string="metrics.cknna_to_ref > -1", datasets=[{"dataset_name": f"{task}-v1"}],
                      order_by=[{"field_name": "metrics.cknna_to_ref", "ascending": False,
                                 "dataset_name": f"{task}-v1"}])
        assert [m.name for m in best] == ["close", "far"]
        assert runs[("close", task)].metrics["cknna_to_ref"] > runs[("far", task)].metrics["cknna_to_ref"]

    record._MODELS.clear()  # as in a new process: the models are found again, not duplicated
    again = run(registry, tmp_path, models=["far"])
    assert sorted(m.name for m in search(filter_string=f"tags.`{S.MODEL}` != ''")) == ["close", "far", "ref"]
    far = search(filter_string="name = 'far'")[0]
    values = [x.value for x in far.metrics if x.key == "cknna_to_ref" and x.dataset_name == "syn_a-v1"]
    assert len(values) == 2 and {x.run_id for x in far.metrics} == {
        runs[("far", "syn_a")].run_id, runs[("far", "syn_b")].run_id,
        *(r.run_id for r in again.results if r.model == "far")}


def test_a_failing_model_view_or_figure_never_fails_the_run(registry, tmp_path, monkeypatch):
    import mlflow

    def broken(*a, **kw):
        raise RuntimeError("model store unavailable")

    monkeypatch.setattr(mlflow, "create_external_model", broken)
    monkeypatch.setattr(run_figures, "embedding_preview", broken)
    monkeypatch.setattr(record, "_MODELS", {})
    summary = run(registry, tmp_path)
    ok = [r for r in summary.results if r.status == "ok"]
    assert len(ok) == 6
    for r in ok:
        data = _client().get_run(r.run_id).data
        assert data.tags[S.LOGGED_MODEL_ERROR] == "RuntimeError: model store unavailable"
        assert data.tags[S.FIGURE_ERROR] == f"{r.task}.png: RuntimeError: model store unavailable"
        assert data.tags[S.COMPLETE] == S.COMPLETE_YES and S.LOGGED_MODEL not in data.tags
        assert data.metrics["cka_to_ref"] == pytest.approx(r.metrics["cka_to_ref"])
        assert f"embeddings/{r.task}.png" not in _files(r.run_id, "embeddings")
    assert mlflow.search_logged_models(output_format="list", experiment_ids=[
        _client().get_run(summary.parent_run_id).info.experiment_id]) == []


def test_the_preview_projects_on_the_principal_axes_and_stays_small(tmp_path):
    rng = np.random.default_rng(0)
    for shape in [(200, 30), (20, 300), (5, 1)]:
        x = rng.normal(size=shape) * np.linspace(3, 1, shape[1])
        u, s, _ = np.linalg.svd(x - x.mean(0), full_matrices=False)
        m = min(2, *shape)
        np.testing.assert_allclose(np.abs(run_figures.pca_2d(x)[:, :m]), np.abs(u[:, :m] * s[:m]), atol=1e-8)
    with pytest.raises(ValueError, match="n x d"):
        run_figures.pca_2d(np.zeros(5))
    feats = rng.normal(size=(5000, 256)).astype(np.float32)
    labels = rng.normal(size=5000)
    labels[::7] = np.nan
    path = run_figures.embedding_preview(feats, labels, "model on $task_with_dollars", tmp_path / "p.png")
    assert 0 < path.stat().st_size <= 60_000
