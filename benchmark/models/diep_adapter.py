"""DIEP (M3GNet-style potential, trained on MatPES r2SCAN); the `diep_fold1` model ships in the `diep` wheel.

The model directory (`checkpoint`: `diep_fold1` or a path to an exported DIEP directory with model.json,
model.pt and state.pt) is loaded with `diep.pretrained.load_potential`, which never downloads. Graphs are
built with DIEP's own `Atoms2Graph` at the model's cutoff; molecules are read as non-periodic ASE atoms.
`options.random_init: true` (with `seed`) re-draws every weight of the same architecture (control; no energies).
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmark.errors import ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter, file_digest
from benchmark.models.random_init import randomize_parameters
from benchmark.structures import Sample

SHIPPED = ("diep_fold1",)
FILES = ("model.json", "model.pt", "state.pt")


class DIEPAdapter(ModelAdapter):
    """Node features after the last graph block, mean-pooled over atoms; total energy (eV) from the potential."""

    packages = ("diep", "torch_geometric")
    feature_source = (
        "node_feat output of the last `graph_layers` block of diep.models.DIEP (forward hook): the 64 per-atom "
        "channels that the weighted-atom energy readout (final_layer) reads, mean-pooled over atoms"
    )

    def __init__(self, entry, device: str = "cpu") -> None:
        super().__init__(entry, device)
        self.checkpoint = entry.checkpoint or "diep_fold1"
        self._captured: list = []

    def model_dir(self) -> Path:
        if self.checkpoint in SHIPPED:
            spec = importlib.util.find_spec("diep")
            if spec is None or spec.origin is None:
                raise ModelUnavailable("package diep is not installed; install with: pip install diep==2.0.0")
            return Path(spec.origin).parent / "pretrained_models" / self.checkpoint
        return Path(self.checkpoint).expanduser()

    def weights_path(self) -> Path:
        directory = self.model_dir()
        missing = [f for f in FILES if not (directory / f).is_file()]
        if missing:
            raise ModelUnavailable(
                f"DIEP checkpoint {self.checkpoint!r}: {directory} lacks {', '.join(missing)}; set `checkpoint:` to "
                f"an exported DIEP model directory or one of {', '.join(SHIPPED)} (shipped in the diep wheel)"
            )
        return directory / "model.pt"

    def weights_digest(self) -> str:
        """sha256 over the digests of the model directory's files (model.pt alone is not the model)."""
        directory = self.model_dir()
        return hashlib.sha256("|".join(file_digest(directory / f) for f in FILES).encode()).hexdigest()

    def _load(self) -> None:
        import warnings

        import torch
        from diep.ext.ase import Atoms2Graph
        from diep.pretrained import load_potential

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            potential = load_potential(self.model_dir(), device=self.device, stress=False)
        potential.calc_forces = False
        potential.calc_stresses = False
        if self.random_init:
            randomize_parameters(potential.model, self.seed)
        self.potential = potential
        model = potential.model
        self.converter = Atoms2Graph(model.element_types, model.cutoff)
        self.known = frozenset(model.element_types)
        model.graph_layers[-1].register_forward_hook(lambda module, args, out: self._captured.append(out[1]))
        self._torch = torch

    def cannot_embed(self, sample: Sample) -> str | None:
        self.load()
        from ase.data import chemical_symbols

        unknown = sorted({chemical_symbols[int(z)] for z in sample.numbers} - self.known)
        if unknown:
            return f"elements {unknown} are not in DIEP's element types"
        return None

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        self.load()
        torch = self._torch
        features, energies = [], []
        for s in samples:
            graph, lattice, state = self.converter.get_graph(s.to_atoms())
            self._captured.clear()
            with torch.no_grad():
                energy = self.potential(graph.to(self.device), lattice.to(self.device), state)[0]
            features.append(self._captured[-1].detach().cpu().numpy().astype(np.float64).mean(axis=0))
            energies.append(float(energy.reshape(-1)[0]))
        out = np.vstack(features) if features else np.zeros((0, int(self.potential.model.units)))
        return EmbedOutput(features=out, energies=None if self.random_init else np.asarray(energies))
