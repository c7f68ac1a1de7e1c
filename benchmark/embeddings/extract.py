"""Run one adapter over one task's dataset, through the cache: finished entries are reused, shards resume."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmark import __version__
from benchmark.embeddings.cache import CacheMismatch, Embeddings, EmbeddingStore, cache_key
from benchmark.errors import DataError, ModelUnavailable, OutsideModality
from benchmark.models.base import ModelAdapter
from benchmark.structures import Dataset, Sample, ids_digest

#: batches per shard: a killed run loses at most this many batches of work
SHARD_BATCHES = 4
#: atoms per batch for atomistic models, so one huge structure does not share a batch with many others
MAX_ATOMS_PER_BATCH = 4096


@dataclass
class ExtractResult:
    embeddings: Embeddings
    reused: bool
    shards_reused: int
    shards_computed: int
    seconds: float


def key_fields(adapter: ModelAdapter, dataset: Dataset) -> dict[str, Any]:
    e = adapter.entry
    return {
        "model": e.key,
        "adapter": e.adapter,
        "checkpoint_digest": adapter.checkpoint_digest(),
        "options": e.options,
        "task": dataset.task,
        "task_version": dataset.version,
        "data_digest": dataset.digest,
        "ids_digest": ids_digest(dataset.ids),
        "layer": e.layer,
        "pooling": e.pooling,
        "dtype": e.dtype,
    }


def store_for(adapter: ModelAdapter, dataset: Dataset, root: Path | None = None) -> EmbeddingStore:
    return EmbeddingStore(cache_key(key_fields(adapter, dataset)), root)


def plan_batches(samples: Sequence[Sample], batch_size: int, max_atoms: int = MAX_ATOMS_PER_BATCH) -> list[list[int]]:
    """Consecutive batches of at most `batch_size` structures and (for atoms) about `max_atoms` atoms."""
    batches: list[list[int]] = []
    current: list[int] = []
    atoms = 0
    for i, s in enumerate(samples):
        n = max(s.n_atoms, 1)
        if current and (len(current) >= batch_size or atoms + n > max_atoms):
            batches.append(current)
            current, atoms = [], 0
        current.append(i)
        atoms += n
    if current:
        batches.append(current)
    return batches


def _check_output(adapter: ModelAdapter, batch: list[Sample], feats: np.ndarray, energies: np.ndarray | None) -> None:
    key = adapter.entry.key
    if feats.ndim != 2 or feats.shape[0] != len(batch):
        raise DataError(f"model {key!r} returned features of shape {feats.shape} for a batch of {len(batch)}")
    if feats.shape[1] == 0:
        raise DataError(f"model {key!r} returned zero-width embeddings ({len(batch)} x 0); check its layer / "
                        "feature source")
    bad = ~np.isfinite(feats).all(axis=1)
    if bad.any():
        ids = [batch[i].id for i in np.flatnonzero(bad)[:5]]
        raise DataError(f"model {key!r} returned NaN/inf features for {int(bad.sum())} structures, e.g. {ids}")
    if energies is not None and energies.shape != (len(batch),):
        raise DataError(f"model {key!r} returned energies of shape {energies.shape} for a batch of {len(batch)}")
    if energies is not None and not np.isfinite(energies).all():
        ids = [batch[i].id for i in np.flatnonzero(~np.isfinite(energies))[:5]]
        raise DataError(f"model {key!r} returned non-finite energies (NaN/inf) for "
                        f"{int((~np.isfinite(energies)).sum())} structures, e.g. {ids}")


def check_supported(adapter: ModelAdapter, ds: Dataset) -> None:
    """ModelUnavailable (OutsideModality when no structure fits) unless the model can embed every structure of
    the task: alignment needs all of them. Run before embedding, in the run or in an isolated worker."""
    bad = [(s.id, why) for s in ds.samples if (why := adapter.unsupported(s))]
    if bad:
        message = (f"{len(bad)} of {len(ds)} structures are outside what the model can embed "
                   f"(e.g. {bad[0][0]}: {bad[0][1]}); alignment needs every structure, so this task is skipped")
        if len(bad) == len(ds):
            raise OutsideModality(message, why=bad[0][1])
        raise ModelUnavailable(message)


def plan_shards(adapter: ModelAdapter, dataset: Dataset) -> list[list[list[int]]]:
    """Shards (groups of SHARD_BATCHES batches of sample indices): the unit of resumable, distributable work."""
    batches = plan_batches(dataset.samples, adapter.entry.batch_size)
    return [batches[i : i + SHARD_BATCHES] for i in range(0, len(batches), SHARD_BATCHES)]


def compute_shard(
    adapter: ModelAdapter, dataset: Dataset, store: EmbeddingStore, index: int, shard: list[list[int]], bar=None
) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """(features, energies, reused) of one shard: read back when already written, else embedded and written."""
    samples = dataset.samples
    idx = [i for b in shard for i in b]
    ids = [samples[i].id for i in idx]
    dtype = np.float32 if adapter.entry.dtype == "float32" else np.float64
    got = store.read_shard(index, ids, dtype)
    if got is not None:
        if bar is not None:
            bar.update(len(idx))
        return got[0], got[1], True
    adapter.load()
    f_list, e_list = [], []
    for b in shard:
        batch = [samples[i] for i in b]
        out = adapter.embed(batch)
        feats = np.asarray(out.features, dtype=dtype)
        energies = None if out.energies is None else np.asarray(out.energies, dtype=np.float64)
        _check_output(adapter, batch, feats, energies)
        f_list.append(feats)
        e_list.append(energies)
        if bar is not None:
            bar.update(len(b))
    feats = np.concatenate(f_list)
    energies = None if any(e is None for e in e_list) else np.concatenate(e_list)  # type: ignore[arg-type]
    store.write_shard(index, ids, feats, energies)
    return feats, energies, False


def extract(
    adapter: ModelAdapter,
    dataset: Dataset,
    root: Path | None = None,
    progress: bool = True,
) -> ExtractResult:
    """Embeddings of every sample of `dataset`, from the cache when present, else computed shard by shard."""
    t0 = time.perf_counter()
    store = store_for(adapter, dataset, root)
    if store.complete:
        try:
            return ExtractResult(store.load(), True, 0, 0, time.perf_counter() - t0)
        except CacheMismatch as exc:
            print(f"matteralign: recomputing embeddings of model {adapter.entry.key!r} on task {dataset.task!r}: {exc}",
                  file=sys.stderr)
            store.invalidate()
    entry = adapter.entry
    feats_parts: list[np.ndarray] = []
    energy_parts: list[np.ndarray | None] = []
    reused = computed = 0
    bar = _progress(len(dataset), f"{entry.key} / {dataset.task}", progress)
    shards = plan_shards(adapter, dataset)
    reused_flags: list[bool] = []
    load_s = embed_s = 0.0
    embedded = 0
    if not all(store.shard_path(i).exists() for i in range(len(shards))):
        t_load = time.perf_counter()
        adapter.load()  # timed apart, so the logged rate is the model's, not its start-up
        load_s = time.perf_counter() - t_load
    for s_idx, shard in enumerate(shards):
        t_shard = time.perf_counter()
        feats, energies, was_reused = compute_shard(adapter, dataset, store, s_idx, shard, bar)
        if not was_reused:
            embed_s += time.perf_counter() - t_shard
            embedded += len(feats)
        reused_flags.append(was_reused)
        feats_parts.append(feats)
        energy_parts.append(energies)
    bar.close()
    widths = {f.shape[1] for f in feats_parts}
    if len(widths) > 1:
        fresh = {f.shape[1] for f, r in zip(feats_parts, reused_flags) if not r}
        if len(fresh) != 1:
            raise DataError(
                f"model {entry.key!r}: shards of {store.path} have different widths {sorted(widths)}; delete it and rerun"
            )
        for s_idx, shard in enumerate(shards):
            if reused_flags[s_idx] and feats_parts[s_idx].shape[1] not in fresh:
                store.shard_path(s_idx).unlink(missing_ok=True)
                feats_parts[s_idx], energy_parts[s_idx], _ = compute_shard(adapter, dataset, store, s_idx, shard)
                reused_flags[s_idx] = False
    reused = sum(reused_flags)
    computed = len(shards) - reused
    dtype = np.float32 if entry.dtype == "float32" else np.float64
    features = np.concatenate(feats_parts) if feats_parts else np.zeros((0, 0), dtype=dtype)
    energies_all = None if any(e is None for e in energy_parts) else np.concatenate(energy_parts)  # type: ignore[arg-type]
    meta = {
        "benchmark_version": __version__,
        "model": entry.key,
        "task": dataset.task,
        "task_version": dataset.version,
        "data_digest": dataset.digest,
        "checkpoint_digest": adapter.checkpoint_digest(),
        "layer": entry.layer,
        "pooling": entry.pooling,
        "dtype": entry.dtype,
        "feature_source": adapter.feature_source,
        "timing": {"load_seconds": load_s, "embed_seconds": embed_s, "embedded": embedded,
                   "threads": _threads(), "device": adapter.device},
    }
    emb = store.finalize(dataset.ids, features, energies_all, meta)
    return ExtractResult(emb, False, reused, computed, time.perf_counter() - t0)


def _threads() -> int | None:
    """torch's intra-op threads when a model loaded torch (not imported here for a model that does not use it)."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="struct", file=sys.stderr, leave=False, dynamic_ncols=True)
