"""annalog: a SMILES-to-SMILES transformer (analogue generator); checkpoint and vocabulary ship in its wheel.

Only the encoder is run (3 layers, 256 channels, 8 heads): its output per SMILES token, averaged over the
non-padding tokens (start and end tokens included, as the decoder attends to them), is the molecule's vector.
The encoder's positional table has 102 entries (100 SMILES tokens + start/end). A longer SMILES is read the way
long documents are read by fixed-context encoders: in consecutive windows of at most 100 tokens, each with its own
start/end tokens, and the token states of all windows are averaged, so every atom and bond token is seen and no
structure of a task is lost (pdb_ligands has 4 of 120 such SMILES). A SMILES of at most 100 tokens gives exactly
one window, the single-pass result.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmark.errors import ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter
from benchmark.structures import Sample

CHECKPOINT = "Lev_extended.pt"
VOCAB = "stereo_experiment_vocab_ttf.pkl"
MAX_LENGTH = 102
WINDOW = MAX_LENGTH - 2


class AnnalogAdapter(ModelAdapter):
    """Mean over tokens of annalog's transformer-encoder output (256)."""

    packages = ("annalog", "torch")
    feature_source = (
        "output of the encoder (annalog.model_files.seq2seq_attention.Encoder, after its 3rd layer's final "
        "LayerNorm) of the Seq2Seq model built by annalog.model_handler.SMILESModelHandler, mean over the "
        "non-padding tokens of the SMILES (the memory the decoder attends to); SMILES of more than 100 tokens in "
        "consecutive 100-token windows, token states averaged over all windows"
    )

    def resources(self) -> Path:
        spec = importlib.util.find_spec("annalog")
        if spec is None or spec.origin is None:
            raise ModelUnavailable("package annalog is not installed; install with: pip install annalog==1.0.6")
        return Path(spec.origin).parent / "ckpt_and_vocab"

    def weights_path(self) -> Path:
        path = self.resources() / CHECKPOINT
        if not path.is_file() or not (self.resources() / VOCAB).is_file():
            raise ModelUnavailable(f"{path.parent} lacks {CHECKPOINT} or {VOCAB}: reinstall annalog==1.0.6")
        return path

    def _load(self) -> None:
        import contextlib
        import io

        import torch
        from annalog.model_handler import SMILESModelHandler

        vocab = str(self.resources() / VOCAB)
        with contextlib.redirect_stdout(io.StringIO()):
            handler = SMILESModelHandler(vocab, vocab, str(self.weights_path()), device="cpu", max_length=MAX_LENGTH)
        self.field, _, self.model, _, _ = handler.get_model_and_fields()
        self.model.eval()
        self.pad = self.field.vocab.stoi["<pad>"]
        self.dim = int(self.model.encoder.tok_embedding.embedding_dim)
        self._torch = torch

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        self.load()
        torch = self._torch
        if not samples:
            return EmbedOutput(features=np.zeros((0, self.dim)))
        windows, owner = [], []
        for i, s in enumerate(samples):
            tokens = self.field.preprocess(s.smiles or "")
            for start in range(0, max(len(tokens), 1), WINDOW):
                windows.append(tokens[start:start + WINDOW])
                owner.append(i)
        src = self.field.process(windows)
        with torch.no_grad():
            mask = self.model.make_src_mask(src)
            hidden = self.model.encoder(src, mask)
        keep = (src != self.pad).unsqueeze(-1).to(hidden.dtype)
        index = torch.tensor(owner, dtype=torch.long)
        sums = torch.zeros(len(samples), hidden.shape[-1], dtype=hidden.dtype).index_add_(0, index, (hidden * keep).sum(1))
        counts = torch.zeros(len(samples), dtype=hidden.dtype).index_add_(0, index, keep.sum(dim=(1, 2)))
        pooled = sums / counts.clamp(min=1.0).unsqueeze(1)
        return EmbedOutput(features=pooled.cpu().numpy().astype(np.float64))
