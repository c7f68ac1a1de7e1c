"""rxnmapper (Schwaller et al., Sci. Adv. 2021): the ALBERT model of reaction SMILES behind RXNMapper.

The weights (albert_heads_8_uspto_all_1310k: 12 layers sharing one set of weights, 256 hidden, 8 heads,
128-d token embeddings) ship in the `rxnmapper` wheel. rxnmapper needs transformers < 5 and imports
`pkg_resources` (setuptools < 81), so its entry is `environment: isolated`; inside that venv the model and
tokenizer are rxnmapper's own: `AlbertModel.from_pretrained` on the shipped folder and its `SmilesTokenizer`
(regex SMILES split, [CLS] ... [SEP]). A molecule is read as a reaction-free SMILES string.

Features: the last hidden layer, mean over the SMILES tokens ([CLS]/[SEP] excluded; `pooling: cls` takes the
[CLS] vector instead, which the model was never trained to summarise: RXNMapper reads attention only).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from benchmark.errors import ConfigError, ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter
from benchmark.models.isolated_weights import shipped_file
from benchmark.structures import Sample

MODEL_DIR = "models/transformers/albert_heads_8_uspto_all_1310k"
INSTALL = 'pip install rxnmapper==0.4.3 "transformers<5" "setuptools<81" (or keep the entry isolated)'
MAX_TOKENS = 512


class RxnMapperAdapter(ModelAdapter):
    """rxnmapper's ALBERT encoder on (molecule) SMILES; 256-d."""

    packages: ClassVar[tuple[str, ...]] = ("rxnmapper", "transformers", "torch")
    feature_source: ClassVar[str] = (
        "AlbertModel last_hidden_state (256) of rxnmapper's albert_heads_8_uspto_all_1310k, masked mean over the "
        "SMILES tokens ([CLS]/[SEP] excluded); pooling: cls takes [CLS]"
    )

    def __init__(self, entry, device: str = "cpu") -> None:
        super().__init__(entry, device)
        if entry.pooling not in ("mean", "cls"):
            raise ConfigError(f"model {entry.key!r}: pooling {entry.pooling!r} is not supported by the rxnmapper "
                              "adapter; use mean or cls")

    def weights_path(self) -> Path:
        return shipped_file("rxnmapper", self.entry, f"{MODEL_DIR}/pytorch_model.bin", INSTALL)

    def _load(self) -> None:
        import torch
        from transformers import AlbertModel
        from transformers.utils import logging as hf_logging

        from rxnmapper.tokenization_smiles import SmilesTokenizer

        hf_logging.set_verbosity_error()
        folder = self.weights_path().parent
        model, info = AlbertModel.from_pretrained(str(folder), local_files_only=True, add_pooling_layer=False,
                                                  output_loading_info=True)
        if info["missing_keys"]:  # the MLM head is an expected extra; a missing encoder weight is not
            raise ModelUnavailable(f"model {self.entry.key!r}: {folder} lacks encoder weights "
                                   f"{sorted(info['missing_keys'])[:3]}: not rxnmapper's ALBERT checkpoint")
        self.model = model.to(self.device).eval()
        self.tokenizer = SmilesTokenizer(str(folder / "vocab.txt"), max_len=model.config.max_position_embeddings)
        self.dim = int(model.config.hidden_size)
        self._torch = torch

    def cannot_embed(self, sample: Sample) -> str | None:
        self.load()
        n = len(self.tokenizer.tokenize(sample.smiles)) + 2
        if n > MAX_TOKENS:
            return f"SMILES has {n} tokens; rxnmapper's ALBERT reads at most {MAX_TOKENS}"
        return None

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        self.load()
        torch = self._torch
        if not samples:
            return EmbedOutput(features=np.zeros((0, self.dim)))
        enc = self.tokenizer([s.smiles for s in samples], padding=True, return_tensors="pt")
        ids = enc["input_ids"].to(self.device)
        mask = enc["attention_mask"].to(self.device).bool()
        with torch.inference_mode():
            hidden = self.model(input_ids=ids, attention_mask=mask.long(),
                                token_type_ids=torch.zeros_like(ids)).last_hidden_state.double()
        if self.entry.pooling == "cls":
            return EmbedOutput(features=hidden[:, 0].cpu().numpy())
        keep = mask & (ids != self.tokenizer.cls_token_id) & (ids != self.tokenizer.sep_token_id)
        w = keep.to(hidden.dtype).unsqueeze(-1)
        return EmbedOutput(features=((hidden * w).sum(1) / w.sum(1).clamp(min=1)).cpu().numpy())
