"""Browser URLs of stored files, and a small read-only HTTP server for a local store.

The Prefect UI shows image and link artifacts by URL, so a picture in the store must be reachable over
http from the user's browser: MinIO serves an S3 store (compose makes the store prefix anonymously
readable), ``mnaft store-server`` serves a local folder. ``MNAFT_STORE_HTTP`` tells the tasks (workers)
the base URL under which the store's root is visible; without it the UI gets inline pictures instead.
"""

from __future__ import annotations

import html
import io
import os
import posixpath
import urllib.parse
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from storage.keys import validate_key, validate_relpath, validate_stage
from storage.manifest import MANIFEST_NAME

HTTP_ENV = "MNAFT_STORE_HTTP"


def http_base() -> str | None:
    """The store root's browser URL from ``MNAFT_STORE_HTTP``, or None when it is not served."""
    base = os.environ.get(HTTP_ENV, "").strip()
    if not base:
        return None
    if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        raise ValueError(f"{HTTP_ENV}={base!r}: expected an http(s) URL such as http://127.0.0.1:4280")
    return base.rstrip("/")


def public_url(stage: str, key: str, rel: str = "", base: str | None = None) -> str | None:
    """Browser URL of ``rel`` in artifact ``stage/key`` (the artifact's folder when ``rel`` is empty)."""
    base = base if base is not None else http_base()
    if base is None:
        return None
    parts = [validate_stage(stage), validate_key(key)] + ([validate_relpath(rel)] if rel else [])
    return f"{base}/" + "/".join(urllib.parse.quote(p) for p in parts) + ("" if rel else "/")


class _ReadOnlyStore(SimpleHTTPRequestHandler):
    """GET/HEAD of published artifacts only: staging folders and half-written artifacts stay hidden."""

    def _published(self) -> bool:
        path = posixpath.normpath(urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)).lstrip("/")
        parts = [p for p in path.split("/") if p]
        if any(p.startswith(".") for p in parts):
            return False
        if len(parts) < 2:
            return True  # the root and stage listings
        return (Path(self.directory) / parts[0] / parts[1] / MANIFEST_NAME).is_file()

    def list_directory(self, path: str | os.PathLike[str]):  # type: ignore[no-untyped-def]
        """A listing without hidden entries (``.staging``, ``.locks``) and, in a stage folder, without
        artifacts that have no manifest yet (writes in progress or debris)."""
        folder = Path(path)
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND, "no permission to list directory")
            return None
        is_stage = folder.parent == Path(self.directory)
        shown = []
        for name in names:
            if name.startswith("."):
                continue
            entry = folder / name
            if is_stage and entry.is_dir() and not (entry / MANIFEST_NAME).is_file():
                continue
            shown.append(name + "/" if entry.is_dir() else name)
        title = html.escape(urllib.parse.unquote(urllib.parse.urlsplit(self.path).path))
        items = "".join(f'<li><a href="{urllib.parse.quote(n)}">{html.escape(n)}</a></li>\n' for n in shown)
        body = (
            f"<!DOCTYPE HTML>\n<html><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body><h1>{title}</h1><ul>\n{items}</ul></body></html>\n"
        ).encode()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)

    def send_head(self):  # type: ignore[no-untyped-def]
        if not self._published():
            self.send_error(HTTPStatus.NOT_FOUND, "no published artifact here")
            return None
        return super().send_head()

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the CLI prints where it serves


def store_server(root: str | Path, host: str = "127.0.0.1", port: int = 4280) -> ThreadingHTTPServer:
    """A server (not yet started: call ``serve_forever``) for the local store folder ``root``."""
    folder = Path(root)
    if not folder.is_dir():
        raise FileNotFoundError(f"store folder {folder} does not exist")
    handler = partial(_ReadOnlyStore, directory=str(folder.resolve()))
    return ThreadingHTTPServer((host, port), handler)
