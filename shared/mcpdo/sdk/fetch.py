"""The host side of `api.fetch`: checks the script's request, then sends it through the guarded web client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from mcpdo.errors import FetchRefused, InputError
from mcpdo.identity import Identity
from mcpdo.netguard import check_scheme
from mcpdo.ports import HttpRequest, WebClient
from mcpdo.sdk.args import arity, describe, obj
from mcpdo.sdk.calls import action_of
from mcpdo.sdk.policy import authorize
from mcpdo.sdk.web import read_response, script_headers

CALL = "api.fetch"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
FETCH_OPTIONS = ("method", "headers", "body")
MAX_URL_CHARS = 8192
MAX_BODY_BYTES = 8 * 1024 * 1024


class FetchApi:
    """`api.fetch(url, { method, headers, body })` for one caller."""

    def __init__(self, identity: Identity, web: WebClient) -> None:
        self._identity = identity
        self._web = web

    async def fetch(self, args: list[Any]) -> Any:
        """The response body (JSON parsed, else text); HttpStatusError for a non-2xx status."""
        url, options = arity(CALL, args, 1, 2)
        url = _url(url)
        # Anonymous callers may GET only (the action depends on the method: mcpdo.sdk.calls); a grant can
        # name the host, as `user.can('fetch', 'api.example.com')` asks.
        action = action_of(CALL, args)
        authorize(self._identity, action, _host(url) or "*")
        check_scheme(urlsplit(url).scheme, url)
        opts = obj(CALL, "options", options, optional=True)
        unknown = sorted(set(opts) - set(FETCH_OPTIONS))
        if unknown:
            raise InputError(f"{CALL}(): unknown option '{unknown[0]}' (options: {', '.join(FETCH_OPTIONS)})")
        request = HttpRequest(
            method=_method(opts.get("method")),
            url=url,
            headers=script_headers(CALL, opts.get("headers"), {}),
            body=_body(opts.get("body")),
            check_redirect=None if self._identity.can(action, "*") else self._redirect_check(action),
        )
        response = await self._web.request(request, guarded=True)
        return read_response(response, url[:200])

    def _redirect_check(self, action: str) -> Callable[[str], None]:
        """A grant that names hosts covers redirects only to hosts it names too."""
        identity = self._identity
        return lambda host: authorize(identity, action, host.lower() or "*")


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{CALL}(): url must be a non-empty string, got {describe(value)}")
    if len(value) > MAX_URL_CHARS:
        raise InputError(f"{CALL}(): url is longer than {MAX_URL_CHARS} characters")
    return value.strip()


def _host(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        raise FetchRefused(f"{CALL}(): not a valid URL: {url[:200]!r}") from None


def _method(value: Any) -> str:
    if value is None:
        return "GET"
    method = value.upper() if isinstance(value, str) else None
    if method not in METHODS:
        raise InputError(f"{CALL}(): method must be one of {', '.join(METHODS)}, got {describe(value)}")
    return method


def _body(value: Any) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{CALL}(): body must be a string (JSON.stringify(data) for JSON), got {describe(value)}")
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{CALL}(): body is not valid Unicode (it holds a lone surrogate)") from None
    if len(data) > MAX_BODY_BYTES:
        raise InputError(f"{CALL}(): body is larger than {MAX_BODY_BYTES} bytes")
    return data
