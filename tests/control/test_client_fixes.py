"""The control client: ``-putmetric`` fails with the server's reason for a metric telemetry would
ignore (it asks for JSON, so the server refuses instead of CP's bare 200), and a connect that finds
the listen backlog full is retried until the timeout instead of failing at once with EAGAIN."""

from __future__ import annotations

import errno
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.control.harness import ControlPilot
from tests.control.test_cli import msg_of, run


def _telemetry() -> dict[str, object]:
    port = socket.create_server(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()
    gauge = {"namespace": "ns", "subsystem": "s", "name": "g", "help": "h", "type": "gauge"}
    return {"port": free, "interfaces": ["lo"], "metrics": [gauge]}


def test_putmetric_fails_with_the_reason_for_a_metric_telemetry_would_ignore_21() -> None:
    with ControlPilot(extra={"telemetry": _telemetry()}) as p:
        cfg = str(p.config_path)
        assert run("-config", cfg, "-putmetric", "ns_s_g=1.5") == (0, "", "")
        for metric, why in (("undeclared=1", "metric 'undeclared' is not declared in telemetry.metrics"),
                            ("ns_s_g=abc", "metric 'ns_s_g' needs a number, got 'abc'")):
            code, out, err = run("-config", cfg, "-putmetric", metric)
            assert (code, out) == (1, ""), err
            assert msg_of(err) == ("-putmetric: failed to run subcommand: unprocessable entity received by "
                                   f"control server: {why}")


def test_putmetric_without_telemetry_says_nothing_records_it() -> None:
    with ControlPilot() as p:
        code, _, err = run("-config", str(p.config_path), "-putmetric", "m=1")
        assert code == 1
        assert msg_of(err).endswith("metric 'm' is not recorded: the config declares no telemetry metrics")


@pytest.mark.timeout(30)
def test_connect_waits_while_the_listen_backlog_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pypilot.control.client import UnixHTTPConnection

    path = str(tmp_path / "busy.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(0)
    fillers = []
    while True:  # fill the backlog: the next connect is refused with EAGAIN, not queued
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(path)
        except BlockingIOError as e:
            assert e.errno == errno.EAGAIN
            s.close()
            break
        fillers.append(s)
    accepted: list[socket.socket] = []
    refused = threading.Event()  # the client was refused (EAGAIN) and is waiting to try again
    pause = time.sleep

    def retry_pause(delay: float) -> None:
        refused.set()
        pause(delay)

    monkeypatch.setattr(time, "sleep", retry_pause)

    def accept_later() -> None:
        refused.wait(10)  # the server makes room only once the client has been turned away
        while len(accepted) < len(fillers) + 1:
            accepted.append(server.accept()[0])

    t = threading.Thread(target=accept_later, daemon=True)
    t.start()
    conn = UnixHTTPConnection(path, 5.0)
    conn.connect()  # EAGAIN at first: retried until the server accepts
    assert refused.is_set()
    t.join(5)
    conn.close()
    # and a server that never makes room fails within the timeout, with EAGAIN
    conn = UnixHTTPConnection(path, 0.3)
    for s in fillers:
        s.close()
    more = []
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(path)
        except BlockingIOError:
            s.close()
            break
        more.append(s)
    began = time.monotonic()
    with pytest.raises(BlockingIOError):
        conn.connect()
    assert 0.2 < time.monotonic() - began < 2
    for s in (*more, *accepted):
        s.close()
    server.close()
