"""The node's CLI and HTTP API facing bad input: clear errors, node keeps serving."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from symphony.testing import Swarm, open_swarm

pytestmark = pytest.mark.e2e


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "symphony", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("args", "fix"),
    [
        (["--bootstrap", "/ip4/127.0.0.1/tcp/4001"], "/p2p/"),
        (["--bootstrap", "127.0.0.1:4001"], "not a multiaddr"),
        (["--api", "localhost"], "127.0.0.1:8470"),
        (["--name", ""], "--name"),
        (["--api-auth", "tokn"], "--api-auth must be auto or token"),
    ],
)
def test_bad_node_options_name_the_fix(tmp_path, args: list[str], fix: str) -> None:
    result = run_cli("node", "--data-dir", str(tmp_path), *args)
    assert result.returncode == 2
    assert fix in result.stdout + result.stderr


def test_unsafe_api_token_file_stops_the_start_with_the_fix(tmp_path) -> None:
    (tmp_path / "api-token").write_text("x" * 43)
    (tmp_path / "api-token").chmod(0o644)
    result = run_cli("node", "--data-dir", str(tmp_path), "--api", "127.0.0.1:0", "--api-auth", "token")
    assert result.returncode == 2
    assert f"run chmod 600 {tmp_path / 'api-token'}" in result.stdout
    assert not (tmp_path / "node.json").exists()


def test_api_port_in_use_is_reported(tmp_path) -> None:
    with open_swarm(tmp_path) as swarm:
        first = swarm.spawn("a").wait_ready()
        port = first.info["api"].rsplit(":", 1)[1]
        result = run_cli("node", "--data-dir", str(tmp_path / "b"), "--api", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert "--api 127.0.0.1:0" in result.stdout


def test_peers_command_without_a_node_says_how_to_start_one() -> None:
    result = run_cli("peers", "--api", "127.0.0.1:9")
    assert result.returncode == 1 and "symphony node" in result.stdout


@pytest.fixture(scope="module")
def one_node(tmp_path_factory) -> Swarm:
    with open_swarm(tmp_path_factory.mktemp("api")) as swarm:
        swarm.start(1)
        yield swarm


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"not json", 400, "JSON object"),
        (b"[1, 2]", 400, "non-empty JSON object"),
        (b"{}", 400, "non-empty JSON object"),
        (b'{"lamport": 99}', 400, "cannot update"),
        (b'{"tags": ["x"]}', 200, "lamport"),
        (b'{"availability": "asleep"}', 422, "invalid field value"),
        (b'{"tags": "' + b"x" * 70_000 + b'"}', 400, "exceeds"),
    ],
)
def test_update_api_validates_requests(one_node: Swarm, body: bytes, status: int, message: str) -> None:
    node = one_node.nodes[0]
    response = httpx.post(node.info["api"] + "/v1/node/record", content=body,
                          headers={"content-type": "application/json"}, timeout=5)
    assert response.status_code == status, response.text
    assert message in response.text
    assert node.get("/v1/node")["agent_id"] == node.agent_id, "node must keep serving"


def test_unknown_record_is_404(one_node: Swarm) -> None:
    response = httpx.get(one_node.nodes[0].info["api"] + "/v1/ledger/nobody", timeout=5)
    assert response.status_code == 404


def test_node_and_ledger_views(one_node: Swarm) -> None:
    node = one_node.nodes[0]
    info = node.get("/v1/node")
    assert info["addrs"][0].endswith("/p2p/" + node.agent_id)
    record = node.get(f"/v1/ledger/{node.agent_id}")
    assert record["available"] and record["name"] == node.name


def test_listen_port_in_use_is_reported(tmp_path) -> None:
    """py-libp2p would share the port via SO_REUSEPORT; we refuse with the fix instead."""
    with open_swarm(tmp_path) as swarm:
        first = swarm.spawn("a").wait_ready()
        listen = first.addr.split("/p2p/")[0]
        result = run_cli("node", "--data-dir", str(tmp_path / "b"), "--api", "none", "--listen", listen)
    assert result.returncode == 2
    assert "use tcp/0" in result.stdout
