"""AntiBERTy (Ruffolo et al., 2021): a BERT masked language model of antibody sequences (OAS, ~558M seqs).

The weights ship in the `antiberty==0.1.3` wheel (antiberty/trained_models/AntiBERTy_md_smooth; 1.0.0 no
longer ships them). Its own `AntiBERTy` class does not load on transformers 5, but the checkpoint's
encoder is a plain `BertModel` (8 layers, 512-d, 25-token vocabulary), which is loaded here directly;
the masked-LM / species heads are not used. Install: `pip install --no-deps antiberty==0.1.3`.

Features: last hidden layer (512-d), mean over the residue tokens ([CLS]/[SEP] excluded). The model's
position limit is 512 tokens, so chains longer than 510 residues are truncated (recorded nowhere else:
proteins longer than that are rare in the task). Antibody-trained: general proteins are outside its
training distribution.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from benchmark.errors import ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter
from benchmark.models.hf_adapter import pool_tokens
from benchmark.structures import Sample

CHECKPOINT = "trained_models/AntiBERTy_md_smooth"
MAX_RESIDUES = 510  # 512 positions less [CLS] and [SEP]


def antiberty_dir() -> Path | None:
    spec = importlib.util.find_spec("antiberty")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


class AntiBERTyAdapter(ModelAdapter):
    """AntiBERTy's BERT encoder on protein sequences (one-letter codes, space-separated as the model expects)."""

    feature_source: ClassVar[str] = "AntiBERTy BertModel last_hidden_state (512-d), masked mean over residue tokens"
    packages: ClassVar[tuple[str, ...]] = ("torch", "transformers", "antiberty")

    def weights_path(self) -> Path | None:
        root = antiberty_dir()
        path = root / CHECKPOINT / "pytorch_model.bin" if root else None
        if path is None or not path.is_file():
            raise ModelUnavailable(
                "AntiBERTy weights are not in the installed antiberty package (only 0.1.3 ships them): "
                "pip install --no-deps antiberty==0.1.3"
            )
        return path

    def _load(self) -> None:
        import torch
        from transformers import BertModel

        folder = self.weights_path().parent
        tokens = (folder.parent / "vocab.txt").read_text().split()
        self.vocab = {t: i for i, t in enumerate(tokens)}
        from transformers.utils import logging as hf_logging

        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # the unused MLM heads (cls.*) are expected: checked below, not printed
        hf_logging.disable_progress_bar()
        try:
            self.model, info = BertModel.from_pretrained(
                folder, local_files_only=True, add_pooling_layer=False, output_loading_info=True, dtype=torch.float32
            )
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
        if info.get("missing_keys"):
            raise ModelUnavailable(f"AntiBERTy checkpoint {folder} lacks encoder weights {info['missing_keys'][:3]}")
        self.model.eval().to(self.device)

    def token_ids(self, sequence: str) -> list[int]:
        """[CLS] residues [SEP] as the wheel's BertTokenizer makes them (one token per letter), done by hand:
        transformers 5's BertTokenizer no longer reads a `vocab_file` argument."""
        unk = self.vocab["[UNK]"]
        return [self.vocab["[CLS]"], *(self.vocab.get(c, unk) for c in sequence[:MAX_RESIDUES]), self.vocab["[SEP]"]]

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        import torch

        ids = [self.token_ids(s.sequence) for s in samples]
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), self.vocab["[PAD]"], dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.bool)
        for i, x in enumerate(ids):
            input_ids[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = True
        special = torch.zeros_like(mask)
        special[:, 0] = True
        special[torch.arange(len(ids)), torch.tensor([len(x) - 1 for x in ids])] = True
        with torch.inference_mode():
            hidden = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.long().to(self.device),
                                token_type_ids=torch.zeros_like(input_ids).to(self.device)).last_hidden_state
        return EmbedOutput(np.asarray(pool_tokens(hidden.float().cpu(), mask, special, "mean", False), dtype=np.float32))
