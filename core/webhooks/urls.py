"""Which URLs a partner may register, and the SSRF guard applied at registration and delivery."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.errors import ValidationFailed

MAX_URL_LENGTH = 2048

# host, port -> every address the host resolves to
Resolver = Callable[[str, int], Iterable[str]]


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class UrlRules:
    """``production``: https only, and no private, loopback or link-local destination.

    ``allowed_hosts`` (lower-case, from WEBHOOK_ALLOWED_HOSTS) skip the address check (a receiver
    on 127.0.0.1 in tests, or a partner reached over a private link). Development and test accept http and any address.
    """

    production: bool
    allowed_hosts: frozenset[str] = frozenset()


class UnsafeUrl(ValidationFailed):
    def __init__(self, reason: str) -> None:
        super().__init__(f"url {reason}", errors={"url": [f"URL {reason}."]})
        self.reason = reason


# IPv6 prefixes that carry an IPv4 address in their low 32 bits (or are translator-local): the
# address is only as public as the IPv4 one it reaches. Python's tables call several "global".
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local-use: never public
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT, RFC 2765
_LOW32 = 0xFFFFFFFF


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 one embeds (mapped, NAT64, 6to4, Teredo, compatible, SIIT)."""
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in _NAT64 or ip in _IPV4_COMPATIBLE or ip in _IPV4_TRANSLATED:
        found.append(ipaddress.IPv4Address(int(ip) & _LOW32))
    return found


def _is_global(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_loopback)


def is_public_address(address: str) -> bool:
    """Globally routable unicast: not private, loopback, link-local, CGNAT, multicast, reserved,
    site-local, NAT64-local, nor an IPv6 form of any such IPv4 address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local or ip in _NAT64_LOCAL:
            return False  # fec0::/10 is deprecated, not public; Python's is_global says True
        embedded = _embedded_ipv4(ip)
        if ip in _NAT64:
            return _is_global(embedded[0])  # a DNS64 answer: exactly as public as its IPv4 (::/8 is "reserved")
        return _is_global(ip) and all(_is_global(v4) for v4 in embedded)
    return _is_global(ip)


@dataclass(frozen=True)
class Destination:
    """Where a delivery connects: the addresses that were checked, never a second lookup."""

    host: str
    addresses: tuple[str, ...]


def _parse(url: str, rules: UrlRules) -> tuple[str, int]:
    """The host and port of an acceptable URL, or :class:`UnsafeUrl`."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl("is not a valid URL") from exc
    allowed_schemes = ("https",) if rules.production else ("http", "https")
    if parts.scheme not in allowed_schemes:
        raise UnsafeUrl("must use " + " or ".join(allowed_schemes))
    host = (parts.hostname or "").lower()
    if not host:
        raise UnsafeUrl("must have a host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("must not contain credentials")
    if parts.fragment:
        raise UnsafeUrl("must not contain a fragment")
    return host, port or (443 if parts.scheme == "https" else 80)


def _resolve(host: str, port: int, resolve: Resolver) -> list[str]:
    try:
        ipaddress.ip_address(host)
        return [host]  # a literal: nothing to look up, nothing to rebind
    except ValueError:
        pass
    try:
        addresses = list(dict.fromkeys(resolve(host, port)))
    except (OSError, UnicodeError) as exc:
        raise UnsafeUrl("host does not resolve") from exc
    if not addresses:
        raise UnsafeUrl("host does not resolve")
    return addresses


def _checks_addresses(host: str, rules: UrlRules) -> bool:
    return rules.production and host not in rules.allowed_hosts


def check_url(url: str, rules: UrlRules, resolve: Resolver = system_resolver) -> str:
    """Return ``url`` if a partner may register it, else raise :class:`UnsafeUrl`.

    Checked when the endpoint is registered; every delivery checks again with
    :func:`destination`, whose addresses it then connects to. Redirects are never followed,
    so a 3xx cannot lead the request elsewhere.
    """
    host, port = _parse(url, rules)
    if _checks_addresses(host, rules):
        _refuse_internal(_resolve(host, port, resolve))
    return url


def destination(url: str, rules: UrlRules, resolve: Resolver = system_resolver) -> Destination:
    """Resolve ``url``'s host once and check every address: the delivery connects to these
    addresses only (DNS rebinding between a check and a connect cannot redirect it)."""
    host, port = _parse(url, rules)
    addresses = _resolve(host, port, resolve)
    if _checks_addresses(host, rules):
        _refuse_internal(addresses)
    return Destination(host, tuple(addresses))


def _refuse_internal(addresses: list[str]) -> None:
    if not all(is_public_address(a) for a in addresses):
        raise UnsafeUrl("must not point to a private, loopback or link-local address")
