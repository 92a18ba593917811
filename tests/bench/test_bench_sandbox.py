"""HumanEval scoring runs completions in the sandbox: right ones pass, wrong or hostile ones fail.

The escape attempts themselves are in tests/sandbox/."""

from __future__ import annotations

from pathlib import Path

from symphony.bench.datasets import Item
from symphony.bench.scoring import humaneval_program, score
from symphony.sandbox import run_python

PROMPT = 'def inc(x):\n    """Add one."""\n'
TEST = "def check(candidate):\n    assert candidate(1) == 2\n"


def _item() -> Item:
    return Item("HumanEval-inc", "q", "    return x + 1\n", "code",
                meta={"prompt": PROMPT, "test": TEST, "entry_point": "inc"})


def test_humaneval_program_takes_a_body_or_a_whole_function() -> None:
    """A body continues the prompt; a whole function replaces the stub; a wrong body fails."""
    assert run_python(humaneval_program("    return x + 1\n", prompt=PROMPT, test=TEST, entry_point="inc")).passed
    assert run_python(humaneval_program("def inc(x):\n    return x + 1\n", prompt=PROMPT, test=TEST,
                                        entry_point="inc")).passed
    assert not run_python(humaneval_program("    return x\n", prompt=PROMPT, test=TEST, entry_point="inc")).passed


def test_a_completion_that_loops_forever_fails_at_the_timeout() -> None:
    assert not score(_item(), "    while True:\n        pass\n", timeout_s=1.0)


def test_a_right_but_hostile_completion_passes_without_touching_the_host(tmp_path: Path) -> None:
    """Scoring judges the answer; the jail keeps its side effects away: a right completion that also
    tries to create a host file passes, and the file does not exist."""
    tmp_path.chmod(0o777)
    target = tmp_path / "pwned"
    hostile = f"    import os\n    os.system('touch {target}')\n    return x + 1\n"
    assert score(_item(), hostile)
    assert not target.exists()
