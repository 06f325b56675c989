"""Conformance suite: every backend (local folder, memory, S3 via moto) behaves the same."""

from __future__ import annotations

import json

import pytest

from storage import (
    MANIFEST_NAME,
    AmbiguousKeyError,
    ArtifactNotFoundError,
    ArtifactStore,
    IntegrityError,
    InvalidNameError,
    StoreError,
    content_key,
    plan_gc,
    run_gc,
)
from storage.inspect import summarize


def _write(
    store: ArtifactStore,
    stage: str = "data",
    params: object = None,
    inputs: dict[str, str] | None = None,
    files: dict[str, bytes] | None = None,
) -> str:
    params = {"n": 1} if params is None else params
    key = content_key(stage, inputs or {}, params, "v1")
    with store.writer(stage, key, inputs=inputs, params=params, code_version="v1") as w:
        for rel, data in (files or {"table.txt": b"hello", "sub/part.bin": b"\x00\x01\x02"}).items():
            (w.dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (w.dir / rel).write_bytes(data)
        w.metrics["rows"] = 2
    return key


def test_round_trip(store: ArtifactStore) -> None:
    key = _write(store)
    art = store.open("data", key)
    assert art.manifest.status == "complete"
    assert art.manifest.metrics == {"rows": 2}
    assert art.manifest.params == {"n": 1}
    assert [f.path for f in art.manifest.files] == ["sub/part.bin", "table.txt"]
    assert art.read_bytes("table.txt") == b"hello"
    assert (art.local_dir() / "sub" / "part.bin").read_bytes() == b"\x00\x01\x02"
    assert art.local_path("sub").is_dir()
    assert store.verify("data", key).key == key
    assert "torch" in art.manifest.versions and "python" in art.manifest.versions


def test_key_is_content_hash() -> None:
    a = content_key("data", {}, {"n": 1, "m": [1, 2]}, "v1")
    assert a == content_key("data", {}, {"m": [1, 2], "n": 1}, "v1")  # key order is irrelevant
    assert a != content_key("data", {}, {"n": 2, "m": [1, 2]}, "v1")
    assert a != content_key("data", {}, {"n": 1, "m": [1, 2]}, "v2")
    assert a != content_key("data", {"up": "0123456789abcdef0123"}, {"n": 1, "m": [1, 2]}, "v1")
    assert a != content_key("profile", {}, {"n": 1, "m": [1, 2]}, "v1")


def test_existing_complete_key_is_a_noop(store: ArtifactStore) -> None:
    key = _write(store, files={"a.txt": b"first"})
    before = store.open("data", key).manifest
    key2 = _write(store, files={"a.txt": b"second, different"})
    assert key2 == key
    after = store.open("data", key)
    assert after.manifest == before
    assert after.read_bytes("a.txt") == b"first"


def test_exception_in_writer_publishes_nothing(store: ArtifactStore) -> None:
    key = content_key("data", {}, {"n": 9}, "v1")
    with pytest.raises(RuntimeError, match="boom"), store.writer("data", key) as w:
        (w.dir / "x").write_text("partial")
        raise RuntimeError("boom")
    assert not store.has("data", key)
    assert store.manifests() == []


def test_missing_and_resized_files_are_named(store: ArtifactStore) -> None:
    key = _write(store)
    path = store.open("data", key).path
    store.fs.pipe_file(f"{path}/table.txt", b"hellO!")  # different size
    with pytest.raises(IntegrityError, match=r"data/.*table\.txt has 6 bytes, manifest says 5"):
        store.open("data", key)
    store.fs.rm_file(f"{path}/table.txt")
    with pytest.raises(IntegrityError, match=r"file table\.txt is missing"):
        store.open("data", key)


def test_tampered_file_fails_verify(store: ArtifactStore) -> None:
    key = _write(store)
    path = store.open("data", key).path
    store.fs.pipe_file(f"{path}/table.txt", b"HELLO")  # same size, other bytes
    store.open("data", key)  # sizes still agree: a cheap open passes
    with pytest.raises(IntegrityError, match=r"table\.txt does not match its sha256"):
        store.verify("data", key)


def test_corrupt_manifest_is_named(store: ArtifactStore) -> None:
    key = _write(store)
    store.fs.pipe_file(f"{store.open('data', key).path}/{MANIFEST_NAME}", b"{not json")
    with pytest.raises(StoreError, match=rf"data/{key}/manifest.json: invalid manifest"):
        store.open("data", key)


@pytest.mark.parametrize("stage", ["", "Data", "../data", "refs", "a/b", "1data", ".staging"])
def test_bad_stage_names(store: ArtifactStore, stage: str) -> None:
    with pytest.raises(InvalidNameError, match="invalid stage name"):
        store.open(stage, "0123456789abcdef0123")


@pytest.mark.parametrize("key", ["", "../../etc", "XYZ", "0123", "0123456789ABCDEF", "abc/def0123"])
def test_bad_keys(store: ArtifactStore, key: str) -> None:
    with pytest.raises(InvalidNameError, match="invalid key"):
        store.open("data", key)
    with pytest.raises(InvalidNameError):
        content_key("data", {"up": key}, {}, "v")


@pytest.mark.parametrize("rel", ["../escape", "/abs", "a//b", "a/./b", "a\\b", "C:/x", "~/x", ""])
def test_bad_relative_paths(store: ArtifactStore, rel: str) -> None:
    key = _write(store)
    with pytest.raises(InvalidNameError, match="invalid artifact file path"):
        store.open("data", key).open(rel)


def test_manifest_with_escaping_path_is_rejected(store: ArtifactStore) -> None:
    key = _write(store)
    path = store.open("data", key).path
    m = json.loads(store.fs.cat_file(f"{path}/{MANIFEST_NAME}"))
    m["files"][0]["path"] = "../../outside"
    store.fs.pipe_file(f"{path}/{MANIFEST_NAME}", json.dumps(m).encode())
    with pytest.raises(StoreError, match="invalid manifest"):
        store.open("data", key)


def test_resolve_by_prefix_and_listing(store: ArtifactStore) -> None:
    k1 = _write(store, params={"n": 1})
    k2 = _write(store, stage="select", params={"n": 2}, inputs={"data": k1})
    assert [m.key for m in store.manifests()] == [k1, k2]
    assert [m.key for m in store.manifests("select")] == [k2]
    assert store.resolve(k2[:8]).stage == "select"
    with pytest.raises(ArtifactNotFoundError, match="no complete artifact"):
        store.resolve("ffffffffff")
    with pytest.raises(ArtifactNotFoundError, match="not a key"):
        store.resolve("abc")
    latest = store.latest("data", n=1)
    assert latest is not None and latest.key == k1
    assert store.latest("data", n=5) is None


def test_ambiguous_prefix(store: ArtifactStore) -> None:
    keys = [_write(store, params={"n": i}) for i in range(40)]
    by_first = {}
    for k in keys:
        by_first.setdefault(k[:6], []).append(k)
    # with 40 keys a 6-char collision is unlikely; construct ambiguity on the shortest shared prefix instead
    a, b = sorted(keys)[:2]
    common = 0
    while a[common] == b[common]:
        common += 1
    if common >= 6:
        with pytest.raises(AmbiguousKeyError):
            store.resolve(a[:common])
    assert store.resolve(a).key == a


def test_gc_keeps_lineage_of_kept(store: ArtifactStore) -> None:
    data_old = _write(store, params={"n": 1})
    data = _write(store, params={"n": 2})
    sel_old = _write(store, stage="select", params={"s": 1}, inputs={"data": data_old})
    sel = _write(store, stage="select", params={"s": 2}, inputs={"data": data_old})
    plan = plan_gc(store, keep_latest=1)
    # newest select keeps its input data_old alive although a newer data artifact exists
    assert {m.key for m in plan.keep} == {data, sel, data_old}
    assert {m.key for m in plan.delete} == {sel_old}
    store.set_ref("paper-run", "select", sel_old)
    plan = plan_gc(store, keep_latest=1)
    assert plan.delete == []
    plan = plan_gc(store, keep_latest=0)
    assert {m.key for m in plan.keep} == {sel_old, data_old}
    run_gc(store, plan)
    assert {m.key for m in store.manifests()} == {sel_old, data_old}
    assert store.verify("data", data_old)


def test_incomplete_folder_is_invisible_and_gc_debris(store: ArtifactStore) -> None:
    key = content_key("data", {}, {"x": 1}, "v1")
    store.fs.makedirs(f"{store.root}/data/{key}", exist_ok=True)
    store.fs.pipe_file(f"{store.root}/data/{key}/half.bin", b"12345")  # a writer died before its manifest
    assert not store.has("data", key)
    assert store.manifests() == []
    assert store.debris(older_than_s=3600) == []  # too young: it may still be uploading
    debris = store.debris(older_than_s=0)
    assert [d.rstrip("/").rsplit("/", 1)[-1] for d in debris] == [key]
    # a new write of the same key replaces the debris cleanly
    _write(store, params={"x": 1}, files={"whole.bin": b"ok"})
    art = store.open("data", key)
    assert [f.path for f in art.manifest.files] == ["whole.bin"]
    assert not store.fs.exists(f"{art.path}/half.bin")


def test_summary_reads_parquet_safetensors_zarr(store: ArtifactStore) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zarr
    from safetensors.numpy import save_file

    key = content_key("data", {}, {"z": 1}, "v")
    with store.writer("data", key, params={"z": 1}) as w:
        pq.write_table(pa.table({"a": [1, 2, 3]}), w.dir / "t.parquet")
        save_file({"w": np.zeros((2, 3), np.float32)}, str(w.dir / "m.safetensors"), metadata={"method": "x"})
        zarr.create_array(
            str(w.dir / "acts.zarr"), shape=(4, 5), dtype="float32", dimension_names=["layer", "neuron"]
        )
    rows = {r["path"]: r for r in summarize(store.open("data", key))}
    assert rows["t.parquet"]["rows"] == 3
    assert rows["m.safetensors"]["elements"] == 6 and rows["m.safetensors"]["metadata_keys"] == ["method"]
    assert rows["acts.zarr"]["shape"] == [4, 5] and rows["acts.zarr"]["dims"] == ["layer", "neuron"]


def test_failed_resumable_build_keeps_partial_work_but_no_empty_folder(store: ArtifactStore) -> None:
    key = content_key("profile", {}, {"store": store.url}, "v1")  # remote stores share the cache
    with pytest.raises(RuntimeError, match="model missing"), store.writer("profile", key, resumable=True):
        raise RuntimeError("model missing")  # failed before writing anything
    assert not store.resumable_dir("profile", key).exists()
    with pytest.raises(RuntimeError, match="killed"), store.writer("profile", key, resumable=True) as w:
        (w.dir / "shard0").write_text("done")
        raise RuntimeError("killed")
    assert (store.resumable_dir("profile", key) / "shard0").read_text() == "done"  # kept to resume
