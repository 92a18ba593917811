"""The jail: a bubblewrap (``bwrap``) command line that runs one Python program in isolation.

Why bubblewrap: it is packaged by Debian (``bubblewrap``; nsjail and minijail are not, in
bookworm), it is the small unprivileged sandbox Flatpak relies on, and one ``bwrap`` start costs
tens of milliseconds. It builds, from user namespaces, everything ``unshare(1)`` would need a
hand-written mount script for: an empty root with read-only binds, a sized tmpfs, a fresh
``/proc`` and ``/dev``, a seccomp filter, dropped capabilities and ``PR_SET_PDEATHSIG``.

What the program gets (everything else does not exist for it):

* its own user, network, pid, ipc, uts, mount and cgroup namespaces: no network at all (an
  empty namespace with only a loopback), no view of host processes, no new user namespaces;
* a read-only root holding ``/usr`` (and its merged-/usr links ``/bin``, ``/lib``, ...) read-only, the
  interpreter's prefix read-only when it lives elsewhere, the program read-only at
  ``/sandbox/program.py``, and a private, size-limited tmpfs at ``/tmp`` (its working
  directory). No ``/etc``, ``/home``, ``/root``, data directories or keys;
* an empty environment but ``PATH``, ``HOME=/tmp`` and ``LANG``;
* rlimits set by util-linux ``prlimit`` inside the namespaces (so the process count is that of
  the sandbox's own user), no capabilities, a new session (no TTY injection), and SIGKILL when
  the caller dies.

As root, bubblewrap itself runs as the unprivileged ``nobody`` (root ignores RLIMIT_NPROC and
owns the files the node keeps 0600). Unprivileged callers run it as themselves: the namespaces
are the same, only the host uid behind the sandbox's uid 65534 differs. Where user namespaces
are unavailable, ``bwrap`` fails to start and ``SandboxUnavailableError`` says so: untrusted
code is never run without the jail.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from symphony.errors import ConfigError
from symphony.sandbox._policy import Limits

SANDBOX_UID: Final = 65534  # the uid and gid the program sees (nobody/nogroup)
PROGRAM_PATH: Final = "/sandbox/program.py"
WORK_DIR: Final = "/tmp"
# /usr plus the top-level directories that merged-/usr systems make links into it.
_SYSTEM_DIRS: Final = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SYSTEM_PYTHON: Final = Path("/usr/bin/python3")
INSTALL_HINT: Final = "install bubblewrap and util-linux (`make system-deps`, or `apt-get install bubblewrap`)"


class SandboxUnavailableError(ConfigError):
    """This machine cannot isolate untrusted code (a missing tool, or no user namespaces), so
    nothing was run. The message names what is missing and how to fix it."""


@dataclass(frozen=True)
class HostUser:
    """The host user bubblewrap runs as: ``nobody`` when we are root, else ourselves (``None`` ids)."""

    uid: int | None
    gid: int | None

    @property
    def is_dropped(self) -> bool:
        return self.uid is not None


@dataclass(frozen=True)
class Interpreter:
    """A Python the sandbox user can run, and the directories outside /usr it needs read-only."""

    executable: str
    binds: tuple[str, ...]


def host_user() -> HostUser:
    """``nobody`` when running as root (root is exempt from RLIMIT_NPROC), else the caller."""
    if os.geteuid() != 0:
        return HostUser(None, None)
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError as exc:
        raise SandboxUnavailableError("running as root, but there is no 'nobody' user to run the sandbox as") from exc
    return HostUser(entry.pw_uid, entry.pw_gid)


@functools.cache
def tool(name: str) -> str:
    """The absolute path of ``bwrap`` or ``prlimit``; raises ``SandboxUnavailableError`` without it."""
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/bin")
    if found is None:
        raise SandboxUnavailableError(f"{name!r} is not installed, so generated code cannot be isolated: {INSTALL_HINT}")
    return found


def _open_to_others(path: Path) -> bool:
    """Whether a user other than the owner may reach ``path``: it and every directory above it are o+x."""
    try:
        return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))
    except OSError:
        return False


def _usable(executable: Path, user: HostUser) -> bool:
    if user.is_dropped:
        return _open_to_others(executable)
    return os.access(executable, os.X_OK)


@functools.cache
def interpreter(user: HostUser) -> Interpreter:
    """Our own base interpreter when the sandbox user may run it, else the system's ``/usr/bin/python3``
    (a root-owned pyenv under /root is not reachable by ``nobody``; programs need the stdlib only).
    Raises ``SandboxUnavailableError`` when neither is usable."""
    ours = Path(getattr(sys, "_base_executable", sys.executable)).resolve()  # the interpreter a venv was made from
    candidates = ((ours, (sys.base_prefix, sys.base_exec_prefix)), (_SYSTEM_PYTHON.resolve(), ("/usr",)))
    for executable, prefixes in candidates:
        if executable.is_file() and _usable(executable, user):
            binds = tuple(sorted({p for p in prefixes if not _under_system_dirs(p)}))
            return Interpreter(str(executable), binds)
    raise SandboxUnavailableError(
        f"no Python interpreter the sandbox user can run: {ours} is not reachable by it and {_SYSTEM_PYTHON} "
        "is missing (`apt-get install python3`)")


def _under_system_dirs(path: str) -> bool:
    return any(path == d or path.startswith(d + "/") for d in _SYSTEM_DIRS)


def _root_fs_args() -> list[str]:
    """Read-only /usr and, for merged-/usr systems, the same links the host has (/bin -> usr/bin)."""
    args: list[str] = []
    for directory in _SYSTEM_DIRS:
        if os.path.islink(directory):
            args += ["--symlink", os.readlink(directory), directory]
        elif os.path.isdir(directory):
            args += ["--ro-bind", directory, directory]
    return args


def bwrap_argv(*, interp: Interpreter, limits: Limits, timeout_s: float, program_fd: int, seccomp_fd: int,
               status_fd: int) -> list[str]:
    """The full command: bubblewrap, then ``prlimit``, then Python on the program.

    ``program_fd`` and ``seccomp_fd`` are read by bubblewrap; it reports on ``status_fd`` (JSON) once
    the sandbox is up, which is how a failed setup is told apart from a failing program.
    """
    jail = [
        tool("bwrap"), "--unshare-all", "--unshare-user", "--disable-userns", "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_UID), "--hostname", "sandbox", "--die-with-parent", "--new-session",
        "--cap-drop", "ALL", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", WORK_DIR,
        "--setenv", "LANG", "C.UTF-8",
        *_root_fs_args(),
    ]
    for prefix in interp.binds:
        jail += ["--ro-bind", prefix, prefix]
    jail += [
        "--proc", "/proc", "--dev", "/dev",
        "--size", str(limits.scratch_bytes), "--tmpfs", WORK_DIR,
        "--ro-bind-data", str(program_fd), PROGRAM_PATH,
        "--chdir", WORK_DIR, "--seccomp", str(seccomp_fd), "--json-status-fd", str(status_fd),
        # bubblewrap's root and /dev are unsized tmpfs mounts: read-only, so /tmp is the only place to write.
        "--remount-ro", "/dev", "--remount-ro", "/",
        "--",
    ]
    # -I: no user site, no PYTHON* variables, no script dir on sys.path; -B: no bytecode writes.
    return [*jail, tool("prlimit"), *limits.prlimit_args(timeout_s), "--", interp.executable, "-I", "-B",
            PROGRAM_PATH]


__all__ = ["HostUser", "Interpreter", "SandboxUnavailableError", "bwrap_argv", "host_user", "interpreter", "tool"]
