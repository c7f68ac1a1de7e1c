"""`matteralign run`: the main job (also the MLproject `main` entry point)."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.errors import ConfigError
from benchmark.pipeline.run import RunConfig, run_benchmark


def _csv(value: str) -> list[str] | None:
    """Comma-separated names; an empty string (an MLproject default) means 'the default'."""
    return [v.strip() for v in value.split(",") if v.strip()] or None


def parse_n_samples(values: list[str] | None) -> int | dict[str, int] | None:
    """`--n-samples 500` for every task, or `--n-samples qm9=10000 --n-samples crystals=100` per task."""
    values = [v for v in values or [] if v.strip()]
    if not values:
        return None
    out: dict[str, int] = {}
    for v in values:
        task, sep, num = v.rpartition("=")
        try:
            n = int(num)
        except ValueError:
            raise ConfigError(f"--n-samples {v!r}: expected an integer or TASK=INTEGER") from None
        if n < 3:
            raise ConfigError(f"--n-samples {v!r}: at least 3 structures are needed")
        if not sep:
            if len(values) > 1:
                raise ConfigError("--n-samples: give one integer for all tasks, or TASK=N pairs, not both")
            return n
        out[task] = n
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", type=_csv, help="comma-separated model keys (default: entries with default: true)")
    p.add_argument("--tasks", type=_csv, help="comma-separated task names (default: every tasks/*.yaml)")
    p.add_argument("--n-samples", action="append", metavar="N|TASK=N", help="sample size (default: the task's)")
    p.add_argument("--seed", type=int, help="sampling seed for every task (default: the task's)")
    p.add_argument("--k", type=int, default=10, help="neighbours for CKNNA / mutual-kNN (default 10)")
    p.add_argument("--reference", help="reference model key (default: models.yaml reference.model)")
    p.add_argument("--n-boot", type=int, default=200, help="resamples for the alignment confidence intervals")
    p.add_argument("--n-perm", type=int, default=20, help="permutations for the IDCor p-value")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--experiment", help="MLflow experiment (default: $MATTERALIGN_EXPERIMENT or 'matteralign')")
    p.add_argument("--models-file", type=Path, help="models registry (default: models.yaml)")
    p.add_argument("--tasks-dir", type=Path, help="task YAML folder (default: tasks/)")
    p.add_argument("--cache-dir", type=Path, help="embedding cache (default: $MATTERALIGN_CACHE or ~/.cache/matteralign)")
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


def config_from_args(args: argparse.Namespace) -> RunConfig:
    return RunConfig(
        models=args.models,
        tasks=args.tasks,
        n_samples=parse_n_samples(args.n_samples),
        seed=args.seed,
        k=args.k,
        n_boot=args.n_boot,
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
    )


def main(args: argparse.Namespace) -> int:
    summary = run_benchmark(config_from_args(args))
    failed = [r for r in summary.results if r.status == "failed"]
    return 1 if failed and len(failed) == len(summary.results) else 0
