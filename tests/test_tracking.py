"""Tracking setup: the experiment a run lands in is the one named, even when another process creates it first."""

from __future__ import annotations

import mlflow
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service.client import TrackingServiceClient

from benchmark import tracking


def test_losing_the_experiment_creation_race_still_logs_into_the_named_experiment(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    existing = MlflowClient(uri).create_experiment("raced")  # "another process" created it first
    real = TrackingServiceClient.get_experiment_by_name
    calls = {"n": 0}

    def stale_first_lookup(self, name):
        calls["n"] += 1
        return None if calls["n"] == 1 else real(self, name)  # this process looked before the other created it

    monkeypatch.setattr(TrackingServiceClient, "get_experiment_by_name", stale_first_lookup)
    assert tracking.setup(uri, "raced") == (uri, "raced")
    with mlflow.start_run() as run:
        pass
    assert calls["n"] >= 2
    assert MlflowClient(uri).get_run(run.info.run_id).info.experiment_id == existing


def test_setup_creates_a_missing_experiment_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.setup(uri, "fresh")
    tracking.setup(uri, "fresh")
    names = [e.name for e in MlflowClient(uri).search_experiments()]
    assert names.count("fresh") == 1


def test_losing_the_dataset_insert_race_retries_and_links_the_dataset(tmp_path, monkeypatch):
    """Two runs of one task insert its dataset at once on a shared server; the loser's unique-key error is
    retried (the row exists by then) and any other tracking error still propagates."""
    import pandas as pd
    import pytest
    from mlflow.exceptions import MlflowException

    from benchmark.pipeline import record

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    mlflow.set_experiment("race")
    dataset = mlflow.data.from_pandas(pd.DataFrame({"id": ["a", "b"]}), name="syn_a-v1")
    real, calls = mlflow.log_input, []

    def racing(ds, context=None, **kw):
        calls.append(context)
        if len(calls) == 1:
            raise MlflowException('duplicate key value violates unique constraint "dataset_pk"')
        return real(ds, context=context, **kw)

    monkeypatch.setattr(record.time, "sleep", lambda s: None)
    monkeypatch.setattr(mlflow, "log_input", racing)
    with mlflow.start_run() as run:
        record._log_input(dataset, "id")
    assert calls == ["id", "id"]
    inputs = MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs
    assert [i.dataset.name for i in inputs] == ["syn_a-v1"]

    monkeypatch.setattr(mlflow, "log_input", lambda ds, context=None, **kw: (_ for _ in ()).throw(
        MlflowException("permission denied")))
    with mlflow.start_run(), pytest.raises(MlflowException, match="permission denied"):
        record._log_input(dataset, "id")


def test_losing_the_experiment_tag_race_goes_on_and_other_errors_propagate(tmp_path, monkeypatch):
    """Concurrent first runs of a new experiment both see its kind tag unset and insert it; the loser's
    unique-key error (PostgreSQL's wording, as in CI) means the tag is set, so the run goes on."""
    import pytest
    from mlflow.exceptions import MlflowException

    from benchmark.pipeline import record
    from benchmark.tracking import schema as S

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    MlflowClient(uri).create_experiment("raced-tag")
    calls = []

    def lost(self, experiment_id, key, value):
        calls.append(key)
        raise MlflowException('(psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint '
                              '"experiment_tag_pk"')

    monkeypatch.setattr(MlflowClient, "set_experiment_tag", lost)
    record.mark_experiment_kind("raced-tag")
    assert calls == [S.EXPERIMENT_KIND_TAG]
    monkeypatch.setattr(MlflowClient, "set_experiment_tag", lambda *a: (_ for _ in ()).throw(
        MlflowException("permission denied")))
    with pytest.raises(MlflowException, match="permission denied"):
        record.mark_experiment_kind("raced-tag")
    monkeypatch.undo()
    mlflow.set_tracking_uri(uri)
    record.mark_experiment_kind("raced-tag")
    assert MlflowClient(uri).get_experiment_by_name("raced-tag").tags[S.EXPERIMENT_KIND_TAG] == S.EXPERIMENT_KIND
