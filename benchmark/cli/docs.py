"""Regenerate the generated docs: `python -m benchmark.cli.docs` writes docs/run-schema.md.

The run schema (benchmark.tracking.schema) and the metric registry (benchmark.metrics.registry) are the
sources; tests/test_tracking_schema.py fails when the committed file differs from what this writes.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.metrics.registry import child_run_metrics
from benchmark.tracking.schema import render_markdown

RUN_SCHEMA_DOC = Path(__file__).resolve().parents[2] / "docs" / "run-schema.md"


def run_schema_markdown() -> str:
    return render_markdown(child_run_metrics())


def main() -> int:
    RUN_SCHEMA_DOC.write_text(run_schema_markdown(), encoding="utf-8")
    print(f"wrote {RUN_SCHEMA_DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
