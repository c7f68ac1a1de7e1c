"""Where the jobs of a run execute: an Executor protocol with a local and a Ray implementation.

Stage 1 asks an executor to `prefetch` a task's missing embedding shards into the shared cache (a no-op
locally: extraction then runs in the loop); stage 2 asks it to `map` a pure job function over per-model
calls. Both implementations run the same functions, so they compute the same numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol

from benchmark.errors import ConfigError
from benchmark.pipeline.types import RunConfig
from benchmark.registry.schema import ModelEntry
from benchmark.structures import Dataset


class Executor(Protocol):
    name: str

    def prefetch(self, entries: list[ModelEntry], dataset: Dataset, root: Path) -> None:
        """Fill the embedding cache for these entries on this dataset (or do nothing)."""

    def map(self, fn: Callable[..., Any], calls: list[dict], shared: dict, label: str) -> list:
        """[fn(**call, **shared) for call in calls], in order."""


class LocalExecutor:
    """Everything in this process, in turn."""

    name = "local"

    def prefetch(self, entries: list[ModelEntry], dataset: Dataset, root: Path) -> None:
        return None

    def map(self, fn: Callable[..., Any], calls: list[dict], shared: dict, label: str) -> list:
        return [fn(**call, **shared) for call in calls]


class RayExecutor:
    """Embedding shards and stage-2 jobs as Ray tasks (cfg.ray_address / cfg.workers); results meet in the cache."""

    name = "ray"

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg

    def prefetch(self, entries: list[ModelEntry], dataset: Dataset, root: Path) -> None:
        from benchmark.executors.ray_executor import prefetch_embeddings

        prefetch_embeddings(entries, dataset, root, self.cfg)

    def map(self, fn: Callable[..., Any], calls: list[dict], shared: dict, label: str) -> list:
        from benchmark.executors.ray_executor import map_jobs

        return map_jobs(fn, calls, shared, self.cfg, label)


EXECUTORS: dict[str, Callable[[RunConfig], Executor]] = {
    "local": lambda cfg: LocalExecutor(),
    "ray": RayExecutor,
}


def executor_for(cfg: RunConfig) -> Executor:
    """The executor named by cfg.executor; ConfigError naming the choices otherwise."""
    try:
        return EXECUTORS[cfg.executor](cfg)
    except KeyError:
        raise ConfigError(f"executor {cfg.executor!r}: expected one of {', '.join(EXECUTORS)}") from None
