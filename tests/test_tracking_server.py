"""A real tracking server: PostgreSQL backend + `mlflow server` with proxied artifacts, as on a cluster.

One run logs everything docs/run-schema.md promises through HTTP; then 8 benchmark processes log at once and
no run, metric or artifact is lost. Needs the Debian package `postgresql` and `psycopg2-binary`; the module
is skipped (with the reason) without them.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from benchmark.pipeline.run import RunConfig, run_benchmark
from benchmark.tracking import schema as S

REPO = Path(__file__).resolve().parents[1]
_initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
if not _initdb:
    pytest.skip("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin "
                "(apt-get install -y postgresql)", allow_module_level=True)
PG_BIN = Path(_initdb[-1]).parent
psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2 not installed (pip install psycopg2-binary)")
pytestmark = pytest.mark.slow

MODELS = """
reference: {model: good, fallback: auto}
models:
  - {key: good, name: Good, family: fake, modality: atoms, domain: molecules, default: true, energy_head: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 12, seed: 1, energy_noise: 0.001}}
  - {key: noisy, name: Noisy, family: fake, modality: atoms, domain: materials, default: true,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 10, seed: 2, noise: 1.0}}
  - {key: broken, name: Broken, family: fake, modality: atoms, domain: molecules,
     adapter: "tests.fake_models:BrokenAdapter"}
"""

TASK = """
name: syn_a
version: "1"
description: synthetic
loader: tests.fake_tasks:load
source: generated
level_of_theory: composition energies + noise
n_samples: 30
seed: 3
roles: {molecules: id, materials: ood}
"""

N_PROCESSES = 8
METRICS = {"cknna_to_ref", "mutual_knn_to_ref", "cka_to_ref", "intrinsic_dimension", "extract_seconds"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres() -> list[str]:
    """Command prefix that runs a PostgreSQL binary as a non-root user (postgres refuses to run as root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--"]
    pytest.skip("running as root without runuser: cannot start PostgreSQL as the 'postgres' user")


def _wait(check, proc: subprocess.Popen, what: str, timeout: float, log: Path) -> None:
    """Poll `check` until it returns True; fail with the log's tail when `proc` exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
            state = f"exited with {proc.returncode}" if proc.poll() is not None else f"not up after {timeout:.0f} s"
            raise RuntimeError(f"{what} {state}; log tail:\n{tail}")
        time.sleep(0.3)


def _stop(proc: subprocess.Popen, grace: float = 20) -> None:
    """SIGTERM the process group started for `proc`, then SIGKILL it if it is still there after `grace` s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port with an empty database 'mlflow'; yields its URI."""
    prefix = _as_postgres()
    base = Path(tempfile.mkdtemp(prefix="matteralign-pg-"))
    if prefix:
        shutil.chown(base, "postgres")
    data, log = base / "data", base / "postgres.log"
    proc = None
    try:
        subprocess.run([*prefix, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=120)
        port = _free_port()
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [*prefix, str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port),
                 "-c", "listen_addresses=127.0.0.1",
                 "-c", f"unix_socket_directories={base}", "-c", "fsync=off", "-c", "max_connections=200"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

        def ready() -> bool:
            psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres").close()
            return True

        _wait(ready, proc, "PostgreSQL", 60, log)
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE mlflow")
        conn.close()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
    finally:
        if proc is not None and proc.poll() is None:
            subprocess.run([*prefix, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "20", "stop"],
                           capture_output=True, timeout=60)
            _stop(proc)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def server(postgres: str, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """`mlflow server` on the PostgreSQL store, serving artifacts from a local folder; yields (URI, that folder)."""
    base = tmp_path_factory.mktemp("mlflow-server")
    artifacts, log = base / "artifacts", base / "server.log"
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres, "--artifacts-destination",
             str(artifacts), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=base)
    try:
        def healthy() -> bool:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                return r.status == 200

        _wait(healthy, proc, "mlflow server", 180, log)
        yield uri, artifacts
    finally:
        _stop(proc, grace=5)  # the server keeps nothing in memory: PostgreSQL and the folder hold everything


@pytest.fixture
def registry(make_registry) -> tuple[Path, Path]:
    return make_registry(MODELS, {"syn_a": TASK})


def _children(client, experiment: str) -> dict[str, list]:
    """Child runs of the experiment by parent run id."""
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    by_parent: dict[str, list] = {}
    for r in runs:
        if r.data.tags.get("matteralign.kind") == "model-task":
            by_parent.setdefault(r.data.tags["mlflow.parentRunId"], []).append(r)
    return by_parent


def test_run_logs_everything_through_the_server(server, registry, tmp_path):
    from mlflow.tracking import MlflowClient

    uri, artifacts = server
    models, tasks = registry
    summary = run_benchmark(RunConfig(models_file=models, tasks_dir=tasks, models=["good", "noisy", "broken"],
                                      tracking_uri=uri, experiment="single", leaderboard_dir=None, progress=False,
                                      n_boot=5, n_perm=2, cache_dir=tmp_path / "cache"))
    assert summary.tracking_uri == uri
    client = MlflowClient(uri)
    parent = client.get_run(summary.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["matteralign.kind"] == "parent"
    assert parent.data.tags["matteralign.reference.syn_a"] == "good"
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["summary.csv"]
    children = {r.data.tags["matteralign.model"]: r for r in _children(client, "single")[summary.parent_run_id]}
    assert set(children) == {"good", "noisy", "broken"}
    assert children["broken"].data.tags["matteralign.status"] == "failed"
    by_model = {r.model: r for r in summary.results}
    for key in ("good", "noisy"):
        run = children[key]
        assert run.data.tags["matteralign.status"] == "ok"
        assert METRICS <= set(run.data.metrics)
        assert run.data.metrics["cknna_to_ref"] == pytest.approx(by_model[key].metrics["cknna_to_ref"])
        arts = {a.path for a in client.list_artifacts(run.info.run_id, "embeddings")}
        assert {"embeddings/syn_a.npy", "embeddings/syn_a.ids.json"} <= arts
        local = client.download_artifacts(run.info.run_id, "embeddings/syn_a.npy", str(tmp_path))
        assert np.array_equal(np.load(local), by_model[key].features.astype(np.float32))
    assert "energy_mae" in children["good"].data.metrics
    # the server stored the artifacts in its own destination, not on this client's disk
    assert len(list(artifacts.rglob("syn_a.npy"))) == 2


def test_concurrent_processes_lose_nothing(server, registry, tmp_path):
    from mlflow.tracking import MlflowClient

    uri, _ = server
    models, tasks = registry
    cache = tmp_path / "shared-cache"  # shared: pairs of processes with the same seed race on the same shards
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": uri}
    procs = []
    t0 = time.monotonic()
    try:
        for i in range(N_PROCESSES):
            cmd = [sys.executable, "-m", "benchmark", "run", "--models", "good,noisy", "--tasks", "syn_a",
                   "--seed", str(i % 4), "--n-samples", "24", "--run-name", f"conc-{i}", "--experiment", "concurrent",
                   "--tracking-uri", uri, "--models-file", str(models), "--tasks-dir", str(tasks), "--cache-dir",
                   str(cache), "--no-leaderboard", "--no-progress", "--n-boot", "5", "--n-perm", "2"]
            procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        errors = [p.communicate(timeout=240)[1].decode(errors="replace") for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    elapsed = time.monotonic() - t0
    for p, err in zip(procs, errors):
        assert p.returncode == 0, err[-3000:]
    print(f"{N_PROCESSES} concurrent benchmark processes finished in {elapsed:.1f} s")

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("concurrent")
    found = client.search_runs([exp.experiment_id], "tags.`matteralign.kind` = 'parent'")
    parents = {r.info.run_name: r for r in found}
    assert set(parents) == {f"conc-{i}" for i in range(N_PROCESSES)}
    assert all(r.info.status == "FINISHED" for r in parents.values())
    by_parent = _children(client, "concurrent")
    logged: dict[tuple[int, str], tuple[dict, bytes]] = {}
    for i in range(N_PROCESSES):
        parent = parents[f"conc-{i}"]
        assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["summary.csv"]
        assert parent.data.params["n_samples.syn_a"] == "24" and parent.data.params["seed"] == str(i % 4)
        kids = {r.data.tags["matteralign.model"]: r for r in by_parent[parent.info.run_id]}
        assert set(kids) == {"good", "noisy"} and len(by_parent[parent.info.run_id]) == 2
        for key, run in kids.items():
            assert run.info.status == "FINISHED" and run.data.tags["matteralign.status"] == "ok"
            assert METRICS <= set(run.data.metrics), (run.data.tags, errors[i][-3000:])
            arts = {a.path for a in client.list_artifacts(run.info.run_id, "embeddings")}
            assert {"embeddings/syn_a.npy", "embeddings/syn_a.ids.json"} <= arts
            local = client.download_artifacts(run.info.run_id, "embeddings/syn_a.npy", str(tmp_path / f"{i}-{key}"))
            emb = np.load(local)
            assert emb.shape[0] == 24
            timings = {"extract_seconds", *(f.name for fields in S.COST_METRICS.values() for f in fields)}
            metrics = {k: v for k, v in run.data.metrics.items() if k not in timings}
            logged[(i, key)] = (metrics, emb.tobytes())
    # processes with the same seed computed the same thing: every metric and artifact arrived intact
    for i in range(N_PROCESSES // 2):
        for key in ("good", "noisy"):
            assert logged[(i, key)] == logged[(i + N_PROCESSES // 2, key)]
    assert "energy_mae" in logged[(0, "good")][0]
