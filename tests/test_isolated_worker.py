"""The isolated worker checks what the model can read before embedding, as the run does in-process."""

from __future__ import annotations

import textwrap

import numpy as np

from benchmark.embeddings import worker
from benchmark.embeddings.isolated import EXIT_UNAVAILABLE, entry_digest, write_dataset
from benchmark.registry import load_models, models_by_key
from benchmark.structures import Dataset, Sample

MODELS = """
reference: {model: atoms, fallback: auto}
models:
  - {key: atoms, name: Atoms, family: fake, modality: atoms, domain: molecules,
     adapter: "tests.fake_models:FakeAtomsAdapter", options: {dim: 8}}
"""


def _run(tmp_path, samples):
    models = tmp_path / "models.yaml"
    models.write_text(textwrap.dedent(MODELS))
    entry = models_by_key(load_models(models))["atoms"]
    data = tmp_path / "ds.npz"
    write_dataset(Dataset("t", "1", samples), data)
    return worker.main(["--models", str(models), "--model", "atoms", "--entry-digest", entry_digest(entry),
                        "--dataset", str(data), "--root", str(tmp_path / "cache"), "--result", str(tmp_path / "r.json")])


def test_worker_skips_a_task_the_model_cannot_read_with_one_line(tmp_path, capsys):
    code = _run(tmp_path, [Sample(id=f"s{i}", smiles="CCO") for i in range(4)])
    assert code == EXIT_UNAVAILABLE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "4 of 4 structures are outside" in err and "no 3D structure" in err
    assert not (tmp_path / "cache" / "embeddings").exists()  # nothing was embedded or written


def test_worker_embeds_what_it_can_read(tmp_path):
    rng = np.random.default_rng(0)
    samples = [Sample(id=f"m{i}", numbers=np.array([6, 1, 1, 8]), positions=rng.normal(size=(4, 3)) * 1.3)
               for i in range(4)]
    assert _run(tmp_path, samples) == 0 and (tmp_path / "r.json").is_file()
