"""Build hook only (the metadata lives in pyproject.toml): ship the registries inside the package.

models.yaml and tasks/*.yaml at the top of the repository are the single source (the project card fixes
their place); a wheel gets copies under benchmark/_defaults (models.yaml, tasks/**) so an installed package runs without a clone.
benchmark.registry.loader prefers a checkout's files and falls back to these copies.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithRegistries(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's files directly
        target = Path(self.build_lib) / "benchmark" / "_defaults"
        shutil.rmtree(target, ignore_errors=True)
        (target / "tasks").mkdir(parents=True)
        shutil.copy2(ROOT / "models.yaml", target / "models.yaml")
        for src in sorted((ROOT / "tasks").rglob("*")):  # task YAMLs and any data file beside them
            if src.is_file() and "__pycache__" not in src.parts:
                dest = target / "tasks" / src.relative_to(ROOT / "tasks")
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)


setup(cmdclass={"build_py": BuildPyWithRegistries})
