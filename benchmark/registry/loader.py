"""Read models.yaml and tasks/*.yaml into validated schema objects, and import adapters/loaders lazily.

The top-level models.yaml and tasks/ of the repository are the single source. A wheel carries copies of
them in ``benchmark/_defaults`` (written by setup.py's build step), so an installed package finds them
without a checkout; in a clone (editable install) the checkout's files are used. The models file itself is
looked up in the current directory first (``./models.yaml``), then in the package: see `resolve_models_file`.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from benchmark.errors import ConfigError, did_you_mean
from benchmark.registry.schema import BoardSpec, ModelEntry, ModelsFile, TaskSpec

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: where a built wheel keeps its copies of models.yaml and tasks/ (see setup.py)
PACKAGED = Path(__file__).resolve().parents[1] / "_defaults"
MODELS_FILE_NAME = "models.yaml"
#: the frozen board definition, relative to the project root (or the current directory)
BOARD_FILE_NAME = "leaderboard/board.yaml"


def _package_file(name: str) -> Path:
    """The checkout's file when this package runs from a clone, else the copy shipped in the wheel."""
    in_checkout = (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / MODELS_FILE_NAME).is_file()
    return PROJECT_ROOT / name if in_checkout else PACKAGED / name


#: the package's own registries (not the current directory's: see resolve_models_file)
DEFAULT_MODELS = _package_file(MODELS_FILE_NAME)
DEFAULT_TASKS_DIR = _package_file("tasks")
DEFAULT_BOARD = _package_file(BOARD_FILE_NAME)
#: values a registry file may hold after alias expansion (the real ones hold a few thousand)
MAX_NODES = 200_000


def resolve_models_file(path: str | Path | None = None) -> Path:
    """The models file a run uses: `path` when given, else ``./models.yaml`` when present, else the package's.

    The choice is logged (INFO, logger ``benchmark.registry.loader``); record the returned path with the run.
    """
    if path:
        chosen, why = Path(path), "given"
    elif (Path.cwd() / MODELS_FILE_NAME).is_file():
        chosen, why = Path.cwd() / MODELS_FILE_NAME, "found in the current directory"
    else:
        chosen, why = DEFAULT_MODELS, "the package's"
    chosen = chosen.resolve()
    log.info("models file: %s (%s)", chosen, why)
    return chosen


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key written twice in one YAML mapping (PyYAML would silently keep the last value)."""

    def __init__(self, key: Any, first: yaml.Mark, second: yaml.Mark) -> None:
        super().__init__(None, None, f"key {key!r} appears twice in one mapping", second)
        self.key, self.first, self.second = key, first, second


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses repeated keys (merge keys ``<<`` may still be overridden explicitly)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise DuplicateKeyError(key, seen[key], key_node.start_mark)
                    seen[key] = key_node.start_mark
                except TypeError:  # an unhashable key: the base constructor reports it
                    break
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found. Pass an existing file (or create it from the README's template).")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except DuplicateKeyError as exc:
        raise ConfigError(
            f"{path}: key {exc.key!r} is repeated in one mapping (lines {exc.first.line + 1} and "
            f"{exc.second.line + 1}); only one value can hold. Delete or rename one of them."
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}. Fix the syntax.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text. Save the file as UTF-8.") from None
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{path}: YAML value cannot be read ({type(exc).__name__}: {str(exc)[:200]}).") from None
    _bounded(data, path)
    return data


def _bounded(data: Any, path: Path) -> None:
    """Refuse documents whose aliases expand past MAX_NODES (a 'YAML bomb' would explode when hashed)."""
    count = 0
    stack = [data]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ConfigError(
                f"{path}: more than {MAX_NODES} values once aliases are expanded; write the registry out plainly."
            )
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _explain(path: Path, exc: ValidationError, data: Any) -> ConfigError:
    """Turn pydantic's report into lines naming the file, the key path and what was expected."""
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = ""
        if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int) and isinstance(data, dict):
            try:
                where = f" (model {data['models'][loc[1]].get('key', '?')!r})"
            except (AttributeError, IndexError, KeyError, TypeError):
                pass
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            msg = "unknown key: remove it or check its spelling against the schema in benchmark/registry/schema.py"
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = err["msg"]
            if "input" in err and err["type"] not in ("value_error",):
                msg += f" (got {err['input']!r})"
        lines.append(f"  - {key}{where}: {msg}")
    return ConfigError(f"{path}: invalid configuration:\n" + "\n".join(lines))


def load_models(path: str | Path | None = None) -> ModelsFile:
    """Validated models.yaml (`path`, else as `resolve_models_file` finds it). Needs no model package installed."""
    path = resolve_models_file(path)
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with keys 'reference' and 'models', got {type(data).__name__}.")
    try:
        return ModelsFile.model_validate(data)
    except ValidationError as exc:
        raise _explain(path, exc, data) from None


def load_task(path: str | Path) -> TaskSpec:
    path = Path(path)
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of task fields, got {type(data).__name__}.")
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as exc:
        raise _explain(path, exc, data) from None
    if spec.name != path.stem:
        raise ConfigError(f"{path}: key 'name' is {spec.name!r} but the file is named {path.name!r}; make them agree.")
    return spec


def load_tasks(tasks_dir: str | Path | None = None) -> dict[str, TaskSpec]:
    tasks_dir = Path(tasks_dir) if tasks_dir else DEFAULT_TASKS_DIR
    if not tasks_dir.is_dir():
        raise ConfigError(f"{tasks_dir}: tasks directory not found.")
    return {p.stem: load_task(p) for p in sorted(tasks_dir.glob("*.yaml"))}


def select(registry: dict[str, Any], keys: list[str] | None, what: str, source: str) -> list[Any]:
    """Entries for the requested keys, in order; an unknown key names the file and the known keys."""
    if not keys:
        return list(registry.values())
    unknown = [k for k in keys if k not in registry]
    if unknown:
        hints = "".join(f"{hint[:-1]} for {k!r}?" for k in unknown if (hint := did_you_mean(k, registry)))
        raise ConfigError(
            f"unknown {what} {', '.join(map(repr, unknown))}: not in {source}.{hints} "
            f"Known: {', '.join(sorted(registry))}."
        )
    return [registry[k] for k in keys]


def import_object(spec: str, what: str) -> Any:
    """Import 'module:attr' on demand; a missing package becomes a ConfigError that says what to install."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"{what} {spec!r}: cannot import module {module_name!r} ({exc}). Install the package it needs."
        ) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{what} {spec!r}: module {module_name!r} has no attribute {attr!r}.") from None


def models_by_key(models: ModelsFile) -> dict[str, ModelEntry]:
    return {m.key: m for m in models.models}


#: environment variable naming the board file ("none": run without a board), as --board does
BOARD_ENV = "MATTERALIGN_BOARD"


def resolve_board_file(path: str | Path | None = None) -> Path | None:
    """The board definition in force: `path` when given (it must exist), else $MATTERALIGN_BOARD ("none": no
    board), else ``./leaderboard/board.yaml`` when present, else the package's (`DEFAULT_BOARD`) when present,
    else None (no frozen board yet)."""
    import os

    path = path or os.environ.get(BOARD_ENV) or None
    if path is not None and str(path) == "none":
        return None
    if path:
        chosen = Path(path)
        if not chosen.is_file():
            raise ConfigError(f"board file {chosen}: not found. Freeze one with `matteralign board freeze`, or drop "
                              "--board to use leaderboard/board.yaml.")
        return chosen.resolve()
    for candidate in (Path.cwd() / BOARD_FILE_NAME, DEFAULT_BOARD):
        if candidate.is_file():
            return candidate.resolve()
    return None


def load_board(path: str | Path) -> BoardSpec:
    """A validated board definition (strict schema: unknown keys rejected, k in k_reported, tasks named)."""
    path = Path(path)
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of board fields (name, version, k, tasks, ...), "
                          f"got {type(data).__name__}.")
    try:
        return BoardSpec.model_validate(data)
    except ValidationError as exc:
        raise _explain(path, exc, data) from None
