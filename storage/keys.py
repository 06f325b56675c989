"""Content keys and the name rules that keep every path inside the store.

A key is the sha256 of what determines a stage's output: the upstream artifact keys, the stage's
parameters and the version of the code that computes it. Live model objects never enter a key; a model
enters through the key of the artifact that holds it, or through its content fingerprint.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import re
from collections.abc import Mapping
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


def module_file(name: str) -> Path:
    """The source file of module ``name`` (a package's ``__init__.py``), found from its top-level
    package's folder without importing anything."""
    path = _module_file(name)
    if path is None:
        raise InvalidNameError(f"code_version: module {name!r} has no Python source")
    return path


@cache
def _package_dir(top: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    origin = Path(spec.origin)
    return origin.parent if origin.name == "__init__.py" else origin


def _module_file(name: str) -> Path | None:
    top, *rest = name.split(".")
    base = _package_dir(top)
    if base is None:
        return None
    if base.suffix == ".py":  # a top-level module
        return base if not rest else None
    folder = base.joinpath(*rest)
    for candidate in (folder / "__init__.py", folder.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _is_module(name: str) -> bool:
    return _module_file(name) is not None


def imports_of(name: str, follow: tuple[str, ...] = ()) -> set[str]:
    """Every module the source of ``name`` imports, anywhere in it (lazy imports inside functions too):
    ``from a.b import c`` names ``a.b``, and ``a.b.c`` too where ``c`` is a submodule under ``follow``."""
    path = module_file(name)
    st = path.stat()
    memo = (str(path), st.st_mtime_ns, st.st_size, follow)
    if memo not in _IMPORTS:
        _IMPORTS[memo] = _parse_imports(name, path, follow)
    return set(_IMPORTS[memo])


_IMPORTS: dict[tuple[str, int, int, tuple[str, ...]], frozenset[str]] = {}


def _followed(name: str, follow: tuple[str, ...]) -> bool:
    return any(name == f or name.startswith(f + ".") for f in follow)


def _parse_imports(name: str, path: Path, follow: tuple[str, ...]) -> frozenset[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            if _followed(base, follow):
                found.update(f"{base}.{a.name}" for a in node.names if _is_module(f"{base}.{a.name}"))
    return frozenset(found)


def import_closure(root: str, follow: tuple[str, ...]) -> tuple[str, ...]:
    """``root`` and every module under the ``follow`` packages it imports, directly or through each
    other (with the packages whose ``__init__`` importing them runs): the code a stage runs."""
    seen, todo = {root}, [root]
    while todo:
        for name in imports_of(todo.pop(), follow):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
                mod = ".".join(parts[:i])
                if mod not in seen and _followed(mod, follow) and _is_module(mod):
                    seen.add(mod)
                    todo.append(mod)
    return tuple(sorted(seen))


def code_version(*modules: str) -> str:
    """sha256 over the source files of ``modules``: any change to one of them makes new keys.

    A stage passes its import closure (``import_closure``), so no module it runs can be forgotten; the
    price is that a comment edit also recomputes the stage.
    """
    h = hashlib.sha256()
    for name in sorted(set(modules)):
        h.update(name.encode())
        h.update(b"\0")
        h.update(module_file(name).read_bytes())
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
