"""Hugging Face `transformers` language models: SMILES/SELFIES chemistry LMs, general LLMs and ESM2.

Features are the hidden states of one transformer layer (`entry.layer`: "last", or a hidden-state index
such as "-2"), pooled over tokens with the attention mask: `pooling: mean` averages the non-padding,
non-special tokens (special tokens such as <cls>/<eos>/<bos> carry position bookkeeping, not the
molecule, and a decoder's <bos> is an attention sink with an outsized norm); `last_token` takes the
last real token (the only one that has seen the whole input in a causal decoder); `cls` the first.

Weights come from `entry.checkpoint`: either a local directory (environment variables and ~ expanded)
or a hub id resolved only from the local Hugging Face cache (`HF_HOME` / `HF_HUB_CACHE`); nothing is
ever downloaded. Options:

- `prompt`: template filled from the sample, e.g. "The molecule with SMILES {smiles}" (fields: smiles,
  selfies, text, sequence, id); default "{smiles}" for smiles, "{text}" for text, "{sequence}" for protein.
- `max_length`: token limit (default: the model's position limit, at most 2048); longer inputs are truncated.
- `include_special_tokens` (default false), `trust_remote_code` (default false; MolFormer needs true),
  `revision` (hub revision, default "main"), `torch_dtype` ("float32" default, "bfloat16", "float16").
"""

from __future__ import annotations

import hashlib
import re
import string
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from benchmark.errors import ConfigError, ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter, expand_path, file_digest
from benchmark.structures import Sample

DEFAULT_PROMPTS = {"smiles": "{smiles}", "text": "{text}", "protein": "{sequence}", "atoms": "{smiles}"}
MAX_DEFAULT_LENGTH = 2048
SHA256_RE = re.compile(r"[0-9a-f]{64}")
#: heads AutoModel may add that masked-LM checkpoints do not carry; never used for features
OPTIONAL_HEADS = ("pooler.",)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".model", ".json", ".txt", ".py", ".tiktoken")


def looks_like_path(value: str) -> bool:
    """A checkpoint with a separator, ~, $ or a leading dot is a local path; `org/name` alone is a hub id."""
    if value.startswith(("/", "~", ".", "$")) or "\\" in value:
        return True
    return value.count("/") > 1 or expand_path(value).exists()


def resolve_hf_checkpoint(checkpoint: str | None, revision: str = "main") -> Path:
    """The local directory holding a transformers checkpoint, or ModelUnavailable saying how to provide it."""
    if not checkpoint:
        raise ModelUnavailable("no checkpoint set: put a local model directory or a hub id under 'checkpoint'")
    if looks_like_path(checkpoint):
        path = expand_path(checkpoint)
        if not (path / "config.json").is_file():
            raise ModelUnavailable(
                f"checkpoint directory {path} has no config.json: save the model there "
                "(model.save_pretrained / huggingface-cli download --local-dir) or fix 'checkpoint'"
            )
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_CACHE
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = Path(snapshot_download(checkpoint, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        snapshot = None
    if snapshot is None or not (snapshot / "config.json").is_file():
        raise ModelUnavailable(
            f"hub model {checkpoint!r} (revision {revision!r}) is not in the local Hugging Face cache {HF_HUB_CACHE}: "
            f"run `hf download {checkpoint}` where there is internet and copy the cache here "
            "(or set HF_HOME), or set 'checkpoint' to a local directory"
        )
    return snapshot


def directory_digest(path: Path) -> str:
    """sha256 over the names and contents of the files that define a checkpoint directory.

    A hub-cache snapshot links large (LFS) files to blobs named by their sha256: that name is used
    instead of re-reading gigabytes of weights.
    """
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)):
        rel = f.relative_to(path).as_posix()
        if rel.startswith("."):
            continue
        blob = f.resolve()
        named = f.is_symlink() and blob.parent.name == "blobs" and SHA256_RE.fullmatch(blob.name)
        h.update(rel.encode())
        h.update((blob.name if named else file_digest(f)).encode())
    return h.hexdigest()


class HFAdapter(ModelAdapter):
    """Any `AutoModel` checkpoint (encoder or decoder) on a string built from the sample by `prompt`."""

    feature_source: ClassVar[str] = (
        "transformers AutoModel hidden_states[layer] (last_hidden_state by default), masked mean over "
        "non-special tokens: the model's own summary of the whole input at its deepest layer"
    )
    packages: ClassVar[tuple[str, ...]] = ("torch", "transformers")

    def __init__(self, entry, device: str = "cpu") -> None:
        super().__init__(entry, device)
        self.prompt: str = str(self.options.get("prompt", DEFAULT_PROMPTS[entry.modality]))
        fields = {f for _, f, _, _ in string.Formatter().parse(self.prompt) if f is not None}
        unknown = fields - {"smiles", "selfies", "text", "sequence", "id"}
        if unknown or not fields:
            raise ConfigError(
                f"model {entry.key!r}: option prompt {self.prompt!r} must use one or more of "
                "{smiles}, {selfies}, {text}, {sequence}, {id}" + (f"; unknown: {sorted(unknown)}" if unknown else "")
            )
        self._fields = fields
        self.revision = str(self.options.get("revision", "main"))
        self._digest: str | None = None

    # --- availability / identity ----------------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        reason = super().unavailable_reason()
        if reason:
            return reason
        if "selfies" in self._fields:
            import importlib.util

            if importlib.util.find_spec("selfies") is None:
                return "the prompt uses {selfies} but package selfies is not installed; pip install selfies"
        try:
            resolve_hf_checkpoint(self.entry.checkpoint, self.revision)
        except ModelUnavailable as exc:
            return str(exc)
        return None

    def checkpoint_digest(self) -> str:
        """Hash of the checkpoint's files (a hub snapshot's files are content-addressed blobs too)."""
        if self._digest is None:
            try:
                path = resolve_hf_checkpoint(self.entry.checkpoint, self.revision)
            except ModelUnavailable:
                return super().checkpoint_digest()
            self._digest = directory_digest(path)
        return self._digest

    def unsupported(self, sample: Sample) -> str | None:
        values = self._values(sample)
        missing = sorted(f for f in self._fields if not values.get(f))
        return f"no {', '.join(missing)} for the prompt" if missing else None

    # --- loading --------------------------------------------------------------------------------
    def _load(self) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = resolve_hf_checkpoint(self.entry.checkpoint, self.revision)
        remote = bool(self.options.get("trust_remote_code", False))
        dtype_name = str(self.options.get("torch_dtype", "float32"))
        if dtype_name not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"model {self.entry.key!r}: option torch_dtype must be float32, bfloat16 or float16")
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=remote)
        self.tokenizer.padding_side = "right"
        if self.tokenizer.pad_token is None:
            fallback = self.tokenizer.eos_token or self.tokenizer.unk_token
            if fallback is None:
                raise ModelUnavailable(f"tokenizer in {path} has no pad, eos or unk token to pad batches with")
            self.tokenizer.pad_token = fallback
        self.model, info = AutoModel.from_pretrained(
            path, local_files_only=True, trust_remote_code=remote, dtype=getattr(torch, dtype_name),
            output_loading_info=True,
        )
        missing = [k for k in info.get("missing_keys", []) if not k.startswith(OPTIONAL_HEADS)]
        if missing:
            raise ModelUnavailable(
                f"checkpoint {path} does not hold weights for {len(missing)} parameters of "
                f"{type(self.model).__name__} (e.g. {missing[:3]}): it is not a checkpoint of this architecture"
            )
        self.model.eval().to(self.device)
        self.max_length = int(self.options.get("max_length", self._default_max_length()))

    def _default_max_length(self) -> int:
        limit = getattr(self.model.config, "max_position_embeddings", None) or MAX_DEFAULT_LENGTH
        if "roberta" in str(getattr(self.model.config, "model_type", "")):
            limit -= 2  # RoBERTa positions start after the padding index
        tok_limit = getattr(self.tokenizer, "model_max_length", None) or MAX_DEFAULT_LENGTH
        return int(min(limit, tok_limit, MAX_DEFAULT_LENGTH))

    # --- embedding ------------------------------------------------------------------------------
    def _values(self, sample: Sample) -> dict[str, Any]:
        values: dict[str, Any] = {"smiles": sample.smiles, "text": sample.text or sample.smiles,
                                  "sequence": sample.sequence, "id": sample.id, "selfies": None}
        if "selfies" in self._fields and sample.smiles:
            import selfies

            try:
                values["selfies"] = selfies.encoder(sample.smiles)
            except selfies.EncoderError:
                values["selfies"] = None
        return values

    def texts(self, samples: Sequence[Sample]) -> list[str]:
        """The exact strings fed to the tokenizer (recorded so a prompt change is visible)."""
        return [self.prompt.format(**self._values(s)) for s in samples]

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        import torch

        enc = self.tokenizer(
            self.texts(samples), padding=True, truncation=True, max_length=self.max_length,
            return_tensors="pt", return_special_tokens_mask=True,
        )
        special = enc.pop("special_tokens_mask")
        if "token_type_ids" not in self._forward_args:
            enc.pop("token_type_ids", None)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        layer = str(self.entry.layer)
        with torch.inference_mode():
            out = self.model(**enc, output_hidden_states=layer != "last")
        hidden = out.last_hidden_state if layer == "last" else out.hidden_states[int(layer)]
        hidden = hidden.float().cpu()
        mask = enc["attention_mask"].cpu().bool()
        return EmbedOutput(pool_tokens(hidden, mask, special.bool(), self.entry.pooling,
                                       bool(self.options.get("include_special_tokens", False))))

    @property
    def _forward_args(self) -> set[str]:
        import inspect

        return set(inspect.signature(self.model.forward).parameters)


def pool_tokens(hidden, mask, special, pooling: str, include_special: bool) -> np.ndarray:
    """(b, t, d) hidden states -> (b, d); `mask` marks real tokens, `special` the tokenizer's special ones."""
    import torch

    if pooling == "mean":
        keep = mask if include_special else mask & ~special
        keep = torch.where(keep.any(dim=1, keepdim=True), keep, mask)
        w = keep.to(hidden.dtype).unsqueeze(-1)
        return ((hidden * w).sum(1) / w.sum(1)).numpy()
    if pooling == "last_token":
        last = mask.long().sum(1) - 1
        return hidden[torch.arange(hidden.shape[0]), last].numpy()
    if pooling == "cls":
        return hidden[:, 0].numpy()
    raise ConfigError(f"pooling {pooling!r} is not supported by the transformers adapter (mean, last_token, cls)")
