"""Interface specs (``interfaces``, §9.2): pick the IP a service advertises.

Specs: ``inet`` / ``inet6`` (first non-loopback address of that family on any interface), ``NAME`` and
``NAME:inet`` / ``NAME:inet6`` (first of that family on NAME; loopback allowed), ``NAME[N]`` (N-th address of
any family on NAME), a CIDR (first address inside it) and ``static:IP``. Candidates are every address of every
interface, up or down, stable-sorted by interface name and then by the 16-byte form of the address (IPv4 as
``::ffff:a.b.c.d``), exactly as ContainerPilot sorted them.

Differences from ContainerPilot, on purpose: interface names may contain ``-`` and ``.`` (``br-1a2b``,
``eth0.100``; CP's ``\\w+`` rejected them), and the no-match error lists the specs as written
(``Specifications: [eth0:inet inet]``) instead of Go's struct dump.

The system's addresses are read (``ifaddrs``: netlink and ``/proc/net/if_inet6``) only when they are
actually needed (a job with a ``port``, or telemetry); tests pass an address table instead: an iterable of
``(interface, address)`` pairs.

Addresses are read with libc's ``inet_pton`` (the C ``_socket``) and written here, in Go's (and
``ipaddress``') form: ``ipaddress`` (with functools and collections, ~20 M instructions before the first
spawn of a service config, issue #15) is imported only for what libc does not read but ``ipaddress`` did
(an IPv6 zone ``fe80::1%eth0``, a CIDR with a netmask ``10.0.0.0/255.0.0.0``) and to reject what neither
reads.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is ~2-5 ms of PID 1's start-up; mypy reads this name as True
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

__all__ = ["DEFAULT_SPECS", "InterfaceError", "get_ip", "parse_specs", "system_addresses", "to_strings"]

DEFAULT_SPECS = ("eth0:inet", "inet")
if TYPE_CHECKING:
    Addresses = Iterable[tuple[str, str]]

# CP: ^(?P<Name>\w+)(?:\[(\d+)\]|:(inet6?))?$ ; names may also hold '-' and '.'
# (but must start like a name, so a bare IP is not taken for one)
_SPEC = r"^([A-Za-z_][\w.\-]*)(?:\[(\d+)\]|:(inet6?))?$"


class InterfaceError(ValueError):
    """No usable spec or address; the message is ContainerPilot's."""


def to_strings(raw: Any) -> list[str] | None:
    """CP's ``decode.ToStrings``: a string becomes a one-element list, list elements are formatted with %v."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list):
        if all(isinstance(e, str) for e in raw):  # every exec array: no need of Go's %v (the template engine)
            return list(raw) or None
        from .template import go_value

        out = [e if isinstance(e, str) else ("<nil>" if e is None else go_value(_num(e))) for e in raw]
        return out or None
    from .weak import go_type

    raise InterfaceError(f"unexpected argument type: {go_type(raw)}")


def _num(v: Any) -> Any:
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


class _Spec:
    __slots__ = ("index", "ip", "kind", "name", "net", "spec", "v6")

    def __init__(self, spec: str, kind: str, name: str = "", v6: bool = False, index: int = 0,
                 net: tuple[int, int, int] | None = None, ip: str = "") -> None:
        self.spec, self.kind, self.name, self.v6 = spec, kind, name, v6
        self.index, self.net, self.ip = index, net, ip  # net: (version, network, netmask) as integers


def _atoi(s: str) -> bool:
    body = s[1:] if s[:1] in "+-" else s
    return bool(body) and body.isascii() and body.isdigit()


def _parse_one(spec: str) -> _Spec:
    if spec == "inet":
        return _Spec(spec, "inet", "*")
    if spec == "inet6":
        return _Spec(spec, "inet", "*", v6=True)
    if spec.startswith("static:"):
        rest = spec[len("static:"):]
        if not _atoi(rest):  # CP: a numeric suffix falls through to the generic "Unable to parse" error
            ip = _address(rest)
            if ip is None:
                raise InterfaceError(f"Unable to parse static ip static: in {spec}")
            return _Spec(spec, "static", "static", ip=_text(ip))
    named = _named(spec)
    if named is not None:
        name, index, inet = named
        if index is not None:
            return _Spec(spec, "index", name, index=int(index))
        return _Spec(spec, "inet", name, v6=inet == "inet6")
    net = _network(spec) if "/" in spec else None
    if net is not None:
        return _Spec(spec, "cidr", net=net)
    raise InterfaceError(f"Unable to parse interface spec: {spec}")


def _named(spec: str) -> tuple[str, str | None, str | None] | None:
    """``re.match(_SPEC, spec).groups()`` (or None), without ``re`` (imported by no first spawn): a name of
    ``[A-Za-z_][\\w.\\-]*``, then nothing, ``[digits]``, ``:inet`` or ``:inet6``; ``$`` also matches before
    a final newline."""
    s = spec[:-1] if spec.endswith("\n") else spec
    if not s or not (s[0] == "_" or (s[0].isascii() and s[0].isalpha())):
        return None
    end = 1
    while end < len(s) and (s[end].isalnum() or s[end] in "_.-"):  # \w: str.isalnum() or "_"
        end += 1
    name, rest = s[:end], s[end:]
    if not rest:
        return name, None, None
    if rest in (":inet", ":inet6"):
        return name, None, rest[1:]
    digits = rest[1:-1]
    if rest[0] == "[" and rest[-1] == "]" and digits and digits.isdecimal():  # \d: Unicode category Nd
        return name, digits, None
    return None


# an address: (version, the packed bytes, the text ipaddress gave it or None: the text is _text's)
if TYPE_CHECKING:
    IP = tuple[int, bytes, str | None]


def _address(text: str) -> IP | None:
    """``text`` read as ``ipaddress.ip_address`` reads it; None if it is not an address."""
    from _socket import AF_INET, AF_INET6, inet_pton

    try:
        return 4, inet_pton(AF_INET, text), None
    except (OSError, ValueError):
        pass
    try:
        return 6, inet_pton(AF_INET6, text), None
    except (OSError, ValueError):
        pass
    import ipaddress  # what libc does not read but ipaddress does (a zone), or an error

    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return ip.version, ip.packed, _ip_str(ip)


def _network(spec: str) -> tuple[int, int, int] | None:
    """``ipaddress.ip_network(spec, strict=False)`` as (version, network, netmask); None if not one."""
    addr, _, prefix = spec.partition("/")
    if prefix.isascii() and prefix.isdigit():
        ip = _address(addr)
        if ip is not None and ip[2] is None and int(prefix) <= (32 if ip[0] == 4 else 128):
            bits = 32 if ip[0] == 4 else 128
            mask = ((1 << bits) - 1) ^ ((1 << (bits - int(prefix))) - 1)
            return ip[0], int.from_bytes(ip[1], "big") & mask, mask
    import ipaddress  # a netmask (10.0.0.0/255.0.0.0), a zone, or an error

    try:
        net = ipaddress.ip_network(spec, strict=False)
    except ValueError:
        return None
    return net.version, int(net.network_address), int(net.netmask)


def _ip_str(ip: Any) -> str:
    """An ``ipaddress`` address as CP writes it: an IPv4-mapped IPv6 address as its IPv4 address."""
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        return str(mapped)
    return str(ip)


_MAPPED = b"\0" * 10 + b"\xff\xff"


def _text(ip: IP) -> str:
    """An address as Go's ``net.IP.String`` (and ``_ip_str``) writes it: dotted IPv4, also for an IPv4-mapped
    IPv6 address; otherwise RFC 5952: lowercase hex without leading zeros, the first longest run of two or
    more zero groups as ``::``. Not libc's ``inet_ntop``: glibc writes ``::1.2.3.4``, musl breaks ties
    differently."""
    version, packed, text = ip
    if text is not None:
        return text
    if version == 6 and packed[:12] == _MAPPED:
        packed = packed[12:]
    if len(packed) == 4:
        return f"{packed[0]}.{packed[1]}.{packed[2]}.{packed[3]}"
    groups = [packed[i] << 8 | packed[i + 1] for i in range(0, 16, 2)]
    best = length = run = 0
    for i, g in enumerate(groups):
        run = run + 1 if g == 0 else 0
        if run > length:
            best, length = i - run + 1, run
    hexes = [f"{g:x}" for g in groups]
    if length < 2:
        return ":".join(hexes)
    return ":".join(hexes[:best]) + "::" + ":".join(hexes[best + length:])


def parse_specs(specs: Iterable[str]) -> list[_Spec]:
    """Parse every spec; any invalid one fails the list, with all the errors joined by newlines (CP)."""
    out, errors = [], []
    for s in specs:
        try:
            out.append(_parse_one(s))
        except InterfaceError as e:
            errors.append(str(e))
    if errors:
        raise InterfaceError("\n".join(errors))
    return out


def system_addresses() -> list[tuple[str, str]]:
    """Every (interface, address) pair on this host, IPv4 and IPv6 (IPv6 without a zone)."""
    from .ifaddrs import addresses

    return addresses()


def get_ip(spec_list: Iterable[str] | None, addresses: Addresses | None = None) -> str:
    """The address the first matching spec selects (CP ``services.GetIP``)."""
    specs = parse_specs(list(spec_list or ()) or DEFAULT_SPECS)
    table = system_addresses() if addresses is None else list(addresses)
    if not table:
        raise InterfaceError("no network interfaces found")
    cands = []
    for name, addr in table:
        ip = _address(addr.split("%", 1)[0].split("/", 1)[0])
        if ip is None:
            continue
        key16 = ip[1] if ip[0] == 6 else _MAPPED + ip[1]
        cands.append((name, key16, ip))
    cands.sort(key=lambda c: (c[0], c[1]))
    for s in specs:
        if s.kind == "static":  # CP: a static spec wins as soon as it is reached in the list
            return s.ip
        index, iface = 0, None
        for name, _key, ip in cands:
            if name != iface:
                index, iface = 0, name
            else:
                index += 1
            if _match(s, index, name, ip):
                return _text(ip)
    ips = " ".join(f"{n}:{_text(ip)}" for n, _k, ip in cands)
    return _no_match(specs, ips)


_LOOPBACK6 = b"\0" * 15 + b"\1"


def _match(s: _Spec, index: int, name: str, ip: IP) -> bool:
    if s.kind == "inet":
        if s.name != "*" and s.name != name:
            return False
        if s.name == "*" and (ip[1][0] == 127 if ip[0] == 4 else ip[1] == _LOOPBACK6):  # is_loopback
            return False
        return s.v6 == (ip[0] == 6)
    if s.kind == "index":
        return s.name == name and s.index == index
    if s.kind == "cidr":
        assert s.net is not None
        version, network, netmask = s.net
        return ip[0] == version and int.from_bytes(ip[1], "big") & netmask == network
    return False


def _no_match(specs: list[_Spec], ips: str) -> str:
    raise InterfaceError("none of the interface specifications were able to match\n"
                         f"Specifications: [{' '.join(s.spec for s in specs)}]\nInterfaces IPs: [{ips}]")
