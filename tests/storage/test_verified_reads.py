"""Reads are verified: a stored file changed after publishing is refused, on every backend."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import storage.store
from storage import ArtifactStore, IntegrityError, content_key


def _publish(store: ArtifactStore) -> str:
    key = content_key("data", {}, {"v": 1}, "v1")
    with store.writer("data", key, params={"v": 1}, code_version="v1") as w:
        (w.dir / "table.bin").write_bytes(bytes(range(256)) * 4)
        (w.dir / "sub").mkdir()
        (w.dir / "sub" / "c.0").write_bytes(b"chunk")
    return key


def _tamper(store: ArtifactStore, key: str, rel: str) -> None:
    """Change 4 bytes, same size: the size check of get() cannot see it."""
    path = f"{store.root}/data/{key}/{rel}"
    data = bytearray(store.fs.cat_file(path))
    data[10:14] = b"XXXX"
    store.fs.pipe_file(path, bytes(data))


def test_tampered_file_is_refused_by_every_read(store: ArtifactStore) -> None:
    key = _publish(store)
    art = store.open("data", key)
    assert art.read_bytes("table.bin")[:4] == bytes(range(4))
    _tamper(store, key, "table.bin")
    art = store.open("data", key)  # sizes still agree: the artifact looks complete
    for read in (lambda: art.read_bytes("table.bin"), art.local_dir, lambda: art.local_path("sub")):
        with pytest.raises(IntegrityError) as err:
            read()
        msg = str(err.value)
        assert f"data/{key}" in msg and "table.bin" in msg and f"mnaft artifacts verify {key}" in msg
    assert art.read_bytes("sub/c.0") == b"chunk"  # an intact file of it is still readable alone
    with pytest.raises(IntegrityError, match=r"table\.bin"):
        store.verify("data", key)


def test_marker_skips_rehash_until_the_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ArtifactStore(tmp_path / "store")
    key = _publish(store)
    folder = Path(store.root) / "data" / key
    monkeypatch.setattr(storage.store, "_RACY_NS", 0)  # as if the files had settled before the check
    hashed: list[str] = []
    real = storage.store.sha256_file

    def counting(path: Path) -> str:
        hashed.append(path.name)
        return real(path)

    monkeypatch.setattr(storage.store, "sha256_file", counting)
    store.open("data", key).local_dir()
    assert sorted(hashed) == ["c.0", "table.bin"]
    hashed.clear()
    store.open("data", key).local_dir()
    assert hashed == [], "an unchanged verified file is not hashed again"
    before = (folder / "table.bin").stat()
    time.sleep(0.05)  # past the file-time tick of the check
    data = bytearray((folder / "table.bin").read_bytes())
    data[0] ^= 1
    (folder / "table.bin").write_bytes(bytes(data))
    os.utime(folder / "table.bin", ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime put back: ctime moves
    with pytest.raises(IntegrityError, match=r"table\.bin"):
        store.open("data", key).local_dir()


def test_racy_fresh_file_is_hashed_every_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file changed within the timestamp tick of its check must not be trusted from the marker."""
    store = ArtifactStore(tmp_path / "store")
    key = _publish(store)
    art = store.open("data", key)
    art.local_dir()
    _tamper(store, key, "table.bin")  # right away: maybe the same mtime tick
    with pytest.raises(IntegrityError, match=r"table\.bin"):
        art.local_dir()


def test_unlisted_file_is_refused(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    key = _publish(store)
    (Path(store.root) / "data" / key / "sub" / "c.1").write_bytes(b"added")
    with pytest.raises(IntegrityError, match=r"sub/c\.1 is not listed"):
        store.open("data", key).local_dir()
    with pytest.raises(IntegrityError, match=r"sub/c\.1 is not listed"):
        store.verify("data", key)


def test_changed_cached_copy_of_remote_artifact_is_fetched_again(tmp_path: Path) -> None:
    store = ArtifactStore(f"memory://verify-{tmp_path.name}")
    key = _publish(store)
    cached = store.open("data", key).local_dir()
    (cached / "table.bin").write_bytes(b"\0" * 1024)
    again = store.open("data", key).local_dir()
    assert (again / "table.bin").read_bytes() == bytes(range(256)) * 4
