"""Checkpoint discovery: folders with config + safetensors, locally and behind an fsspec URL."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from mnaft_core.models.scan import find_checkpoints, local_copy


def _ckpt(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"x")


def test_finds_only_complete_checkpoints(tmp_path: Path) -> None:
    _ckpt(tmp_path / "a" / "model")
    _ckpt(tmp_path / "b")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "config.json").write_text("{}")  # no weights: not a checkpoint
    assert find_checkpoints(str(tmp_path)) == sorted([str(tmp_path / "a" / "model"), str(tmp_path / "b")])
    assert local_copy(str(tmp_path / "b"), tmp_path / "cache") == tmp_path / "b"


def test_remote_checkpoints_are_listed_and_downloaded_once(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe({"/bucket/run1/model/config.json": b"{}", "/bucket/run1/model/model.safetensors": b"w"})
    found = find_checkpoints("memory://bucket")
    assert found == [fs.unstrip_protocol("/bucket/run1/model")]
    local = local_copy(found[0], tmp_path)
    assert (local / "config.json").read_text() == "{}" and (local / "model.safetensors").read_bytes() == b"w"
    fs.rm("/bucket", recursive=True)
    assert local_copy(found[0], tmp_path) == local  # cached: no second download


def test_missing_location_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_checkpoints(str(tmp_path / "nowhere"))
