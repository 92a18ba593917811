"""The local API refuses cross-site use, against real ``symphony node`` processes on 127.0.0.1:
simple-request POSTs, foreign Origins, DNS-rebinding Hosts, a hostile page in a real browser,
and a node that requires its bearer token (the CLI and the official ``openai`` client find it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from playwright.sync_api import sync_playwright
from prometheus_client.parser import text_string_to_metric_families

from symphony.testing import NodeProcess, Swarm, open_swarm
from tests.e2e.test_dashboard import CHROMIUM, CHROMIUM_FLAGS

pytestmark = pytest.mark.e2e

HOSTILE_RECORD = {"name": "owned", "tags": ["owned"], "availability": "leaving"}


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    """Two unconnected nodes with the scripted model: ``open`` (loopback, no token: the default)
    and ``locked`` (``--api-auth token``)."""
    with open_swarm(tmp_path_factory.mktemp("cross-site")) as swarm:
        swarm.spawn("open", args=("--model", "scripted:arith"))
        swarm.spawn("locked", args=("--model", "scripted:arith", "--api-auth", "token"))
        for node in swarm.nodes:
            node.wait_ready()
        yield swarm


def node(swarm: Swarm, name: str) -> NodeProcess:
    return next(n for n in swarm.nodes if n.name == name)


def own_record(target: NodeProcess) -> dict[str, Any]:
    """This node's own ledger record as the API shows it (lamport, fields, signature)."""
    return target.get(f"/v1/ledger/{target.agent_id}")


def refused(target: NodeProcess, reason: str) -> float:
    text = httpx.get(str(target.info["api"]) + "/metrics", headers=target.api_headers(), timeout=5).text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "symphony_api_refused_total" and s.labels == {"reason": reason})


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_simple_request_post_cannot_change_the_record(swarm: Swarm, content_type: str | None) -> None:
    """What a page may POST without a CORS preflight is refused (415); the record keeps its lamport and fields."""
    target = node(swarm, "open")
    before = own_record(target)
    headers = {"content-type": content_type} if content_type else {}
    response = httpx.post(str(target.info["api"]) + "/v1/node/record", content=json.dumps(HOSTILE_RECORD),
                          headers=headers, timeout=5)
    assert response.status_code == 415 and "application/json" in response.json()["error"]
    assert own_record(target) == before


def test_foreign_origin_is_forbidden_for_posts_and_the_event_stream(swarm: Swarm) -> None:
    """A foreign Origin gets 403 on a JSON POST and on GET /v1/events; the own origin streams."""
    target = node(swarm, "open")
    api = str(target.info["api"])
    before = own_record(target)
    evil = {"origin": "http://evil.example"}
    assert httpx.post(api + "/v1/node/record", json=HOSTILE_RECORD, headers=evil, timeout=5).status_code == 403
    ask = {"question": "What is 6 * 7?"}
    assert httpx.post(api + "/v1/tasks", json=ask, headers=evil, timeout=5).status_code == 403
    with httpx.stream("GET", api + "/v1/events", headers=evil, timeout=5) as events:
        assert events.status_code == 403 and "access-control-allow-origin" not in events.headers
    assert own_record(target) == before
    with httpx.stream("GET", api + "/v1/events", headers={"origin": api}, timeout=5) as events:
        assert events.status_code == 200
        assert next(events.iter_lines()).startswith('data: {"type":"snapshot"')


def test_dns_rebinding_host_is_misdirected(swarm: Swarm) -> None:
    """A request whose Host is a foreign name (DNS rebinding) is refused (421) for reads and writes."""
    target = node(swarm, "open")
    api = str(target.info["api"])
    port = api.rsplit(":", 1)[1]
    rebound = {"host": f"evil.example:{port}"}
    before = own_record(target)
    assert httpx.get(api + "/v1/ledger", headers=rebound, timeout=5).status_code == 421
    assert httpx.post(api + "/v1/node/record", json=HOSTILE_RECORD, headers=rebound, timeout=5).status_code == 421
    assert own_record(target) == before
    assert httpx.get(api + "/v1/node", headers={"host": f"localhost:{port}"}, timeout=5).status_code == 200


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/node"), ("GET", "/v1/ledger"), ("GET", "/metrics"),
                                              ("GET", "/v1/events"), ("POST", "/v1/tasks"),
                                              ("POST", "/v1/node/record"), ("GET", "/v1/models")])
def test_locked_node_needs_its_token(swarm: Swarm, method: str, path: str) -> None:
    """With the token required: no token or a wrong one -> 401; the right one -> served."""
    target = node(swarm, "locked")
    url = str(target.info["api"]) + path
    body = {"name": "locked"} if path == "/v1/node/record" else {"question": "What is 6 * 7?", "wait": True}
    for headers in ({}, {"authorization": "Bearer not-the-token-000000000000"}):
        with httpx.stream(method, url, json=body if method == "POST" else None, headers=headers, timeout=5) as response:
            assert response.status_code == 401, path
    with httpx.stream(method, url, json=body if method == "POST" else None, headers=target.api_headers(),
                      timeout=30) as response:
        assert response.status_code == 200, path


def test_locked_node_token_file_is_private_and_the_page_is_public(swarm: Swarm) -> None:
    """The token file is 0600; the static dashboard page loads without it (its data does not)."""
    target = node(swarm, "locked")
    assert (target.data_dir / "api-token").stat().st_mode & 0o777 == 0o600
    assert httpx.get(str(target.info["api"]) + "/", timeout=5).status_code == 200
    assert f"dashboard {target.info['api']}/#token=" in target.output()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "SYMPHONY_API_TOKEN"}
    return subprocess.run([sys.executable, "-m", "symphony", *args], check=False, capture_output=True, text=True,
                          timeout=60, env={**clean, **(env or {})})


def test_cli_finds_the_token(swarm: Swarm) -> None:
    """``--data-dir`` gives the CLI the address and token; SYMPHONY_API_TOKEN works too; without one it says so."""
    target = node(swarm, "locked")
    api, token = str(target.info["api"]), (target.data_dir / "api-token").read_text().strip()
    asked = run_cli("ask", "What is 6 * 7?", "--data-dir", str(target.data_dir), "--cots", "1")
    assert asked.returncode == 0 and "answer: 42" in asked.stdout, asked.stdout + asked.stderr
    assert run_cli("peers", "--api", api, "--json", env={"SYMPHONY_API_TOKEN": token}).returncode == 0
    denied = run_cli("peers", "--api", api)
    assert denied.returncode == 1 and "HTTP 401" in denied.stdout and "--data-dir" in denied.stdout


def test_openai_client_uses_the_token_as_its_api_key(swarm: Swarm) -> None:
    """The official client's api_key is the bearer token: the right one is answered, a wrong one is 401."""
    target = node(swarm, "locked")
    base = str(target.info["api"]) + "/v1"
    token = (target.data_dir / "api-token").read_text().strip()
    client = openai.OpenAI(base_url=base, api_key=token, max_retries=0, timeout=60)
    reply = client.chat.completions.create(model="symphony", messages=[{"role": "user", "content": "What is 6 * 7?"}],
                                           extra_body={"symphony": {"cots": 1}})
    assert reply.choices[0].message.content == "42"
    with pytest.raises(openai.AuthenticationError) as caught:
        openai.OpenAI(base_url=base, api_key="sk-wrong", max_retries=0).models.list()
    assert caught.value.code == "invalid_api_key"


HOSTILE_PAGE = """<!doctype html><html><body>
<iframe name="sink" id="sink"></iframe>
<form id="form" method="POST" action="{api}/v1/node/record" enctype="text/plain" target="sink">
  <input name='{{"name": "owned", "x": "' value='"}}'></form>
<script>
const api = "{api}", results = {{}};
const tries = [
  ["no-cors text/plain POST", () => fetch(api + "/v1/node/record", {{method: "POST", mode: "no-cors",
      body: JSON.stringify({record})}})],
  ["cors JSON POST", () => fetch(api + "/v1/node/record", {{method: "POST", headers: {{"content-type":
      "application/json"}}, body: JSON.stringify({record})}})],
  ["cors read", () => fetch(api + "/v1/ledger").then(r => r.text())],
];
Promise.all(tries.map(([name, attack]) => attack().then(() => {{ results[name] = "sent"; }},
                                                         e => {{ results[name] = "blocked"; }})))
  .then(() => new Promise(resolve => {{
    document.getElementById("sink").onload = resolve;
    document.getElementById("form").submit();
  }}))
  .then(() => {{ window.results = results; }});
</script></body></html>"""


@pytest.fixture
def hostile_site(tmp_path: Path, swarm: Swarm) -> Iterator[str]:
    """A page on another 127.0.0.1 port that attacks the ``open`` node's API."""
    (tmp_path / "index.html").write_text(HOSTILE_PAGE.format(api=node(swarm, "open").info["api"],
                                                             record=json.dumps(HOSTILE_RECORD)))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_hostile_page_in_a_browser_cannot_change_the_record(swarm: Swarm, hostile_site: str) -> None:
    """Real chromium: a page on another port POSTs (no-cors fetch, CORS fetch, form) and reads; all refused."""
    target = node(swarm, "open")
    before, origin_refusals = own_record(target), refused(target, "origin")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(hostile_site)
            results = page.wait_for_function("window.results", timeout=30_000).json_value()
        finally:
            browser.close()
    assert results["cors JSON POST"] == "blocked" and results["cors read"] == "blocked", results
    assert own_record(target) == before
    # the no-cors POST, the form POST, the CORS preflight and the read all reached the node and were refused
    assert refused(target, "origin") - origin_refusals >= 4
