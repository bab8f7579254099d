"""A directory by value, for executors whose children do not share the engine's file system (Ray).

A `Parcel` is the small files of a directory as one gzip'd tar (`.git` left out) plus a manifest of its
large files by sha256: `{relative path: sha256}`. The large files travel separately, each once, keyed by
their digest (Ray's object store on a cluster), so a 500 MB weights file that every member of every
iteration starts from is sent to a node once, and a member that leaves it unchanged sends nothing back.

    parcel, large = make_parcel(state_dir, large_bytes)   # large: {sha256: engine-side path}
    apply_parcel(parcel, dest, fetch)                     # fetch(sha256) -> bytes, for files dest lacks

`apply_parcel` makes `dest` exactly the parcel (a file the method deleted is deleted; `dest/.git` kept),
and keeps a large file already in place when its digest matches instead of fetching it again.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

DEFAULT_LARGE_BYTES = 1_000_000  # the StateRepo's default threshold (large_file_mb=1)
SKIP_DIRS = frozenset({".git", "state.git", "__pycache__"})  # state.git: a run's repository (checkpoint.py)


@dataclass
class Parcel:
    archive: bytes  # gzip'd tar of the small files
    large: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    single_file: str | None = None  # the parcel is one file (a gold file), not a directory: its name

    def nbytes(self) -> int:
        return len(self.archive)


def sha256_of(path: Path, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


class DigestCache:
    """sha256 of files by (path, size, mtime): a state's unchanged weights are hashed once per run."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int, int], str] = {}

    def __call__(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._seen:
            self._seen[key] = sha256_of(path)
        return self._seen[key]


def _files(root: Path, skip_dirs: Iterable[str]) -> list[Path]:
    skip = set(skip_dirs)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        for name in sorted(filenames):
            if name not in skip:  # `.git` may be a pointer file (autoloop/checkpoint.py)
                out.append(Path(dirpath) / name)
    return out


def make_parcel(path: Path, large_bytes: int = DEFAULT_LARGE_BYTES, digest: Callable[[Path], str] = sha256_of,
                skip_dirs: Iterable[str] = SKIP_DIRS) -> tuple[Parcel, dict[str, Path]]:
    """Pack a directory (or one file). Returns the parcel and {sha256: path} of its large files."""
    path = Path(path)
    buf = io.BytesIO()
    large: dict[str, str] = {}
    sources: dict[str, Path] = {}
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        if path.is_file():
            tar.add(path, arcname=path.name)
            return Parcel(_close(tar, buf), {}, single_file=path.name), {}
        for f in _files(path, skip_dirs):
            rel = f.relative_to(path).as_posix()
            if f.is_symlink() or not f.is_file() or f.stat().st_size < large_bytes:
                tar.add(f, arcname=rel, recursive=False)
                continue
            sha = digest(f)
            large[rel] = sha
            sources.setdefault(sha, f)
    return Parcel(buf.getvalue(), large), sources


def _close(tar: tarfile.TarFile, buf: io.BytesIO) -> bytes:
    tar.close()
    return buf.getvalue()


def apply_parcel(parcel: Parcel, dest: Path, fetch: Callable[[str], bytes],
                 digest: Callable[[Path], str] = sha256_of) -> Path:
    """Make `dest` hold exactly the parcel. Returns the path a call should be given: `dest` for a
    directory, `dest/<name>` for a single file."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    keep = {rel for rel, sha in parcel.large.items() if _matches(dest / rel, sha, digest)}
    for f in _files(dest, {".git"}):
        rel = f.relative_to(dest).as_posix()
        if rel not in keep:
            f.unlink()
    for d in sorted((p for p in dest.rglob("*") if p.is_dir() and ".git" not in p.relative_to(dest).parts),
                    key=lambda p: len(p.parts), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()  # an empty folder the method removed
    with tarfile.open(fileobj=io.BytesIO(parcel.archive), mode="r:gz") as tar:
        try:
            tar.extractall(dest, filter="tar")  # nothing outside dest; absolute links kept (a state may link a dataset)
        except TypeError:  # Python without extraction filters (< 3.10.12)
            tar.extractall(dest)
    for rel, sha in parcel.large.items():
        if rel in keep:
            continue
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".autoloop-tmp")
        tmp.write_bytes(fetch(sha))
        os.replace(tmp, out)
    return dest / parcel.single_file if parcel.single_file else dest


def _matches(path: Path, sha: str, digest: Callable[[Path], str]) -> bool:
    try:
        return path.is_file() and not path.is_symlink() and digest(path) == sha
    except OSError:
        return False


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
