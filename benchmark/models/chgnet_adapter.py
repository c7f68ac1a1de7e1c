"""CHGNet (Deng et al. 2023): charge-informed graph network potential; checkpoints ship in the `chgnet` wheel.

CHGNet reads only periodic pymatgen Structures, so a molecule is placed in a cubic-ish box whose vacuum
(`options.vacuum`, default 10 A) exceeds the atom-graph cutoff (5-6 A): no atom sees a periodic image, and the
result does not depend on the box.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from benchmark.errors import ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter, mean_pool, require_checkpoint, shipped_or_path
from benchmark.models.batching import atom_budget_chunks
from benchmark.structures import Sample

#: CHGNet.load model names -> checkpoint file under chgnet/pretrained (what the 0.4.2 wheel ships)
SHIPPED_CHECKPOINTS = {
    "0.3.0": "0.3.0/chgnet_0.3.0_e29f68s314m37.pth.tar",
    "0.2.0": "0.2.0/chgnet_0.2.0_e30f77s348m32.pth.tar",
    "r2scan": "r2scan/chgnet_r2scan_transfer_learning_e15f36s161m23.pth.tar",
}
FEATURES = ("interaction", "readout_hidden")
MAX_Z = 94


def resolve_checkpoint(name: str) -> Path | None:
    """The checkpoint file for a shipped model name or a path, or None when it is not on disk."""
    return shipped_or_path(name, "chgnet", "pretrained", SHIPPED_CHECKPOINTS)


class CHGNetAdapter(ModelAdapter):
    """Per-atom features at the input of the energy readout MLP, mean-pooled; total energy in eV."""

    packages = ("chgnet", "pymatgen")
    feature_source = (
        "default (options.features='interaction'): the per-atom features after the last atom-convolution block "
        "and the readout LayerNorm, i.e. the input of the site-wise energy MLP, taken through CHGNet's own "
        "`forward(..., return_crystal_feas=True)` (a sum over atoms for these mlp_first checkpoints, divided by "
        "the atom count here to give the mean); `return_atom_feas` is not used because it returns the features "
        "one block earlier. options.features='readout_hidden' instead takes the last hidden layer of that MLP "
        "(forward pre-hook on `mlp.layers[-1]`, the final Linear 64->1), mean-pooled."
    )

    def __init__(self, entry, device: str = "cpu") -> None:
        super().__init__(entry, device)
        self.checkpoint = entry.checkpoint or "0.3.0"
        self.features = self.options.get("features", "interaction")
        if self.features not in FEATURES:
            raise ModelUnavailable(f"model {entry.key!r}: options.features must be one of {FEATURES}")
        self.vacuum = float(self.options.get("vacuum", 10.0))
        self.max_atoms_per_batch = int(self.options.get("max_atoms_per_batch", 2048))
        self._captured: list = []

    def weights_path(self) -> Path:
        return require_checkpoint(resolve_checkpoint(self.checkpoint), self.checkpoint, "CHGNet", "chgnet",
                                  SHIPPED_CHECKPOINTS)

    def _load(self) -> None:
        import contextlib
        import io

        import torch
        from chgnet.model import CHGNet

        path = self.weights_path()
        with contextlib.redirect_stdout(io.StringIO()):
            # the same construction as CHGNet.load(model_name), which also accepts only the shipped names
            model = CHGNet.from_file(str(path), mlp_out_bias=self.checkpoint == "0.2.0", version=self.checkpoint)
        self.model = model.to(self.device).eval()
        self.cutoff = float(model.graph_converter.atom_graph_cutoff)
        self.dim = int(model.model_args["atom_fea_dim"]) if self.features == "interaction" else int(
            model.mlp.layers[-1].in_features
        )
        if self.features == "readout_hidden":
            model.mlp.layers[-1].register_forward_pre_hook(lambda module, args: self._captured.append(args[0]))
        self._torch = torch

    def cannot_embed(self, sample: Sample) -> str | None:
        numbers = np.asarray(sample.numbers)
        if numbers.min() < 1 or numbers.max() > MAX_Z:
            return f"CHGNet embeds elements Z=1..{MAX_Z} only"
        from ase.neighborlist import neighbor_list

        self.load()  # the atom-graph cutoff is the checkpoint's own (5 A for 0.2.0, 6 A for 0.3.0)
        if sample.n_atoms == 1 and not sample.pbc:
            return f"a single atom has no neighbours within the {self.cutoff:g} A graph cutoff"
        first = neighbor_list("i", sample.to_atoms(), self.cutoff)
        if len(np.unique(first)) < sample.n_atoms:
            return f"an atom has no neighbour within this CHGNet's {self.cutoff:g} A graph cutoff"
        return None

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        self.load()
        torch = self._torch
        features = np.zeros((len(samples), self.dim))
        energies = np.zeros(len(samples))
        for chunk in atom_budget_chunks(samples, self.max_atoms_per_batch) if samples else []:
            graphs = [self.model.graph_converter(samples[i].to_structure(self.vacuum)).to(self.device) for i in chunk]
            n_atoms = np.array([samples[i].n_atoms for i in chunk], dtype=np.float64)
            self._captured.clear()
            with torch.no_grad():
                out = self.model(graphs, task="e", return_crystal_feas=self.features == "interaction")
            per_atom = out["e"].detach().cpu().numpy().astype(np.float64)
            energies[chunk] = per_atom * n_atoms if self.model.is_intensive else per_atom
            if self.features == "interaction":
                crystal = out["crystal_fea"].detach().cpu().numpy().astype(np.float64)
                features[chunk] = crystal / n_atoms[:, None] if self.model.mlp_first else crystal
            else:
                owners = np.repeat(np.arange(len(chunk)), n_atoms.astype(int))
                features[chunk] = mean_pool(self._captured[-1].cpu().numpy(), owners, len(chunk))
        return EmbedOutput(features=features, energies=energies)
