"""MLflow conventions of the benchmark: where runs go, and the tag/param names the leaderboard reads back.

Run layout: one parent run per invocation (tag ``matteralign.kind=parent``) and one child run per
(model, task) (``matteralign.kind=model-task``), whose tags carry the model, task, role (id/ood),
status (ok/skipped/failed) and the reference model used. See docs/run-schema.md.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "matteralign"
TAG = "matteralign."

KIND_PARENT = "parent"
KIND_MODEL_TASK = "model-task"
KIND_COMPARE = "compare"


def tracking_uri(explicit: str | None = None) -> str:
    """The explicit URI, else $MLFLOW_TRACKING_URI, else the local sqlite file."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def experiment_name(explicit: str | None = None) -> str:
    return explicit or os.environ.get("MATTERALIGN_EXPERIMENT") or DEFAULT_EXPERIMENT


def get_or_create_experiment(name: str, artifact_location: str | None = None) -> str:
    """The id of experiment `name` in the current store, created if needed; safe when processes race to create it.

    mlflow.set_experiment(name) is not: the process that loses the creation race gets the experiment back
    without it becoming active, so its runs land silently in the Default experiment (MLflow 3.17).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    exp = client.get_experiment_by_name(name)
    if exp is None:
        raise RuntimeError(f"experiment {name!r} was reported to exist but cannot be read back")
    return exp.experiment_id


def setup(uri: str | None = None, experiment: str | None = None) -> tuple[str, str]:
    """Point MLflow at the tracking store and experiment; returns (uri, experiment name).

    Under `mlflow run` (MLFLOW_RUN_ID set) the project run's experiment is kept unless one is named; the
    MLFLOW_EXPERIMENT_ID variable alone is not trusted, as mlflow.set_experiment exports it process-wide.
    An unreachable store raises a MatteralignError within MLflow's bounded retry time
    (MLFLOW_HTTP_REQUEST_MAX_RETRIES / MLFLOW_HTTP_REQUEST_TIMEOUT), naming the URI.
    """
    import mlflow

    from benchmark.errors import MatteralignError

    uri = tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    try:
        project_run = os.environ.get("MLFLOW_RUN_ID")
        if project_run and not (experiment or os.environ.get("MATTERALIGN_EXPERIMENT")):
            exp_id = mlflow.tracking.MlflowClient().get_run(project_run).info.experiment_id
            exp = mlflow.set_experiment(experiment_id=exp_id)
        else:
            exp = mlflow.set_experiment(experiment_id=get_or_create_experiment(experiment_name(experiment)))
    except Exception as exc:  # noqa: BLE001 - any store failure becomes one actionable message
        raise MatteralignError(
            f"cannot reach the MLflow tracking store {uri!r}: {type(exc).__name__}: {str(exc)[:300]}. "
            "Start the server or set MLFLOW_TRACKING_URI to a reachable store (default sqlite:///mlflow.db). "
            "Embeddings already computed stay in the cache and are logged when you rerun."
        ) from None
    return uri, exp.name


def git_sha(root: Path | None = None) -> str:
    root = root or Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=False
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
