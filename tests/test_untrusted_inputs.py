"""Untrusted inputs: malformed registries, corrupt cache files and hostile checkpoints.

Every case must end in a MatteralignError subclass that names the file (ConfigError / DataError) or in a
defined recompute that leaves a correct cache, never in an unhandled traceback or a corrupt cache entry.
The *_BUGS tables hold cases that once escaped as raw exceptions or slipped into the cache.
"""

from __future__ import annotations

import ast
import io
import json
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.embeddings import extract, plan_shards, store_for
from benchmark.errors import ConfigError, DataError, MatteralignError
from benchmark.registry import load_models, load_task
from benchmark.registry.schema import ModelEntry
from benchmark.structures import Dataset, Sample
from tests.fake_models import FakeAtomsAdapter

REPO = Path(__file__).resolve().parents[1]
FUZZ = settings(max_examples=80, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

VALID_MODELS = {
    "reference": {"model": "good", "fallback": "auto"},
    "models": [
        {"key": "good", "name": "Good", "family": "fake", "modality": "atoms", "domain": "molecules",
         "adapter": "tests.fake_models:FakeAtomsAdapter", "options": {"dim": 8}, "batch_size": 4},
    ],
}
VALID_TASK = {
    "name": "syn", "version": "1", "description": "synthetic", "loader": "tests.fake_tasks:load",
    "source": "generated", "level_of_theory": "none", "n_samples": 10, "seed": 0,
    "roles": {"molecules": "id"},
}

HOSTILE = [
    "", "\n", "---\n...\n", "null", "[]", "42", "'just a string'", "{", "key: [unclosed",
    "!!python/object/apply:os.system ['touch /tmp/matteralign-pwned']",
    "!!python/name:os.system",
    "reference: !!python/object:benchmark.errors.ConfigError {}\nmodels: []",
    "a: \x00", "\ufeffreference: 1", "a:\n\t- b", "? [a, b]\n: 1",
    "reference: {model: good}\nmodels:\n  - {key: ../../etc, name: x, family: f, modality: atoms, domain: none, "
    "adapter: 'a:B'}",
    "reference: {model: good}\nmodels:\n  - {key: good, name: x, family: f, modality: atoms, domain: none, "
    "adapter: 'os:system', batch_size: 999999999999999999999999999999999999}",
    "reference: {model: .nan}\nmodels: []",
    "name: ../../etc/passwd\nversion: 1\n",
]
# cases that once escaped benchmark/registry/loader.py::_read_yaml as raw exceptions
YAML_BUGS = [
    pytest.param("[" * 5000 + "]" * 5000, id="deep-nesting-RecursionError"),
    pytest.param("reference: {model: good}\nmodels: []\nwhen: 2024-13-45\n", id="bad-timestamp-ValueError"),
]


def _check(text: str | bytes, name: str, loader) -> object | None:
    """Load `text` saved as `name`: the object, or None after a ConfigError naming the file; anything else fails."""
    with tempfile.TemporaryDirectory(prefix="matteralign-fuzz-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        try:
            return loader(path)
        except ConfigError as exc:
            assert str(path) in str(exc), f"error does not name the file: {exc}"
            return None


# --- registries ---------------------------------------------------------------------------------------

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10**30, max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
    | st.sampled_from(["../../etc", "/etc/passwd", "..", "a/b", "UPPER", "x" * 100, "os:system", "", " "]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _mutate(doc: dict, data) -> dict:
    """A deep copy of `doc` with a few fields replaced, deleted or added at random places."""
    doc = json.loads(json.dumps(doc))
    for _ in range(data.draw(st.integers(1, 3))):
        target = doc
        models = doc.get("models")
        if isinstance(models, list) and models and isinstance(models[0], dict) and data.draw(st.booleans()):
            target = models[0]
        keys = list(target) or ["x"]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        key = data.draw(st.sampled_from(keys)) if action != "add" else data.draw(st.text(max_size=10))
        if action == "delete":
            target.pop(key, None)
        else:
            target[key] = data.draw(junk)
    return doc


@FUZZ
@given(data=st.data())
def test_mutated_models_yaml(data):
    doc = _mutate(VALID_MODELS, data)
    got = _check(yaml.safe_dump(doc, allow_unicode=True), "models.yaml", load_models)
    if got is not None:  # accepted: then every key is safe to use as a path component
        assert all(".." not in m.key and "/" not in m.key for m in got.models)


@FUZZ
@given(data=st.data())
def test_mutated_task_yaml(data):
    doc = _mutate(VALID_TASK, data)
    got = _check(yaml.safe_dump(doc, allow_unicode=True), "syn.yaml", load_task)
    if got is not None:
        assert got.name == "syn" and got.n_samples >= 3


@FUZZ
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_random_bytes_as_registry(raw):
    assert _check(raw, "models.yaml", load_models) is None
    _check(raw, "syn.yaml", load_task)


@pytest.mark.parametrize("text", HOSTILE + YAML_BUGS)
def test_hostile_registry_text(text):
    assert _check(text, "models.yaml", load_models) is None
    _check(text, "syn.yaml", load_task)
    assert not Path("/tmp/matteralign-pwned").exists()


@pytest.mark.parametrize("raw", [b"\xff\xfe\x00r\x00e", b"reference: \xc3\x28", "reference: é".encode("latin-1")])
def test_non_utf8_registry(raw, tmp_path):
    path = tmp_path / "models.yaml"
    path.write_bytes(raw)
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_models(path)


def test_yaml_alias_bomb_is_rejected(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]"
              for i in range(1, 9)]
    text = ("reference: {model: good}\nmodels:\n  - key: good\n    name: Good\n    family: fake\n"
            "    modality: atoms\n    domain: molecules\n    adapter: 'tests.fake_models:FakeAtomsAdapter'\n"
            "    options:\n" + "".join(f"      {line}\n" for line in lines))
    assert yaml.safe_load(text)["models"][0]["options"]["a8"]  # the bomb parses (as shared references)
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_models(path)


# --- the embedding cache ------------------------------------------------------------------------------


def _dataset() -> Dataset:
    rng = np.random.default_rng(0)
    samples = []
    for i in range(24):
        m = int(rng.integers(3, 8))
        samples.append(Sample(id=f"m{i:03d}", numbers=rng.choice([1, 6, 8], size=m), positions=rng.normal(size=(m, 3))))
    return Dataset("t", "1", samples)


def _adapter() -> FakeAtomsAdapter:
    return FakeAtomsAdapter(ModelEntry(key="fake", name="Fake", family="fake", modality="atoms", domain="molecules",
                                       adapter="tests.fake_models:FakeAtomsAdapter", batch_size=4,
                                       options={"dim": 8, "energy_noise": 0.01}))


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _shard_cases(ids: list[str], feats: np.ndarray, energies: np.ndarray) -> dict[str, bytes]:
    good = _npz(ids=np.asarray(ids), features=feats, energies=energies)
    return {
        "empty": b"",
        "garbage": b"not an npz at all",
        "truncated": good[: len(good) // 2],
        "no-features": _npz(ids=np.asarray(ids)),
        "other-ids": _npz(ids=np.asarray([f"x{i}" for i in ids]), features=feats, energies=energies),
        "too-few-rows": _npz(ids=np.asarray(ids), features=feats[:-1], energies=energies),
        "pickled-object-array": _npz(ids=np.asarray(ids), features=np.array([object()] * len(ids), dtype=object)),
    }


SHARD_BUGS = {  # well-formed npz shards that read_shard must still refuse
    "nan-features": lambda f, e: (np.full_like(f, np.nan), e),
    "one-dimensional-features": lambda f, e: (f[:, 0].copy(), e),
    "wrong-width": lambda f, e: (np.hstack([f, f]), e),
    "float64-features": lambda f, e: (f.astype(np.float64), e),
    "wrong-energy-length": lambda f, e: (f, e[:-1]),
}


def _assert_recomputed_exactly(root: Path, clean_root: Path, n_shards: int) -> None:
    ds = _dataset()
    got = extract(_adapter(), ds, root, progress=False)
    clean = extract(_adapter(), ds, clean_root, progress=False).embeddings
    assert got.shards_computed >= 1 and got.shards_computed + got.shards_reused == n_shards
    emb = store_for(_adapter(), ds, root).load()
    assert emb.features.dtype == clean.features.dtype and emb.features.tobytes() == clean.features.tobytes()
    assert emb.energies.tobytes() == clean.energies.tobytes()  # type: ignore[union-attr]


def _first_shard(tmp_path: Path):
    ds, adapter = _dataset(), _adapter()
    shards = plan_shards(adapter, ds)
    idx = [i for b in shards[0] for i in b]
    adapter.load()
    out = adapter.embed([ds.samples[i] for i in idx])
    feats, energies = np.asarray(out.features, np.float32), np.asarray(out.energies, np.float64)
    store = store_for(adapter, ds, tmp_path / "cache")
    return store, [ds.samples[i].id for i in idx], feats, energies, len(shards)


@pytest.mark.parametrize("case", [
    pytest.param("empty"),
    pytest.param("truncated"),
    "garbage", "no-features", "other-ids", "too-few-rows", "pickled-object-array",
])
def test_corrupt_shard_is_recomputed(tmp_path, case):
    store, ids, feats, energies, n_shards = _first_shard(tmp_path)
    store.shard_dir.mkdir(parents=True)
    store.shard_path(0).write_bytes(_shard_cases(ids, feats, energies)[case])
    assert store.read_shard(0, ids) is None
    _assert_recomputed_exactly(tmp_path / "cache", tmp_path / "clean", n_shards)


@pytest.mark.parametrize("case", [
    pytest.param(name) for name in SHARD_BUGS
])
def test_well_formed_but_wrong_shard_is_recomputed(tmp_path, case):
    store, ids, feats, energies, n_shards = _first_shard(tmp_path)
    bad_feats, bad_energies = SHARD_BUGS[case](feats, energies)
    store.shard_dir.mkdir(parents=True)
    store.shard_path(0).write_bytes(_npz(ids=np.asarray(ids), features=bad_feats, energies=bad_energies))
    try:
        _assert_recomputed_exactly(tmp_path / "cache", tmp_path / "clean", n_shards)
    except MatteralignError:
        pass  # a clear error is acceptable too, as long as nothing corrupt was finalized
    assert not store.complete or np.isfinite(store.load().features).all()


def _finished_entry(tmp_path: Path):
    ds = _dataset()
    extract(_adapter(), ds, tmp_path, progress=False)
    return store_for(_adapter(), ds, tmp_path)


ENTRY_CASES = {
    "features-row-mismatch": ("features.npy", lambda p: np.save(p, np.zeros((3, 8), np.float32))),
}
ENTRY_BUGS = {  # corrupt finished entries that EmbeddingStore.load must report as DataError
    "features-truncated": ("features.npy", lambda p: p.write_bytes(p.read_bytes()[:100])),
    "features-garbage": ("features.npy", lambda p: p.write_bytes(b"\x93NUMPY garbage")),
    "features-pickled": ("features.npy", lambda p: np.save(p, np.array([object()] * 24, dtype=object),
                                                           allow_pickle=True)),
    "features-nan": ("features.npy", lambda p: np.save(p, np.full((24, 8), np.nan, np.float32))),
    "ids-not-json": ("ids.json", lambda p: p.write_text("[\"m000\", ")),
    "meta-not-json": ("meta.json", lambda p: p.write_bytes(b"\xff\x00")),
}


@pytest.mark.parametrize("case", [
    *ENTRY_CASES,
    *ENTRY_BUGS,
])
def test_corrupt_finished_entry_is_a_data_error(tmp_path, case):
    store = _finished_entry(tmp_path)
    name, corrupt = {**ENTRY_CASES, **ENTRY_BUGS}[case]
    corrupt(store.path / name)
    with pytest.raises(DataError, match=str(store.path)):
        store.load()


# --- checkpoints --------------------------------------------------------------------------------------


def _torch_load_calls() -> list[tuple[str, int, object]]:
    """(file, line, value of weights_only or None) for every torch.load call under benchmark/."""
    found = []
    for path in sorted((REPO / "benchmark").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                kw = {k.arg: k.value for k in node.keywords}
                value = kw["weights_only"].value if isinstance(kw.get("weights_only"), ast.Constant) else None
                found.append((str(path.relative_to(REPO)), node.lineno, value))
    return found


#: torch.load calls allowed to unpickle arbitrary objects, and why
UNSAFE_ALLOWED = {
    "benchmark/models/mace_adapter.py": "MACE checkpoints are pickled nn.Modules; only local files the user names",
}


def test_torch_checkpoints_load_with_weights_only():
    calls = _torch_load_calls()
    assert calls, "no torch.load found: the scan is broken"
    unsafe = [(f, line) for f, line, value in calls if value is not True and f not in UNSAFE_ALLOWED]
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"


class _Exploit:
    def __reduce__(self):
        return (Path("/tmp/matteralign-pwned-ckpt").write_text, ("pwned",))


def test_hostile_checkpoint_is_not_executed(tmp_path):
    torch = pytest.importorskip("torch")
    from benchmark.models.schnet_adapter import load_checkpoint

    path = tmp_path / "schnet-n10-e1.pt"
    torch.save({"format": "x", "payload": _Exploit()}, path)
    with pytest.raises(Exception) as info:
        load_checkpoint(path)
    assert not Path("/tmp/matteralign-pwned-ckpt").exists()
    assert isinstance(info.value, (pickle.UnpicklingError, MatteralignError))


@pytest.mark.parametrize("content", [b"", b"not a zip", b"PK\x03\x04truncated"])
def test_corrupt_checkpoint_is_a_config_error(tmp_path, content):
    pytest.importorskip("torch")
    from benchmark.models.schnet_adapter import load_checkpoint

    path = tmp_path / "schnet-n10-e1.pt"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=str(path)):
        load_checkpoint(path)
