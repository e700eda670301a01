"""Which addresses a caller-named host may make a service connect to.

A did:web host, a handle's `/.well-known` host, a push endpoint: each is
chosen by whoever sends the request, so a service that connected wherever
it was told could be made to probe or POST into its operator's own network
(SSRF). Services check the address they actually connect to with
`is_public_address`, after resolving a name themselves (so DNS rebinding
cannot swap it for another), and refuse literal non-public hosts up front
with `literal_refusal`. `HEARTH_ALLOW_PRIVATE_HOSTS` (`Settings.allow_private_hosts`)
lifts the rule for LAN installs and tests.

Public means globally routable unicast: not loopback, RFC 1918 private,
carrier-grade NAT, link-local, unique-local or site-local, multicast,
unspecified, reserved or documentation space. IPv4 addresses inside IPv6
forms (IPv4-mapped, IPv4-compatible, SIIT, 6to4, NAT64) are judged as the
IPv4 address they carry. No I/O here.
"""

from __future__ import annotations

import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class NonPublicAddress(Exception):
    """A caller-named host is (or resolves only to) a non-public address."""


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated; `::` and `::1` are in it too
_SIIT = ipaddress.ip_network("::ffff:0:0:0/96")  # IPv4-translated
# Not global, though older Pythons' `is_global` says they are.
_NEVER_GLOBAL = (
    ipaddress.ip_network("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215)
    ipaddress.ip_network("fec0::/10"),  # site-local (deprecated, still routed privately)
)
# WHATWG URL: a host whose last label is a number is an IPv4 address, in any
# of the legacy forms (`127.1`, `2130706433`, `0x7f.1`, `0177.0.0.1`).
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0[xX][0-9a-fA-F]*)$")


def is_public_address(address: str | IPAddress) -> bool:
    """True for a globally routable unicast address; ValueError if `address` is not one."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            return False  # zoned: link-local by definition
        if any(ip in net for net in _NEVER_GLOBAL):
            return False
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif ip in _NAT64 or ip in _SIIT or ip in _IPV4_COMPATIBLE:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.is_global and not ip.is_multicast


def literal_refusal(host: str) -> str | None:
    """Why the URL host `host` (no brackets) may not be connected to, or None.

    A host name is not judged here (None): the caller must check the
    addresses it resolves to with `is_public_address` before connecting.
    An IP literal is judged now: a non-public one is refused, and so is any
    host a URL parser would read as IPv4 but not in dotted-quad form (a
    browser and `socket` may disagree about what `0x7f.1` means).
    """
    host = host.strip().lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        return "has no host"
    if ":" in host:
        try:
            ip: IPAddress = ipaddress.IPv6Address(host)
        except ValueError:
            return "is not a valid IPv6 address"
    elif _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
        try:
            ip = ipaddress.IPv4Address(host)
        except ValueError:
            return "is not a dotted-quad IPv4 address"
    else:
        return None
    if not is_public_address(ip):
        return f"is not a public address ({ip})"
    return None
