"""The README's "two machines" commands, run as written on one machine with two ports.

Only what cannot be fixed in a README is substituted: ``.venv/bin/symphony`` -> this Python's
``-m symphony``, the ports -> free ones, the data dirs -> temporary ones, alice's peer ID -> the one
she prints, and the embedded model -> the scripted test double (so the test takes seconds).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from symphony.testing import wait_for

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_commands() -> list[str]:
    """The shell commands of the bash block after the "Two machines" heading, continuations joined."""
    text = README.read_text()
    section = text[text.index("## Two machines"):]
    block = section[section.index("```bash") + len("```bash"):]
    block = block[:block.index("```")]
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_readme_two_machine_commands_work_on_one_machine(tmp_path: Path) -> None:
    commands = readme_commands()
    assert [c.split()[1] for c in commands] == ["node", "node", "peers", "ledger", "ask", "ask"], commands
    ports = {port: str(free_port()) for port in ("4001", "4002", "8470", "8471")}
    nodes: list[subprocess.Popen[bytes]] = []

    def argv(command: str) -> list[str]:
        for old, new in ports.items():
            command = command.replace(old, new)
        command = command.replace("~/.symphony/", f"{tmp_path}/").replace("llama:qwen2.5-coder-0.5b", "scripted:arith")
        if "<alice's peer ID>" in command:
            command = command.replace("<alice's peer ID>", alice_id)
        words = shlex.split(command)
        assert words[0] == ".venv/bin/symphony"
        return [sys.executable, "-m", "symphony", *words[1:]]

    def start(command: str, data_dir: Path) -> str:
        log = (tmp_path / f"{data_dir.name}.log").open("wb")
        nodes.append(subprocess.Popen(argv(command), stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        info = wait_for(lambda: (data_dir / "node.json").exists() and (data_dir / "node.json").read_text(),
                        timeout=60, what=f"{data_dir.name} to start")
        return str(re.search(r'"agent_id": "(\w+)"', info).group(1))

    def run(command: str) -> str:
        result = subprocess.run(argv(command), capture_output=True, text=True, timeout=120,
                                env={**os.environ, "COLUMNS": "200"})
        assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
        return result.stdout

    try:
        alice_id = ""
        alice_id = start(commands[0], tmp_path / "alice")
        bob_id = start(commands[1], tmp_path / "bob")
        wait_for(lambda: "alice" in run(commands[2]) and "True" in run(commands[2]), timeout=60,
                 what="bob to see alice")
        ledger = run(commands[3])
        assert "2 records" in ledger and "bob" in ledger
        answer = run(commands[4])
        assert "answer: 14" in answer and "[ok]" in answer
        raw = run(commands[5])
        assert '"status": "done"' in raw and '"answer": "14"' in raw
        task_id = re.search(r'"task_id": "(\w+)"', raw).group(1)
        status = run(f".venv/bin/symphony status {task_id} --api 127.0.0.1:8470")
        assert "answer: 14" in status
        assert alice_id[-6:] in answer + status or bob_id[-6:] in answer + status, "the trace names the agents"
        for proc in nodes:
            proc.send_signal(signal.SIGTERM)
        assert [proc.wait(timeout=20) for proc in nodes] == [0, 0], "both nodes leave cleanly"
    finally:
        for proc in nodes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in nodes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
