"""ANI (Smith et al. 2017/2018) via torchani 2.9, from NeuroChem parameter files that ship in a PyPI wheel.

torchani 2.9 fetches its built-in state dicts (ANI-1x, ANI-2x, ANI-1ccx) from a hub at run time, so those
entry points are never called here. The `torchani` 2.2.x wheels on PyPI ship the complete NeuroChem files of
the 8-member ANI-1x ensemble (ANI-2x and ANI-1ccx directories in them are empty); torchani 2.9's own
`torchani.neurochem` parser reads them. Unpack them once, next to (not over) the installed torchani:

    pip install --no-deps --no-compile --target ~/.cache/matteralign/torchani-2.2.4 torchani==2.2.4

and point `checkpoint:` at the model directory (default below).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmark.errors import ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter, mean_pool
from benchmark.structures import HARTREE_TO_EV, Sample

DEFAULT_CHECKPOINT = "~/.cache/matteralign/torchani-2.2.4/torchani/resources/ani-1x_8x"
INSTALL_HINT = "pip install --no-deps --no-compile --target ~/.cache/matteralign/torchani-2.2.4 torchani==2.2.4"


def neurochem_files(model_dir: Path) -> tuple[Path, Path, Path, int] | None:
    """(self-energy file, AEV constants file, ensemble prefix, ensemble size), or None if incomplete."""
    sae = model_dir / "sae_linfit.dat"
    params = sorted(model_dir.glob("*.params"))
    members = [p for p in model_dir.glob("train*") if (p / "networks").is_dir() and any((p / "networks").iterdir())]
    if not sae.is_file() or len(params) != 1 or not members:
        return None
    return sae, params[0], model_dir / "train", len(members)


class ANIAdapter(ModelAdapter):
    """Per-atom last hidden layer of the element networks (all ensemble members side by side), mean-pooled."""

    packages = ("torchani",)
    feature_source = (
        "for every atom, the activations entering each element network's `final_layer` (the last hidden layer, "
        "after the CELU; 96 units for ANI-1x), computed by running the network's own `layers`/`activation` on the "
        "model's AEVs. By default the members of the ensemble are concatenated (8 x 96 = 768): the ensemble "
        "energy is a linear readout of exactly this vector, while hidden units of different members are not "
        "aligned, so averaging them would be meaningless; options.member picks one member (96) instead. "
        "Per-atom vectors are mean-pooled over atoms."
    )

    def __init__(self, entry, device: str = "cpu") -> None:
        super().__init__(entry, device)
        raw = entry.checkpoint or os.environ.get("MATTERALIGN_ANI_DIR") or DEFAULT_CHECKPOINT
        self.model_dir = Path(os.path.expandvars(os.path.expanduser(raw)))
        member = self.options.get("member")
        self.member: int | None = None if member is None else int(member)
        self.max_atoms_per_batch = int(self.options.get("max_atoms_per_batch", 4096))

    def unavailable_reason(self) -> str | None:
        reason = super().unavailable_reason()
        if reason:
            return reason
        if neurochem_files(self.model_dir) is None:
            return f"no complete NeuroChem ANI model at {self.model_dir}; create it with: {INSTALL_HINT}"
        return None

    def checkpoint_digest(self) -> str:
        """sha256 over the relative paths and bytes of every parameter file of the model directory."""
        if not self.model_dir.is_dir():
            return super().checkpoint_digest()
        h = hashlib.sha256()
        for path in sorted(p for p in self.model_dir.rglob("*") if p.is_file()):
            h.update(str(path.relative_to(self.model_dir)).encode())
            h.update(path.read_bytes())
        h.update(str(self.member).encode())
        return h.hexdigest()

    def _load(self) -> None:
        import torch
        os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")  # CUDA extensions are irrelevant on CPU
        from torchani import neurochem
        from torchani.arch import ANI

        files = neurochem_files(self.model_dir)
        if files is None:
            raise ModelUnavailable(f"no complete NeuroChem ANI model at {self.model_dir}; {INSTALL_HINT}")
        sae, params, prefix, size = files
        info = neurochem.NeurochemInfo(sae, params, prefix, size)
        aev_computer, networks, self_energies, symbols = neurochem.modules_from_info(info, model_index=self.member)
        self.model = ANI(symbols, aev_computer, networks, self_energies, periodic_table_index=True)
        self.model.to(self.device).eval()
        self.members = [networks] if self.member is not None else list(networks.members)
        self.symbols = tuple(symbols)
        self.numbers = frozenset(int(z) for z in self.model.atomic_numbers.tolist())
        widths = {net.final_layer.in_features for m in self.members for net in m.atomics.values()}
        if len(widths) != 1:
            raise ModelUnavailable(f"ANI model at {self.model_dir}: element networks differ in width {widths}")
        self.width = widths.pop()
        self._torch = torch

    def cannot_embed(self, sample: Sample) -> str | None:
        if sample.charge != 0:
            return "ANI is trained on neutral molecules only"
        self.load()
        unknown = sorted(set(int(z) for z in sample.numbers) - self.numbers)
        if unknown:
            return f"elements Z={unknown} outside ANI's {'/'.join(self.symbols)}"
        return None

    def _hidden(self, elem_idxs, aevs):
        """Last hidden activations (atoms, members * width) and ensemble-mean atomic energies (atoms,), in
        Hartree without self energies, for the real (unpadded) atoms of a batch: the element networks' own
        forward (`layers` + `activation`, then `final_layer`), split open at the final layer."""
        torch = self._torch
        flat_idx = elem_idxs.reshape(-1)
        real = flat_idx >= 0
        flat_idx, flat_aev = flat_idx[real], aevs.reshape(-1, aevs.shape[-1])[real]
        hidden = flat_aev.new_zeros((flat_idx.shape[0], self.width * len(self.members)))
        atomic = flat_aev.new_zeros(flat_idx.shape[0])
        for m, member in enumerate(self.members):
            for s, symbol in enumerate(self.symbols):
                mask = flat_idx == s
                if not torch.any(mask):
                    continue
                net = member.atomics[symbol]
                h = flat_aev[mask]
                for layer in net.layers:
                    h = net.activation(layer(h))
                hidden[mask, m * self.width : (m + 1) * self.width] = h
                atomic[mask] += net.final_layer(h).reshape(-1) / len(self.members)
        return hidden, atomic

    def _run(self, group: list[Sample]):
        """Pooled features and energies (eV) for samples sharing one padded tensor (and one cell if periodic)."""
        torch = self._torch
        n_max = max(s.n_atoms for s in group)
        species = torch.full((len(group), n_max), -1, dtype=torch.long)
        coords = torch.zeros((len(group), n_max, 3), dtype=torch.float32)
        for i, s in enumerate(group):
            species[i, : s.n_atoms] = torch.as_tensor(np.asarray(s.numbers, dtype=np.int64))
            coords[i, : s.n_atoms] = torch.as_tensor(np.asarray(s.positions, dtype=np.float32))
        species, coords = species.to(self.device), coords.to(self.device)
        cell = pbc = None
        if group[0].pbc:
            cell = torch.as_tensor(np.asarray(group[0].cell, dtype=np.float32), device=self.device)
            pbc = torch.ones(3, dtype=torch.bool, device=self.device)
        with torch.no_grad():
            elem_idxs = self.model.species_converter(species)
            aevs = self.model.potentials["nnp"].aev_computer(elem_idxs, coords, cell, pbc)
            hidden, atomic = self._hidden(elem_idxs, aevs)
            self_energies = self.model.energy_shifter(elem_idxs).cpu().numpy().astype(np.float64)
        owner = np.repeat(np.arange(len(group)), [s.n_atoms for s in group])
        network = np.bincount(owner, weights=atomic.cpu().numpy().astype(np.float64), minlength=len(group))
        return mean_pool(hidden.cpu().numpy(), owner, len(group)), (network + self_energies) * HARTREE_TO_EV

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        self.load()
        features = np.zeros((len(samples), self.width * len(self.members)))
        energies = np.zeros(len(samples))
        groups: list[list[int]] = []
        for i, s in enumerate(samples):
            last = groups[-1] if groups else None
            fits = last is not None and not s.pbc and not samples[last[0]].pbc
            if fits and max(samples[j].n_atoms for j in last + [i]) * (len(last) + 1) <= self.max_atoms_per_batch:
                last.append(i)
            else:
                groups.append([i])
        for group in groups:
            features[group], energies[group] = self._run([samples[i] for i in group])
        return EmbedOutput(features=features, energies=energies)
