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
* shared-memory regions (:mod:`infermux.cluster.shm`): ``/dev/shm`` files a writer fills and a
  reader maps; the reader tells the writer when a region may be reused.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from infermux.cluster.shm import (
    ShmArena,
    ShmReader,
    probe_matches,
    segment_prefix,
    shm_available,
    write_probe,
)

__all__ = ["SHM_MIN_BYTES", "ChannelClient", "ChannelLost", "ChannelServer", "decode_tensors",
           "encode_tensors", "error_header", "recv_message"]

log = logging.getLogger(__name__)

SHM_MIN_BYTES = 64 << 10  # below this, a tensor goes inline (measured: docs/cluster.md)
ZERO_COPY_MIN_BYTES = 64 << 10  # smaller inline buffers are cheaper to copy than to track
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


def _nbytes(meta: dict) -> int:
    return int(np.prod(meta["shape"], dtype=np.int64)) * np.dtype(meta["dtype"]).itemsize


def recv_message(sock) -> tuple[dict | None, list]:
    """The rest of a multipart message whose next frame is the JSON header: ``(header, frames)``
    with ``frames[0]`` the header bytes.  Small frames arrive as ``bytes`` (cheaper than ZeroMQ
    frame objects), big ones without a copy.  ``header`` is None when it is not JSON."""
    raw = sock.recv()
    frames: list[Any] = [raw]
    try:
        header = json.loads(raw)
        sizes = [_nbytes(m) for m in header.get("tensors", ()) if "frame" in m]
    except (ValueError, KeyError, TypeError):
        header, sizes = None, []
    k = 0
    while sock.rcvmore:
        big = k < len(sizes) and sizes[k] >= ZERO_COPY_MIN_BYTES
        frames.append(sock.recv(copy=not big))
        k += 1
    return header, frames


def _send(sock, parts: list) -> None:
    """Send a multipart message; buffers are handed to ZeroMQ without a copy only when big."""
    sock.send_multipart(parts, copy=not any(isinstance(p, np.ndarray) for p in parts))


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
                identity = sock.recv()
                arrived = time.perf_counter()
                header, frames = recv_message(sock)
                reply = self._serve(header, frames, arrived)
                if reply is not None:
                    _send(sock, [identity, *reply])
        except zmq.ZMQError as exc:  # the context was terminated: close() or exit
            log.debug("channel thread stopped: %s", exc)
        finally:
            sock.close(linger=0)

    def _serve(self, header: dict | None, frames: list, arrived: float) -> list | None:
        if header is None:
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
            arrays = decode_tensors(header.get("tensors", ()), frames, self._reader)
            if op == "ping":
                reply_header, outputs = {"op": "ok"}, (arrays if header.get("echo") else [])
                if "sent" in header:  # one-way latency: perf_counter is one clock per host
                    reply_header["arrived"] = arrived
            else:
                reply_header, outputs = self._handler(header, arrays)
            del arrays
            arena = self._arena if header.get("shm") else None
            metas, out_frames, _ = encode_tensors(outputs, arena)
        except Exception as exc:  # noqa: BLE001 - every request gets an answer
            reply_header, metas, out_frames = error_header(exc), [], []
        reply_header["id"] = header.get("id")
        reply_header["tensors"] = metas
        return [json.dumps(reply_header).encode(), *out_frames]

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

    ``request_async(header, arrays, callback)`` sends at once and returns; one I/O thread per
    client receives every asynchronous reply and calls ``callback(header, outputs, error)``
    there, so no thread waits per request (keep callbacks short).
    """

    def __init__(self, endpoint: dict[str, Any], *, alive: Callable[[], bool] = lambda: True,
                 transport: str = "auto", use_shm: bool = True):
        self.endpoint = endpoint
        same_host = probe_matches(endpoint.get("probe"))
        if transport == "tcp" or not same_host or not endpoint.get("ipc"):
            self.addresses, self.same_host = list(endpoint["tcp"]), False
        else:
            self.addresses, self.same_host = list(endpoint["ipc"]), True
        self._next_address = itertools.count()
        shm = self.same_host and use_shm
        self.min_shm_bytes = SHM_MIN_BYTES  # tensors this big go through shared memory
        self._arena = ShmArena() if shm else None
        self._reader = ShmReader() if shm else None
        self._alive = alive
        self._local = threading.local()
        self._closed = False
        self._lane: _AsyncLane | None = None
        self._lane_lock = threading.Lock()

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
        metas, frames, regions = encode_tensors(arrays, self._arena, self.min_shm_bytes)
        request_id = next(_ids)
        message = dict(header, id=request_id, tensors=metas, shm=self._arena is not None)
        try:
            _send(sock, [json.dumps(message).encode(), *frames])
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
                header, reply = recv_message(sock)
                if header is not None and header.get("id") == request_id:
                    return header, reply
                # a late answer to a request given up on earlier: only its regions matter
                self._queue_free([m["shm"] for m in (header or {}).get("tensors", ()) if "shm" in m])
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

    def request_async(self, header: dict[str, Any], arrays: Sequence[Any],
                      callback: Callable[[dict | None, list | None, BaseException | None], Any]) -> None:
        """Send one request now; ``callback`` gets its reply on the I/O thread (see the class)."""
        if self._closed:
            callback(None, None, ChannelLost("the channel is closed"))
            return
        if self._lane is None:
            with self._lane_lock:
                if self._lane is None:
                    self._lane = _AsyncLane(self)
        metas, frames, regions = encode_tensors(arrays, self._arena, self.min_shm_bytes)
        message = dict(header, id=next(_ids), tensors=metas, shm=self._arena is not None)
        self._lane.send(message, frames, regions, callback)

    def _finish(self, header: dict, reply: list) -> tuple[dict, list, list]:
        """``(header, outputs, server regions to free)`` of a reply (shared memory copied out)."""
        metas = header.pop("tensors", ())
        outputs = decode_tensors(metas, reply, self._reader, copy_shm=True)
        return header, outputs, [m["shm"] for m in metas if "shm" in m]

    def ping(self, arrays: Sequence[Any] = (), *, echo: bool = False) -> list[np.ndarray]:
        """A round trip to a server thread without the handler (for measurements)."""
        return self.request({"op": "ping", "echo": echo}, arrays)[1]

    def close(self) -> None:
        """Refuse further requests; each thread's socket closes on its next use or with it."""
        self._closed = True
        if self._lane is not None:
            self._lane.stop()
        if self._arena is not None:
            self._arena.close()
        if self._reader is not None and self.endpoint.get("probe"):
            self._reader.forget(segment_prefix(self.endpoint.get("pid")))


class _AsyncLane:
    """The I/O thread of a client's asynchronous requests: callers hand messages over an inproc
    PUSH socket (under a lock); the thread forwards them to the server on its DEALER socket,
    matches replies to callbacks, and fails what is pending when the peer is lost."""

    def __init__(self, client: ChannelClient):
        zmq = _zmq()
        ctx = zmq.Context.instance()
        self._client = client
        self._pending: dict[int, tuple[Callable, list]] = {}
        self._lock = threading.Lock()
        address = f"inproc://infermux-lane-{id(self)}-{secrets.token_hex(4)}"
        self._pull = ctx.socket(zmq.PULL)
        self._pull.bind(address)
        self._push = ctx.socket(zmq.PUSH)
        self._push.setsockopt(zmq.LINGER, 0)
        self._push.connect(address)
        self._dealer = ctx.socket(zmq.DEALER)
        self._dealer.setsockopt(zmq.LINGER, 0)
        self._dealer.connect(client.addresses[next(client._next_address) % len(client.addresses)])
        self._stopping = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="infermux-channel-async")
        self._thread.start()

    def send(self, message: dict, frames: list, regions: list, callback: Callable) -> None:
        with self._lock:
            if self._stopping:
                self._free_local(regions)
                callback(None, None, ChannelLost("the channel is closed"))
                return
            self._pending[message["id"]] = (callback, regions)
            _send(self._push, [json.dumps(message).encode(), *frames])

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._push.close(linger=0)

    def _free_local(self, regions: list) -> None:
        arena = self._client._arena
        for name, offset in regions:
            if arena is not None:
                arena.free(name, offset)

    def _run(self) -> None:
        zmq = _zmq()
        poller = zmq.Poller()
        poller.register(self._pull, zmq.POLLIN)
        poller.register(self._dealer, zmq.POLLIN)
        try:
            while True:
                events = dict(poller.poll(int(_POLL_S * 1000)))
                if self._pull in events:
                    self._forward(zmq)
                if self._dealer in events:
                    self._receive(zmq)
                lost = self._stopping or self._client.closed or not self._client._alive()
                if lost and self._fail_pending() and self._stopping:
                    return
        finally:
            self._pull.close(linger=0)
            self._dealer.close(linger=0)

    def _forward(self, zmq) -> None:
        while self._pull.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._dealer.send_multipart(self._pull.recv_multipart(copy=False), copy=False)

    def _receive(self, zmq) -> None:
        while self._dealer.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            header, reply = recv_message(self._dealer)
            with self._lock:
                callback, regions = self._pending.pop((header or {}).get("id"), (None, []))
            self._free_local(regions)
            if callback is None:  # not ours (a request failed earlier): only its regions matter
                free = [m["shm"] for m in (header or {}).get("tensors", ()) if "shm" in m]
                if free:
                    self._dealer.send(json.dumps({"op": "free", "free": free}).encode())
                continue
            try:
                header, outputs, free = self._client._finish(header, reply)
            except Exception as exc:  # noqa: BLE001 - this request fails alone
                callback(None, None, exc)
                continue
            if free:
                self._dealer.send(json.dumps({"op": "free", "free": free}).encode())
            try:
                callback(header, outputs, None)
            except Exception:
                log.exception("an asynchronous request's callback failed")

    def _fail_pending(self) -> bool:
        """Fail every pending request with ChannelLost; True when the lane may stop."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for callback, regions in pending.values():
            self._free_local(regions)
            try:
                callback(None, None, ChannelLost("the device actor stopped answering "
                                                 "(it died or its node left)"))
            except Exception:
                log.exception("an asynchronous request's callback failed")
        return True
