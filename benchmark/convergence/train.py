"""Train the convergence family: one SchNet per (training-set size, epochs) on QM9 total energies.

Every run shares one seeded held-out test set, is an MLflow run (Lightning autologging) of
kind `convergence-train` (benchmark.tracking.schema), and leaves a checkpoint that `SchNetAdapter` loads, so each
checkpoint becomes a model whose embeddings are compared with the best one.

    matteralign train-convergence --out-dir /tmp/conv
"""

from __future__ import annotations

import itertools
import json
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import mlflow
import numpy as np
import torch
from torch.utils.data import DataLoader

from benchmark.models.schnet_net import (
    CHECKPOINT_FORMAT,
    SchNet,
    SchNetConfig,
    collate,
    fit_element_reference,
    predict,
)
from benchmark import tracking
from benchmark.tracking import schema as S
from benchmark.errors import ConfigError
from benchmark.models.base import file_digest
from benchmark.structures import Sample
from benchmark.tasks import qm9

DEFAULT_TRAIN_SIZES = (100, 300, 1000, 4000)
DEFAULT_EPOCHS = (1, 50)
EMBED_BATCH_SIZE = 64
DEFAULT_TEST_SIZE = 1000
EXPERIMENT = "matteralign-convergence"
ADAPTER = "benchmark.models.schnet_adapter:SchNetAdapter"
CITATION = (
    "Schütt et al., SchNet: A continuous-filter convolutional neural network for modeling quantum "
    "interactions, NeurIPS 2017"
)


def model_key(train_size: int, epochs: int, seed: int) -> str:
    """`schnet-n1000-e30`, with `-s<seed>` appended for seeds other than 0."""
    return f"schnet-n{train_size}-e{epochs}" + (f"-s{seed}" if seed else "")


def train_command(train_size: int, epochs: int, seed: int, out_dir: str | Path) -> str:
    """The shell command that (re)creates the checkpoint of one setting."""
    return (
        f"matteralign train-convergence --train-sizes {train_size} --epochs {epochs} "
        f"--seed {seed} --out-dir {out_dir}"
    )


def split(
    test_size: int, max_train_size: int, seed: int, exclude_ids: Sequence[str] = ()
) -> tuple[list[Sample], list[Sample]]:
    """(test, train pool) from one seeded permutation of all of QM9.

    The test set depends only on (seed, test_size), and a training set of size n is the first n of the
    pool, so the sets are nested and every run is scored on the same molecules. `exclude_ids` (e.g. the
    samples of an alignment task) never enter either set.
    """
    frame = qm9.load_frame()
    ids = frame["Index"].map(lambda i: f"qm9-{int(i):06d}").to_numpy()
    order = np.random.default_rng(seed).permutation(len(frame))
    if exclude_ids:
        order = order[~np.isin(ids[order], np.asarray(list(exclude_ids)))]
    if test_size + max_train_size > len(order):
        raise ConfigError(
            f"convergence: test_size + largest train size = {test_size + max_train_size} exceeds the "
            f"{len(order)} QM9 molecules available"
        )
    chosen = frame.iloc[order[: test_size + max_train_size]]
    samples = [qm9.row_to_sample(r) for r in chosen.itertuples(index=False)]
    return samples[:test_size], samples[test_size:]


class QM9DataModule(L.LightningDataModule):
    """Training batches of QM9 samples, reshuffled each epoch by a seeded generator."""

    def __init__(self, train: Sequence[Sample], batch_size: int, seed: int) -> None:
        super().__init__()
        self.train = list(train)
        self.batch_size = batch_size
        self.seed = seed

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.train, batch_size=self.batch_size, shuffle=True, collate_fn=collate, generator=generator
        )


class EnergyModule(L.LightningModule):
    """MSE on the per-atom energy error in units of the residual's spread; Adam with cosine decay."""

    def __init__(self, model: SchNet, lr: float, total_steps: int) -> None:
        super().__init__()
        self.model = model
        self.lr = lr
        self.total_steps = max(1, total_steps)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        energies, _ = self.model(batch["numbers"], batch["positions"], batch["batch"], batch["n_graphs"])
        per_atom_error = (energies - batch["energy"]) / batch["n_atoms"]
        loss = (per_atom_error / self.model.energy_scale).pow(2).mean()
        self.log("train_loss", loss.float(), on_step=False, on_epoch=True, batch_size=batch["n_graphs"])
        self.log("train_mae_ev_per_atom", per_atom_error.abs().mean().float(), on_step=False, on_epoch=True,
                 batch_size=batch["n_graphs"])
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=self.total_steps, eta_min=self.lr / 100
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def supported(sample: Sample, elements: Sequence[int]) -> bool:
    return bool(np.isin(sample.numbers, elements).all())


def evaluate_mae(model: SchNet, test: Sequence[Sample], elements: Sequence[int]) -> tuple[float, int]:
    """Energy MAE in eV/atom over the test molecules whose elements the model was trained on; their count."""
    kept = [s for s in test if supported(s, elements)]
    if not kept:
        raise ConfigError("convergence: no test molecule is made only of elements seen in training")
    energies, _ = predict(model, kept)
    labels = np.array([s.energy for s in kept])
    atoms = np.array([s.n_atoms for s in kept])
    return float(np.mean(np.abs(energies - labels) / atoms)), len(kept)


def save_checkpoint(path: Path, model: SchNet, elements: Sequence[int], info: dict[str, Any]) -> str:
    """Write a `torch.load(weights_only=True)`-loadable checkpoint; return its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": model.config.to_dict(),
        "elements": [int(z) for z in elements],
        "element_ref_ev": model.element_ref.tolist(),
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "info": info,
    }
    torch.save(payload, path)
    return file_digest(path)


def train_one(
    train: Sequence[Sample],
    test: Sequence[Sample],
    epochs: int,
    out_dir: Path,
    seed: int,
    config: SchNetConfig,
    batch_size: int,
    lr: float,
    experiment_id: str,
) -> dict[str, Any]:
    """Train one model inside an MLflow run and return its checkpoint record."""
    key = model_key(len(train), epochs, seed)
    L.seed_everything(seed, workers=True, verbose=False)
    element_ref, energy_scale, elements = fit_element_reference(train, config.max_z)
    model = SchNet(config)
    model.set_reference(element_ref, energy_scale)
    steps = epochs * -(-len(train) // batch_size)
    module = EnergyModule(model, lr=lr, total_steps=steps)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        deterministic=True,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    tags = {S.KIND: S.Kind.CONVERGENCE_TRAIN, S.MODEL_KEY: key}
    with mlflow.start_run(experiment_id=experiment_id, run_name=key, tags=tags) as run:
        mlflow.log_params({
            "train_size": len(train), "test_size": len(test), "seed": seed, "batch_size": batch_size,
            "lr": lr, **{f"model_{k}": v for k, v in config.to_dict().items()},
        })
        start, cpu_start = time.perf_counter(), time.process_time()
        trainer.fit(module, datamodule=QM9DataModule(train, batch_size, seed))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        mae, n_test = evaluate_mae(model, test, elements)
        info = {"train_size": len(train), "epochs": epochs, "seed": seed, "test_size": len(test),
                "test_mae_ev_per_atom": mae, "n_test_evaluated": n_test, "batch_size": batch_size, "lr": lr}
        path = out_dir / f"{key}.pt"
        digest = save_checkpoint(path, model, elements, info)
        mlflow.log_metrics(
            {"test_mae_ev_per_atom": mae, "n_test_evaluated": n_test, "train_wall_s": wall, "train_cpu_s": cpu}
        )
        mlflow.set_tag(S.CHECKPOINT_SHA256, digest)
        mlflow.log_artifact(str(path), artifact_path="checkpoint")
    return {
        "key": key, "path": str(path), "train_size": len(train), "epochs": epochs, "seed": seed,
        "test_mae_ev_per_atom": mae, "n_test_evaluated": n_test, "sha256": digest,
        "parameters": sum(p.numel() for p in model.parameters()), "batch_size": batch_size,
        "wall_s": wall, "cpu_s": cpu, "run_id": run.info.run_id, "out_dir": str(out_dir),
    }


def run_experiment(
    train_sizes: Sequence[int] = DEFAULT_TRAIN_SIZES,
    epochs: Sequence[int] = DEFAULT_EPOCHS,
    out_dir: str | Path = "convergence",
    seed: int = 0,
    test_size: int = DEFAULT_TEST_SIZE,
    hidden: int = 64,
    n_interactions: int = 3,
    batch_size: int = 16,
    lr: float = 3e-3,
    experiment: str = EXPERIMENT,
    exclude_ids: Sequence[str] = (),
    artifact_location: str | None = None,
) -> list[dict[str, Any]]:
    """Train one model per (size, epochs) pair of the cartesian product; return one record per checkpoint.

    Logs to the current MLFLOW_TRACKING_URI under `experiment` (created with `artifact_location` when
    new; MLflow's default for a sqlite store is ./mlruns of the working directory). Records hold: key, path, train_size,
    epochs, seed, test_mae_ev_per_atom, n_test_evaluated, sha256, parameters, batch_size, wall_s, cpu_s,
    run_id, out_dir. Test molecules with an element absent from a model's training set are not scored.
    """
    if not train_sizes or not epochs or min(train_sizes) < 1 or min(epochs) < 1:
        raise ConfigError("convergence: train sizes and epochs must be non-empty lists of positive integers")
    out = Path(out_dir)
    config = SchNetConfig(hidden=hidden, n_interactions=n_interactions)
    test, pool = split(test_size, max(train_sizes), seed, exclude_ids)
    experiment_id = tracking.get_or_create_experiment(experiment, artifact_location)
    mlflow.pytorch.autolog(log_models=False, silent=True)
    records = []
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*log_every_n_steps.*")
            for size, n_epochs in itertools.product(sorted(set(train_sizes)), sorted(set(epochs))):
                records.append(
                    train_one(pool[:size], test, n_epochs, out, seed, config, batch_size, lr, experiment_id)
                )
    finally:
        mlflow.pytorch.autolog(disable=True)
    return records


def models_yaml_entries(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """models.yaml entries (one per checkpoint) for the records of `run_experiment`."""
    return [
        {
            "key": r["key"],
            "name": f"SchNet (QM9 n={r['train_size']}, {r['epochs']} epochs)",
            "family": "convergence-schnet",
            "modality": "atoms",
            "domain": "molecules",
            "adapter": ADAPTER,
            "checkpoint": r["path"],
            "options": {},
            "version": r["sha256"][:12],
            "training_data": f"QM9 (n={r['train_size']})",
            "parameters": int(r["parameters"]),
            "energy_head": True,
            "license": "MIT",
            "citation": CITATION,
            "default": False,
            "requirements": [],
            "batch_size": EMBED_BATCH_SIZE,
            "description": (
                f"Convergence-family SchNet trained here on {r['train_size']} QM9 molecules for {r['epochs']} "
                f"epochs (seed {r['seed']}); test energy MAE {r['test_mae_ev_per_atom']:.4f} eV/atom. "
                f"Retrain: {train_command(r['train_size'], r['epochs'], r['seed'], r['out_dir'])}"
            ),
        }
        for r in records
    ]


def train_family(args: Any) -> int:
    """Train the family, write records.json and models.json (models.yaml entries) into --out-dir."""
    torch.set_num_threads(args.threads)
    start, cpu_start = time.perf_counter(), time.process_time()
    records = run_experiment(args.train_sizes, args.epochs, args.out_dir, args.seed, args.test_size)
    out = Path(args.out_dir)
    (out / "records.json").write_text(json.dumps(records, indent=2))
    (out / "models.json").write_text(json.dumps(models_yaml_entries(records), indent=2))
    maes = [r["test_mae_ev_per_atom"] for r in records]
    for r in records:
        print(f"{r['key']:<24} MAE {r['test_mae_ev_per_atom']:.5f} eV/atom  ({r['wall_s']:.0f} s)  {r['sha256'][:12]}")
    print(
        f"worst/best MAE {max(maes) / min(maes):.1f}; total wall {time.perf_counter() - start:.0f} s, "
        f"CPU {time.process_time() - cpu_start:.0f} s ({args.threads} thread(s))"
    )
    return 0
