"""The run schema module is the one home of tag / param / kind names: the doc is generated from it, and
what the pipeline writes is what the schema declares."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_run_schema_doc_is_generated_from_the_schema():
    from benchmark.cli.docs import run_schema_markdown

    committed = (ROOT / "docs" / "run-schema.md").read_text(encoding="utf-8")
    assert committed == run_schema_markdown(), (
        "docs/run-schema.md is out of date with benchmark/tracking/schema.py / metrics/registry.py; "
        "regenerate it with: python -m benchmark.cli.docs"
    )


def test_doc_lists_every_kind_metric_and_child_param():
    from benchmark.metrics.registry import child_run_metrics
    from benchmark.tracking import schema as S

    doc = (ROOT / "docs" / "run-schema.md").read_text(encoding="utf-8")
    for kind in S.RUN_KINDS:
        assert f"`{kind}`" in doc
    for m in child_run_metrics():
        assert f"`{m.name}`" in doc
    for p in S.PARAMS[S.Kind.MODEL_TASK]:
        assert f"`{p.name}`" in doc
    assert "`matteralign.metric_error.<metric>`" in doc and "`matteralign.warning.<metric>`" in doc


def test_names_and_filters():
    from benchmark.tracking import schema as S

    assert S.tag("model") == S.MODEL == "matteralign.model"
    assert S.per_task(S.REFERENCE, "qm9") == "matteralign.reference.qm9"
    assert S.metric_tag("cknna_to_ref") == "matteralign.metric_error.cknna_to_ref"
    assert S.metric_tag("warning.prepare") == "matteralign.warning.prepare"
    assert S.kind_filter(S.Kind.PARENT) == "tags.`matteralign.kind` = 'parent'"
    assert len(set(vars(S.Kind).values()) & set(S.RUN_KINDS)) == len(S.RUN_KINDS)


def test_readme_metric_table_names_every_declared_metric():
    """README's metric table may stay prose, but it names every metric a child run can carry."""
    from benchmark.metrics.registry import child_run_metrics

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = set(re.findall(r"`([a-z0-9_]+)`", readme))
    expand = {n.replace("_*", "") for n in re.findall(r"`([a-z_]+_\*)`", readme)}
    missing = [m.name for m in child_run_metrics()
               if m.per_task and m.name not in shown and not any(m.name.startswith(p) for p in expand)
               and not (m.name.startswith("cknna_to_ref_ci") and "`_ci_low`" in readme)]
    assert not missing, f"README's metric table does not name {missing}"
