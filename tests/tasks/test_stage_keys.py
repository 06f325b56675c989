"""Code versions come from each stage's import closure: no hand-kept list can forget a module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import storage.keys
from mnaft_core.data.config import DataConfig
from mnaft_core.selection.select import SelectConfig
from storage.keys import import_closure, imports_of
from tasks._stage import LIBRARY
from tasks.data import data_key
from tasks.select import select_key

ROOT = Path(__file__).resolve().parents[2]
PROFILE_KEY = "0123456789abcdef0123"


def test_the_closure_follows_every_kind_of_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "closurepkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import leaf\n")
    (pkg / "sub" / "leaf.py").write_text("import json\n")
    (pkg / "lazy.py").write_text("def f():\n    from closurepkg.sub import leaf\n    return leaf\n")
    (pkg / "rel.py").write_text("from .lazy import f\nfrom .. import os  # not ours\n")
    (pkg / "root.py").write_text("import closurepkg.rel\nfrom closurepkg import unused_name\n")
    (pkg / "orphan.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_closure("closurepkg.root", ("closurepkg",)) == (
        "closurepkg", "closurepkg.lazy", "closurepkg.rel", "closurepkg.root", "closurepkg.sub",
        "closurepkg.sub.leaf",
    )  # fmt: skip
    assert "json" in imports_of("closurepkg.sub.leaf")


def test_stage_closures_hold_the_modules_the_old_lists_forgot() -> None:
    profile = import_closure("tasks.profile", LIBRARY)
    select = import_closure("tasks.select", LIBRARY)
    data = import_closure("tasks.data", LIBRARY)
    assert "mnaft_core.selection.mask" in profile  # profile fingerprints with it
    assert "mnaft_core.profiling.zarr_stats" in select  # select reads the profile with it
    assert "mnaft_core.models.adapters.qwen2_vl" in profile  # through the adapters package
    assert not any(m.startswith(("mnaft_core.selection", "mnaft_core.models")) for m in data)
    assert "tasks.profile" not in select and all(m.startswith(("mnaft_core", "tasks.select")) for m in select)


def test_a_change_in_selects_closure_changes_select_key_and_not_datas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_cfg = DataConfig.model_validate({"directions": [{"src": "en", "tgt": "de"}],
                                          "sources": [{"kind": "cldr"}]})  # fmt: skip
    before = select_key(SelectConfig(), PROFILE_KEY), data_key(data_cfg)
    edited = tmp_path / "lape.py"
    edited.write_text(storage.keys.module_file("mnaft_core.selection.lape").read_text() + "# edited\n")
    real = storage.keys.module_file
    monkeypatch.setattr(
        storage.keys,
        "module_file",
        lambda name: edited if name == "mnaft_core.selection.lape" else real(name),
    )
    after = select_key(SelectConfig(), PROFILE_KEY), data_key(data_cfg)
    assert after[0] != before[0] and after[1] == before[1]


def _hand_kept_lists(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            names = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if any(n.startswith(("mnaft_core.", "tasks.", "storage.")) for n in names):
                found.append(f"{path.name}:{node.lineno}: {names}")
    return found


def test_no_stage_keeps_a_hand_written_code_list(tmp_path: Path) -> None:
    found = [hit for f in sorted((ROOT / "tasks").glob("*.py")) for hit in _hand_kept_lists(f)]
    assert found == [], "stage code versions come from import_closure, not from lists:\n" + "\n".join(found)
    planted = tmp_path / "planted.py"  # the check catches a list like the old ones
    planted.write_text('PACKAGES = ("mnaft_core.selection", "mnaft_core.viz")\n')
    assert _hand_kept_lists(planted)
