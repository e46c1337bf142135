"""config.interfaces reads and writes addresses without ``ipaddress`` (issue #15: it and its functools and
collections cost a service config's first spawn ~20 M instructions), and ``re`` (interface names): these
pin that it reads, writes and matches exactly what ``ipaddress`` and the regex did, on tricky cases and on
a seeded corpus of near-misses."""

from __future__ import annotations

import ipaddress
import random
import re

import pytest

from pypilot.config import interfaces
from pypilot.config.interfaces import _SPEC, _address, _ip_str, _named, _network, _text

TRICKY_V6 = [
    "::", "::1", "1::", "::ffff:1.2.3.4", "::ffff:0.0.0.0", "::ffff:127.0.0.1", "::1.2.3.4", "::0.1.0.0",
    "::ffff:0:1.2.3.4", "64:ff9b::1.2.3.4", "0:0:1:0:0:1:1:1", "1:0:0:1:0:0:1:1", "1:0:0:0:1:0:0:0",
    "0:1:0:1:0:1:0:1", "1:0:1:0:1:0:1:0", "1:2:3:4:5:6:7:0", "0:2:3:4:5:6:7:8", "1:2:3:0:5:6:7:8",
    "1:0:0:4:5:6:7:8", "2001:db8::", "2001:DB8:0:0:0:0:0:1", "2001:0db8:0000:0000:0001:0000:0000:0001",
    "fe80::fc:ff:fe00:1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::ffff:ffff:ffff", "::fffe:1.2.3.4",
    "0:0:0:0:0:ffff:102:304", "::ffff:1:2", "1::ffff:1.2.3.4", "fdc6:238c:c4bc::1", "0:0:0:0:0:0:0:1",
]


def _reference(text: str) -> tuple[int, bytes, str] | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return ip.version, ip.packed, _ip_str(ip)


def _ours(text: str) -> tuple[int, bytes, str] | None:
    ip = _address(text)
    return None if ip is None else (ip[0], ip[1], _text(ip))


@pytest.mark.parametrize("text", TRICKY_V6)
def test_tricky_ipv6_addresses_are_written_as_ipaddress_wrote_them(text: str) -> None:
    assert _ours(text) == _reference(text)
    assert _address(text) is not None and _address(text)[2] is None  # type: ignore[index]  # libc read it


def test_ipv4_mapped_is_written_dotted_and_compatible_in_hex() -> None:
    """CP (Go's net.IP.String) writes ``::ffff:a.b.c.d`` as ``a.b.c.d``; glibc's inet_ntop would write
    ``::1.2.3.4``, which neither Go nor ipaddress does."""
    assert _ours("::ffff:1.2.3.4") == (6, bytes(10) + b"\xff\xff\x01\x02\x03\x04", "1.2.3.4")
    assert _ours("::1.2.3.4") == (6, bytes(12) + b"\x01\x02\x03\x04", "::102:304")
    assert _ours("0:0:1:0:0:1:1:1")[2] == "::1:0:0:1:1:1"  # type: ignore[index]  # the first longest run
    assert _ours("1:2:3:0:5:6:7:8")[2] == "1:2:3:0:5:6:7:8"  # type: ignore[index]  # one 0 group stays


def test_every_kind_of_zero_run_is_written_as_ipaddress_writes_it() -> None:
    """Every pattern of zero and non-zero groups (2^8), with random non-zero values, and random addresses."""
    rng = random.Random(15)
    for pattern in range(256):
        for _ in range(4):
            groups = [rng.choice((1, 0xF, 0xA0, 0xFFFF, rng.randrange(1, 0x10000))) if pattern >> i & 1 else 0
                      for i in range(8)]
            packed = b"".join(g.to_bytes(2, "big") for g in groups)
            assert _text((6, packed, None)) == _ip_str(ipaddress.IPv6Address(packed)), groups
    for _ in range(2000):
        packed = rng.randbytes(16)
        assert _text((6, packed, None)) == _ip_str(ipaddress.IPv6Address(packed))
        mapped = bytes(10) + b"\xff\xff" + packed[:4]
        assert _text((6, mapped, None)) == str(ipaddress.IPv4Address(packed[:4]))
        assert _text((4, packed[:4], None)) == str(ipaddress.IPv4Address(packed[:4]))


def _near_misses(seeds: list[str], alphabet: str, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = list(seeds)
    for _ in range(n):
        s = list(rng.choice(seeds))
        for _ in range(rng.randrange(1, 4)):
            op, k = rng.randrange(3), rng.randrange(len(s) + 1)
            if op == 0:
                s.insert(k, rng.choice(alphabet))
            elif op == 1 and s:
                del s[min(k, len(s) - 1)]
            elif s:
                s[min(k, len(s) - 1)] = rng.choice(alphabet)
        out.append("".join(s))
    return out


ADDRESS_SEEDS = [*TRICKY_V6, "1.2.3.4", "0.0.0.0", "255.255.255.255", "10.0.0.1", "127.0.0.1", "01.2.3.4",
                 "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.04", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::",
                 "::2:3:4:5:6:7:8", "1:2:3:4:5:6:1.2.3.4", "1::2:3:4:5:6:7:8", ":1::", "1:::2", "12345::",
                 "fe80::1%eth0", "fe80::1%", "::ffff:1.2.3.4%lo", " 1.2.3.4", "1.2.3.4\n", "", ":", "1.2.3.٤",
                 "1:2:3:4:5:6:7:8:9", "::ffff:1.2.3", "::ffff:1.2.3.4.5", "1.2.3.4::", "abcd::ef:1.2.3.4"]


def test_addresses_are_read_as_ipaddress_read_them() -> None:
    """Valid or not, as ``ipaddress.ip_address``: the same version, bytes and text (a zone kept)."""
    for text in _near_misses(ADDRESS_SEEDS, "0123456789abcdefABCDEF:.%/ x\n٣", 20000, 15):
        assert _ours(text) == _reference(text), repr(text)


def _reference_net(spec: str) -> tuple[int, int, int] | None:
    try:
        net = ipaddress.ip_network(spec, strict=False)
    except ValueError:
        return None
    return net.version, int(net.network_address), int(net.netmask)


NETWORK_SEEDS = ["10.0.0.0/8", "10.0.0.0/16", "10.2.3.4/8", "0.0.0.0/0", "1.2.3.4/32", "1.2.3.4/33",
                 "fdc6:238c:c4bc::/48", "::/0", "::1/128", "::1/129", "::ffff:10.0.0.0/104", "10.0.0.0/08",
                 "10.0.0.0/255.0.0.0", "10.0.0.0/0.255.255.255", "10.0.0.0/255.0.255.0", "10.0.0.0/+8",
                 "10.0.0.0/ 8", "10.0.0.0/8/8", "fe80::%eth0/64", "10.0.0.0/", "/8", "10.0.0.0/٨",
                 "1.2.3.4/64"]


def test_networks_are_read_as_ip_network_read_them() -> None:
    for spec in _near_misses(NETWORK_SEEDS, "0123456789abcdef:./%+ ٣", 20000, 16):
        if "/" in spec:
            assert _network(spec) == _reference_net(spec), repr(spec)


NAME_SEEDS = ["eth0", "eth0:inet", "eth0:inet6", "eth0[1]", "eth0[12]", "br-1a2b", "eth0.100:inet", "_x",
              "lo", "a", "eth0\n", "eth0:inet\n", "eth0[1]\n", "eth0\n\n", "0eth", "-a", ".a", "eth0:inet4",
              "eth0[]", "eth0[1", "eth0[1]]", "eth0[-1]", "eth0[٣]", "eth٣", "ethé[1]", "static:1", "inet",
              "K", "ſ", "é", "10.0.0.1", "eth0:1", "eth0[1]:inet"]


def test_interface_names_are_read_as_the_regex_read_them() -> None:
    for spec in _near_misses(NAME_SEEDS, "ab_09.-:[]\n٣éK ", 20000, 17):
        m = re.match(_SPEC, spec)
        assert _named(spec) == (m.groups() if m else None), repr(spec)
    for code in range(0x10000):  # \w and \d over the whole BMP: str.isalnum() or "_", str.isdecimal()
        c = chr(code)
        for spec in (c, "a" + c, f"a[{c}]", f"a[1{c}]"):
            m = re.match(_SPEC, spec)
            assert _named(spec) == (m.groups() if m else None), repr(spec)


def test_static_and_cidr_specs_ipaddress_alone_reads_are_still_read() -> None:
    """What libc does not read but ipaddress did: a zone in a static spec, a CIDR written with a netmask."""
    table = [("eth0", "10.2.0.1"), ("eth1", "10.0.0.100")]
    assert interfaces.get_ip(["static:fe80::1%eth0"], table) == "fe80::1%eth0"
    assert interfaces.get_ip(["10.0.0.0/255.255.0.0"], table) == "10.0.0.100"
    assert interfaces.get_ip(["10.0.0.0/0.0.255.255"], table) == "10.0.0.100"
    assert interfaces.get_ip(["static:::ffff:10.1.2.3"], table) == "10.1.2.3"


def test_the_error_lists_every_candidate_in_cps_form() -> None:
    table = [("eth0", "::ffff:10.1.2.3"), ("eth0", "2001:0db8:0:0:1:0:0:1"), ("lo", "::1"),
             ("lo", "127.0.0.1")]
    with pytest.raises(interfaces.InterfaceError) as e:
        interfaces.get_ip(["eth1", "inet"], table)
    assert str(e.value).endswith("\nInterfaces IPs: [eth0:10.1.2.3 eth0:2001:db8::1:0:0:1 lo:::1 "
                                 "lo:127.0.0.1]")


def test_loopback_and_family_as_ipaddress_saw_them() -> None:
    """``inet`` skips 127.0.0.0/8 and ``inet6`` ``::1``; an IPv4-mapped address is IPv6 (as before)."""
    assert interfaces.get_ip(["inet"], [("lo", "127.1.2.3"), ("eth0", "10.0.0.1")]) == "10.0.0.1"
    assert interfaces.get_ip(["inet6"], [("lo", "::1"), ("eth0", "::2")]) == "::2"
    assert interfaces.get_ip(["inet6"], [("eth0", "::ffff:127.0.0.1")]) == "127.0.0.1"
    assert interfaces.get_ip(["10.0.0.0/8", "eth0"], [("eth0", "::ffff:10.0.0.1"), ("eth0", "10.9.0.1")]) \
        == "10.9.0.1"
