"""Bottom layer for files: the cache root, atomic writes, content digests, a file lock and folder publishing.

Imports nothing from the rest of the package except ``benchmark.errors``, so every layer can use it.
Atomic writes go to a temporary file in the target's folder named after its writer (host digest + pid), are
fsynced and moved into place with ``os.replace``: readers see the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import site
import socket
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from benchmark.errors import MatteralignError

#: temporary files name their writer (host digest + pid), so a cleanup can remove only those of dead writers
HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def cache_root() -> Path:
    """``$MATTERALIGN_CACHE``, default ``~/.cache/matteralign``."""
    return Path(os.environ.get("MATTERALIGN_CACHE", Path.home() / ".cache" / "matteralign")).expanduser()


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write `data` to `path` atomically (temporary file in the same folder, fsync, os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.h{HOST_TAG}p{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True, default=str).encode())


def array_digest(X: np.ndarray) -> str:
    """sha256 over shape, dtype and bytes of X: any change of the array changes it (~1 GB/s)."""
    X = np.ascontiguousarray(X)
    h = hashlib.sha256(f"{X.shape}|{X.dtype.str}|".encode())
    h.update(memoryview(X).cast("B"))
    return h.hexdigest()


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def file_lock(path: Path, timeout: float = 120.0, what: str = "") -> Iterator[None]:
    """An exclusive advisory lock (fcntl.flock) on `path`, waiting at most `timeout` seconds.

    Released when the block ends or the process dies (the kernel drops flock locks of dead processes),
    so a killed holder never leaves a stale lock.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise MatteralignError(
                        f"timed out after {timeout:.0f} s waiting for the lock {path}{' (' + what + ')' if what else ''}; "
                        "another matteralign process holds it: wait for it to finish"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def publish_dir(tmp: Path, final: Path, timeout: float = 120.0) -> None:
    """Move every file of the finished folder `tmp` into `final`, each with an atomic os.replace, under a lock.

    Concurrent writers of one folder then never see or delete each other's half-written files: each file
    is whole, and the last publisher's set wins. `tmp` must be on the same filesystem (make it inside
    ``final.parent``); it is removed afterwards.
    """
    tmp, final = Path(tmp), Path(final)
    final.mkdir(parents=True, exist_ok=True)
    with file_lock(final.parent / f".{final.name}.lock", timeout=timeout, what=f"publishing {final}"):
        for src in sorted(p for p in tmp.rglob("*") if p.is_file()):
            dst = final / src.relative_to(tmp)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    shutil.rmtree(tmp, ignore_errors=True)


def staging_dir(final: Path) -> Path:
    """A fresh temporary folder beside `final` (same filesystem) for :func:`publish_dir`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.h{HOST_TAG}p{os.getpid()}.", suffix=".tmp"))


# --- isolated environments: where a model's own venv lives ----------------------------------------------------
#: the repository (or installed package) root, part of an isolated venv's identity
PROJECT_ROOT = Path(__file__).resolve().parents[1]
ENV_SCHEMA = 1


def env_constraints(system_site_packages: bool) -> list[str]:
    """Pins that keep a system-site venv on the main environment's torch (never a fresh CUDA download)."""
    if not system_site_packages:
        return []
    try:
        return [f"torch=={metadata.version('torch')}"]
    except metadata.PackageNotFoundError:
        return []


def in_virtualenv() -> bool:
    """True when this Python runs inside a venv/virtualenv (its site-packages are not the base interpreter's)."""
    return sys.prefix != getattr(sys, "base_prefix", sys.prefix)


def parent_site_dirs() -> list[str]:
    """The current environment's site-packages folders (and the user site when enabled), in sys.path order."""
    dirs = list(site.getsitepackages())
    user = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if user and Path(user).is_dir():
        dirs.append(user)
    return [d for d in dict.fromkeys(dirs) if Path(d).is_dir()]


def env_hash(requirements: Sequence[str], system_site_packages: bool = True) -> str:
    spec: dict[str, Any] = {
        "schema": ENV_SCHEMA,
        "requirements": sorted(r.strip() for r in requirements),
        "constraints": env_constraints(system_site_packages),
        "python": sys.version,
        "executable": str(Path(sys.executable).resolve()),
        "project": str(PROJECT_ROOT),
        "system_site_packages": system_site_packages,
    }
    if system_site_packages and in_virtualenv():
        # a venv's python resolves to the base interpreter: tell two parent environments apart by prefix
        spec["parent_prefix"] = str(Path(sys.prefix).resolve())
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def env_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def env_dir(requirements: Sequence[str], system_site_packages: bool = True, root: Path | None = None) -> Path:
    """Where the venv for these requirements lives (built or not)."""
    return Path(root or cache_root()).resolve() / "envs" / env_hash(requirements, system_site_packages)
