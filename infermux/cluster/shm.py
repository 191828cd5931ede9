"""Shared-memory regions for the data plane: a writer's arena, a reader's mappings, a probe.

A tensor too big to copy through a socket cheaply is written once into a region of a
``/dev/shm`` file of the sender (:class:`ShmArena`); the message names the file and the offset,
and the receiver maps the file (:class:`ShmReader`) and reads the tensor in place.  Both ends
must share ``/dev/shm`` -- the same host, the same container: :func:`write_probe` leaves a file
that :func:`probe_matches` reads back on the other side before any region is used.

Files are named ``infermux-<pid>-...``: unlinked on close and at exit, and those of a process
that was killed are removed by :func:`sweep_stale_segments` (run by the next arena).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import mmap
import os
import secrets
import threading
import weakref

import numpy as np

__all__ = ["SHM_DIR", "ShmArena", "ShmError", "ShmReader", "probe_matches", "segment_prefix",
           "shm_available", "sweep_stale_segments", "write_probe"]

log = logging.getLogger(__name__)

SHM_DIR = "/dev/shm"
_ALIGN = 64
_PREFIX = "infermux-"


class ShmError(ConnectionError):
    """A peer named a shared-memory segment that cannot be (or must not be) mapped."""


def segment_prefix(pid: int) -> str:
    """The start of the names of every file process ``pid`` writes."""
    return f"{_PREFIX}{pid}-"


def shm_available() -> bool:
    """True where ``/dev/shm`` is a writable directory (Linux)."""
    return os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: a liveness probe, nothing is sent
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_swept = False


def sweep_stale_segments() -> int:
    """Remove our ``/dev/shm`` files left by processes that died without cleaning up (SIGKILL)."""
    global _swept
    _swept = True
    removed = 0
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return 0
    for name in names:
        parts = name.split("-")
        if not name.startswith(_PREFIX) or len(parts) < 3 or not parts[1].isdigit():
            continue
        path = os.path.join(SHM_DIR, name)
        try:
            if os.stat(path).st_uid == os.getuid() and not _pid_alive(int(parts[1])):
                os.unlink(path)
                removed += 1
        except OSError:
            continue
    return removed


class _Segment:
    __slots__ = ("free", "map", "name", "size", "used")

    def __init__(self, name: str, size: int):
        path = os.path.join(SHM_DIR, name)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, size)
            self.map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.name, self.size = name, size
        self.free: list[tuple[int, int]] = [(0, size)]  # (offset, size), sorted by offset
        self.used: dict[int, int] = {}

    def alloc(self, nbytes: int) -> int | None:
        need = -(-max(nbytes, 1) // _ALIGN) * _ALIGN
        for i, (offset, size) in enumerate(self.free):
            if size >= need:
                if size == need:
                    del self.free[i]
                else:
                    self.free[i] = (offset + need, size - need)
                self.used[offset] = need
                return offset
        return None

    def release(self, offset: int) -> None:
        size = self.used.pop(offset, None)
        if size is None:
            return
        free = self.free
        free.append((offset, size))
        free.sort()
        merged = [free[0]]
        for off, sz in free[1:]:
            last_off, last_sz = merged[-1]
            if last_off + last_sz == off:
                merged[-1] = (last_off, last_sz + sz)
            else:
                merged.append((off, sz))
        self.free[:] = merged

    def close(self) -> None:
        try:
            os.unlink(os.path.join(SHM_DIR, self.name))
        except OSError:
            pass
        try:
            self.map.close()
        except BufferError:  # a view is still alive; the mapping goes with the process
            pass


class ShmArena:
    """Regions of ``/dev/shm`` segments that this process writes and a peer on this host reads.

    ``alloc(nbytes)`` gives ``(segment name, offset, writable view)`` or None when the arena is
    full (the caller then sends inline); ``free(name, offset)`` returns a region.  Segments are
    files named ``infermux-<pid>-<token>-<n>``: unlinked on :meth:`close` and at exit, and swept
    by the next process when this one was killed.
    """

    def __init__(self, segment_bytes: int = 64 << 20, max_bytes: int = 512 << 20):
        if not _swept:
            sweep_stale_segments()
        self._segment_bytes = segment_bytes
        self._max_bytes = max_bytes
        self._tag = f"{_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self._segments: dict[str, _Segment] = {}
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._closed = False
        weakref.finalize(self, _close_segments, self._segments)
        _live_arenas.add(self)

    @property
    def tag(self) -> str:
        """The prefix of this arena's segment names."""
        return self._tag

    def alloc(self, nbytes: int) -> tuple[str, int, memoryview] | None:
        """A region of at least ``nbytes``, or None when there is no room left."""
        with self._lock:
            if self._closed:
                return None
            for segment in self._segments.values():
                offset = segment.alloc(nbytes)
                if offset is not None:
                    return segment.name, offset, memoryview(segment.map)[offset:offset + nbytes]
            size = max(self._segment_bytes, -(-nbytes // (1 << 20)) << 20)
            if sum(s.size for s in self._segments.values()) + size > self._max_bytes:
                return None
            try:
                segment = _Segment(f"{self._tag}-{next(self._counter)}", size)
            except OSError as exc:
                log.debug("no shared-memory segment of %d bytes: %s", size, exc)
                return None
            self._segments[segment.name] = segment
            offset = segment.alloc(nbytes)
            return segment.name, offset, memoryview(segment.map)[offset:offset + nbytes]

    def free(self, name: str, offset: int) -> None:
        """Give a region back (unknown regions are ignored: the peer may repeat itself)."""
        with self._lock:
            segment = self._segments.get(name)
            if segment is not None:
                segment.release(int(offset))

    def in_use(self) -> int:
        """Bytes currently allocated (for tests and stats)."""
        with self._lock:
            return sum(sum(s.used.values()) for s in self._segments.values())

    def close(self) -> None:
        """Unlink every segment (readers keep what they mapped until they drop it)."""
        with self._lock:
            self._closed = True
            _close_segments(self._segments)


def _close_segments(segments: dict[str, _Segment]) -> None:
    for segment in list(segments.values()):
        segment.close()
    segments.clear()


_live_arenas: weakref.WeakSet[ShmArena] = weakref.WeakSet()


@atexit.register
def _close_all_arenas() -> None:
    for arena in list(_live_arenas):
        arena.close()


class ShmReader:
    """Maps the segments peers name in their messages (cached by name)."""

    def __init__(self) -> None:
        self._maps: dict[str, mmap.mmap] = {}
        self._lock = threading.Lock()

    def view(self, name: str, offset: int, dtype: np.dtype, count: int) -> np.ndarray:
        """``count`` items of ``dtype`` at ``offset`` of segment ``name`` (no copy)."""
        if "/" in name or not name.startswith(_PREFIX):
            raise ShmError(f"refusing shared-memory segment name {name!r}")
        with self._lock:
            seg = self._maps.get(name)
            if seg is None:
                self._drop_unlinked()
                fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR)
                try:
                    seg = mmap.mmap(fd, 0)
                finally:
                    os.close(fd)
                self._maps[name] = seg
        return np.frombuffer(seg, dtype, count, offset)

    def _drop_unlinked(self) -> None:
        """Under the lock: forget segments their writers unlinked (so their memory can go)."""
        for name in [n for n in self._maps if not os.path.exists(os.path.join(SHM_DIR, n))]:
            self._maps.pop(name)

    def forget(self, tag: str) -> None:
        """Drop the mappings of the segments whose names start with ``tag`` (a peer that left)."""
        with self._lock:
            for name in [n for n in self._maps if n.startswith(tag)]:
                self._maps.pop(name)  # unmapped when the last array viewing it goes


# -- probe: does the peer share our /dev/shm? -------------------------------------------------

def write_probe() -> dict[str, str] | None:
    """A file in ``/dev/shm`` proving to a reader that it shares this host's memory."""
    if not shm_available():
        return None
    token = secrets.token_hex(8)
    name = f"{_PREFIX}{os.getpid()}-probe-{token}"
    path = os.path.join(SHM_DIR, name)
    try:
        with open(path, "w") as f:
            f.write(token)
    except OSError:
        return None
    atexit.register(_unlink_quietly, path)
    return {"name": name, "token": token}


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def probe_matches(probe: dict[str, str] | None) -> bool:
    """True when the probe a server wrote is readable here (same host, same ``/dev/shm``)."""
    if not probe or os.environ.get("INFERMUX_CLUSTER_SHM", "1") == "0":
        return False
    try:
        with open(os.path.join(SHM_DIR, probe["name"])) as f:
            return f.read() == probe["token"]
    except (OSError, KeyError):
        return False
