"""Model and task registries: YAML data validated by strict schemas, with lazy imports."""

from benchmark.registry.loader import (
    import_object,
    load_board,
    load_models,
    load_task,
    load_tasks,
    models_by_key,
    resolve_board_file,
    select,
)
from benchmark.registry.schema import BoardReference, BoardSpec, BoardTask, ModelEntry, ModelsFile, ReferenceConfig, TaskSpec

__all__ = [
    "ModelEntry", "ModelsFile", "ReferenceConfig", "TaskSpec",
    "BoardReference", "BoardSpec", "BoardTask", "import_object", "load_board", "load_models", "resolve_board_file", "load_task", "load_tasks", "models_by_key", "select",
]
