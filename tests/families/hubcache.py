"""Place a checkpoint folder in a Hugging Face cache the way ``hf download`` lays it out."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def place_in_hub_cache(folder: Path, hub_cache: Path, repo_id: str) -> Path:
    """``hub_cache/models--Org--Name/{blobs,snapshots/<sha>,refs/main}``; snapshot files are links to
    content-addressed blobs, as in a real cache. Returns the snapshot folder."""
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    files = sorted(p for p in folder.iterdir() if p.is_file())
    commit = hashlib.sha1("".join(p.name for p in files).encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for f in files:
        blob = repo / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        if not blob.exists():
            blob.write_bytes(f.read_bytes())
        os.symlink(os.path.relpath(blob, snapshot), snapshot / f.name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot
