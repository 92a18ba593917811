"""The node's CLI and HTTP API: clear errors for bad input (node keeps serving), and output that
scripts and logs can use (whole addresses and IDs when piped, --json, --version, clean help)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from symphony.api.http import OptionsBody
from symphony.cli.main import app
from symphony.testing import Swarm, open_swarm, wait_for

pytestmark = pytest.mark.e2e


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``symphony ARGS`` with stdout piped (not a terminal), as a script or a log would see it."""
    return subprocess.run([sys.executable, "-m", "symphony", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize(
    ("args", "fix"),
    [
        (["--bootstrap", "/ip4/127.0.0.1/tcp/4001"], "/p2p/"),
        (["--bootstrap", "127.0.0.1:4001"], "not a multiaddr"),
        (["--api", "localhost"], "127.0.0.1:8470"),
        (["--name", ""], "--name"),
        (["--api-auth", "tokn"], "--api-auth: 'tokn' is not one of auto, token; did you mean 'token'?"),
        (["--model", "scripted:arith", "--roles", "planer"], "did you mean 'planner'?"),
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


def test_piped_output_keeps_every_address_and_id_whole(tmp_path: Path) -> None:
    """Piped, nothing is wrapped at 80 columns or cut: each address and ID is whole on one line."""
    with open_swarm(tmp_path) as swarm:
        first, second = swarm.start(2)
        lines = first.output().splitlines()
        assert f"  listening {first.addr}" in lines, first.output()
        assert any(line.endswith(f"id={first.agent_id}") for line in lines), first.output()
        wait_for(lambda: [p for p in first.get("/v1/peers")["peers"]
                          if p["agent_id"] == second.agent_id and p["connection"] == "direct"],
                 timeout=30, what="the second node among the first's peers, connected directly")
        peers = run_cli("peers", "--data-dir", str(first.data_dir))
        assert any(second.agent_id in line and second.name in line and "direct" in line
                   for line in peers.stdout.splitlines()), peers
        ledger = run_cli("ledger", "--data-dir", str(first.data_dir)).stdout.splitlines()
        for node in (first, second):
            assert any(node.agent_id in line and node.addr in line for line in ledger), ledger


def test_json_output_of_the_client_commands(one_node: Swarm) -> None:
    node = one_node.nodes[0]
    peers = json.loads(run_cli("peers", "--json", "--data-dir", str(node.data_dir)).stdout)
    assert isinstance(peers, list)
    ledger = json.loads(run_cli("ledger", "--json", "--data-dir", str(node.data_dir)).stdout)
    assert [r["agent_id"] for r in ledger["records"]] == [node.agent_id]
    assert node.addr in ledger["records"][0]["addrs"]


def test_node_defaults_to_the_xdg_data_dir_and_takes_a_host_name_for_its_api(tmp_path: Path) -> None:
    """No --data-dir: $XDG_DATA_HOME/symphony/node, printed in the --json start-up line; ``--api localhost:0``
    binds 127.0.0.1; client commands find that node with no --api or --data-dir."""
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg"), "PYTHONUNBUFFERED": "1"}
    data_dir = tmp_path / "xdg" / "symphony" / "node"
    log = tmp_path / "node.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "symphony", "node", "--api", "localhost:0", "--json"],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env},
                                start_new_session=True)
    try:
        wait_for(lambda: log.read_text().strip() or proc.poll() is not None, timeout=60, what="the start-up line")
        started = json.loads(log.read_text().splitlines()[0])
        assert started["data_dir"] == str(data_dir) and (data_dir / "node.json").exists()
        assert started["api"].startswith("http://127.0.0.1:") and started["addrs"][0].endswith(started["agent_id"])
        ledger = run_cli("ledger", "--json", env=env)
        assert ledger.returncode == 0, ledger.stdout + ledger.stderr
        assert [r["agent_id"] for r in json.loads(ledger.stdout)["records"]] == [started["agent_id"]]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_bench_without_matplotlib_says_which_extra_to_install(tmp_path: Path) -> None:
    """matplotlib is in the bench extra, not a dependency: a plotting bench stops at once with the pip command."""
    (tmp_path / "matplotlib").mkdir()
    (tmp_path / "matplotlib" / "__init__.py").write_text("raise ImportError('not installed (test shadow)')\n")
    shadowed = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = run_cli("bench", "systems", "--sizes", "10", "--out", str(tmp_path / "out"), env=shadowed)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pip install 'symphony-agents[bench]'" in result.stdout
    assert not (tmp_path / "out").exists()


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("symphony 0."), result.stdout


@pytest.mark.parametrize("command", [(), ("node",), ("ask",), ("status",), ("peers",), ("ledger",), ("demo",),
                                     ("bench",), ("bench", "systems")])
def test_help_has_plain_metavars_and_no_issue_numbers(command: tuple[str, ...]) -> None:
    """No typer type labels (``<str>``, ``<list[str]>``, ``<bool>``) and no tracker references."""
    result = run_cli(*command, "--help", env={"COLUMNS": "300"})
    assert result.returncode == 0, result.stderr
    assert "Show this message and exit" in result.stdout
    for junk in ("<str>", "<bool>", "<list", "<int", "<float", "<path>", "issue", "#6"):
        assert junk not in result.stdout, f"{junk!r} in {' '.join(command)} --help"


def test_ask_demo_and_the_api_share_their_question_defaults() -> None:
    """cots, max_steps and deadline: one set of defaults (AskOptions: up to 5 one-step chains) for ``ask``,
    ``bench accuracy`` and POST /v1/tasks; ``demo`` keeps planned chains (3 of up to 3 steps), same deadline."""
    import typer.main

    group = typer.main.get_command(app)
    api = OptionsBody()
    assert (api.cots, api.max_steps) == (5, 1)
    expected = {"ask": (api.cots, api.max_steps, api.deadline_s), "demo": (3, 3, api.deadline_s)}
    for name, wanted in expected.items():
        defaults = {p.name: p.default for p in group.commands[name].params}
        assert (defaults["cots"], defaults["max_steps"], defaults["deadline"]) == wanted, name
    accuracy = {p.name: p.default for p in group.commands["bench"].commands["accuracy"].params}
    assert (accuracy["cots"], accuracy["max_steps"]) == (api.cots, api.max_steps), "bench accuracy"
