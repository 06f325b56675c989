"""One builder per artifact key: an advisory file lock on a local store, a lease object on others.

A local store (a folder, also an NFS mount) gets ``<root>/.locks/<stage>-<key>.lock`` locked with
``flock``: the kernel drops the lock when its holder dies, so a killed builder's lock is free at once.
An object store has no locks, so the builder writes ``<root>/.locks/<stage>-<key>.json`` with an
exclusive create (``If-None-Match: *`` on S3) and renews it while it builds; a lease that was not
renewed before it expired, or whose holder process on this host is gone, is taken over.

Both files hold the holder (pid, host, since), which a waiting process reports.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from storage.errors import BuildLockedError, StoreError

LOCKS = ".locks"
LOCK_WAIT_ENV = "MNAFT_LOCK_WAIT"  # seconds a second builder waits (unset: until the holder is done)
LEASE_TTL_ENV = "MNAFT_LEASE_TTL"  # seconds an object-store lease lives unless renewed
_POLL_S = 0.5

log = logging.getLogger(__name__)
_held: set[tuple[str, int]] = set()  # (lock path, thread): a build nested in a build of the same key
_held_guard = threading.Lock()


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    since: str
    token: str = ""
    expires: float = 0.0  # leases only: unix time

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since}"

    @classmethod
    def me(cls, ttl: float = 0.0) -> Holder:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return cls(os.getpid(), socket.gethostname(), now, uuid.uuid4().hex, time.time() + ttl if ttl else 0)

    @classmethod
    def parse(cls, raw: bytes | str) -> Holder | None:
        try:
            d = json.loads(raw)
            return cls(int(d["pid"]), str(d["host"]), str(d["since"]), str(d.get("token", "")),
                       float(d.get("expires", 0.0)))  # fmt: skip
        except (ValueError, KeyError, TypeError):
            return None  # a half-written holder file: treated as unknown

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    def dead_here(self) -> bool:
        """The holder ran on this host and its process is gone."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def lock_wait_s() -> float | None:
    raw = os.environ.get(LOCK_WAIT_ENV, "").strip()
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise StoreError(f"{LOCK_WAIT_ENV}={raw!r}: expected a number of seconds") from None


class _FileLock:
    """``flock`` on a lock file; the holder's identity is written into it."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def try_acquire(self) -> Holder | None:
        """None when acquired, else who holds it."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                try:
                    holder = Holder.parse(self.path.read_bytes())
                except FileNotFoundError:
                    continue  # released and removed meanwhile: try again
                return holder or Holder(0, "unknown host", "unknown time")
            try:  # the file may have been removed by its last holder between our open and flock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, Holder.me().to_json())
            os.fsync(fd)
            self.fd = fd
            return None

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # while still locked: a waiter that opened it notices the new inode
        os.close(self.fd)
        self.fd = None


class _Lease:
    """A lease object on an fsspec filesystem, created exclusively and renewed by a thread."""

    def __init__(self, fs: Any, path: str, ttl: float):
        self.fs, self.path, self.ttl = fs, path, ttl
        self.me: Holder | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _create(self, holder: Holder) -> bool:
        try:
            self.fs.pipe_file(self.path, holder.to_json(), mode="create")
        except FileExistsError:
            return False
        return True

    def _read(self) -> Holder | None:
        try:
            return Holder.parse(self.fs.cat_file(self.path))
        except FileNotFoundError:
            return None

    def try_acquire(self) -> Holder | None:
        me = Holder.me(self.ttl)
        if self._create(me):
            self._start(me)
            return None
        holder = self._read()
        if holder is None:
            if not self.fs.exists(self.path):
                return self.try_acquire()  # released between our create and read
            holder = Holder(0, "unknown host", "unknown time")  # unreadable: as good as stale
        if holder.expires < time.time() or holder.dead_here():
            log.warning("taking over the stale build lease %s of %s", self.path, holder)
            # Remove only the lease judged stale; a fresh one written meanwhile stays.
            if self._read() in (holder, None) and self.fs.exists(self.path):
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(self.path)
            if self._create(me):
                self._start(me)
                return None
            return self._read() or holder
        return holder

    def _start(self, me: Holder) -> None:
        self.me = me
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew, name=f"lease {self.path}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            assert self.me is not None
            current = self._read()
            if current is None or current.token != self.me.token:
                log.warning("build lease %s was taken over by %s", self.path, current)
                return
            self.me = Holder(self.me.pid, self.me.host, self.me.since, self.me.token, time.time() + self.ttl)
            self.fs.pipe_file(self.path, self.me.to_json())

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        current = self._read()
        if self.me is not None and current is not None and current.token == self.me.token:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self.path)
        self.me = None


@contextlib.contextmanager
def build_lock(
    fs: Any, root: str, is_local: bool, url: str, stage: str, key: str, wait_s: float | None = None
) -> Iterator[None]:
    """Hold the build lock of ``stage/key``; wait for another holder up to ``wait_s`` (None: forever).

    Raises ``BuildLockedError`` naming the holder when the wait runs out.
    """
    name = f"{stage}-{key}"
    if is_local:
        lock: _FileLock | _Lease = _FileLock(Path(root) / LOCKS / f"{name}.lock")
        ident = str(Path(root) / LOCKS / name)
    else:
        ttl = float(os.environ.get(LEASE_TTL_ENV, "60"))
        lock = _Lease(fs, f"{root}/{LOCKS}/{name}.json", ttl)
        ident = f"{url}/{LOCKS}/{name}"
    mine = (ident, threading.get_ident())
    with _held_guard:
        nested = mine in _held
    if nested:
        yield
        return
    start = time.monotonic()
    told = False
    while (holder := lock.try_acquire()) is not None:
        waited = time.monotonic() - start
        if wait_s is not None and waited >= wait_s:
            raise BuildLockedError(
                f"{url}: {stage}/{key} is being built by {holder}; not waiting "
                f"(waited {waited:.0f} s; {LOCK_WAIT_ENV}={wait_s:g}). Rerun when it is done: the "
                "result is then reused"
            )
        if not told:
            log.warning("%s: %s/%s is being built by %s; waiting for it", url, stage, key, holder)
            told = True
        time.sleep(_POLL_S)
    with _held_guard:
        _held.add(mine)
    try:
        yield
    finally:
        with _held_guard:
            _held.discard(mine)
        lock.release()
