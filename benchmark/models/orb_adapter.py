"""Orb v2 / v3 (direct and conservative) from `orb-models`: MoleculeGNS node features, mean-pooled.

Both regressors wrap a `MoleculeGNS` (`regressor.model`) whose forward returns `node_features`, the
per-atom latents after the last message-passing step that every head (energy, forces, stress) reads.
A forward hook on `regressor.model` catches them during the ordinary `regressor.predict(batch)`, which
also gives the total energy in eV. Orb is not equivariant by construction (it learns rotation invariance
from augmented data), so the features are exactly invariant to translation and atom order but only
approximately to rotation, and only for trained weights.

Options:
- `model`: an orb-models pretrained name ("orb-v3-conservative-inf-omat", "orb-v3-direct-20-omat",
  "orb-v2", ...), whose builder sets the architecture and neighbour settings; or
- `architecture` ("orb_v3_direct_architecture", "orb_v3_conservative_architecture", "orb_v2_architecture")
  with `architecture_kwargs`, `radius` and `max_num_neighbors`, for fine-tuned checkpoints.
- `precision`: "float32-highest" (default), "float32-high" or "float64".

Weights: `checkpoint` is the local `.ckpt` state dict (orb-models would fetch it with cached_path; this
adapter never downloads; the missing-file message gives the URL).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from benchmark.errors import ConfigError, ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter, mean_pool
from benchmark.models.base import expand_path
from benchmark.structures import Sample

ARCHITECTURES = ("orb_v3_direct_architecture", "orb_v3_conservative_architecture", "orb_v2_architecture")


class OrbAdapter(ModelAdapter):
    feature_source: ClassVar[str] = (
        "forward hook on regressor.model (MoleculeGNS): output['node_features'] after the last message-passing "
        "step, the latents every Orb head reads; mean over atoms"
    )
    packages: ClassVar[tuple[str, ...]] = ("torch", "orb_models")

    def __init__(self, entry, device: str = "cpu") -> None:
        super().__init__(entry, device)
        self.name = self.options.get("model")
        self.architecture = self.options.get("architecture")
        if bool(self.name) == bool(self.architecture):
            raise ConfigError(f"model {entry.key!r}: set exactly one of options.model (an orb-models pretrained "
                              f"name) or options.architecture ({', '.join(ARCHITECTURES)})")
        if self.architecture and self.architecture not in ARCHITECTURES:
            raise ConfigError(f"model {entry.key!r}: architecture must be one of {', '.join(ARCHITECTURES)}")
        self.precision = str(self.options.get("precision", "float32-highest"))

    def _path(self) -> Path:
        if not self.entry.checkpoint:
            raise ModelUnavailable(f"no checkpoint set: download the .ckpt ({self._url()}) and set 'checkpoint'")
        path = expand_path(self.entry.checkpoint)
        if not path.is_file():
            raise ModelUnavailable(f"Orb checkpoint {path} not found: download {self._url()} to that path "
                                   "or fix 'checkpoint'")
        return path

    def _url(self) -> str:
        if not self.name:
            return "the fine-tuned state dict"
        from orb_models.forcefield import pretrained

        builder = pretrained.ORB_PRETRAINED_MODELS.get(self.name)
        if builder is None:
            raise ConfigError(f"options.model {self.name!r} is not an orb-models pretrained name; known: "
                              f"{', '.join(sorted(pretrained.ORB_PRETRAINED_MODELS))}")
        return str(inspect.signature(builder).parameters["weights_path"].default)

    def weights_path(self) -> Path:
        return self._path()

    def _load(self) -> None:
        from orb_models.forcefield import pretrained
        from orb_models.forcefield.atomic_system import SystemConfig

        path = str(self._path())
        if self.name:
            self._url()
            builder = pretrained.ORB_PRETRAINED_MODELS[self.name]
            model = builder(weights_path=path, device=self.device, precision=self.precision, compile=False)
        else:
            config = SystemConfig(radius=float(self.options.get("radius", 6.0)),
                                  max_num_neighbors=int(self.options.get("max_num_neighbors", 120)))
            kwargs: dict[str, Any] = dict(self.options.get("architecture_kwargs", {}))
            model = getattr(pretrained, self.architecture)(system_config=config, **kwargs)
            model = pretrained.load_model(model, path, self.device, precision=self.precision, compile=False)
        self.regressor = model.eval()
        self._captured: dict[str, Any] = {}
        self.regressor.model.register_forward_hook(lambda _m, _i, out: self._captured.update(node=out["node_features"]))
        self.conditioned = getattr(self.regressor.model, "conditioner", None) is not None

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        import torch
        from orb_models.forcefield.atomic_system import ase_atoms_to_atom_graphs
        from orb_models.forcefield.base import batch_graphs

        graphs = []
        for s in samples:
            atoms = s.to_atoms()
            atoms.info.pop("charge", None)
            if self.conditioned:
                atoms.info.update(charge=int(s.charge), spin=int(s.info.get("spin", 1)))
            graphs.append(ase_atoms_to_atom_graphs(atoms, self.regressor.system_config,
                                                   device=torch.device(self.device),
                                                   output_dtype=torch.get_default_dtype()))
        batch = batch_graphs(graphs)
        self._captured.clear()
        out = self.regressor.predict(batch)
        node = self._captured["node"].detach().double().cpu().numpy()
        index = np.repeat(np.arange(len(samples)), batch.n_node.cpu().numpy())
        energy_key = "energy" if "energy" in out else getattr(self.regressor, "energy_name", "energy")
        energies = out[energy_key].detach().cpu().numpy().astype(np.float64).reshape(len(samples))
        return EmbedOutput(mean_pool(node, index, len(samples)), energies)
