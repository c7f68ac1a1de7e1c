"""Batched inference of the atomistic adapters equals structure-by-structure inference (float tolerance).

SevenNet and CHGNet batch graphs up to `max_atoms_per_batch` atoms; ANI pads molecules into one tensor. A
batch must give every structure the features and energy it gets alone, whatever else is in the batch
(molecules of different sizes, crystals with different cells) and however the cap splits the batch.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from benchmark.registry.schema import ModelEntry
from benchmark.structures import Sample

CASES = [
    ("benchmark.models.sevenn_adapter:SevenNetAdapter", "sevenn", "7net-0", True),
    ("benchmark.models.chgnet_adapter:CHGNetAdapter", "chgnet", "0.3.0", True),
    ("benchmark.models.ani_adapter:ANIAdapter", "torchani", None, False),
]


def _adapter(path: str, requires: str, checkpoint: str | None, cap: int):
    pytest.importorskip(requires)
    module, name = path.split(":")
    entry = ModelEntry(key="batching-test", name="t", family="t", modality="atoms", domain="none", adapter=path,
                       checkpoint=checkpoint, options={"max_atoms_per_batch": cap})
    adapter = getattr(importlib.import_module(module), name)(entry)
    reason = adapter.unavailable_reason()
    if reason:
        pytest.skip(reason)
    return adapter


def _samples(periodic: bool) -> list[Sample]:
    from ase.build import bulk

    from benchmark.tasks import qm9

    out = qm9.load(6, seed=3)
    if periodic:
        for i, (formula, kind, a) in enumerate([("Si", "diamond", 5.43), ("NaCl", "rocksalt", 5.64),
                                                 ("Cu", "fcc", 3.61)]):
            atoms = bulk(formula, kind, a=a).repeat((2, 1, 1) if i else (1, 1, 1))
            atoms.rattle(0.03, seed=i)
            out.insert(2 * i + 1, Sample(id=formula, numbers=atoms.numbers.copy(), positions=atoms.positions.copy(),
                                         cell=np.array(atoms.cell), pbc=True))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("path,requires,checkpoint,periodic", CASES, ids=["sevennet", "chgnet", "ani"])
def test_batched_equals_one_at_a_time(path, requires, checkpoint, periodic):
    samples = _samples(periodic)
    big = _adapter(path, requires, checkpoint, cap=10**6)
    together = big.embed(samples)
    alone = [big.embed([s]) for s in samples]
    feats = np.vstack([o.features for o in alone])
    energies = np.concatenate([o.energies for o in alone])
    scale = np.abs(feats).max()
    np.testing.assert_allclose(together.features, feats, atol=1e-5 * scale, rtol=0)
    np.testing.assert_allclose(together.energies, energies, rtol=1e-5, atol=1e-4)
    small = _adapter(path, requires, checkpoint, cap=40)  # splits the same list into several batches
    split = small.embed(samples)
    np.testing.assert_allclose(split.features, feats, atol=1e-5 * scale, rtol=0)
    np.testing.assert_allclose(split.energies, energies, rtol=1e-5, atol=1e-4)
