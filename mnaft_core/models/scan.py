"""Find model checkpoints under a folder or an fsspec URL (s3://bucket/prefix), for re-profiling."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import fsspec

WEIGHTS = (".safetensors",)


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols


def find_checkpoints(
    location: str, storage_options: dict[str, Any] | None = None, depth: int = 3
) -> list[str]:
    """Folders (as URLs or paths) at most ``depth`` levels below ``location`` holding config.json and
    safetensors weights, sorted; a location that does not exist is an error naming it."""
    fs, root = fsspec.core.url_to_fs(location, **(storage_options or {}))
    if not fs.exists(root):
        raise FileNotFoundError(f"checkpoint location {location!r} does not exist")
    found = []
    for dirpath, _dirs, files in fs.walk(root, maxdepth=depth):
        names = set(files)
        if "config.json" in names and any(n.endswith(WEIGHTS) for n in names):
            found.append(dirpath if _is_local(fs) else fs.unstrip_protocol(dirpath))
    return sorted(found)


def local_copy(checkpoint: str, cache_dir: Path, storage_options: dict[str, Any] | None = None) -> Path:
    """A local folder holding ``checkpoint`` (itself when local; a cached download otherwise)."""
    fs, path = fsspec.core.url_to_fs(checkpoint, **(storage_options or {}))
    if _is_local(fs):
        return Path(path)
    dest = cache_dir / hashlib.sha256(checkpoint.encode()).hexdigest()[:16]
    if not (dest / "config.json").is_file():
        tmp = dest.with_suffix(".partial")
        fs.get(path.rstrip("/") + "/", str(tmp), recursive=True)
        tmp.rename(dest)
    return dest
