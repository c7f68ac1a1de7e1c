"""What every task loader shares: the data cache, and the screen that leaves out what no model can embed.

A loader screens its whole candidate pool *before* it samples, so that every model of a modality sees the
same structures and none loses the task for a handful it cannot read; each exclusion is counted by reason
and handed back with the samples (`Loaded`), and `build_dataset` puts the counts in `Dataset.metadata`.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from benchmark.errors import DataError
from benchmark.io import atomic_write_bytes, cache_root
from benchmark.structures import Sample

# Every graph MLIP of the zoo builds its graph within a 5-6 A cutoff (CHGNet 0.2.0 and SevenNet: 5 A, the
# smallest): an atom with no neighbour within 5 A is one CHGNet refuses outright and SevenNet embeds as a free
# atom (identical features for any such cell), so the samplers screen at the smallest cutoff.
NEIGHBOUR_CUTOFF = 5.0


def cache_dir() -> Path:
    """Where built task data is cached: benchmark.io's cache root + /data ($MATTERALIGN_CACHE/data)."""
    return cache_root() / "data"


def builders_digest(folder: Path = Path(__file__).parent) -> str:
    """sha256 over the source of every task module: the code that screens, samples and builds the cached data.
    Part of every cache name, so a change to a screen or a sampler can never be served a pool built before it
    (a hand-bumped version number was once forgotten, and a board got frozen on a stale pool). Reads ~10 small
    files: not worth caching."""
    h = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def cached_json(
    task: str, inputs: Any, build: Callable[[], Any], parse: Callable[[Any], Any] | None = None
) -> Any:
    """The task data built by `build()` from `inputs`, cached as JSON under cache_dir() and written atomically
    (benchmark.io); the one place a task cache is named: `<task>-<sha256 of inputs>-<builders digest>.json`.

    inputs: everything the data depends on besides the task code (options, seed, source files and their sizes,
    library versions), JSON-serialisable. parse: turns the JSON into the loader's objects; a KeyError,
    TypeError or ValueError it raises on a cached file (or an unreadable file) is a DataError naming the file
    and the fix (delete it)."""
    tag = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"{task}-{tag}-{builders_digest()[:12]}.json"
    parse = parse or (lambda obj: obj)
    if not path.is_file():
        obj = build()
        atomic_write_bytes(path, json.dumps(obj, sort_keys=True).encode(), mode=0o644)
        return parse(obj)
    try:
        return parse(json.loads(path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"task {task}: cached task data {path} is unreadable ({type(exc).__name__}: {exc}); "
                        "delete it and rerun") from None


class Loaded(list):
    """A loader's result: the samples (it is their list), plus `excluded` {reason: count} of the candidates its
    screen left out before sampling and free-form `info` about the pool."""

    def __init__(self, samples: Iterable[Sample], excluded: dict[str, int] | None = None,
                 info: dict[str, Any] | None = None) -> None:
        super().__init__(samples)
        self.excluded = dict(excluded or {})
        self.info = dict(info or {})

    @property
    def samples(self) -> list[Sample]:
        return list(self)


class Screen:
    """Counts exclusions by reason: `keep(reason)` is True when reason is None, else the reason is counted."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def keep(self, reason: str | None) -> bool:
        if reason is None:
            return True
        self.counts[reason] += 1
        return False

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


def neighbour_reason(
    numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray | None, pbc: bool, min_dist: float,
    cutoff: float = NEIGHBOUR_CUTOFF,
) -> str | None:
    """'atoms closer than min_dist A' or 'an atom without a neighbour within 5 A' (periodic images count); else None.

    One ase neighbour list, ~5-30 ms for a cell of <= 48 atoms.
    """
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    if len(numbers) == 1 and not pbc:
        return f"an atom without a neighbour within {cutoff:g} A"
    atoms = Atoms(numbers=numbers, positions=positions, cell=cell if cell is not None else np.zeros((3, 3)), pbc=pbc)
    first, dist = neighbor_list("id", atoms, cutoff)
    if len(dist) and dist.min() < min_dist:
        return f"atoms closer than {min_dist:g} A"
    if len(np.unique(first)) < len(numbers):
        return f"an atom without a neighbour within {cutoff:g} A"
    return None


def seeded_pick(n_total: int, n: int, seed: int) -> np.ndarray:
    """n sorted indices out of n_total, without replacement, deterministic for seed."""
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))


def symbols_to_numbers(symbols: Iterable[str]) -> set[int]:
    from ase.data import atomic_numbers

    return {atomic_numbers[s] for s in symbols}
