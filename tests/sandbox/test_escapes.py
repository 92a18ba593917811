"""Escape attempts from generated code: each one runs, and the effect it aims at never happens on the host.

Every test checks the host side (the file, the listener, the process, the secret), and that the
attack really ran inside (its own printout), so a broken attack cannot pass for a contained one.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from symphony.sandbox import Limits
from tests.sandbox.conftest import Jail, connections, processes_named

# Raw syscall numbers for the ctypes attack: (socket, ptrace, unshare).
_SYSCALLS = {"x86_64": (41, 101, 272), "aarch64": (198, 117, 97)}


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """A host path the attacks try to create; its directory is world-writable, so only the jail protects it."""
    tmp_path.chmod(0o777)
    return tmp_path / "pwned"


@pytest.fixture
def home_secret(secret: str) -> Iterator[Path]:
    """A world-readable secret in the caller's home (/root as root), like a node's data dir and key."""
    directory = Path(tempfile.mkdtemp(prefix=".symphony-sandbox-test-", dir=Path.home()))
    try:
        directory.chmod(0o755)
        path = directory / "node.key"
        path.write_text(secret)
        path.chmod(0o644)
        yield path
    finally:
        (directory / "node.key").unlink(missing_ok=True)
        directory.rmdir()


def test_disabling_hooks_through_frames_gains_nothing(jail: Jail, target: Path, listener: socket.socket) -> None:
    """Rewriting every function reachable from the program's frames (how the audit hook was switched off)
    leaves nothing to switch off: the host stays unreachable."""
    port = listener.getsockname()[1]
    result = jail(f"""
import socket, sys
frame, rewritten = sys._getframe(), 0
while frame is not None:
    for value in list(frame.f_globals.values()):
        if hasattr(value, "__code__"):
            value.__code__, rewritten = (lambda *a, **k: None).__code__, rewritten + 1
    frame = frame.f_back
print("frames walked")
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2)
    print("CONNECTED")
except OSError as exc:
    print("connect failed", exc.errno)
try:
    open({str(target)!r}, "w").write("pwned")
except OSError as exc:
    print("write failed", exc.errno)
""")
    assert "frames walked" in result.output and "connect failed" in result.output, result.output
    assert "write failed" in result.output
    assert connections(listener) == 0
    assert not target.exists()


def test_posixsubprocess_fork_exec_runs_only_inside(jail: Jail, target: Path, secret: str, tmp_path: Path) -> None:
    """``_posixsubprocess.fork_exec`` called directly starts a shell, but that shell is in the jail too."""
    secret_file = tmp_path / "secret"
    secret_file.write_text(secret)
    secret_file.chmod(0o644)
    command = f"echo spawned; touch {target}; cat {secret_file}"
    result = jail(f"""
import _posixsubprocess, os
errpipe = os.pipe()
args = ([b"/bin/sh", b"-c", {command.encode()!r}], [b"/bin/sh"], True, (), None, None, -1, -1, -1, -1, -1, -1,
        *errpipe, False, False, -1, None, None, None, -1, None)
try:
    pid = _posixsubprocess.fork_exec(*args, False)  # 3.11.1+: allow_vfork
except TypeError:
    pid = _posixsubprocess.fork_exec(*args)
os.waitpid(pid, 0)
""")
    assert "spawned" in result.output, result.output
    assert not target.exists()
    assert secret not in result.output


def test_os_system_cannot_touch_host_files_or_processes(jail: Jail, target: Path) -> None:
    """``os.system`` runs a shell inside: it can neither create a host file nor kill a host process."""
    victim = subprocess.Popen(["sleep", "60"])
    try:
        result = jail(f'import os\nos.system("echo via-system; touch {target}; kill -9 {victim.pid}")\n')
        assert "via-system" in result.output, result.output
        assert victim.poll() is None  # the host's pid is not even visible in the sandbox's pid namespace
        assert not target.exists()
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.skipif(platform.machine() not in _SYSCALLS, reason=f"syscall numbers known for {sorted(_SYSCALLS)} only")
def test_ctypes_libc_and_raw_syscalls_are_contained(jail: Jail, target: Path, listener: socket.socket) -> None:
    """ctypes loads: libc ``system`` stays inside; raw ``socket(AF_INET)``, ``ptrace`` and
    ``unshare(CLONE_NEWUSER)`` are refused by the seccomp filter (EAFNOSUPPORT, EPERM, EPERM)."""
    sys_socket, sys_ptrace, sys_unshare = _SYSCALLS[platform.machine()]
    result = jail(f"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
print("system", libc.system(b"touch {target}"))
for name, number, args in (("socket", {sys_socket}, (2, 1, 0)), ("ptrace", {sys_ptrace}, (16, 1, 0, 0)),
                           ("unshare", {sys_unshare}, (0x10000000,))):
    print(name, libc.syscall(number, *args), ctypes.get_errno())
""")
    lines = result.output.splitlines()
    assert "system 256" in lines, result.output  # the shell ran (inside) and its touch failed: exit status 1
    assert lines[-3:] == ["socket -1 97", "ptrace -1 1", "unshare -1 1"]
    assert connections(listener) == 0
    assert not target.exists()


def test_a_forked_child_is_as_confined_as_its_parent(jail: Jail, target: Path, listener: socket.socket) -> None:
    """``os.fork``: the child tries the network and a host write; neither happens."""
    port = listener.getsockname()[1]
    result = jail(f"""
import os, socket
pid = os.fork()
if pid == 0:
    print("child ran", flush=True)
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=2)
    except OSError:
        pass
    try:
        open({str(target)!r}, "w")
    except OSError:
        pass
    os._exit(0)
os.waitpid(pid, 0)
""")
    assert "child ran" in result.output, result.output
    assert connections(listener) == 0
    assert not target.exists()


def test_no_network_reaches_the_host(jail: Jail, listener: socket.socket) -> None:
    """TCP to the host's 127.0.0.1 fails; an abstract unix socket (allowed by seccomp, scoped by the network
    namespace) is not found; the sandbox sees no network interface but its own loopback."""
    port = listener.getsockname()[1]
    abstract = f"\0symphony-sandbox-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix_listener:
        unix_listener.bind(abstract)
        unix_listener.listen(4)
        unix_listener.setblocking(False)
        result = jail(f"""
import socket
for family, address in ((socket.AF_INET, ("127.0.0.1", {port})), (socket.AF_UNIX, {abstract!r})):
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.connect(address)
        print("CONNECTED", family)
    except OSError as exc:
        print("refused", exc.errno)
print(sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]))
""")
        assert connections(unix_listener) == 0
    assert result.output.splitlines() == ["refused 97", "refused 111", "['lo']"], result.output
    assert connections(listener) == 0


def test_writes_outside_the_private_tmp_never_reach_the_host(jail: Jail, tmp_path: Path) -> None:
    """An existing host file keeps its content whatever the program tries; /usr, the program, the root and
    /dev (unsized tmpfs mounts) are read-only; writes that work land in the sized /tmp and vanish with it."""
    tmp_path.chmod(0o777)
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    victim.chmod(0o666)
    result = jail(f"""
import os
for path in ({str(victim)!r}, "/usr/symphony-pwned", "/sandbox/program.py", "/bomb", "/dev/shm/bomb"):
    try:
        open(path, "w").write("pwned")
        print("wrote", path)
    except OSError as exc:
        print("refused", path, exc.errno)
os.makedirs({str(tmp_path)!r}, exist_ok=True)  # recreate the host's path in the private /tmp
open({str(victim)!r}, "w").write("pwned")
print("private copy", open({str(victim)!r}).read())
""")
    read_only = ["/usr/symphony-pwned", "/sandbox/program.py", "/bomb", "/dev/shm/bomb"]
    expected = [f"refused {victim} 2", *(f"refused {path} 30" for path in read_only), "private copy pwned"]
    assert result.output.splitlines() == expected, result.output
    assert victim.read_text() == "original"
    assert not Path("/usr/symphony-pwned").exists()


def test_secrets_on_the_host_are_not_visible(jail: Jail, tmp_path: Path, secret: str, home_secret: Path) -> None:
    """World-readable secret files, in a temp dir and in the caller's home (/root as root), do not exist in
    the sandbox, nor do /root, /home, /etc or the project's directories."""
    tmp_path.chmod(0o755)
    in_tmp = tmp_path / "api-token"
    in_tmp.write_text(secret)
    in_tmp.chmod(0o644)
    project = Path(__file__).resolve().parents[2]
    result = jail(f"""
import os
for path in ({str(in_tmp)!r}, {str(home_secret)!r}, "/root", "/home", "/etc/passwd", {str(project)!r}):
    print(path, os.path.exists(path))
    try:
        print(open(path).read())
    except OSError as exc:
        print("unreadable", exc.errno)
print(sorted(os.listdir("/")))
""")
    assert secret not in result.output
    lines = result.output.splitlines()
    assert lines[0::2][:6] == [f"{p} False" for p in (in_tmp, home_secret, "/root", "/home", "/etc/passwd", project)]
    visible = eval(lines[-1])
    assert not {"root", "home", "etc", "work"} & set(visible), visible


def test_environment_variables_do_not_leak(jail: Jail, secret: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An API token in the caller's environment is in neither ``os.environ`` nor any /proc environ."""
    monkeypatch.setenv("SYMPHONY_API_TOKEN", secret)
    result = jail("""
import os
print(sorted(os.environ))
for pid in ("self", "1"):
    print(open(f"/proc/{pid}/environ", "rb").read())
""")
    assert secret not in result.output
    assert result.output.splitlines()[0] == "['HOME', 'LANG', 'PATH', 'PWD']", result.output


def test_a_fork_bomb_hits_the_process_limit(jail: Jail) -> None:
    """Forking until it fails stops below ``max_processes`` (counted in the sandbox's own user), and the
    children left sleeping die with the run."""
    marker = f"symphony-bomb-{uuid.uuid4().hex}"
    result = jail(f"""
import os
made = 0
try:
    while True:
        if os.fork() == 0:
            os.execv("/bin/sleep", [{marker!r}, "60"])
        made += 1
except OSError as exc:
    print("forks", made, exc.errno)
""", timeout_s=10, limits=Limits(max_processes=8))
    words = result.output.split()
    assert words[0] == "forks" and int(words[1]) < 8 and words[2] == "11", result.output  # EAGAIN
    assert result.reason == "exited with 0"
    assert processes_named(marker) == []


def test_an_exponential_fork_bomb_leaves_the_host_fine(jail: Jail) -> None:
    """``while True: os.fork()``: the run ends with a reason, nothing of it survives, the next run works."""
    result = jail("import os\nwhile True:\n    os.fork()\n", timeout_s=2)
    assert not result.passed and result.reason
    assert jail("print('after')").output == "after\n"


def test_memory_bombs_end_with_memory_errors(jail: Jail) -> None:
    """A 4 GiB allocation meets the address-space limit; filling the scratch tmpfs meets its size
    (ENOSPC); one big file meets the file-size limit (EFBIG)."""
    result = jail("x = bytearray(4 << 30)\n", limits=Limits(memory_bytes=512 << 20))
    assert result.output.rstrip().endswith("MemoryError") and result.reason == "exited with 1", result.output
    fill = jail("""
import os
for i in range(100):
    try:
        open(f"f{i}", "wb").write(b"x" * (1 << 20))
    except OSError as exc:
        print(exc.errno)
        break
for name in os.listdir("."):
    os.remove(name)  # room again: now one file over the size limit
try:
    open("big", "wb").write(b"x" * (2 << 20))
except OSError as exc:
    print(exc.errno)
""", limits=Limits(scratch_bytes=4 << 20, file_bytes=1 << 20))
    assert fill.output.split() == ["28", "27"], fill.output


def test_a_program_that_never_ends_is_killed_with_its_whole_tree(jail: Jail) -> None:
    """At the timeout the run stops with a reason, and no process it started is left on the host."""
    marker = f"symphony-forever-{uuid.uuid4().hex}"
    result = jail(f"""
import os, sys
for _ in range(3):
    if os.fork() == 0:
        os.setsid()  # a new session and group of its own: out of reach of a process-group kill
        os.execv("/bin/sleep", [{marker!r}, "600"])
print("started", flush=True)
while True:
    pass
""", timeout_s=1)
    assert result.timed_out and not result.passed and result.returncode is None
    assert result.reason == "timed out after 1 s" and "started" in result.output
    assert processes_named(marker) == []


def test_the_jail_runs_a_python_without_the_callers_site_packages(jail: Jail) -> None:
    """Only the interpreter's stdlib is there: the caller's venv (our dependencies) is not importable."""
    result = jail("import sys\nprint(sys.prefix)\nimport pydantic\n")
    assert "ModuleNotFoundError" in result.output and sys.prefix not in result.output.splitlines()[0]
    assert os.path.exists(sys.prefix)  # the caller's venv does exist, just not in the sandbox
