"""Which network addresses a script's `api.fetch` may reach: the SSRF rule, decided on addresses.

A URL names a host; what matters is the address actually connected to. The fetcher resolves the host once,
asks `refusal(address)` for every address it would connect to (and again for every redirect's host), and
connects to a vetted address itself, so DNS cannot answer differently between the check and the connection.
Spellings do not matter here: `0x7f000001`, `2130706433`, `127.1`, `[::ffff:127.0.0.1]` all resolve to an
address, and the address is what is judged (`literal_address` reads the spellings resolvers accept, so a
test can check them without a resolver).

Refused, unless the deployment allows them by name (`MCPDO_FETCH_ALLOW`): loopback, private (RFC 1918,
IPv6 unique-local), link-local (cloud metadata at 169.254.169.254 and fd00:ec2::254 among them), carrier-grade
NAT (100.64.0.0/10), multicast, unspecified, broadcast and reserved addresses, and IPv6 forms that carry an
IPv4 address inside (IPv4-mapped, IPv4-compatible, 6to4, NAT64, Teredo) when that address is refused.
Only `http` and `https` URLs are fetched.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from mcpdo.errors import FetchRefused, InputError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = ("http", "https")

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# RFC 1918 and IPv6 unique-local: what "private" means to an operator (ipaddress's is_private is wider).
_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
_METADATA_V6 = ipaddress.ip_network("fd00:ec2::/32")  # AWS's IPv6 metadata endpoint (fd00:ec2::254)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def refusal(address: Address) -> str | None:
    """Why `address` may not be fetched from, or None when it may (a public unicast address)."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        reason = refusal(embedded)
        return None if reason is None else f"{reason} (inside the IPv6 address {address})"
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address (cloud metadata lives there)"),
        (address in _METADATA_V6, "a cloud metadata address"),
        (address.version == 4 and address in _CGNAT, "a carrier-grade NAT address"),
        (address.is_multicast, "a multicast address"),
        (any(address in network for network in _PRIVATE if network.version == address.version), "a private address"),
        (address.is_reserved, "a reserved address"),
        # Documentation, benchmarking, protocol assignments, ...: special-purpose, never a public server.
        (not address.is_global, "an address that is not public"),
    )
    for refused, reason in checks:
        if refused:
            return reason
    return None


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, compatible, 6to4, NAT64, Teredo client), if any."""
    if address.version == 4:
        return None
    assert isinstance(address, ipaddress.IPv6Address)
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or address in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    packed = int(address)
    if packed >> 32 == 0 and packed > 1:  # IPv4-compatible ::a.b.c.d (deprecated, still routed by some stacks)
        return ipaddress.IPv4Address(packed)
    return None


def literal_address(host: str) -> Address | None:
    """The address a host written as a number means, in every spelling resolvers accept (`127.0.0.1`,
    `127.1`, `0x7f.0.0.1`, `0177.0.0.1`, `2130706433`, `[::1]`, `::ffff:127.0.0.1`, `fe80::1%eth0`), or None
    for a name that needs DNS."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]  # an IPv6 zone id names an interface, not another address
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if not text or any(part == "" for part in text.split(".")):
        return None
    try:
        # The classic IPv4 parser: each part decimal, octal (leading 0) or hex (0x), the last one filling
        # the remaining bytes. getaddrinfo reads numeric hosts this way too.
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


@dataclass(frozen=True)
class Allowlist:
    """Internal hosts a deployment lets scripts reach anyway (MCPDO_FETCH_ALLOW): `host`, `host:port` or a
    CIDR network. A named host is matched on the URL's host (and port, when given); a network on the address
    connected to."""

    hosts: frozenset[tuple[str, int | None]] = frozenset()
    networks: tuple[Network, ...] = ()

    @staticmethod
    def parse(text: str) -> Allowlist:
        hosts: set[tuple[str, int | None]] = set()
        networks: list[Network] = []
        for raw in (item.strip() for item in text.split(",")):
            if not raw:
                continue
            if "/" in raw:
                try:
                    networks.append(ipaddress.ip_network(raw, strict=False))
                except ValueError:
                    raise InputError(f"MCPDO_FETCH_ALLOW: {raw!r} is not a CIDR network") from None
                continue
            hosts.add(_host_and_port(raw))
        return Allowlist(frozenset(hosts), tuple(networks))

    def allows(self, host: str, port: int, address: Address) -> bool:
        name = host.strip("[]").lower().rstrip(".")
        if (name, None) in self.hosts or (name, port) in self.hosts:
            return True
        return any(address in network for network in self.networks if network.version == address.version)


def _host_and_port(raw: str) -> tuple[str, int | None]:
    host, port = raw, None
    if raw.startswith("["):
        close = raw.find("]")
        host, rest = raw[1:close], raw[close + 1 :]
        port_text = rest[1:] if rest.startswith(":") else None
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
    else:
        port_text = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise InputError(f"MCPDO_FETCH_ALLOW: {raw!r} has a bad port (host, host:port or a CIDR network)")
        port = int(port_text)
    if not host:
        raise InputError(f"MCPDO_FETCH_ALLOW: {raw!r} names no host")
    return host.lower().rstrip("."), port


def vet(host: str, port: int, addresses: Iterable[Address], allow: Allowlist) -> Address:
    """The address to connect to for `host`: the first one allowed. FetchRefused naming the host and why when
    none is (an allow-listed host or network is reachable whatever its address)."""
    reasons: list[str] = []
    for address in addresses:
        reason = None if allow.allows(host, port, address) else refusal(address)
        if reason is None:
            return address
        reasons.append(f"{address} is {reason}")
    if not reasons:
        raise FetchRefused(f"api.fetch(): {host} has no address")
    raise FetchRefused(
        f"api.fetch(): refused to connect to {host}: {'; '.join(reasons)}. Scripts reach public addresses "
        "only; a deployment can allow internal hosts with MCPDO_FETCH_ALLOW"
    )


def check_scheme(scheme: str, url: str) -> None:
    """FetchRefused unless `scheme` is http or https (any case)."""
    if scheme.lower() not in SCHEMES:
        raise FetchRefused(f"api.fetch(): only http and https URLs can be fetched, got {url[:200]!r}")
