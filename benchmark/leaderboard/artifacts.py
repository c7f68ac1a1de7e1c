"""Read the board's embeddings back from the child runs' artifacts (for compare and the leaderboard matrices)."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from benchmark import tracking
from benchmark.errors import DataError
from benchmark.leaderboard.collect import Board


def quiet_artifact_downloads() -> None:
    """No "Downloading artifacts" progress bar per file (MLflow shows one per download)."""
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow.store.artifact").setLevel(logging.WARNING)


def task_embeddings(board: Board, task: str, tracking_uri: str | None) -> dict[str, np.ndarray]:
    """{model: (n, d) float array} from the embeddings artifacts of the board's runs on `task`.

    Raises DataError when two models were embedded on different sample ids or orders.
    """
    import mlflow

    quiet_artifact_downloads()
    rows = board.results[board.results["task"] == task]
    features: dict[str, np.ndarray] = {}
    ids_of: dict[str, list] = {}
    uri = tracking.tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        for _, r in rows.sort_values("model").iterrows():
            dst = Path(tmp) / r["run_id"]
            dst.mkdir()
            try:
                local = Path(mlflow.artifacts.download_artifacts(
                    run_id=r["run_id"], artifact_path=f"embeddings/{task}.npy", dst_path=str(dst), tracking_uri=uri))
                ids_path = Path(mlflow.artifacts.download_artifacts(
                    run_id=r["run_id"], artifact_path=f"embeddings/{task}.ids.json", dst_path=str(dst),
                    tracking_uri=uri))
            except Exception as exc:  # noqa: BLE001 - a missing artifact is reported per run
                raise DataError(
                    f"run {r['run_id']} ({r['model']}/{task}) has no readable embeddings artifact "
                    f"(embeddings/{task}.npy + .ids.json): {type(exc).__name__}: {str(exc)[:200]}. "
                    "Rerun `matteralign run` for that model, or check the artifact store is reachable."
                ) from None
            features[r["model"]] = np.load(local).astype(np.float64)
            ids_of[r["model"]] = json.loads(ids_path.read_text())
    check_same_ids(ids_of, task)
    return features


def load_replicates(board: Board, tracking_uri: str | None) -> list[str]:
    """Fill board.replicates from the ranked runs' `alignment/cknna_replicates.npy` artifacts; returns a note
    per run whose replicates could not be read (its track then shows no rank intervals)."""
    import mlflow

    from benchmark.tracking import schema as S

    quiet_artifact_downloads()
    uri = tracking.tracking_uri(tracking_uri)
    notes = []
    rows = board.results[board.results["is_reference"] != "true"]
    with tempfile.TemporaryDirectory() as tmp:
        for _, r in rows.iterrows():
            dst = Path(tmp) / r["run_id"]
            dst.mkdir(exist_ok=True)
            try:
                local = mlflow.artifacts.download_artifacts(run_id=r["run_id"], artifact_path=S.REPLICATES_ARTIFACT,
                                                            dst_path=str(dst), tracking_uri=uri)
                board.replicates.setdefault(r["task"], {})[r["model"]] = np.load(local, allow_pickle=False)
            except Exception as exc:  # noqa: BLE001 - a run without replicates (older, --no-ci) is one note
                notes.append(f"{r['model']}/{r['task']} (run {r['run_id'][:8]}): {type(exc).__name__}")
    return notes


def check_same_ids(ids_of: dict[str, list], task: str) -> None:
    """Every model must have embedded the same sample ids in the same order."""
    if not ids_of:
        return
    first, first_ids = next(iter(ids_of.items()))
    for model, ids in ids_of.items():
        if ids != first_ids:
            same_set = sorted(map(str, ids)) == sorted(map(str, first_ids))
            raise DataError(
                f"task {task!r}: {model!r} and {first!r} were embedded on "
                f"{'the same ids in a different order' if same_set else 'different sample ids'} "
                f"({len(ids)} vs {len(first_ids)} rows). Rerun both with the same task version and --n-samples."
            )



def task_cache_keys(board: Board, task: str) -> dict[str, str]:
    """{model: embedding cache key} of the board's runs on `task` (names their cached kNN graphs)."""
    rows = board.results[board.results["task"] == task]
    if "cache_key" not in rows:
        return {}
    return {m: k for m, k in zip(rows["model"], rows["cache_key"]) if isinstance(k, str) and k}
