"""`matteralign` / `python -m benchmark`: the command wing, one module per subcommand.

Each command module in this package exposes `add_arguments(parser)` and `main(args) -> int` and is imported
only when its command runs, so `--help` needs no model or plotting package. Shared options live in
`benchmark.cli.options`. Nothing outside this package imports it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from benchmark import __version__
from benchmark.cli.options import quiet_third_party
from benchmark.errors import MatteralignError, did_you_mean

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("benchmark.cli.run", "embed every (model, task), compute metrics, log MLflow runs, write the leaderboard"),
    "models": ("benchmark.cli.models", "list models.yaml entries and whether each can run here (and why not)"),
    "tasks": ("benchmark.cli.tasks", "list the tasks and their roles"),
    "leaderboard": ("benchmark.cli.leaderboard", "read runs back from MLflow and write leaderboard/ (md, csv, json, html)"),
    "board": ("benchmark.cli.board", "freeze a benchmark definition (board) from a finished run, or show the one in force"),
    "compare": ("benchmark.cli.compare", "all pairwise alignment matrices for one task, logged to MLflow"),
    "check": ("benchmark.cli.check", "release gate: candidate vs baseline model version; exit 0 pass, 1 regression, 2 cannot compare"),
    "submit": ("benchmark.cli.submit", "validate a new models.yaml entry, run it on every task, regenerate the leaderboard"),
    "reproduce": ("benchmark.cli.reproduce", "reproduce the paper's findings and write the report"),
    "train-convergence": ("benchmark.cli.train_convergence", "train the small-MLIP family of the convergence experiment"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="matteralign",
        description="Representational alignment of scientific foundation models, tracked in MLflow.",
    )
    parser.add_argument("--version", action="version", version=f"matteralign {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, add_help=False)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        print(f"matteralign: error: unknown command {argv[0]!r}.{did_you_mean(argv[0], COMMANDS)} "
              f"Commands: {', '.join(COMMANDS)} "
              "(matteralign --help says what each does).", file=sys.stderr)
        return 2
    parser = build_parser()
    args, _ = parser.parse_known_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    quiet_third_party()
    module = importlib.import_module(args._module)
    sub = argparse.ArgumentParser(prog=f"matteralign {args.command}", description=COMMANDS[args.command][1])
    module.add_arguments(sub)
    sub_args = sub.parse_args(argv[argv.index(args.command) + 1 :])
    try:
        return int(module.main(sub_args) or 0)
    except MatteralignError as exc:
        print(f"matteralign {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"matteralign {args.command}: interrupted. Finished shards stay in the cache; rerun to resume.",
            file=sys.stderr,
        )
        return 130
