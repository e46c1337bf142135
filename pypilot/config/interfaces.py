"""Interface specs (``interfaces``, §9.2): pick the IP a service advertises.

Specs: ``inet`` / ``inet6`` (first non-loopback address of that family on any interface), ``NAME`` and
``NAME:inet`` / ``NAME:inet6`` (first of that family on NAME; loopback allowed), ``NAME[N]`` (N-th address of
any family on NAME), a CIDR (first address inside it) and ``static:IP``. Candidates are every address of every
interface, up or down, stable-sorted by interface name and then by the 16-byte form of the address (IPv4 as
``::ffff:a.b.c.d``), exactly as ContainerPilot sorted them.

Differences from ContainerPilot, on purpose: interface names may contain ``-`` and ``.`` (``br-1a2b``,
``eth0.100``; CP's ``\\w+`` rejected them), and the no-match error lists the specs as written
(``Specifications: [eth0:inet inet]``) instead of Go's struct dump.

The system's addresses are read (``ifaddrs``: an ioctl and ``/proc/net/if_inet6``) only when they are
actually needed (a job with a ``port``, or telemetry); tests pass an address table instead: an iterable of
``(interface, address)`` pairs.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is ~2-5 ms of PID 1's start-up; mypy reads this name as True
if TYPE_CHECKING:
    import ipaddress
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
                 net: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None, ip: str = "") -> None:
        self.spec, self.kind, self.name, self.v6 = spec, kind, name, v6
        self.index, self.net, self.ip = index, net, ip


def _atoi(s: str) -> bool:
    body = s[1:] if s[:1] in "+-" else s
    return bool(body) and body.isascii() and body.isdigit()


def _parse_one(spec: str) -> _Spec:
    import ipaddress

    if spec == "inet":
        return _Spec(spec, "inet", "*")
    if spec == "inet6":
        return _Spec(spec, "inet", "*", v6=True)
    if spec.startswith("static:"):
        rest = spec[len("static:"):]
        if not _atoi(rest):  # CP: a numeric suffix falls through to the generic "Unable to parse" error
            try:
                ip = ipaddress.ip_address(rest)
            except ValueError:
                raise InterfaceError(f"Unable to parse static ip static: in {spec}") from None
            return _Spec(spec, "static", "static", ip=_ip_str(ip))
    import re  # here, not at import: every exec is decoded with this module, few configs have specs

    m = re.match(_SPEC, spec)
    if m:
        name, index, inet = m.groups()
        if index is not None:
            return _Spec(spec, "index", name, index=int(index))
        return _Spec(spec, "inet", name, v6=inet == "inet6")
    try:
        net = ipaddress.ip_network(spec, strict=False) if "/" in spec else None
    except ValueError:
        net = None
    if net is not None:
        return _Spec(spec, "cidr", net=net)
    raise InterfaceError(f"Unable to parse interface spec: {spec}")


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


def _ip_str(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        return str(mapped)
    return str(ip)


def system_addresses() -> list[tuple[str, str]]:
    """Every (interface, address) pair on this host, IPv4 and IPv6 (IPv6 without a zone)."""
    from .ifaddrs import addresses

    return addresses()


def get_ip(spec_list: Iterable[str] | None, addresses: Addresses | None = None) -> str:
    """The address the first matching spec selects (CP ``services.GetIP``)."""
    import ipaddress

    specs = parse_specs(list(spec_list or ()) or DEFAULT_SPECS)
    table = system_addresses() if addresses is None else list(addresses)
    if not table:
        raise InterfaceError("no network interfaces found")
    cands = []
    for name, addr in table:
        try:
            ip = ipaddress.ip_address(addr.split("%", 1)[0].split("/", 1)[0])
        except ValueError:
            continue
        key16 = ip.packed if ip.version == 6 else b"\0" * 10 + b"\xff\xff" + ip.packed
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
                return _ip_str(ip)
    ips = " ".join(f"{n}:{_ip_str(ip)}" for n, _k, ip in cands)
    return _no_match(specs, ips)


def _match(s: _Spec, index: int, name: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if s.kind == "inet":
        if s.name != "*" and s.name != name:
            return False
        if s.name == "*" and ip.is_loopback:
            return False
        return s.v6 == (ip.version == 6)
    if s.kind == "index":
        return s.name == name and s.index == index
    if s.kind == "cidr":
        assert s.net is not None
        return ip.version == s.net.version and ip in s.net
    return False


def _no_match(specs: list[_Spec], ips: str) -> str:
    raise InterfaceError("none of the interface specifications were able to match\n"
                         f"Specifications: [{' '.join(s.spec for s in specs)}]\nInterfaces IPs: [{ips}]")
