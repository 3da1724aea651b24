"""The services `api.proxy` can call: each a base URL, how its credential is sent and the secret holding it.

The deployment lists them in `MCPDO_SERVICES`, a YAML or JSON mapping from service name to
`{ baseUrl, auth, secret }`:

```yaml
acme:
  baseUrl: https://api.acme.example/v2
  auth: bearer            # or `basic` (the secret is `user:password`) or `header:X-Api-Key`
  secret: ACME_API_KEY    # the name of a secret, never its value
```

`stripe` and `shippo` are built in and need only their secret. An entry with a preset's name overrides the
fields it gives and keeps the preset's others (`stripe: { secret: STRIPE_TEST_KEY }`). `MCPDO_SERVICES` is
the path of the file, or the text itself when it starts with `{` (on Lambda, where no file is deployed).

A script chooses only the service and a path under its base URL: `Service.url_for` refuses every path that
could leave it (dot segments, also percent-encoded or `..;`, absolute URLs, `//host`, backslashes, control
characters), and the proxy follows no redirects.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, unquote, urlsplit

from mcpdo.errors import InputError, NotConfigured
from mcpdo.inputs import quote as shown

if TYPE_CHECKING:
    import yaml

AuthKind = Literal["bearer", "basic", "header"]

SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# What Secrets Manager allows in a name (and every environment variable name fits).
SECRET_NAME = re.compile(r"[A-Za-z0-9_+=.@/-]{1,256}")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")
FIELDS = ("baseUrl", "auth", "secret")
MAX_SERVICES = 500
MAX_TEXT_CHARS = 1_000_000
MAX_URL_CHARS = 2048
MAX_PATH_CHARS = 8192
# Headers that frame or route the request: never a credential's place, and never the script's to set.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)
SETTING = "MCPDO_SERVICES"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
# Printable ASCII but space: kept as written in a path; anything else (space, non-ASCII) is percent-encoded.
_KEPT = "".join(chr(code) for code in range(0x21, 0x7F))
_DECODE_ROUNDS = 4


@dataclass(frozen=True)
class Service:
    """One integrated service: where it is, which header carries its credential and which secret that is."""

    name: str
    base_url: str  # scheme, host, optional port and path; no trailing "/", no query
    auth: AuthKind
    header: str  # "Authorization" for bearer and basic
    secret: str  # the secret's name in the secret store
    value_prefix: str = ""  # put before the secret in a `header` credential (Shippo: "ShippoToken ")
    # Paths whose object bodies are sent form-encoded (Stripe's v1 API takes no JSON).
    form_paths: tuple[str, ...] = ()

    def url_for(self, path: str) -> str:
        """The full URL of `path` under the base URL; InputError naming the path when it could leave it."""
        return self.base_url + _checked_path(self.name, path, self.base_url)

    def credential(self, secret: str) -> tuple[str, str]:
        """The header (name, value) that carries `secret` to this service."""
        if self.auth == "bearer":
            return self.header, f"Bearer {secret}"
        if self.auth == "basic":
            return self.header, "Basic " + base64.b64encode(secret.encode()).decode("ascii")
        return self.header, self.value_prefix + secret

    def sends_form(self, path: str) -> bool:
        """True when an object body sent to `path` is form-encoded rather than JSON."""
        return any(path.startswith(prefix) for prefix in self.form_paths)


PRESETS: Mapping[str, Service] = {
    # Stripe: `Authorization: Bearer sk_...` (https://docs.stripe.com/api/authentication); v1 bodies are forms.
    "stripe": Service(
        name="stripe",
        base_url="https://api.stripe.com",
        auth="bearer",
        header="Authorization",
        secret="STRIPE_SECRET_KEY",
        form_paths=("/v1/",),
    ),
    # Shippo: `Authorization: ShippoToken <API token>` (https://docs.goshippo.com/docs/guides_general/authentication).
    "shippo": Service(
        name="shippo",
        base_url="https://api.goshippo.com",
        auth="header",
        header="Authorization",
        secret="SHIPPO_API_KEY",
        value_prefix="ShippoToken ",
    ),
}


class ServiceRegistry:
    """The services of a deployment: the file's entries, then the presets the file does not override."""

    def __init__(self, services: Iterable[Service]) -> None:
        self._services = {service.name: service for service in services}

    @classmethod
    def with_presets(cls, services: Iterable[Service] = ()) -> ServiceRegistry:
        """`services`, then each preset that none of them replaces."""
        given = list(services)
        names = {service.name for service in given}
        return cls([*given, *(preset for name, preset in PRESETS.items() if name not in names)])

    @classmethod
    def parse(cls, text: str, source: str) -> ServiceRegistry:
        """The registry a YAML or JSON text describes (with the presets); InputError naming `source`, the
        service and the field for every bad entry."""
        if len(text) > MAX_TEXT_CHARS:
            raise InputError(f"{source}: the services text is longer than {MAX_TEXT_CHARS} characters")
        import yaml  # only when services are configured: PyYAML takes ~10 ms to import

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"{source}: not valid YAML or JSON ({_yaml_problem(exc)})") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InputError(f"{source}: must be a mapping from service name to {{ baseUrl, auth, secret }}")
        if len(data) > MAX_SERVICES:
            raise InputError(f"{source}: at most {MAX_SERVICES} services, got {len(data)}")
        services = [_entry(source, name, entry) for name, entry in data.items()]
        # The file's own services in its order, then the presets (each as the file overrides it).
        replaced = {service.name: service for service in services if service.name in PRESETS}
        own = [service for service in services if service.name not in PRESETS]
        return cls([*own, *(replaced.get(name, preset) for name, preset in PRESETS.items())])

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._services)

    def get(self, name: str) -> Service:
        """The service called `name`; NotConfigured naming it and listing the configured ones."""
        service = self._services.get(name)
        if service is None:
            configured = ", ".join(self._services) or "none"
            raise NotConfigured(
                f"api.proxy(): unknown service {shown(name)}; configured services: {configured} "
                f"(the deployment adds services in {SETTING})"
            )
        return service


def load_services(setting: Path | str | None) -> ServiceRegistry:
    """The registry of `MCPDO_SERVICES`: None gives the presets only; text starting with `{` is the services
    themselves (YAML flow or JSON); anything else is the path of a YAML or JSON file."""
    if setting is None:
        return ServiceRegistry.with_presets()
    if isinstance(setting, str):
        if setting.lstrip().startswith("{"):
            return ServiceRegistry.parse(setting, f"Setting '{SETTING}' (inline)")
        setting = Path(setting).expanduser()
    if str(setting).lstrip().startswith("{"):
        # A Path collapses "//" (every URL's): inline text must reach here as the text itself.
        raise InputError(
            f"Setting '{SETTING}' holds inline services text, which must be passed on as text, not as a path"
        )
    source = f"Setting '{SETTING}' file '{setting}'"
    try:
        text = setting.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise InputError(f"{source} cannot be read: {reason}") from None
    return ServiceRegistry.parse(text, source)


# -- the file's entries -------------------------------------------------------------------------------


def _entry(source: str, name: object, entry: object) -> Service:
    if not isinstance(name, str) or not SERVICE_NAME.fullmatch(name):
        raise InputError(
            f"{source}: service name {_show(name)} must be 1 to 64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    where = f"{source}: service '{name}'"
    if not isinstance(entry, dict):
        raise InputError(f"{where} must be a mapping {{ baseUrl, auth, secret }}, got {_show(entry)}")
    for field in entry:
        if field not in FIELDS:
            raise InputError(f"{where} has unknown field {_show(field)}; the fields are {', '.join(FIELDS)}")
    preset = PRESETS.get(name)
    for field in FIELDS:
        if field in entry and not isinstance(entry[field], str):
            raise InputError(f"{where}: '{field}' must be a string, got {_show(entry[field])}")
        if field not in entry and preset is None:
            raise InputError(f"{where} is missing '{field}'")
    base_url = _base_url(where, entry["baseUrl"]) if "baseUrl" in entry else None
    secret = _secret_name(where, entry["secret"]) if "secret" in entry else None
    auth = _auth(where, entry["auth"]) if "auth" in entry else None
    if preset is not None:
        # The preset's value prefix belongs to its scheme: an entry that names its own scheme drops it.
        kind, header, prefix = (*auth, "") if auth is not None else (preset.auth, preset.header, preset.value_prefix)
        return Service(
            name=name,
            base_url=base_url or preset.base_url,
            auth=kind,
            header=header,
            secret=secret or preset.secret,
            value_prefix=prefix,
            form_paths=preset.form_paths,
        )
    assert base_url is not None and secret is not None and auth is not None
    kind, header = auth
    return Service(name=name, base_url=base_url, auth=kind, header=header, secret=secret)


def _base_url(where: str, value: str) -> str:
    problem = _url_problem(value)
    if problem is not None:
        raise InputError(f"{where}: 'baseUrl' {problem}, got {shown(value)}")
    return value.rstrip("/")


def _url_problem(value: str) -> str | None:
    if not value or len(value) > MAX_URL_CHARS:
        return f"must be an http(s) URL of at most {MAX_URL_CHARS} characters"
    if any(ord(char) <= 0x20 or ord(char) == 0x7F or char == "\\" for char in value) or not value.isascii():
        return "must be an http(s) URL of printable ASCII (no spaces, control characters or backslashes)"
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not value.startswith(parts.scheme + "://"):
        return "must be an http(s) URL"
    try:
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError:
        return "has an invalid port"
    if not parts.hostname:
        return "must name a host"
    if parts.username is not None or parts.password is not None:
        return "must not hold credentials (the secret supplies them)"
    if parts.query or parts.fragment or "?" in value or "#" in value:
        return "must not have a query or a fragment"
    if any(_is_dot_segment(segment) for segment in unquote(parts.path).split("/")):
        return "must not have '.' or '..' segments"
    return None


def _auth(where: str, value: str) -> tuple[AuthKind, str]:
    if value == "bearer":
        return "bearer", "Authorization"
    if value == "basic":
        return "basic", "Authorization"
    kind, sep, header = value.partition(":")
    if kind == "header" and sep:
        if not HEADER_NAME.fullmatch(header):
            raise InputError(f"{where}: 'auth' header name {shown(header)} is not a valid HTTP header name")
        if header.lower() in RESERVED_HEADERS:
            raise InputError(f"{where}: 'auth' cannot use the header {shown(header)}, which frames the request")
        return "header", header
    raise InputError(f"{where}: 'auth' must be 'bearer', 'basic' or 'header:<Name>', got {shown(value)}")


def _secret_name(where: str, value: str) -> str:
    if not SECRET_NAME.fullmatch(value):
        raise InputError(
            f"{where}: 'secret' must be a secret's name (1 to 256 letters, digits or any of _+=.@/-), "
            f"got {shown(value)}"
        )
    return value


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "a syntax error"
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(problem)


def _show(value: object) -> str:
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"[:60]


# -- paths --------------------------------------------------------------------------------------------


def _checked_path(service: str, path: object, base_url: str) -> str:
    """`path` as it is appended to the base URL: starting with "/", non-ASCII percent-encoded."""
    if not isinstance(path, str) or not path:
        raise InputError(f"api.proxy(): path must be a non-empty string like '/v1/customers', got {_show(path)}")

    given = path

    def refuse(problem: str) -> InputError:
        return InputError(f"api.proxy(): path {shown(given)} {problem}; it must stay under the '{service}' base URL")

    if len(path) > MAX_PATH_CHARS:
        raise refuse(f"is longer than {MAX_PATH_CHARS} characters")
    if any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in path):
        raise refuse("contains control characters")
    if "\\" in path:
        raise refuse("contains a backslash")
    if "#" in path:
        raise refuse("has a fragment ('#'), which is never sent: encode a literal '#' as %23")
    if _SCHEME.match(path):
        raise refuse("is an absolute URL (or starts with a scheme): give a path such as '/v1/customers'")
    if not path.startswith("/"):
        path = "/" + path
    if path.startswith("//"):
        raise refuse("starts with '//' (a host)")
    route = path.split("?", 1)[0]
    decoded = _decoded(route)
    if decoded is None:
        raise refuse("is percent-encoded more than a few times over")
    for form in {decoded, unicodedata.normalize("NFKC", decoded)}:
        if "\\" in form:
            raise refuse("contains an encoded backslash")
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in form):
            raise refuse("contains encoded control characters")
        if form.startswith("//"):
            raise refuse("starts with an encoded '//' (a host)")
        if any(_is_dot_segment(segment) for segment in form.split("/")):
            raise refuse("has a '.' or '..' segment (also percent-encoded)")
    encoded = quote(path, safe=_KEPT)
    full = urlsplit(base_url + encoded)
    base = urlsplit(base_url)
    if (full.scheme, full.netloc) != (base.scheme, base.netloc) or not full.path.startswith(base.path):
        raise refuse("leaves the base URL")
    return encoded


def _decoded(text: str) -> str | None:
    """`text` percent-decoded until nothing changes (double encoding included); None past a few rounds."""
    for _ in range(_DECODE_ROUNDS):
        decoded = unquote(text, errors="replace")
        if decoded == text:
            return text
        text = decoded
    return None


def _is_dot_segment(segment: str) -> bool:
    # `..;x` is `..` to servers that strip path parameters (Tomcat, some proxies).
    return segment.split(";", 1)[0].strip() in (".", "..")
