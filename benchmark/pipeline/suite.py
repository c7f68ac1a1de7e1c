"""Presets of a run and what they cost before they start.

`--suite paper` runs every model that can run here on every task at the task's `paper_n_samples` (the paper's
scale: up to 50,000 structures). Such a run can take days, so it prints its cost first: per (model, task), the
embedding seconds from the rate measured on this machine (the `timing` an embedding cache entry records, or a
probe of a few structures), the stage-2 seconds from the kNN cost model measured in bench/bench_stage2.py, and
the features a task holds in memory. Every (model, task) already in the cache costs nothing: the run resumes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from benchmark.errors import ConfigError, ModelUnavailable
from benchmark.models import build_adapter
from benchmark.registry.schema import ModelEntry, ModelsFile, TaskSpec
from benchmark.structures import Dataset

SUITES = ("default", "paper")
#: structures embedded to measure a rate when this machine has no measurement of the model
PROBE_STRUCTURES = 8
#: seconds of one cosine kNN graph per n^2 d (bench/bench_stage2.py run F: 39.6 s at n = 50,000, d = 2,048, 2 cores)
KNN_SECONDS_PER_N2D = 39.6 / (50_000**2 * 2048)
#: a model's whole stage 2 in units of its kNN graph: bench/bench_stage2.py's `stage2/knn ratio` (2.84, run F)
#: plus 0.13 for the pipeline's CKA, which runs in float64 (the bench's in float32)
STAGE2_KNN_RATIO = 2.97
#: stage-2 working memory beyond the features at n = 50,000 (bench/bench_stage2.py peak), scaled linearly in n
STAGE2_PEAK_BYTES_50K = 2.07 * 2**30


def availability(entry: ModelEntry, root: Path | None = None) -> tuple[bool, str]:
    """(runnable, reason) without loading any weights; an isolated entry gets the run's own message."""
    from benchmark.embeddings import cache_root

    try:
        adapter = build_adapter(entry)
    except ConfigError as exc:
        return False, str(exc)
    if entry.environment == "isolated":
        from benchmark.embeddings.isolated import env_dir, env_ready
        from benchmark.pipeline.embed import isolated_missing_message

        root = root or cache_root()
        if not env_ready(entry.requirements, root=root):
            return False, isolated_missing_message(entry, adapter, env_dir(entry.requirements, root=root))
        try:
            adapter.weights_path()
        except ModelUnavailable as exc:
            return False, f"isolated environment built, but: {exc}"
        except ImportError:
            return False, ("isolated environment built; its weights are resolved inside it, so they cannot be "
                           f"confirmed from here: `matteralign run --models {entry.key} --n-samples 10` checks them")
        return True, "ready (isolated environment built)"
    reason = adapter.unavailable_reason()
    return reason is None, reason or "ready"


def paper_selection(models: ModelsFile, tasks: dict[str, TaskSpec], root: Path | None = None
                    ) -> tuple[list[str], dict[str, int], dict[str, str]]:
    """(model keys that can run here, {task: paper size}, {model key: why it cannot run}) of the paper preset."""
    keys, left_out = [], {}
    for entry in models.models:
        ok, why = availability(entry, root)
        if ok:
            keys.append(entry.key)
        else:
            left_out[entry.key] = why
    sizes = {name: spec.paper_n_samples or spec.n_samples for name, spec in tasks.items()}
    return keys, sizes, left_out


@dataclass
class PairCost:
    """The estimated cost of one (model, task). state: "todo" (to embed), "cached" (in the cache: the run
    resumes) or "skipped" (the run will skip it: a structure it cannot embed, or it cannot run here); only
    "todo" costs anything. embed_seconds is None when no rate is known."""

    model: str
    task: str
    n: int
    state: Literal["todo", "cached", "skipped"]
    rate: float | None
    rate_source: str
    load_seconds: float
    dim: int | None

    @property
    def embed_seconds(self) -> float | None:
        if self.state != "todo":
            return 0.0
        return None if not self.rate else self.load_seconds + self.n / self.rate

    @property
    def stage2_seconds(self) -> float:
        return 0.0 if self.state != "todo" else stage2_seconds(self.n, self.dim or 256)


def stage2_seconds(n: int, d: int) -> float:
    """Stage-2 seconds of one (model, task) on this machine's 2-core class: ratio x one kNN graph (~ n^2 d)."""
    return STAGE2_KNN_RATIO * KNN_SECONDS_PER_N2D * n * n * d


def measured_timings(root: Path) -> dict[tuple[str, str], dict]:
    """{(model, task): timing} from the cache's finished entries that embedded something on this machine."""
    out: dict[tuple[str, str], dict] = {}
    for meta_path in sorted((Path(root) / "embeddings").glob("*/meta.json")):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        timing = meta.get("timing") or {}
        if timing.get("embedded", 0) > 0 and timing.get("embed_seconds", 0) > 0:
            out[(str(meta.get("model")), str(meta.get("task")))] = {**timing, "dim": meta.get("dim")}
    return out


def _probe(adapter, ds: Dataset) -> tuple[float, float, int]:
    """(structures/s, load seconds, dim) from embedding PROBE_STRUCTURES structures of the task after one warm-up."""
    t0 = time.perf_counter()
    adapter.load()
    load = time.perf_counter() - t0
    adapter.embed(ds.samples[:1])  # warm-up: first-call compilation and caches are not the rate
    batch = ds.samples[1:PROBE_STRUCTURES + 1] or ds.samples[:1]
    t0 = time.perf_counter()
    out = adapter.embed(batch)
    return len(batch) / max(time.perf_counter() - t0, 1e-9), load, int(out.features.shape[1])


def _unsupported(adapter, ds: Dataset) -> str | None:
    """Why the run will skip this (model, task) (a structure it cannot embed), or None."""
    for sample in ds.samples:
        why = adapter.unsupported(sample)
        if why:
            return f"skipped by the run: e.g. {sample.id}: {why}"
    return None


def estimate(entries: list[ModelEntry], datasets: dict[str, Dataset], root: Path, probe: bool = True,
             device: str = "cpu", say: Callable[[str], None] | None = None) -> list[PairCost]:
    """The cost of every (model, task): cached entries cost 0, pairs the run will skip cost 0, else a rate
    measured here (same task first, then the model's other tasks), else a probe (in-process models), else
    unknown. Each adapter is built (and, for a probe, loaded) once; `say` hears of each probe as it starts."""
    from benchmark.embeddings.extract import store_for

    timings = measured_timings(root)
    adapters: dict[str, object] = {}
    costs = []
    for task, ds in datasets.items():
        for entry in entries:
            cost = PairCost(entry.key, task, len(ds), "todo", None, "unknown", 0.0, None)
            costs.append(cost)
            try:
                adapter = adapters.get(entry.key) or adapters.setdefault(entry.key, build_adapter(entry, device))
                reason = adapter.unavailable_reason() if entry.environment != "isolated" else None
                if reason:
                    cost.state, cost.rate_source = "skipped", f"cannot run here: {reason[:160]}"
                    continue
                if store_for(adapter, ds, root).complete:
                    cost.state, cost.rate_source = "cached", "in the cache: resumes at no cost"
                    continue
                if entry.environment != "isolated":
                    skip = _unsupported(adapter, ds)
                    if skip:
                        cost.state, cost.rate_source = "skipped", skip[:200]
                        continue
            except Exception as exc:  # noqa: BLE001 - the estimate names the model and goes on
                cost.rate_source = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
                continue
            same = timings.get((entry.key, task))
            other = [(k, t) for (m, k), t in timings.items() if m == entry.key]
            if same or other:
                where, t = (task, same) if same else other[0]
                cost.rate, cost.load_seconds, cost.dim = t["embedded"] / t["embed_seconds"], t.get("load_seconds", 0.0), t.get("dim")
                cost.rate_source = f"measured here on {where} ({t['embedded']} structures, {t.get('threads') or '?'} threads)"
            elif probe and entry.environment != "isolated":
                if say is not None:
                    say(f"[estimate] {entry.key} on {task}: no rate measured here yet; probing "
                        f"{min(PROBE_STRUCTURES, len(ds))} structures")
                try:
                    cost.rate, cost.load_seconds, cost.dim = _probe(adapter, ds)
                    cost.rate_source = f"probe of {min(PROBE_STRUCTURES, len(ds))} structures"
                except Exception as exc:  # noqa: BLE001
                    cost.rate_source = f"probe failed: {type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
            elif entry.environment == "isolated":
                cost.rate_source = "unknown: an isolated model never embedded here (its first run measures it)"
    return costs


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_estimate(costs: list[PairCost], workers: int = 1) -> str:
    """The table a paper-scale run prints before it starts, with totals and the memory of its largest task."""
    lines = [f"{'model':30} {'task':12} {'n':>7} {'struct/s':>9} {'embed':>8} {'stage 2':>8}  source"]
    for c in costs:
        if c.state != "todo":
            continue
        rate = f"{c.rate:.1f}" if c.rate else "-"
        emb = _duration(c.embed_seconds) if c.embed_seconds is not None else "?"
        lines.append(f"{c.model:30} {c.task:12} {c.n:>7} {rate:>9} {emb:>8} {_duration(c.stage2_seconds):>8}  "
                     f"{c.rate_source}")
    known = [c.embed_seconds for c in costs if c.embed_seconds is not None]
    unknown = [c for c in costs if c.embed_seconds is None]
    stage2 = sum(c.stage2_seconds for c in costs)
    memory = {}
    for c in costs:
        memory[c.task] = memory.get(c.task, 0) + c.n * (c.dim or 256) * 8
    task_max = max(memory, key=memory.get) if memory else ""
    peak = memory.get(task_max, 0) + STAGE2_PEAK_BYTES_50K * max((c.n for c in costs), default=0) / 50_000
    embed = sum(known)
    todo = sum(c.state == "todo" and c.embed_seconds is not None for c in costs)
    in_cache = sum(c.state == "cached" for c in costs)
    lines += [
        "",
        f"{len(costs)} (model, task) pairs: {in_cache} already in the cache, "
        f"{sum(c.state == 'skipped' for c in costs)} the run will skip (a structure the model cannot embed, or the "
        "model cannot run here), the rest above",
        f"embedding: {_duration(embed)} for {todo} (model, task) pairs to embed"
        + (f" (/{workers} workers: {_duration(embed / workers)})" if workers > 1 else "")
        + (f"; {len(unknown)} pairs with no rate ({', '.join(sorted({c.model for c in unknown})[:6])}"
           f"{', ...' if len({c.model for c in unknown}) > 6 else ''}) not counted" if unknown else ""),
        f"stage 2: {_duration(stage2)} (model: {STAGE2_KNN_RATIO:g} x one kNN graph of ~{KNN_SECONDS_PER_N2D:.2e} "
        "s per n^2 d, as the stage-2 benchmark measured them (docs/distributed.md); d = 256 where not yet known)",
        f"memory: ~{peak / 2**30:.1f} GiB at the largest task ({task_max}: every model's features + stage 2)",
        f"total: ~{_duration(embed + stage2)} before the unknown pairs; a killed run resumes from the cache",
    ]
    return "\n".join(lines)
