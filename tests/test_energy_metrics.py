"""Energy MAE (own head, after the per-element reference) and the cross-validated ridge probe."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.errors import DataError
from benchmark.metrics.energy import composition_matrix, energy_mae_per_atom, probe_energy_mae


def systems(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.choice([1, 6, 7, 8], size=int(rng.integers(3, 12))) for _ in range(n)]


def test_composition_matrix():
    counts, elements = composition_matrix([np.array([1, 1, 6]), np.array([8])])
    assert elements.tolist() == [1, 6, 8]
    assert counts.tolist() == [[2, 1, 0], [0, 0, 1]]


def test_per_element_offsets_are_removed_exactly():
    nums = systems(50)
    counts, _ = composition_matrix(nums)
    labels = counts @ np.array([-13.6, -1029.0, -1484.0, -2041.0])
    predicted = counts @ np.array([-0.5, -3.0, -2.0, -1.0])
    assert energy_mae_per_atom(predicted, labels, nums) == pytest.approx(0.0, abs=1e-9)
    assert energy_mae_per_atom(predicted, labels, nums, per_element_reference=False) > 1.0


def test_known_error_and_unlabelled_rows():
    nums = [np.array([6, 1, 1, 1, 1])] * 4
    labels = np.array([-10.0, -10.0, np.nan, -10.0])
    pred = np.array([-9.0, -11.0, 0.0, -10.0])
    assert energy_mae_per_atom(pred, labels, nums, per_element_reference=False) == pytest.approx((1 + 1 + 0) / 3 / 5)
    with pytest.raises(DataError):
        energy_mae_per_atom(pred[:1], labels[:1], nums[:1])


def test_probe_learns_linear_signal_and_not_noise():
    nums = systems(200, seed=1)
    counts, _ = composition_matrix(nums)
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(200, 8))
    n_atoms = counts.sum(1)
    residual_per_atom = 0.3 * feats[:, 0]
    labels = counts @ np.array([-13.6, -1029.0, -1484.0, -2041.0]) + residual_per_atom * n_atoms
    good = probe_energy_mae(feats, labels, nums)
    noise = probe_energy_mae(rng.normal(size=(200, 8)), labels, nums)
    assert good < 0.02 < noise


def test_probe_needs_enough_labels():
    with pytest.raises(DataError, match="labelled"):
        probe_energy_mae(np.zeros((6, 2)), np.arange(6.0), systems(6))
