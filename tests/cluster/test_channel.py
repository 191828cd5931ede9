"""The data plane without Ray: wire format, shared-memory arena, server and client."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

pytestmark = pytest.mark.cluster
zmq = pytest.importorskip("zmq")

from infermux.cluster import channel, shm
from infermux.cluster.channel import (
    ChannelClient,
    ChannelLost,
    ChannelServer,
    decode_tensors,
    encode_tensors,
)
from infermux.cluster.shm import ShmArena, ShmReader

needs_shm = pytest.mark.skipif(not shm.shm_available(), reason="no /dev/shm here")


def _double(header, arrays):
    if header.get("fail"):
        raise ValueError("asked to fail")
    return {"op": "ok", "echo": header.get("tag")}, [a * 2 if a.dtype != object else a for a in arrays]


@pytest.fixture
def server():
    srv = ChannelServer(_double, threads=2)
    yield srv
    srv.close()


@pytest.mark.parametrize("value", [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.array(7, dtype=np.int64),                        # 0-d
    np.zeros((2, 0, 3), dtype=np.float16),              # empty
    np.array([True, False]),
    np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),  # not C-contiguous
    np.array(["a", "bcd"], dtype=object),               # strings: JSON, not a buffer
    np.array(["xy", "z"]),                              # fixed-width unicode: a buffer
])
def test_tensors_round_trip_through_frames(value):
    metas, frames, regions = encode_tensors([value])
    assert regions == []
    assert all(not isinstance(f, (bytes, bytearray)) or len(f) < channel.ZERO_COPY_MIN_BYTES for f in frames)
    (back,) = decode_tensors(metas, [b"header", *frames])
    assert back.shape == value.shape and back.dtype == value.dtype
    np.testing.assert_array_equal(back, value)


@needs_shm
def test_large_tensors_go_through_shared_memory_and_regions_are_reused():
    arena, reader = ShmArena(segment_bytes=4 << 20, max_bytes=8 << 20), ShmReader()
    try:
        big = np.random.default_rng(0).standard_normal((1 << 20,)).astype(np.float32)  # 4 MiB
        metas, frames, regions = encode_tensors([big, np.ones(3)], arena)
        assert "shm" in metas[0] and "frame" in metas[1] and len(regions) == 1
        back, _ = decode_tensors(metas, [b"h", *frames], reader, copy_shm=True)
        np.testing.assert_array_equal(back, big)
        assert arena.in_use() >= big.nbytes
        arena.free(*regions[0])
        assert arena.in_use() == 0
        again = arena.alloc(big.nbytes)
        assert again is not None and again[1] == regions[0][1]  # the freed region is reused
        assert arena.alloc(64 << 20) is None  # beyond max_bytes: the caller sends inline instead
    finally:
        arena.close()
    assert not any(n.startswith(arena.tag) for n in os.listdir(shm.SHM_DIR))


@needs_shm
def test_stale_segments_of_dead_processes_are_swept(tmp_path):
    dead_pid = 2 ** 22 + 12345  # above Linux's default pid_max: never alive
    name = f"infermux-{dead_pid}-abcd-0"
    path = os.path.join(shm.SHM_DIR, name)
    with open(path, "wb") as f:
        f.write(b"x")
    assert shm.sweep_stale_segments() >= 1
    assert not os.path.exists(path)


def test_request_reply_inline_and_errors(server):
    client = ChannelClient(server.endpoint)
    try:
        header, (out,) = client.request({"op": "infer", "tag": 5}, [np.arange(4, dtype=np.int32)])
        assert header["op"] == "ok" and header["echo"] == 5
        np.testing.assert_array_equal(out, [0, 2, 4, 6])
        header, outs = client.request({"op": "infer", "fail": True}, [np.zeros(1)])
        assert header == {"op": "error", "type": "ValueError", "message": "asked to fail",
                          "id": header["id"]} and outs == []
    finally:
        client.close()


@needs_shm
@pytest.mark.parametrize("transport", ["auto", "tcp"])
def test_large_payloads_both_ways(server, transport):
    client = ChannelClient(server.endpoint, transport=transport)
    try:
        assert client.same_host == (transport == "auto")
        x = np.random.default_rng(1).standard_normal((4 << 20,)).astype(np.float32)  # 16 MiB
        for _ in range(3):  # regions are freed and reused, not leaked
            _, (out,) = client.request({"op": "infer"}, [x])
            np.testing.assert_array_equal(out, x * 2)
            assert out.flags.writeable  # copied out of the server's region
        if transport == "auto":
            client.ping()  # the client's free message is handled before this ping is answered
            assert server.arena.in_use() == 0
    finally:
        client.close()


def test_requests_from_many_threads_run_at_once(server):
    client = ChannelClient(server.endpoint)
    errors = []

    def work(k):
        try:
            for i in range(50):
                _, (out,) = client.request({"op": "infer"}, [np.full(3, k * 100 + i)])
                assert out.tolist() == [2 * (k * 100 + i)] * 3
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    client.close()
    assert errors == []


def test_a_lost_peer_fails_the_waiting_request_instead_of_hanging():
    block = threading.Event()
    srv = ChannelServer(lambda h, a: (block.wait(10), ({"op": "ok"}, []))[1], threads=1)
    alive = [True]
    client = ChannelClient(srv.endpoint, alive=lambda: alive[0])
    threading.Timer(0.2, lambda: alive.__setitem__(0, False)).start()
    try:
        with pytest.raises(ChannelLost, match="stopped answering"):
            client.request({"op": "infer"}, [])
    finally:
        block.set()
        client.close()
        srv.close()
    with pytest.raises(ChannelLost, match="closed"):
        client.request({"op": "infer"}, [])


def test_one_way_latency_is_reported_by_ping(server):
    import time

    client = ChannelClient(server.endpoint)
    try:
        sent = time.perf_counter()
        header, _ = client.request({"op": "ping", "sent": sent}, [np.zeros(1024, np.float32)])
        assert sent < header["arrived"] < time.perf_counter()
    finally:
        client.close()
