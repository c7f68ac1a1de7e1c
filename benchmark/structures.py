"""The structures a task hands to every model: one `Sample` per structure, one `Dataset` per task.

A sample carries every representation a model may need (3D atoms, SMILES, free text, protein sequence);
each adapter reads the one of its modality and says which samples it cannot handle.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

HARTREE_TO_EV = 27.211386245988
KCAL_MOL_TO_EV = 0.0433641043


@dataclass(frozen=True)
class Sample:
    """One structure. `energy` is a total energy in eV (None when the task has no label)."""

    id: str
    numbers: np.ndarray | None = None
    positions: np.ndarray | None = None
    cell: np.ndarray | None = None
    pbc: bool = False
    charge: int = 0
    smiles: str | None = None
    text: str | None = None
    sequence: str | None = None
    energy: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    #: protein chains: (n_residues, 4, 3) coordinates of N, CA, C, O per residue of `sequence`, in A
    backbone: np.ndarray | None = None
    #: protein chains: the author residue number of each residue of `sequence` (gaps show as jumps)
    residue_ids: np.ndarray | None = None

    @property
    def n_atoms(self) -> int:
        return 0 if self.numbers is None else int(len(self.numbers))

    def to_atoms(self):
        """The sample as an `ase.Atoms` (raises ValueError for samples without 3D coordinates)."""
        if self.numbers is None or self.positions is None:
            raise ValueError(f"sample {self.id!r} has no 3D structure")
        from ase import Atoms

        atoms = Atoms(
            numbers=self.numbers,
            positions=self.positions,
            cell=self.cell if self.cell is not None else np.zeros((3, 3)),
            pbc=self.pbc,
        )
        atoms.info["charge"] = self.charge
        return atoms

    def to_structure(self, vacuum: float):
        """The sample as a pymatgen Structure: its own cell when periodic, else a box with `vacuum` A around it
        (for crystal models that need a lattice to embed a molecule)."""
        if self.numbers is None or self.positions is None:
            raise ValueError(f"sample {self.id!r} has no 3D structure")
        from pymatgen.core import Lattice, Structure

        numbers = [int(z) for z in self.numbers]
        positions = np.asarray(self.positions, dtype=np.float64)
        if self.pbc:
            return Structure(Lattice(np.asarray(self.cell, float)), numbers, positions, coords_are_cartesian=True)
        shifted = positions - positions.min(axis=0)
        lattice = Lattice(np.diag(shifted.max(axis=0) + vacuum))
        return Structure(lattice, numbers, shifted + vacuum / 2, coords_are_cartesian=True)

    def content(self) -> dict[str, Any]:
        """A JSON-able view of everything a model could read; the basis of the data digest."""
        return {
            "id": self.id,
            "numbers": None if self.numbers is None else np.asarray(self.numbers).tolist(),
            "positions": None if self.positions is None else np.round(np.asarray(self.positions, float), 8).tolist(),
            "cell": None if self.cell is None else np.round(np.asarray(self.cell, float), 8).tolist(),
            "pbc": bool(self.pbc),
            "charge": int(self.charge),
            "smiles": self.smiles,
            "text": self.text,
            "sequence": self.sequence,
            "energy": self.energy,
            **self._protein_content(),
        }

    def _protein_content(self) -> dict[str, Any]:
        """Backbone keys only when set, so the digests of tasks without proteins are unchanged."""
        out: dict[str, Any] = {}
        if self.backbone is not None:
            out["backbone"] = np.round(np.asarray(self.backbone, float), 8).tolist()
        if self.residue_ids is not None:
            out["residue_ids"] = np.asarray(self.residue_ids).astype(int).tolist()
        return out


@dataclass
class Dataset:
    """The sampled structures of one task, in a fixed order.

    `metadata` carries what the task's sampler reports about its selection, e.g. `excluded`: {reason: count}
    of the structures it left out before sampling (see benchmark.tasks.common.Screen); not part of the digest.
    """

    task: str
    version: str
    samples: list[Sample]
    _digest: str | None = field(default=None, repr=False)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.samples]

    @property
    def digest(self) -> str:
        """sha256 over the content of every sample, in order: any change to the data changes it."""
        if self._digest is None:
            h = hashlib.sha256()
            for s in self.samples:
                h.update(json.dumps(s.content(), sort_keys=True).encode())
            self._digest = h.hexdigest()
        return self._digest

    @property
    def energies(self) -> np.ndarray:
        """Total energy labels in eV, NaN where a sample has none."""
        return np.array([np.nan if s.energy is None else s.energy for s in self.samples], dtype=float)

    @property
    def has_labels(self) -> bool:
        return bool(np.isfinite(self.energies).any())

    def subset(self, indices: Sequence[int]) -> "Dataset":
        return Dataset(self.task, self.version, [self.samples[i] for i in indices], metadata=dict(self.metadata))


def ids_digest(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()
