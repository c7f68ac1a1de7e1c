"""MiniMol v1 (Kläser et al., 2024): a 10M-parameter graphium GINE network pre-trained on ~3,300 tasks.

The weights (minimol/ckpts/minimol_v1: state_dict.pth, config.yaml, base_shape.yaml) ship in the `minimol`
wheel. Its dependency graphium 2.4.7 declares torch-scatter/-sparse/-cluster (no wheels for torch 2.13),
wandb, ogb and more, and `mup` pulls a CUDA torch, so the entry is `environment: isolated` with those three
installed `--no-deps` and only what inference imports beside them (see its models.yaml requirements; scipy
1.14.1 because graphium builds float16 scipy.sparse matrices, which later scipy refuses). graphium imports
`torch_scatter.scatter_add` (random-walk features) and `torch_sparse.SparseTensor` (isinstance checks only):
when they are absent this module registers stand-ins for the process, scatter over
`torch_geometric.utils.scatter` and an empty SparseTensor class that no input ever is.

The model is built as `minimol.Minimol.__init__` builds it, except that the config is read with OmegaConf
directly (Minimol goes through hydra's relative-path initialise) and featurisation runs in this process
(`featurization_n_jobs: 0`; Minimol's loky workers would not see the stand-ins). Features: MiniMol's own
fingerprint, the 512-d node states after the last (16th) GINE layer (graphium Fingerprinter 'gnn:15'),
max-pooled over heavy atoms as `Minimol.__call__` does (global_max_pool).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import types
from pathlib import Path
from typing import ClassVar, Sequence

from benchmark.errors import ModelUnavailable
from benchmark.models.base import EmbedOutput, ModelAdapter
from benchmark.models.isolated_weights import shipped_file
from benchmark.structures import Sample

CKPT = "ckpts/minimol_v1"
INSTALL = "see the requirements of models.yaml's minimol-v1 entry (graphium's declared dependencies do not install)"


def ensure_graphium_standins() -> None:
    """torch_scatter (scatter, scatter_add) and torch_sparse (SparseTensor) stand-ins, never over a real install."""
    if importlib.util.find_spec("torch_scatter") is None:
        from torch_geometric.utils import scatter as pyg_scatter

        module = sys.modules.get("torch_scatter") or types.ModuleType("torch_scatter")

        def scatter(src, index, dim=-1, out=None, dim_size=None, reduce="sum"):
            if out is not None:
                raise NotImplementedError("the torch_scatter stand-in does not support out=")
            return pyg_scatter(src, index, dim=dim, dim_size=dim_size, reduce=reduce)

        def scatter_add(src, index, dim=-1, out=None, dim_size=None):
            return scatter(src, index, dim=dim, out=out, dim_size=dim_size, reduce="sum")

        module.scatter, module.scatter_add = getattr(module, "scatter", scatter), scatter_add
        sys.modules["torch_scatter"] = module
    if importlib.util.find_spec("torch_sparse") is None and "torch_sparse" not in sys.modules:
        module = types.ModuleType("torch_sparse")
        module.SparseTensor = type("SparseTensor", (), {"__doc__": "matteralign stand-in: no input is one"})
        sys.modules["torch_sparse"] = module


class MiniMolAdapter(ModelAdapter):
    """MiniMol v1 fingerprint of a SMILES' 2-D graph (heavy atoms); 512-d."""

    packages: ClassVar[tuple[str, ...]] = ("minimol", "graphium", "torch", "torch_geometric")
    feature_source: ClassVar[str] = (
        "graphium Fingerprinter 'gnn:15': node states after the last of MiniMol's 16 GINE layers (512), max over "
        "atoms (global_max_pool), MiniMol's own fingerprint"
    )

    def weights_path(self) -> Path:
        return shipped_file("minimol", self.entry, f"{CKPT}/state_dict.pth", INSTALL)

    def _load(self) -> None:
        import torch
        from omegaconf import OmegaConf

        ensure_graphium_standins()
        from graphium.config._loader import (
            load_accelerator, load_architecture, load_datamodule, load_metrics, load_predictor,
        )
        from graphium.finetuning.fingerprinting import Fingerprinter

        folder = self.weights_path().parent
        cfg = OmegaConf.to_container(OmegaConf.load(folder / "config.yaml"), resolve=True)
        cfg["accelerator"]["type"] = "cpu" if self.device == "cpu" else "gpu"
        cfg["datamodule"]["args"]["featurization_n_jobs"] = 0
        cfg, accelerator = load_accelerator(cfg)
        cfg["architecture"]["mup_base_path"] = str(folder / "base_shape.yaml")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            self.datamodule = load_datamodule(cfg, accelerator)
            model_class, model_kwargs = load_architecture(cfg, in_dims=self.datamodule.in_dims)
            predictor = load_predictor(
                config=cfg, model_class=model_class, model_kwargs=model_kwargs, metrics=load_metrics(cfg),
                task_levels=self.datamodule.get_task_levels(), accelerator_type=accelerator,
                featurization=self.datamodule.featurization, task_norms=self.datamodule.task_norms, replicas=1,
                gradient_acc=1, global_bs=self.datamodule.batch_size_training,
            )
        state = torch.load(self.weights_path(), map_location="cpu", weights_only=True)
        missing = predictor.load_state_dict(state, strict=False).missing_keys
        if any(".gnn." in k or k.startswith("model.pre_nn") for k in missing):
            raise ModelUnavailable(f"model {self.entry.key!r}: {self.weights_path()} lacks GNN weights {missing[:3]}")
        predictor.eval().to(self.device)
        self.fingerprinter = Fingerprinter(predictor, "gnn:15")
        self.fingerprinter.setup()

    def cannot_embed(self, sample: Sample) -> str | None:
        from rdkit import Chem

        mol = Chem.MolFromSmiles(sample.smiles)
        if mol is None or mol.GetNumAtoms() == 0:
            return "SMILES that RDKit cannot parse"
        return None

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        self.load()
        import torch
        from torch_geometric.data import Batch
        from torch_geometric.nn import global_max_pool

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            graphs, _ = self.datamodule._featurize_molecules([s.smiles for s in samples])
        failed = [s.id for s, g in zip(samples, graphs) if isinstance(g, str)]
        if failed:
            raise ModelUnavailable(f"MiniMol's featuriser failed on {len(failed)} of {len(samples)} SMILES "
                                   f"(e.g. {failed[0]}); the task is skipped")
        for g in graphs:  # as Minimol.to_fp32: half features to float, int32 indices to long
            for k, v in g.items():
                if isinstance(v, torch.Tensor) and v.dtype in (torch.half, torch.int32):
                    g[k] = v.float() if v.dtype == torch.half else v.long()
        batch = Batch.from_data_list(graphs).to(self.device)
        with torch.inference_mode():
            nodes = self.fingerprinter.get_fingerprints_for_batch({"features": batch, "batch_indices": batch.batch})
            pooled = global_max_pool(nodes, batch.batch)
        return EmbedOutput(features=pooled.double().cpu().numpy())
