"""A writer process killed mid-write never leaves a complete-looking artifact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from storage import ArtifactStore, content_key
from tests.storage.conftest import s3_options

# The child writes three files; ``slow_at`` says where it stops to be killed:
# "staging" (after writing files locally) or "upload" (after the first file reached the object store).
CHILD = textwrap.dedent(
    """
    import json, sys, time
    from storage import ArtifactStore, content_key
    url, options, slow_at = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    store = ArtifactStore(url, storage_options=options or None)
    if slow_at == "upload":
        real_put = store.fs.put_file
        def put_then_hang(lpath, rpath, **kw):
            real_put(lpath, rpath, **kw)
            print("READY", flush=True)
            time.sleep(600)
        store.fs.put_file = put_then_hang
    key = content_key("data", {}, {"killed": True}, "v1")
    with store.writer("data", key, params={"killed": True}, code_version="v1") as w:
        for i in range(3):
            (w.dir / f"part{i}.bin").write_bytes(bytes([i]) * 1000)
        if slow_at == "staging":
            print("READY", flush=True)
            time.sleep(600)
    """
)


def _run_and_kill(url: str, options: dict[str, object], slow_at: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, json.dumps(options), slow_at],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "READY", (
            f"writer did not reach its kill point: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL


def _assert_nothing_complete_then_recover(store: ArtifactStore) -> None:
    key = content_key("data", {}, {"killed": True}, "v1")
    assert not store.has("data", key)
    assert store.manifests() == []
    assert store.debris(older_than_s=0), "the killed write should be visible as debris to gc"
    with store.writer("data", key, params={"killed": True}, code_version="v1") as w:
        (w.dir / "part0.bin").write_bytes(b"ok")
    art = store.verify("data", key)
    assert [f.path for f in art.manifest.files] == ["part0.bin"]


@pytest.mark.timeout(120)
def test_killed_while_staging_local(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    _run_and_kill(url, {}, "staging")
    store = ArtifactStore(url)
    _assert_nothing_complete_then_recover(store)


@pytest.mark.timeout(120)
def test_killed_mid_upload_s3(s3_endpoint: str) -> None:
    url = "s3://mnaft/killed-upload"
    options = s3_options(s3_endpoint)
    _run_and_kill(url, options, "upload")
    store = ArtifactStore(url, storage_options=options)
    key = content_key("data", {}, {"killed": True}, "v1")
    assert store.fs.exists(f"{store.root}/data/{key}/part0.bin"), "the kill point should be after one upload"
    _assert_nothing_complete_then_recover(store)
