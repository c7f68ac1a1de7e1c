"""Model adapters: one module per model family, all behind `benchmark.models.base.ModelAdapter`."""

from __future__ import annotations

from benchmark.models.base import EmbedOutput, ModelAdapter
from benchmark.registry.loader import import_object
from benchmark.registry.schema import ModelEntry


def adapter_class(entry: ModelEntry) -> type[ModelAdapter]:
    """The entry's `adapter: module:Class`, imported lazily and checked to be a ModelAdapter subclass.

    Raises ConfigError naming the model, the models.yaml key and the fix.
    """
    from benchmark.errors import ConfigError

    cls = import_object(entry.adapter, f"model {entry.key!r} (models.yaml): adapter")
    if not (isinstance(cls, type) and issubclass(cls, ModelAdapter)):
        raise ConfigError(
            f"model {entry.key!r}: adapter {entry.adapter!r} is not a subclass of "
            "benchmark.models.base.ModelAdapter. Point `adapter` at an adapter class (see benchmark/models/)."
        )
    return cls


def build_adapter(entry: ModelEntry, device: str = "cpu") -> ModelAdapter:
    """The one way to build an entry's adapter (no weights are loaded until it embeds)."""
    return adapter_class(entry)(entry, device=device)


__all__ = ["EmbedOutput", "ModelAdapter", "adapter_class", "build_adapter"]
