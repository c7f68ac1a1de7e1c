"""QM9 (Ramakrishnan et al. 2014) from the `qm9pack` wheel: 133k small organics, B3LYP/6-31G(2df,p) labels.

The package's own `import qm9pack` needs pkg_resources, so the CSV files are located with
importlib's find_spec and read directly; nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from benchmark.errors import ConfigError
from benchmark.structures import HARTREE_TO_EV, Sample
from benchmark.tasks.common import Loaded

SYMBOLS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
COLUMNS = ["Index", "SMILES", "Elements", "XYZ_Ang", "InternalEnergy_0K_au"]


def qm9_dir() -> Path:
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or spec.origin is None:
        raise ConfigError("task qm9 needs the PyPI package 'qm9pack' (it ships the data): pip install qm9pack")
    return Path(spec.origin).parent / "data"


def load_frame(parts: tuple[int, ...] = (1, 2, 3)):
    """The raw QM9 table (only the columns the benchmark uses), sorted by QM9 index."""
    import pandas as pd

    frames = [pd.read_csv(qm9_dir() / f"qm9_part{p}.csv", usecols=COLUMNS) for p in parts]
    return pd.concat(frames, ignore_index=True).sort_values("Index", kind="stable").reset_index(drop=True)


def row_to_sample(row) -> Sample:
    elements = json.loads(row.Elements.replace("'", '"'))
    numbers = np.array([SYMBOLS[e] for e in elements], dtype=np.int64)
    positions = np.asarray(json.loads(row.XYZ_Ang), dtype=np.float64)
    return Sample(
        id=f"qm9-{int(row.Index):06d}",
        numbers=numbers,
        positions=positions,
        smiles=row.SMILES,
        text=row.SMILES,
        energy=float(row.InternalEnergy_0K_au) * HARTREE_TO_EV,
    )


def load(n_samples: int, seed: int, parts: list[int] | None = None, elements: list[str] | None = None) -> Loaded:
    """A seeded subset of QM9 (uniform without replacement), sorted by QM9 index.

    `elements` keeps only molecules made of those elements (e.g. H, C, N, O so that ANI-1x can embed all).
    """
    frame = load_frame(tuple(parts or (1, 2, 3)))
    excluded: dict[str, int] = {}
    if elements is not None:
        unknown = sorted(set(elements) - set(SYMBOLS))
        if unknown:
            raise ConfigError(f"task qm9: option elements has {unknown}; QM9 holds only {sorted(SYMBOLS)}")
        banned = [e for e in SYMBOLS if e not in elements]
        keep = ~frame.Elements.apply(lambda text: any(f"'{e}'" in text for e in banned))
        frame = frame[keep.to_numpy()].reset_index(drop=True)
        if int((~keep).sum()):
            excluded[f"element outside {sorted(elements)}"] = int((~keep).sum())
    if n_samples > len(frame):
        raise ConfigError(f"task qm9: n_samples={n_samples} exceeds the {len(frame)} molecules available")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(frame), size=n_samples, replace=False))
    return Loaded([row_to_sample(r) for r in frame.iloc[chosen].itertuples(index=False)], excluded)
