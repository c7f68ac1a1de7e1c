"""IgLM and IgLM-S (Shuai et al., Cell Systems 2023): GPT-2 decoders of antibody sequences, from the `iglm` wheel.

LICENCE: the IgLM code and weights are under the Johns Hopkins University academic software licence,
non-commercial use only; the entries are therefore not part of the default run (`default: false`).

The weights ship in `iglm==0.1.0` (iglm/trained_models/{IgLM,IgLM-S}); the decoder is a plain transformers
`GPT2Model` (IgLM: 4 layers, 512-d; IgLM-S: 3 layers, 192-d) loaded directly, without the package's
generation code. Input as IgLM conditions it: [chain token] [species token] residues [SEP]
(options `chain_token`, default [HEAVY]; `species_token`, default [HUMAN]). Features: last hidden state,
mean over the residue tokens (conditioning tokens and [SEP] excluded). Chains longer than 509 residues are
truncated (512 positions).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from benchmark.errors import ConfigError, ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter
from benchmark.models.hf_adapter import pool_tokens
from benchmark.structures import Sample

MODELS = ("IgLM", "IgLM-S")
MAX_RESIDUES = 509  # 512 positions less the two conditioning tokens and [SEP]


class IgLMAdapter(ModelAdapter):
    """IgLM / IgLM-S decoder (option `model`) on protein sequences."""

    feature_source: ClassVar[str] = "IgLM GPT2Model last_hidden_state (512-d; IgLM-S 192-d), mean over residue tokens"
    packages: ClassVar[tuple[str, ...]] = ("torch", "transformers", "iglm")

    def _folder(self) -> Path | None:
        name = str(self.options.get("model", "IgLM"))
        if name not in MODELS:
            raise ConfigError(f"model {self.entry.key!r}: option model={name!r} must be one of {MODELS}")
        spec = importlib.util.find_spec("iglm")
        return Path(spec.origin).parent / "trained_models" / name if spec and spec.origin else None

    def weights_path(self) -> Path | None:
        folder = self._folder()
        path = folder / "pytorch_model.bin" if folder else None
        if path is None or not path.is_file():
            raise ModelUnavailable("IgLM weights are not in the installed iglm package: pip install --no-deps iglm==0.1.0")
        return path

    def _load(self) -> None:
        import torch
        from transformers import GPT2Model

        folder = self.weights_path().parent
        self.vocab = {t: i for i, t in enumerate((folder.parent / "vocab.txt").read_text().split())}
        prefix = [str(self.options.get("chain_token", "[HEAVY]")), str(self.options.get("species_token", "[HUMAN]"))]
        unknown = [t for t in prefix if t not in self.vocab]
        if unknown:
            raise ConfigError(f"model {self.entry.key!r}: conditioning token(s) {unknown} not in IgLM's vocabulary")
        self.prefix = [self.vocab[t] for t in prefix]
        self.model, info = GPT2Model.from_pretrained(folder, local_files_only=True, output_loading_info=True,
                                                     dtype=torch.float32)
        if info.get("missing_keys"):
            raise ModelUnavailable(f"IgLM checkpoint {folder} lacks decoder weights {info['missing_keys'][:3]}")
        self.model.eval().to(self.device)

    def token_ids(self, sequence: str) -> list[int]:
        unk = self.vocab["[UNK]"]
        return [*self.prefix, *(self.vocab.get(c, unk) for c in sequence[:MAX_RESIDUES]), self.vocab["[SEP]"]]

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        import torch

        ids = [self.token_ids(s.sequence) for s in samples]
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), self.vocab["[PAD]"], dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.bool)
        special = torch.zeros_like(mask)
        for i, x in enumerate(ids):
            input_ids[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = True
            special[i, : len(self.prefix)] = True
            special[i, len(x) - 1] = True
        with torch.inference_mode():
            hidden = self.model(input_ids=input_ids.to(self.device),
                                attention_mask=mask.long().to(self.device)).last_hidden_state
        return EmbedOutput(np.asarray(pool_tokens(hidden.float().cpu(), mask, special, "mean", False), dtype=np.float32))
