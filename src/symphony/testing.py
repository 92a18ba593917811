"""Helpers for driving real nodes from tests, the demo and the benchmarks (as ``trio.testing`` is to trio).

- ``open_swarm`` / ``Swarm`` / ``NodeProcess``: a local swarm of real ``symphony node``
  processes on 127.0.0.1. Every process started here is tracked by its ``Swarm`` and killed
  (whole process group) when the swarm closes, whatever happened.
- ``wait_for``: waiting is always on a condition with a deadline, never a fixed sleep.
- ``EventTail``: the one reader of a node's ``events.jsonl`` (``node.eventlog`` writes it).
- ``llama_server``: llama-cpp-python's own OpenAI-compatible server on a free loopback port
  (``free_port``), killed on exit: the real ``openai:`` counterpart of tests and benches.

Used by ``symphony demo``, the end-to-end tests and the process benchmarks; nothing in a
running node imports it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx

T = TypeVar("T")

__all__ = ["EventTail", "NodeProcess", "Swarm", "free_port", "llama_server", "open_swarm", "wait_for"]


def wait_for(condition: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})")


class EventTail:
    """Reads a node's ``events.jsonl`` as it grows: each ``read()`` returns the events whose lines
    were completed since the previous one, so a line the node is still writing is never half-read.

    ``skip_existing``: start after the lines already in the file (only what happens from now on).
    A rotated log (``node.eventlog``) is not followed: the tail keeps reading the file at ``path``.
    """

    def __init__(self, path: Path, *, skip_existing: bool = False) -> None:
        self.path = path
        self.offset = 0
        self._partial = b""
        if skip_existing and path.exists():
            self.offset = path.read_bytes().rfind(b"\n") + 1

    def read(self) -> list[dict[str, Any]]:
        """The events completed since the last call (oldest first); none if the file does not exist yet."""
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]


class NodeProcess:
    """One ``symphony node`` child process with its data dir and API."""

    def __init__(
        self, data_dir: Path, name: str, *, bootstrap: list[str], heartbeat: float, args: list[str],
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.name = name
        self.bootstrap = bootstrap
        self.heartbeat = heartbeat
        self.args = args
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.listen = "/ip4/127.0.0.1/tcp/0"
        self.api_addr = "127.0.0.1:0"

    def command(self) -> list[str]:
        """The ``symphony node`` command line (``bench.nat.NsNode`` runs it inside a namespace)."""
        cmd = [sys.executable, "-m", "symphony", "node", "--data-dir", str(self.data_dir), "--name", self.name,
               "--listen", self.listen, "--api", self.api_addr, "--heartbeat", str(self.heartbeat),
               "--anti-entropy", str(self.heartbeat * 2), *self.args]
        for addr in self.bootstrap:
            cmd += ["--bootstrap", addr]
        return cmd

    def start(self) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "node.json").unlink(missing_ok=True)
        log = (self.data_dir / "stdout.log").open("ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        return self

    def wait_ready(self, timeout: float = 60) -> NodeProcess:
        def ready() -> dict[str, Any] | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"node {self.name} exited with {self.proc.returncode}: {self.output()[-2000:]}")
            path = self.data_dir / "node.json"
            if not path.exists():
                return None
            info = json.loads(path.read_text())
            return info if info["pid"] == self.proc.pid else None

        self.info = wait_for(ready, timeout=timeout, what=f"node {self.name} to be ready")
        return self

    def output(self) -> str:
        path = self.data_dir / "stdout.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def agent_id(self) -> str:
        return str(self.info["agent_id"])

    @property
    def addr(self) -> str:
        return str(self.info["addrs"][0])

    def api_headers(self) -> dict[str, str]:
        """The bearer token of a node whose API requires one (``--api-auth token``); none otherwise."""
        path = self.data_dir / "api-token"
        return {"Authorization": f"Bearer {path.read_text().strip()}"} if path.exists() else {}

    def get(self, path: str) -> Any:
        response = httpx.get(str(self.info["api"]) + path, headers=self.api_headers(), timeout=5)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: Any) -> httpx.Response:
        return httpx.post(str(self.info["api"]) + path, json=body, headers=self.api_headers(), timeout=5)

    def ledger(self) -> dict[str, dict[str, Any]]:
        return {row["agent_id"]: row for row in self.get("/v1/ledger")["records"]}

    def events(self) -> list[dict[str, Any]]:
        """Every event the node has logged so far (complete lines of its ``events.jsonl``)."""
        return self.tail().read()

    def tail(self, *, skip_existing: bool = False) -> EventTail:
        """A reader of this node's events as they come (``skip_existing``: only those logged from now on)."""
        return EventTail(self.data_dir / "events.jsonl", skip_existing=skip_existing)

    def kill(self) -> None:
        """SIGKILL: a crash, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 20) -> int:
        """SIGTERM and wait: a clean shutdown. Returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


class Swarm:
    """Starts node processes and guarantees they are all gone when it closes."""

    def __init__(self, root: Path, *, heartbeat: float = 0.5) -> None:
        self.root = root
        self.heartbeat = heartbeat
        self.nodes: list[NodeProcess] = []

    def spawn(
        self, name: str, *, bootstrap: NodeProcess | None = None, data_dir: Path | None = None,
        args: tuple[str, ...] = (), env: dict[str, str] | None = None,
    ) -> NodeProcess:
        """Start ``symphony node`` (not waiting for it); ``args`` are extra CLI options, ``env``
        extra environment variables (e.g. ``SYMPHONY_LLAMA_THREADS``)."""
        node = NodeProcess(data_dir or self.root / name, name, bootstrap=[bootstrap.addr] if bootstrap else [],
                           heartbeat=self.heartbeat, args=list(args), env=env)
        self.nodes.append(node)
        return node.start()

    def start(self, count: int) -> list[NodeProcess]:
        """Start a bootstrap node, then ``count - 1`` nodes joining through it, in parallel."""
        boot = self.spawn("n0").wait_ready()
        rest = [self.spawn(f"n{i}", bootstrap=boot) for i in range(1, count)]
        return [boot] + [node.wait_ready() for node in rest]

    def stop(self, timeout: float = 10) -> list[int | None]:
        """Clean shutdown: SIGTERM every node at once (each announces it leaves), wait up to
        ``timeout`` s in all, then SIGKILL the process group of any node still running.
        Returns the exit codes (None for a node that had to be killed)."""
        running = [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]
        for node in running:
            assert node.proc is not None
            node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: list[int | None] = []
        for node in self.nodes:
            assert node.proc is not None
            try:
                codes.append(node.proc.wait(timeout=max(0.01, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                codes.append(None)
        self.close()
        return codes

    def close(self) -> None:
        """Kill (SIGKILL, whole process group) every node still running: nothing survives."""
        for node in self.nodes:
            node.kill()


@contextmanager
def open_swarm(root: Path, **kwargs: Any) -> Iterator[Swarm]:
    """A ``Swarm`` rooted at ``root`` (``kwargs`` go to ``Swarm``) whose processes are all killed on exit."""
    swarm = Swarm(root, **kwargs)
    try:
        yield swarm
    finally:
        swarm.close()


@contextmanager
def llama_server(model_file: Path, *, log: Path, threads: int, n_ctx: int = 4096,
                 alias: str = "model") -> Iterator[str]:
    """``python -m llama_cpp.server`` on a free loopback port, serving ``model_file`` as ``alias``;
    yields its ``/v1`` URL once ``/v1/models`` answers, kills it on exit."""
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model_file), "--host",
                                 "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads),
                                 "--model_alias", alias], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}/v1"
        try:
            def up() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"llama_cpp.server exited with {proc.returncode}; see {log}")
                return httpx.get(f"{url}/models", timeout=2).status_code == 200

            wait_for(up, timeout=120, what="llama_cpp.server to answer /v1/models")
            yield url
        finally:
            proc.kill()
            proc.wait(timeout=10)


def free_port() -> int:
    """A free loopback TCP port (released before the caller binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
