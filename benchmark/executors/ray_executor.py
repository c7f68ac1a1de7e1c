"""Ray execution: embedding shards (`prefetch_embeddings`) and the per-model jobs of stage 2 (`map_jobs`).

Embeddings: one task per (model, shard), so a cluster embeds in parallel.

`prefetch_embeddings` runs before the sequential pass of `run_benchmark`, which then finds every shard in
the content-addressed cache and only concatenates, reports and logs. Consequences of that design:

- A job writes its shard with `compute_shard` (atomic files) and returns a small status dict: embeddings
  never travel through the object store, and a killed worker loses at most its own shard.
- Models that cannot run here (not importable, missing package or weights, unsupported structures,
  `environment: isolated`) are skipped silently; the sequential pass reports them as it always does.
- A failing job is not fatal: its message (``ErrorType: message``, the sequential path's wording) is printed,
  the model's other jobs are cancelled, and the sequential pass meets the same error and records it.
- Adapters are built once per worker process and kept for the next shards of the same model.

Stage 2 (`benchmark.pipeline.align`): every model's kNN graphs and intrinsic dimension, then every model's
alignment to the reference, each a Ray task running the same function the local loop runs; the graphs meet in
the shared cache and only metric dicts come back.

On a cluster the cache root must be a filesystem that every node and the driver share (NFS, Lustre, a PVC),
and every node needs matteralign and the model packages installed; see docs/distributed.md.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from benchmark.embeddings.cache import EmbeddingStore
from benchmark.embeddings.extract import compute_shard, plan_shards, store_for
from benchmark.errors import ConfigError, MatteralignError
from benchmark.models.base import ModelAdapter
from benchmark.models import build_adapter
from benchmark.registry import ModelEntry
from benchmark.structures import Dataset

#: adapters a worker process keeps loaded; the oldest is dropped so a worker moving on to the next model
#: does not end up holding every model of the zoo in memory
ADAPTERS_PER_WORKER = 2


@dataclass
class ShardJob:
    """One unit of work: shard `index` (batches of sample indices) of `entry` on the task's dataset."""

    entry: ModelEntry
    index: int
    shard: list[list[int]]
    key: str


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def plan_jobs(entries: list[ModelEntry], dataset: Dataset, root: Path, device: str) -> list[ShardJob]:
    """The shards missing from the cache, for the entries that can run in this environment, model by model."""
    jobs: list[ShardJob] = []
    for entry in entries:
        if entry.environment != "main":
            continue
        try:
            adapter = build_adapter(entry, device)
            if adapter.unavailable_reason() or any(adapter.unsupported(s) for s in dataset.samples):
                continue
            store = store_for(adapter, dataset, root)
            if store.complete:
                continue
            shards = plan_shards(adapter, dataset)
        except (MatteralignError, ImportError, RuntimeError, ValueError, OSError, TypeError):
            continue
        jobs += [ShardJob(entry, i, s, store.key) for i, s in enumerate(shards) if not store.shard_path(i).is_file()]
    return jobs


class _Loaded:
    """A worker's adapter for one (entry, device) and the cache stores it has resolved, by dataset digest."""

    def __init__(self, adapter: ModelAdapter) -> None:
        self.adapter = adapter
        self.stores: dict[str, EmbeddingStore] = {}


_WORKER_CACHE: OrderedDict[tuple[str, str], _Loaded] = OrderedDict()


def _worker_adapter(entry: ModelEntry, device: str) -> _Loaded:
    ident = (entry.model_dump_json(), device)
    loaded = _WORKER_CACHE.pop(ident, None) or _Loaded(build_adapter(entry, device))
    _WORKER_CACHE[ident] = loaded
    while len(_WORKER_CACHE) > ADAPTERS_PER_WORKER:
        _WORKER_CACHE.popitem(last=False)
    return loaded


def run_shard(
    entry: ModelEntry, dataset: Dataset, root: Path, device: str, index: int, shard: list[list[int]]
) -> dict[str, Any]:
    """Embed one shard into the shared cache (the body of a Ray task); returns only a small status dict."""
    t0 = time.perf_counter()
    status: dict[str, Any] = {"model": entry.key, "shard": index, "n": sum(len(b) for b in shard)}
    try:
        loaded = _worker_adapter(entry, device)
        store = loaded.stores.get(dataset.digest)
        if store is None:
            store = loaded.stores[dataset.digest] = store_for(loaded.adapter, dataset, root)
        _, _, reused = compute_shard(loaded.adapter, dataset, store, index, shard)
    except Exception as exc:  # noqa: BLE001 - reported by the driver, then met again by the sequential pass
        status["error"] = f"{type(exc).__name__}: {exc}"
        return status
    status.update(key=store.key, reused=reused, seconds=time.perf_counter() - t0, host=os.uname().nodename)
    return status


def _init_ray(cfg: Any):
    """The `ray` module, connected to cfg.ray_address, the job's cluster ($RAY_ADDRESS) or a new local instance."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--executor ray needs Ray: pip install 'ray[default]' (the 'ray' extra of matteralign)"
        ) from None
    if ray.is_initialized():
        return ray
    if cfg.workers is not None and cfg.workers < 1:
        raise ConfigError(f"--workers must be a positive integer, got {cfg.workers}")
    if cfg.ray_address or os.environ.get("RAY_ADDRESS"):
        kwargs: dict[str, Any] = {"address": cfg.ray_address} if cfg.ray_address else {}
        where = cfg.ray_address or os.environ["RAY_ADDRESS"]
    else:
        kwargs = {"num_cpus": cfg.workers or os.cpu_count() or 1, "include_dashboard": False}
        where = "a new local Ray instance"
    try:
        ray.init(**kwargs, logging_level=logging.WARNING)
    except Exception as exc:  # noqa: BLE001 - any connection/start failure becomes one actionable message
        raise ConfigError(
            f"cannot start or reach Ray at {where}: {type(exc).__name__}: {str(exc)[:300]}. "
            "Check --ray-address (e.g. ray://head:10001 or auto inside a Ray job) or run with --executor local."
        ) from None
    return ray


def prefetch_embeddings(entries: list[ModelEntry], dataset: Dataset, root: Path, cfg: Any) -> None:
    """Compute every missing (model, shard) of `dataset` as Ray tasks into the cache under `root`.

    `cfg` is the run's RunConfig (device, ray_address, workers). With `workers` set, at most that many jobs
    are in flight at once (also on a shared cluster). Returns when every job has finished, failed or was cancelled.
    """
    root = Path(root).expanduser().resolve()
    _ = dataset.digest  # computed once here, shipped with the dataset instead of by every worker
    jobs = plan_jobs(entries, dataset, root, cfg.device)
    if not jobs:
        return
    ray = _init_ray(cfg)
    gpus = 1 if str(cfg.device).startswith("cuda") else 0
    task = ray.remote(run_shard).options(num_cpus=1, num_gpus=gpus, max_retries=2, retry_exceptions=False)
    data_ref = ray.put(dataset)
    limit = cfg.workers or len(jobs)
    queue = list(reversed(jobs))
    pending: dict[Any, ShardJob] = {}
    failed: dict[str, str] = {}
    t0, done, reported, total = time.perf_counter(), 0, 0, len(jobs)
    n_models = len({j.entry.key for j in jobs})
    _say(f"[task {dataset.task}] ray: {total} shards of {n_models} models to embed")
    while queue or pending:
        while queue and len(pending) < limit:
            job = queue.pop()
            if job.entry.key in failed:
                continue
            pending[task.remote(job.entry, data_ref, root, cfg.device, job.index, job.shard)] = job
        if not pending:
            break
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            job = pending.pop(ref)
            done += 1
            status = _status(ray, ref, job)
            if status is None:
                continue
            if "error" in status:
                _fail(ray, job, status["error"], failed, pending)
            elif status["key"] != job.key:
                _fail(ray, job, f"worker cache key {status['key'][:12]} differs from {job.key[:12]} here: the "
                      "worker sees other weights or code", failed, pending)
        if done - reported >= max(1, total // 10):
            reported = done
            _say(f"[task {dataset.task}] ray: {done}/{total} shards, {time.perf_counter() - t0:.1f} s")
    _say(f"[task {dataset.task}] ray: finished in {time.perf_counter() - t0:.1f} s"
         + (f"; failed models: {', '.join(sorted(failed))}" if failed else ""))


def map_jobs(fn: Callable, calls: list[dict], shared: dict, cfg: Any, label: str) -> list:
    """[fn(**call, **shared) for call in calls], each call a Ray task (1 CPU); results in the order of `calls`.

    `shared` values (e.g. the reference's features) go into the object store once, not once per task. With
    `cfg.workers` set, at most that many tasks are in flight. A task that raises re-raises here with its own
    traceback, as the local loop would.
    """
    if not calls:
        return []
    ray = _init_ray(cfg)
    task = ray.remote(fn).options(num_cpus=1, max_retries=2, retry_exceptions=False)
    shared_refs = {name: ray.put(value) for name, value in shared.items()}
    limit = cfg.workers or len(calls)
    t0 = time.perf_counter()
    results: list = [None] * len(calls)
    pending: dict[Any, int] = {}
    queue = list(range(len(calls)))[::-1]
    while queue or pending:
        while queue and len(pending) < limit:
            i = queue.pop()
            pending[task.remote(**calls[i], **shared_refs)] = i
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            i = pending.pop(ref)
            try:
                results[i] = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                for other in pending:
                    ray.cancel(other)
                raise exc.as_instanceof_cause() from None
    _say(f"{label}: {len(calls)} jobs in {time.perf_counter() - t0:.1f} s")
    return results


def _status(ray: Any, ref: Any, job: ShardJob) -> dict[str, Any] | None:
    """The job's status dict (a dead worker or lost node becomes an error status); None when it was cancelled."""
    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return None
    except ray.exceptions.RayError as exc:
        return {"model": job.entry.key, "shard": job.index, "error": f"{type(exc).__name__}: {str(exc)[:500]}"}


def _fail(ray: Any, job: ShardJob, error: str, failed: dict[str, str], pending: dict[Any, ShardJob]) -> None:
    """Record the model's first error and cancel its other in-flight jobs; the sequential pass reports it."""
    if job.entry.key in failed:
        return
    failed[job.entry.key] = error
    _say(f"[ray] {job.entry.key}: shard {job.index} failed: {error} (the sequential pass reports it)")
    for ref, other in pending.items():
        if other.entry.key == job.entry.key:
            ray.cancel(ref)
