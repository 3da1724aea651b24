"""The SSRF rule of `api.fetch`, decided on addresses: every class of address a script must not reach, in
every spelling a resolver accepts, is refused with its reason; public addresses pass; the deployment's
allow-list opens named hosts and networks only. Nothing here connects anywhere."""

from __future__ import annotations

import ipaddress

import pytest
from mcpdo.errors import FetchRefused, InputError
from mcpdo.netguard import Allowlist, check_scheme, literal_address, refusal, vet

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("fd12:3456::1", "private"),
    ("fc00::1", "private"),
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fd00:ec2::254", "metadata"),  # AWS's IPv6 metadata endpoint
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("255.255.255.255", "reserved"),  # the broadcast address
    ("240.0.0.1", "reserved"),
    ("192.0.2.10", "not public"),  # documentation
    ("198.18.0.1", "not public"),  # benchmarking
    ("2001:db8::1", "not public"),  # documentation
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
    ("::ffff:169.254.169.254", "link-local"),
    ("::127.0.0.1", "loopback"),  # IPv4-compatible
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
    ("64:ff9b::10.0.0.1", "private"),
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]

SPELLINGS = {
    "2130706433": "127.0.0.1",
    "0x7f000001": "127.0.0.1",
    "0x7f.0.0.1": "127.0.0.1",
    "0177.0.0.1": "127.0.0.1",
    "127.1": "127.0.0.1",
    "0": "0.0.0.0",
    "[::1]": "::1",
    "[::ffff:127.0.0.1]": "::ffff:127.0.0.1",
    "[0:0:0:0:0:ffff:7f00:1]": "::ffff:127.0.0.1",
    "fe80::1%eth0": "fe80::1",
    "[fe80::1%25eth0]": "fe80::1",
    "0xa9fea9fe": "169.254.169.254",
    "2852039166": "169.254.169.254",
    "012.1": "10.0.0.1",
}


@pytest.mark.parametrize(("text", "kind"), REFUSED)
def test_every_address_class_a_script_must_not_reach_is_refused_with_its_reason(text: str, kind: str) -> None:
    reason = refusal(ipaddress.ip_address(text))
    assert reason is not None and kind in reason, (text, reason)


@pytest.mark.parametrize("text", PUBLIC)
def test_public_unicast_addresses_pass(text: str) -> None:
    assert refusal(ipaddress.ip_address(text)) is None


@pytest.mark.parametrize(("spelling", "meaning"), sorted(SPELLINGS.items()))
def test_numeric_spellings_are_read_as_the_address_they_mean_and_refused(spelling: str, meaning: str) -> None:
    address = literal_address(spelling)
    assert address == ipaddress.ip_address(meaning)
    assert refusal(address) is not None


@pytest.mark.parametrize("name", ["example.com", "localhost", "127.0.0.1.nip.io", "1.2.3.4.5", "", "0x", "1..2"])
def test_names_are_left_to_dns_and_judged_on_what_it_answers(name: str) -> None:
    assert literal_address(name) is None


def test_vet_connects_to_the_first_allowed_address_and_names_every_refusal_otherwise() -> None:
    none = Allowlist()
    public, private = ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.0.0.5")
    assert vet("shop.example", 443, [private, public], none) == public
    with pytest.raises(FetchRefused, match=r"refused to connect to intranet: 10\.0\.0\.5 is a private address.*"):
        vet("intranet", 443, [private], none)
    with pytest.raises(FetchRefused, match="MCPDO_FETCH_ALLOW"):
        vet("rebind.example", 80, [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")], none)
    with pytest.raises(FetchRefused, match="has no address"):
        vet("nowhere", 80, [], none)


def test_the_allow_list_opens_named_hosts_ports_and_networks_only() -> None:
    allow = Allowlist.parse("billing.internal, metrics.internal:9090, 10.20.0.0/16, [fd00::5]:8443")
    inside = ipaddress.ip_address("10.20.3.4")
    assert vet("billing.internal", 443, [ipaddress.ip_address("10.9.9.9")], allow)
    assert vet("Billing.Internal.", 80, [ipaddress.ip_address("127.0.0.1")], allow)
    assert vet("metrics.internal", 9090, [ipaddress.ip_address("10.9.9.9")], allow)
    with pytest.raises(FetchRefused):
        vet("metrics.internal", 9091, [ipaddress.ip_address("10.9.9.9")], allow)
    assert vet("anything.internal", 80, [inside], allow) == inside
    with pytest.raises(FetchRefused):
        vet("anything.internal", 80, [ipaddress.ip_address("10.21.0.1")], allow)
    assert vet("fd00::5", 8443, [ipaddress.ip_address("fd00::5")], allow)


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "host:0", "host:99999", "host:http", ":80"])
def test_a_bad_allow_list_entry_is_an_error_naming_the_setting(entry: str) -> None:
    with pytest.raises(InputError, match="MCPDO_FETCH_ALLOW"):
        Allowlist.parse(entry)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://x:70/_", "ftp://x/y", "data:text/plain,hi", "ws://x"])
def test_only_http_and_https_urls_are_fetched(url: str) -> None:
    with pytest.raises(FetchRefused, match="only http and https"):
        check_scheme(url.split(":", 1)[0], url)
    check_scheme("HTTPS", "HTTPS://example.com")
