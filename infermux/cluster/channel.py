"""The data plane: tensors between a client and a device actor as ZeroMQ multipart messages.

Ray carries the control plane (placing actors, compiling, properties, restarts); the tensors of
every inference travel here, because a Ray actor call costs about 1 ms at 4 KiB where a ZeroMQ
hop costs tens of microseconds (``docs/cluster.md`` has the measured table).

Wire format -- no pickle anywhere::

    frame 0      JSON header  {"op": "infer", "id": 7, "model": 3, "tensors": [meta, ...], ...}
    frame 1..n   raw buffers of the tensors sent inline (zero-copy from the NumPy buffer)

Each tensor's ``meta`` is ``{"dtype": "<f4", "shape": [1, 16], "frame": 1}`` for an inline
buffer, ``{"dtype": ..., "shape": ..., "shm": ["infermux-...", offset]}`` for one placed in a
shared-memory segment of the sender (large tensors, when both ends share ``/dev/shm``), or
``{"dtype": "object", "shape": ..., "items": [...]}`` for string tensors.

Transports, chosen per peer: ``ipc://`` (an abstract Unix socket) plus shared-memory regions when
the peer is on this host -- proven by reading a probe file the server wrote into ``/dev/shm`` --
and ``tcp://<node ip>:<port>`` otherwise (Ray's node address: 127.0.0.1 when Ray is loopback-only).

* :class:`ChannelServer` (in the device actor): server threads, each with a ROUTER socket of
  its own, running one request at a time through a handler in the thread that received it.
* :class:`ChannelClient` (in the driver): ``request(header, arrays)`` runs in the calling thread
  on a socket of its own (no thread hand-off), polling in short slices so that a lost peer is
  noticed (``alive()``) instead of waiting forever.
* :class:`ShmArena` / :class:`ShmReader`: regions of ``/dev/shm`` files a writer fills and a
  reader maps; the reader tells the writer when a region may be reused.
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import mmap
import os
import secrets
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["ChannelClient", "ChannelLost", "ChannelServer", "ShmArena", "ShmReader",
           "decode_tensors", "encode_tensors", "SHM_DIR", "SHM_MIN_BYTES"]

log = logging.getLogger(__name__)

SHM_DIR = "/dev/shm"
SHM_MIN_BYTES = 256 << 10  # below this, a tensor goes inline (measured: docs/cluster.md)
ZERO_COPY_MIN_BYTES = 64 << 10  # smaller inline buffers are cheaper to copy than to track
_ALIGN = 64
_POLL_S = 0.05
_PREFIX = "infermux-"


class ChannelLost(ConnectionError):
    """The peer of a channel went away (or the channel was closed) before it answered."""


# -- tensors <-> frames ----------------------------------------------------------------------

def _dtype_name(dtype: np.dtype) -> str:
    return dtype.str if np.dtype(dtype.str) == dtype else dtype.name


def encode_tensors(arrays: Sequence[Any], arena: ShmArena | None = None,
                   min_shm_bytes: int = SHM_MIN_BYTES) -> tuple[list[dict], list[Any], list]:
    """``(metas, frames, regions)`` for ``arrays``; ``regions`` are the arena regions used.

    Tensors of ``min_shm_bytes`` or more go into ``arena`` when one is given and has room; the
    others travel as frames (NumPy buffers, sent without a copy from 64 KiB up)."""
    metas: list[dict] = []
    frames: list[Any] = []
    regions: list = []
    for value in arrays:
        arr = np.asarray(value)
        if arr.dtype.kind == "O":
            metas.append({"dtype": "object", "shape": list(arr.shape),
                          "items": [_plain_item(v) for v in arr.reshape(-1).tolist()]})
            continue
        if not arr.flags.c_contiguous:
            arr = arr.copy(order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)
        meta: dict[str, Any] = {"dtype": _dtype_name(arr.dtype), "shape": list(arr.shape)}
        region = arena.alloc(arr.nbytes) if arena is not None and arr.nbytes >= min_shm_bytes else None
        if region is not None:
            name, offset, view = region
            np.frombuffer(view, np.uint8, arr.nbytes)[:] = arr.reshape(-1).view(np.uint8)
            meta["shm"] = [name, offset]
            regions.append((name, offset))
        else:
            meta["frame"] = len(frames) + 1
            frames.append(arr if arr.nbytes >= ZERO_COPY_MIN_BYTES else arr.tobytes())
        metas.append(meta)
    return metas, frames, regions


def _plain_item(value: Any) -> Any:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def decode_tensors(metas: Sequence[dict], frames: Sequence[Any], reader: ShmReader | None = None,
                   *, copy_shm: bool = False) -> list[np.ndarray]:
    """The arrays ``metas`` describe: views of ``frames`` (read-only) or of mapped shared memory
    (copied out when ``copy_shm``, so the region can be freed at once)."""
    arrays = []
    for meta in metas:
        shape = tuple(meta["shape"])
        if meta["dtype"] == "object":
            arrays.append(np.array(meta["items"], dtype=object).reshape(shape))
            continue
        dtype = np.dtype(meta["dtype"])
        count = int(np.prod(shape, dtype=np.int64))
        if "shm" in meta:
            if reader is None:
                raise ChannelLost("a tensor arrived in shared memory on a channel that has none")
            name, offset = meta["shm"]
            arr = reader.view(name, int(offset), dtype, count).reshape(shape)
            arrays.append(arr.copy() if copy_shm else arr)
        else:
            frame = frames[int(meta["frame"])]
            buffer = frame.buffer if hasattr(frame, "buffer") else frame
            arrays.append(np.frombuffer(buffer, dtype, count).reshape(shape))
    return arrays


# -- shared memory ---------------------------------------------------------------------------

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
            raise ChannelLost(f"refusing shared-memory segment name {name!r}")
        with self._lock:
            seg = self._maps.get(name)
            if seg is None:
                fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR)
                try:
                    seg = mmap.mmap(fd, 0)
                finally:
                    os.close(fd)
                self._maps[name] = seg
        return np.frombuffer(seg, dtype, count, offset)

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


# -- server ----------------------------------------------------------------------------------

Handler = Callable[[dict, list], tuple[dict, list]]


def _zmq():
    import zmq

    return zmq


class ChannelServer:
    """Serves requests with ``handler(header, arrays) -> (reply header, arrays)``.

    ``threads`` server threads each own a ROUTER socket (``ipc://@infermux-<pid>-<token>-<k>`` on
    Linux and ``tcp://<host>:<random port>``) and run each request inline, in the thread that
    received it: a request costs no thread hand-off on either side.  A client spreads its
    per-thread sockets over the server threads (:attr:`endpoint` lists them all), so requests
    from different client threads run at once.  Built-in ops: ``ping`` (answers at once, echoing
    the tensors when ``"echo": true``) and ``free`` (regions of this server's arena that the
    client has copied out)."""

    def __init__(self, handler: Handler, *, host: str = "127.0.0.1", threads: int = 4,
                 use_shm: bool = True):
        zmq = _zmq()
        self._handler = handler
        self._ctx = zmq.Context()
        self._ctx.setsockopt(zmq.LINGER, 0)
        token = secrets.token_hex(6)
        self._arena = ShmArena() if use_shm and shm_available() else None
        self._reader = ShmReader()
        endpoint: dict[str, Any] = {"pid": os.getpid(), "ipc": [], "tcp": [],
                                    "probe": write_probe() if self._arena is not None else None}
        sockets = []
        for k in range(max(1, threads)):
            sock = self._ctx.socket(zmq.ROUTER)
            if sys.platform.startswith("linux"):
                address = f"ipc://@{_PREFIX}{os.getpid()}-{token}-{k}"
                sock.bind(address)
                endpoint["ipc"].append(address)
            port = sock.bind_to_random_port(f"tcp://{host}")
            endpoint["tcp"].append(f"tcp://{host}:{port}")
            sockets.append(sock)
        if not endpoint["ipc"]:
            del endpoint["ipc"]
        self.endpoint = endpoint
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, args=(sock,), daemon=True,
                                          name=f"infermux-channel-{k}") for k, sock in enumerate(sockets)]
        for thread in self._threads:
            thread.start()

    def _work(self, sock) -> None:
        zmq = _zmq()
        try:
            while not self._stop.is_set():
                frames = sock.recv_multipart(copy=False)
                reply = self._serve(frames)
                if reply is not None:
                    sock.send_multipart(reply, copy=False)
        except zmq.ZMQError as exc:  # the context was terminated: close() or exit
            log.debug("channel thread stopped: %s", exc)
        finally:
            sock.close(linger=0)

    def _serve(self, frames: list) -> list | None:
        identity, body = frames[0], frames[1:]
        try:
            header = json.loads(body[0].bytes)
        except (ValueError, IndexError):
            log.warning("dropping a malformed channel message")
            return None
        if self._arena is not None:
            for name, offset in header.get("free", ()):
                self._arena.free(name, offset)
        op = header.get("op")
        if op == "free":
            return None
        reply_header: dict[str, Any]
        try:
            arrays = decode_tensors(header.get("tensors", ()), body, self._reader)
            if op == "ping":
                reply_header, outputs = {"op": "ok"}, (arrays if header.get("echo") else [])
                if "sent" in header:  # one-way latency: perf_counter is one clock per host
                    reply_header["arrived"] = time.perf_counter()
            else:
                reply_header, outputs = self._handler(header, arrays)
            del arrays
            arena = self._arena if header.get("shm") else None
            metas, out_frames, _ = encode_tensors(outputs, arena)
        except Exception as exc:  # noqa: BLE001 - every request gets an answer
            reply_header, metas, out_frames = error_header(exc), [], []
        reply_header["id"] = header.get("id")
        reply_header["tensors"] = metas
        return [identity, json.dumps(reply_header).encode(), *out_frames]

    @property
    def arena(self) -> ShmArena | None:
        """The arena replies are written to (None without shared memory)."""
        return self._arena

    def close(self) -> None:
        """Stop the server threads and unlink the shared memory."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._ctx.term()  # wakes every blocked recv with ETERM; the threads close their sockets
        for thread in self._threads:
            thread.join(timeout=2)
        if self._arena is not None:
            self._arena.close()


def error_header(exc: BaseException) -> dict[str, Any]:
    """The reply header of a failed request: the error's class name and message (no pickle)."""
    return {"op": "error", "type": type(exc).__name__, "message": str(exc) or repr(exc)}


# -- client ----------------------------------------------------------------------------------

_ids = itertools.count(1)


class ChannelClient:
    """Talks to one :class:`ChannelServer`: ``request(header, arrays) -> (header, arrays)``.

    Each calling thread gets a socket of its own (ZeroMQ sockets are not thread-safe), so a
    request costs no thread hand-off.  ``alive()`` is asked every 50 ms while waiting; when it
    says False (the actor died) or the client was closed, the request raises :class:`ChannelLost`.
    ``timeout_s`` bounds one request (None: no bound besides ``alive``).
    """

    def __init__(self, endpoint: dict[str, Any], *, alive: Callable[[], bool] = lambda: True,
                 transport: str = "auto"):
        self.endpoint = endpoint
        same_host = probe_matches(endpoint.get("probe"))
        if transport == "tcp" or not same_host or not endpoint.get("ipc"):
            self.addresses, self.same_host = list(endpoint["tcp"]), False
        else:
            self.addresses, self.same_host = list(endpoint["ipc"]), True
        self._next_address = itertools.count()
        self._arena = ShmArena() if self.same_host else None
        self._reader = ShmReader() if self.same_host else None
        self._alive = alive
        self._local = threading.local()
        self._closed = False

    @property
    def closed(self) -> bool:
        """True after :meth:`close` (every later request raises :class:`ChannelLost`)."""
        return self._closed

    def _socket(self):
        sock = getattr(self._local, "sock", None)
        if sock is None:
            zmq = _zmq()
            sock = zmq.Context.instance().socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(self.addresses[next(self._next_address) % len(self.addresses)])
            self._local.sock = sock
        return sock

    def request(self, header: dict[str, Any], arrays: Sequence[Any] = (), *,
                timeout_s: float | None = None) -> tuple[dict[str, Any], list[np.ndarray]]:
        """Send one request and wait for its reply (see the class docstring)."""
        if self._closed:
            raise ChannelLost("the channel is closed")
        zmq = _zmq()
        sock = self._socket()
        metas, frames, regions = encode_tensors(arrays, self._arena)
        request_id = next(_ids)
        message = dict(header, id=request_id, tensors=metas, shm=self.same_host)
        try:
            sock.send_multipart([json.dumps(message).encode(), *frames], copy=False)
            reply_header, reply = self._wait(sock, request_id, timeout_s, zmq)
        finally:
            for name, offset in regions:  # the server has read them once it answered (or is gone)
                self._arena.free(name, offset)
        metas = reply_header.pop("tensors", ())
        try:
            outputs = decode_tensors(metas, reply, self._reader, copy_shm=True)
        finally:
            self._queue_free([m["shm"] for m in metas if "shm" in m])
        return reply_header, outputs

    def _wait(self, sock, request_id: int, timeout_s: float | None, zmq) -> tuple[dict, list]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if sock.poll(int(_POLL_S * 1000)):
                reply = sock.recv_multipart(copy=False)
                header = json.loads(reply[0].bytes)
                if header.get("id") == request_id:
                    return header, reply
                # a late answer to a request given up on earlier: only its regions matter
                self._queue_free([m["shm"] for m in header.get("tensors", ()) if "shm" in m])
                continue
            if self._closed or not self._alive():
                self._drop_socket(sock)
                raise ChannelLost("the device actor stopped answering (it died or its node left)")
            if deadline is not None and time.monotonic() > deadline:
                self._drop_socket(sock)
                raise TimeoutError(f"no answer from {self.addresses[0]} within {timeout_s} s")

    def _drop_socket(self, sock) -> None:
        """Close this thread's socket: queued messages to a dead peer must not reach a new one."""
        if getattr(self._local, "sock", None) is sock:
            self._local.sock = None
        sock.close(linger=0)

    def _queue_free(self, regions: list) -> None:
        """Tell the server it may reuse ``regions`` of its arena (copied out already)."""
        if regions:
            self._socket().send(json.dumps({"op": "free", "free": regions}).encode())

    def ping(self, arrays: Sequence[Any] = (), *, echo: bool = False) -> list[np.ndarray]:
        """A round trip to a server thread without the handler (for measurements)."""
        return self.request({"op": "ping", "echo": echo}, arrays)[1]

    def close(self) -> None:
        """Refuse further requests; each thread's socket closes on its next use or with it."""
        self._closed = True
        if self._arena is not None:
            self._arena.close()
        if self._reader is not None and self.endpoint.get("probe"):
            self._reader.forget(f"{_PREFIX}{self.endpoint.get('pid')}-")
