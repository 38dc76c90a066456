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

    ``allowed_hosts`` skip the address check (a receiver on 127.0.0.1 in tests, or a partner
    reached over a private link). Development and test accept http and any address.
    """

    production: bool
    allowed_hosts: frozenset[str] = frozenset()

    @classmethod
    def from_setting(cls, app_env: str, allowed_hosts: str) -> UrlRules:
        hosts = frozenset(h.strip().lower() for h in allowed_hosts.split(",") if h.strip())
        return cls(production=app_env == "production", allowed_hosts=hosts)


class UnsafeUrl(ValidationFailed):
    def __init__(self, reason: str) -> None:
        super().__init__(f"url {reason}", errors={"url": [f"URL {reason}."]})
        self.reason = reason


def is_public_address(address: str) -> bool:
    """Globally routable unicast: not private, loopback, link-local, CGNAT, multicast or reserved."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback, whatever the IPv6 tables say
    return ip.is_global and not ip.is_multicast


def check_url(url: str, rules: UrlRules, resolve: Resolver = system_resolver) -> str:
    """Return ``url`` if a partner may receive webhooks there, else raise :class:`UnsafeUrl`.

    Checked when the endpoint is registered and again before every delivery (DNS may have
    changed). Redirects are never followed, so a 3xx cannot lead the request elsewhere.
    """
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
    if not rules.production or host in rules.allowed_hosts:
        return url
    try:
        addresses = list(resolve(host, port or 443))
    except (OSError, UnicodeError) as exc:
        raise UnsafeUrl("host does not resolve") from exc
    if not addresses:
        raise UnsafeUrl("host does not resolve")
    if not all(is_public_address(a) for a in addresses):
        raise UnsafeUrl("must not point to a private, loopback or link-local address")
    return url
