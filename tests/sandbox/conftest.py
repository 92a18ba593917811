"""Fixtures for the sandbox tests: the jail (skipped only where the OS cannot build it), a host
listener on 127.0.0.1 that must never be reached, and a process-table probe."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from symphony.sandbox import SandboxResult, SandboxUnavailableError, run_python

Jail = Callable[..., SandboxResult]


@pytest.fixture(scope="session")
def jail() -> Jail:
    """``run_python``, after one probe run; skips with bubblewrap's own words where it cannot isolate."""
    try:
        run_python("pass")
    except SandboxUnavailableError as exc:
        pytest.skip(f"this OS cannot isolate code: {exc}")
    return run_python


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP listener on 127.0.0.1; a connection made while a test runs waits in its backlog."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        yield sock


def connections(sock: socket.socket) -> int:
    """How many connections reached ``sock`` (accepts them all; it is non-blocking)."""
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def processes_named(marker: str) -> list[int]:
    """Host pids whose command line holds ``marker`` (the sandbox's processes are visible from here)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue  # it exited while we looked
    return found


@pytest.fixture
def secret() -> str:
    return f"secret-{uuid.uuid4().hex}"
