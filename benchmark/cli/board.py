"""`matteralign board`: freeze a benchmark definition from a finished run, or show the one in force."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.options import add_board, add_store_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    freeze = sub.add_parser("freeze", help="freeze the board of a finished run (tasks, exact samples, pinned "
                            "references, k) to leaderboard/board.yaml and an MLflow run of kind board")
    freeze.add_argument("--from-run", required=True, metavar="RUN_ID", help="parent run id of `matteralign run`")
    freeze.add_argument("--version", type=int, default=None,
                        help="board version (default: one more than the board at --out; never overwritten)")
    freeze.add_argument("--out", type=Path, default=None, help="board file (default leaderboard/board.yaml)")
    add_store_options(freeze)
    show = sub.add_parser("show", help="print the board in force: tasks, samples, references, k, tracks")
    add_board(show)


def main(args: argparse.Namespace) -> int:
    from benchmark.pipeline.board import board_or_error, describe, freeze_board

    if args.action == "freeze":
        spec, path = freeze_board(args.from_run, args.tracking_uri, args.experiment, version=args.version,
                                  out=args.out)
        print(f"froze board {spec.id} to {path} (board run {spec.board_run}); commit it")
        print(describe(spec, path))
        return 0
    spec, path = board_or_error(args.board)
    print(describe(spec, path))
    return 0
