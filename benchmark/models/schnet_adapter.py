"""Adapter for the convergence-family SchNet checkpoints written by `benchmark.convergence.train`.

Features are the last hidden atom features (after the final interaction, before the energy readout),
mean-pooled per structure. Option `random_init: true` (with `seed`, default 0) builds an untrained
network of the same architecture, a null model for calibrating alignment scores; it reads the
architecture and element references from the checkpoint when the file exists, else from the options
(`hidden`, `n_interactions`, `n_rbf`, `cutoff`) and returns no energies.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch

from benchmark.errors import ConfigError, ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter, file_digest
from benchmark.structures import Sample

ARCH_OPTIONS = ("hidden", "n_interactions", "n_rbf", "cutoff")
KEY_RE = re.compile(r"schnet-n(\d+)-e(\d+)(?:-s(\d+))?\.pt$")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict (weights_only=True); ConfigError when it is not a convergence checkpoint."""
    from benchmark.models.schnet_net import CHECKPOINT_FORMAT

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise ConfigError(
            f"{path}: cannot be read as a checkpoint ({type(exc).__name__}: {str(exc)[:200]}); "
            "retrain it with `matteralign train-convergence` or fix the path"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    return payload


class SchNetAdapter(ModelAdapter):
    feature_source: ClassVar[str] = (
        "SchNet atom features after the last interaction block (input of the energy readout MLP), mean-pooled"
    )
    packages: ClassVar[tuple[str, ...]] = ("torch",)

    @property
    def checkpoint_path(self) -> Path | None:
        ckpt = self.entry.checkpoint
        return Path(os.path.expandvars(os.path.expanduser(ckpt))) if ckpt else None

    def _missing_weights(self) -> str | None:
        path = self.checkpoint_path
        if self.random_init or (path is not None and path.is_file()):
            return None
        if path is None:
            return "no checkpoint set; train one with: matteralign train-convergence --out-dir DIR"
        match = KEY_RE.search(path.name)
        if match:
            size, epochs, seed = match.group(1), match.group(2), match.group(3) or "0"
            command = (
                f"matteralign train-convergence --train-sizes {size} --epochs {epochs} "
                f"--seed {seed} --out-dir {path.parent}"
            )
        else:
            command = f"matteralign train-convergence --out-dir {path.parent}"
        return f"checkpoint {path} not found; train it with: {command}"

    def unavailable_reason(self) -> str | None:
        return super().unavailable_reason() or self._missing_weights()

    def _load(self) -> None:
        from benchmark.models.schnet_net import SchNet, SchNetConfig

        missing = self._missing_weights()
        if missing:
            raise ModelUnavailable(f"model {self.entry.key!r} cannot run: {missing}")
        path = self.checkpoint_path
        payload = load_checkpoint(path) if path is not None and path.is_file() else None
        if payload is not None:
            config = SchNetConfig(**payload["config"])
            self.elements = [int(z) for z in payload["elements"]]
        else:
            config = SchNetConfig(**{k: self.options[k] for k in ARCH_OPTIONS if k in self.options})
            self.elements = list(range(1, config.max_z + 1))
        if self.random_init:
            with torch.random.fork_rng():
                torch.manual_seed(int(self.options.get("seed", 0)))
                model = SchNet(config)
            if payload is not None:
                model.element_ref.copy_(payload["state_dict"]["element_ref"])
                model.energy_scale.copy_(payload["state_dict"]["energy_scale"])
        else:
            model = SchNet(config)
            model.load_state_dict(payload["state_dict"])
        self.has_energies = payload is not None
        self.model = model.to(self.device).eval()

    def cannot_embed(self, sample: Sample) -> str | None:
        if self.unavailable_reason():
            return None
        if sample.pbc:
            return "periodic structures are not supported (the model ignores the cell)"
        self.load()
        unseen = sorted(set(int(z) for z in sample.numbers) - set(self.elements))
        return f"element(s) Z={unseen} absent from the training set" if unseen else None

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        from benchmark.models.schnet_net import predict

        self.load()
        energies, features = predict(self.model, samples, batch_size=max(1, len(samples)))
        return EmbedOutput(features=features, energies=energies if self.has_energies else None)

    def checkpoint_digest(self) -> str:
        """The file's sha256; for a random-init model, a digest of (seed, architecture, file) instead."""
        if not self.random_init:
            return super().checkpoint_digest()
        path = self.checkpoint_path
        identity = {
            "random_init": True,
            "seed": int(self.options.get("seed", 0)),
            "architecture": {k: self.options[k] for k in ARCH_OPTIONS if k in self.options},
            "checkpoint": file_digest(path) if path is not None and path.is_file() else None,
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
