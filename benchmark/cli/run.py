"""`matteralign run`: the main job (also the MLproject `main` entry point)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmark.cli.options import (
    add_board,
    add_cache_dir,
    add_k,
    add_models_file,
    add_n_samples,
    add_store_options,
    add_tasks_dir,
    csv_list,
    parse_n_samples,
)
from benchmark.pipeline.run import run_benchmark
from benchmark.pipeline.suite import SUITES
from benchmark.pipeline.types import RunConfig


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", choices=SUITES, default="default",
                   help="default: the models with default: true at each task's size (the board); paper: every model "
                        "that can run here at each task's paper_n_samples (up to 50,000; an exploration run of the "
                        "board), its estimated cost printed first")
    p.add_argument("--estimate-only", action="store_true",
                   help="print the estimated cost of the selected run (embedding, stage 2, memory) and exit")
    p.add_argument("--models", type=csv_list, help="comma-separated model keys (default: entries with default: true)")
    p.add_argument("--tasks", type=csv_list, help="comma-separated task names (default: every tasks/*.yaml)")
    add_n_samples(p)
    p.add_argument("--seed", type=int, help="sampling seed for every task (default: the task's)")
    add_k(p)
    p.add_argument("--reference", help="reference model key (default: models.yaml reference.model)")
    p.add_argument("--n-boot", type=int, default=None,
                   help="resamples for the alignment confidence intervals (default 200; 0 needs --no-ci)")
    p.add_argument("--no-ci", action="store_true",
                   help="no confidence intervals (n_boot = 0); `matteralign check` refuses such runs")
    p.add_argument("--n-perm", type=int, default=RunConfig.n_perm,
                   help=f"permutations for the IDCor p-value (default {RunConfig.n_perm}: p-value floor "
                        f"{1 / (RunConfig.n_perm + 1):g}, logged as idcor_pvalue_floor; 999 gives 0.001 at ~2.3 ms "
                        "per permutation at n = 1,000)")
    add_store_options(p)
    add_models_file(p)
    add_tasks_dir(p)
    add_cache_dir(p)
    p.add_argument("--leaderboard-dir", type=Path, default=Path("leaderboard"), help="where the leaderboard is written")
    p.add_argument("--no-leaderboard", action="store_true", help="do not regenerate the leaderboard")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--device", default="cpu", help="torch device for the models (default cpu)")
    p.add_argument("--run-name", help="MLflow parent run name")
    p.add_argument("--build-envs", action="store_true",
                   help="build the isolated venvs of `environment: isolated` models when missing (once; minutes each)")
    p.add_argument("--executor", choices=["local", "ray"], default="local", help="where embedding shards run")
    p.add_argument("--ray-address", help="Ray cluster address for --executor ray (default: a local Ray instance)")
    p.add_argument("--workers", type=int, help="parallel Ray workers (default: the cluster's CPUs)")
    add_board(p)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    return RunConfig(
        models=args.models,
        tasks=args.tasks,
        n_samples=parse_n_samples(args.n_samples),
        seed=args.seed,
        k=args.k,
        n_boot=(0 if args.no_ci else RunConfig.n_boot) if args.n_boot is None else args.n_boot,
        no_ci=args.no_ci,
        n_perm=args.n_perm,
        reference=args.reference,
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
        models_file=args.models_file,
        tasks_dir=args.tasks_dir,
        cache_dir=args.cache_dir,
        leaderboard_dir=None if args.no_leaderboard else args.leaderboard_dir,
        progress=not args.no_progress,
        device=args.device,
        run_name=args.run_name,
        executor=args.executor,
        build_envs=args.build_envs,
        ray_address=args.ray_address,
        workers=args.workers,
        board_file=args.board,
    )


EXIT_CODES = """exit status:
  0  every task ran and no (model, task) failed (a model that cannot run here, e.g. missing weights, is
     reported as skipped and does not count)
  1  some (model, task) failed (any exception of an adapter or of one model's metrics is contained and
     named), a task's data could not be loaded (e.g. a missing data package such as biotite, robocrys or
     pymatgen-test-files: that task's pairs are skipped with the loader's message, printed once, and the other
     tasks still run), a task whose n - 1 is below --k (skipped, naming k and n), or a task that ran has no
     reference (no alignment there)
  2  nothing usable: a configuration error before any work (bad option, unknown model/task, a model named
     twice, --n-boot 0 without --no-ci, --leaderboard-dir or --cache-dir that is a file, a
     read-only cache, unreachable tracking store), no (model, task) produced embeddings, or no task has a
     reference
A run that dies before its alignment ends never reaches the leaderboard or `check` (its child runs stay
tagged complete=false); the next run marks its dead parent KILLED."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EXIT_CODES
    _add_arguments(p)


def main(args: argparse.Namespace) -> int:
    if not args.no_leaderboard:
        from benchmark.leaderboard.build import check_out_dir

        check_out_dir(args.leaderboard_dir)
    if args.suite == "paper" or args.estimate_only:
        cfg, code = _preset(args)
        if code is not None:
            return code
    else:
        cfg = config_from_args(args)
    summary = run_benchmark(cfg)
    if summary.exit_message():
        print(f"matteralign run: {summary.exit_message()}", file=sys.stderr)
    return summary.exit_code()


def _preset(args: argparse.Namespace) -> tuple[RunConfig, int | None]:
    """The run's config with the suite's models and sizes filled in where not given, after printing its cost;
    (config, exit code) where the code is 0 for --estimate-only."""
    from benchmark.embeddings import cache_root
    from benchmark.pipeline.suite import estimate, format_estimate, paper_selection
    from benchmark.registry import load_models, load_tasks, models_by_key, select
    from benchmark.registry.loader import resolve_models_file
    from benchmark.tasks import build_dataset

    models = load_models(resolve_models_file(args.models_file))
    tasks = load_tasks(args.tasks_dir)
    root = args.cache_dir or cache_root()
    if args.suite == "paper":
        keys, sizes, left_out = paper_selection(models, tasks, root)
        if args.models is None:
            args.models = keys
            if left_out:
                print(f"[paper] {len(keys)} models can run here; {len(left_out)} cannot "
                      f"({', '.join(sorted(left_out))}): `matteralign models` says why", file=sys.stderr)
        if parse_n_samples(args.n_samples) is None:  # MLflow passes an empty parameter as ''
            args.n_samples = [",".join(f"{t}={n}" for t, n in sizes.items())]
    cfg = config_from_args(args)
    by_key = models_by_key(models)
    entries = (select(by_key, cfg.models, "model", str(args.models_file or "models.yaml")) if cfg.models
               else [e for e in models.models if e.default])
    specs = select(tasks, cfg.tasks, "task", str(args.tasks_dir or "tasks/"))
    datasets = {}
    for spec in specs:
        t0 = time.perf_counter()
        datasets[spec.name] = build_dataset(spec, cfg.n_for(spec.name), cfg.seed)
        print(f"[estimate] task {spec.name}: {len(datasets[spec.name])} structures "
              f"(loaded in {time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    costs = estimate(entries, datasets, Path(root), device=args.device,
                     say=lambda line: print(line, file=sys.stderr, flush=True))
    print(format_estimate(costs, args.workers or 1))
    sys.stdout.flush()
    return cfg, (0 if args.estimate_only else None)
