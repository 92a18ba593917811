"""Run untrusted model-written Python (HumanEval completions) in a contained subprocess.

Layers, each a separate line of defence (none is a full jail on its own):

1. a fresh interpreter (``python -I -B``: no user site, no env vars, no bytecode writes) in a new
   temporary working directory, with an empty environment, in its own process group, killed
   (the whole group) when ``timeout_s`` passes;
2. resource limits set before ``exec``: CPU seconds, address space, file size, open files, and a
   process count; when we run as root the child drops to the unprivileged ``nobody`` user first,
   since root ignores the process-count limit and may write anywhere;
3. a Python audit hook (PEP 578), installed before the untrusted code is compiled, that refuses
   file writes, deletes and renames outside the temp dir, every socket, and starting processes
   (fork, exec, spawn, ``os.system``, ``subprocess``). ``ctypes`` is refused too, since it could
   bypass the hook.

A completion that raises, exceeds a limit or is refused simply fails its test: the result says why.
"""

from __future__ import annotations

import os
import pwd
import resource
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

MEMORY_BYTES: Final = 1 << 30
FILE_BYTES: Final = 1 << 20
MAX_PROCESSES: Final = 64
MAX_OUTPUT_CHARS: Final = 2000

# Runs inside the child before the untrusted program: installs the audit hook, then executes it.
_BOOTSTRAP: Final = r'''
import os, sys
_root = os.path.realpath(os.getcwd())
_write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_blocked = {"os.system", "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.kill",
            "os.killpg", "subprocess.Popen", "pty.spawn", "ctypes.dlopen", "ctypes.cdata", "ctypes.dlsym",
            "os.chmod", "os.chown", "os.symlink", "os.link", "shutil.rmtree", "os.truncate", "os.putenv",
            "os.unsetenv", "os.chdir", "os.chroot", "sys.setrecursionlimit", "resource.setrlimit"}
def _inside(path):
    try:
        path = os.fsdecode(path) if not isinstance(path, int) else None
    except Exception:
        return False
    return path is not None and os.path.realpath(os.path.join(_root, path)).startswith(_root + os.sep)
def _hook(event, args):
    if event in _blocked or event.startswith("socket.") or event.startswith("ctypes."):
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open":
        path, mode, flags = args
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _write_flags)
        if writes and not _inside(path):
            raise PermissionError(f"sandbox: writing {path!r} outside the sandbox is not allowed")
    elif event in ("os.remove", "os.rename", "os.replace", "os.mkdir", "os.rmdir", "os.utime"):
        paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
        if not all(_inside(p) for p in paths):
            raise PermissionError(f"sandbox: {event} outside the sandbox is not allowed")
_source = open("program.py", encoding="utf-8").read()
sys.addaudithook(_hook)
exec(compile(_source, "program.py", "exec"), {"__name__": "__main__"})
'''


@dataclass(frozen=True)
class SandboxResult:
    """How a program ended: ``passed`` (exit 0), ``timed_out``, the return code, the output tail."""

    passed: bool
    timed_out: bool
    returncode: int | None
    output: str


def _limits(cpu_s: int) -> None:
    """Runs in the child between fork and exec: only resource syscalls (no locks taken)."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_BYTES, FILE_BYTES))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_NPROC, (MAX_PROCESSES, MAX_PROCESSES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _unprivileged() -> tuple[int, int] | None:
    """(uid, gid) of ``nobody`` when we are root (root ignores RLIMIT_NPROC and writes anywhere)."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


def _world_executable(path: Path) -> bool:
    """Whether any user may run ``path``: it and every directory above it are o+x."""
    return all(p.exists() and p.stat().st_mode & 0o001 for p in (path, *path.parents))


def _interpreter(drop_to: tuple[int, int] | None) -> str:
    """A Python that the sandbox user can execute: ours, or the system's when ours sits in root's
    home (the program needs the standard library only). Raises ``RuntimeError`` when none can."""
    if drop_to is None:
        return sys.executable
    base = getattr(sys, "_base_executable", sys.executable)  # the interpreter a venv was made from
    for candidate in (Path(sys.executable).resolve(), Path(base).resolve(), Path("/usr/bin/python3")):
        if _world_executable(candidate.resolve()):
            return str(candidate)
    raise RuntimeError("no Python interpreter is executable by the unprivileged sandbox user 'nobody'")


def run_python(program: str, *, timeout_s: float = 10.0) -> SandboxResult:
    """Run ``program`` in the sandbox (see the module docstring); never raises for what it does."""
    drop_to = _unprivileged()
    with tempfile.TemporaryDirectory(prefix="symphony-sandbox-") as tmp:
        (Path(tmp) / "program.py").write_text(program, encoding="utf-8")
        if drop_to is not None:
            os.chown(tmp, *drop_to)
            os.chown(Path(tmp) / "program.py", *drop_to)
        proc = subprocess.Popen(
            [_interpreter(drop_to), "-I", "-B", "-c", _BOOTSTRAP], cwd=tmp, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, user=drop_to[0] if drop_to else None, group=drop_to[1] if drop_to else None,
            extra_groups=[] if drop_to else None,
            # rlimits must be set in the child before exec; _limits makes only setrlimit calls.
            preexec_fn=lambda: _limits(max(1, int(timeout_s) + 1)),  # noqa: PLW1509
        )
        try:
            out, _ = proc.communicate(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, _ = proc.communicate()
            timed_out = True
        _kill_group(proc)  # children it left behind, if any
    text = out.decode("utf-8", "replace")[-MAX_OUTPUT_CHARS:]
    return SandboxResult(passed=proc.returncode == 0 and not timed_out, timed_out=timed_out,
                         returncode=proc.returncode, output=text)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def humaneval_program(completion: str, *, prompt: str, test: str, entry_point: str) -> str:
    """The program HumanEval runs for a completion: the prompt, the completion, the tests, a check.

    A completion that defines ``entry_point`` itself replaces the prompt's stub (the prompt still
    supplies its imports and helpers); otherwise it is taken as the stub's body.
    """
    if f"def {entry_point}" in completion:
        body = f"{prompt}    pass\n\n{completion}"
    else:
        body = prompt + completion
    return f"{body}\n\n{test}\n\ncheck({entry_point})\n"


__all__ = ["SandboxResult", "humaneval_program", "run_python"]
