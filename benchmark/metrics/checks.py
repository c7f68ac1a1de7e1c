"""Pairing checks: two representations can only be compared row by row on the same samples."""

from __future__ import annotations

from typing import Sequence

from benchmark.errors import DataError


def check_paired(ids_a: Sequence[str], ids_b: Sequence[str], name_a: str, name_b: str) -> None:
    """Raise DataError unless ids_a and ids_b are the same sample ids in the same order,
    naming the first position where they differ (or the length mismatch)."""
    a, b = list(ids_a), list(ids_b)
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            raise DataError(
                f"{name_a} and {name_b} are not paired: sample {i} is {x!r} in {name_a} but {y!r} in {name_b}; "
                "embed the same samples in the same order"
            )
    if len(a) != len(b):
        longer, name = (a, name_a) if len(a) > len(b) else (b, name_b)
        raise DataError(
            f"{name_a} has {len(a)} samples and {name_b} has {len(b)}; "
            f"first unpaired sample: {longer[min(len(a), len(b))]!r} (index {min(len(a), len(b))}) in {name}"
        )
