"""The host side of `api.proxy`: a request to an integrated service, its credential added host-side.

The script names a service and a path; the base URL and the credential come from the deployment. The secret
is read here, put into one header and never anywhere else: not in the URL, not in an error text, not in a
log line, and not in what the script gets back, even when the service echoes it (each form it could take
there, raw or escaped, is redacted in the body, the error excerpt and every string of a parsed result).
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote, urlencode

from mcpdo.errors import FetchError, InputError, McpdoError, NotConfigured
from mcpdo.identity import Identity
from mcpdo.ports import HttpRequest, HttpResponse, SecretStore, WebClient
from mcpdo.sdk.args import arity, describe, obj
from mcpdo.sdk.policy import authorize
from mcpdo.sdk.web import header_safe, read_response, script_headers
from mcpdo.services import SERVICE_NAME, Service, ServiceRegistry

log = logging.getLogger("mcpdo.api")

CALL = "api.proxy"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
OPTIONS = ("method", "headers", "body")
MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_FORM_DEPTH = 32
REDACTED = "[redacted]"
# Where a missing secret is looked for, by deployment (the message names the secret, never a value).
SECRET_PLACES = (
    "locally a key of the MCPDO_SECRETS_FILE file or an environment variable of that name; on AWS the Secrets "
    "Manager secret of that name under MCPDO_SECRETS_PREFIX"
)


class ProxyApi:
    """`api.proxy(service, path, options?)` for one caller."""

    def __init__(self, identity: Identity, services: ServiceRegistry, secrets: SecretStore, web: WebClient) -> None:
        self._identity = identity
        self._services = services
        self._secrets = secrets
        self._web = web

    async def proxy(self, args: list[Any]) -> Any:
        """The service's answer (JSON parsed, else text); HttpStatusError for a non-2xx status."""
        name, path, options = arity(CALL, args, 2, 3)
        if not isinstance(name, str) or not SERVICE_NAME.fullmatch(name):
            raise InputError(f"{CALL}(): service must be a service's name like 'stripe', got {describe(name)}")
        authorize(self._identity, "proxy", name)
        service = self._services.get(name)
        url = service.url_for(path)
        shown_path = path if path.startswith("/") else "/" + path
        method, headers, body = _request_parts(service, shown_path, obj(CALL, "options", options, optional=True))
        secret = await self._secret(service)
        credential = service.credential(secret)
        hidden = _hidden_forms(secret, credential[1])
        request = HttpRequest(method=method, url=url, headers=(*headers, credential), body=body)
        try:
            response = await self._web.request(request, guarded=False)
        except McpdoError as exc:
            raise _scrubbed(exc, hidden) from None
        except Exception as exc:
            # Only the type: a client library's message may quote the request, headers included.
            log.warning("api.proxy to %s failed: %s", service.name, type(exc).__name__)
            raise FetchError(f"{CALL}(): the request to '{service.name}' failed ({type(exc).__name__})") from None
        log.debug("api.proxy %s %s -> %s", service.name, method, response.status)
        value = read_response(_redacted_body(response, hidden), f"{service.name}{shown_path}", redact=hidden)
        return _redacted_value(value, hidden)

    async def _secret(self, service: Service) -> str:
        value = await self._secrets.get(service.secret)
        secret = value.strip() if value is not None else ""
        if not secret:
            raise NotConfigured(
                f"{CALL}(): service '{service.name}' needs the secret '{service.secret}', which this deployment "
                f"does not have ({SECRET_PLACES})"
            )
        if service.auth != "basic" and not header_safe(secret):
            raise NotConfigured(
                f"{CALL}(): the secret '{service.secret}' of service '{service.name}' holds characters an HTTP "
                "header cannot carry (control characters or non-ASCII)"
            )
        return secret


def _request_parts(
    service: Service, path: str, options: dict[str, Any]
) -> tuple[str, tuple[tuple[str, str], ...], bytes | None]:
    for key in options:
        if key not in OPTIONS:
            raise InputError(f"{CALL}(): unknown option {describe(key)}; the options are {', '.join(OPTIONS)}")
    method = options.get("method")
    method = "GET" if method is None else method
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise InputError(f"{CALL}(): method must be one of {', '.join(METHODS)}, got {describe(method)}")
    credential = {service.header.lower(): f"carries the '{service.name}' credential, which the deployment sets"}
    headers = script_headers(CALL, options.get("headers"), credential)
    body, content_type = _body(service, path, options.get("body"))
    if content_type is not None and not any(name.lower() == "content-type" for name, _ in headers):
        headers = (*headers, ("Content-Type", content_type))
    return method.upper(), headers, body


def _body(service: Service, path: str, value: Any) -> tuple[bytes | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, str):
        data, content_type = value.encode("utf-8", errors="surrogatepass"), None
    elif isinstance(value, dict) and service.sends_form(path):
        data, content_type = _form(value).encode("ascii"), "application/x-www-form-urlencoded"
    elif isinstance(value, dict | list):
        data, content_type = json.dumps(value, ensure_ascii=False).encode("utf-8"), "application/json"
    else:
        raise InputError(f"{CALL}(): body must be an object, an array or a string, got {describe(value)}")
    if len(data) > MAX_BODY_BYTES:
        raise InputError(f"{CALL}(): body is {len(data)} bytes; at most {MAX_BODY_BYTES}")
    return data, content_type


def _form(value: dict[str, Any]) -> str:
    """Stripe's form encoding: nested objects as `a[b]`, arrays as `a[0]`, null and empty as '' (unset)."""
    pairs: list[tuple[str, str]] = []

    def walk(key: str, item: Any, depth: int) -> None:
        if depth > MAX_FORM_DEPTH:
            raise InputError(f"{CALL}(): body is nested more than {MAX_FORM_DEPTH} levels deep")
        if isinstance(item, dict) and item:
            for name, child in item.items():
                walk(f"{key}[{name}]" if key else str(name), child, depth + 1)
        elif isinstance(item, list) and item:
            for index, child in enumerate(item):
                walk(f"{key}[{index}]", child, depth + 1)
        elif item is None or isinstance(item, dict | list):
            pairs.append((key, ""))
        elif isinstance(item, bool):
            pairs.append((key, "true" if item else "false"))
        else:
            pairs.append((key, str(item)))

    walk("", value, 0)
    return urlencode(pairs)


# -- keeping the secret out of everything the script sees --------------------------------------------


def _hidden_forms(secret: str, header_value: str) -> tuple[str, ...]:
    """Every spelling of the credential an echoing service could return: raw, JSON-escaped, URL-encoded,
    and the header value (which holds the base64 of a basic credential); longest first."""
    forms = {secret, header_value, header_value.partition(" ")[2]}
    for text in list(forms):
        forms.add(json.dumps(text)[1:-1])
        forms.add(json.dumps(text, ensure_ascii=False)[1:-1])
        forms.add(text.replace("/", "\\/"))
        forms.add(quote(text, safe=""))
    return tuple(sorted((form for form in forms if form), key=len, reverse=True))


def _redact(text: str, hidden: tuple[str, ...]) -> str:
    for form in hidden:
        text = text.replace(form, REDACTED)
    return text


def _redacted_body(response: HttpResponse, hidden: tuple[str, ...]) -> HttpResponse:
    body = response.body
    for form in hidden:
        raw = form.encode("utf-8", errors="surrogatepass")
        if raw in body:
            body = body.replace(raw, REDACTED.encode())
    if body is response.body:
        return response
    return HttpResponse(status=response.status, headers=response.headers, body=body, url=response.url)


def _redacted_value(value: Any, hidden: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return _redact(value, hidden)
    if isinstance(value, list):
        return [_redacted_value(item, hidden) for item in value]
    if isinstance(value, dict):
        return {_redact(key, hidden): _redacted_value(item, hidden) for key, item in value.items()}
    return value


def _scrubbed(exc: McpdoError, hidden: tuple[str, ...]) -> McpdoError:
    """`exc` with the credential redacted from its text and its chain cut (a cause may quote the request)."""
    exc.message = _redact(exc.message, hidden)
    exc.args = tuple(_redact(arg, hidden) if isinstance(arg, str) else arg for arg in exc.args)
    exc.__cause__ = None
    exc.__context__ = None
    exc.__suppress_context__ = True
    return exc
