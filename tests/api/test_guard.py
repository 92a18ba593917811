"""``ApiGuard`` driven through ``httpx.ASGITransport``: which Host, Origin, token and content type pass,
what each refusal answers and counts, and the token file's safety rules."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from symphony.api.guard import ApiGuard, load_or_create_token, read_token, token_required
from symphony.api.openai_compat import is_openai_path
from symphony.errors import ConfigError
from symphony.node.config import NodeConfig

TOKEN = "s3cret-token-0123456789"
OWN = "http://127.0.0.1:8470"


async def reached(request: Request) -> JSONResponse:
    return JSONResponse({"reached": request.url.path})


def guarded(*, token: str | None = None) -> tuple[ApiGuard, CollectorRegistry]:
    routes = [Route(path, reached, methods=["GET", "POST"])
              for path in ("/", "/v1/node", "/v1/node/record", "/v1/chat/completions")]
    registry = CollectorRegistry()
    return ApiGuard(Starlette(routes=routes), token=token, is_openai_path=is_openai_path, registry=registry), registry


async def call(method: str, path: str, *, base: str = OWN, token: str | None = None,
               **kwargs: object) -> httpx.Response:
    guard, _ = guarded(token=token)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url=base) as http:
        return await http.request(method, path, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("host", ["127.0.0.1:8470", "localhost:8470", "LOCALHOST:8470", "[::1]:8470", "0.0.0.0:8470",
                                  "[0:0:0:0:0:0:0:1]:8470"])
async def test_loopback_names_of_the_own_port_pass(host: str) -> None:
    """A loopback API answers to every loopback name of its own port."""
    response = await call("GET", "/v1/node", headers={"host": host})
    assert response.status_code == 200 and response.json() == {"reached": "/v1/node"}


@pytest.mark.parametrize("host", ["evil.example:8470", "evil.example", "127.0.0.1:8471", "127.0.0.1", "",
                                  "127.0.0.1:99999", "user@127.0.0.1:8470", "127.0.0.1:8470/x"])
async def test_other_hosts_are_misdirected(host: str) -> None:
    """DNS rebinding: a Host that is not this API's own address never reaches a route (421)."""
    response = await call("GET", "/v1/node", headers={"host": host})
    assert response.status_code == 421
    assert "DNS rebinding" in response.json()["error"]


async def test_a_lan_bind_answers_only_to_its_own_address() -> None:
    """Bound to a LAN address, the API accepts that address as Host, and not loopback names."""
    lan = "http://192.0.2.5:8470"
    assert (await call("GET", "/v1/node", base=lan)).status_code == 200
    assert (await call("GET", "/v1/node", base=lan, headers={"host": "localhost:8470"})).status_code == 421


async def test_an_ipv4_client_of_a_dual_stack_bind_may_name_the_ipv4_address() -> None:
    """Through a ``::`` bind an IPv4 connection's own address is ``::ffff:a.b.c.d``; its Host is a.b.c.d."""
    response = await call("GET", "/v1/node", base="http://[::ffff:192.0.2.5]:8470", headers={"host": "192.0.2.5:8470"})
    assert response.status_code == 200


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:9999", "https://127.0.0.1:8470",
                                    "null", "http://localhost:8470.evil.example"])
async def test_foreign_origins_are_forbidden(method: str, origin: str) -> None:
    """Any Origin but the API's own is refused (403), reads included; no CORS header is sent."""
    response = await call(method, "/v1/node", headers={"origin": origin, "content-type": "application/json"})
    assert response.status_code == 403 and "cross-origin" in response.json()["error"]
    assert not any(name.startswith("access-control-") for name in response.headers)


@pytest.mark.parametrize("origin", ["http://127.0.0.1:8470", "http://localhost:8470"])
async def test_own_origin_passes(origin: str) -> None:
    """The dashboard's own fetches carry its own origin and pass."""
    response = await call("POST", "/v1/node/record", headers={"origin": origin}, json={"tags": ["x"]})
    assert response.status_code == 200


@pytest.mark.parametrize(("site", "status"), [("cross-site", 403), ("same-site", 403), ("same-origin", 200),
                                              ("none", 200)])
async def test_fetch_metadata_refuses_other_sites(site: str, status: int) -> None:
    """``Sec-Fetch-Site`` stops what carries no Origin (an ``<img>`` or ``<script>`` GET of another page)."""
    assert (await call("GET", "/v1/node", headers={"sec-fetch-site": site})).status_code == status


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonx"])
async def test_posts_that_are_not_json_are_refused(content_type: str | None) -> None:
    """A CORS "simple request" body (text/plain, form) never reaches a handler (415)."""
    headers = {"content-type": content_type} if content_type else {}
    response = await call("POST", "/v1/node/record", content=b'{"name": "owned"}', headers=headers)
    assert response.status_code == 415
    assert response.json() == {"error": "send the body as Content-Type: application/json"}


async def test_json_with_parameters_passes() -> None:
    """``application/json; charset=utf-8`` is JSON."""
    response = await call("POST", "/v1/node/record", content=b"{}",
                          headers={"content-type": "Application/JSON; charset=utf-8"})
    assert response.status_code == 200


async def test_openai_paths_answer_in_openai_shape() -> None:
    """Refusals under the OpenAI routes use OpenAI's error object."""
    response = await call("POST", "/v1/chat/completions", content=b"{}", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", TOKEN,
                                           f"Bearer {TOKEN}x"])
async def test_missing_or_wrong_token_is_unauthorized(authorization: str | None) -> None:
    """With a token required, anything but ``Bearer <token>`` gets 401 and a Bearer challenge."""
    headers = {"authorization": authorization} if authorization else {}
    response = await call("GET", "/v1/node", token=TOKEN, headers=headers)
    assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")
    assert "api-token" in response.json()["error"]


async def test_right_token_passes_and_the_dashboard_page_is_public() -> None:
    """The right token opens every route; the static page needs none (a navigation cannot send one)."""
    assert (await call("GET", "/v1/node", token=TOKEN, headers={"authorization": f"bearer {TOKEN}"})).status_code == 200
    assert (await call("GET", "/", token=TOKEN)).status_code == 200
    no_key = await call("POST", "/v1/chat/completions", token=TOKEN, json={})
    assert no_key.json()["error"]["code"] == "invalid_api_key"


async def test_a_cross_site_request_is_refused_before_the_token_is_tested() -> None:
    """A foreign page learns nothing about tokens: its requests stop at the Origin check."""
    response = await call("GET", "/v1/node", token=TOKEN,
                          headers={"origin": "http://evil.example", "authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 403


async def test_refusals_are_counted_by_reason() -> None:
    """Every refusal moves ``symphony_api_refused_total{reason}``."""
    guard, registry = guarded(token=TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url=OWN) as http:
        await http.get("/v1/node", headers={"host": "evil.example"})
        await http.get("/v1/node", headers={"origin": "http://evil.example"})
        await http.get("/v1/node")
        await http.post("/v1/node/record", content=b"{}", headers={"authorization": f"Bearer {TOKEN}"})
    counts = {reason: registry.get_sample_value("symphony_api_refused_total", {"reason": reason})
              for reason in ("host", "origin", "token", "content_type")}
    assert counts == {"host": 1.0, "origin": 1.0, "token": 1.0, "content_type": 1.0}


@pytest.mark.parametrize(("api", "auth", "required"), [
    ("127.0.0.1:8470", "auto", False), ("127.0.0.2:0", "auto", False), ("::1:8470", "auto", False),
    ("0.0.0.0:8470", "auto", True), ("192.168.1.10:8470", "auto", True), (":::8470", "auto", True),
    ("127.0.0.1:8470", "token", True),
])
def test_token_is_required_off_loopback_or_when_asked(api: str, auth: str, required: bool) -> None:
    """``--api-auth auto`` needs the token exactly when the bind is not loopback; ``token`` always."""
    assert token_required(api, auth) is required


def test_api_auth_rejects_unknown_modes(tmp_path: Path) -> None:
    """A typo in ``--api-auth`` is a ConfigError naming the choices and the likely one."""
    with pytest.raises(ConfigError, match=r"^--api-auth: 'tokn' is not one of auto, token; did you mean 'token'\?$"):
        NodeConfig(data_dir=tmp_path, api_auth="tokn")


def test_token_file_is_created_private_once_and_reused(tmp_path: Path) -> None:
    """The token is created with mode 0600 and the same token comes back on every later start."""
    token = load_or_create_token(tmp_path)
    assert stat.S_IMODE((tmp_path / "api-token").stat().st_mode) == 0o600
    assert len(token) >= 32 and load_or_create_token(tmp_path) == token == read_token(tmp_path / "api-token")


def test_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    """Like ssh with a loose key: a token file others can read is refused, with the chmod to run."""
    load_or_create_token(tmp_path)
    os.chmod(tmp_path / "api-token", 0o644)
    with pytest.raises(ConfigError, match=r"readable by other users \(mode 644\): run chmod 600 "):
        load_or_create_token(tmp_path)


@pytest.mark.parametrize("kind", ["symlink", "directory"])
def test_token_file_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    """A symlinked token (someone else's file) or a directory in its place is refused with the fix."""
    path = tmp_path / "api-token"
    if kind == "symlink":
        (tmp_path / "elsewhere").write_text("x" * 40)
        os.chmod(tmp_path / "elsewhere", 0o600)
        path.symlink_to(tmp_path / "elsewhere")
    else:
        path.mkdir()
    with pytest.raises(ConfigError, match=r"is not a regular file .*: remove it and restart the node to create a new "):
        load_or_create_token(tmp_path)
