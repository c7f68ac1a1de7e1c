"""`matteralign tasks`: the tasks, their sizes, sources and id/ood roles per model domain."""

from __future__ import annotations

import argparse
from benchmark.cli.options import add_tasks_dir
from benchmark.registry.loader import load_tasks


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_tasks_dir(p)


def main(args: argparse.Namespace) -> int:
    for spec in load_tasks(args.tasks_dir).values():
        roles = ", ".join(f"{d}={r}" for d, r in spec.roles.items())
        print(f"{spec.name} v{spec.version}: n_samples={spec.n_samples} seed={spec.seed}; roles: {roles}")
        print(f"  labels: {spec.level_of_theory}")
        print(f"  source: {' '.join(spec.source.split())}")
    return 0
