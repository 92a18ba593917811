"""The local API's guard against cross-site use: drive-by web pages, DNS rebinding, LAN strangers.

Theory of operation
-------------------
The API changes the node's signed record and spends its compute, so "who may call it" is
the whole question. A browser on the same machine will send requests to ``127.0.0.1`` for
any page it visits, and a node whose ``--api`` binds a LAN address is reachable by everyone
on that LAN. ``ApiGuard`` wraps every route and refuses, in this order:

1. **421 Misdirected Request** when ``Host`` is not the API's own address: the address the
   connection arrived on (ASGI ``scope["server"]``, so ``--api HOST:0`` and a ``0.0.0.0``
   bind work), plus ``localhost``/``127.0.0.1``/``[::1]`` (and the ``0.0.0.0``/``[::]`` a
   wildcard bind prints) when that address is loopback. Names other than these are never
   accepted: reach a LAN-bound node by its IP address.
   DNS rebinding points a hostile name at 127.0.0.1; the browser then sends
   ``Host: evil.example``, and is refused before anything is read. 421 rather than 403: it
   says "this server is not that host", which tells an honest user who typed a DNS name to
   use the address the node printed, instead of suggesting a credentials problem.
2. **403** when ``Origin`` is present and is not the API's own origin (``http://`` + an
   allowed host), or when ``Sec-Fetch-Site`` says ``cross-site``/``same-site``. Browsers
   send ``Origin`` with every POST (``no-cors`` fetches and form posts included) and with
   every ``EventSource``; ``Sec-Fetch-Site`` also covers ``<img>``/``<script>`` GETs.
   No CORS header is ever sent, so no other origin can read a response either.
3. **401** when a bearer token is required (``--api-auth token``, or any non-loopback
   bind) and ``Authorization: Bearer <token>`` (or ``x-api-key: <token>``, as the anthropic
   SDK sends it) does not match, compared in constant time.
   The dashboard page itself (``/``, ``/dashboard``) is public: it is static, holds no
   data, and a browser cannot attach a header to a navigation; everything it fetches
   needs the token. So is the A2A agent card (``api.a2a``), which is how a client learns it needs one.
4. **415** when a request other than GET/HEAD/OPTIONS does not declare
   ``Content-Type: application/json``. The "simple requests" a page can send without a
   CORS preflight (``text/plain``, forms) therefore never reach a handler.

Each refusal is a JSON error in the route's own shape (``{"error": "..."}``, or OpenAI's
``{"error": {"message", "type", "param", "code"}}`` under the OpenAI paths) and is counted
in ``symphony_api_refused_total{reason}``. The token lives in ``<data_dir>/api-token``
(mode 0600), created once and reused; a token file that is a symlink, not a regular file,
or readable by others is refused with the fix, as ssh refuses a loose key.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from symphony.errors import ConfigError
from symphony.node.config import parse_host_port

TOKEN_FILE = "api-token"
TOKEN_ENV = "SYMPHONY_API_TOKEN"
#: the dashboard page and the A2A agent card (``api.a2a``: clients discover it before they have credentials)
PUBLIC_PATHS = frozenset({"/", "/dashboard", "/.well-known/agent-card.json"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: what a client on this machine may call a loopback API (0.0.0.0 and :: reach loopback listeners on Linux)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "0.0.0.0", "::")
#: what browsers send in ``Sec-Fetch-Site`` for a request this origin's own page (or the user) made
OWN_FETCH_SITES = frozenset({"same-origin", "none"})

#: status, error code (OpenAI shape) and metric label of each refusal
Refusal = tuple[int, str, str]
HOST_REFUSED: Refusal = (421, "misdirected_request", "host")
ORIGIN_REFUSED: Refusal = (403, "cross_origin_forbidden", "origin")
TOKEN_REFUSED: Refusal = (401, "invalid_api_key", "token")
MEDIA_REFUSED: Refusal = (415, "unsupported_media_type", "content_type")


def token_required(api: str, auth: str) -> bool:
    """Whether an API bound at ``api`` (``HOST:PORT``) with ``--api-auth auth`` needs the token."""
    host, _ = parse_host_port(api)
    return auth == "token" or not ipaddress.ip_address(host).is_loopback


def node_api_token(data_dir: Path, api: str, auth: str) -> str | None:
    """The token a node's API bound at ``api`` with ``--api-auth auth`` requires, or None if it needs none.

    Created on first use (``load_or_create_token``); raises ``ConfigError`` if its file is unsafe."""
    return load_or_create_token(data_dir) if token_required(api, auth) else None


def load_or_create_token(data_dir: Path) -> str:
    """The node's API token from ``data_dir/api-token``, created (0600, 256 random bits) on first use.

    Raises ``ConfigError`` naming the file and the fix when it is unsafe or unreadable."""
    path = data_dir / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return read_token(path)
    except OSError as exc:
        raise ConfigError(f"cannot create the API token file {path}: {exc.strerror}") from exc
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(token + "\n")
    return token


def read_token(path: Path) -> str:
    """Read a token file written by ``load_or_create_token``; ``ConfigError`` if it is unsafe or bad."""
    try:
        info = path.lstat()
    except OSError as exc:
        raise ConfigError(f"cannot read the API token file {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"the API token file {path} is not a regular file (a symlink or a directory?): "
                          "remove it and restart the node to create a new one")
    if info.st_mode & 0o077:
        raise ConfigError(f"the API token file {path} is readable by other users (mode "
                          f"{stat.S_IMODE(info.st_mode):o}): run chmod 600 {path}")
    try:
        token = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the API token file {path}: {exc}") from exc
    if len(token) < 16:
        raise ConfigError(f"the API token file {path} holds no usable token: remove it and restart the node")
    return token


def _normal_host(host: str) -> str:
    """``host`` as compared: IP addresses in compressed form (an IPv4 client of a dual-stack ``::``
    bind shows up as ``::ffff:a.b.c.d``: its IPv4 form), names lower-case."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host.lower()
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).compressed


def _authority(text: str, *, default_port: int) -> tuple[str, int] | None:
    """``(host, port)`` of ``HOST[:PORT]`` (IPv6 in brackets), or None if malformed."""
    try:
        parts = urlsplit("//" + text)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.username is not None or parts.path or parts.query or parts.fragment:
        return None
    return _normal_host(parts.hostname), default_port if port is None else port


def own_authorities(server: tuple[str, int] | None) -> frozenset[tuple[str, int]]:
    """The ``(host, port)`` pairs a request to the socket at ``server`` may name in ``Host``."""
    if server is None:
        return frozenset()
    host, port = _normal_host(server[0]), int(server[1])
    names = {host}
    if ipaddress.ip_address(host).is_loopback:
        names.update(LOOPBACK_NAMES)
    return frozenset((name, port) for name in names)


class ApiGuard:
    """ASGI middleware: Host, Origin, bearer token and JSON content type checks for every route."""

    def __init__(self, app: ASGIApp, *, token: str | None, is_openai_path: Callable[[str], bool],
                 registry: CollectorRegistry) -> None:
        self.app = app
        self._token = None if token is None else token.encode()
        self._is_openai_path = is_openai_path
        self.refused = Counter("symphony_api_refused", "API requests refused by the cross-site guard, by reason",
                               ["reason"], registry=registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan; the app has no websocket route, so starlette closes those
            await self.app(scope, receive, send)
            return
        refusal = self.check(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        (status, code, reason), message = refusal
        self.refused.labels(reason=reason).inc()
        headers = {"WWW-Authenticate": 'Bearer realm="symphony"'} if status == 401 else None
        await self._error(scope, status, code, message, headers)(scope, receive, send)

    def check(self, scope: Scope) -> tuple[Refusal, str] | None:
        """The first check ``scope`` fails, with a message for the client; None if it passes all."""
        headers = Headers(scope=scope)
        own = own_authorities(scope.get("server"))
        if _authority(headers.get("host", ""), default_port=80) not in own:
            return HOST_REFUSED, ("the Host header must be this API's own address (DNS rebinding defence): "
                                  "use the address the node printed, e.g. http://127.0.0.1:8470")
        if not self._own_origin(headers, own):
            return ORIGIN_REFUSED, "cross-origin requests are refused: this API serves its own pages and local clients"
        if self._token is not None and scope["path"] not in PUBLIC_PATHS and not self._token_ok(headers):
            return TOKEN_REFUSED, (f"this API needs its token: send Authorization: Bearer <token>, the token being "
                                   f"in the node's data dir ({TOKEN_FILE}); the CLI reads it with --data-dir or "
                                   f"{TOKEN_ENV}")
        if scope.get("method", "GET") not in SAFE_METHODS and not _is_json(headers):
            return MEDIA_REFUSED, "send the body as Content-Type: application/json"
        return None

    @staticmethod
    def _own_origin(headers: Headers, own: frozenset[tuple[str, int]]) -> bool:
        if headers.get("sec-fetch-site", "none").lower() not in OWN_FETCH_SITES:
            return False
        origin = headers.get("origin")
        if origin is None:  # not sent by browsers for their own same-origin GETs, nor by non-browser clients
            return True
        scheme, _, authority = origin.partition("://")
        return scheme.lower() == "http" and _authority(authority, default_port=80) in own

    def _token_ok(self, headers: Headers) -> bool:
        assert self._token is not None
        api_key = headers.get("x-api-key")  # how the anthropic SDK sends its api_key
        if api_key is not None:
            return hmac.compare_digest(api_key.strip().encode(), self._token)
        scheme, _, given = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token)

    def _error(self, scope: Scope, status: int, code: str, message: str,
               headers: dict[str, str] | None) -> JSONResponse:
        if self._is_openai_path(scope["path"]):
            body: dict[str, object] = {"error": {"message": message, "type": "invalid_request_error",
                                                 "param": None, "code": code}}
        else:
            body = {"error": message}
        return JSONResponse(body, status_code=status, headers=headers)


def _is_json(headers: Headers) -> bool:
    return headers.get("content-type", "").partition(";")[0].strip().lower() == "application/json"
