"""`matteralign reproduce`: reproduce the paper's findings and write report/REPORT.md (MLproject `reproduce`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.options import add_cache_dir, add_k, add_models_file, add_store_options, add_tasks_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", choices=["default", "tiny"], default="default",
                   help="default: every task at its size and the full convergence grid; tiny: a smoke test")
    p.add_argument("--out", type=Path, default=Path("report"), help="folder for REPORT.md and figures/")
    p.add_argument("--skip-convergence", action="store_true", help="do not train the convergence family")
    add_store_options(p)
    add_models_file(p)
    add_tasks_dir(p)
    add_cache_dir(p)
    add_k(p)
    p.add_argument("--n-perm", type=int, default=50, help="row permutations per alignment null (default 50)")
    p.add_argument("--seed", type=int, default=0, help="seed of permutations, bootstraps and training")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for the convergence training (default 1: far faster on shared cores)")



def main(args: argparse.Namespace) -> int:
    from benchmark.pipeline.record import leave_foreign_project_run
    from benchmark.report.reproduce import reproduce

    leave_foreign_project_run(args.experiment, args.tracking_uri)
    return reproduce(args)
