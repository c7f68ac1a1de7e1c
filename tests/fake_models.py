"""Cheap deterministic adapters for pipeline tests: known geometry, optional energy head, no weights."""

from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np

from benchmark.models.base import EmbedOutput, ModelAdapter
from benchmark.structures import Sample

ELEMENT_ENERGY = {1: -13.6, 6: -1029.0, 7: -1484.0, 8: -2041.0, 9: -2713.0}


def _descriptor(s: Sample, dim: int) -> np.ndarray:
    """Sorted interatomic distances and composition: invariant to rotation, translation and permutation."""
    pos = np.asarray(s.positions, dtype=np.float64)
    d = np.sort(np.linalg.norm(pos[:, None] - pos[None], axis=-1)[np.triu_indices(len(pos), 1)])
    hist = np.histogram(d, bins=dim - 5, range=(0.0, 8.0))[0].astype(np.float64)
    comp = np.array([np.sum(s.numbers == z) for z in (1, 6, 7, 8, 9)], dtype=np.float64)
    return np.concatenate([hist, comp])


class FakeAtomsAdapter(ModelAdapter):
    """A fixed random projection of a distance histogram, plus noise of a chosen size.

    options: dim (output width), noise (std of per-structure noise, seeded by the sample id),
    seed (projection), energy_noise (eV/atom std added to a composition energy; omitted: no energy head).
    """

    feature_source = "random projection of a sorted-distance histogram (test fixture)"

    def _load(self) -> None:
        dim = int(self.options.get("dim", 16))
        rng = np.random.default_rng(int(self.options.get("seed", 0)))
        self._proj = rng.normal(size=(dim, dim))

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        dim = self._proj.shape[0]
        noise = float(self.options.get("noise", 0.0))
        feats = []
        energies = []
        for s in samples:
            x = _descriptor(s, dim) @ self._proj
            rng = np.random.default_rng(zlib.crc32(s.id.encode()))
            feats.append(x + noise * rng.normal(size=dim) * np.abs(x).mean())
            base = sum(ELEMENT_ENERGY.get(int(z), -100.0) for z in s.numbers)
            energies.append(base + float(self.options.get("energy_noise", 0.0)) * s.n_atoms * rng.normal())
        out = EmbedOutput(np.asarray(feats))
        if "energy_noise" in self.options:
            out.energies = np.asarray(energies)
        return out


class BrokenAdapter(ModelAdapter):
    """Fails while embedding, to prove one model's failure does not stop the others."""


    def _load(self) -> None:
        pass

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        raise RuntimeError("simulated model crash")


class MissingWeightsAdapter(ModelAdapter):
    """Reports missing weights, like a hub model without a local checkpoint."""


    def unavailable_reason(self) -> str | None:
        return f"weights file {self.entry.checkpoint} not found; download it and set checkpoint: in models.yaml"

    def _load(self) -> None:
        raise AssertionError("must not be called")

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        raise AssertionError("must not be called")
