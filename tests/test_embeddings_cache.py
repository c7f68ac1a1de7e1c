"""The embedding cache: content-addressed, atomic, resumable, and bit-identical after an interruption."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.embeddings import extract, plan_batches, store_for
from benchmark.registry.schema import ModelEntry
from benchmark.structures import Dataset, Sample
from tests.fake_models import FakeAtomsAdapter


def molecules(n: int, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        m = int(rng.integers(3, 9))
        out.append(Sample(id=f"m{i:03d}", numbers=rng.choice([1, 6, 7, 8], size=m), positions=rng.normal(size=(m, 3)) * 1.5))
    return out


def entry(**kw) -> ModelEntry:
    base = dict(key="fake", name="Fake", family="fake", modality="atoms", domain="molecules",
                adapter="tests.fake_models:FakeAtomsAdapter", batch_size=4, options={"dim": 8})
    base.update(kw)
    return ModelEntry(**base)


def test_second_extraction_reuses_cache(tmp_path):
    ds = Dataset("t", "1", molecules(30))
    first = extract(FakeAtomsAdapter(entry()), ds, tmp_path, progress=False)
    assert not first.reused and first.shards_computed > 0
    second = extract(FakeAtomsAdapter(entry()), ds, tmp_path, progress=False)
    assert second.reused
    np.testing.assert_array_equal(first.embeddings.features, second.embeddings.features)
    assert second.embeddings.ids == ds.ids


def test_key_changes_with_data_options_and_ids(tmp_path):
    ds = Dataset("t", "1", molecules(12))
    keys = {
        store_for(FakeAtomsAdapter(entry()), ds, tmp_path).key,
        store_for(FakeAtomsAdapter(entry(options={"dim": 9})), ds, tmp_path).key,
        store_for(FakeAtomsAdapter(entry()), Dataset("t", "1", molecules(12, seed=1)), tmp_path).key,
        store_for(FakeAtomsAdapter(entry()), ds.subset(range(11)), tmp_path).key,
        store_for(FakeAtomsAdapter(entry(dtype="float64")), ds, tmp_path).key,
        store_for(FakeAtomsAdapter(entry()), Dataset("t", "2", ds.samples), tmp_path).key,
    }
    assert len(keys) == 6


def test_interrupted_run_resumes_bit_identical(tmp_path, monkeypatch):
    ds = Dataset("t", "1", molecules(40))
    clean = extract(FakeAtomsAdapter(entry()), ds, tmp_path / "clean", progress=False).embeddings.features

    calls = {"n": 0}
    real_embed = FakeAtomsAdapter.embed

    def crashing(self, batch):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real_embed(self, batch)

    monkeypatch.setattr(FakeAtomsAdapter, "embed", crashing)
    with pytest.raises(KeyboardInterrupt):
        extract(FakeAtomsAdapter(entry()), ds, tmp_path / "resume", progress=False)
    store = store_for(FakeAtomsAdapter(entry()), ds, tmp_path / "resume")
    assert not store.complete
    shards = sorted(store.shard_dir.glob("shard-*.npz"))
    assert len(shards) == 1 and not list(store.shard_dir.glob("*.tmp"))
    monkeypatch.setattr(FakeAtomsAdapter, "embed", real_embed)
    resumed = extract(FakeAtomsAdapter(entry()), ds, tmp_path / "resume", progress=False)
    assert resumed.shards_reused == 1 and resumed.shards_computed == 2
    np.testing.assert_array_equal(resumed.embeddings.features, clean)


def test_corrupt_shard_is_recomputed(tmp_path):
    ds = Dataset("t", "1", molecules(20))
    adapter = FakeAtomsAdapter(entry())
    store = store_for(adapter, ds, tmp_path)
    store.shard_dir.mkdir(parents=True)
    store.shard_path(0).write_bytes(b"not a zip")
    out = extract(adapter, ds, tmp_path, progress=False)
    assert out.shards_reused == 0
    clean = extract(FakeAtomsAdapter(entry()), ds, tmp_path / "other", progress=False)
    np.testing.assert_array_equal(out.embeddings.features, clean.embeddings.features)


def test_nan_features_are_rejected(tmp_path, monkeypatch):
    from benchmark.errors import DataError
    from benchmark.models.base import EmbedOutput

    monkeypatch.setattr(FakeAtomsAdapter, "embed", lambda self, b: EmbedOutput(np.full((len(b), 3), np.nan)))
    with pytest.raises(DataError, match="NaN/inf features"):
        extract(FakeAtomsAdapter(entry()), Dataset("t", "1", molecules(5)), tmp_path, progress=False)


def test_batches_bound_atoms_and_size():
    samples = molecules(50)
    batches = plan_batches(samples, batch_size=7, max_atoms=20)
    assert [i for b in batches for i in b] == list(range(50))
    for b in batches:
        assert len(b) <= 7
        assert len(b) == 1 or sum(samples[i].n_atoms for i in b) <= 20


def test_finishing_an_entry_removes_only_dead_writers_temporary_files(tmp_path):
    """Two processes finishing the same entry at once: neither deletes the other's file in flight."""
    import os
    import subprocess
    import sys

    from benchmark.embeddings import cache

    ds = Dataset("t", "1", molecules(12))
    adapter = FakeAtomsAdapter(entry())
    store = store_for(adapter, ds, tmp_path)
    store.path.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    names = {
        "live": f".features.npy.h{cache._HOST}p{os.getpid()}.abcd1234.tmp",
        "dead": f".features.npy.h{cache._HOST}p{dead_pid}.abcd1234.tmp",
        "other-host": f".features.npy.h{'0' * 8 if cache._HOST != '0' * 8 else '1' * 8}p1.abcd1234.tmp",
        "untagged": ".features.npy.abcd1234.tmp",
    }
    for name in names.values():
        (store.path / name).write_bytes(b"x")
    extract(adapter, ds, tmp_path, progress=False)
    left = {p.name for p in store.path.glob(".*.tmp")}
    assert left == {names["live"], names["other-host"]}


def test_shard_write_after_another_process_finished_the_entry(tmp_path, monkeypatch):
    """The folder of shards removed under a writer is fine when the entry is complete, an error otherwise."""
    from benchmark.embeddings import cache

    ds = Dataset("t", "1", molecules(12))
    store = store_for(FakeAtomsAdapter(entry()), ds, tmp_path)

    def vanished(path, data):
        raise FileNotFoundError(path)

    monkeypatch.setattr(cache, "atomic_write_bytes", vanished)
    feats = np.zeros((2, 8), dtype=np.float32)
    with pytest.raises(FileNotFoundError):
        store.write_shard(0, ["a", "b"], feats, None)
    monkeypatch.undo()
    extract(FakeAtomsAdapter(entry()), ds, tmp_path, progress=False)
    monkeypatch.setattr(cache, "atomic_write_bytes", vanished)
    store.write_shard(0, ["a", "b"], feats, None)
