"""The PID 1 ↔ worker framing and the worker's end of the channel (``pypilot.channel``): messages
survive any split of the byte stream, oversized and malformed frames are refused, concurrent sends
stay whole, and a closed or broken channel is reported, not hung on."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from pypilot import logs
from pypilot.channel import MAX_MESSAGE, Decoder, WorkerLink, encode

MESSAGES = [
    {"op": "req", "id": 1, "kind": "ping"},
    {"op": "log", "data": "é\n" * 3},
    {},
    {"n": list(range(50))},
]


def stream() -> bytes:
    return b"".join(encode(m) for m in MESSAGES)


def test_encode_is_a_4_byte_big_endian_length_then_json() -> None:
    frame = encode({"a": 1})
    assert frame == struct.pack(">I", 7) + b'{"a":1}'


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 4096])
def test_any_split_of_the_stream_gives_the_same_messages(size: int) -> None:
    data, decoder, out = stream(), Decoder(), []
    for i in range(0, len(data), size):
        out += decoder.feed(data[i : i + size])
    assert out == MESSAGES and decoder.pending == 0


def test_a_partial_frame_waits_for_the_rest() -> None:
    decoder = Decoder()
    frame = encode(MESSAGES[1])
    assert decoder.feed(frame[:2]) == [] and decoder.feed(frame[2:-1]) == []
    assert decoder.pending == len(frame) - 1
    assert decoder.feed(frame[-1:] + encode({"x": 1})[:3]) == [MESSAGES[1]]
    assert decoder.pending == 3


def test_an_oversized_length_is_refused_before_its_body_arrives() -> None:
    with pytest.raises(ValueError, match="over the limit"):
        Decoder().feed(struct.pack(">I", MAX_MESSAGE + 1))
    assert Decoder().feed(struct.pack(">I", MAX_MESSAGE)) == []  # the limit itself is allowed
    with pytest.raises(ValueError, match="over the limit"):
        encode({"data": "x" * MAX_MESSAGE})


@pytest.mark.parametrize("body", [b"{", b"\xff", b'{"a": 1} x', b"[1, 2]", b"3", b"null"])
def test_malformed_frames_are_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        Decoder().feed(struct.pack(">I", len(body)) + body)


def test_worker_link_reads_delivers_and_sees_eof() -> None:
    pid1, worker = socket.socketpair()
    link = WorkerLink(worker)
    data = stream()
    pid1.sendall(data[:10])
    got = link.read()
    pid1.sendall(data[10:])
    while got is not None and len(got) < len(MESSAGES):
        more = link.read()
        assert more is not None
        got += more
    assert got == MESSAGES
    pid1.close()
    assert link.read() is None


def test_drain_takes_what_is_there_without_waiting() -> None:
    pid1, worker = socket.socketpair()
    link = WorkerLink(worker)
    assert link.drain() == []  # nothing yet: returns at once
    pid1.sendall(stream() + encode({"op": "stop"})[:5])
    assert link.drain() == MESSAGES  # the partial last frame stays for later
    pid1.sendall(encode({"op": "stop"})[5:])
    assert link.drain() == [{"op": "stop"}]


def test_serve_stops_on_garbage() -> None:
    pid1, worker = socket.socketpair()
    link, seen = WorkerLink(worker), []
    pid1.sendall(encode({"a": 1}) + struct.pack(">I", 2) + b"[]" + encode({"b": 2}))
    link.serve(seen.append)  # returns: a frame that is not a message ends the channel
    assert seen == [{"a": 1}]


def test_concurrent_sends_keep_frames_whole() -> None:
    pid1, worker = socket.socketpair()
    link = WorkerLink(worker)
    n, threads = 200, 8
    big = "y" * 5000

    def sender(t: int) -> None:
        for i in range(n):
            assert link.send({"t": t, "i": i, "pad": big})

    received: list[dict[str, object]] = []

    def reader() -> None:
        decoder = Decoder()
        while len(received) < n * threads:
            received.extend(decoder.feed(pid1.recv(1 << 16)))

    r = threading.Thread(target=reader)
    r.start()
    workers = [threading.Thread(target=sender, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    r.join(30)
    assert len(received) == n * threads
    for t in range(threads):  # each thread's own messages in its order
        assert [m["i"] for m in received if m["t"] == t] == list(range(n))


def test_a_send_to_a_closed_channel_breaks_the_link_once() -> None:
    pid1, worker = socket.socketpair()
    broken = []
    link = WorkerLink(worker, on_broken=lambda: broken.append(1))
    pid1.close()
    assert link.send({"a": 1}) is False and link.broken
    assert link.send({"a": 2}) is False
    assert broken == [1]


def test_a_send_pid1_does_not_take_in_time_breaks_the_link() -> None:
    pid1, worker = socket.socketpair()
    broken = []
    link = WorkerLink(worker, on_broken=lambda: broken.append(1), send_timeout=0.2)
    big = {"data": "z" * (4 << 20)}  # more than the socket buffers hold; PID 1 reads nothing
    assert link.send(big) is False and broken == [1]
    pid1.close()


def test_forward_logs_sends_log_lines_as_messages() -> None:
    pid1, worker = socket.socketpair()
    link = WorkerLink(worker)
    link.forward_logs()
    try:
        logs.error("from the worker")
    finally:
        logs.set_sink(None)
    pid1.settimeout(5)
    (msg,) = Decoder().feed(pid1.recv(1 << 16))
    assert msg["op"] == "log" and "from the worker" in msg["data"]
    pid1.close()


def test_messages_before_a_malformed_frame_are_given_then_the_error() -> None:
    decoder = Decoder()
    assert decoder.feed(encode({"a": 1}) + b"\0\0\0\1x" + encode({"b": 2})) == [{"a": 1}]
    with pytest.raises(ValueError):
        decoder.feed(b"")
    with pytest.raises(ValueError):
        decoder.feed(encode({"c": 3}))  # nothing after it is trusted
