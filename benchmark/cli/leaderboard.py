"""`matteralign leaderboard`: read the runs back from MLflow and write leaderboard/ (md, csv, json, html)."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.options import add_board, add_store_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("leaderboard"), help="output directory (default leaderboard)")
    add_store_options(parser)
    add_board(parser)
    parser.add_argument("--no-log", action="store_true", help="do not log the figures to an MLflow leaderboard run")


def main(args: argparse.Namespace) -> int:
    from benchmark.leaderboard.build import write_leaderboard

    written = write_leaderboard(args.out, args.tracking_uri, args.experiment, log_to_mlflow=not args.no_log,
                                board_file=args.board)
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "index.html"):
        print(f"wrote {written[name]}")
    print(f"wrote {sum(1 for n in written if n.startswith('figures/'))} figures under {Path(args.out) / 'figures'}")
    return 0
