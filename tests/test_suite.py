"""The paper preset and the cost a run prints before it starts (benchmark.pipeline.suite, `run --estimate-only`)."""

from __future__ import annotations

import json

import pytest

from benchmark.cli import main as cli_main
from benchmark.pipeline.run import RunConfig, run_benchmark
from benchmark.pipeline.suite import estimate, format_estimate, paper_selection, stage2_seconds
from benchmark.registry import load_models, load_tasks
from benchmark.tasks import build_dataset
from tests.test_pipeline import MODELS

TASK = """
name: {name}
version: "1"
description: synthetic
loader: tests.fake_tasks:load
source: generated
level_of_theory: composition energies + noise
n_samples: 40
paper_n_samples: {paper}
seed: {seed}
roles: {{molecules: id, materials: ood}}
"""


@pytest.fixture
def registry(make_registry):
    return make_registry(MODELS, {"syn_a": TASK.format(name="syn_a", seed=1, paper=90),
                                  "syn_b": TASK.format(name="syn_b", seed=2, paper=70)})


def _costs(registry, root, n=40):
    models, tasks = registry
    specs = load_tasks(tasks)
    datasets = {name: build_dataset(spec, n) for name, spec in specs.items()}
    return {(c.model, c.task): c for c in estimate(load_models(models).models, datasets, root)}


def test_estimate_on_an_empty_cache_probes_and_names_what_will_not_run(registry, tmp_path):
    costs = _costs(registry, tmp_path / "cache")
    good = costs[("good", "syn_a")]
    assert good.state == "todo" and good.rate > 0 and good.embed_seconds > 0 and good.dim == 12
    assert good.rate_source.startswith("probe of")
    assert costs[("text-only", "syn_a")].state == "skipped" and "no SMILES" in costs[("text-only", "syn_a")].rate_source
    assert costs[("ref-missing", "syn_a")].state == "skipped" and "cannot run here" in costs[("ref-missing", "syn_a")].rate_source
    broken = costs[("broken", "syn_b")]
    assert broken.embed_seconds is None and "probe failed" in broken.rate_source and "simulated" in broken.rate_source
    text = format_estimate(list(costs.values()))
    assert "broken" in text and "text-only" not in text.split("\n\n")[0]  # a pair the run skips is not a row
    assert "pairs with no rate" not in text or "broken" in text


def test_estimate_after_a_run_reads_the_cache_and_the_measured_rate(registry, tmp_path):
    models, tasks = registry
    root = tmp_path / "cache"
    run_benchmark(RunConfig(models=["good"], tasks=["syn_a"], models_file=models, tasks_dir=tasks, cache_dir=root,
                            leaderboard_dir=None, progress=False, n_boot=20, n_perm=3,
                            tracking_uri=f"sqlite:///{tmp_path}/mlflow.db"))
    meta = json.loads(next((root / "embeddings").glob("*/meta.json")).read_text())
    assert meta["timing"]["embedded"] == 40 and meta["timing"]["embed_seconds"] > 0
    costs = _costs(registry, root)
    assert costs[("good", "syn_a")].state == "cached" and costs[("good", "syn_a")].embed_seconds == 0
    assert costs[("good", "syn_a")].stage2_seconds == 0
    other = costs[("good", "syn_b")]
    assert other.rate_source.startswith("measured here on syn_a (40 structures")
    assert other.rate == pytest.approx(40 / meta["timing"]["embed_seconds"])


def test_stage2_model_grows_with_n_squared_d():
    assert stage2_seconds(2000, 256) == pytest.approx(4 * stage2_seconds(1000, 256))
    assert stage2_seconds(1000, 512) == pytest.approx(2 * stage2_seconds(1000, 256))


def test_paper_selection_takes_every_runnable_model_at_paper_sizes(registry):
    models, tasks = registry
    keys, sizes, left_out = paper_selection(load_models(models), load_tasks(tasks))
    assert sizes == {"syn_a": 90, "syn_b": 70}
    assert "ref-missing" in left_out and "ref-missing" not in keys
    assert {"good", "noisy", "broken", "text-only"} <= set(keys)  # runnable here; the run itself contains failures


def test_cli_estimate_only_prints_the_paper_cost_and_exits(registry, capsys):
    models, tasks = registry
    code = cli_main(["run", "--suite", "paper", "--estimate-only", "--models-file", str(models), "--tasks-dir",
                     str(tasks), "--no-progress", "--models", "", "--n-samples", "''"])  # as MLproject passes them
    out, err = capsys.readouterr()
    assert code == 0
    assert "ref-missing" in err and "cannot" in err
    assert " 90 " in out and " 70 " in out and "total: ~" in out and "memory: ~" in out
