"""Every validation message of §2.3–§2.5, §3.2, §5, §6.1, §7.1, §10.3, asserted verbatim (table-driven)."""
# ruff: noqa: E501 (table rows read best on one line each)
# Each row: the config, ContainerPilot's message, and the location pypilot adds after it (#21; "" when CP's
# text already says where).

from __future__ import annotations

import pytest

from pypilot.config import ConfigError, load, validate_all

from .conftest import ADDRS

J = "unable to parse jobs: "
C = 'consul: "consul:8500"'

CASES = [
    # --- §2.1 / §2.5 top level
    ("{}", "no discovery backend defined", ''),
    ("{consul: 1}", "no discovery backend defined", ''),
    ('{consul: "c:8500", Consul: "x"}', "unknown config keys: [Consul]", ''),
    ('{consul: "c:8500", zz: 1, aa: 2}', "unknown config keys: [aa zz]", ''),
    (f'{{{C}, stopTimeout: "10s"}}', "cannot parse '' as int: strconv.ParseInt: parsing \"10s\": invalid syntax", ' (in stopTimeout, a whole number of seconds such as 5)'),
    (f"{{{C}, logging: {{foo: 1}}}}", "1 error(s) decoding:\n\n* '' has invalid keys: foo", ' (in logging)'),
    (f"{{{C}, logging: {{level: {{}}}}}}",
     "1 error(s) decoding:\n\n* 'Level' expected type 'string', got unconvertible type 'map[string]interface {}'", ' (in logging.level)'),
    (f"{{{C}, control: {{sock: 1}}}}",
     "unable to parse control: control config parsing error: 1 error(s) decoding:\n\n* '' has invalid keys: sock", ' (in control)'),
    ('{consul: {address: "x", foo: 1}}', "1 error(s) decoding:\n\n* '' has invalid keys: foo", ' (in consul)'),
    ('{consul: {tls: {bad: 1}}}', "1 error(s) decoding:\n\n* 'tls' has invalid keys: bad", ' (in consul.tls)'),
    ('{consul: "ftp://x:1"}', "Unknown protocol scheme: ftp", ' (in consul)'),
    # --- §10.3 logging values
    (f'{{{C}, logging: {{level: "loud"}}}}', "Unknown log level 'loud': not a valid logrus Level: \"loud\"", ' (in logging.level)'),
    (f'{{{C}, logging: {{format: "xml"}}}}', "Unknown log format 'xml'", ' (in logging.format)'),
    # --- §2.4 decoding inside jobs
    (f'{{{C}, jobs: [{{name: "a", foo: 1}}]}}',
     J + "job configuration error: 1 error(s) decoding:\n\n* '[0]' has invalid keys: foo", ' (in jobs[0], job "a")'),
    (f'{{{C}, jobs: [{{name: "a", initialStatus: "passing"}}]}}',
     J + "job configuration error: 1 error(s) decoding:\n\n* '[0]' has invalid keys: initialStatus", ' (in jobs[0], job "a")'),
    (f'{{{C}, jobs: [{{name: "a"}}, {{name: "b", health: {{exec: "x", ttl: 1, interval: 1, tll: 1}}}}]}}',
     J + "job configuration error: 1 error(s) decoding:\n\n* '[1].health' has invalid keys: tll", ' (in jobs[1].health, job "b")'),
    (f'{{{C}, jobs: [{{name: "a", health: {{interval: "x"}}}}]}}',
     J + "job configuration error: 1 error(s) decoding:\n\n* cannot parse '[0].health.interval' as int: "
         'strconv.ParseInt: parsing "x": invalid syntax', ' (in jobs[0].health.interval, job "a")'),
    (f'{{{C}, jobs: [{{name: "a", port: [1]}}]}}',
     J + "job configuration error: 1 error(s) decoding:\n\n* '[0].port' expected type 'int', got unconvertible "
         "type '[]interface {}'", ' (in jobs[0].port, job "a")'),
    (f'{{{C}, jobs: [{{name: "a", tags: "x"}}]}}',
     J + "job configuration error: 1 error(s) decoding:\n\n* '[0].tags': source data must be an array or slice, "
         "got string", ' (in jobs[0].tags, job "a")'),
    (f'{{{C}, jobs: [{{name: "a", health: "x"}}]}}',
     J + "job configuration error: 1 error(s) decoding:\n\n* '[0].health' expected a map, got 'string'", ' (in jobs[0].health, job "a")'),
    (f'{{{C}, jobs: [{{name: "a", foo: 1, bar: 2}}, {{name: "b", port: {{}}}}]}}',
     J + "job configuration error: 2 error(s) decoding:\n\n* '[0]' has invalid keys: bar, foo (in jobs[0], job \"a\")\n"
         "* '[1].port' expected type 'int', got unconvertible type 'map[string]interface {}' (in jobs[1].port, job \"b\")", ''),
    # --- §3.2 step 1: health
    (f'{{{C}, jobs: [{{name: "myName", port: 80}}]}}', J + "job[myName].health must be set if 'port' is set", ''),
    (f'{{{C}, jobs: [{{name: "myName", health: {{exec: "/bin/true"}}}}]}}',
     J + "job[myName].health.interval must be > 0", ''),
    (f'{{{C}, jobs: [{{name: "myName", health: {{exec: "/bin/true", interval: 1}}}}]}}',
     J + "job[myName].health.ttl must be > 0", ''),
    (f'{{{C}, jobs: [{{name: "myName", health: {{exec: "/bin/true", interval: 1, ttl: 5, timeout: "xx"}}}}]}}',
     J + "could not parse job[myName].health.timeout 'xx': time: invalid duration xx", ''),
    (f'{{{C}, jobs: [{{name: "myName", health: {{exec: "", interval: 1, ttl: 5}}}}]}}',
     J + "unable to create job[myName].health.exec: received zero-length argument", ''),
    # --- step 2: discovery
    (f'{{{C}, jobs: [{{name: "myName", port: 80, initial_status: "invalid", health: {{interval: 1, ttl: 1}}}}]}}',
     J + "job[myName].initialStatus must be one of 'passing', 'warning' or 'critical'", ''),
    (f'{{{C}, jobs: [{{name: "", exec: "myexec"}}]}}', J + "'name' must not be blank", ' (in jobs[0].name)'),
    (f'{{{C}, jobs: [{{name: "", port: 80, health: {{exec: "h", interval: 1, ttl: 3}}}}]}}',
     J + "'name' must not be blank", ' (in jobs[0].name)'),
    (f'{{{C}, jobs: [{{name: "my_job", port: 80, health: {{interval: 1, ttl: 1}}}}]}}',
     J + "service names must be alphanumeric with dashes to comply with service discovery", ' (in jobs[0].name, job "my_job")'),
    (f'{{{C}, jobs: [{{name: "app", port: 80, interfaces: {{}}, health: {{interval: 1, ttl: 1}}}}]}}',
     J + "unexpected argument type: map[string]interface {}", ' (in jobs[0].interfaces, job "app")'),
    (f'{{{C}, jobs: [{{name: "app", port: 80, interfaces: "eth0:inet7", health: {{interval: 1, ttl: 1}}}}]}}',
     J + "Unable to parse interface spec: eth0:inet7", ' (in jobs[0].interfaces, job "app")'),
    (f'{{{C}, jobs: [{{name: "app", port: 80, interfaces: ["static:x", "1.2.3"], health: {{interval: 1, ttl: 1}}}}]}}',
     J + "Unable to parse static ip static: in static:x\nUnable to parse interface spec: 1.2.3", ' (in jobs[0].interfaces, job "app")'),
    (f'{{{C}, jobs: [{{name: "app", port: 80, interfaces: "eth9", health: {{interval: 1, ttl: 1}}}}]}}',
     J + "none of the interface specifications were able to match\nSpecifications: [eth9]\nInterfaces IPs: "
         "[eth0:10.2.0.1 eth0:192.168.1.100 eth1:10.0.0.100 eth1:10.0.0.200 eth2:10.1.0.200 "
         "eth2:fdc6:238c:c4bc::1 lo:::1 lo:127.0.0.1]", ' (in jobs[0].interfaces, job "app")'),
    (f'{{{C}, jobs: [{{name: "app", port: 80, health: {{interval: 1, ttl: 1}}, '
     f'consul: {{deregisterCriticalServiceAfter: "nope"}}}}]}}',
     J + "unable to parse job[app].consul.deregisterCriticalServiceAfter: time: invalid duration nope", ''),
    # --- step 3: when
    (f'{{{C}, jobs: [{{name: "a", when: {{interval: "1s", once: "x"}}}}]}}',
     J + "job[a].when can have only one of 'interval', 'once', or 'each'", ''),
    (f'{{{C}, jobs: [{{name: "E", exec: "/bin/taskE", timeout: "1ns", when: {{interval: "xx"}}}}]}}',
     J + "unable to parse job[E].when.interval 'xx': time: invalid duration xx", ''),
    (f'{{{C}, jobs: [{{name: "A", exec: "/bin/taskA", timeout: "1s", when: {{interval: "-1s"}}}}]}}',
     J + "job[A].when.interval '-1s' cannot be less than 1ms", ''),
    (f'{{{C}, jobs: [{{name: "B", exec: "/bin/taskB", timeout: "1s", when: {{interval: "1ns"}}}}]}}',
     J + "job[B].when.interval '1ns' cannot be less than 1ms", ''),
    (f'{{{C}, jobs: [{{name: "a", when: {{interval: 0.5}}}}]}}',
     J + "unable to parse job[a].when.interval '0.5': time: missing unit in duration 0.5", ''),
    (f'{{{C}, jobs: [{{name: "a", when: {{source: "b", once: "exitSuccess", timeout: "1x"}}}}]}}',
     J + "unable to parse job[a].when.timeout: time: unknown unit x in duration 1x", ''),
    (f'{{{C}, jobs: [{{name: "a", when: {{source: "b", once: "started"}}}}]}}',
     J + "unable to parse job[a].when.event: started is not a valid event code", ''),
    # --- step 4: stopTimeout
    (f'{{{C}, jobs: [{{name: "a", stopTimeout: "x"}}]}}',
     J + "unable to parse job[a].stopTimeout 'x': time: invalid duration x", ''),
    # --- step 5: restarts
    (f'{{{C}, jobs: [{{name: "A", exec: "/bin/coprocessA", restarts: "invalid"}}]}}',
     J + "job[A].restarts field 'invalid' invalid: accepts positive integers, \"unlimited\", or \"never\"", ''),
    (f'{{{C}, jobs: [{{name: "B", exec: "/bin/coprocessB", restarts: "-1"}}]}}',
     J + "job[B].restarts field '-1' invalid: accepts positive integers, \"unlimited\", or \"never\"", ''),
    (f'{{{C}, jobs: [{{name: "C", exec: "/bin/coprocessC", restarts: -1}}]}}',
     J + "job[C].restarts field '-1' invalid: number must be positive integer", ''),
    (f'{{{C}, jobs: [{{name: "D", exec: "/bin/D", restarts: "unlimited", when: {{each: "healthy", source: "o"}}}}]}}',
     J + "job[D].restarts field 'unlimited' invalid: may not be used when 'job.when.each' is set because it "
         "may result in infinite processes", ''),
    (f'{{{C}, jobs: [{{name: "E", restarts: true}}]}}',
     J + "job[E].restarts field 'true' invalid: accepts positive integers, \"unlimited\", or \"never\"", ''),
    # --- step 6: exec
    (f'{{{C}, jobs: [{{name: "serviceC", exec: "x", timeout: "xx"}}]}}',
     J + "unable to parse job[serviceC].timeout 'xx': time: invalid duration xx", ''),
    (f'{{{C}, jobs: [{{name: "C", exec: "/bin/taskC", timeout: "-1ms", when: {{interval: "1ms"}}}}]}}',
     J + "job[C].timeout '-1ms' cannot be less than 1ms", ''),
    (f'{{{C}, jobs: [{{name: "D", exec: "/bin/taskD", timeout: "1ns", when: {{interval: "1ms"}}}}]}}',
     J + "job[D].timeout '1ns' cannot be less than 1ms", ''),
    (f'{{{C}, jobs: [{{name: "serviceD", exec: ""}}]}}',
     J + "unable to create job[serviceD].exec: received zero-length argument", ''),
    (f'{{{C}, jobs: [{{name: "a", exec: []}}]}}', J + "unable to create job[a].exec: received zero-length argument", ''),
    (f'{{{C}, jobs: [{{name: "a", exec: {{x: 1}}}}]}}',
     J + "unable to create job[a].exec: received zero-length argument", ''),
    # --- §5 watches
    (f'{{{C}, watches: [{{name: "", interval: 1}}]}}', "unable to parse watches: 'name' must not be blank", ' (in watches[0].name)'),
    (f'{{{C}, watches: [{{name: "a_b", interval: 1}}]}}',
     "unable to parse watches: service names must be alphanumeric with dashes to comply with service discovery", ' (in watches[0].name, watch "a_b")'),
    (f'{{{C}, watches: [{{name: "app"}}]}}', "unable to parse watches: watch[app].interval must be > 0", ''),
    (f'{{{C}, watches: [{{name: "app", interval: 1, tags: "x"}}]}}',
     "unable to parse watches: Watch configuration error: 1 error(s) decoding:\n\n* '[0]' has invalid keys: tags", ' (in watches[0], watch "app")'),
    # --- §7.1 telemetry
    (f'{{{C}, telemetry: {{interfaces: "eth0"}}}}',
     "telemetry configuration error: 1 error(s) decoding:\n\n* 'interfaces': source data must be an array or "
     "slice, got string", ' (in telemetry.interfaces)'),
    (f'{{{C}, telemetry: {{interfaces: ["eth7"]}}}}',
     "telemetry validation error: none of the interface specifications were able to match\nSpecifications: "
     "[eth7]\nInterfaces IPs: [eth0:10.2.0.1 eth0:192.168.1.100 eth1:10.0.0.100 eth1:10.0.0.200 "
     "eth2:10.1.0.200 eth2:fdc6:238c:c4bc::1 lo:::1 lo:127.0.0.1]", ''),
    (f'{{{C}, telemetry: {{metrics: [{{name: "x", help: "h", type: "meter"}}]}}}}', "invalid metric type: meter", ' (in telemetry.metrics[0].type)'),
    (f'{{{C}, telemetry: {{metrics: [{{name: "x", kind: "gauge"}}]}}}}',
     "MetricConfig configuration error: 1 error(s) decoding:\n\n* '[0]' has invalid keys: kind", ' (in telemetry.metrics[0], metric "x")'),
    # --- beyond CP
    (f'{{{C}, jobs: [{{name: "a", stopSignal: "SIGFOO"}}]}}', J + "job[a].stopSignal 'SIGFOO' invalid: unknown signal", ''),
    (f'{{{C}, jobs: [{{name: "a", backoff: {{factor: 0.5}}}}]}}', J + "job[a].backoff.factor must be >= 1", ''),
    (f'{{{C}, jobs: [{{name: "a", health: {{interval: 1, ttl: 1, http: "localhost"}}}}]}}',
     J + "job[a].health.http 'localhost' invalid: must be an http:// or https:// URL", ''),
    (f'{{{C}, jobs: [{{name: "a", health: {{interval: 1, ttl: 1, tcp: "nohost"}}}}]}}',
     J + "job[a].health.tcp 'nohost' invalid: must be host:port", ''),
    (f'{{{C}, jobs: [{{name: "a", exitCodeMap: {{"x": 0}}}}]}}',
     J + "job[a].exitCodeMap 'x': 0 invalid: exit codes must be 0-255", ''),
    (f'{{{C}, jobs: [{{name: "a", when: {{all: [{{source: "b", once: "nope"}}]}}}}]}}',
     J + "unable to parse job[a].when.all[0].once: nope is not a valid event code", ''),
    (f'{{{C}, control: {{socketMode: "999"}}}}',
     'unable to parse control: control.socketMode \'999\' invalid: must be an octal mode such as "0600"', ''),
    (f'{{{C}, control: {{reload: "hot"}}}}',
     "unable to parse control: control.reload 'hot' invalid: must be 'diff' or 'restart'", ''),
    (f'{{{C}, control: {{workerIdle: "-1s"}}}}',
     "unable to parse control: control.workerIdle '-1s' invalid: must be 0 (the worker stays) or more", ''),
    (f'{{{C}, control: {{workerIdle: "soon"}}}}',
     "unable to parse control: control.workerIdle 'soon': time: invalid duration soon", ''),
]


@pytest.mark.parametrize(("text", "message", "where"), CASES, ids=[c[1][:60] for c in CASES])
def test_message(write, text: str, message: str, where: str) -> None:
    """ContainerPilot's message verbatim, then (#21) where in the file, when CP's text did not say."""
    path = write(text)
    with pytest.raises(ConfigError) as e:
        load(path, {}, addresses=ADDRS)
    assert str(e.value) == message + where
    assert validate_all(path, {}, addresses=ADDRS)[0] == message + where


def test_missing_config_flag() -> None:
    with pytest.raises(ConfigError, match=r"^-config flag is required$"):
        load(None, {})


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as e:
        load("/xxxx", {})
    assert str(e.value) == "could not read config file: open /xxxx: no such file or directory"


def test_config_from_env(write) -> None:
    path = write(f"{{{C}}}")
    assert load(None, {"CONTAINERPILOT": path}).path == path


def test_file_prefix_is_a_literal_path(write) -> None:
    path = write(f"{{{C}}}")
    with pytest.raises(ConfigError, match="could not read config file: open file://"):
        load("file://" + path, {})


def test_template_error(write) -> None:
    with pytest.raises(ConfigError) as e:
        load(write('{consul: "{{ nope }}"}'), {})
    assert str(e.value) == 'could not apply template to config: template: :1: function "nope" not defined'


# §2.3 JSON5 syntax errors
def test_parse_error_first_char(write) -> None:
    with pytest.raises(ConfigError) as e:
        load(write("<>"), {})
    assert str(e.value).startswith("parse error at line:col [1:1]: ")
    assert str(e.value).endswith("\n    1: <>\n-------^")


def test_parse_error_missing_quote_template(write) -> None:
    with pytest.raises(ConfigError) as e:
        load(write('{"test": {{ .NOPE }}, "consul": "x"}'), {})
    assert str(e.value).startswith("parse error at line:col [1:10]: ")


def test_parse_error_context_lines(write) -> None:
    with pytest.raises(ConfigError) as e:
        load(write('{\n  consul: "x",\n  jobs: [1,,2]\n}\n'), {})
    msg = str(e.value)
    assert msg.startswith("parse error at line:col [3:12]: ")
    assert msg.endswith('\n    2:   consul: "x",\n    3:   jobs: [1,,2]\n' + "-" * 18 + "^")


def test_top_level_not_object(write) -> None:
    with pytest.raises(ConfigError) as e:
        load(write("[1, 2]"), {})
    assert str(e.value) == ("could not parse configuration: json: cannot unmarshal array into Go value of type "
                            "map[string]interface {}")


def test_validate_all_reports_every_error(write) -> None:
    path = write(f'{{{C}, jobs: [{{name: "a", restarts: -1, exec: ""}}, {{name: "b", stopTimeout: "x"}}],'
                 ' watches: [{name: "web"}], logging: {level: "loud"}}')
    errors = validate_all(path, {}, addresses=ADDRS)
    assert errors == [
        J + "job[a].restarts field '-1' invalid: number must be positive integer",
        J + "unable to create job[a].exec: received zero-length argument",
        J + "unable to parse job[b].stopTimeout 'x': time: invalid duration x",
        "unable to parse watches: watch[web].interval must be > 0",
        "Unknown log level 'loud': not a valid logrus Level: \"loud\" (in logging.level)",
    ]
    with pytest.raises(ConfigError) as e:
        load(path, {}, addresses=ADDRS)
    assert e.value.errors == [errors[0]]


def test_validate_all_clean(write) -> None:
    assert validate_all(write(f"{{{C}}}"), {}) == []
