"""OpenFF NAGL (Wang et al., 2024): graph networks that predict AM1-BCC partial charges for force fields.

The models ship in the `openff-nagl-models` wheel (openff/nagl_models/models/am1bcc/openff-gnn-am1bcc-*.pt);
the code is the PyPI build `acellera-openff-nagl` with the OpenFF toolkit, units and utilities from their
`acellera-` PyPI builds (the upstream ones are conda-only) and two dependencies none of them declares
(python-constraint, for the toolkit's RDKit stereo code, and Pint via units). These sit in an isolated venv so
the `openff` namespace and its pins stay out of the main environment.

Input: a SMILES, read by the OpenFF toolkit (RDKit backend; undefined stereo allowed), hydrogens explicit, as
NAGL featurises it for its charges (`GraphMolecule.from_openff` with the model's own atom/bond features).
Features: the output of the convolution module (the last of its GraphSAGE layers, 512-d per atom), which the
charge readout reads; mean over all atoms, hydrogens included (each covalent fragment run alone). Cost is
featurisation (the toolkit's perception), about 1.5-4 molecules/s on 2 threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from benchmark.errors import ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter
from benchmark.models.isolated_weights import shipped_file
from benchmark.structures import Sample

SHIPPED = ("openff-gnn-am1bcc-1.0.0", "openff-gnn-am1bcc-0.1.0-rc.3")
INSTALL = "see the requirements of models.yaml's openff-nagl-am1bcc entry (the OpenFF stack is not on plain pip)"
#: the AM1-BCC models' chemical domain (GNNModel.chemical_domain.allowed_elements)
ELEMENTS = frozenset({1, 6, 7, 8, 9, 15, 16, 17, 35, 53})


class NAGLAdapter(ModelAdapter):
    """OpenFF NAGL AM1-BCC charge model: per-atom convolution features, mean over atoms (512)."""

    packages: ClassVar[tuple[str, ...]] = ("openff", "torch", "rdkit")
    feature_source: ClassVar[str] = (
        "NAGL GNNModel.convolution_module output (last GraphSAGE layer, 512 per atom, the charge readout's input), "
        "mean over all atoms including hydrogens"
    )

    def weights_path(self) -> Path:
        name = self.entry.checkpoint or SHIPPED[0]
        if name not in SHIPPED:
            raise ModelUnavailable(f"model {self.entry.key!r}: checkpoint {name!r} is not one of the shipped NAGL "
                                   f"models ({', '.join(SHIPPED)})")
        return shipped_file("openff.nagl_models", self.entry, f"models/am1bcc/{name}.pt", INSTALL)

    def _load(self) -> None:
        import torch

        from openff.nagl import GNNModel

        model = GNNModel.load(str(self.weights_path()), eval_mode=True)
        self.model = model._as_nagl() if model._is_dgl else model
        self.model.eval().to(self.device)
        self.config = model.config
        self._torch = torch

    def cannot_embed(self, sample: Sample) -> str | None:
        from rdkit import Chem

        mol = Chem.MolFromSmiles(sample.smiles)
        if mol is None or mol.GetNumAtoms() == 0:
            return "SMILES that RDKit cannot parse"
        outside = sorted({a.GetSymbol() for a in mol.GetAtoms() if a.GetAtomicNum() not in ELEMENTS})
        if outside:
            return f"element(s) {', '.join(outside)} outside NAGL's AM1-BCC domain (H C N O F P S Cl Br I)"
        return None

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        self.load()
        return EmbedOutput(features=np.stack([self._one(s.smiles) for s in samples]))

    def _one(self, smiles: str) -> np.ndarray:
        """Mean of the per-atom features over every atom; each covalent fragment (salt, solvent) is run on its
        own, as NAGL's compute_properties does (its graph code fails on a multi-fragment graph)."""
        from openff.nagl.molecule._graph.molecule import GraphMolecule
        from openff.nagl.toolkits.openff import split_up_molecule
        from openff.toolkit import Molecule

        fragments, _ = split_up_molecule(Molecule.from_smiles(smiles, allow_undefined_stereo=True))
        per_atom = []
        for fragment in fragments:
            graph = GraphMolecule.from_openff(fragment, atom_features=self.config.atom_features,
                                              bond_features=self.config.bond_features)
            with self._torch.inference_mode():
                self.model.convolution_module(graph)
            per_atom.append(graph.graph.ndata[graph._graph_feature_name].double().cpu().numpy())
        return np.concatenate(per_atom).mean(0)
