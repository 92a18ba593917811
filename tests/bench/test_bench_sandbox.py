"""The HumanEval sandbox refuses what untrusted completions may try."""

from __future__ import annotations

import os
from pathlib import Path

from symphony.bench.sandbox import humaneval_program, run_python


def test_a_correct_program_passes() -> None:
    """Exit 0 is a pass, and the program may use its own temp dir."""
    result = run_python("open('scratch.txt', 'w').write('ok')\nassert open('scratch.txt').read() == 'ok'\n")
    assert result.passed and not result.timed_out


def test_writing_outside_the_temp_dir_is_refused(tmp_path: Path) -> None:
    """A malicious completion writes no file outside its temp dir, by open, os.open or rename."""
    target = tmp_path / "pwned.txt"
    os.chmod(tmp_path, 0o777)  # even a world-writable directory stays untouched
    for attack in (f"open({str(target)!r}, 'w').write('x')",
                   f"import os\nos.close(os.open({str(target)!r}, os.O_CREAT | os.O_WRONLY))",
                   f"open('x', 'w').close()\nimport os\nos.rename('x', {str(target)!r})",
                   "open('../escape.txt', 'w').write('x')"):
        result = run_python(attack)
        assert not result.passed
        assert "PermissionError" in result.output
    assert not target.exists()


def test_an_infinite_loop_is_killed_on_timeout() -> None:
    """The process group is killed when the timeout passes."""
    result = run_python("while True:\n    pass\n", timeout_s=1.0)
    assert result.timed_out and not result.passed


def test_a_fork_bomb_is_contained() -> None:
    """Starting processes is refused (fork, subprocess, os.system)."""
    for attack in ("import os\nwhile True:\n    os.fork()", "import subprocess\nsubprocess.run(['true'])",
                   "import os\nos.system('true')"):
        result = run_python(attack, timeout_s=5.0)
        assert not result.passed and "not allowed" in result.output


def test_a_huge_allocation_fails_inside_the_sandbox() -> None:
    """The address-space limit turns a 4 GiB allocation into a MemoryError."""
    result = run_python("x = bytearray(4 << 30)\n", timeout_s=5.0)
    assert not result.passed and "MemoryError" in result.output


def test_network_and_ctypes_are_refused() -> None:
    """No sockets (no network), no ctypes (which could unhook the audit hook)."""
    for attack in ("import socket\nsocket.socket()", "import ctypes"):
        result = run_python(attack)
        assert not result.passed and "not allowed" in result.output


def test_humaneval_program_takes_a_body_or_a_whole_function() -> None:
    """A body continues the prompt; a whole function replaces the stub."""
    prompt = 'def inc(x):\n    """Add one."""\n'
    test = "def check(candidate):\n    assert candidate(1) == 2\n"
    assert run_python(humaneval_program("    return x + 1\n", prompt=prompt, test=test, entry_point="inc")).passed
    assert run_python(humaneval_program("def inc(x):\n    return x + 1\n", prompt=prompt, test=test,
                                        entry_point="inc")).passed
    assert not run_python(humaneval_program("    return x\n", prompt=prompt, test=test, entry_point="inc")).passed
