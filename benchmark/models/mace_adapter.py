"""MACE (MACE-MP, MACE-OFF and any model saved by `mace_run_train`): per-atom `node_feats`, mean-pooled.

MACE's forward returns `node_feats`, the concatenated output of every interaction block's product
(`model.products[i].linear.irreps_out`): the atomic environment descriptors its readouts turn into
energies (the same array `MACECalculator.get_descriptors` slices). Options:

- `features: invariant` (default) keeps the scalar (0e) channels of each selected layer, which are
  invariant to rotation; `features: equivariant` keeps every irrep channel (l > 0 blocks rotate with the
  structure, so its mean-pooled vector is rotation-covariant: compare it only between models that see
  structures in the same frame).
- `entry.layer`: "last" (default), "all" (all interaction layers concatenated) or a 0-based layer index.
- `head` (multi-head models, default the model's last head), `precision` ("float64" default, "float32").

Weights: `checkpoint` is a `.model` file (a pickled torch module, as MACE ships them) or `mace-mp:<name>`
/ `mace-off:<name>`, read from the file the mace package caches them in (``$XDG_CACHE_HOME/mace``,
default ``~/.cache/mace``). Never downloaded here. Energies are the model's total energies in eV.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from benchmark.errors import ConfigError, ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter, mean_pool
from benchmark.models.base import local_checkpoint
from benchmark.structures import Sample

FOUNDATIONS = {"mace-mp": "mace_mp_urls", "mace-off": "mace_off_urls"}


def mace_cache_dir() -> Path:
    """Where `mace.calculators.mace_mp/mace_off` keep downloaded checkpoints."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mace"


def resolve_mace_checkpoint(checkpoint: str | None) -> Path:
    """The .model file for a path or a `mace-mp:<name>` / `mace-off:<name>` foundation model."""
    if not checkpoint:
        raise ModelUnavailable("no checkpoint set: give a .model file or mace-mp:<name> / mace-off:<name>")
    family, sep, name = checkpoint.partition(":")
    if sep and family in FOUNDATIONS:
        from mace.calculators import foundations_models

        urls = getattr(foundations_models, FOUNDATIONS[family])
        if name not in urls:
            raise ConfigError(f"checkpoint {checkpoint!r}: unknown {family} model; known: {', '.join(sorted(urls))}")
        url = urls[name]
        cached = mace_cache_dir() / "".join(c for c in os.path.basename(url) if c.isalnum() or c == "_")
        if not cached.is_file():
            raise ModelUnavailable(f"{family} {name!r} weights not found at {cached}: download {url} to that file "
                                   "(or set XDG_CACHE_HOME, or point 'checkpoint' at a local .model file)")
        return cached
    return local_checkpoint(checkpoint, "MACE", ".model")


class MACEAdapter(ModelAdapter):
    feature_source: ClassVar[str] = (
        "MACE forward()['node_feats'] (product outputs of the interaction blocks), scalar or all irrep channels, "
        "mean over atoms: the environment descriptors the energy readouts act on"
    )
    packages: ClassVar[tuple[str, ...]] = ("torch", "e3nn", "mace")

    def __init__(self, entry, device: str = "cpu") -> None:
        super().__init__(entry, device)
        self.features = str(self.options.get("features", "invariant"))
        if self.features not in ("invariant", "equivariant"):
            raise ConfigError(f"model {entry.key!r}: option features must be 'invariant' or 'equivariant'")
        self.precision = str(self.options.get("precision", "float64"))
        if self.precision not in ("float32", "float64"):
            raise ConfigError(f"model {entry.key!r}: option precision must be 'float32' or 'float64'")

    def weights_path(self) -> Path:
        return resolve_mace_checkpoint(self.entry.checkpoint)

    def _load(self) -> None:
        import mace  # noqa: F401 - first: it lets e3nn 0.4 read its constants under torch >= 2.6
        import torch
        from e3nn import o3
        from mace.tools import utils

        path = resolve_mace_checkpoint(self.entry.checkpoint)
        self.dtype = getattr(torch, self.precision)
        model = torch.load(path, map_location=self.device, weights_only=False)
        if not hasattr(model, "products") or not hasattr(model, "atomic_numbers"):
            raise ModelUnavailable(f"{path} does not hold a MACE model (got {type(model).__name__})")
        self.model = model.to(self.dtype).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.z_table = utils.AtomicNumberTable([int(z) for z in self.model.atomic_numbers])
        self.r_max = float(self.model.r_max)
        self.heads = list(getattr(self.model, "heads", None) or ["Default"])
        self.head = str(self.options.get("head", self.heads[-1]))
        if self.head not in self.heads:
            raise ConfigError(f"model {self.entry.key!r}: head {self.head!r} not in the model's heads {self.heads}")
        self.columns = self._columns([o3.Irreps(str(p.linear.irreps_out)) for p in self.model.products])

    def _columns(self, layer_irreps: list) -> np.ndarray:
        """Indices into node_feats of the selected layers, and of their 0e channels when invariant."""
        offsets = np.cumsum([0] + [ir.dim for ir in layer_irreps])
        layer = str(self.entry.layer)
        if layer == "all":
            chosen = range(len(layer_irreps))
        elif layer == "last":
            chosen = [len(layer_irreps) - 1]
        else:
            try:
                chosen = [range(len(layer_irreps))[int(layer)]]
            except (ValueError, IndexError):
                raise ConfigError(f"model {self.entry.key!r}: layer {layer!r} must be last, all or an index "
                                  f"below {len(layer_irreps)}") from None
        cols: list[int] = []
        for i in chosen:
            for mul_ir, sl in zip(layer_irreps[i], layer_irreps[i].slices()):
                if self.features == "equivariant" or (mul_ir.ir.l == 0 and mul_ir.ir.p == 1):
                    cols.extend(range(offsets[i] + sl.start, offsets[i] + sl.stop))
        self.total_dim = int(offsets[-1])
        return np.asarray(cols, dtype=np.int64)

    def cannot_embed(self, sample: Sample) -> str | None:
        if not self._loaded:
            return None
        extra = sorted(set(int(z) for z in sample.numbers) - set(self.z_table.zs))
        return f"elements {extra} are outside the model's element set" if extra else None

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        import torch
        from mace import data as mace_data
        from mace.tools import torch_geometric, torch_tools

        with torch_tools.default_dtype(self.dtype):
            graphs = [
                mace_data.AtomicData.from_config(
                    mace_data.config_from_atoms(s.to_atoms(), head_name=self.head),
                    z_table=self.z_table, cutoff=self.r_max, heads=self.heads,
                )
                for s in samples
            ]
        batch = torch_geometric.batch.Batch.from_data_list(graphs).to(self.device)
        with torch.no_grad():
            out = self.model(batch.to_dict(), training=False, compute_force=False)
        node = out["node_feats"]
        if node.shape[1] != self.total_dim:
            raise ModelUnavailable(f"MACE node_feats has {node.shape[1]} columns, the products declare "
                                   f"{self.total_dim}: unsupported MACE variant")
        feats = node.detach().cpu().numpy()[:, self.columns]
        pooled = mean_pool(feats, batch["batch"].cpu().numpy(), len(samples))
        return EmbedOutput(pooled, out["energy"].detach().cpu().numpy().astype(np.float64))
