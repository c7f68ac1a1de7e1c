"""Chemprop D-MPNN (Yang et al. 2019; chemprop 2) checkpoints shipped in the `admet-ai` wheel (ADMET-AI, TDC ADMET).

`admet-ai` ships two 5-member ensembles (`admet_regression`, `admet_classification`); `checkpoint` names one
member as `<ensemble>/model_<k>` (or is a path to any chemprop 2 `.pt` model file). The molecule vector is
chemprop's learned fingerprint: bond-message passing (3 steps, 300 hidden), mean aggregation over atoms, and the
model's batch norm, before the feed-forward task head. These ADMET-AI models use no extra descriptors, so the
fingerprint is the 300 D-MPNN channels alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from benchmark.models.base import EmbedOutput, ModelAdapter, require_checkpoint, shipped_or_path
from benchmark.structures import Sample

SHIPPED_CHECKPOINTS = {
    f"{group}/model_{k}": f"{group}/model_{k}.pt"
    for group in ("admet_regression", "admet_classification")
    for k in range(5)
}


class ChempropAdapter(ModelAdapter):
    """chemprop MPNN.fingerprint(): aggregated D-MPNN atom states (300), per molecule."""

    packages = ("chemprop", "rdkit", "torch")
    feature_source = (
        "chemprop.models.MPNN.fingerprint(): BondMessagePassing's atom hidden states after the last message-"
        "passing step, mean-aggregated over atoms and passed through the model's BatchNorm (eval), i.e. the "
        "input of the feed-forward predictor; the molecular graph is chemprop's default featurisation of the SMILES"
    )

    def __init__(self, entry, device: str = "cpu") -> None:
        super().__init__(entry, device)
        self.checkpoint = entry.checkpoint or "admet_regression/model_0"

    def weights_path(self) -> Path:
        return require_checkpoint(
            shipped_or_path(self.checkpoint, "admet_ai", "resources/models", SHIPPED_CHECKPOINTS),
            self.checkpoint, "Chemprop", "admet_ai", SHIPPED_CHECKPOINTS,
        )

    def _load(self) -> None:
        import logging
        import warnings

        import torch
        from chemprop.data import MoleculeDatapoint, MoleculeDataset
        from chemprop.data.collate import collate_batch
        from chemprop.models import load_model
        from rdkit import Chem, RDLogger

        RDLogger.DisableLog("rdApp.*")
        logging.getLogger("lightning").setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = load_model(str(self.weights_path()), multicomponent=False).to(self.device).eval()
        self._datapoint, self._dataset, self._collate = MoleculeDatapoint, MoleculeDataset, collate_batch
        self._chem = Chem
        self._torch = torch
        self.dim = int(self.model.message_passing.output_dim)

    def cannot_embed(self, sample: Sample) -> str | None:
        self.load()
        mol = self._chem.MolFromSmiles(sample.smiles)
        if mol is None:
            return f"RDKit cannot parse SMILES {sample.smiles!r}"
        if mol.GetNumAtoms() == 0:
            return "SMILES has no heavy atoms"
        return None

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        self.load()
        torch = self._torch
        if not samples:
            return EmbedOutput(features=np.zeros((0, self.dim)))
        mols = []
        for s in samples:
            mol = self._chem.MolFromSmiles(s.smiles or "")
            if mol is None:
                raise ValueError(f"sample {s.id!r}: RDKit cannot parse SMILES {s.smiles!r}")
            mols.append(mol)
        dataset = self._dataset([self._datapoint(mol=m) for m in mols])
        batch = self._collate([dataset[i] for i in range(len(dataset))])
        with torch.no_grad():
            batch.bmg.to(self.device)
            fp = self.model.fingerprint(batch.bmg, batch.V_d, batch.X_d)
        return EmbedOutput(features=fp.cpu().numpy().astype(np.float64))
