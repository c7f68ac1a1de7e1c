"""WordLlama: static token embeddings distilled from Llama-2-family models; weights ship in the `wordllama` wheel.

What it is: the input token-embedding matrices of large language models (Llama-2 70B and relatives, over the
Llama-2 32k tokenizer) concatenated and compressed by a trained projection to 256 dimensions, then averaged over
a string's tokens. What it is not: a language model. There is no attention, no context and no hidden layer; it
is the offline stand-in for the paper's LLMs (whose weights are hub-only here) and measures how far the LLMs'
*vocabulary* geometry alone goes. Read the SMILES (or text) with the package's own tokenizer.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmark.errors import ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter
from benchmark.structures import Sample

CONFIG = "l2_supercat"


class WordLlamaAdapter(ModelAdapter):
    """Attention-mask average of WordLlama's 256-d static token vectors, unnormalised."""

    packages = ("wordllama",)
    feature_source = (
        "WordLlamaInference.embed(norm=False): the 'l2_supercat' token-embedding table (Llama-2-family input "
        "embeddings, projected to 256 and truncated by Matryoshka dimension `options.dim`) averaged over the "
        "string's tokens; static, context-free vectors: there is no hidden layer"
    )

    def __init__(self, entry, device: str = "cpu") -> None:
        super().__init__(entry, device)
        self.dim = int(self.options.get("dim", 256))
        if self.dim not in (64, 128, 256):
            raise ModelUnavailable(f"model {entry.key!r}: options.dim must be 64, 128 or 256 (got {self.dim})")

    def package_dir(self) -> Path:
        spec = importlib.util.find_spec("wordllama")
        if spec is None or spec.origin is None:
            raise ModelUnavailable(
                "package wordllama is not installed; install with: pip install wordllama==0.4.0.post1"
            )
        return Path(spec.origin).parent

    def weights_path(self) -> Path:
        path = self.package_dir() / "weights" / f"{CONFIG}_256.safetensors"
        tokenizer = self.package_dir() / "tokenizers" / f"{CONFIG}_tokenizer_config.json"
        if not path.is_file() or not tokenizer.is_file():
            raise ModelUnavailable(f"{path} or {tokenizer} is missing: reinstall wordllama==0.4.0.post1")
        return path

    def _load(self) -> None:
        from wordllama import WordLlama

        # the package's loader looks for tokenizer files under `tokenizer/` but ships `tokenizers/`;
        # pointing cache_dir at the package itself finds both, and disable_download forbids any fetch
        self.model = WordLlama.load(config=CONFIG, cache_dir=self.package_dir(), disable_download=True,
                                    dim=256, trunc_dim=None if self.dim == 256 else self.dim)

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        self.load()
        texts = [s.smiles or s.text or "" for s in samples]
        if not texts:
            return EmbedOutput(features=np.zeros((0, self.dim)))
        vectors = self.model.embed(texts, norm=False)
        return EmbedOutput(features=np.asarray(vectors, dtype=np.float64))
