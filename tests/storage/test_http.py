"""Browser URLs of stored files and the read-only store server."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import ArtifactStore, InvalidNameError
from storage.http import HTTP_ENV, http_base, public_url, store_server


def test_public_url_joins_quotes_and_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HTTP_ENV, raising=False)
    assert http_base() is None and public_url("select", "abcdef0123", "x.png") is None
    monkeypatch.setenv(HTTP_ENV, "http://localhost:9000/mnaft/store/")
    assert public_url("select", "abcdef0123", "plots/a b.png") == (
        "http://localhost:9000/mnaft/store/select/abcdef0123/plots/a%20b.png"
    )
    assert public_url("select", "abcdef0123") == "http://localhost:9000/mnaft/store/select/abcdef0123/"
    with pytest.raises(InvalidNameError):
        public_url("select", "abcdef0123", "../../etc/passwd")
    monkeypatch.setenv(HTTP_ENV, "s3://mnaft/store")
    with pytest.raises(ValueError, match="MNAFT_STORE_HTTP='s3://mnaft/store': expected an http"):
        http_base()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, ArtifactStore]]:
    st = ArtifactStore(tmp_path / "store")
    with st.writer("select", "0123456789ab") as w:
        (w.dir / "heat.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "store" / "select" / "abcdef9999").mkdir()  # debris without a manifest
    (tmp_path / "store" / "select" / "abcdef9999" / "x.png").write_bytes(b"partial")
    srv = store_server(tmp_path / "store", port=0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", st
    finally:
        srv.shutdown()
        srv.server_close()


def _status(url: str, method: str = "GET") -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, b""


def test_store_server_serves_published_files_only(served: tuple[str, ArtifactStore]) -> None:
    base, st = served
    url = public_url("select", "0123456789ab", "heat.png", base)
    assert url is not None
    assert _status(url) == (200, b"\x89PNG fake")
    assert _status(f"{base}/select/abcdef9999/x.png")[0] == 404  # no manifest: not published
    assert _status(f"{base}/.staging/")[0] == 404
    (Path(st.root) / ".staging" / "profile-0123-resumable").mkdir(parents=True)
    root = _status(f"{base}/")[1].decode()  # listings show published artifacts only
    assert "select/" in root and ".staging" not in root
    stage = _status(f"{base}/select/")[1].decode()
    assert "0123456789ab/" in stage and "abcdef9999" not in stage
    assert _status(f"{base}/select/k1/%2e%2e/%2e%2e/")[0] in (200, 404)  # normalised, never outside
    assert _status(url, "PUT")[0] == 501 and _status(url, "DELETE")[0] == 501  # read-only


def test_store_server_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        store_server(tmp_path / "nope", port=0)
