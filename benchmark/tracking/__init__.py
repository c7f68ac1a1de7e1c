"""MLflow conventions of the benchmark: where runs go, and the tag/param names the leaderboard reads back.

Run layout: one parent run per invocation (tag ``matteralign.kind=parent``) and one child run per
(model, task) (``matteralign.kind=model-task``), whose tags carry the model, task, role (id/ood),
status (ok/skipped/failed) and the reference model used. See docs/run-schema.md.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

from benchmark.io import file_lock

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "matteralign"
from benchmark.tracking.schema import PREFIX as TAG, Kind  # noqa: E402 - names live in the schema module

KIND_PARENT = Kind.PARENT
KIND_MODEL_TASK = Kind.MODEL_TASK
KIND_COMPARE = Kind.COMPARE


def tracking_uri(explicit: str | None = None) -> str:
    """The explicit URI, else $MLFLOW_TRACKING_URI, else the local sqlite file."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def experiment_name(explicit: str | None = None) -> str:
    return explicit or os.environ.get("MATTERALIGN_EXPERIMENT") or DEFAULT_EXPERIMENT


_DUPLICATE_ROW = ("UniqueViolation", "UNIQUE constraint failed", "duplicate key value")


def lost_insert_race(exc: BaseException) -> bool:
    """Whether a tracking-store error is a unique-key violation: another process inserted the same row
    (experiment tag, dataset) between this one's look-up and its insert, so the row now exists. SQLite and
    PostgreSQL word it differently; MLflow passes their text through."""
    return any(m in str(exc) for m in _DUPLICATE_ROW)


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
    An unreachable HTTP server raises a MatteralignError naming the URI within PROBE_TIMEOUT_S (a TCP probe before
    MLflow's minutes of retries), a new sqlite file in a missing/unwritable folder at once; a sqlite store is
    created and migrated under a file lock (``<db>.lock``), so concurrent first runs do not race the migration.
    """
    from benchmark.errors import MatteralignError

    uri = tracking_uri(uri)
    db = sqlite_path(uri)
    if db is not None:
        _check_sqlite_folder(uri, db)
    elif uri.startswith(("http://", "https://")):
        probe_server(uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    lockable = db is not None and os.access(db.parent, os.W_OK | os.X_OK)
    lock = file_lock(db.with_name(db.name + ".lock"), timeout=STORE_LOCK_TIMEOUT_S, what="tracking store init") \
        if lockable else contextlib.nullcontext()
    try:
        with lock:
            return uri, _select_experiment(mlflow, experiment)
    except MatteralignError:
        raise
    except Exception as exc:  # noqa: BLE001 - any store failure becomes one actionable message
        raise MatteralignError(_store_error(uri, db, exc)) from None


def _select_experiment(mlflow, experiment: str | None) -> str:
    """Create/migrate the store (first MLflow call) and make the experiment active; returns its name."""
    project_run = os.environ.get("MLFLOW_RUN_ID")
    if project_run and not (experiment or os.environ.get("MATTERALIGN_EXPERIMENT")):
        exp_id = mlflow.tracking.MlflowClient().get_run(project_run).info.experiment_id
        exp = mlflow.set_experiment(experiment_id=exp_id)
    else:
        exp = mlflow.set_experiment(experiment_id=get_or_create_experiment(experiment_name(experiment)))
    return exp.name


#: seconds a process waits for another one creating/migrating the same sqlite store
STORE_LOCK_TIMEOUT_S = 300.0
#: seconds the reachability probe of an HTTP tracking server waits (MLflow's own retries take minutes)
PROBE_TIMEOUT_S = 3.0


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative or absolute); None for other stores / in-memory."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(rest).expanduser().absolute() if rest and rest != ":memory:" else None


def _check_sqlite_folder(uri: str, db: Path) -> None:
    from benchmark.errors import MatteralignError

    folder = db.parent
    if db.exists():
        return
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        state = "does not exist" if not folder.exists() else "is not a writable folder"
        raise MatteralignError(
            f"cannot create the sqlite tracking store {db} (from {uri!r}): {folder} {state}; create the folder, "
            "fix its permissions, or set MLFLOW_TRACKING_URI / --tracking-uri to a writable sqlite:///path/mlflow.db"
        )


def probe_server(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail within `timeout` seconds, naming `uri`, when nothing accepts a TCP connection at its host:port."""
    import socket
    from urllib.parse import urlsplit

    from benchmark.errors import MatteralignError

    parts = urlsplit(uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "localhost", port), timeout=timeout):
            pass
    except OSError as exc:
        raise MatteralignError(
            f"cannot reach the MLflow tracking store {uri!r} ({type(exc).__name__}: {exc}, within {timeout:.0f} s). "
            "Start the server (mlflow server --host ... --port ...) or set MLFLOW_TRACKING_URI / --tracking-uri to a "
            "reachable store (default sqlite:///mlflow.db). Embeddings already computed stay in the cache."
        ) from None


def _store_error(uri: str, db: Path | None, exc: Exception) -> str:
    text = f"{type(exc).__name__}: {str(exc)[:300]}"
    if db is not None and ("alembic" in text.lower() or "migrat" in text.lower() or "already exists" in text):
        return (
            f"the sqlite tracking store {db} could not be created/migrated ({text}). This is a schema migration "
            f"error, not a connection problem; if {db} was only just created and holds no runs you need, delete it "
            "and rerun; otherwise run `mlflow db upgrade " + uri + "` once with no other run active."
        )
    return (
        f"cannot reach the MLflow tracking store {uri!r}: {text}. "
        "Start the server or set MLFLOW_TRACKING_URI to a reachable store (default sqlite:///mlflow.db). "
        "Embeddings already computed stay in the cache and are logged when you rerun."
    )


def git_sha(root: Path | None = None) -> str:
    root = root or Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=False
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
