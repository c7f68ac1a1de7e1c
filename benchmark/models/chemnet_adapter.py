"""ChemNet (Preuer et al. 2018), the network behind the Frechet ChemNet Distance; weights ship in the `fcd` wheel.

A CNN + 2-layer LSTM trained on ChEMBL bioactivities; FCD compares molecules by the 512 activations of its
last LSTM layer, which is what this adapter returns. SMILES are canonicalised with RDKit first (as `fcd.get_fcd`
does) and one-hot encoded with fcd's own tokenizer, padded to its default length 350.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmark.errors import ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter
from benchmark.structures import Sample

WEIGHTS = "ChemNet_v0.13_pretrained.pt"
PAD_LEN = 350


class ChemNetAdapter(ModelAdapter):
    """FCD's ChemNet penultimate layer (512) per SMILES."""

    packages = ("fcd", "rdkit", "torch")
    feature_source = (
        "output of fcd.load_ref_model() (the Keras-imported ChemNet truncated as FCD uses it): the last time step "
        "of the second LSTM layer, 512 channels, i.e. the penultimate layer before ChemNet's 6,000 bioactivity "
        "outputs; input is the RDKit-canonical SMILES"
    )

    def weights_path(self) -> Path:
        spec = importlib.util.find_spec("fcd")
        if spec is None or spec.origin is None:
            raise ModelUnavailable("package fcd is not installed; install with: pip install fcd==1.2.2")
        path = Path(spec.origin).parent / WEIGHTS
        if not path.is_file():
            raise ModelUnavailable(f"{path} is missing: reinstall fcd==1.2.2 (its wheel ships the ChemNet weights)")
        return path

    def _load(self) -> None:
        import torch
        from fcd.fcd import load_ref_model
        from fcd.utils import get_one_hot
        from rdkit import Chem, RDLogger

        RDLogger.DisableLog("rdApp.*")
        self.model = load_ref_model(str(self.weights_path())).to(self.device).eval()
        self._one_hot = get_one_hot
        self._chem = Chem
        self._torch = torch

    def canonical(self, smiles: str) -> str | None:
        mol = self._chem.MolFromSmiles(smiles)
        return None if mol is None else self._chem.MolToSmiles(mol)

    def cannot_embed(self, sample: Sample) -> str | None:
        self.load()
        canonical = self.canonical(sample.smiles)
        if canonical is None:
            return f"RDKit cannot parse SMILES {sample.smiles!r}"
        if len(canonical) + 1 > PAD_LEN:
            return f"canonical SMILES longer than ChemNet's {PAD_LEN - 1} characters"
        return None

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        self.load()
        torch = self._torch
        if not samples:
            return EmbedOutput(features=np.zeros((0, 512)))
        rows = []
        for s in samples:
            canonical = self.canonical(s.smiles or "")
            if canonical is None:
                raise ValueError(f"sample {s.id!r}: RDKit cannot parse SMILES {s.smiles!r}")
            one_hot = self._one_hot(canonical, pad_len=PAD_LEN)
            rows.append(one_hot / one_hot.shape[1])  # the scaling fcd.utils.SmilesDataset applies
        x = torch.as_tensor(np.stack(rows), dtype=torch.float32).transpose(1, 2).to(self.device)
        with torch.no_grad():
            out = self.model(x)
        return EmbedOutput(features=out.cpu().numpy().astype(np.float64))
