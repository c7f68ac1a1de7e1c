"""Model adapters: one module per model family, all behind `benchmark.models.base.ModelAdapter`."""

from benchmark.models.base import EmbedOutput, ModelAdapter

__all__ = ["EmbedOutput", "ModelAdapter"]
