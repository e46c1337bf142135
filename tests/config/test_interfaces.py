"""Interface specs (§9.2) against an injected address table: CP's unit-test goldens, plus the names CP
rejected."""

from __future__ import annotations

import pytest

from pypilot.config import ip_env_name, ip_var, load, pid_var
from pypilot.config.interfaces import InterfaceError, get_ip, system_addresses

from .conftest import ADDRS

GOLDEN = [
    (["eth0"], "10.2.0.1"),
    (["eth0:inet"], "10.2.0.1"),
    (["eth0[1]"], "192.168.1.100"),
    (["10.0.0.0/16"], "10.0.0.100"),
    (["10.0.0.0/8"], "10.2.0.1"),
    (["inet"], "10.2.0.1"),
    (["inet6"], "fdc6:238c:c4bc::1"),
    (["eth3", "fdc6:238c:c4bc::/48", "inet", "inet6"], "fdc6:238c:c4bc::1"),
    (["lo"], "127.0.0.1"),
    (["lo:inet6"], "::1"),
    (["lo[0]"], "::1"),  # ::1 sorts before ::ffff:127.0.0.1
    (["static:192.0.2.7", "eth0"], "192.0.2.7"),
    (["static:2001:db8::1"], "2001:db8::1"),
    (["eth9", "eth1"], "10.0.0.100"),
    (None, "10.2.0.1"),  # default eth0:inet, inet
]


@pytest.mark.parametrize(("specs", "ip"), GOLDEN)
def test_golden(specs: list[str] | None, ip: str) -> None:
    assert get_ip(specs, ADDRS) == ip


@pytest.mark.parametrize("specs", [["eth0:inet6"], ["eth0[2]"]])
def test_no_match(specs: list[str]) -> None:
    with pytest.raises(InterfaceError, match=r"^none of the interface specifications were able to match\n"):
        get_ip(specs, ADDRS)


def test_only_loopback() -> None:
    for spec in ("inet", "inet6"):
        with pytest.raises(InterfaceError):
            get_ip([spec], [("lo", "127.0.0.1"), ("lo", "::1")])


@pytest.mark.parametrize(("spec", "msg"), [("static:1", "Unable to parse interface spec: static:1"),
                                           ("static:x", "Unable to parse static ip static: in static:x"),
                                           ("eth0:inet4", "Unable to parse interface spec: eth0:inet4"),
                                           ("10.0.0.1", "Unable to parse interface spec: 10.0.0.1")])
def test_bad_specs(spec: str, msg: str) -> None:
    with pytest.raises(InterfaceError) as e:
        get_ip([spec], ADDRS)
    assert str(e.value) == msg


def test_names_with_dash_and_dot_fixed() -> None:
    table = [*ADDRS, ("br-1a2b", "172.18.0.2"), ("eth0.100", "10.100.0.5")]
    assert get_ip(["br-1a2b"], table) == "172.18.0.2"
    assert get_ip(["eth0.100:inet"], table) == "10.100.0.5"


def test_job_ip_resolved_at_load(write) -> None:
    cfg = load(write('{consul: "c:1", jobs: [{name: "my-app", port: 80, interfaces: ["eth1"], '
                     "health: {interval: 1, ttl: 1}}]}"), {}, addresses=ADDRS)
    assert cfg.jobs[0].ip == "10.0.0.100"
    assert ip_var(cfg.jobs[0].name) == "CONTAINERPILOT_MY_APP_IP"


def test_env_names() -> None:
    assert pid_var("/bin/test-Case--now.sh") == "CONTAINERPILOT_TEST_CASE_NOW_PID"
    assert pid_var("my-app") == "CONTAINERPILOT_MY_APP_PID"
    assert pid_var("check.web") == "CONTAINERPILOT_CHECK_PID"
    assert ip_env_name("containerpilot") == "CONTAINERPILOT"


def test_system_addresses_has_loopback() -> None:
    assert any(ip in ("127.0.0.1", "::1") for _name, ip in system_addresses())


def test_psutil_not_imported_without_ports(write) -> None:
    import subprocess
    import sys

    path = write('{consul: "c:1", jobs: [{name: "a", exec: "x"}]}')
    code = ("import sys; from pypilot.config import load; load(sys.argv[1], {}); "
            "print('psutil' in sys.modules, 'pypilot.config.template' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_job_with_a_port_resolves_its_ip_from_the_host_without_psutil(write) -> None:
    """Issue #15: psutil cost PID 1 ~2.3 MiB for this one lookup; the kernel is read directly now."""
    import subprocess
    import sys

    path = write('{consul: "c:1", jobs: [{name: "app", exec: "x", port: 80, interfaces: ["lo"], '
                 "health: {interval: 1, ttl: 1}}]}")
    code = ("import sys; from pypilot.config import load; c = load(sys.argv[1], {}); "
            "print(c.jobs[0].ip, 'psutil' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, check=True)
    assert out.stdout.split() in (["127.0.0.1", "False"], ["::1", "False"])


NETNS_SETUP = """
set -e
ip link set lo up
ip link add d0 type veth peer name br-1a2b
ip addr add 10.9.9.9/24 dev d0
ip addr add 10.9.9.10/24 dev d0 label d0:1
ip -6 addr add fd01::5/64 dev d0 nodad
ip addr add 172.18.0.2/16 dev br-1a2b
ip link set br-1a2b up
for i in $(seq 1 70); do ip addr add 10.5.$i.1/32 dev lo; done
exec "$@"
"""


@pytest.mark.timeout(60)
def test_system_addresses_are_getifaddrs_ones_down_links_labels_and_more_than_a_buffer(tmp_path) -> None:
    """The ioctl + /proc reading gives what getifaddrs(3) gives (psutil, the previous source): addresses of
    a link that is down, an alias label (d0:1), IPv6, and 70+ IPv4 addresses (past the first ioctl buffer),
    in a network namespace of the test's own."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    psutil = pytest.importorskip("psutil")
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root, unshare and ip(8) for a network namespace")
    code = ("import json, socket, psutil; "
            "from pypilot.config.ifaddrs import addresses, ipv4_ioctl, ipv4_netlink; "
            "ref = [(n, a.address.split('%')[0]) for n, l in psutil.net_if_addrs().items() for a in l "
            "if a.family in (socket.AF_INET, socket.AF_INET6)]; "
            "print(json.dumps([addresses(), ref, ipv4_netlink(), ipv4_ioctl()]))")
    script = tmp_path / "setup.sh"
    script.write_text(NETNS_SETUP)
    out = subprocess.run(["unshare", "-n", "sh", str(script), sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=50)
    if out.returncode != 0 and "veth" in out.stderr:
        pytest.skip(f"no veth links here: {out.stderr.strip()[:200]}")
    assert out.returncode == 0, out.stderr
    ours, ref, netlink, ioctl = (sorted(map(tuple, x)) for x in json.loads(out.stdout))
    assert ours == ref
    assert netlink == ioctl and len(netlink) == 74  # the netlink dump (3 datagrams here) and the ioctl agree
    assert {("d0", "10.9.9.9"), ("d0:1", "10.9.9.10"), ("d0", "fd01::5"), ("br-1a2b", "172.18.0.2"),
            ("lo", "10.5.70.1"), ("lo", "::1")} <= set(ours)
    assert len(ours) == 76
    assert psutil is not None


def test_ipv6_table_lines_are_parsed_and_bad_ones_skipped(tmp_path) -> None:
    from pypilot.config.ifaddrs import ipv6_addresses

    table = tmp_path / "if_inet6"
    table.write_text("00000000000000000000000000000001 01 80 10 80       lo\n"
                     "fe8000000000000000fc00fffe000001 04 40 20 80     eth0\n"
                     "garbage line\n"
                     "zz000000000000000000000000000001 01 80 10 80       lo\n")
    assert ipv6_addresses(str(table)) == [("lo", "::1"), ("eth0", "fe80::fc:ff:fe00:1")]
    assert ipv6_addresses(str(tmp_path / "absent")) == []  # IPv6 disabled: no addresses, no error


def test_ipv4_from_netlink_is_what_the_ioctl_gives_and_the_ioctl_is_the_fallback(monkeypatch) -> None:
    """Netlink (only the C _socket) is read first; where it is refused (a seccomp profile), SIOCGIFCONF."""
    from pypilot.config import ifaddrs

    netlink = ifaddrs.ipv4_netlink()
    assert sorted(netlink) == sorted(ifaddrs.ipv4_ioctl())
    assert sorted(ifaddrs.ipv4_addresses()) == sorted(netlink)
    monkeypatch.setattr(ifaddrs, "AF_NETLINK", -1)  # socket() fails: as if netlink were refused
    with pytest.raises(OSError):
        ifaddrs.ipv4_netlink()
    assert sorted(ifaddrs.ipv4_addresses()) == sorted(netlink)


def test_a_netlink_message_without_a_label_is_named_after_its_interface() -> None:
    """The kernel labels every IPv4 address; were one not labelled, its interface's name would do."""
    import sys

    from pypilot.config.ifaddrs import _ipv4_message

    order = sys.byteorder
    local = (8).to_bytes(2, order) + (2).to_bytes(2, order) + bytes((10, 1, 2, 3))
    peer = (8).to_bytes(2, order) + (1).to_bytes(2, order) + bytes((10, 9, 9, 9))
    label = (11).to_bytes(2, order) + (3).to_bytes(2, order) + b"lo:7\0" + b"\0"
    assert _ipv4_message(peer + local + label, 1, order) == ("lo:7", "10.1.2.3")
    assert _ipv4_message(local, 1, order) == ("lo", "10.1.2.3")  # ifindex 1: lo
    assert _ipv4_message(peer, 1, order) == ("lo", "0.0.0.0")  # no IFA_LOCAL: ifa_local is 0 (SIOCGIFCONF)
