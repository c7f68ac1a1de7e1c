"""MatterSim v1 (M3GNet architecture): per-atom features entering the energy readout, mean-pooled.

`M3Gnet.forward` runs its `graph_conv` blocks and hands the resulting per-atom `atom_attr` (units wide)
to `model.final`, the gated MLP that turns each atom into an energy. A forward pre-hook on `model.final`
takes exactly that input: the last atomic representation, invariant by construction (distances and
three-body angles only). The same `Potential.forward` call gives the total energy in eV.

Weights: `checkpoint` is a `.pth` file, or "mattersim-v1.0.0-1M" / "mattersim-v1.0.0-5M", read from the
folder mattersim itself uses (``~/.local/mattersim/pretrained_models``); never downloaded here.
Non-periodic samples are boxed by mattersim's own converter (a supercell larger than the cutoff).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from benchmark.errors import ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter, mean_pool
from benchmark.models.base import local_checkpoint
from benchmark.structures import Sample

NAMED = {"mattersim-v1.0.0-1m": "mattersim-v1.0.0-1M.pth", "mattersim-v1.0.0-5m": "mattersim-v1.0.0-5M.pth"}


def mattersim_dir() -> Path:
    return Path("~/.local/mattersim/pretrained_models").expanduser()


def resolve_mattersim_checkpoint(checkpoint: str | None) -> Path:
    if not checkpoint:
        raise ModelUnavailable("no checkpoint set: give a MatterSim .pth file or mattersim-v1.0.0-1M / -5M")
    name = checkpoint.lower().removesuffix(".pth")
    if name in NAMED:
        path = mattersim_dir() / NAMED[name]
        if not path.is_file():
            raise ModelUnavailable(f"MatterSim weights {path} not found: copy {NAMED[name]} there (it ships in the "
                                   "microsoft/mattersim GitHub repository, pretrained_models/) or set 'checkpoint'")
        return path
    return local_checkpoint(checkpoint, "MatterSim", ".pth")


class MatterSimAdapter(ModelAdapter):
    feature_source: ClassVar[str] = (
        "forward pre-hook on M3Gnet.final: the per-atom atom_attr after the last graph_conv block, which the "
        "energy readout reads; mean over atoms"
    )
    packages: ClassVar[tuple[str, ...]] = ("torch", "mattersim")

    def __init__(self, entry, device: str = "cpu") -> None:
        super().__init__(entry, device)

    def weights_path(self) -> Path:
        return resolve_mattersim_checkpoint(self.entry.checkpoint)

    def _load(self) -> None:
        from mattersim.forcefield.potential import Potential

        path = resolve_mattersim_checkpoint(self.entry.checkpoint)
        self.potential = Potential.from_checkpoint(load_path=str(path), device=self.device, load_training_state=False)
        self.potential.eval()
        model = self.potential.model
        self.cutoff = float(model.model_args["cutoff"])
        self.threebody_cutoff = float(model.model_args["threebody_cutoff"])
        self._captured: dict[str, Any] = {}
        model.final.register_forward_pre_hook(lambda _m, args: self._captured.update(node=args[0]))

    def cannot_embed(self, sample: Sample) -> str | None:
        if not self._loaded:
            return None
        max_z = int(self.potential.model.max_z)
        return f"elements above Z={max_z} are outside the model" if int(np.max(sample.numbers)) > max_z else None

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        import torch
        from mattersim.datasets.utils.build import build_dataloader
        from mattersim.forcefield.potential import batch_to_dict

        loader = build_dataloader([s.to_atoms() for s in samples], cutoff=self.cutoff,
                                  threebody_cutoff=self.threebody_cutoff, batch_size=len(samples), only_inference=True)
        (graph,) = list(loader)
        inputs = batch_to_dict(graph, device=self.device)
        index = graph.batch.cpu().numpy().copy()
        self._captured.clear()
        with torch.no_grad():
            out = self.potential.forward(inputs, include_forces=False, include_stresses=False)
        node = self._captured["node"].detach().double().cpu().numpy()
        energies = out["total_energy"].detach().cpu().numpy().astype(np.float64).reshape(len(samples))
        return EmbedOutput(mean_pool(node, index, len(samples)), energies)
