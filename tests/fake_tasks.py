"""A synthetic task loader for pipeline tests: small random molecules with composition energies."""

from __future__ import annotations

import numpy as np

from benchmark.structures import Sample
from tests.fake_models import ELEMENT_ENERGY


def load(n_samples: int, seed: int, labelled: bool = True, min_atoms: int = 4, max_atoms: int = 10) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_samples):
        m = int(rng.integers(min_atoms, max_atoms + 1))
        numbers = rng.choice([1, 6, 7, 8], size=m)
        positions = rng.normal(size=(m, 3)) * 1.4
        energy = sum(ELEMENT_ENERGY[int(z)] for z in numbers) + 0.05 * m * rng.normal() if labelled else None
        out.append(Sample(id=f"syn-{seed}-{i:04d}", numbers=numbers, positions=positions, energy=energy))
    return out


def load_screened(n_samples: int, seed: int, **kw):
    """`load`, as a Loaded whose screen reports what it left out (as the real samplers do)."""
    from benchmark.tasks.common import Loaded

    return Loaded(load(n_samples, seed, **kw), excluded={"atoms closer than 0.5 A": 3, "too many atoms": 2})


def load_missing_package(n_samples: int, seed: int, **kw):
    """A loader whose data package is not installed (as the real ones report it)."""
    from benchmark.errors import ConfigError

    raise ConfigError("task data needs the package 'fakedata-test-files': pip install fakedata-test-files")
