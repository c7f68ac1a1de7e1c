"""Strict schemas for models.yaml and tasks/*.yaml: unknown keys are rejected, every field is typed."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KEY_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
ADAPTER_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

Modality = Literal["atoms", "smiles", "text", "protein"]
Domain = Literal["molecules", "materials", "text", "protein", "none"]
Role = Literal["id", "ood"]


def check_key(value: str, what: str = "key") -> str:
    """Keys become file and directory names: allow only a safe, lowercase alphabet (no path traversal)."""
    if not isinstance(value, str) or not KEY_RE.match(value):
        raise ValueError(
            f"{what} {value!r} must be 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
        )
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelEntry(Strict):
    """One model of the zoo. `adapter` is imported only when the model is run."""

    key: str
    name: str
    family: str
    modality: Modality
    domain: Domain = Field(description="the training domain, which decides whether a task is id or ood for it")
    adapter: str = Field(description="module:Class of the adapter, imported lazily")
    checkpoint: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    version: str = "1"
    training_data: str = ""
    parameters: int | None = None
    energy_head: bool = False
    license: str = ""
    citation: str = ""
    default: bool = Field(False, description="part of the embedded default run (weights ship in a wheel)")
    requirements: list[str] = Field(
        default_factory=list,
        description="pip specs; for isolated entries the venv's contents ('--no-deps pkg==1.0' installs without deps)",
    )
    environment: Literal["main", "isolated"] = Field(
        "main", description="isolated: embed in a cached venv built from `requirements`, hand back via the cache"
    )
    layer: str = "last"
    pooling: Literal["mean", "sum", "max", "cls", "last_token", "none"] = "mean"
    dtype: Literal["float32", "float64"] = "float32"
    batch_size: int = Field(32, ge=1, le=100_000)
    description: str = ""

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        return check_key(v, "model key")

    @field_validator("adapter")
    @classmethod
    def _adapter(cls, v: str) -> str:
        if not ADAPTER_RE.match(v):
            raise ValueError(f"adapter {v!r} must look like 'package.module:ClassName'")
        return v


class ReferenceConfig(Strict):
    model: str = Field(description="key of the reference model")
    fallback: Literal["auto", "none"] = Field(
        "auto", description="auto: the model with the lowest energy MAE on the task when the reference cannot run"
    )


class ModelsFile(Strict):
    reference: ReferenceConfig
    models: list[ModelEntry]

    @model_validator(mode="after")
    def _unique(self) -> "ModelsFile":
        seen: set[str] = set()
        for m in self.models:
            if m.key in seen:
                raise ValueError(f"model key {m.key!r} appears twice")
            seen.add(m.key)
        if self.reference.model not in seen:
            raise ValueError(f"reference.model {self.reference.model!r} is not a key under models")
        return self


class TaskSpec(Strict):
    """One task: where its structures come from, how many are sampled, and its role per model domain."""

    name: str
    version: str
    description: str
    loader: str = Field(description="module:function returning the full list of Samples")
    options: dict[str, Any] = Field(default_factory=dict)
    source: str
    level_of_theory: str = Field(description="of the energy labels; 'none' when the task has none")
    energy_reference: Literal["per_element", "none"] = Field(
        "per_element",
        description="per_element: fit one energy offset per element before the MAE (model zero != label zero)",
    )
    license: str = ""
    n_samples: int = Field(ge=3)
    paper_n_samples: int | None = Field(
        None, ge=3, description="the size a paper-scale run uses (all of the pool where it is smaller); None: n_samples"
    )
    seed: int = 0
    roles: dict[Domain, Role]
    reference: str | None = Field(
        None, description="model key taken as this task's reference when it ran (before models.yaml reference.model)"
    )
    track: str = Field(
        "main", description="the board track (a frozen set of tasks ranked together, e.g. materials, molecules, "
        "proteins): a model is ranked in a track only with a result on every task of it"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_key(v, "task name")

    @field_validator("loader")
    @classmethod
    def _loader(cls, v: str) -> str:
        if not ADAPTER_RE.match(v):
            raise ValueError(f"loader {v!r} must look like 'package.module:function'")
        return v

    def role_for(self, domain: str) -> str:
        """id/ood for a model domain; a domain the task does not name is out of distribution."""
        return self.roles.get(domain, "ood")  # type: ignore[call-overload]


class BoardReference(Strict):
    """A task's pinned reference: the model key, the digest of its weights, and the cache key of its embedding."""

    model: str
    checkpoint_digest: str = Field(min_length=1)
    cache_key: str = Field(description="content-addressed embedding cache key of the reference on the board's sample")
    reason: str = Field(description="how the reference was chosen when the board was frozen")


class BoardTask(Strict):
    """One task of a board: its version and the exact sample (size, seed, ids digest) every result must use."""

    version: str
    n_samples: int = Field(ge=3)
    seed: int
    ids_digest: str = Field(min_length=1, description="benchmark.structures.ids_digest of the sample ids, in order")
    data_digest: str = ""
    reference: BoardReference


class BoardSpec(Strict):
    """A frozen benchmark definition (leaderboard/board.yaml): what every board result is measured on and against.

    Built once from a finished run (`matteralign board freeze`, or the default run when no board exists) and
    never edited: a different task sample or reference is a new `version`.
    """

    name: str = "matteralign"
    version: int = Field(ge=1)
    benchmark_version: str
    k: int = Field(ge=1, description="the k of cknna_to_ref / mutual_knn_to_ref, the ranked metric")
    k_reported: list[int] = Field(description="every k at which CKNNA is reported (one k_max graph serves all)")
    ranked_metric: str = "cknna_to_ref"
    aggregation: Literal["mean"] = Field("mean", description="how a model's per-task scores become its board score")
    coverage: Literal["all_tasks"] = Field(
        "all_tasks", description="a model is ranked only with a board result on every task of the board"
    )
    created: str = ""
    source_run: str = Field("", description="the MLflow parent run the board was frozen from")
    board_run: str = Field("", description="the MLflow run (kind board) holding board.yaml and the references' "
                           "embeddings")
    tasks: dict[str, BoardTask]
    tracks: dict[str, list[str]] = Field(
        description="track name -> its tasks; a model is ranked in a track only with a board result on each of them"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_key(v, "board name")

    @model_validator(mode="after")
    def _consistent(self) -> "BoardSpec":
        if not self.tasks:
            raise ValueError("a board needs at least one task")
        if self.k not in self.k_reported:
            raise ValueError(f"k_reported {self.k_reported} must include k = {self.k}")
        for name in self.tasks:
            check_key(name, "task name")
        for track, names in self.tracks.items():
            check_key(track, "track name")
            unknown = [t for t in names if t not in self.tasks]
            if unknown or not names:
                raise ValueError(f"track {track!r} lists {unknown or 'no tasks'}: every task of a track must be a "
                                 "task of the board")
        orphans = sorted(set(self.tasks) - {t for names in self.tracks.values() for t in names})
        if orphans:
            raise ValueError(f"task(s) {orphans} are in no track; every board task belongs to a track")
        return self

    @property
    def id(self) -> str:
        """"<name>@<version>", the value of a board run's tag `matteralign.board`."""
        return f"{self.name}@{self.version}"
