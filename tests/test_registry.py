"""models.yaml / task YAML validation: strict schema, errors that name the file, the key and the fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from benchmark.errors import ConfigError
from benchmark.registry import load_models, load_task, load_tasks, select
from benchmark.registry.schema import check_key

ENTRY = """
  - key: fake-a
    name: Fake A
    family: fake
    modality: atoms
    domain: molecules
    adapter: tests.fake_models:FakeAtomsAdapter
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_repository_registries_validate():
    models = load_models()
    assert models.reference.model in {m.key for m in models.models}
    tasks = load_tasks()
    assert {"qm9", "nci_large", "crystals"} <= set(tasks)
    for spec in tasks.values():
        assert set(spec.roles.values()) <= {"id", "ood"}


def test_unknown_key_is_rejected_with_file_and_key(tmp_path):
    p = write(tmp_path, "models.yaml", "reference: {model: fake-a}\nmodels:" + ENTRY + "    colour: blue\n")
    with pytest.raises(ConfigError) as exc:
        load_models(p)
    msg = str(exc.value)
    assert str(p) in msg and "models.0.colour" in msg and "'fake-a'" in msg and "unknown key" in msg


def test_missing_and_wrong_type(tmp_path):
    p = write(tmp_path, "models.yaml", "reference: {model: fake-a}\nmodels:" + ENTRY.replace("    modality: atoms\n", "") + "    batch_size: many\n")
    msg = str(pytest.raises(ConfigError, load_models, p).value)
    assert "models.0.modality" in msg and "required" in msg and "models.0.batch_size" in msg


def test_reference_must_exist_and_keys_unique(tmp_path):
    p = write(tmp_path, "models.yaml", "reference: {model: nope}\nmodels:" + ENTRY)
    assert "reference.model 'nope'" in str(pytest.raises(ConfigError, load_models, p).value)
    p = write(tmp_path, "models.yaml", "reference: {model: fake-a}\nmodels:" + ENTRY + ENTRY)
    assert "appears twice" in str(pytest.raises(ConfigError, load_models, p).value)


def test_bad_yaml_and_missing_file(tmp_path):
    p = write(tmp_path, "models.yaml", "reference: [unclosed\n")
    msg = str(pytest.raises(ConfigError, load_models, p).value)
    assert "not valid YAML" in msg and "line" in msg
    assert "file not found" in str(pytest.raises(ConfigError, load_models, tmp_path / "absent.yaml").value)
    p = write(tmp_path, "models.yaml", "- just a list\n")
    assert "expected a mapping" in str(pytest.raises(ConfigError, load_models, p).value)


@pytest.mark.parametrize("key", ["../etc", "a/b", "UPPER", "", "x" * 65, "-lead", "a b"])
def test_unsafe_keys_are_rejected(key):
    with pytest.raises(ValueError):
        check_key(key)


def test_task_name_must_match_file_and_roles_checked(tmp_path):
    spec = """
        name: other
        version: "1"
        description: d
        loader: benchmark.tasks.qm9:load
        source: s
        level_of_theory: none
        n_samples: 10
        roles: {molecules: id}
    """
    p = write(tmp_path, "mytask.yaml", spec)
    assert "file is named 'mytask.yaml'" in str(pytest.raises(ConfigError, load_task, p).value)
    p = write(tmp_path, "other.yaml", spec.replace("molecules: id", "molecules: sometimes"))
    msg = str(pytest.raises(ConfigError, load_task, p).value)
    assert "roles.molecules" in msg


def test_select_unknown_names_known_keys():
    msg = str(pytest.raises(ConfigError, select, {"a": 1, "b": 2}, ["c"], "model key", "models.yaml").value)
    assert "'c'" in msg and "models.yaml" in msg and "Known: a, b" in msg


def test_select_suggests_the_closest_key_for_a_typo():
    reg = {"sevenn-7net-0": 1, "chgnet-0.3.0": 2, "qm9": 3}
    msg = str(pytest.raises(ConfigError, select, reg, ["sevenn-7net-O", "zzz"], "model key", "models.yaml").value)
    assert "Did you mean 'sevenn-7net-0' for 'sevenn-7net-O'?" in msg and "for 'zzz'" not in msg
    assert "Known: chgnet-0.3.0, qm9, sevenn-7net-0" in msg
