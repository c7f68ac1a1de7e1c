"""Model and task registries: YAML data validated by strict schemas, with lazy imports."""

from benchmark.registry.loader import import_object, load_models, load_task, load_tasks, models_by_key, select
from benchmark.registry.schema import ModelEntry, ModelsFile, ReferenceConfig, TaskSpec

__all__ = [
    "ModelEntry", "ModelsFile", "ReferenceConfig", "TaskSpec",
    "import_object", "load_models", "load_task", "load_tasks", "models_by_key", "select",
]
