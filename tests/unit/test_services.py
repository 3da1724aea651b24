"""The services of `api.proxy`: the file's format and its errors, the presets and their overrides, the
loader of `MCPDO_SERVICES`, and the paths that could leave a base URL."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from mcpdo.errors import InputError, NotConfigured
from mcpdo.services import PRESETS, Service, ServiceRegistry, load_services

SOURCE = "services.yaml"

YAML = """
acme:
  baseUrl: https://api.acme.example/v2/
  auth: bearer
  secret: ACME_API_KEY
legacy:
  baseUrl: http://legacy.internal:8080
  auth: basic
  secret: legacy/credentials
keyed:
  baseUrl: https://keyed.example
  auth: header:X-Api-Key
  secret: KEYED_KEY
"""


def parse(text: str) -> ServiceRegistry:
    return ServiceRegistry.parse(text, SOURCE)


def error_of(text: str) -> str:
    with pytest.raises(InputError) as caught:
        parse(text)
    return caught.value.message


def test_a_yaml_file_lists_its_services_in_order_then_the_presets() -> None:
    registry = parse(YAML)
    assert registry.names == ("acme", "legacy", "keyed", "stripe", "shippo")
    assert registry.get("acme") == Service(
        name="acme",
        base_url="https://api.acme.example/v2",
        auth="bearer",
        header="Authorization",
        secret="ACME_API_KEY",
    )
    assert registry.get("legacy").auth == "basic"
    keyed = registry.get("keyed")
    assert (keyed.auth, keyed.header, keyed.secret) == ("header", "X-Api-Key", "KEYED_KEY")


def test_a_json_file_reads_the_same_as_yaml() -> None:
    text = '{"acme": {"baseUrl": "https://api.acme.example/v2", "auth": "bearer", "secret": "ACME_API_KEY"}}'
    assert parse(text).get("acme") == parse(YAML).get("acme")


def test_an_empty_file_gives_the_presets_only() -> None:
    assert parse("").names == ("stripe", "shippo")
    assert parse("{}").names == ("stripe", "shippo")


def test_the_presets_use_each_service_s_own_authentication_scheme() -> None:
    stripe, shippo = PRESETS["stripe"], PRESETS["shippo"]
    assert (stripe.base_url, stripe.secret) == ("https://api.stripe.com", "STRIPE_SECRET_KEY")
    assert stripe.credential("sk_test_1") == ("Authorization", "Bearer sk_test_1")
    assert (shippo.base_url, shippo.secret) == ("https://api.goshippo.com", "SHIPPO_API_KEY")
    assert shippo.credential("shippo_test_1") == ("Authorization", "ShippoToken shippo_test_1")


def test_each_kind_of_credential_goes_into_its_header() -> None:
    registry = parse(YAML)
    assert registry.get("acme").credential("k") == ("Authorization", "Bearer k")
    expected = "Basic " + base64.b64encode(b"user:pa ss").decode()
    assert registry.get("legacy").credential("user:pa ss") == ("Authorization", expected)
    assert registry.get("keyed").credential("k") == ("X-Api-Key", "k")


def test_stripe_v1_bodies_are_forms_and_other_services_send_json() -> None:
    assert PRESETS["stripe"].sends_form("/v1/charges")
    assert not PRESETS["stripe"].sends_form("/v2/core/events")
    assert not PRESETS["shippo"].sends_form("/shipments")


def test_an_entry_with_only_a_secret_keeps_the_preset_s_base_url_and_scheme() -> None:
    registry = parse("stripe: { secret: MY_STRIPE_KEY }\nshippo: { secret: MY_SHIPPO_KEY }")
    stripe, shippo = registry.get("stripe"), registry.get("shippo")
    assert stripe == Service(
        name="stripe",
        base_url="https://api.stripe.com",
        auth="bearer",
        header="Authorization",
        secret="MY_STRIPE_KEY",
        form_paths=("/v1/",),
    )
    assert shippo.credential("t") == ("Authorization", "ShippoToken t")
    assert registry.names == ("stripe", "shippo")


def test_an_entry_with_a_preset_s_name_overrides_the_fields_it_gives() -> None:
    registry = parse(
        "acme: {baseUrl: 'https://a.example', auth: bearer, secret: A}\n"
        "shippo: {baseUrl: 'http://127.0.0.1:9/mock', auth: 'header:X-Token'}"
    )
    shippo = registry.get("shippo")
    assert (shippo.base_url, shippo.secret) == ("http://127.0.0.1:9/mock", "SHIPPO_API_KEY")
    # Its own scheme drops the preset's "ShippoToken " prefix.
    assert shippo.credential("t") == ("X-Token", "t")
    assert registry.names == ("acme", "stripe", "shippo")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("acme: [", "services.yaml: not valid YAML or JSON ("),
        ("- acme", "services.yaml: must be a mapping from service name to"),
        ("acme: https://a.example", "services.yaml: service 'acme' must be a mapping"),
        ("'bad name': {}", "services.yaml: service name 'bad name' must be 1 to 64 letters"),
        ("123: {}", "services.yaml: service name int 123 must be"),
        (f"{'a' * 65}: {{}}", "must be 1 to 64 letters"),
        ("acme: {auth: bearer, secret: A}", "services.yaml: service 'acme' is missing 'baseUrl'"),
        ("acme: {baseUrl: 'https://a.example', secret: A}", "service 'acme' is missing 'auth'"),
        ("acme: {baseUrl: 'https://a.example', auth: bearer}", "service 'acme' is missing 'secret'"),
        ("acme: {baseUrl: 'https://a.example', auth: bearer, secret: A, token: x}", "unknown field 'token'"),
        ("acme: {baseUrl: 42, auth: bearer, secret: A}", "service 'acme': 'baseUrl' must be a string, got int 42"),
        ("acme: {baseUrl: 'ftp://a.example', auth: bearer, secret: A}", "'baseUrl' must be an http(s) URL"),
        ("acme: {baseUrl: 'file:///etc/passwd', auth: bearer, secret: A}", "'baseUrl' must be an http(s) URL"),
        ("acme: {baseUrl: 'https://', auth: bearer, secret: A}", "'baseUrl' must name a host"),
        ("acme: {baseUrl: 'https://u:p@a.example', auth: bearer, secret: A}", "must not hold credentials"),
        ("acme: {baseUrl: 'https://a.example/?k=v', auth: bearer, secret: A}", "must not have a query"),
        ("acme: {baseUrl: 'https://a.example/#x', auth: bearer, secret: A}", "must not have a query or a fragment"),
        ("acme: {baseUrl: 'https://a.example:99999', auth: bearer, secret: A}", "has an invalid port"),
        ("acme: {baseUrl: 'https://a.example/a b', auth: bearer, secret: A}", "printable ASCII"),
        ("acme: {baseUrl: 'https://a.example/../x', auth: bearer, secret: A}", "'.' or '..' segments"),
        ("acme: {baseUrl: 'https://a.example', auth: token, secret: A}", "'auth' must be 'bearer', 'basic' or"),
        ("acme: {baseUrl: 'https://a.example', auth: 'header:', secret: A}", "is not a valid HTTP header name"),
        ("acme: {baseUrl: 'https://a.example', auth: 'header:X Key', secret: A}", "not a valid HTTP header name"),
        ("acme: {baseUrl: 'https://a.example', auth: 'header:Host', secret: A}", "cannot use the header 'Host'"),
        ("acme: {baseUrl: 'https://a.example', auth: bearer, secret: 'a b'}", "'secret' must be a secret's name"),
        ("acme: {baseUrl: 'https://a.example', auth: bearer, secret: ''}", "'secret' must be a secret's name"),
        ("stripe: {secret: 7}", "service 'stripe': 'secret' must be a string"),
        ("stripe: {baseUrl: 'gopher://x'}", "service 'stripe': 'baseUrl' must be an http(s) URL"),
    ],
)
def test_every_bad_entry_is_an_error_naming_the_file_the_service_and_the_field(text: str, expected: str) -> None:
    message = error_of(text)
    assert message.startswith(SOURCE)
    assert expected in message


def test_a_file_with_too_many_services_is_refused() -> None:
    text = "\n".join(f"s{n}: {{baseUrl: 'https://a.example', auth: bearer, secret: A}}" for n in range(501))
    assert "at most 500 services" in error_of(text)


def test_an_unknown_service_is_an_error_naming_it_and_listing_the_configured_ones() -> None:
    registry = parse(YAML)
    with pytest.raises(NotConfigured) as caught:
        registry.get("stripes")
    assert caught.value.message.startswith(
        "api.proxy(): unknown service 'stripes'; configured services: acme, legacy, keyed, stripe, shippo"
    )
    assert "MCPDO_SERVICES" in caught.value.message


# -- the loader -------------------------------------------------------------------------------------


def test_no_setting_gives_the_presets(tmp_path: Path) -> None:
    assert load_services(None).names == ("stripe", "shippo")


def test_the_setting_names_a_file(tmp_path: Path) -> None:
    path = tmp_path / "services.yaml"
    path.write_text(YAML)
    assert load_services(path).names == parse(YAML).names
    assert load_services(str(path)).get("acme") == parse(YAML).get("acme")


def test_a_missing_file_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(InputError) as caught:
        load_services(missing)
    assert caught.value.message.startswith(f"Setting 'MCPDO_SERVICES' file '{missing}' cannot be read")


def test_a_bad_file_is_an_error_naming_the_setting_and_the_service(tmp_path: Path) -> None:
    path = tmp_path / "services.json"
    path.write_text('{"acme": {"baseUrl": "ftp://x", "auth": "bearer", "secret": "A"}}')
    with pytest.raises(InputError) as caught:
        load_services(path)
    assert caught.value.message.startswith(f"Setting 'MCPDO_SERVICES' file '{path}': service 'acme': 'baseUrl'")


def test_the_setting_can_hold_the_services_text_itself_when_it_starts_with_a_brace() -> None:
    inline = ' {"acme": {"baseUrl": "https://api.acme.example/v2", "auth": "bearer", "secret": "ACME_API_KEY"}}'
    assert load_services(inline).get("acme") == parse(YAML).get("acme")
    yaml_flow = "{acme: {baseUrl: 'https://api.acme.example/v2', auth: bearer, secret: ACME_API_KEY}}"
    assert load_services(yaml_flow).get("acme").base_url == "https://api.acme.example/v2"
    with pytest.raises(InputError) as caught:
        load_services('{"acme": {}}')
    assert caught.value.message.startswith("Setting 'MCPDO_SERVICES' (inline): service 'acme' is missing")


def test_inline_text_that_arrives_as_a_path_is_refused_rather_than_read_with_its_urls_mangled() -> None:
    with pytest.raises(InputError, match="inline services text"):
        load_services(Path('{"acme": {"baseUrl": "https://a.example"}}'))


# -- paths ------------------------------------------------------------------------------------------

ACME = Service(name="acme", base_url="https://api.acme.example/v2", auth="bearer", header="Authorization", secret="A")


@pytest.mark.parametrize(
    ("path", "url"),
    [
        ("/customers/cus_1", "https://api.acme.example/v2/customers/cus_1"),
        ("customers", "https://api.acme.example/v2/customers"),
        ("/x?y=1", "https://api.acme.example/v2/x?y=1"),
        ("/search?q=a/../b&next=https://x", "https://api.acme.example/v2/search?q=a/../b&next=https://x"),
        ("/a:b@c", "https://api.acme.example/v2/a:b@c"),
        ("/caf\u00e9 au lait", "https://api.acme.example/v2/caf%C3%A9%20au%20lait"),
        ("/a..b/...", "https://api.acme.example/v2/a..b/..."),
        ("/", "https://api.acme.example/v2/"),
    ],
)
def test_a_path_is_appended_to_the_base_url_query_included(path: str, url: str) -> None:
    assert ACME.url_for(path) == url


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/..", "'..' segment"),
        ("/a/../../b", "'..' segment"),
        ("../b", "'..' segment"),
        ("/./b", "'.' or '..' segment"),
        ("/%2e%2e/b", "also percent-encoded"),
        ("/%2E%2E/b", "also percent-encoded"),
        ("/.%2e/b", "also percent-encoded"),
        ("/%252e%252e/b", "percent-encoded"),
        ("/a/%2e%2e%2f%2e%2e/b", "percent-encoded"),
        ("/..;/admin", "'..' segment"),
        ("/\uff0e\uff0e/b", "'..' segment"),
        ("https://evil", "absolute URL"),
        ("HTTP://evil/x", "absolute URL"),
        ("javascript:alert(1)", "absolute URL"),
        ("//evil.com/x", "starts with '//'"),
        ("/%2f%2fevil.com/x", "encoded '//'"),
        ("\\\\evil", "backslash"),
        ("/\\evil", "backslash"),
        ("/a%5c..%5cb", "encoded backslash"),
        ("/a\r\nHost: evil", "control characters"),
        ("/a\x00", "control characters"),
        ("/a%0d%0aX: y", "encoded control characters"),
        ("/a#frag", "fragment"),
        ("", "non-empty string"),
        ("/" + "a" * 9000, "longer than"),
    ],
)
def test_a_path_that_could_leave_the_base_url_is_refused_naming_it(path: str, problem: str) -> None:
    with pytest.raises(InputError) as caught:
        ACME.url_for(path)
    assert problem in caught.value.message
    if path:
        assert caught.value.message.startswith("api.proxy(): path ")


def test_a_path_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(InputError, match="path must be a non-empty string"):
        ACME.url_for(42)  # type: ignore[arg-type]
