"""rxnfp (Schwaller et al. 2021): BERT models of reaction SMILES; 3 checkpoints ship in the `rxnfp` wheel.

rxnfp's own loader imports `pkg_resources` (gone from current setuptools) and pins ancient scipy/sklearn, so
the wheel is installed `--no-deps` and only its model folders are read: the BERT weights load with the main
environment's transformers 5 (`BertModel`), and the tokenizer is rxnfp's, reimplemented here: its SMILES regex
split (SMI_REGEX_PATTERN, copied verbatim) looked up in the shipped vocab.txt, framed by [CLS] ... [SEP]
exactly as its BertTokenizer subclass does. A molecule is read as a SMILES string (a reaction with no `>>`).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmark.errors import ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter
from benchmark.structures import Sample

SHIPPED = ("bert_pretrained", "bert_ft", "bert_ft_10k_25s")
SMI_REGEX_PATTERN = (
    r"(\%\([0-9]{3}\)|\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\||\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>>?|\*|\$|"
    r"\%[0-9]{2}|[0-9])"
)
MAX_TOKENS = 512


class RxnfpAdapter(ModelAdapter):
    """rxnfp's fingerprint: the [CLS] vector of the last BERT layer (256)."""

    packages = ("rxnfp", "transformers", "torch")
    feature_source = (
        "`last_hidden_state[:, 0]` of the shipped BertModel (12 layers, 256 hidden), the [CLS] token, which is "
        "what rxnfp.transformer_fingerprints.RXNBERTFingerprintGenerator returns as the reaction fingerprint"
    )

    def __init__(self, entry, device: str = "cpu") -> None:
        super().__init__(entry, device)
        self.checkpoint = entry.checkpoint or "bert_ft"
        self._regex = re.compile(SMI_REGEX_PATTERN)

    def model_dir(self) -> Path:
        if self.checkpoint in SHIPPED:
            spec = importlib.util.find_spec("rxnfp")
            if spec is None or spec.origin is None:
                raise ModelUnavailable(
                    "package rxnfp is not installed; install with: pip install --no-deps rxnfp==0.1.0"
                )
            return Path(spec.origin).parent / "models" / "transformers" / self.checkpoint
        return Path(self.checkpoint).expanduser()

    def weights_path(self) -> Path:
        directory = self.model_dir()
        files = [directory / f for f in ("config.json", "pytorch_model.bin", "vocab.txt")]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ModelUnavailable(
                f"rxnfp checkpoint {self.checkpoint!r}: {directory} lacks {', '.join(missing)}; use one of "
                f"{', '.join(SHIPPED)} (shipped in the rxnfp wheel) or a folder holding those files"
            )
        return files[1]

    def _load(self) -> None:
        import os

        os.environ["HF_HUB_OFFLINE"] = "1"
        import torch
        from transformers import BertModel
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        directory = self.model_dir()
        vocab = (directory / "vocab.txt").read_text().splitlines()
        self.vocab = {token: i for i, token in enumerate(vocab)}
        model, info = BertModel.from_pretrained(str(directory), local_files_only=True, output_loading_info=True)
        if info["missing_keys"]:  # the MLM / classifier heads are expected extras; a missing encoder weight is not
            raise ModelUnavailable(f"model {self.entry.key!r}: {directory} lacks encoder weights "
                                   f"{sorted(info['missing_keys'])[:3]}: not an rxnfp BERT checkpoint")
        self.model = model.to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)
        self._torch = torch

    def tokens(self, smiles: str) -> list[int]:
        unk = self.vocab["[UNK]"]
        body = [self.vocab.get(t, unk) for t in self._regex.findall(smiles)]
        return [self.vocab["[CLS]"], *body, self.vocab["[SEP]"]]

    def cannot_embed(self, sample: Sample) -> str | None:
        self.load()
        n = len(self.tokens(sample.smiles))
        if n > MAX_TOKENS:
            return f"SMILES has {n} tokens; rxnfp's BERT reads at most {MAX_TOKENS}"
        return None

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        self.load()
        torch = self._torch
        if not samples:
            return EmbedOutput(features=np.zeros((0, self.dim)))
        ids = [self.tokens(s.smiles or "") for s in samples]
        width = max(len(i) for i in ids)
        pad = self.vocab["[PAD]"]
        input_ids = torch.tensor([i + [pad] * (width - len(i)) for i in ids], device=self.device)
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids], device=self.device)
        with torch.no_grad():
            hidden = self.model(input_ids=input_ids, attention_mask=mask,
                                token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
        return EmbedOutput(features=hidden[:, 0].cpu().numpy().astype(np.float64))
