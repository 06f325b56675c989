"""Content keys and the name rules that keep every path inside the store.

A key is the sha256 of what determines a stage's output: the upstream artifact keys, the stage's
parameters and the version of the code that computes it. Live model objects never enter a key; a model
enters through the key of the artifact that holds it, or through its content fingerprint.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from mnaft_core._base import canonical_json
from storage.errors import InvalidNameError

KEY_LENGTH = 20  # hex chars: 80 bits, collision-free for any realistic store
RESERVED_STAGES = frozenset({"refs"})

_STAGE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_KEY_RE = re.compile(r"^[0-9a-f]{8,64}$")
_REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SEGMENT_RE = re.compile(r"^[^\x00-\x1f\\:*?\"<>|]+$")


def content_key(stage: str, inputs: Mapping[str, str], params: Any, code_version: str) -> str:
    """The artifact key of ``stage`` run on ``inputs`` (name -> upstream key) with ``params``."""
    validate_stage(stage)
    for name, key in inputs.items():
        validate_key(key, what=f"input {name!r}")
    payload = {"stage": stage, "inputs": dict(inputs), "params": params, "code": code_version}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:KEY_LENGTH]


@cache
def code_version(*packages: str) -> str:
    """sha256 over the Python sources of ``packages``: any code change makes new keys.

    Coarser than a hand-bumped version number and never forgotten; the price is that a comment edit
    also recomputes the stage.
    """
    h = hashlib.sha256()
    for pkg in sorted(packages):
        spec = importlib.util.find_spec(pkg)
        if spec is None or spec.origin is None:
            raise InvalidNameError(f"code_version: package {pkg!r} not found")
        origin = Path(spec.origin)
        files: Iterable[Path] = (
            sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
        )
        for f in files:
            h.update(f.relative_to(origin.parent).as_posix().encode())
            h.update(b"\0")
            h.update(f.read_bytes())
            h.update(b"\0")
    return h.hexdigest()[:16]


def validate_stage(stage: str) -> str:
    if not isinstance(stage, str) or not _STAGE_RE.match(stage) or stage in RESERVED_STAGES:
        raise InvalidNameError(
            f"invalid stage name {stage!r}: lower-case letters, digits, '-' and '_', starting with a letter"
            + (f"; {stage!r} is reserved" if stage in RESERVED_STAGES else "")
        )
    return stage


def validate_key(key: str, what: str = "key") -> str:
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise InvalidNameError(f"invalid {what} {key!r}: expected 8-64 lower-case hex characters")
    return key


def validate_ref(name: str) -> str:
    if not isinstance(name, str) or not _REF_RE.match(name):
        raise InvalidNameError(f"invalid ref name {name!r}: letters, digits, '.', '_' and '-' only")
    return name


def validate_relpath(path: str) -> str:
    """A file path relative to an artifact: no absolute paths, no '..', no backslashes, no empty parts."""
    if not isinstance(path, str) or not path:
        raise InvalidNameError(f"invalid artifact file path {path!r}: empty")
    if path.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", path):
        raise InvalidNameError(f"invalid artifact file path {path!r}: must be relative")
    for part in path.split("/"):
        if part in ("", ".", "..") or not _SEGMENT_RE.match(part):
            raise InvalidNameError(f"invalid artifact file path {path!r}: bad segment {part!r}")
    return path
