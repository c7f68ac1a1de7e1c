"""The typed seams between the stages of a run: what goes in (RunConfig), what each (model, task) gives
(ModelTaskResult), the reference of a task (ReferenceChoice) and what a run returns (RunSummary)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmark.registry.schema import ModelsFile, TaskSpec

@dataclass
class RunConfig:
    """What one invocation runs. None means: the default models / all tasks / the task's own size.

    models_file may be a path or a parsed `ModelsFile`; tasks_dir a folder or a {name: TaskSpec} dict, so a
    caller (the report's convergence experiment) can pass registry objects without writing YAML.
    executor: "local" or "ray" (see benchmark.pipeline.executors).
    """

    models: list[str] | None = None
    tasks: list[str] | None = None
    n_samples: int | dict[str, int] | None = None
    seed: int | None = None
    k: int = 10
    n_boot: int = 200
    n_perm: int = 20
    reference: str | None = None
    tracking_uri: str | None = None
    experiment: str | None = None
    models_file: Path | str | ModelsFile | None = None
    tasks_dir: Path | str | dict[str, TaskSpec] | None = None
    cache_dir: Path | None = None
    leaderboard_dir: Path | None = Path("leaderboard")
    progress: bool = True
    device: str = "cpu"
    run_name: str | None = None
    executor: str = "local"
    build_envs: bool = False
    ray_address: str | None = None
    workers: int | None = None

    def n_for(self, task: str) -> int | None:
        """The sample size asked for on `task` (None: the task's own)."""
        if isinstance(self.n_samples, dict):
            return self.n_samples.get(task)
        return self.n_samples


@dataclass
class ModelTaskResult:
    """One (model, task): its status, child run, metrics and (when ok) the embeddings stage 2 needs."""

    model: str
    task: str
    status: str
    reason: str = ""
    role: str = ""
    run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    features: np.ndarray | None = None
    ids: list[str] = field(default_factory=list)
    energies: np.ndarray | None = None
    cache_key: str = ""
    reused: bool = False
    errors: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReferenceChoice:
    model: str | None
    reason: str


@dataclass
class RunSummary:
    parent_run_id: str
    tracking_uri: str
    results: list[ModelTaskResult]
    references: dict[str, ReferenceChoice]
    leaderboard: dict[str, Path] = field(default_factory=dict)
