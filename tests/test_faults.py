"""Faults: a worker killed mid-extraction, an unreachable tracking server, and the Ray executor's equivalence.

Nothing computed may be lost or corrupted: a killed extraction resumes from its finished shards and ends
bit for bit equal to an uninterrupted one; an unreachable server fails fast with the URI in the message and
the cache is logged on the next run without recomputation; Ray shards equal the sequential ones exactly.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import mlflow
import numpy as np
import pytest

from benchmark.cli import main as cli_main
from benchmark.embeddings import extract, plan_shards, store_for
from benchmark.errors import MatteralignError
from benchmark.models.base import EmbedOutput
from benchmark.pipeline.run import RunConfig, run_benchmark
from benchmark.registry import import_object, load_models, load_tasks, models_by_key
from benchmark.structures import Dataset, Sample
from benchmark.tasks import build_dataset
from tests.fake_models import FakeAtomsAdapter

REPO = Path(__file__).resolve().parents[1]
DELAY_ENV = "MATTERALIGN_TEST_EMBED_DELAY"

MODELS = """
reference: {model: good, fallback: auto}
models:
  - {key: good, name: Good, family: fake, modality: atoms, domain: molecules, default: true, energy_head: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 1, energy_noise: 0.001}, batch_size: 4}
  - {key: noisy, name: Noisy, family: fake, modality: atoms, domain: materials, default: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 10, seed: 2, noise: 1.0}, batch_size: 3}
  - {key: slow, name: Slow, family: fake, modality: atoms, domain: molecules, energy_head: true,
     adapter: "tests.test_faults:SlowAtomsAdapter", options: {dim: 8, seed: 3, energy_noise: 0.01}, batch_size: 2}
  - {key: broken, name: Broken, family: fake, modality: atoms, domain: molecules, default: true,
     adapter: "tests.fake_models:BrokenAdapter"}
  - {key: text-only, name: Text, family: fake, modality: smiles, domain: text, default: true,
     adapter: "tests.fake_models:FakeAtomsAdapter"}
"""

TASK = """
name: syn_a
version: "1"
description: synthetic
loader: tests.fake_tasks:load
source: generated
level_of_theory: composition energies + noise
n_samples: 80
seed: 5
roles: {molecules: id, materials: ood}
"""


class SlowAtomsAdapter(FakeAtomsAdapter):
    """FakeAtomsAdapter that sleeps $MATTERALIGN_TEST_EMBED_DELAY seconds per batch (not part of the cache key)."""

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        time.sleep(float(os.environ.get(DELAY_ENV, "0")))
        return super().embed(samples)


@pytest.fixture
def registry(make_registry) -> tuple[Path, Path]:
    return make_registry(MODELS, {"syn_a": TASK})


def _dataset(tasks: Path) -> Dataset:
    return build_dataset(load_tasks(tasks)["syn_a"])


def _adapter(models: Path, key: str):
    entry = models_by_key(load_models(models))[key]
    return import_object(entry.adapter, "adapter")(entry)


def extract_main(models: str, tasks: str, key: str, root: str) -> None:
    """Subprocess entry point: extract one model on syn_a into `root`."""
    extract(_adapter(Path(models), key), _dataset(Path(tasks)), Path(root), progress=False)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An sqlite MLflow store with its tables made once; tests copy it (creating one costs ~10 s here)."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def _config(registry, tmp_path: Path, **kw) -> RunConfig:
    models, tasks = registry
    return RunConfig(models_file=models, tasks_dir=tasks, leaderboard_dir=None, progress=False,
                     n_boot=5, n_perm=2, **kw)


# --- (1) a worker killed mid-extraction ---------------------------------------------------------------


def test_killed_extraction_resumes_bit_for_bit(registry, tmp_path):
    models, tasks = registry
    ds = _dataset(tasks)
    adapter = _adapter(models, "slow")
    n_shards = len(plan_shards(adapter, ds))
    killed_root = tmp_path / "killed"
    store = store_for(adapter, ds, killed_root)
    args = ", ".join(repr(str(a)) for a in (models, tasks, "slow", killed_root))
    code = f"import tests.test_faults as t; t.extract_main({args})"
    env = {**os.environ, DELAY_ENV: "0.05", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(list(store.shard_dir.glob("shard-*.npz"))) < 3:
            assert proc.poll() is None, f"extraction ended before it was killed: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "no 3 shards within 60 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not store.complete
    shards = plan_shards(adapter, ds)
    done = sorted(int(p.stem.split("-")[1]) for p in store.shard_dir.glob("shard-*.npz"))
    assert 3 <= len(done) < n_shards and done == list(range(len(done)))
    for i in done:  # every shard on disk is whole and holds exactly its samples
        ids = [ds.samples[j].id for b in shards[i] for j in b]
        assert store.read_shard(i, ids) is not None

    resumed = extract(adapter, ds, killed_root, progress=False)
    assert (resumed.shards_reused, resumed.shards_computed) == (len(done), n_shards - len(done))
    assert not list(killed_root.rglob("*.tmp")) and not store.shard_dir.exists()
    clean = extract(_adapter(models, "slow"), ds, tmp_path / "clean", progress=False)
    a, b = resumed.embeddings, clean.embeddings
    assert a.key == b.key and a.ids == b.ids == ds.ids
    assert a.features.dtype == b.features.dtype and a.features.tobytes() == b.features.tobytes()
    assert a.energies.tobytes() == b.energies.tobytes()  # type: ignore[union-attr]
    assert (a.path / "features.npy").read_bytes() == (b.path / "features.npy").read_bytes()


# --- (2) tracking server unreachable ------------------------------------------------------------------


def test_unreachable_server_fails_fast_with_the_uri(registry, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    uri = f"http://127.0.0.1:{_closed_port()}"
    root = tmp_path / "cache"
    t0 = time.monotonic()
    with pytest.raises(MatteralignError, match="cannot reach the MLflow tracking store") as info:
        run_benchmark(_config(registry, tmp_path, tracking_uri=uri, cache_dir=root, models=["good"]))
    assert time.monotonic() - t0 < 30
    assert uri in str(info.value) and "stay in the cache" in str(info.value)
    # the store is contacted before any embedding, so the failure wastes no compute
    assert not (root / "embeddings").exists()
    models, tasks = registry
    t0 = time.monotonic()
    code = cli_main(["run", "--models", "good", "--models-file", str(models), "--tasks-dir", str(tasks),
                     "--no-leaderboard", "--no-progress", "--tracking-uri", uri, "--cache-dir", str(root)])
    err = capsys.readouterr().err
    assert time.monotonic() - t0 < 30
    assert code == 2 and uri in err and "Traceback" not in err


def test_cached_embeddings_are_logged_without_recomputing(registry, tmp_path, monkeypatch, empty_store):
    models, tasks = registry
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    root = tmp_path / "cache"
    ds = _dataset(tasks)
    before = {k: extract(_adapter(models, k), ds, root, progress=False).embeddings for k in ("good", "noisy")}
    calls: list[int] = []
    original = FakeAtomsAdapter.embed
    monkeypatch.setattr(FakeAtomsAdapter, "embed", lambda self, s: calls.append(len(s)) or original(self, s))
    summary = run_benchmark(_config(registry, tmp_path, cache_dir=root, models=["good", "noisy"],
                                    tracking_uri=f"sqlite:///{tmp_path}/mlflow.db"))
    assert calls == []
    ok = {r.model: r for r in summary.results if r.status == "ok"}
    assert set(ok) == {"good", "noisy"} and all(r.reused for r in ok.values())
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    for key, r in ok.items():
        run = client.get_run(r.run_id)
        assert run.data.tags["matteralign.cache_reused"] == "true"
        assert run.data.params["cache_key"] == before[key].key
        local = client.download_artifacts(r.run_id, "embeddings/syn_a.npy", str(tmp_path))
        assert np.array_equal(np.load(local), before[key].features.astype(np.float32))


# --- (3) the Ray executor -----------------------------------------------------------------------------


@pytest.fixture
def ray_local():
    """Ray imported, and shut down after the test so no instance outlives it."""
    ray = pytest.importorskip("ray", reason="Ray not installed: pip install 'ray[default]' to test --executor ray")
    if ray.is_initialized():
        ray.shutdown()
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_executor_equals_local_bit_for_bit(registry, tmp_path, ray_local, capsys, empty_store):
    from benchmark.executors.ray_executor import prefetch_embeddings

    models, tasks = registry
    ds = _dataset(tasks)
    entries = list(models_by_key(load_models(models)).values())
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = _config(registry, tmp_path, executor="ray", workers=2, tracking_uri=uri)
    ray_root, local_root = tmp_path / "ray", tmp_path / "local"
    prefetch_embeddings(entries, ds, ray_root, cfg)
    assert ray_local.is_initialized() and ray_local.cluster_resources().get("CPU") == 2
    err = capsys.readouterr().err
    assert "shard 0 failed: RuntimeError: simulated model crash" in err
    for key in ("good", "noisy", "slow"):
        from_ray = extract(_adapter(models, key), ds, ray_root, progress=False)
        assert from_ray.shards_computed == 0 and from_ray.shards_reused == len(plan_shards(_adapter(models, key), ds))
        local = extract(_adapter(models, key), ds, local_root, progress=False).embeddings
        a = from_ray.embeddings
        assert a.key == local.key and a.features.dtype == local.features.dtype
        assert a.features.tobytes() == local.features.tobytes()
        assert (a.energies is None) == (local.energies is None)
        if a.energies is not None:
            assert a.energies.tobytes() == local.energies.tobytes()  # type: ignore[union-attr]

    by_executor = {}
    capsys.readouterr()
    for executor in ("local", "ray"):
        cfg = _config(registry, tmp_path, executor=executor, workers=2, cache_dir=tmp_path / f"run-{executor}",
                      models=["good", "noisy", "broken", "text-only"], tracking_uri=uri)
        by_executor[executor] = {(r.model, r.task): r for r in run_benchmark(cfg).results}
        err = capsys.readouterr().err
        # stage 2 fans out as Ray tasks too: the reference's graphs + dimensions first (the others count
        # Delta(reference -> model) on its neighbours), then the other ok model's, then both alignments
        assert ((err.count("ray: model_geometry: 1 jobs") == 2 and "ray: model_alignment: 2 jobs" in err)
                == (executor == "ray")), err[-2000:]
    local_results, ray_results = by_executor["local"], by_executor["ray"]
    assert local_results.keys() == ray_results.keys()
    for key, loc in local_results.items():
        got = ray_results[key]
        assert (got.status, got.reason) == (loc.status, loc.reason)
        if loc.status == "ok":
            assert got.features.tobytes() == loc.features.tobytes()  # type: ignore[union-attr]
            untimed = {name: v for name, v in loc.metrics.items() if not name.endswith("_seconds")}
            assert {name: got.metrics[name] for name in untimed} == untimed
            assert {"cknna_to_ref", "intrinsic_dimension", "idcor_to_ref"} <= untimed.keys()
    assert ray_results[("broken", "syn_a")].reason == "RuntimeError: simulated model crash"
