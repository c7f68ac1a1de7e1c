"""Batching helpers shared by the graph adapters."""

from __future__ import annotations

from typing import Sequence

from benchmark.structures import Sample


def atom_budget_chunks(samples: Sequence[Sample], max_atoms: int) -> list[list[int]]:
    """Consecutive index groups of `samples` holding at most `max_atoms` atoms each (a larger sample sits alone).

    Bounds the memory of one forward pass on a graph model; order is kept so outputs line up with inputs.
    """
    chunks: list[list[int]] = [[]]
    atoms = 0
    for i, s in enumerate(samples):
        if chunks[-1] and atoms + s.n_atoms > max_atoms:
            chunks.append([])
            atoms = 0
        chunks[-1].append(i)
        atoms += s.n_atoms
    return chunks
