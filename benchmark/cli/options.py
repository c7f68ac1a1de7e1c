"""Options and value parsers shared by several commands (one definition each)."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.errors import ConfigError


def csv_list(value: str) -> list[str] | None:
    """Comma-separated names; an empty string (an MLproject default, or `''` as MLflow passes it) means None."""
    value = value.strip().strip("'\"")
    return [v.strip() for v in value.split(",") if v.strip()] or None


def parse_n_samples(values: list[str] | None) -> int | dict[str, int] | None:
    """`--n-samples 500` for every task, or per task: `--n-samples qm9=10000,crystals=100` (a comma list) and/or
    repeated `--n-samples qm9=10000 --n-samples crystals=100`. Task names are checked against the tasks by the run.

    Empty values (and MLflow's `''` for an empty parameter) mean the task's own size.
    """
    values = [part.strip().strip("'\"") for v in values or [] for part in v.strip().strip("'\"").split(",")]
    values = [v for v in values if v]
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
        task = task.strip()
        if not task:
            raise ConfigError(f"--n-samples {v!r}: expected TASK=INTEGER with a task name")
        if task in out and out[task] != n:
            raise ConfigError(f"--n-samples: task {task!r} is given twice ({out[task]} and {n})")
        out[task] = n
    return out


def add_store_options(p: argparse.ArgumentParser) -> None:
    """--tracking-uri and --experiment: where runs are written / read."""
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--experiment", default=None,
                   help="MLflow experiment (default: $MATTERALIGN_EXPERIMENT or 'matteralign')")


def add_board(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", default=None, metavar="FILE|none",
                   help="frozen board definition (default: $MATTERALIGN_BOARD, else leaderboard/board.yaml; "
                        "'none': no board, references chosen per run)")


def add_models_file(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-file", type=Path, default=None, help="models registry (default: models.yaml)")


def add_tasks_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks-dir", type=Path, default=None, help="task YAML folder (default: tasks/)")


def add_cache_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="embedding cache (default: $MATTERALIGN_CACHE or ~/.cache/matteralign)")


def add_n_samples(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-samples", action="append", metavar="N|TASK=N[,TASK=N...]",
                   help="sample size: one N for every task, or TASK=N pairs (comma list or repeated); "
                        "an unknown task name is an error (default: the task's)")


def add_k(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=int, default=10, help="neighbours for CKNNA / mutual kNN (default 10)")


def quiet_third_party() -> None:
    """No progress bars or INFO chatter from MLflow / Hugging Face; the run prints its own one-line status."""
    import logging
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("mlflow", "alembic", "lightning", "pytorch_lightning", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.WARNING)
