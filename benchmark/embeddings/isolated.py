"""Embed a model whose packages conflict with the main environment, in a cached venv of its own.

For `environment: isolated` entries the venv is built once from the entry's `requirements` under
``$MATTERALIGN_CACHE/envs/<hash>/`` (the hash covers the requirements, the Python, the project path and
the flags). It is built under a temporary name and renamed into place, so a killed or failed build never
leaves a half environment under the final name. `benchmark.embeddings.worker` then runs there as a
subprocess: it rebuilds the dataset from an npz file written here (exact arrays, no pickle), calls the same
`extract()`, and so writes into the shared content-addressed cache, from which this process reads.

With `system_site_packages=True` (the default) the venv sees the *current* environment's packages (torch,
numpy, pydantic, the project's own dependencies) and its own installs shadow them (e.g. e3nn 0.4.4 for
MACE); torch is then pinned to the main environment's version so pip can never pull a multi-GB build.
When the current Python is itself a virtualenv, `venv --system-site-packages` would expose the *base*
interpreter's site-packages instead (not the user's environment), so there the venv is made without it and
a ``.pth`` file adds the current environment's site directories (``site.addsitedir``, so their own .pth
files, e.g. editable installs, work too); the venv's hash then includes the current environment's prefix.
A requirement written ``"--no-deps mattersim==1.2.3"`` is installed without its dependencies, for
packages whose declared dependencies break the shared torch (mattersim pulls a CUDA torchvision).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmark.embeddings.cache import CacheMismatch, EmbeddingStore, pid_alive
from benchmark.embeddings.extract import ExtractResult, store_for
from benchmark.errors import DataError, MatteralignError, ModelUnavailable
from benchmark.io import (  # noqa: F401 (env_hash, in_virtualenv, parent_site_dirs: re-exported for callers)
    PROJECT_ROOT, env_constraints, cache_root, env_dir, env_hash, env_python, in_virtualenv, parent_site_dirs,
)
from benchmark.registry.schema import ModelEntry
from benchmark.structures import Dataset, Sample

#: exit status the worker uses for ModelUnavailable, so the run can skip the model like an in-process one
EXIT_UNAVAILABLE = 3
#: a requirement written "--no-deps pkg==1.0" is installed without its dependencies (after the others)
NO_DEPS = "--no-deps "
STDERR_TAIL = 4000
#: .pth file in an isolated venv that adds the parent environment's site directories (sorts after the project's)
PARENT_SITE_PTH = "matteralign_site.pth"


class IsolatedEnvError(MatteralignError):
    """The isolated environment could not be built, or the worker in it failed or timed out."""


# --- environments -----------------------------------------------------------------------------------
def _tail(text: str) -> str:
    return text[-STDERR_TAIL:].strip()


def _run(cmd: list[str], what: str, timeout: float, **kw: Any) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise IsolatedEnvError(f"{what} timed out after {timeout:.0f} s: {' '.join(cmd)}\n{_tail(err)}") from None
    if proc.returncode != 0:
        raise IsolatedEnvError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{_tail(proc.stderr)}")
    return proc


def _remove_stale_builds(envs: Path, digest: str) -> None:
    """Temporary build folders of builds whose process is gone (killed mid-build)."""
    for tmp in envs.glob(f".{digest}.tmp-*"):
        try:
            pid = int(tmp.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if not pid_alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)


def env_ready(requirements: Sequence[str], system_site_packages: bool = True, root: Path | None = None) -> bool:
    return env_python(env_dir(requirements, system_site_packages, root)).exists()


def ensure_env(
    requirements: Sequence[str],
    system_site_packages: bool = True,
    root: Path | None = None,
    timeout: float = 3600,
) -> Path:
    """The venv for these requirements, built on first use (uv when installed, else venv + pip)."""
    final = env_dir(requirements, system_site_packages, root)
    envs, digest = final.parent, final.name
    if env_python(final).exists():
        return final
    envs.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(envs, digest)
    tmp = envs / f".{digest}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _build(tmp, list(requirements), system_site_packages, timeout)
        try:
            os.rename(tmp, final)
        except OSError:
            if not env_python(final).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _build(tmp: Path, requirements: list[str], system_site_packages: bool, timeout: float) -> None:
    # from inside a virtualenv the parent's packages come from a .pth file (see the module docstring)
    via_pth = system_site_packages and in_virtualenv()
    # uv decides what is installed from the venv's own (and base) site-packages only, not from .pth paths
    uv = None if via_pth else shutil.which("uv")
    site_flag = ["--system-site-packages"] if system_site_packages and not via_pth else []
    # pip of the main interpreter can install into a system-site venv; otherwise the venv needs its own
    own_pip = bool(requirements) and not (system_site_packages and _has_pip())
    if uv:
        _run([uv, "venv", "--quiet", "--python", sys.executable, *site_flag, str(tmp)], "creating the venv", timeout)
    else:
        cmd = [sys.executable, "-m", "venv", *site_flag, *([] if own_pip else ["--without-pip"]), str(tmp)]
        _run(cmd, "creating the venv", timeout)
    python = env_python(tmp)
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   "locating site-packages", 120).stdout.strip()
    Path(purelib, "matteralign_project.pth").write_text(str(PROJECT_ROOT) + "\n")
    if via_pth:  # before installing, so pip sees (and does not reinstall) what the parent already has
        lines = [f"import site; site.addsitedir({d!r})" for d in parent_site_dirs()]
        Path(purelib, PARENT_SITE_PTH).write_text("\n".join(lines) + "\n")
    install = ([uv, "pip", "install", "--quiet", "--python", str(python)] if uv
               else [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
    plain = [r for r in requirements if not r.startswith(NO_DEPS)]
    bare = [r[len(NO_DEPS):].strip() for r in requirements if r.startswith(NO_DEPS)]
    if plain:
        (tmp / "requirements.txt").write_text("\n".join(plain) + "\n")
        (tmp / "constraints.txt").write_text("\n".join(env_constraints(system_site_packages)) + "\n")
        files = ["-r", str(tmp / "requirements.txt"), "-c", str(tmp / "constraints.txt")]
        _run([*install, *files], f"installing {', '.join(plain)}", timeout, cwd=str(tmp))
    if bare:
        _run([*install, "--no-deps", *bare], f"installing {', '.join(bare)} without dependencies", timeout,
             cwd=str(tmp))


def _has_pip() -> bool:
    import importlib.util

    return importlib.util.find_spec("pip") is not None


# --- datasets across the process boundary ----------------------------------------------------------------
def _jsonable_info(sample: Sample) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in sample.info.items():
        if isinstance(v, (np.ndarray, np.generic)):
            v = v.tolist()
        try:
            json.dumps(v)
        except TypeError:
            raise DataError(
                f"sample {sample.id!r}: info[{k!r}] ({type(v).__name__}) cannot be sent to an isolated worker; "
                "store JSON-able values or arrays in Sample.info"
            ) from None
        out[k] = v
    return out


#: the Sample fields sent as exact arrays (every other field is a JSON scalar)
ARRAY_FIELDS = ("numbers", "positions", "cell", "backbone", "residue_ids")


def write_dataset(dataset: Dataset, path: Path) -> None:
    """Every sample, arrays exact (dtype kept), scalars as JSON: enough to rebuild the same digest."""
    arrays: dict[str, np.ndarray] = {}
    records = []
    for i, s in enumerate(dataset.samples):
        for name in ARRAY_FIELDS:
            value = getattr(s, name)
            if value is not None:
                arrays[f"{name}_{i}"] = np.asarray(value)
        records.append({"id": s.id, "pbc": bool(s.pbc), "charge": int(s.charge), "smiles": s.smiles, "text": s.text,
                        "sequence": s.sequence, "energy": s.energy, "info": _jsonable_info(s)})
    header = {"task": dataset.task, "version": dataset.version, "digest": dataset.digest, "samples": records}
    arrays["header"] = np.asarray(json.dumps(header))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def read_dataset(path: Path) -> Dataset:
    """The dataset written by `write_dataset`; DataError when its digest no longer matches."""
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(str(z["header"]))
        samples = []
        for i, rec in enumerate(header["samples"]):
            arrays = {n: z[f"{n}_{i}"] if f"{n}_{i}" in z.files else None for n in ARRAY_FIELDS}
            samples.append(Sample(**rec, **arrays))
    dataset = Dataset(header["task"], header["version"], samples)
    if dataset.digest != header["digest"]:
        raise DataError(f"{path}: the rebuilt dataset's digest differs from the one written; the file is corrupt")
    return dataset


# --- running the worker ------------------------------------------------------------------------------------
def entry_digest(entry: ModelEntry) -> str:
    return hashlib.sha256(entry.model_dump_json().encode()).hexdigest()


def _cached(entry: ModelEntry, dataset: Dataset, root: Path | None, device: str) -> ExtractResult | None:
    """The finished cache entry, found from this process when the adapter class imports here."""
    from benchmark.registry.loader import import_object

    t0 = time.perf_counter()
    try:
        adapter = import_object(entry.adapter, f"adapter of model {entry.key!r}")(entry, device=device)
        store = store_for(adapter, dataset, root)
    except Exception:  # noqa: BLE001 - the adapter may need packages that live only in the venv
        return None
    if not store.complete:
        return None
    try:
        return ExtractResult(store.load(), True, 0, 0, time.perf_counter() - t0)
    except CacheMismatch:  # the worker's extract() names it and recomputes the entry
        return None


def extract_isolated(
    entry: ModelEntry,
    dataset: Dataset,
    models_file: str | Path,
    root: Path | None = None,
    device: str = "cpu",
    timeout: float = 6 * 3600,
    build_timeout: float = 3600,
    system_site_packages: bool = True,
) -> ExtractResult:
    """Embeddings of `dataset` by `entry`, computed in its isolated venv and read back from the shared cache.

    `models_file` is the models.yaml the worker re-reads (its entry must equal `entry`). Raises
    ModelUnavailable when the worker reports missing weights, IsolatedEnvError (with the worker's stderr
    tail) when the environment cannot be built or the worker fails or passes `timeout` seconds.
    """
    t0 = time.perf_counter()
    hit = _cached(entry, dataset, root, device)
    if hit is not None:
        return hit
    cache = Path(root or cache_root()).resolve()
    env = ensure_env(entry.requirements, system_site_packages, cache, build_timeout)
    work = cache / "isolated-runs" / f"{entry.key}-{os.getpid()}-{time.time_ns()}"
    work.mkdir(parents=True)
    try:
        write_dataset(dataset, work / "dataset.npz")
        cmd = [str(env_python(env)), "-m", "benchmark.embeddings.worker", "--models", str(Path(models_file).resolve()),
               "--model", entry.key, "--entry-digest", entry_digest(entry), "--dataset", str(work / "dataset.npz"),
               "--root", str(cache), "--device", device, "--result", str(work / "result.json")]
        code, stderr = _run_worker(cmd, work, timeout, entry.key)
        if code == EXIT_UNAVAILABLE:
            raise ModelUnavailable(_last_line(stderr))
        if code != 0:
            raise IsolatedEnvError(
                f"isolated worker for model {entry.key!r} on task {dataset.task!r} failed (exit {code}); "
                f"environment {env}; stderr tail:\n{_tail(stderr)}"
            )
        result = json.loads((work / "result.json").read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    emb = EmbeddingStore(result["key"], cache).load()
    if emb.ids != dataset.ids or emb.meta.get("data_digest") != dataset.digest or emb.meta.get("model") != entry.key:
        raise DataError(f"isolated worker for {entry.key!r} left cache entry {emb.path} for other data; delete it")
    return ExtractResult(emb, bool(result["reused"]), int(result["shards_reused"]), int(result["shards_computed"]),
                         time.perf_counter() - t0)


def _run_worker(cmd: list[str], work: Path, timeout: float, key: str) -> tuple[int, str]:
    """Run the worker in its own process group (killed whole on timeout); stderr goes to a file, not memory."""
    log = work / "stderr.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=str(work), start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise IsolatedEnvError(
                f"isolated worker for model {key!r} timed out after {timeout:.0f} s and was killed; finished shards "
                f"stay in the cache and the next run resumes; stderr tail:\n{_tail(_read(log))}"
            ) from None
    return code, _read(log)


def _read(path: Path) -> str:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 4 * STDERR_TAIL))
        return fh.read().decode(errors="replace")


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "model unavailable in its isolated environment"
