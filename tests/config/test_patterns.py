"""The §12 doc patterns load, and the beyond-CP keys decode into the model."""
# ruff: noqa: E501 (table rows read best on one line each)

from __future__ import annotations

import signal

from pypilot.config import load
from pypilot.config.model import UNLIMITED, Trigger

from .conftest import ADDRS

PATTERNS = r"""
{
  consul: "{{ .CONSUL | default "localhost" }}:8500",
  logging: {level: "INFO", format: "default", output: "stdout"},
  stopTimeout: 5,
  jobs: [
    { // coprocess
      name: "consul-agent", exec: ["/usr/local/bin/consul", "agent", "-data-dir=/data"],
      restarts: "unlimited",
      health: {exec: "consul info", interval: 5, ttl: 10},
    },
    { // preStart
      name: "preStart", exec: "/usr/local/bin/reload.sh preStart",
      when: {source: "consul-agent", once: "healthy"},
    },
    {
      name: "app", exec: "node /srv/index.js", port: "{{ .APP_PORT }}",
      when: {source: "preStart", once: "exitSuccess", timeout: "120s"},
      health: {exec: "/usr/bin/curl --fail -s -o /dev/null http://localhost:8000", interval: 5, ttl: 10,
               timeout: "5s"},
      tags: ["app", "v1"], interfaces: ["eth0", "inet"], initial_status: "warning",
      consul: {enableTagOverride: true, deregisterCriticalServiceAfter: "10m"},
    },
    {name: "preStop", exec: "/usr/local/bin/preStop.sh", when: {source: "app", once: "stopping"}},
    {name: "postStop", exec: "/usr/local/bin/postStop.sh", when: {source: "app", once: "stopped"}},
    {name: "sensor", exec: "/usr/local/bin/sensor.sh", when: {interval: "5s"}},
    {name: "onchange-db", exec: "/usr/local/bin/reload.sh", when: {source: "watch.db", each: "changed"}},
    {name: "alarm", exec: "/usr/local/bin/alarm.sh", when: {source: "sensor", each: "exitFailed"}},
    {name: "exit-on-stop", exec: "pkill -SIGTERM containerpilot", when: {source: "app", once: "stopped"}},
    {name: "on-sighup", exec: "echo hup", when: {source: "SIGHUP"}},
    {name: "startup-hook", exec: "echo hi", when: {source: "global", once: "startup"}},
  ],
  watches: [{name: "db", interval: 3, tag: "primary", dc: "dc1"}],
  telemetry: {
    port: 9090, interfaces: ["eth0"], tags: ["dev"],
    metrics: [{namespace: "containerpilot", subsystem: "app", name: "some_counter", help: "a counter",
               type: "counter"}],
  },
  control: {socket: "/tmp/cp.socket"},
}
"""


def test_patterns_load(write) -> None:
    cfg = load(write(PATTERNS), {"APP_PORT": "8000", "CONSUL_HTTP_TOKEN": "tok"}, addresses=ADDRS)
    names = [j.name for j in cfg.jobs]
    assert names[-1] == "containerpilot" and names[0] == "consul-agent"
    by = {j.name: j for j in cfg.jobs}
    app = by["app"]
    assert (app.port, app.ip, app.initial_status, app.tags) == (8000, "10.2.0.1", "warning", ("app", "v1"))
    assert (app.enable_tag_override, app.deregister_critical_service_after) == (True, "10m")
    assert app.when.source == "preStart" and app.when.once == "exitSuccess" and app.when.timeout == 120.0
    assert app.health is not None and app.health.timeout == 5.0
    assert by["consul-agent"].restarts == UNLIMITED
    assert by["sensor"].when.interval == 5.0 and by["sensor"].restarts == UNLIMITED
    assert by["on-sighup"].when.source == "SIGHUP"
    assert by["onchange-db"].when.each == "changed"
    assert cfg.watches[0].name == "db" and cfg.watches[0].dc == "dc1"
    assert cfg.telemetry is not None and cfg.telemetry.ip == "10.2.0.1"
    assert cfg.telemetry.metrics[0].full_name == "containerpilot_app_some_counter"
    tjob = by["containerpilot"]
    assert tjob.port == 9090 and tjob.health is not None and (tjob.health.interval, tjob.health.ttl) == (5.0, 15)
    assert cfg.consul is not None and (cfg.consul.address, cfg.consul.token) == ("localhost:8500", "tok")
    assert cfg.control.socket == "/tmp/cp.socket"


def test_consul_block_without_dereg_is_accepted(write) -> None:
    cfg = load(write('{consul: "c:1", jobs: [{name: "app", port: 80, consul: {enableTagOverride: true}, '
                     "health: {interval: 1, ttl: 1}}]}"), {}, addresses=ADDRS)
    assert cfg.jobs[0].deregister_critical_service_after is None and cfg.jobs[0].enable_tag_override


def test_consul_forms(write) -> None:
    c = load(write('{consul: "https://c:8501"}'), {}).consul
    assert c is not None and (c.address, c.scheme, c.tls.verify) == ("c:8501", "https", True)
    c = load(write('{consul: {tls: {verify: false, cafile: "/ca"}}}'), {"CONSUL_HTTP_ADDR": "h:1"}).consul
    assert c is not None and (c.address, c.tls.verify, c.tls.cafile) == ("h:1", False, "/ca")
    c = load(write('{consul: {address: "a:1"}}'), {"CONSUL_HTTP_SSL_VERIFY": "0", "CONSUL_CACERT": "/e"}).consul
    assert c is not None and (c.tls.verify, c.tls.cafile) == (False, "/e")


def test_when_empty_is_inert(write) -> None:
    j = load(write('{consul: "c:1", jobs: [{name: "a", exec: "x", when: {}}]}'), {}).jobs[0]
    assert j.when.source == "" and j.when.once is None


BEYOND = """
{
  consul: "c:1",
  jobs: [{
    name: "web", exec: "nginx", stopSignal: "QUIT", reloadSignal: "SIGHUP", main: true,
    backoff: {initial: "200ms", factor: 3, max: "1m", resetAfter: 60},
    exitCodeMap: {"143": 0, "1": 2},
    health: {http: "http://localhost:80/health", interval: 2, ttl: 6, successThreshold: 2, failureThreshold: 3,
             initialDelay: "10s"},
    when: {all: [{source: "db", once: "healthy"}, {source: "cache", once: "healthy"}], timeout: "1m"},
  }, {
    name: "tcp-check", stopSignal: 2, backoff: false, health: {tcp: "127.0.0.1:5432", interval: 1, ttl: 3},
  }],
  control: {socketMode: "0660", reload: "restart", reloadGrace: "5s"},
}
"""


def test_beyond_cp_keys(write) -> None:
    cfg = load(write(BEYOND), {})
    web, tcp = cfg.jobs
    assert web.stop_signal == signal.SIGQUIT and web.reload_signal == signal.SIGHUP and web.main
    assert web.backoff is not None and (web.backoff.initial, web.backoff.factor, web.backoff.max,
                                        web.backoff.reset_after) == (0.2, 3.0, 60.0, 60.0)
    assert web.exit_code_map == ((143, 0), (1, 2))
    h = web.health
    assert h is not None and h.http == "http://localhost:80/health" and h.exec is None
    assert (h.success_threshold, h.failure_threshold, h.initial_delay) == (2, 3, 10.0)
    assert web.when.all == (Trigger("db", "healthy"), Trigger("cache", "healthy")) and web.when.timeout == 60.0
    assert tcp.stop_signal == signal.SIGINT and tcp.backoff is None
    assert tcp.health is not None and tcp.health.tcp == "127.0.0.1:5432"
    assert (cfg.control.socket_mode, cfg.control.reload, cfg.control.reload_grace) == (0o660, "restart", 5.0)
