"""`matteralign compare --task qm9`: every pairwise alignment matrix (CKNNA, mutual kNN, CKA) on one task.

Loads the embeddings artifact of the newest ok child run of every model on the task (the same selection
as the leaderboard: one benchmark and task version), checks that all rows are the same sample ids in the
same order, and logs a run tagged `matteralign.kind=compare` with the matrices as CSV, a heatmap and a
dendrogram as figures; prints the most similar pairs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark import tracking
from benchmark.errors import DataError, MatteralignError
from benchmark.leaderboard.collect import Board, client, experiment_id, load_child_runs, select_board


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help="task name, e.g. qm9")
    parser.add_argument("--k", type=int, default=10, help="neighbours for CKNNA / mutual kNN (default 10)")
    parser.add_argument("--top", type=int, default=10, help="how many most-similar pairs to print")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default $MLFLOW_TRACKING_URI or sqlite)")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default $MATTERALIGN_EXPERIMENT)")


def task_embeddings(board: Board, task: str, tracking_uri: str | None) -> dict[str, np.ndarray]:
    """{model: (n, d) float array} from the embeddings artifacts of the board's runs on `task`.

    Raises DataError when two models were embedded on different sample ids or orders.
    """
    import mlflow

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


def pairwise(features: dict[str, np.ndarray], k: int) -> dict[str, pd.DataFrame]:
    from benchmark.compare import pairwise_matrices

    return pairwise_matrices(features, k=k)


def ordered(matrix: pd.DataFrame) -> pd.DataFrame:
    """The matrix in dendrogram order (similar models next to each other); as given if it has a NaN."""
    from benchmark.compare import dendrogram_order

    if not np.isfinite(matrix.to_numpy(dtype=float)).all():
        return matrix
    order = dendrogram_order(matrix)
    return matrix.loc[order, order]


def top_pairs(matrix: pd.DataFrame, n: int) -> list[tuple[str, str, float]]:
    """The n most similar distinct pairs (upper triangle), ties broken by the names."""
    names = list(matrix.index)
    pairs = [(names[i], names[j], float(matrix.iloc[i, j]))
             for i in range(len(names)) for j in range(i + 1, len(names))]
    pairs = [p for p in pairs if np.isfinite(p[2])]
    return sorted(pairs, key=lambda p: (-p[2], p[0], p[1]))[:n]


def main(args: argparse.Namespace) -> int:
    from benchmark.leaderboard import figures

    board = select_board(load_child_runs(args.tracking_uri, args.experiment))
    models = sorted(board.results.loc[board.results["task"] == args.task, "model"])
    if len(models) < 2:
        known = ", ".join(sorted(board.task_versions)) or "none"
        raise MatteralignError(
            f"task {args.task!r}: {len(models)} model(s) with an ok run in benchmark version "
            f"{board.benchmark_version}; compare needs at least 2. Tasks with ok runs: {known}."
        )
    features = task_embeddings(board, args.task, args.tracking_uri)
    matrices = pairwise(features, args.k)
    cl = client(args.tracking_uri)
    exp_id = experiment_id(cl, args.experiment)
    T = tracking.TAG
    run = cl.create_run(exp_id, run_name=f"compare/{args.task}", tags={
        f"{T}kind": tracking.KIND_COMPARE, f"{T}task": args.task,
        f"{T}benchmark_version": board.benchmark_version,
        f"{T}task_version": board.task_versions.get(args.task, ""),
    })
    run_id = run.info.run_id
    try:
        cl.log_param(run_id, "k", args.k)
        cl.log_param(run_id, "task", args.task)
        cl.log_param(run_id, "models", ",".join(models)[:6000])
        cl.log_param(run_id, "source_runs", ",".join(
            board.results.loc[board.results["task"] == args.task].sort_values("model")["run_id"])[:6000])
        for name, matrix in matrices.items():
            cl.log_text(run_id, matrix.to_csv(), f"matrices/{name}.csv")
        cknna = ordered(matrices["cknna"])
        fig = figures.matrix_figure(cknna, f"CKNNA on {args.task} (k={args.k})")
        cl.log_figure(run_id, fig, f"figures/cknna_{args.task}.png")
        figures.plt.close(fig)
        if len(cknna) >= 3 and np.isfinite(cknna.to_numpy(dtype=float)).all():
            fig = figures.dendrogram_figure(cknna, f"Models on {args.task}: 1 - CKNNA")
            cl.log_figure(run_id, fig, f"figures/dendrogram_{args.task}.png")
            figures.plt.close(fig)
    except BaseException:
        cl.set_terminated(run_id, "FAILED")
        raise
    cl.set_terminated(run_id, "FINISHED")
    print(f"compare {args.task}: {len(models)} models, k={args.k}; MLflow run {run_id}")
    print(f"{'model A':<24} {'model B':<24} {'CKNNA':>8} {'mutual kNN':>11} {'CKA':>8}")
    for a, b, v in top_pairs(matrices["cknna"], args.top):
        mk, cka = matrices["mutual_knn"].loc[a, b], matrices["cka"].loc[a, b]
        print(f"{a:<24} {b:<24} {v:>8.3f} {mk:>11.3f} {cka:>8.3f}")
    return 0
