"""The paper's "Randomized" control: a pretrained architecture with seeded random weights.

`randomize_parameters` re-draws every parameter of a built model: modules with their own
`reset_parameters()` (torch Linear, LayerNorm, Embedding, ...) use it; the remaining parameters (e3nn
linear / tensor-product weights, which e3nn draws from N(0, 1) and normalises in the forward pass) are
drawn from N(0, 1). Buffers (normalisation constants, type maps) are kept, so graph construction and input
handling are exactly those of the pretrained model. The subclasses below add `options.random_init: true`
(and `options.seed`, default 0) to the SevenNet and CHGNet adapters; their checkpoint digest covers the seed,
so a random copy never shares a cache entry with its pretrained model. Random copies report no energies.
"""

from __future__ import annotations

from benchmark.models.base import EmbedOutput
from benchmark.models.chgnet_adapter import CHGNetAdapter
from benchmark.models.sevenn_adapter import SevenNetAdapter


def randomize_parameters(model, seed: int) -> None:
    """Re-initialise every parameter of `model` in place, deterministically for a given seed."""
    import torch

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(int(seed))
    try:
        covered: set[int] = set()
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset) and isinstance(module, torch.nn.Module):
                reset()
                covered.update(id(p) for p in module.parameters(recurse=False))
        with torch.no_grad():
            for param in model.parameters():
                if id(param) not in covered:
                    param.normal_(0.0, 1.0)
    finally:
        torch.random.set_rng_state(generator_state)


class _RandomInitMixin:
    """Shared by the random-init subclasses: `random_init` on by default, randomising after load, no energies (the
    seeded digest is ModelAdapter.checkpoint_digest's)."""

    options: dict

    @property
    def random_init(self) -> bool:
        """True unless the entry says `random_init: false` (these classes exist to be the random copy)."""
        return bool(self.options.get("random_init", True))

    def _load(self) -> None:
        super()._load()  # type: ignore[misc]
        if self.random_init:
            randomize_parameters(self.model, self.seed)  # type: ignore[attr-defined]

    def embed(self, samples) -> EmbedOutput:
        """The pretrained adapter's features; no energies for a random copy (its readout means nothing)."""
        out = super().embed(samples)  # type: ignore[misc]
        return EmbedOutput(features=out.features, energies=None if self.random_init else out.energies)


class RandomSevenNetAdapter(_RandomInitMixin, SevenNetAdapter):
    """SevenNet architecture of `checkpoint` with seeded random weights (control); features as SevenNetAdapter."""

    feature_source = "random-init control: " + SevenNetAdapter.feature_source


class RandomCHGNetAdapter(_RandomInitMixin, CHGNetAdapter):
    """CHGNet architecture of `checkpoint` with seeded random weights (control); features as CHGNetAdapter."""

    feature_source = "random-init control: " + CHGNetAdapter.feature_source
