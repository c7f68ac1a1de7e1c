"""What a child run shows in MLflow: an embedding preview, its bootstrap, CKNNA-row and TwoNN figures, a
duration that covers its work with the embed / align seconds, a LoggedModel per (model, checkpoint digest)
whose task-linked metrics `mlflow.search_logged_models` ranks on; and the parent's system metrics."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.errors import DataError

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


def test_a_child_run_lasts_from_its_embedding_to_its_stage_2_and_logs_its_cost(registry, tmp_path, monkeypatch):
    import time

    from benchmark.pipeline import run as run_module

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    real, before = run_module.embed_one, {}

    def slow(entry, spec, *a, **kw):  # a model that takes 0.3 s to embed: the run must include that time
        before[(entry.key, spec.name)] = time.time()
        time.sleep(0.3)
        return real(entry, spec, *a, **kw)

    monkeypatch.setattr(run_module, "embed_one", slow)
    summary = run(registry, tmp_path)
    parent = _client().get_run(summary.parent_run_id)
    assert parent.data.tags[S.SYSTEM_METRICS] == "true"
    assert any(k.startswith("system/cpu") for k in parent.data.metrics), sorted(parent.data.metrics)
    align = {}
    for r in summary.results:
        run_ = _client().get_run(r.run_id)
        info, metrics = run_.info, run_.data.metrics
        assert info.start_time / 1000 <= before[(r.model, r.task)] + 0.002, "the run starts before its embedding"
        duration = (info.end_time - info.start_time) / 1000
        assert 0.3 <= metrics[S.EMBED_SECONDS] <= duration + 0.002
        assert 0 < metrics[S.ALIGN_SECONDS] <= duration
        assert run_.data.tags[S.CACHE_REUSED] == "false"
        align.setdefault(r.task, set()).add(metrics[S.ALIGN_SECONDS])
    assert all(len(v) == 1 for v in align.values())  # the task's stage 2: one value for each of its models

    monkeypatch.setattr(run_module, "embed_one", real)
    again = run(registry, tmp_path, models=["ref"])  # cache hits, and a task with one model
    for r in again.results:
        data = _client().get_run(r.run_id).data
        assert r.reused and data.tags[S.CACHE_REUSED] == "true" and data.metrics[S.EMBED_SECONDS] < 0.3
        figs = _files(r.run_id, "figures")
        assert S.ID_CURVE_FIGURE_ARTIFACT.format(task=r.task) in figs
        assert S.CKNNA_ROW_FIGURE_ARTIFACT.format(task=r.task) not in figs  # no other model to compare with


def test_child_figures_show_the_cknna_row_and_the_twonn_fit_of_the_logged_metrics(registry, tmp_path, monkeypatch):
    import matplotlib.image

    rows, fits = {}, {}
    draw_row, draw_fit = run_figures.cknna_row_figure, run_figures.id_curve_figure

    def spy_row(row, reference, title, path):
        rows[title.split(":")[0]] = (dict(row), reference)
        return draw_row(row, reference, title, path)

    def spy_fit(x, y, d, title, path):
        fits[title.split(":")[0]] = d
        return draw_fit(x, y, d, title, path)

    monkeypatch.setattr(run_figures, "cknna_row_figure", spy_row)
    monkeypatch.setattr(run_figures, "id_curve_figure", spy_fit)
    for state in ("_GROUPS", "_GRAPHS", "_STAGE2"):  # this run's own bookkeeping, not an earlier test's
        monkeypatch.setattr(record, state, {})
    summary = run(registry, tmp_path)
    ok = [r for r in summary.results if r.status == "ok"]
    for r in ok:
        row, reference = rows[f"{r.model} on {r.task}"]
        assert reference == "ref" and set(row) == {"ref", "close", "far"} - {r.model}
        if r.model != "ref":  # the pairwise path on the cached graphs gives the run's own cknna_to_ref
            assert row["ref"] == pytest.approx(r.metrics["cknna_to_ref"], abs=1e-12)
        assert fits[f"{r.model} on {r.task}"] == pytest.approx(r.metrics["intrinsic_dimension"], rel=1e-9)
        figs = _files(r.run_id, "figures")
        for name in (S.CKNNA_ROW_FIGURE_ARTIFACT, S.ID_CURVE_FIGURE_ARTIFACT):
            rel = name.format(task=r.task)
            assert 0 < figs[rel] <= 60_000, (r.model, rel, figs)
            image = matplotlib.image.imread(_client().download_artifacts(r.run_id, rel, str(tmp_path)))
            assert image.shape[:2] == (320, 320)
        assert S.FIGURE_ERROR not in _client().get_run(r.run_id).data.tags
    assert rows["close on syn_a"][0]["ref"] > rows["far on syn_a"][0]["ref"]
    assert record._GROUPS == {} and record._GRAPHS == {} and record._STAGE2 == {}  # released after stage 2


def test_failing_stage_2_figures_and_missing_psutil_are_tags_not_failures(registry, tmp_path, monkeypatch):
    import sys

    def broken(*a, **kw):
        raise RuntimeError("no canvas")

    monkeypatch.setattr(run_figures, "cknna_row_figure", broken)
    monkeypatch.setattr(run_figures, "twonn_curve", broken)
    monkeypatch.setitem(sys.modules, "psutil", None)  # as if psutil were not installed
    summary = run(registry, tmp_path, models=["ref", "far"])
    parent = _client().get_run(summary.parent_run_id)
    assert parent.data.tags[S.SYSTEM_METRICS].startswith("false: psutil is not installed (pip install psutil")
    assert not [k for k in parent.data.metrics if k.startswith("system/")]
    for r in summary.results:
        run_ = _client().get_run(r.run_id)
        assert run_.info.status == "FINISHED" and run_.data.tags[S.COMPLETE] == S.COMPLETE_YES
        assert run_.data.tags[S.FIGURE_ERROR] == (f"cknna_row_{r.task}.png: RuntimeError: no canvas; "
                                                  f"intrinsic_dimension_{r.task}.png: RuntimeError: no canvas")
        assert set(_files(r.run_id, "figures")) <= {S.BOOTSTRAP_FIGURE_ARTIFACT.format(task=r.task)}


@pytest.mark.filterwarnings("ignore:1 of 80 rows duplicate an earlier row")
def test_the_cknna_row_is_the_pairwise_matrix_row_and_the_twonn_curve_its_estimate(tmp_path, monkeypatch):
    from benchmark.knn import knn_graph
    from benchmark.metrics import twonn
    from benchmark.metrics.pairwise import pairwise_matrices
    from benchmark.pipeline.types import ModelTaskResult

    rng = np.random.default_rng(3)
    base = rng.normal(size=(80, 6))
    feats = {"a": base, "b": base + 0.3 * rng.normal(size=base.shape), "c": rng.normal(size=(80, 9))}
    feats["c"][5] = feats["c"][4]  # a duplicate pair (r1 = 0 for both): dropped by TwoNN, kept by the kNN graph
    results = [ModelTaskResult(m, "t", "ok", features=x) for m, x in feats.items()]
    state = record._Stage2(None, ("p", "t"), None, 7)
    matrix = pairwise_matrices(feats, k=7)["cknna"]
    monkeypatch.setattr(record, "_GRAPHS", {})
    for r in results:
        row = record.cknna_row(r, results, state)
        assert row == pytest.approx({m: matrix.loc[r.model, m] for m in feats if m != r.model}, abs=1e-12)
    for r in results:  # the TwoNN fit of the raw features' euclidean graph, as stage 2 measures it
        x, y, d = run_figures.twonn_curve(*record._first_two_distances(r, state))
        graph = knn_graph(feats[r.model], 2, metric="euclidean")
        with pytest.warns(UserWarning, match="duplicate") if r.model == "c" else _no_warning():
            expected = twonn(graph)
        assert d == pytest.approx(expected, rel=1e-9) and len(x) == len(y) == int((78 if r.model == "c" else 80) * 0.9)
        path = run_figures.id_curve_figure(x, y, d, f"{r.model} on $t$", tmp_path / f"{r.model}.png")
        assert 0 < path.stat().st_size <= 60_000
    with pytest.raises(DataError, match="at least 2 usable points"):
        run_figures.twonn_curve(np.zeros(5), np.ones(5))
    with pytest.raises(ValueError, match="no finite CKNNA"):
        run_figures.cknna_row_figure({"x": float("nan")}, None, "t", tmp_path / "row.png")
    many = {f"model-{i}": i / 30 for i in range(30)}
    path = run_figures.cknna_row_figure(many, "model-3", "thirty models", tmp_path / "many.png")
    assert 0 < path.stat().st_size <= 60_000


def _no_warning():
    import contextlib

    return contextlib.nullcontext()
