"""`matteralign check`: release gate, candidate vs baseline model version (exit 0 pass, 1 regression, 2 cannot compare)."""

from __future__ import annotations

import argparse
import sys

from benchmark.cli.options import add_store_options
from benchmark.leaderboard.collect import incomplete_note, load_child_runs
from benchmark.leaderboard.gate import compare_versions, format_table, parse_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--candidate", required=True, help="MODEL@VERSION, VERSION = param model_version")
    parser.add_argument("--baseline", required=True, help="MODEL@VERSION to compare against")
    parser.add_argument("--metric", default="cknna_to_ref", help="metric from benchmark.metrics.METRICS")
    parser.add_argument("--max-drop", type=float, default=0.02, help="tolerated worsening (absolute, default 0.02)")
    parser.add_argument("--tasks", nargs="+", default=None, help="tasks to compare (default: the baseline's)")
    add_store_options(parser)


def main(args: argparse.Namespace) -> int:
    from benchmark.leaderboard.table import higher_is_better

    frame = load_child_runs(args.tracking_uri, args.experiment)
    models = {parse_spec(args.candidate, "candidate")[0], parse_spec(args.baseline, "baseline")[0]}
    note = incomplete_note(frame[frame["model"].isin(models)])
    if note:
        print(f"note: {note}", file=sys.stderr)
    verdicts = compare_versions(frame, args.candidate, args.baseline, args.metric, args.max_drop, args.tasks)
    print(f"check {args.candidate} against {args.baseline} (max drop {args.max_drop})")
    print(format_table(verdicts, args.metric, higher_is_better(args.metric)))
    bad = [v.task for v in verdicts if v.regression]
    if bad:
        print(f"FAIL: {args.candidate} regresses on {', '.join(bad)} beyond the tolerance and the noise.")
        return 1
    print(f"PASS: no regression of {args.candidate} beyond the tolerance and the noise.")
    return 0
