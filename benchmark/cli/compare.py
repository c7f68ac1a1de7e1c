"""`matteralign compare --task qm9`: every pairwise alignment matrix (CKNNA, mutual kNN, CKA) on one task.

Loads the embeddings artifact of the newest ok child run of every model on the task (the same selection
as the leaderboard: one benchmark and task version), checks that all rows are the same sample ids in the
same order, computes the matrices on the one pairwise path (benchmark.metrics.pairwise, with the run's
cached kNN graphs) and logs a `compare` run with the matrices as CSV, a heatmap and a dendrogram;
prints the most similar pairs.
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmark.cli.options import add_cache_dir, add_k, add_store_options
from benchmark.embeddings import cache_root
from benchmark.errors import MatteralignError
from benchmark.leaderboard.artifacts import task_cache_keys, task_embeddings
from benchmark.leaderboard.collect import client, experiment_id, load_child_runs, select_board
from benchmark.metrics.pairwise import ordered, pairwise_matrices, top_pairs
from benchmark.tracking import schema as S


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help="task name, e.g. qm9")
    add_k(parser)
    parser.add_argument("--top", type=int, default=10, help="how many most-similar pairs to print")
    add_store_options(parser)
    add_cache_dir(parser)


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
    matrices = pairwise_matrices(features, args.k, knn_dir=(args.cache_dir or cache_root()) / "knn",
                                 cache_keys=task_cache_keys(board, args.task))
    cl = client(args.tracking_uri)
    exp_id = experiment_id(cl, args.experiment)
    run = cl.create_run(exp_id, run_name=f"compare/{args.task}", tags={
        S.KIND: S.Kind.COMPARE, S.TASK: args.task,
        S.BENCHMARK_VERSION: board.benchmark_version,
        S.TASK_VERSION: board.task_versions.get(args.task, ""),
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
