"""Two no-training controls: what alignment a fixed, hand-made representation reaches.

- `MorganFingerprintAdapter`: RDKit Morgan count fingerprint of the SMILES (radius 2, 2048 bits).
- `StructuralDescriptorAdapter`: element fractions plus smeared radial distribution functions of the 3D atoms,
  for molecules and periodic crystals alike; invariant to rotation, translation and atom order by construction.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from benchmark.models.base import EmbedOutput, ModelAdapter
from benchmark.structures import Sample

MAX_Z = 100


class MorganFingerprintAdapter(ModelAdapter):
    """Morgan (ECFP4-like) count fingerprint, folded to `n_bits`, as a float vector."""

    packages = ("rdkit",)
    feature_source = (
        "RDKit rdFingerprintGenerator Morgan count fingerprint (radius 2, 2048 bits by default) of the SMILES: "
        "the standard fixed molecular representation, a no-training baseline for the SMILES/text models"
    )

    def __init__(self, entry, device: str = "cpu") -> None:
        super().__init__(entry, device)
        self.radius = int(self.options.get("radius", 2))
        self.n_bits = int(self.options.get("n_bits", 2048))

    def _load(self) -> None:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import rdFingerprintGenerator

        RDLogger.DisableLog("rdApp.*")
        self._chem = Chem
        self.generator = rdFingerprintGenerator.GetMorganGenerator(radius=self.radius, fpSize=self.n_bits)

    def cannot_embed(self, sample: Sample) -> str | None:
        self.load()
        if self._chem.MolFromSmiles(sample.smiles) is None:
            return f"RDKit cannot parse SMILES {sample.smiles!r}"
        return None

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        self.load()
        features = np.zeros((len(samples), self.n_bits))
        for i, s in enumerate(samples):
            mol = self._chem.MolFromSmiles(s.smiles or "")
            if mol is None:
                raise ValueError(f"sample {s.id!r}: RDKit cannot parse SMILES {s.smiles!r}")
            features[i] = self.generator.GetCountFingerprintAsNumPy(mol)
        return EmbedOutput(features=features)


class StructuralDescriptorAdapter(ModelAdapter):
    """Element-fraction vector (Z=1..100) + per-atom radial distribution function + Z-weighted RDF.

    The RDFs count, per atom, neighbours at distance r (Gaussian-smeared onto `n_bins` centres up to `r_max`,
    so the vector is a smooth function of the positions); periodic images are included for crystals through
    `ase.neighborlist`. Dividing by the atom count makes a supercell give the same vector as its primitive
    cell. The second RDF weights each pair by Z_i*Z_j/100 so that pairs of different chemistry separate.
    """

    packages = ("ase",)
    feature_source = (
        "hand-made, no learned weights: element fractions over Z=1..100, then a Gaussian-smeared radial "
        "distribution function of all atom pairs within r_max (ase.neighborlist, periodic images included) per "
        "atom, then the same RDF weighted by Z_i*Z_j/100; a structural baseline for the MLIPs"
    )

    def __init__(self, entry, device: str = "cpu") -> None:
        super().__init__(entry, device)
        self.r_max = float(self.options.get("r_max", 6.0))
        self.n_bins = int(self.options.get("n_bins", 60))
        self.sigma = float(self.options.get("sigma", self.r_max / self.n_bins))
        self.centres = (np.arange(self.n_bins) + 0.5) * (self.r_max / self.n_bins)

    def _load(self) -> None:
        from ase.neighborlist import neighbor_list

        self._neighbor_list = neighbor_list

    def cannot_embed(self, sample: Sample) -> str | None:
        numbers = np.asarray(sample.numbers)
        if numbers.min() < 1 or numbers.max() > MAX_Z:
            return f"the structural descriptor covers Z=1..{MAX_Z}"
        return None

    @property
    def dim(self) -> int:
        return MAX_Z + 2 * self.n_bins

    def describe(self, sample: Sample) -> np.ndarray:
        """The descriptor of one structure."""
        numbers = np.asarray(sample.numbers, dtype=np.int64)
        n = len(numbers)
        fractions = np.bincount(numbers - 1, minlength=MAX_Z)[:MAX_Z] / n
        first, second, dist = self._neighbor_list("ijd", sample.to_atoms(), self.r_max)
        kernel = np.exp(-0.5 * ((dist[:, None] - self.centres[None, :]) / self.sigma) ** 2)
        kernel *= (self.r_max / self.n_bins) / (self.sigma * np.sqrt(2 * np.pi))
        weights = numbers[first] * numbers[second] / 100.0
        rdf = kernel.sum(axis=0) / n
        weighted = (kernel * weights[:, None]).sum(axis=0) / n
        return np.concatenate([fractions, rdf, weighted])

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        self.load()
        features = np.zeros((len(samples), self.dim))
        for i, s in enumerate(samples):
            features[i] = self.describe(s)
        return EmbedOutput(features=features)
