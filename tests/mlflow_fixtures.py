"""A synthetic MLflow store with parent and child runs written exactly as docs/run-schema.md describes.

Tests build small boards with it (explicit start times make "newest" deterministic) instead of running
models; `embed=True` logs a random embeddings artifact (or `features=` a given one) so `compare` and the
figures have data.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

TAG = "matteralign."
_TEMPLATE: list[Path] = []


def _template_db() -> Path:
    """An empty, migrated MLflow sqlite file, made once per test process (migrating takes ~10 s)."""
    if not _TEMPLATE:
        from mlflow.tracking import MlflowClient

        tmp = Path(tempfile.mkdtemp(prefix="matteralign-mlflow-template-"))
        atexit.register(shutil.rmtree, tmp, True)
        MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlflow.db").search_experiments()
        _TEMPLATE.append(tmp / "mlflow.db")
    return _TEMPLATE[0]


class FakeStore:
    """An sqlite MLflow store under tmp_path with one experiment whose artifacts also live there."""

    def __init__(self, tmp_path: Path, experiment: str = "matteralign") -> None:
        from mlflow.tracking import MlflowClient

        shutil.copyfile(_template_db(), tmp_path / "mlflow.db")
        self.uri = f"sqlite:///{tmp_path}/mlflow.db"
        self.experiment = experiment
        self.client = MlflowClient(tracking_uri=self.uri)
        self.exp_id = self.client.create_experiment(experiment, artifact_location=(tmp_path / "artifacts").as_uri())
        self.clock = 1_700_000_000_000

    def tick(self) -> int:
        self.clock += 1000
        return self.clock

    def _log_input(self, run_id: str, task: str, task_version: str, role: str, ids: list[str]) -> None:
        """The task's dataset as an MLflow input with context id/ood, as the pipeline logs it."""
        import mlflow
        import pandas as pd
        from mlflow.entities import DatasetInput, InputTag

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = mlflow.data.from_pandas(pd.DataFrame({"id": ids}), source="synthetic", name=f"{task}-v{task_version}")
        self.client.log_inputs(run_id, datasets=[
            DatasetInput(ds._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", role)])])

    def parent(self, references: dict[str, str], benchmark_version: str = "0.1.0", models: str = "") -> str:
        from mlflow.entities import Param, RunTag

        run = self.client.create_run(self.exp_id, start_time=self.tick(), run_name="benchmark")
        tags = {f"{TAG}kind": "parent", f"{TAG}benchmark_version": benchmark_version, f"{TAG}git_sha": "deadbeef"}
        for task, ref in references.items():
            tags[f"{TAG}reference.{task}"] = ref
            tags[f"{TAG}reference_reason.{task}"] = "configured"
        params = {"models": models, "tasks": ",".join(references), "k": "10", "seed": "0"}
        self.client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()],
                              tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.set_terminated(run.info.run_id, "FINISHED", end_time=self.clock + 500)
        return run.info.run_id

    def child(
        self, parent_id: str, model: str, task: str, *, role: str = "id", status: str = "ok", reason: str = "",
        metrics: dict[str, float] | None = None, reference: str = "ref", name: str | None = None,
        family: str = "mlip", model_version: str = "1", checkpoint_digest: str = "ckpt-1", task_version: str = "1",
        benchmark_version: str = "0.1.0", ids_digest: str = "ids-1", ids: list[str] | None = None,
        embed: bool = False, dim: int = 8, seed: int = 0, features: np.ndarray | None = None,
        run_status: str = "FINISHED",
        parameters: str = "1000", training_data: str = "MPtrj",
    ) -> str:
        from mlflow.entities import Metric, Param, RunTag

        start = self.tick()
        run = self.client.create_run(self.exp_id, start_time=start, run_name=f"{model}/{task}",
                                     tags={"mlflow.parentRunId": parent_id})
        run_id = run.info.run_id
        tags = {
            f"{TAG}kind": "model-task", f"{TAG}model": model, f"{TAG}task": task, f"{TAG}role": role,
            f"{TAG}status": status, f"{TAG}reason": reason, f"{TAG}family": family, f"{TAG}modality": "atoms",
            f"{TAG}domain": "materials", f"{TAG}reference": reference,
            f"{TAG}is_reference": str(model == reference).lower(), f"{TAG}benchmark_version": benchmark_version,
            f"{TAG}git_sha": "deadbeef", f"{TAG}cache_reused": "false",
        }
        ids = ids if ids is not None else [f"{task}-{i}" for i in range(30)]
        params = {
            "model_key": model, "model_name": name or model, "model_version": model_version, "layer": "last",
            "pooling": "mean", "dtype": "float32", "batch_size": "32", "task": task, "task_version": task_version,
            "data_digest": "data-1", "ids_digest": ids_digest, "n_samples": str(len(ids)), "seed": "0", "k": "10",
            "benchmark_version": benchmark_version, "parameters": parameters, "training_data": training_data,
            "energy_head": "true",
        }
        if status == "ok":
            params.update(checkpoint_digest=checkpoint_digest, embedding_dim=str(dim), feature_source="test")
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), start, 0) for k, v in (metrics or {}).items()],
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        self._log_input(run_id, task, task_version, role, ids)
        self.client.log_dict(run_id, {"key": model, "name": name or model}, "model_entry.json")
        self.client.log_dict(run_id, {"name": task, "version": task_version}, "task_spec.json")
        if embed or features is not None:
            if features is None:
                features = np.random.default_rng(seed).normal(size=(len(ids), dim))
            with tempfile.TemporaryDirectory() as tmp:
                d = Path(tmp)
                np.save(d / f"{task}.npy", np.asarray(features, dtype=np.float32))
                (d / f"{task}.ids.json").write_text(json.dumps(ids))
                self.client.log_artifacts(run_id, str(d), "embeddings")
        self.client.set_terminated(run_id, run_status, end_time=start + 500)
        return run_id
