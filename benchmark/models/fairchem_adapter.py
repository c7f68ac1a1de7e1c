"""fairchem v2 models (UMA S/M, eSEN; any `MLIPInferenceCheckpoint`): backbone `node_embedding`, mean-pooled.

The checkpoint is loaded by fairchem's own `load_predict_unit`, so the model, its task heads, normalisers
and element references are exactly those of `FAIRChemCalculator`. One `predict()` call per batch gives
the total energy (eV) of the chosen task, and a forward hook on `predict_unit.model.module.backbone`
catches the same forward pass's `node_embedding` (atoms x (lmax+1)^2 x channels, spherical-harmonic
coefficients of the last layer). Only the l=0 coefficients are kept: they are rotation invariant and are
what the energy head reads, so they are the model's own scalar summary of each atomic environment.

Options: `task` ("omat", "omol", "oc20", "odac", "omc"; default "omat"), `spin` (default 1 for omol,
0 otherwise; a sample's `info["spin"]` wins), `inference_settings` (fairchem preset, default "batch":
fp32, no compile, unmerged MoLE so heterogeneous batches are exact).

Weights: `checkpoint` is a `.pt` file, or a fairchem model name such as `uma-m-1p1` found in the local
Hugging Face cache of fairchem (``$FAIRCHEM_CACHE_DIR``, default ``~/.cache/fairchem``). UMA is gated on
the hub: accept the licence at https://huggingface.co/facebook/UMA and download it where there is internet.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from benchmark.errors import ConfigError, ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter, mean_pool
from benchmark.models.base import expand_path, local_checkpoint
from benchmark.structures import Sample

TASKS = ("omat", "omol", "oc20", "odac", "omc", "oc25")


def fairchem_cache_dir() -> Path:
    return Path(os.environ.get("FAIRCHEM_CACHE_DIR", Path.home() / ".cache" / "fairchem"))


def _registered() -> dict[str, Any]:
    """fairchem's table of named checkpoints (name -> hub repo, subfolder, file), read without importing torch."""
    import json
    from importlib import resources

    with (resources.files("fairchem.core.calculate") / "pretrained_models.json").open("rb") as fh:
        return json.load(fh)


def _hub_file(spec: dict[str, Any], filename: str, subfolder: str | None) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id=spec["repo_id"], filename=filename, subfolder=subfolder,
                                    revision=spec.get("revision"), cache_dir=str(fairchem_cache_dir()),
                                    local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        return None


def resolve_fairchem_checkpoint(checkpoint: str | None) -> tuple[Path, dict[str, Any]]:
    """The checkpoint file, and the hub spec when it is a registered name (for its reference energies)."""
    if not checkpoint:
        raise ModelUnavailable("no checkpoint set: give a fairchem .pt file or a model name such as uma-m-1p1")
    if expand_path(checkpoint).suffix == ".pt" or "/" in checkpoint:
        return local_checkpoint(checkpoint, "fairchem", ".pt"), {}
    table = _registered()
    if checkpoint not in table:
        raise ConfigError(f"checkpoint {checkpoint!r} is neither a .pt file nor a fairchem model name "
                          f"({', '.join(sorted(table))})")
    spec = table[checkpoint]
    found = _hub_file(spec, spec["filename"], spec.get("subfolder"))
    if found is None:
        raise ModelUnavailable(
            f"{checkpoint} ({spec['repo_id']}/{spec.get('subfolder') or ''}/{spec['filename']}) is not in the "
            f"fairchem cache {fairchem_cache_dir()}: accept the licence on https://huggingface.co/{spec['repo_id']}, "
            "then download it there (see docs/real-weights.md) or set 'checkpoint' to the .pt file"
        )
    return found, spec


class FairchemAdapter(ModelAdapter):
    feature_source: ClassVar[str] = (
        "forward hook on predict_unit.model.module.backbone: output['node_embedding'][:, 0, :] (l=0 "
        "coefficients of the last layer, the invariant channels the energy head reads), mean over atoms"
    )
    packages: ClassVar[tuple[str, ...]] = ("torch", "fairchem")

    def __init__(self, entry, device: str = "cpu") -> None:
        super().__init__(entry, device)
        self.task = str(self.options.get("task", "omat"))
        if self.task not in TASKS:
            raise ConfigError(f"model {entry.key!r}: option task must be one of {', '.join(TASKS)}")
        self.spin = int(self.options.get("spin", 1 if self.task == "omol" else 0))

    def weights_path(self) -> Path:
        import importlib.util

        if importlib.util.find_spec("fairchem.core.units.mlip_unit") is None:
            raise ModelUnavailable(
                "fairchem-core 1.x is installed; this adapter needs fairchem-core >= 2 (MLIPInferenceCheckpoint), "
                "so fairchem v1 checkpoints such as EquiformerV2 cannot be loaded"
            )
        return resolve_fairchem_checkpoint(self.entry.checkpoint)[0]

    def _load(self) -> None:
        from fairchem.core.units.mlip_unit import load_predict_unit
        from omegaconf import OmegaConf

        path, spec = resolve_fairchem_checkpoint(self.entry.checkpoint)
        refs: dict[str, Any] = {}
        for kind in ("atom_refs", "form_elem_refs"):
            where = spec.get(kind)
            found = _hub_file(spec, where["filename"], where.get("subfolder")) if where else None
            if found is not None:
                loaded = OmegaConf.load(found)
                refs[kind] = loaded["refs"] if kind == "form_elem_refs" else loaded
        settings = str(self.options.get("inference_settings", "batch"))
        self.unit = load_predict_unit(str(path), inference_settings=settings, device=self.device, **refs)
        if self.task not in self.unit.dataset_to_tasks:
            raise ConfigError(f"model {self.entry.key!r}: task {self.task!r} not in the checkpoint's tasks "
                              f"{sorted(self.unit.dataset_to_tasks)}")
        backbone = self.unit.model.module.backbone
        self.cutoff = float(backbone.cutoff)
        self.max_neighbors = int(backbone.max_neighbors)
        self._captured: dict[str, Any] = {}
        backbone.register_forward_hook(lambda _m, _i, out: self._captured.update(node=out["node_embedding"]))
        self.energy_task = next(t.name for t in self.unit.dataset_to_tasks[self.task] if t.property == "energy")

    def cannot_embed(self, sample: Sample) -> str | None:
        if sample.n_atoms < 2 and not sample.pbc:
            return ("a free single atom: fairchem answers it from reference energies without running the backbone "
                    "(a periodic one-atom cell has neighbours and is embedded)")
        return None

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        from fairchem.core.datasets.atomic_data import AtomicData
        from fairchem.core.datasets.collaters.simple_collater import data_list_collater

        graphs = []
        for s in samples:
            atoms = s.to_atoms()
            atoms.info.update(charge=int(s.charge), spin=int(s.info.get("spin", self.spin)))
            graphs.append(AtomicData.from_ase(atoms, task_name=self.task, r_edges=False, radius=self.cutoff,
                                              max_neigh=self.max_neighbors, r_data_keys=["spin", "charge"]))
        batch = data_list_collater(graphs, otf_graph=True)
        index = batch.batch.cpu().numpy().copy()
        self._captured.clear()
        pred = self.unit.predict(batch)
        scalars = self._captured["node"][:, 0, :].detach().float().cpu().numpy()
        energies = pred[self.energy_task].detach().cpu().numpy().astype(np.float64).reshape(len(samples))
        return EmbedOutput(mean_pool(scalars, index, len(samples)), energies)
