"""`matteralign submit <model-key>`: validate a new models.yaml entry, run it alone on every task of the frozen
board against the board's pinned references, regenerate the leaderboard. No other model's numbers change."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.options import add_board, add_store_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_key", help="key of the models.yaml entry to submit")
    parser.add_argument("--models-file", type=Path, default=None, help="models registry (default: models.yaml)")
    parser.add_argument("--tasks-dir", type=Path, default=None, help="task YAML folder (default: tasks/)")
    add_store_options(parser)
    add_board(parser)
    parser.add_argument("--out", type=Path, default=Path("leaderboard"), help="leaderboard directory")


def main(args: argparse.Namespace) -> int:
    from benchmark.leaderboard.build import check_out_dir
    from benchmark.leaderboard.collect import load_child_runs
    from benchmark.pipeline.run import run_benchmark
    from benchmark.pipeline.board import board_or_error
    from benchmark.pipeline.submit import previous_runs, reproducibility, validate
    from benchmark.pipeline.types import RunConfig

    check_out_dir(args.out)  # a file in the way fails now, not after every task has run
    entry = validate(args.model_key, args.models_file)
    board, board_file = board_or_error(args.board)
    before = previous_runs(args.tracking_uri, args.experiment)
    print(f"submit {entry.key}: running it alone on the tasks of board {board.id} ({', '.join(board.tasks)}), "
          "against the board's pinned references; no other model is rerun")
    summary = run_benchmark(RunConfig(
        models=[entry.key], tasks=[t for t in board.tasks], tracking_uri=args.tracking_uri,
        experiment=args.experiment, models_file=args.models_file, tasks_dir=args.tasks_dir,
        leaderboard_dir=args.out, progress=True, board_file=board_file,
    ))
    mine = [r for r in summary.results if r.model == entry.key]
    for r in mine:
        print(f"  {r.task}: {r.status}" + (f" ({r.reason})" if r.reason else ""))
    if not any(r.status == "ok" for r in mine):
        print(f"submit {entry.key}: no task ran; fix the reasons above and resubmit.")
        return 1
    after = load_child_runs(args.tracking_uri, args.experiment)
    print("reproducibility against earlier runs of the same checkpoint:")
    print("\n".join(reproducibility(before, after, entry.key, {r.run_id for r in mine if r.run_id})))
    print(f"leaderboard regenerated under {args.out}/ (parent run {summary.parent_run_id})")
    return 0
