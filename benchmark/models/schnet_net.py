"""A compact SchNet-style invariant network in plain torch.

Continuous-filter convolutions over a radial cutoff graph (Schütt et al. 2017). The network sees only
interatomic distances and atomic numbers, and sums over neighbours and atoms, so it is invariant to
rotation, translation and permutation. A per-element linear reference (fitted once on the training set
by least squares on composition) carries the bulk of the total energy; the network learns the residual.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from benchmark.structures import Sample

MAX_Z = 10
CHECKPOINT_FORMAT = "matteralign-schnet/1"


@dataclass(frozen=True)
class SchNetConfig:
    """Architecture hyperparameters; stored in every checkpoint so the network can be rebuilt."""

    hidden: int = 64
    n_interactions: int = 3
    n_rbf: int = 20
    cutoff: float = 5.0
    max_z: int = MAX_Z

    def to_dict(self) -> dict:
        return asdict(self)


def shifted_softplus(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.softplus(x) - math.log(2.0)


class ShiftedSoftplus(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return shifted_softplus(x)


def radius_graph(positions: torch.Tensor, batch: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Directed edges (2, n_edges) between distinct atoms of the same structure closer than `cutoff`.

    Dense over the batch: QM9 molecules have at most 29 atoms, so this is cheaper than a cell list.
    """
    dist = torch.cdist(positions, positions)
    mask = (batch[:, None] == batch[None, :]) & (dist < cutoff)
    mask.fill_diagonal_(False)
    return mask.nonzero().T


class Interaction(nn.Module):
    """One continuous-filter convolution block with a residual update.

    The filter is linear in the Gaussian distance expansion (as in PaiNN) rather than SchNet's two-layer
    MLP: the edge MLP dominated the CPU cost, and a smooth learned function of distance remains.
    """

    def __init__(self, hidden: int, n_rbf: int) -> None:
        super().__init__()
        self.filter = nn.Linear(n_rbf, hidden)
        self.atom_in = nn.Linear(hidden, hidden, bias=False)
        self.atom_out = nn.Sequential(nn.Linear(hidden, hidden), ShiftedSoftplus(), nn.Linear(hidden, hidden))

    def forward(
        self, x: torch.Tensor, rbf: torch.Tensor, envelope: torch.Tensor, src: torch.Tensor, dst: torch.Tensor
    ) -> torch.Tensor:
        weights = self.filter(rbf) * envelope[:, None]
        messages = self.atom_in(x)[src] * weights
        aggregated = torch.zeros_like(x).index_add_(0, dst, messages)
        return x + self.atom_out(aggregated)


class SchNet(nn.Module):
    """Total energy (eV, float64) = sum of element references + sum of per-atom network outputs."""

    def __init__(self, config: SchNetConfig = SchNetConfig()) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embedding = nn.Embedding(c.max_z + 1, c.hidden)
        self.interactions = nn.ModuleList(Interaction(c.hidden, c.n_rbf) for _ in range(c.n_interactions))
        self.readout = nn.Sequential(nn.Linear(c.hidden, c.hidden // 2), ShiftedSoftplus(), nn.Linear(c.hidden // 2, 1))
        self.register_buffer("rbf_centers", torch.linspace(0.0, c.cutoff, c.n_rbf))
        self.register_buffer("element_ref", torch.zeros(c.max_z + 1, dtype=torch.float64))
        self.register_buffer("energy_scale", torch.ones((), dtype=torch.float64))

    @property
    def rbf_gamma(self) -> float:
        spacing = self.config.cutoff / (self.config.n_rbf - 1)
        return 0.5 / spacing**2

    def set_reference(self, element_ref: np.ndarray, energy_scale: float) -> None:
        """Install the fitted per-element energies (eV) and the per-atom scale of the learned residual."""
        self.element_ref.copy_(torch.as_tensor(element_ref, dtype=torch.float64))
        self.energy_scale.fill_(float(energy_scale))

    def forward(
        self, numbers: torch.Tensor, positions: torch.Tensor, batch: torch.Tensor, n_graphs: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(energies (n_graphs,) float64 eV, per-atom features (n_atoms, hidden) before the readout)."""
        src, dst = radius_graph(positions, batch, self.config.cutoff)
        dist = (positions[src] - positions[dst]).norm(dim=-1)
        rbf = torch.exp(-self.rbf_gamma * (dist[:, None] - self.rbf_centers) ** 2)
        envelope = 0.5 * (torch.cos(dist * (math.pi / self.config.cutoff)) + 1.0)
        x = self.embedding(numbers)
        for block in self.interactions:
            x = block(x, rbf, envelope, src, dst)
        atomic = self.readout(x).squeeze(-1).double() * self.energy_scale + self.element_ref[numbers]
        energies = torch.zeros(n_graphs, dtype=torch.float64, device=x.device).index_add_(0, batch, atomic)
        return energies, x


def collate(samples: Sequence[Sample]) -> dict[str, torch.Tensor | int]:
    """Concatenate structures into one graph batch; `energy` is NaN for unlabelled samples."""
    numbers = torch.as_tensor(np.concatenate([s.numbers for s in samples]), dtype=torch.long)
    positions = torch.as_tensor(np.concatenate([s.positions for s in samples]), dtype=torch.float32)
    counts = torch.as_tensor([s.n_atoms for s in samples], dtype=torch.long)
    batch = torch.repeat_interleave(torch.arange(len(samples)), counts)
    energy = torch.as_tensor([np.nan if s.energy is None else s.energy for s in samples], dtype=torch.float64)
    return {
        "numbers": numbers, "positions": positions, "batch": batch,
        "n_graphs": len(samples), "n_atoms": counts, "energy": energy,
    }


@torch.no_grad()
def predict(model: SchNet, samples: Sequence[Sample], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(total energies eV (n,), mean-pooled last-hidden atom features (n, hidden)), in evaluation mode."""
    model.eval()
    device = model.element_ref.device
    energies, features = [], []
    for start in range(0, len(samples), batch_size):
        batch = collate(samples[start : start + batch_size])
        n_graphs, index = batch["n_graphs"], batch["batch"].to(device)
        e, x = model(batch["numbers"].to(device), batch["positions"].to(device), index, n_graphs)
        pooled = torch.zeros(n_graphs, x.shape[1], dtype=torch.float64, device=device).index_add_(0, index, x.double())
        energies.append(e.cpu().numpy())
        features.append((pooled.cpu() / batch["n_atoms"][:, None]).numpy())
    return np.concatenate(energies), np.concatenate(features)


def composition(samples: Sequence[Sample], max_z: int = MAX_Z) -> np.ndarray:
    """(n_samples, max_z + 1) element counts."""
    out = np.zeros((len(samples), max_z + 1))
    for i, s in enumerate(samples):
        np.add.at(out[i], np.asarray(s.numbers), 1.0)
    return out


def fit_element_reference(samples: Sequence[Sample], max_z: int = MAX_Z) -> tuple[np.ndarray, float, list[int]]:
    """Least-squares per-element energies (eV) on composition; the residual's per-atom std; elements seen.

    Elements absent from `samples` get a reference of 0; models mark them unsupported instead.
    """
    counts = composition(samples, max_z)
    energies = np.array([s.energy for s in samples], dtype=np.float64)
    seen = [int(z) for z in np.flatnonzero(counts.sum(axis=0))]
    coef, *_ = np.linalg.lstsq(counts[:, seen], energies, rcond=None)
    ref = np.zeros(max_z + 1)
    ref[seen] = coef
    residual_per_atom = (energies - counts @ ref) / counts.sum(axis=1)
    scale = float(np.std(residual_per_atom)) or 1.0
    return ref, scale, seen
