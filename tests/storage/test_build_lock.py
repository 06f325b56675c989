"""One builder per key, across real processes: wait and reuse, name the holder, take over stale locks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from storage import ArtifactStore, BuildLockedError, content_key
from tests.storage.conftest import s3_options

KEY = content_key("data", {}, {"locked": True}, "v1")
# The child takes the build lock of KEY, says READY, then holds it for ``hold`` seconds (and, with
# ``publish``, publishes the artifact before letting go).
CHILD = textwrap.dedent(
    """
    import json, sys, time
    from storage import ArtifactStore
    url, options, key = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    hold, publish = float(sys.argv[4]), sys.argv[5] == "1"
    store = ArtifactStore(url, storage_options=options or None)
    with store.build_lock("data", key):
        print("READY", flush=True)
        time.sleep(hold)
        if publish:
            with store.writer("data", key, params={"locked": True}, code_version="v1") as w:
                (w.dir / "by-child.txt").write_text("child")
    """
)


def _holder(
    url: str, options: dict[str, object], hold: float, publish: bool = False
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "MNAFT_LEASE_TTL": "3"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, json.dumps(options), KEY, str(hold), "1" if publish else "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "READY", f"{line!r} {proc.stderr.read() if proc.stderr else ''}"
    return proc


def _stores(tmp_path: Path, request: pytest.FixtureRequest, kind: str) -> tuple[str, dict[str, object]]:
    if kind == "local":
        return str(tmp_path / "store"), {}
    endpoint = request.getfixturevalue("s3_endpoint")
    return f"s3://mnaft/lock-{tmp_path.name}", s3_options(endpoint)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["local", "s3"])
def test_second_builder_names_the_holder_or_waits_and_reuses(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNAFT_LEASE_TTL", "3")
    url, options = _stores(tmp_path, request, kind)
    store = ArtifactStore(url, storage_options=options or None)
    child = _holder(url, options, hold=4, publish=True)
    try:
        with pytest.raises(BuildLockedError) as err, store.build_lock("data", KEY, wait_s=0):
            pass
        msg = str(err.value)
        assert f"pid {child.pid} on {socket.gethostname()} since " in msg and f"data/{KEY}" in msg
        # Waiting: the holder renews its lease past the TTL, publishes, lets go; the waiter then finds
        # the artifact and builds nothing.
        built = []
        with store.build_lock("data", KEY):
            if not store.has("data", KEY):
                built.append(True)
        assert built == []
        assert store.open("data", KEY).read_bytes("by-child.txt") == b"child"
    finally:
        child.kill()
        child.wait(timeout=30)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["local", "s3"])
def test_lock_of_a_killed_holder_is_taken_over(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    url, options = _stores(tmp_path, request, kind)
    store = ArtifactStore(url, storage_options=options or None)
    child = _holder(url, options, hold=600)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    t0 = time.monotonic()
    with store.build_lock("data", KEY, wait_s=10), store.writer("data", KEY, params={"locked": True}) as w:
        (w.dir / "x").write_text("mine")
    assert time.monotonic() - t0 < 10, "a dead holder's lock should not be waited for"
    assert store.open("data", KEY).read_bytes("x") == b"mine"
    if kind == "local":
        assert not list((Path(url) / ".locks").iterdir()), "released locks leave no file"
