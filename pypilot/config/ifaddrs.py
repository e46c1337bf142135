"""This host's interface addresses, IPv4 and IPv6, from the kernel, with nothing but the stdlib.

PID 1 needs them when a job has a ``port`` (the address it registers) or the config has telemetry. psutil
(what this replaced) costs PID 1 ~2.3 MiB of RSS for this one call (issue #15); here it is two cheap reads:

- IPv4: the ``SIOCGIFCONF`` ioctl on a datagram socket: every interface's IPv4 addresses, up or down,
  named by their label (``eth0``, an alias ``eth0:1``), which is what getifaddrs(3) (psutil) reports;
- IPv6: ``/proc/net/if_inet6`` (the calling process's network namespace): one line per address,
  ``<32 hex digits> <ifindex> <prefix len> <scope> <flags> <name>``; absent when IPv6 is disabled.

Both list addresses in no particular order; ``interfaces.get_ip`` sorts them as ContainerPilot did.
"""

from __future__ import annotations

# the C module: ``socket`` itself (its constants made into enums) would cost ~15 M instructions before the
# first spawn of a config whose services need an address
import _socket as socket

__all__ = ["addresses", "ipv4_addresses", "ipv6_addresses"]

SIOCGIFCONF = 0x8912
IF_INET6 = "/proc/net/if_inet6"


def addresses() -> list[tuple[str, str]]:
    """Every (interface, address) pair: IPv4 then IPv6, addresses in their usual text form."""
    return ipv4_addresses() + ipv6_addresses()


def ipv4_addresses() -> list[tuple[str, str]]:
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
        with open(path, encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
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
