"""Fault injection (issue 14, items 2, 3, 4, 8, 10): corrupt caches, racing processes, unreachable stores.

Each case asserts that nothing gets worse (numbers equal to a clean run), that the failure names the model /
file / URI, and that the next run recovers without manual cleanup. Every subprocess is bounded in time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmark.embeddings import extract, store_for
from benchmark.errors import MatteralignError
from benchmark.knn.cache import cached_knn_graph
from benchmark.knn.graph import knn_graph
from benchmark.registry.schema import ModelEntry
from benchmark.structures import Dataset, Sample
from tests.fake_models import FakeAtomsAdapter

ROOT = Path(__file__).resolve().parents[1]


def _molecules(n: int) -> list[Sample]:
    rng = np.random.default_rng(0)
    return [Sample(id=f"m{i:03d}", numbers=rng.choice([1, 6, 8], size=5), positions=rng.normal(size=(5, 3)) * 1.5)
            for i in range(n)]


def _adapter() -> FakeAtomsAdapter:
    return FakeAtomsAdapter(ModelEntry(
        key="fake-e", name="Fake", family="fake", modality="atoms", domain="molecules",
        adapter="tests.fake_models:FakeAtomsAdapter", batch_size=4, options={"dim": 8, "energy_noise": 0.01}))


def _wrong_width(p: Path) -> None:
    np.save(p / "features.npy", np.ones((20, 5), dtype=np.float32))


def _random_same_shape(p: Path) -> None:
    f = np.load(p / "features.npy")
    np.save(p / "features.npy", np.random.default_rng(1).normal(size=f.shape).astype(f.dtype))


def _zero_energies(p: Path) -> None:
    np.save(p / "energies.npy", np.zeros(20))


def _deleted_energies(p: Path) -> None:
    (p / "energies.npy").unlink()


def _no_digest(p: Path) -> None:  # an entry written before digests existed
    meta = json.loads((p / "meta.json").read_text())
    meta.pop("digest")
    (p / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("corrupt", [_wrong_width, _random_same_shape, _zero_energies, _deleted_energies, _no_digest])
def test_a_corrupt_embedding_entry_is_recomputed_and_named(tmp_path, capsys, corrupt):
    ds = Dataset("qm-test", "1", _molecules(20))
    clean = extract(_adapter(), ds, tmp_path, progress=False).embeddings
    folder = store_for(_adapter(), ds, tmp_path).path
    corrupt(folder)
    capsys.readouterr()
    again = extract(_adapter(), ds, tmp_path, progress=False)
    err = capsys.readouterr().err
    assert not again.reused  # recomputed, not used
    np.testing.assert_array_equal(again.embeddings.features, clean.features)
    np.testing.assert_array_equal(again.embeddings.energies, clean.energies)
    assert "fake-e" in err and "qm-test" in err and str(folder) in err
    third = extract(_adapter(), ds, tmp_path, progress=False)  # recovered: the rewritten entry verifies
    assert third.reused and capsys.readouterr().err == ""


def test_digest_check_on_read_is_cheap(tmp_path):
    from benchmark.embeddings.cache import EmbeddingStore

    X = np.random.default_rng(0).normal(size=(1000, 2048)).astype(np.float32)
    store = EmbeddingStore("k", tmp_path)
    store.finalize([f"s{i}" for i in range(1000)], X, np.zeros(1000), {})
    t0 = time.perf_counter()
    store.load()
    assert time.perf_counter() - t0 < 2.0  # ~8 MB: sha256 at ~1 GB/s is a few ms


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _garbage(p: Path) -> None:
    p.write_bytes(b"not a zip file at all" * 10)


def _tampered(p: Path) -> None:  # well-formed file, same keys, other neighbour distances
    with np.load(p, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["values"] = arrays["values"] * 0 + 1.0
    with open(p, "wb") as fh:
        np.savez(fh, **arrays)


@pytest.mark.parametrize("corrupt", [_truncate, _empty, _garbage, _tampered])
def test_a_corrupt_knn_cache_file_is_recomputed_and_named(tmp_path, capsys, corrupt):
    X = np.random.default_rng(0).normal(size=(40, 6))
    path = tmp_path / "knn" / "g.npz"
    cached_knn_graph(X, 5, "cosine", path)
    corrupt(path)
    capsys.readouterr()
    g = cached_knn_graph(X, 5, "cosine", path)
    ref = knn_graph(X, 5, metric="cosine")
    np.testing.assert_array_equal(g.indices, ref.indices)
    np.testing.assert_allclose(g.values, ref.values)
    assert str(path) in capsys.readouterr().err
    cached_knn_graph(X, 5, "cosine", path)  # recovered: read back without a message
    assert capsys.readouterr().err == ""


def _run_all(scripts: list[str], timeout: float, env: dict | None = None) -> list[subprocess.CompletedProcess]:
    """Start every script at once (real processes), wait for all, bounded by `timeout` seconds in total."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    procs = [subprocess.Popen([sys.executable, "-c", s], cwd=ROOT, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for s in scripts]
    deadline = time.monotonic() + timeout
    out = []
    for p in procs:
        try:
            so, se = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"processes still running after {timeout:.0f} s")
        out.append(subprocess.CompletedProcess(p.args, p.returncode, so, se))
    return out


_LOG_ONE_RUN = """
import mlflow
from benchmark import tracking
tracking.setup({uri!r}, "fresh")
with mlflow.start_run(run_name="r{i}"):
    mlflow.log_metric("x", {i})
"""


@pytest.mark.slow
def test_three_processes_on_a_fresh_sqlite_store_all_succeed(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'new.db'}"
    results = _run_all([_LOG_ONE_RUN.format(uri=uri, i=i) for i in range(3)], timeout=240)
    for r in results:
        assert r.returncode == 0, r.stderr[-2000:]
    later = _run_all([_LOG_ONE_RUN.format(uri=uri, i=3)], timeout=120)[0]
    assert later.returncode == 0, later.stderr[-2000:]
    exp = MlflowClient(uri).get_experiment_by_name("fresh")
    assert len(MlflowClient(uri).search_runs([exp.experiment_id])) == 4


def test_a_migration_error_says_what_it_is(tmp_path, monkeypatch):
    from benchmark import tracking

    def broken(name, artifact_location=None):
        raise RuntimeError("(sqlite3.OperationalError) table _alembic_tmp_tags already exists")

    monkeypatch.setattr(tracking, "get_or_create_experiment", broken)
    with pytest.raises(MatteralignError, match="migrat") as info:
        tracking.setup(f"sqlite:///{tmp_path / 'm.db'}", "x")
    assert str(tmp_path / "m.db") in str(info.value) and "Start the server" not in str(info.value)


_SETUP = """
import sys, time
from benchmark import tracking
from benchmark.errors import MatteralignError
t0 = time.monotonic()
try:
    tracking.setup({uri!r}, "x")
except MatteralignError as exc:
    print(f"{{time.monotonic() - t0:.2f}}", exc, file=sys.stderr)
    sys.exit(3)
"""


def test_an_unreachable_tracking_server_fails_in_seconds_naming_it():
    uri = "http://127.0.0.1:1"
    t0 = time.monotonic()
    r = _run_all([_SETUP.format(uri=uri)], timeout=60, env={"MLFLOW_TRACKING_URI": uri})[0]
    assert r.returncode == 3 and uri in r.stderr
    assert float(r.stderr.split()[0]) < 5.0  # setup itself; the process (imports included) is bounded at 60 s
    assert time.monotonic() - t0 < 60


@pytest.mark.parametrize("where", ["missing", "read-only"])
def test_a_new_sqlite_file_in_an_unusable_folder_fails_at_once_naming_it(tmp_path, where):
    folder = tmp_path / "no" / "such" if where == "missing" else tmp_path / "ro"
    if where == "read-only":
        if os.geteuid() == 0:
            pytest.skip("root can write into a read-only folder")
        folder.mkdir()
        folder.chmod(0o500)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    r = _run_all([_SETUP.format(uri=uri)], timeout=60)[0]
    assert r.returncode == 3 and str(folder / "mlflow.db") in r.stderr and "MLFLOW_TRACKING_URI" in r.stderr
    assert float(r.stderr.split()[0]) < 5.0


_WRITE_BOARD = """
import pathlib, time
from benchmark.leaderboard.build import write_leaderboard
gate = pathlib.Path({gate!r})
(gate / "{i}").touch()
deadline = time.monotonic() + 120
while len(list(gate.iterdir())) < {n} and time.monotonic() < deadline:  # start writing together, after imports
    time.sleep(0.01)
time.sleep({i} * 0.4)  # staggered, so one process clears figures/ while another is still writing its page
write_leaderboard({out!r}, {uri!r}, "matteralign")
"""


@pytest.mark.slow
def test_three_processes_writing_one_leaderboard_all_succeed(tmp_path):
    from mlflow_fixtures import FakeStore

    store = FakeStore(tmp_path)
    p = store.parent({"qm9": "ref"})
    for i, key in enumerate(("ref", "a", "b")):
        store.child(p, key, "qm9", metrics={"cknna_to_ref": 1.0 - 0.2 * i, "intrinsic_dimension": 5.0},
                    embed=True, seed=i)
    out = tmp_path / "board"
    gate = tmp_path / "gate"
    gate.mkdir()
    results = _run_all([_WRITE_BOARD.format(out=str(out), uri=store.uri, gate=str(gate), i=i, n=3)
                        for i in range(3)], timeout=300)
    for r in results:
        assert r.returncode == 0, r.stderr[-2000:]
    assert {"leaderboard.csv", "leaderboard.json", "index.html"} <= {f.name for f in out.iterdir()}
    json.loads((out / "leaderboard.json").read_text())
    assert list((out / "figures").glob("*.png"))
    later = _run_all([_WRITE_BOARD.format(out=str(out), uri=store.uri, gate=str(gate), i=0, n=1)], timeout=120)[0]
    assert later.returncode == 0, later.stderr[-2000:]


def test_publish_dir_replaces_each_file_whole(tmp_path):
    from benchmark.io import publish_dir, staging_dir

    final = tmp_path / "board"
    for version in ("old", "new"):
        tmp = staging_dir(final)
        (tmp / "figures").mkdir()
        (tmp / "a.txt").write_text(version)
        (tmp / "figures" / "f.png").write_text(version)
        publish_dir(tmp, final)
        assert not tmp.exists()
    assert (final / "a.txt").read_text() == "new" and (final / "figures" / "f.png").read_text() == "new"
