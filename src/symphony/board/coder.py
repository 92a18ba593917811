"""What a team agent on a node does with a sub-task: ask its model for one Python function, and score code.

A sub-task of a coding team is "complete function ``id``" (its ``spec`` is the signature and
docstring); the agent is shown the code its dependencies' artifacts hold, asks its model once,
and posts the function it got back (``pipeline.extraction.extract_code``; the whole reply if the
model wrote no fence). A sub-task that is not code (a custom team task) gets the same prompt: the
reply is the artifact.

Generated code is never run in the node's interpreter: ``passing`` runs each sub-task's test in the
hardened sandbox (``symphony.sandbox.run_python``), with the whole library defined first so a
function may call the ones it depends on.
"""

from __future__ import annotations

import ast

from collections.abc import Mapping, Sequence

from symphony.board.graph import Subtask
from symphony.llm import ChatModel
from symphony.pipeline import extract_code
from symphony.sandbox import run_python

MAX_REPLY_TOKENS = 512
SYSTEM = ("You write one small Python function at a time for a shared library. Reply with the complete function "
          "in one ```python block: no tests, no examples, no explanation.")


def prompt(subtask: Subtask, dependencies: Mapping[str, str], *, failed: str | None = None) -> str:
    """The user message for ``subtask``: the code of the functions it may call, then its spec as a stub to complete
    (last, so the stub is the last fenced block of the prompt, as in HumanEval-style completion prompts).

    ``failed``: why an earlier attempt (another agent's, behind a fix gap) failed, so this one is not the same prompt.
    """
    lines = [f"An earlier attempt at this function failed: {failed}. Write it afresh, carefully.", ""] if failed else []
    if any(code.strip() for code in dependencies.values()):
        lines += ["These functions already exist in the library and you may call them:", ""]
        lines += [f"```python\n{code.strip()}\n```" for code in dependencies.values() if code.strip()]
        lines.append("")
    lines += [f"Complete the Python function `{subtask.id}` (write the whole function):", "",
              f"```python\n{subtask.spec.strip()}\n```"]
    return "\n".join(lines)


async def write_function(model: ChatModel, subtask: Subtask, dependencies: Mapping[str, str], *,
                         failed: str | None = None) -> tuple[str, int]:
    """Ask ``model`` for ``subtask``'s function; returns (the code, or the whole reply; tokens spent)."""
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": prompt(subtask, dependencies, failed=failed)}]
    done = await model.chat(messages, max_tokens=MAX_REPLY_TOKENS, temperature=0.0)
    return extract_code(done.text) or done.text, done.prompt_tokens + done.completion_tokens


def library(order: Sequence[str], code: Mapping[str, str]) -> str:
    """Every function of ``code`` in plan ``order``, as one module (``math`` imported, as specs may need it).

    A content that is not Python (a model that wrote prose) is left out, as a file that fails to import
    would be in the paper's one-function-per-file layout: its own test fails, the other functions still load.
    """
    return "import math\n\n" + "\n\n".join(c for c in (code.get(name, "") for name in order) if _parses(c))


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # a NUL byte, hostile nesting
        return False
    return True


def passing(order: Sequence[str], code: Mapping[str, str], tests: Mapping[str, str], *,
            timeout_s: float = 10.0) -> dict[str, bool]:
    """Which sub-tasks' tests pass with ``code``: ``tests[id]`` defines ``test_<id>()``, run alone in the sandbox."""
    module = library(order, code)
    return {name: run_python(f"{module}\n\n{test}\n\ntest_{name}()\n", timeout_s=timeout_s).passed
            for name, test in tests.items()}


__all__ = ["MAX_REPLY_TOKENS", "library", "passing", "prompt", "write_function"]
