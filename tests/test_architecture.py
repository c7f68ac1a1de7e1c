"""The layer contract of the package, enforced with import-linter, plus the checks it cannot express.

Layers, top to bottom (a module may import only from its own layer or below; `|` = independent siblings):
cli -> {report, pipeline, leaderboard, convergence, executors} -> {embeddings | metrics | tracking}
-> {models, tasks, knn} -> registry -> {io | structures} -> errors.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "benchmark"

#: contract clauses allowed to fail, each with its reason (empty: every clause holds)
KNOWN_OPEN: dict[str, str] = {}
#: imports the layers contract tolerates (empty: none)
LAYER_IGNORES: list[str] = []

CONTRACTS = """
[importlinter]
root_package = benchmark
include_external_packages = False

[importlinter:contract:layers]
name = package layers
type = layers
layers =
    benchmark.cli
    benchmark.report : benchmark.pipeline : benchmark.leaderboard : benchmark.convergence : benchmark.executors
    benchmark.embeddings | benchmark.metrics | benchmark.tracking
    benchmark.models : benchmark.tasks : benchmark.knn
    benchmark.registry
    (benchmark.io) | benchmark.structures
    benchmark.errors
{ignores}

[importlinter:contract:cli-only-at-the-top]
name = benchmark.cli is imported only inside cli/
type = forbidden
source_modules =
    benchmark.report
    benchmark.pipeline
    benchmark.leaderboard
    benchmark.convergence
    benchmark.executors
    benchmark.embeddings
    benchmark.metrics
    benchmark.tracking
    benchmark.models
    benchmark.tasks
    benchmark.knn
    benchmark.registry
forbidden_modules =
    benchmark.cli

[importlinter:contract:tasks-without-embeddings]
name = tasks/ does not import embeddings
type = forbidden
source_modules =
    benchmark.tasks
forbidden_modules =
    benchmark.embeddings

[importlinter:contract:models-without-convergence]
name = models/ does not import convergence
type = forbidden
source_modules =
    benchmark.models
forbidden_modules =
    benchmark.convergence
"""


def _lint(tmp_path: Path) -> subprocess.CompletedProcess:
    cfg = tmp_path / "importlinter.ini"
    ignores = "ignore_imports =\n" + "\n".join(f"    {i}" for i in LAYER_IGNORES) if LAYER_IGNORES else ""
    cfg.write_text(textwrap.dedent(CONTRACTS).replace("{ignores}", ignores))
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(cfg)!r}, no_cache=True))")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_import_contracts(tmp_path):
    pytest.importorskip("importlinter")
    out = _lint(tmp_path)
    report = out.stdout + out.stderr
    broken = [line for line in report.splitlines() if line.rstrip().endswith("BROKEN")]
    unexpected = [line for line in broken if not any(name in line for name in KNOWN_OPEN)]
    assert not unexpected, report
    if not broken:
        assert out.returncode == 0, report


def test_no_circles_between_packages():
    """No two subpackages of benchmark import each other (directly or through others)."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("benchmark", cache_dir=None)
    top = sorted({m.split(".")[1] for m in graph.modules if m.count(".") >= 1})
    pkgs = [f"benchmark.{p}" for p in top if graph.find_children(f"benchmark.{p}")]
    circles = [
        (a, b) for i, a in enumerate(pkgs) for b in pkgs[i + 1:]
        if graph.chain_exists(a, b, as_packages=True) and graph.chain_exists(b, a, as_packages=True)
    ]
    assert not circles, f"packages importing each other: {circles}"


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def test_no_private_names_imported_across_packages():
    """`from benchmark.x.y import _name` is allowed only inside benchmark.x."""
    bad = []
    for path, tree in _modules():
        here = _package_of(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("benchmark."):
                for alias in node.names:
                    if alias.name.startswith("_") and _package_of(node.module) != here:
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.module}.{alias.name}")
    assert not bad, "private names imported across packages:\n" + "\n".join(bad)


def test_run_schema_is_spelled_only_in_the_schema_module():
    """No string literal starting with "matteralign." outside benchmark/tracking/schema.py."""
    schema = PACKAGE / "tracking" / "schema.py"
    bad = []
    for path, tree in _modules():
        if path == schema:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("matteralign."):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:60]!r}")
    assert not bad, "run-schema names spelled outside benchmark/tracking/schema.py:\n" + "\n".join(bad)
