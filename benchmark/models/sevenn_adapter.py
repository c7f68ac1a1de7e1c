"""SevenNet (Park et al. 2024): E(3)-equivariant NequIP-style potential; checkpoints ship in the `sevenn` wheel.

The checkpoint named in the registry (`7net-0`, `7net-0_22may2024`, `7net-l3i5`, `7net-mf-0`, or a path to a
`.pth` file) is resolved to a file inside the installed package without importing it, so a missing checkpoint
is reported instead of sevenn's fallback of downloading it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmark.errors import ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter, mean_pool, require_checkpoint, shipped_or_path
from benchmark.models.batching import atom_budget_chunks
from benchmark.structures import Sample

#: pretrained names -> checkpoint file under sevenn/pretrained_potentials (the ones the 0.13 wheel ships)
SHIPPED_CHECKPOINTS = {
    "7net-0": "SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth",
    "7net-0_11jul2024": "SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth",
    "7net-0_22may2024": "SevenNet_0__22May2024/checkpoint_sevennet_0.pth",
    "7net-l3i5": "SevenNet_l3i5/checkpoint_l3i5.pth",
    "7net-mf-0": "SevenNet_MF_0/checkpoint_sevennet_mf_0.pth",
}
READOUT_MODULE = "reduce_input_to_hidden"


def resolve_checkpoint(name: str) -> Path | None:
    """The checkpoint file for a shipped name or a path, or None when it is not on disk."""
    key = name.lower().replace("sevennet", "7net")
    return shipped_or_path(key if key in SHIPPED_CHECKPOINTS else name, "sevenn", "pretrained_potentials",
                           SHIPPED_CHECKPOINTS)


class SevenNetAdapter(ModelAdapter):
    """Per-atom invariant node features of the last interaction block, mean-pooled; total energy in eV."""

    packages = ("sevenn", "torch_geometric")
    feature_source = (
        "input of the `reduce_input_to_hidden` module (forward pre-hook, node attribute `x`): the 128 scalar (0e) "
        "channels per atom after the last interaction block's equivariant gate. The readout that follows is two "
        "linear layers (128->64->1) with no nonlinearity, so this is the last nonlinear representation the energy "
        "is read from; for multi-fidelity checkpoints it is taken before the fidelity one-hot is appended."
    )

    def __init__(self, entry, device: str = "cpu") -> None:
        super().__init__(entry, device)
        self.checkpoint = entry.checkpoint or "7net-0"
        self.modal: str | None = self.options.get("modal")
        self.max_atoms_per_batch = int(self.options.get("max_atoms_per_batch", 2048))
        self._captured: list = []

    def weights_path(self) -> Path:
        return require_checkpoint(resolve_checkpoint(self.checkpoint), self.checkpoint, "SevenNet", "sevenn",
                                  SHIPPED_CHECKPOINTS)

    def _load(self) -> None:
        import torch
        from sevenn import util

        path = self.weights_path()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            checkpoint = util.load_checkpoint(str(path))
            model = checkpoint.build_model()
        if model.modal_map:
            if self.modal not in model.modal_map:
                raise ModelUnavailable(
                    f"model {self.entry.key!r}: multi-fidelity checkpoint needs options.modal, one of "
                    f"{sorted(model.modal_map)} (got {self.modal!r})"
                )
            model.eval_modal_map = True
        model.delete_module_by_key("force_output")
        model.key_grad = None
        model.set_is_batch_data(True)
        model.to(self.device).eval()
        model._modules[READOUT_MODULE].register_forward_pre_hook(self._capture)
        self.model = model
        self.cutoff = float(model.cutoff)
        self.known_numbers = frozenset(int(z) for z in model.type_map)
        self.dim = int(model._modules[READOUT_MODULE]._irreps_in_wo_modal.dim)
        self._torch = torch

    def _capture(self, module, args) -> None:
        from sevenn import _keys as KEY

        self._captured.append(args[0][KEY.NODE_FEATURE].detach())

    def cannot_embed(self, sample: Sample) -> str | None:
        self.load()
        unknown = sorted(set(int(z) for z in sample.numbers) - self.known_numbers)
        if unknown:
            return f"elements Z={unknown} are not in the SevenNet type map"
        return None

    def _graph(self, sample: Sample):
        from sevenn import _keys as KEY
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph

        graph = AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(sample.to_atoms(), self.cutoff))
        if self.modal is not None and self.model.modal_map:
            graph[KEY.DATA_MODALITY] = self.modal
        return graph

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        from sevenn import _keys as KEY
        from torch_geometric.data import Batch

        self.load()
        features = np.zeros((len(samples), self.dim))
        energies = np.zeros(len(samples))
        for chunk in atom_budget_chunks(samples, self.max_atoms_per_batch) if samples else []:
            batch = Batch.from_data_list([self._graph(samples[i]) for i in chunk]).to(self.device)
            self._captured.clear()
            with self._torch.no_grad():
                out = self.model(batch)
            nodes = self._captured[-1].cpu().numpy()
            features[chunk] = mean_pool(nodes, out[KEY.BATCH].cpu().numpy(), len(chunk))
            energies[chunk] = out[KEY.PRED_TOTAL_ENERGY].detach().cpu().numpy().reshape(-1)
        return EmbedOutput(features=features, energies=energies)
