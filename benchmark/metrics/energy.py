"""Energy errors in eV per atom: a model's own energy head, and a ridge probe on its embeddings.

Models and labels disagree on the energy zero (a PBE MLIP vs B3LYP U0), so where a task asks for it a
per-element linear reference is fitted to the residual label - prediction before the error is taken. The
fit has one parameter per element (at most a handful) against hundreds of structures, so fitting it on all
labelled structures costs almost no optimism; the probe, which has many parameters, is cross-validated.
Offsets are fitted in per-atom space (energy / n_atoms against element fractions), the space the MAE is
reported in, so that large molecules do not dominate the fit.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from benchmark.errors import DataError


def composition_matrix(numbers: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(n_structures, n_elements) counts of each element, and the element list (sorted atomic numbers)."""
    elements = np.unique(np.concatenate([np.asarray(z, dtype=np.int64) for z in numbers]))
    col = {int(z): j for j, z in enumerate(elements)}
    counts = np.zeros((len(numbers), len(elements)), dtype=np.float64)
    for i, z in enumerate(numbers):
        for zz, c in zip(*np.unique(np.asarray(z, dtype=np.int64), return_counts=True)):
            counts[i, col[int(zz)]] = c
    return counts, elements


def _labelled(labels: np.ndarray, *others: np.ndarray) -> np.ndarray:
    mask = np.isfinite(labels)
    for o in others:
        mask &= np.isfinite(o)
    return mask


def energy_mae_per_atom(
    predicted: np.ndarray, labels: np.ndarray, numbers: Sequence[np.ndarray], per_element_reference: bool = True
) -> float:
    """Mean over labelled structures of |E_pred (+ fitted element offsets) - E_label| / n_atoms, in eV/atom.

    NaN labels (unlabelled structures) are skipped; fewer than 2 labelled structures raise DataError.
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if predicted.shape != labels.shape or len(numbers) != len(labels):
        raise DataError(f"energy arrays disagree: {predicted.shape} predictions, {labels.shape} labels")
    mask = _labelled(labels, predicted)
    if mask.sum() < 2:
        raise DataError("fewer than 2 labelled structures with a finite predicted energy: no energy MAE")
    n_atoms = np.array([len(z) for z in numbers], dtype=np.float64)[mask]
    residual = labels[mask] - predicted[mask]
    per_atom = residual / n_atoms
    if per_element_reference:
        counts, _ = composition_matrix([numbers[i] for i in np.flatnonzero(mask)])
        fractions = counts / n_atoms[:, None]
        offsets, *_ = np.linalg.lstsq(fractions, per_atom, rcond=None)
        per_atom = per_atom - fractions @ offsets
    return float(np.mean(np.abs(per_atom)))


def probe_energy_mae(
    features: np.ndarray,
    labels: np.ndarray,
    numbers: Sequence[np.ndarray],
    per_element_reference: bool = True,
    n_splits: int = 5,
    seed: int = 0,
) -> float:
    """Cross-validated MAE (eV/atom) of a ridge probe from the embedding to the per-atom energy.

    Inside each fold the element offsets (when asked) are fitted on the training part only; the probe
    (ridge with alpha chosen by efficient leave-one-out, on the embedding plus the element fractions) then
    predicts the per-atom residual, so the offsets are refined jointly with the embedding's contribution.
    Features are centred and divided by one global scale, not standardised per column: a column that is
    nearly constant in a training fold would otherwise be blown up and wreck the test predictions.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold

    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    mask = _labelled(labels)
    idx = np.flatnonzero(mask)
    if len(idx) < 2 * n_splits:
        raise DataError(f"{len(idx)} labelled structures: a {n_splits}-fold probe needs at least {2 * n_splits}")
    X = features[idx]
    y = labels[idx]
    nums = [numbers[i] for i in idx]
    n_atoms = np.array([len(z) for z in nums], dtype=np.float64)
    fractions = composition_matrix(nums)[0] / n_atoms[:, None]
    y_atom = y / n_atoms
    errors = np.empty(len(idx))
    for train, test in KFold(n_splits, shuffle=True, random_state=seed).split(X):
        base_train = np.zeros(len(train))
        base_test = np.zeros(len(test))
        if per_element_reference:
            offsets, *_ = np.linalg.lstsq(fractions[train], y_atom[train], rcond=None)
            base_train, base_test = fractions[train] @ offsets, fractions[test] @ offsets
        Xtr, Xte = _global_scale(X[train], X[test])
        if per_element_reference:
            Xtr, Xte = np.hstack([Xtr, fractions[train]]), np.hstack([Xte, fractions[test]])
        probe = RidgeCV(alphas=np.logspace(-6, 6, 25))
        probe.fit(Xtr, y_atom[train] - base_train)
        errors[test] = np.abs(probe.predict(Xte) + base_test - y_atom[test])
    return float(errors.mean())


def _global_scale(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre on the training mean and divide by the training RMS: preserves the embedding's geometry."""
    mean = train.mean(axis=0)
    scale = float(np.sqrt(np.mean((train - mean) ** 2))) or 1.0
    return (train - mean) / scale, (test - mean) / scale
