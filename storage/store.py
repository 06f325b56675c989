"""The artifact store: content-keyed stage outputs under one fsspec URL.

Layout (the same on a local folder, S3/MinIO or memory)::

    <root>/<stage>/<key>/manifest.json      # written last: the commit marker
    <root>/<stage>/<key>/<files...>
    <root>/refs/<name>                       # "stage/key": named roots kept by gc
    <root>/.staging/<uuid>/                  # local stores only: in-progress writes

A stage writes into a local staging folder with ordinary libraries (pyarrow, zarr, safetensors, PIL).
Publishing hashes every file into the manifest and then commits: on a local filesystem the whole
folder is renamed into place (atomic); on object stores, which have no rename, the files are uploaded
and ``manifest.json`` is written last. Either way a writer killed mid-write leaves nothing that looks
complete, and readers trust only a manifest whose files check out.

Reads are verified: before a stage gets a file or folder of an artifact, every file it can reach is
checked against the manifest's sha256 (``verify_read``). So a large artifact is not hashed on every
read, a file that checked out is remembered in a per-machine marker bound to its size, mtime, ctime,
inode and device; any write to the file changes one of them and brings the hash back. One builder at
a time per key: ``writer`` holds the key's build lock (``storage.locks``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

import fsspec
from fsspec.implementations.local import LocalFileSystem

from storage.errors import (
    AmbiguousKeyError,
    ArtifactNotFoundError,
    IntegrityError,
    ManifestError,
    StoreError,
)
from storage.keys import validate_key, validate_ref, validate_relpath, validate_stage
from storage.locks import build_lock, lock_wait_s
from storage.manifest import MANIFEST_NAME, FileEntry, Manifest, library_versions

STAGING = ".staging"
REFS = "refs"
_CHUNK = 1 << 20
_SPOOL_MAX = 64 << 20  # a remote file read through open() is spooled to disk beyond this
# A file modified within this margin of its check could be modified again in the same timestamp tick
# (file times advance in coarse ticks), so its marker is not trusted: it is hashed again next time.
_RACY_NS = 2_000_000_000


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Artifact:
    """A complete artifact: its manifest plus ways to reach its files."""

    store: ArtifactStore
    manifest: Manifest

    @property
    def stage(self) -> str:
        return self.manifest.stage

    @property
    def key(self) -> str:
        return self.manifest.key

    @property
    def path(self) -> str:
        """The artifact folder inside the store's filesystem."""
        return self.store._dir(self.stage, self.key)

    def url(self, rel: str) -> str:
        """Full URL of a file or folder inside the artifact (for zarr, polars, ...)."""
        return self.store.url_of(f"{self.stage}/{self.key}/{validate_relpath(rel)}")

    def open(self, rel: str, verify: bool = True) -> BinaryIO:
        """Open a file of the artifact for reading; it must be listed in the manifest.

        ``verify``: the content is checked against the manifest first (on an object store while it is
        read); only metadata-only inspection (``storage.inspect``) passes False.
        """
        entry = self._entry(rel)
        if not verify:
            return cast(BinaryIO, self.store.fs.open(f"{self.path}/{rel}", "rb"))
        if self.store.is_local:
            self.store.verify_read(self, Path(self.path), [entry])
            return open(Path(self.path) / rel, "rb")  # the caller closes it
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MAX)  # noqa: SIM115
        h = hashlib.sha256()
        with self.store.fs.open(f"{self.path}/{rel}", "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                spool.write(chunk)
        if h.hexdigest() != entry.sha256:
            spool.close()
            raise self.store.tampered(self, rel)
        spool.seek(0)
        return cast(BinaryIO, spool)

    def read_bytes(self, rel: str) -> bytes:
        with self.open(rel) as f:
            return f.read()

    def local_dir(self) -> Path:
        """The artifact as a local folder, every file checked against the manifest: the artifact itself
        on a local store, a verified cached copy otherwise."""
        if self.store.is_local:
            self.store.verify_read(self, Path(self.path), self.manifest.files)
            return Path(self.path)
        cache = self.store.cache_dir / self.stage / self.key
        done = cache / MANIFEST_NAME
        if done.exists():
            try:
                self.store.verify_read(self, cache, self.manifest.files)
                return cache
            except IntegrityError:  # the cached copy changed: it is only a copy, fetch it again
                shutil.rmtree(cache, ignore_errors=True)
        tmp = cache.with_name(f"{self.key}.{uuid.uuid4().hex}.partial")
        try:
            for entry in self.manifest.files:
                dest = tmp / entry.path
                dest.parent.mkdir(parents=True, exist_ok=True)
                self.store.fs.get_file(f"{self.path}/{entry.path}", str(dest))
                if dest.stat().st_size != entry.size or sha256_file(dest) != entry.sha256:
                    raise self.store.tampered(self, entry.path)
            (tmp / MANIFEST_NAME).write_text(self.manifest.to_json())
            cache.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):  # another process may have won the race
                tmp.rename(cache)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cache

    def local_path(self, rel: str) -> Path:
        """Local path of a file or folder (e.g. a Zarr group) listed in the manifest."""
        validate_relpath(rel)
        if not any(f.path == rel or f.path.startswith(rel + "/") for f in self.manifest.files):
            raise StoreError(
                f"{self.store.url}: artifact {self.stage}/{self.key} has no file or folder {rel!r}"
            )
        return self.local_dir() / rel

    def _entry(self, rel: str) -> FileEntry:
        validate_relpath(rel)
        try:
            return self.manifest.file(rel)
        except KeyError:
            raise StoreError(
                f"{self.store.url}: artifact {self.stage}/{self.key} has no file {rel!r}"
            ) from None


@dataclass
class ArtifactWriter:
    """A stage output being built in a local folder; published on ``commit``."""

    store: ArtifactStore
    stage: str
    key: str
    dir: Path
    inputs: dict[str, str]
    params: Any
    code_version: str
    metrics: dict[str, Any] = field(default_factory=dict)

    def commit(self) -> Artifact:
        return self.store._publish(self)


class ArtifactStore:
    """Content-keyed artifacts under ``url`` (a folder path or any fsspec URL)."""

    def __init__(self, url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None):
        url = os.fspath(url)
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        self.root = root.rstrip("/") or "/"
        self.is_local = isinstance(self.fs, LocalFileSystem)
        if self.is_local:
            Path(self.root).mkdir(parents=True, exist_ok=True)
        self.cache_dir = Path(os.environ.get("MNAFT_CACHE", Path.home() / ".cache" / "mnaft")) / "artifacts"

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    # -- paths -----------------------------------------------------------------------------------
    def _dir(self, stage: str, key: str) -> str:
        return f"{self.root}/{validate_stage(stage)}/{validate_key(key)}"

    def url_of(self, rel: str) -> str:
        """URL of a store-relative path, usable by libraries that take fsspec URLs."""
        if self.is_local:
            return f"{self.root}/{rel}"
        return self.fs.unstrip_protocol(f"{self.root}/{rel}")

    def resumable_dir(self, stage: str, key: str) -> Path:
        """Where a resumable writer of ``stage/key`` stages its work: inside a local store (so workers
        sharing the folder share it), in the local cache for a remote one."""
        base = Path(self.root) / STAGING if self.is_local else self.cache_dir.parent / "staging"
        return base / f"{validate_stage(stage)}-{validate_key(key)}-resumable"

    # -- writing ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def writer(
        self,
        stage: str,
        key: str,
        *,
        inputs: Mapping[str, str] | None = None,
        params: Any = None,
        code_version: str = "",
        resumable: bool = False,
    ) -> Iterator[ArtifactWriter]:
        """Stage files in a local folder; publish when the block ends without an exception.

        If the artifact already exists complete, publishing is a no-op and the existing one stays.
        ``resumable``: the staging folder is named by (stage, key) and kept when the block fails, so
        the next attempt finds the partial work (a profile's finished shards) and continues from it.
        """
        validate_stage(stage)
        validate_key(key)
        with self.build_lock(stage, key):
            if resumable:
                staging = self.resumable_dir(stage, key)
                staging.mkdir(parents=True, exist_ok=True)
            elif self.is_local:
                base = Path(self.root) / STAGING
                base.mkdir(parents=True, exist_ok=True)
                staging = base / f"{stage}-{key}-{uuid.uuid4().hex[:12]}"
                staging.mkdir()
            else:
                staging = Path(tempfile.mkdtemp(prefix=f"mnaft-{stage}-{key}-"))
            w = ArtifactWriter(self, stage, key, staging, dict(inputs or {}), params, code_version)
            done = False
            try:
                yield w
                w.commit()
                done = True
            finally:
                if done or not resumable or not any(p.is_file() for p in staging.rglob("*")):
                    shutil.rmtree(staging, ignore_errors=True)  # kept only with partial work in it

    @contextlib.contextmanager
    def build_lock(self, stage: str, key: str, wait_s: float | None = None) -> Iterator[None]:
        """Be the only builder of ``stage/key``: another one is waited for (``MNAFT_LOCK_WAIT`` seconds
        at most, default until it is done), then ``BuildLockedError`` names it. Nested use is free."""
        wait = lock_wait_s() if wait_s is None else wait_s
        with build_lock(self.fs, self.root, self.is_local, self.url, validate_stage(stage),
                        validate_key(key), wait):  # fmt: skip
            yield

    def _publish(self, w: ArtifactWriter) -> Artifact:
        if (existing := self.get(w.stage, w.key)) is not None:
            return existing  # same content key, already complete: nothing to do
        if (w.dir / MANIFEST_NAME).exists():
            raise StoreError(
                f"{self.url}: stage {w.stage} wrote a file named {MANIFEST_NAME}, which is reserved"
            )
        entries = []
        for f in sorted(p for p in w.dir.rglob("*") if p.is_file()):
            rel = validate_relpath(f.relative_to(w.dir).as_posix())
            entries.append(FileEntry(path=rel, size=f.stat().st_size, sha256=sha256_file(f)))
        manifest = Manifest(
            stage=w.stage,
            key=w.key,
            inputs=w.inputs,
            params=w.params,
            code_version=w.code_version,
            files=entries,
            versions=library_versions(),
            metrics=w.metrics,
        )
        final = self._dir(w.stage, w.key)
        if self.is_local:
            self._publish_local(w.dir, final, manifest)
        else:
            self._publish_remote(w.dir, final, manifest)
        return Artifact(self, manifest)

    def _publish_local(self, staging: Path, final: str, manifest: Manifest) -> None:
        (staging / MANIFEST_NAME).write_text(manifest.to_json())
        dest = Path(final)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() and not (dest / MANIFEST_NAME).exists():
            # Debris of a foreign partial write: move it aside, never publish next to it.
            shutil.move(str(dest), str(Path(self.root) / STAGING / f"debris-{uuid.uuid4().hex[:12]}"))
        try:
            os.rename(staging, dest)
        except OSError:
            if self.get(manifest.stage, manifest.key) is None:
                raise
            # A concurrent writer published the same key first: theirs stands.

    def _publish_remote(self, staging: Path, final: str, manifest: Manifest) -> None:
        if self.fs.exists(final):
            self.fs.rm(final, recursive=True)  # incomplete debris: no manifest, or get() would have found it
        for entry in manifest.files:
            self.fs.put_file(str(staging / entry.path), f"{final}/{entry.path}")
        self.fs.pipe_file(f"{final}/{MANIFEST_NAME}", manifest.to_json().encode())

    # -- reading ---------------------------------------------------------------------------------
    def _read_manifest(self, stage: str, key: str) -> Manifest | None:
        path = f"{self._dir(stage, key)}/{MANIFEST_NAME}"
        try:
            text = self.fs.cat_file(path)
        except FileNotFoundError:
            return None
        manifest = Manifest.from_json(text, where=f"{self.url}: {stage}/{key}/{MANIFEST_NAME}")
        if manifest.stage != stage or manifest.key != key:
            raise ManifestError(
                f"{self.url}: {stage}/{key}/{MANIFEST_NAME} describes {manifest.stage}/{manifest.key}"
            )
        return manifest

    def get(self, stage: str, key: str) -> Artifact | None:
        """The complete artifact, checked against its manifest (sizes), or None if absent."""
        manifest = self._read_manifest(stage, key)
        if manifest is None:
            return None
        art = Artifact(self, manifest)
        self._check(art, checksums=False)
        return art

    def open(self, stage: str, key: str) -> Artifact:
        art = self.get(stage, key)
        if art is None:
            raise ArtifactNotFoundError(f"{self.url}: no complete artifact {stage}/{key}")
        return art

    def has(self, stage: str, key: str) -> bool:
        return self._read_manifest(stage, key) is not None

    def resolve(self, key_or_prefix: str, stage: str | None = None) -> Artifact:
        """Find an artifact by key or unique key prefix (at least 6 characters), in any stage."""
        if len(key_or_prefix) < 6 or not all(c in "0123456789abcdef" for c in key_or_prefix):
            raise ArtifactNotFoundError(
                f"{self.url}: {key_or_prefix!r} is not a key or key prefix (6+ hex chars)"
            )
        matches = [m for m in self.manifests(stage) if m.key.startswith(key_or_prefix)]
        if not matches:
            raise ArtifactNotFoundError(f"{self.url}: no complete artifact with key {key_or_prefix!r}")
        if len({(m.stage, m.key) for m in matches}) > 1:
            names = ", ".join(f"{m.stage}/{m.key}" for m in matches)
            raise AmbiguousKeyError(f"{self.url}: key prefix {key_or_prefix!r} matches {names}")
        return self.open(matches[0].stage, matches[0].key)

    def manifests(self, stage: str | None = None) -> list[Manifest]:
        """Manifests of complete artifacts, oldest first."""
        pattern = f"{self.root}/{validate_stage(stage) if stage else '*'}/*/{MANIFEST_NAME}"
        out = []
        for path in self.fs.glob(pattern):
            parts = path.rstrip("/").split("/")
            st, key = parts[-3], parts[-2]
            if st.startswith(".") or st == REFS:
                continue
            try:
                m = self._read_manifest(st, key)
            except StoreError:
                continue  # malformed names or manifests are reported by verify/gc, not listings
            if m is not None:
                out.append(m)
        return sorted(out, key=lambda m: (m.created, m.stage, m.key))

    def latest(self, stage: str, **match_params: Any) -> Artifact | None:
        """Newest complete artifact of ``stage`` whose top-level params equal ``match_params``."""
        for m in reversed(self.manifests(stage)):
            params = m.params if isinstance(m.params, dict) else {}
            if all(params.get(k) == v for k, v in match_params.items()):
                return self.open(m.stage, m.key)
        return None

    def verify(self, stage: str, key: str) -> Artifact:
        """Open and check every file's size and sha256 against the manifest (no marker is trusted)."""
        art = self.open(stage, key)
        self._check(art, checksums=True)
        return art

    def tampered(
        self, art: Artifact, rel: str, why: str = "does not match its sha256 in the manifest"
    ) -> IntegrityError:
        """The error for a stored file that is not what was published: names it and how to inspect it."""
        return IntegrityError(
            f"{self.url}: artifact {art.stage}/{art.key}: file {rel} {why} (changed after it was "
            f"published); nothing is built from it. Inspect: mnaft artifacts verify {art.key} "
            f"--store {self.url}"
        )

    def _marker_path(self, art: Artifact, folder: Path) -> Path:
        where = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
        return self.cache_dir.parent / "verified" / f"{art.stage}-{art.key}-{where}.json"

    def verify_read(self, art: Artifact, folder: Path, entries: list[FileEntry]) -> None:
        """Check ``entries`` of ``art`` in the local ``folder`` against their sha256 before a read.

        A file whose size, mtime, ctime, inode and device are those recorded when it last checked out
        is not hashed again. A whole-artifact read also refuses files the manifest does not list (a
        Zarr reader would read a chunk file added later).
        """
        marker = self._marker_path(art, folder)
        try:
            marks: dict[str, Any] = json.loads(marker.read_text())
        except (FileNotFoundError, ValueError):
            marks = {}
        changed = False
        for entry in entries:
            path = folder / entry.path
            try:
                st = path.stat()
            except FileNotFoundError:
                raise self.tampered(art, entry.path, "is missing") from None
            sig = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
            if marks.get(entry.path) == {"sha256": entry.sha256, "stat": sig}:
                continue
            if st.st_size != entry.size:
                raise self.tampered(art, entry.path, f"has {st.st_size} bytes, manifest says {entry.size}")
            started = time.time_ns()
            if sha256_file(path) != entry.sha256:
                raise self.tampered(art, entry.path)
            after = path.stat()
            if [after.st_size, after.st_mtime_ns, after.st_ctime_ns, after.st_ino, after.st_dev] != sig:
                raise self.tampered(art, entry.path, "changed while it was checked")
            if max(st.st_mtime_ns, st.st_ctime_ns) < started - _RACY_NS:
                marks[entry.path] = {"sha256": entry.sha256, "stat": sig}
                changed = True
        if len(entries) == len(art.manifest.files):
            listed = {e.path for e in art.manifest.files} | {MANIFEST_NAME}
            for p in folder.rglob("*"):
                if p.is_file() and (rel := p.relative_to(folder).as_posix()) not in listed:
                    raise self.tampered(art, rel, "is not listed in the manifest")
        if changed:
            marker.parent.mkdir(parents=True, exist_ok=True)
            tmp = marker.with_name(f"{marker.name}.{uuid.uuid4().hex[:8]}.partial")
            tmp.write_text(json.dumps(marks))
            os.replace(tmp, marker)

    def _check(self, art: Artifact, checksums: bool) -> None:
        where = f"{self.url}: artifact {art.stage}/{art.key}"
        base = art.path
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            found = {}
        sizes = {
            p[len(base) + 1 :] if p.startswith(base) else p: info.get("size") for p, info in found.items()
        }
        for entry in art.manifest.files:
            if entry.path not in sizes:
                raise IntegrityError(f"{where}: file {entry.path} is missing")
            if sizes[entry.path] != entry.size:
                raise IntegrityError(
                    f"{where}: file {entry.path} has {sizes[entry.path]} bytes, manifest says {entry.size}"
                )
            if checksums:
                h = hashlib.sha256()
                with self.fs.open(f"{base}/{entry.path}", "rb") as f:
                    while chunk := f.read(_CHUNK):
                        h.update(chunk)
                if h.hexdigest() != entry.sha256:
                    raise IntegrityError(f"{where}: file {entry.path} does not match its sha256 (tampered?)")
        if checksums:
            listed = {e.path for e in art.manifest.files} | {MANIFEST_NAME}
            for rel in sorted(set(sizes) - listed):
                raise IntegrityError(f"{where}: file {rel} is not listed in the manifest")

    # -- refs and deletion -----------------------------------------------------------------------
    def set_ref(self, name: str, stage: str, key: str) -> None:
        """Point a named ref at an artifact; refs are the roots garbage collection keeps."""
        self.open(stage, key)
        self.fs.makedirs(f"{self.root}/{REFS}", exist_ok=True)
        self.fs.pipe_file(f"{self.root}/{REFS}/{validate_ref(name)}", f"{stage}/{key}".encode())

    def refs(self) -> dict[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        try:
            paths = self.fs.ls(f"{self.root}/{REFS}", detail=False)
        except FileNotFoundError:
            return out
        for path in paths:
            name = path.rstrip("/").rsplit("/", 1)[-1]
            stage, _, key = self.fs.cat_file(path).decode().strip().partition("/")
            out[name] = (stage, key)
        return out

    def delete(self, stage: str, key: str) -> None:
        """Remove an artifact: the manifest first, so a half-deleted one is never complete."""
        d = self._dir(stage, key)
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(f"{d}/{MANIFEST_NAME}")
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(d, recursive=True)

    def debris(self, older_than_s: float = 3600.0) -> list[str]:
        """Leftovers of interrupted writes: staging folders and artifact folders with no manifest."""
        out = []
        now = time.time()
        if self.is_local:
            staging = Path(self.root) / STAGING
            if staging.exists():
                for p in staging.iterdir():
                    if now - p.stat().st_mtime >= older_than_s:
                        out.append(str(p))
        for stage_dir in self.fs.ls(self.root, detail=False):
            st = stage_dir.rstrip("/").rsplit("/", 1)[-1]
            if st.startswith(".") or st == REFS or not self.fs.isdir(stage_dir):
                continue
            for d in self.fs.ls(stage_dir, detail=False):
                if (
                    self.fs.isdir(d)
                    and not self.fs.exists(f"{d}/{MANIFEST_NAME}")
                    and now - self._newest_mtime(d) >= older_than_s
                ):
                    out.append(d)
        return out

    def _newest_mtime(self, path: str) -> float:
        """Newest modification time below ``path``; an upload still in progress is young."""
        newest = 0.0
        for info in self.fs.find(path, detail=True).values():
            t = info.get("mtime") or info.get("LastModified") or info.get("created")
            if hasattr(t, "timestamp"):
                t = t.timestamp()
            if isinstance(t, int | float):
                newest = max(newest, float(t))
        return newest

    def remove_path(self, path: str) -> None:
        if not path.startswith(self.root + "/"):
            raise StoreError(f"{self.url}: refusing to remove {path!r} outside the store")
        if self.is_local:
            shutil.rmtree(path, ignore_errors=True)
        else:
            self.fs.rm(path, recursive=True)
