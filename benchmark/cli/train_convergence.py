"""`matteralign train-convergence`: train the small-MLIP family of the convergence experiment."""

from __future__ import annotations

import argparse

from benchmark.convergence import train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train-sizes", type=int, nargs="+", default=list(train.DEFAULT_TRAIN_SIZES))
    parser.add_argument("--epochs", type=int, nargs="+", default=list(train.DEFAULT_EPOCHS))
    parser.add_argument("--out-dir", default="convergence", help="where the checkpoints and records.json go")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-size", type=int, default=train.DEFAULT_TEST_SIZE)
    parser.add_argument(
        "--threads", type=int, default=2,
        help="torch intra-op threads; 1 is far faster when other processes load the cores",
    )


def main(args: argparse.Namespace) -> int:
    return train.train_family(args)
