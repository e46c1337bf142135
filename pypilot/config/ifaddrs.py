"""This host's interface addresses, IPv4 and IPv6, from the kernel, with nothing but the stdlib.

PID 1 needs them when a job has a ``port`` (the address it registers) or the config has telemetry. psutil
(what this replaced) costs PID 1 ~2.3 MiB of RSS for this one call (issue #15); here it is two cheap reads:

- IPv4: a netlink ``RTM_GETADDR`` dump (what getifaddrs(3), psutil's source, reads): every interface's IPv4
  addresses, up or down, named by their label (``eth0``, an alias ``eth0:1``); where netlink is refused
  (a seccomp profile), the ``SIOCGIFCONF`` ioctl, which lists the same. Netlink needs only the C ``_socket``;
  the ioctl needs ``array`` (which imports collections, ~10 M instructions before a first spawn) and fcntl;
- IPv6: ``/proc/net/if_inet6`` (the calling process's network namespace): one line per address,
  ``<32 hex digits> <ifindex> <prefix len> <scope> <flags> <name>``; absent when IPv6 is disabled.

Both list addresses in no particular order; ``interfaces.get_ip`` sorts them as ContainerPilot did.
"""

from __future__ import annotations

# the C module: ``socket`` itself (its constants made into enums) would cost ~15 M instructions before the
# first spawn of a config whose services need an address
import _socket as socket

TYPE_CHECKING = False  # mypy reads this name as True
if TYPE_CHECKING:
    from typing import Literal

__all__ = ["addresses", "ipv4_addresses", "ipv6_addresses"]

SIOCGIFCONF = 0x8912
IF_INET6 = "/proc/net/if_inet6"
# <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_addr.h>
AF_NETLINK, NETLINK_ROUTE = 16, 0
NLMSG_ERROR, NLMSG_DONE, RTM_NEWADDR, RTM_GETADDR = 2, 3, 20, 22
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_LOCAL, IFA_LABEL = 2, 3


def addresses() -> list[tuple[str, str]]:
    """Every (interface, address) pair: IPv4 then IPv6, addresses in their usual text form."""
    return ipv4_addresses() + ipv6_addresses()


def ipv4_addresses() -> list[tuple[str, str]]:
    """(label, dotted quad) of every IPv4 address (netlink; ``SIOCGIFCONF`` where netlink is refused)."""
    try:
        return ipv4_netlink()
    except OSError:
        return ipv4_ioctl()


def ipv4_netlink() -> list[tuple[str, str]]:
    """(label, address) of every IPv4 address, from a netlink ``RTM_GETADDR`` dump: the address is the
    local one (``IFA_LOCAL``; ``IFA_ADDRESS`` is a point-to-point link's peer), as ``SIOCGIFCONF`` gives.
    An error (netlink refused, a failed dump) is an OSError."""
    import sys

    order = sys.byteorder
    # struct nlmsghdr (length, type, flags, sequence, port id), then struct ifaddrmsg (family, 7 bytes of 0)
    request = b"".join((
        (16 + 8).to_bytes(4, order), RTM_GETADDR.to_bytes(2, order),
        (NLM_F_REQUEST | NLM_F_DUMP).to_bytes(2, order), (1).to_bytes(4, order), bytes(4),
        bytes((socket.AF_INET,)), bytes(7)))
    out: list[tuple[str, str]] = []
    sock = socket.socket(AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    try:
        sock.settimeout(2.0)  # the kernel answers at once; were it not to, the ioctl (PID 1 never blocks)
        sock.send(request)
        while True:
            data = sock.recv(1 << 16)  # a dump's datagrams are at most 32 KiB
            if not data:
                raise OSError("netlink: the address dump ended early")
            off = 0
            while off + 16 <= len(data):
                length = int.from_bytes(data[off:off + 4], order)
                kind = int.from_bytes(data[off + 4:off + 6], order)
                if length < 16 or kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    code = -int.from_bytes(data[off + 16:off + 20], order, signed=True)
                    raise OSError(code, f"netlink: RTM_GETADDR failed (errno {code})")
                if kind == RTM_NEWADDR and length >= 24 and data[off + 16] == socket.AF_INET:
                    out.append(_ipv4_message(data[off + 24:off + length],
                                             int.from_bytes(data[off + 20:off + 24], order), order))
                off += (length + 3) & ~3
    finally:
        sock.close()


def _ipv4_message(attrs: bytes, index: int, order: Literal["little", "big"]) -> tuple[str, str]:
    """(label, local address) from an ``RTM_NEWADDR`` message's attributes (struct rtattr: length, type)."""
    found: dict[int, bytes] = {}
    off = 0
    while off + 4 <= len(attrs):
        length = int.from_bytes(attrs[off:off + 2], order)
        if length < 4:
            break
        found[int.from_bytes(attrs[off + 2:off + 4], order)] = attrs[off + 4:off + length]
        off += (length + 3) & ~3
    address = found.get(IFA_LOCAL, bytes(4))  # ifa_local, as SIOCGIFCONF gives it (the kernel omits a 0)
    label = found.get(IFA_LABEL, b"").split(b"\0", 1)[0]
    if label:
        name = label.decode("utf-8", "replace")
    else:  # the kernel labels every IPv4 address (with its interface's name by default)
        try:
            name = socket.if_indextoname(index)
        except OSError:
            name = ""
    return name, socket.inet_ntop(socket.AF_INET, address[:4])


def ipv4_ioctl() -> list[tuple[str, str]]:
    """(label, dotted quad) of every IPv4 address (``SIOCGIFCONF``)."""
    import array
    import fcntl
    import struct

    pointer = struct.calcsize("P")
    # struct ifreq: a 16-byte name, then a union whose largest member is struct ifmap
    # (two unsigned longs, a short, three chars: 24 bytes on LP64, 16 on ILP32)
    ifreq = 16 + (24 if pointer == 8 else 16)
    ifconf = "iL" if pointer == 4 else "iQ"  # int ifc_len; (padding); char *ifc_buf
    size = 32 * ifreq
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        while True:
            buf = array.array("B", bytes(size))
            address, _ = buf.buffer_info()
            request = struct.pack(ifconf, size, address)
            filled = struct.unpack(ifconf, fcntl.ioctl(sock.fileno(), SIOCGIFCONF, request))[0]
            if filled < size:  # a full buffer may have been cut short: ask again with twice the room
                break
            size *= 2
    finally:
        sock.close()
    raw = buf.tobytes()
    out = []
    for off in range(0, filled - ifreq + 1, ifreq):
        name = raw[off:off + 16].split(b"\0", 1)[0].decode("utf-8", "replace")
        family = struct.unpack_from("H", raw, off + 16)[0]  # sockaddr_in: family, port, address
        if family == socket.AF_INET:
            out.append((name, socket.inet_ntop(socket.AF_INET, raw[off + 20:off + 24])))
    return out


def ipv6_addresses(path: str = IF_INET6) -> list[tuple[str, str]]:
    """(interface, address) of every IPv6 address (``/proc/net/if_inet6``); none if it cannot be read."""
    try:
        with open(path, "rb") as f:  # bytes: a text file would import encodings.ascii (~1 M instructions)
            lines = f.read().decode("ascii", "replace").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or len(fields[0]) != 32:
            continue
        try:
            packed = bytes.fromhex(fields[0])
        except ValueError:
            continue
        out.append((fields[5], socket.inet_ntop(socket.AF_INET6, packed)))
    return out
