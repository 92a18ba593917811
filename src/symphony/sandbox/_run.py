"""Run one program in the jail: start bubblewrap, keep the tail of its output, kill it at the deadline."""

from __future__ import annotations

import contextlib
import os
import re
import select
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import IO, Final

from symphony.errors import ConfigError
from symphony.sandbox._jail import INSTALL_HINT, SandboxUnavailableError, bwrap_argv, host_user, interpreter
from symphony.sandbox._policy import Limits, seccomp_filter

DEFAULT_LIMITS: Final = Limits()
_CHILD_PID: Final = re.compile(rb'"child-pid": *(\d+)')
_SETUP_S: Final = 30.0  # building the jail takes ~20 ms; this bounds a bubblewrap that hangs
_TEARDOWN_S: Final = 10.0  # SIGKILLed processes exit at once; only a task stuck in the kernel could take longer
# Signals whose name explains the stop better than a number: the rlimits' own, and the usual crashes.
_SIGNAL_REASONS: Final = {
    signal.SIGXCPU: "CPU time limit",
    signal.SIGXFSZ: "file size limit",
    signal.SIGKILL: "CPU hard limit or out of memory",
    signal.SIGSEGV: "crashed",
    signal.SIGABRT: "aborted",
    signal.SIGSYS: "forbidden syscall",
}


@dataclass(frozen=True)
class SandboxResult:
    """How a sandboxed program ended.

    ``passed``: it exited 0 before the deadline. ``returncode``: its exit status as bubblewrap reports
    it (128 + N when signal N ended it), ``None`` when we killed it at the deadline. ``output``: the
    tail of its stdout and stderr together (at most ``Limits.output_bytes``), ``output_truncated``
    when more was written. ``reason``: why it stopped, in words ("exited with 1", "killed by SIGXCPU
    (CPU time limit)", "timed out after 2 s").
    """

    passed: bool
    timed_out: bool
    returncode: int | None
    output: str
    output_truncated: bool
    reason: str


@dataclass
class _Tail:
    """The last ``cap`` bytes of a stream, and whether anything before them was dropped."""

    cap: int
    data: bytearray
    truncated: bool = False

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self.cap:
            del self.data[: len(self.data) - self.cap]
            self.truncated = True


def run_python(source: str, *, timeout_s: float = 10.0, limits: Limits = DEFAULT_LIMITS) -> SandboxResult:
    """Run ``source`` as ``__main__`` in the jail (see ``symphony.sandbox``) and say how it ended.

    ``timeout_s`` counts from the moment the jail is built. When it returns, no process of the sandbox
    is left. Never raises for what the program does.
    Raises ``SandboxUnavailableError`` when this machine cannot isolate it (no bubblewrap, no user
    namespaces, no libseccomp): then nothing ran.
    """
    if not timeout_s > 0:
        raise ConfigError(f"timeout_s must be positive, not {timeout_s!r}")
    user = host_user()
    data_fds = [_data_fd("program", source.encode()), _data_fd("seccomp", _filter())]
    status_read, status_write = os.pipe()
    try:
        argv = bwrap_argv(interp=interpreter(user), limits=limits, timeout_s=timeout_s, program_fd=data_fds[0],
                          seccomp_fd=data_fds[1], status_fd=status_write)
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={},
            pass_fds=(*data_fds, status_write), start_new_session=True,
            user=user.uid, group=user.gid, extra_groups=[] if user.is_dropped else None)
    finally:
        for fd in (*data_fds, status_write):
            os.close(fd)
    with os.fdopen(status_read, "rb") as status:
        watch = _Watch(proc, status, _Tail(limits.output_bytes, bytearray()), timeout_s)
        timed_out = watch.run()
    if watch.sandbox_pid is None:
        raise SandboxUnavailableError(f"bubblewrap could not build the sandbox within {_SETUP_S:g} s "
                                      f"({_text(watch.tail.data).strip()}); "
                                      "it needs unprivileged user namespaces (sysctl user.max_user_namespaces > 0) "
                                      f"and {INSTALL_HINT}")
    return _result(proc.returncode, timed_out, watch.tail, timeout_s)


def _filter() -> bytes:
    try:
        return seccomp_filter()
    except (ImportError, OSError) as exc:
        raise SandboxUnavailableError(f"cannot build the seccomp filter ({exc}): install libseccomp2 and the "
                                      "pyseccomp package") from exc


def _data_fd(name: str, data: bytes) -> int:
    """An anonymous in-memory file holding ``data``, positioned at its start, for bubblewrap to read."""
    fd = os.memfd_create(f"symphony-sandbox-{name}")
    os.write(fd, data)  # a memfd takes the whole write at once
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


@dataclass
class _Watch:
    """One sandbox from the outside: its output, bubblewrap's JSON status, and its pid namespace.

    bubblewrap reports ``child-pid``, the host pid of the sandbox's pid 1, once the jail is built: the
    program's ``timeout_s`` counts from then (building it gets ``_SETUP_S`` of its own). A pidfd on
    that pid 1 becomes readable only once it has exited, which the kernel lets happen only after
    every other process of the namespace is gone: waiting on it proves the whole tree is dead.
    """

    proc: subprocess.Popen[bytes]
    status: IO[bytes]
    tail: _Tail
    timeout_s: float
    sandbox_pid: int | None = None
    _status_text: bytes = b""
    _pidfd: int | None = None
    _deadline: float = 0.0

    def run(self) -> bool:
        """Follow the sandbox until it ends or its deadline; kill what is left; True when it timed out."""
        self._deadline = time.monotonic() + _SETUP_S
        try:
            ended = self._follow()
            if ended:
                self.proc.wait(timeout=max(0.0, self._deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            ended = False
        finally:
            self._finish()
        return not ended

    def _follow(self) -> bool:
        """Read output and status until the output's end of file (every sandbox process closed it)."""
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            selector.register(self.status, selectors.EVENT_READ)
            while (left := self._deadline - time.monotonic()) > 0:
                ready = selector.select(left)  # the status first: it starts the program's clock
                for key, _ in sorted(ready, key=lambda event: event[0].fileobj is not self.status):
                    chunk = os.read(key.fd, 1 << 16)
                    if key.fileobj is not self.status:
                        if not chunk:
                            return True
                        self.tail.add(chunk)
                    elif chunk:
                        self._on_status(chunk, running=True)
                    else:
                        selector.unregister(self.status)
        return False

    def _on_status(self, chunk: bytes, *, running: bool) -> None:
        self._status_text += chunk
        found = _CHILD_PID.search(self._status_text)
        if found is None or self.sandbox_pid is not None:
            return
        self.sandbox_pid = int(found.group(1))
        if running:  # open it at once, before the pid could be reused
            self._deadline = time.monotonic() + self.timeout_s
            with contextlib.suppress(ProcessLookupError):
                self._pidfd = os.pidfd_open(self.sandbox_pid)

    def _finish(self) -> None:
        """SIGKILL bubblewrap's group; its death kills the sandbox's pid 1 (--die-with-parent), and with
        it the namespace. Then wait (bounded) until the kernel has emptied the namespace. (When the
        program ended by itself, bubblewrap exits only after pid 1 did: nothing is left to wait for.)"""
        _kill_group(self.proc)
        self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._on_status(self.status.read(), running=False)  # what was not read yet (bubblewrap has exited)
        if self._pidfd is not None:
            select.select([self._pidfd], [], [], _TEARDOWN_S)
            os.close(self._pidfd)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL bubblewrap's process group, unless bubblewrap was already reaped (its pid may be reused)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _text(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", "replace")


def _result(returncode: int, timed_out: bool, tail: _Tail, timeout_s: float) -> SandboxResult:
    if timed_out:
        reason, code = f"timed out after {timeout_s:g} s", None
    else:
        reason, code = _exit_reason(returncode), returncode
    return SandboxResult(passed=code == 0, timed_out=timed_out, returncode=code, output=_text(tail.data),
                         output_truncated=tail.truncated, reason=reason)


def _exit_reason(returncode: int) -> str:
    """bubblewrap exits 128 + N when signal N ended the program (as a shell reports it)."""
    if returncode > 128:
        try:
            sig = signal.Signals(returncode - 128)
        except ValueError:
            return f"exited with {returncode}"
        return f"killed by {sig.name} ({_SIGNAL_REASONS.get(sig, 'signal')})"
    return f"exited with {returncode}"


__all__ = ["DEFAULT_LIMITS", "SandboxResult", "run_python"]
