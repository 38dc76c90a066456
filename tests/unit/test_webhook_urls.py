"""Webhook URL rules and the SSRF guard (a fake resolver: no DNS in unit tests)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from core.config import Settings
from core.resources import webhook_policy
from core.webhooks.urls import Destination, UnsafeUrl, UrlRules, check_url, destination, is_public_address

PROD = UrlRules(production=True)
DEV = UrlRules(production=False)


def resolver(*addresses: str):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> Iterable[str]:
        return list(addresses)

    return resolve


def unresolvable(host: str, port: int) -> Iterable[str]:
    raise OSError("Name or service not known")


def test_production_accepts_https_to_a_public_address() -> None:
    url = "https://hooks.partner.example/bank?tenant=7"
    assert check_url(url, PROD, resolver("93.184.216.34", "2606:2800:220:1::1")) == url


def test_production_requires_https() -> None:
    with pytest.raises(UnsafeUrl, match="must use https"):
        check_url("http://hooks.partner.example/x", PROD, resolver("93.184.216.34"))


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",  # loopback
        "10.1.2.3",  # private
        "172.16.0.9",
        "192.168.1.1",
        "169.254.169.254",  # link-local: cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",  # noqa: S104 (unspecified)
        "224.0.0.1",  # multicast
        "::1",
        "fe80::1%eth0",  # IPv6 link-local with a zone
        "fd00::1",  # unique local
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b:1::a9fe:a9fe",  # NAT64 local-use prefix
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of the metadata address
        "::127.0.0.1",  # IPv4-compatible loopback
        "::a9fe:a9fe",  # IPv4-compatible metadata address
        "::ffff:0:7f00:1",  # IPv4-translated (SIIT) loopback
        "fec0::1",  # site-local (deprecated, never public)
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    ],
)
def test_production_refuses_internal_destinations(address: str) -> None:
    assert not is_public_address(address)
    with pytest.raises(UnsafeUrl, match="private, loopback or link-local"):
        check_url("https://innocent.example/hook", PROD, resolver(address))


def test_one_internal_address_among_public_ones_is_enough_to_refuse() -> None:
    with pytest.raises(UnsafeUrl):
        check_url("https://split.example/hook", PROD, resolver("93.184.216.34", "10.0.0.5"))


def test_ip_literals_are_resolved_and_checked_too() -> None:
    with pytest.raises(UnsafeUrl):
        check_url("https://[::1]:8443/hook", PROD, resolver("::1"))


def test_production_refuses_hosts_that_do_not_resolve() -> None:
    with pytest.raises(UnsafeUrl, match="does not resolve"):
        check_url("https://nowhere.invalid/hook", PROD, unresolvable)


def test_allowlisted_hosts_skip_the_address_check_but_not_https() -> None:
    hosts = Settings(webhook_allowed_hosts=" 127.0.0.1, Partner.Internal ").webhook_allowed_hosts
    assert hosts == {"127.0.0.1", "partner.internal"}  # parsed once, in the settings
    rules = UrlRules(production=True, allowed_hosts=hosts)
    assert check_url("https://127.0.0.1:9000/hook", rules, unresolvable)
    assert check_url("https://partner.internal/hook", rules, resolver("10.0.0.5"))
    with pytest.raises(UnsafeUrl, match="https"):
        check_url("http://127.0.0.1:9000/hook", rules, unresolvable)


def test_development_and_test_accept_http_and_local_receivers() -> None:
    for env in ("development", "test"):
        rules = webhook_policy(Settings(app_env=env)).rules
        assert not rules.production
        assert check_url("http://127.0.0.1:5000/hook", rules, unresolvable)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://partner.example/hook", "must use"),
        ("javascript:alert(1)", "must use"),
        ("https:///no-host", "must have a host"),
        ("https://user:pass@partner.example/hook", "credentials"),
        ("https://partner.example/hook#frag", "fragment"),
        ("https://partner.example:99999/hook", "not a valid URL"),
        ("https://partner.example/" + "a" * 2100, "at most 2048"),
    ],
)
def test_malformed_urls_are_refused_everywhere(url: str, reason: str) -> None:
    for rules in (PROD, DEV):
        with pytest.raises(UnsafeUrl, match=reason) as err:
            check_url(url, rules, resolver("93.184.216.34"))
        assert err.value.code == "VALIDATION_ERROR" and "url" in err.value.extra["errors"]


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2606:2800:220:1::1", "93.184.216.34"])
def test_public_addresses_stay_public(address: str) -> None:
    assert is_public_address(address)


def test_the_destination_is_the_checked_addresses_and_looked_up_once() -> None:
    calls: list[str] = []

    def resolve(host: str, port: int) -> Iterable[str]:
        calls.append(host)
        return ["93.184.216.34", "93.184.216.34"]

    target = destination("https://hooks.partner.example/x", PROD, resolve)
    assert target == Destination("hooks.partner.example", ("93.184.216.34",)) and calls == ["hooks.partner.example"]
    assert destination("https://[2606:2800:220:1::1]/x", PROD, unresolvable).addresses == ("2606:2800:220:1::1",)
    with pytest.raises(UnsafeUrl):
        destination("https://[64:ff9b::7f00:1]/x", PROD, unresolvable)
