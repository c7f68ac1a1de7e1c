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
