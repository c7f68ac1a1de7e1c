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
    #: run without confidence intervals (n_boot must then be 0); the gate refuses such runs
    no_ci: bool = False
    #: IDCor permutations (p-value floor 1 / (n_perm + 1) = 0.01): ~2.3 ms each at n = 1,000, so 99 add ~0.2 s to
    #: a model's ~1.2 s stage 2 there; 999 would add ~2.3 s, twice the rest of stage 2 (pass --n-perm 999 for 0.001)
    n_perm: int = 99
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
    #: the frozen board definition: a path, None = `resolve_board_file()` (leaderboard/board.yaml), "none" = no board
    board_file: Path | str | None = None

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
    #: digest of the weights the embeddings came from (the embedding cache entry's meta)
    checkpoint_digest: str = ""
    reused: bool = False
    errors: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: the frozen board whose task this is ("<name>@<version>"; "" when the task is on no board)
    board: str = ""
    #: why this result is an exploration run, not a board result ("" = a board result, or no board)
    exploration: str = ""
    #: bootstrap replicates of cknna_to_ref (resamples shared by every model of the task), for rank intervals
    replicates: np.ndarray | None = None
    #: why no structure of the task is one the model reads ("no SMILES"), when skipped for that (said once per
    #: task, not per model); "" otherwise
    outside_modality: str = ""


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
    #: tasks whose data could not be loaded -> the loader's message (their results are all skipped)
    skipped_tasks: dict[str, str] = field(default_factory=dict)

    def exit_code(self) -> int:
        """0: every task ran, each with a reference, and no (model, task) failed (a model that cannot run here
        is a skip, as `matteralign models` reports, and does not count); 1: some (model, task) failed, a task's
        data could not be loaded, or a task that ran has no reference (no alignment there); 2: nothing usable
        (no (model, task) produced embeddings, or no task that produced them has a reference)."""
        return self._verdict()[0]

    def exit_message(self) -> str:
        """One line saying why the exit status is not 0 ("" when it is)."""
        return self._verdict()[1]

    def _verdict(self) -> tuple[int, str]:
        ok = [r for r in self.results if r.status == "ok"]
        if not ok:
            why = next((r.reason for r in self.results if r.reason), "no model was selected")
            return 2, f"nothing usable: no (model, task) produced embeddings (e.g. {why[:300]})"
        no_ref = sorted({r.task for r in ok if not (c := self.references.get(r.task)) or not c.model})
        if len(no_ref) == len({r.task for r in ok}):
            why = self.references[no_ref[0]].reason if no_ref[0] in self.references else "none chosen"
            return 2, f"nothing usable: no task has a reference, so no alignment was computed ({no_ref[0]}: {why[:300]})"
        failed = sorted({f"{r.model}/{r.task}" for r in self.results if r.status == "failed"})
        parts = []
        if failed:
            parts.append(f"{len(failed)} (model, task) failed: {', '.join(failed[:8])}")
        if self.skipped_tasks:
            parts.append(f"task(s) not loaded: {', '.join(sorted(self.skipped_tasks))}")
        if no_ref:
            parts.append(f"no reference (no alignment) on {', '.join(no_ref)}")
        return (1, "; ".join(parts)) if parts else (0, "")
