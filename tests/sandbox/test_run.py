"""The sandbox's honest cases and its contract: results, output capping, limits, and refusing to run
at all where the jail cannot be built."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import symphony.sandbox._jail as jail_module
from symphony.errors import ConfigError
from symphony.sandbox import Limits, SandboxUnavailableError, run_python
from symphony.sandbox._jail import tool
from symphony.sandbox._run import _exit_reason
from tests.sandbox.conftest import Jail


def test_a_program_that_prints_and_exits_0_passes(jail: Jail) -> None:
    """Exit 0 is a pass; stdout and stderr are captured in order."""
    result = jail("import sys\nprint('out', flush=True)\nprint('err', file=sys.stderr)\n")
    assert result.passed and not result.timed_out
    assert (result.returncode, result.output, result.reason) == (0, "out\nerr\n", "exited with 0")


def test_an_exit_code_is_reported(jail: Jail) -> None:
    result = jail("raise SystemExit(3)")
    assert not result.passed and result.returncode == 3 and result.reason == "exited with 3"


def test_output_is_capped_to_its_tail(jail: Jail) -> None:
    """A program printing far more than the cap keeps only the last ``output_bytes``."""
    result = jail("print('x' * 100_000 + 'END')", limits=Limits(output_bytes=100))
    assert result.passed and result.output_truncated
    assert len(result.output) == 100 and result.output.endswith("xEND\n")


def test_the_private_tmp_is_writable_and_the_working_directory(jail: Jail) -> None:
    result = jail("import os\nopen('scratch.txt', 'w').write('ok')\nprint(os.getcwd(), open('/tmp/scratch.txt').read())")
    assert result.output == "/tmp ok\n"


def test_asyncio_works_without_the_network(jail: Jail) -> None:
    """AF_UNIX stays open (asyncio's self-pipe is a unix socketpair) while inet sockets are refused."""
    result = jail("import asyncio\nasync def main():\n    return 42\nprint(asyncio.run(main()))")
    assert result.output == "42\n"


def test_signals_are_named_in_the_reason() -> None:
    """bubblewrap reports 128 + N for signal N: the rlimits' own signals get their meaning."""
    assert _exit_reason(128 + 24) == "killed by SIGXCPU (CPU time limit)"
    assert _exit_reason(137) == "killed by SIGKILL (CPU hard limit or out of memory)"
    assert _exit_reason(1) == "exited with 1"


def test_limits_and_the_timeout_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"^sandbox limit memory_bytes must be a positive int, not 0$"):
        Limits(memory_bytes=0)
    with pytest.raises(ConfigError, match=r"^timeout_s must be positive, not 0$"):
        run_python("pass", timeout_s=0)


def test_a_missing_tool_is_a_clear_error() -> None:
    with pytest.raises(SandboxUnavailableError, match=r"'no-such-bwrap' is not installed.*make system-deps"):
        tool("no-such-bwrap")


@pytest.fixture
def failing_bwrap() -> Iterator[str]:
    """A stand-in for bubblewrap on a kernel without user namespaces: it prints bwrap's error and exits 1
    (in a world-readable directory, so ``nobody`` can run it when we are root)."""
    directory = tempfile.mkdtemp(prefix="symphony-fake-bwrap-")
    os.chmod(directory, 0o755)
    path = Path(directory) / "bwrap"
    path.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    path.chmod(0o755)
    yield str(path)
    shutil.rmtree(directory)


def test_without_user_namespaces_nothing_runs(failing_bwrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """When bubblewrap cannot build the jail the caller gets ``SandboxUnavailableError`` with bubblewrap's
    words, never an unisolated run."""
    real_tool = jail_module.tool
    monkeypatch.setattr(jail_module, "tool", lambda name: failing_bwrap if name == "bwrap" else real_tool(name))
    with pytest.raises(SandboxUnavailableError, match=r"setting up uid map: Permission denied.*user namespaces"):
        run_python("print('ran')")


_AS_CALLER = """
import json, sys
sys.path[:0] = {paths!r}
from symphony.sandbox import run_python
r = run_python({program!r})
print(json.dumps({{"passed": r.passed, "output": r.output}}))
"""


def _reachable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & 0o005 == 0o005 for p in (path, *path.parents) if p != Path("/"))


@pytest.mark.skipif(os.geteuid() != 0, reason="becoming an unprivileged caller needs root")
def test_an_unprivileged_caller_gets_the_same_jail(jail: Jail, tmp_path: Path, secret: str) -> None:
    """Run as ``nobody`` (not root: bubblewrap uses user namespaces as that user), the program still sees no
    host file, no network and no environment."""
    import pyseccomp

    nobody = pwd.getpwnam("nobody")
    paths = [str(Path(__file__).resolve().parents[2] / "src"), str(Path(pyseccomp.__file__).parent)]
    python = Path("/usr/bin/python3")
    if not python.exists() or not all(_reachable_by_others(Path(p)) for p in paths):
        pytest.skip(f"{python} or one of {paths} is not reachable by nobody")
    tmp_path.chmod(0o755)
    (tmp_path / "secret").write_text(secret)
    (tmp_path / "secret").chmod(0o644)
    program = (f"import os, socket\nprint(os.path.exists({str(tmp_path / 'secret')!r}), sorted(os.listdir('/')))\n"
               "socket.socket(socket.AF_INET)\n")
    done = subprocess.run([str(python), "-I", "-c", _AS_CALLER.format(paths=paths, program=program)],
                          capture_output=True, text=True, user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[],
                          env={"SYMPHONY_API_TOKEN": secret}, timeout=60, check=True)
    result = json.loads(done.stdout)
    assert not result["passed"]
    exists, listing = result["output"].splitlines()[0].split(" ", 1)
    assert exists == "False" and "'sandbox'" in listing, result["output"]
    assert not any(f"'{name}'" in listing for name in ("root", "home", "etc", "work"))
    assert "Address family not supported" in result["output"] and secret not in result["output"]
