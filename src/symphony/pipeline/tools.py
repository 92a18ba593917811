"""Tool-using executors: a step answered by a program run in the sandbox (program of thought).

An executor with the ``python`` tool asks its model for a short program that prints the step's
result (``executor.program_messages``), runs it in ``symphony.sandbox`` (a bubblewrap jail: the
isolation that lets a node run programs written for remote peers' tasks) and takes what it
printed as the step's answer. Small models slip in arithmetic they describe in words; a program's
arithmetic is exact. The program and its outcome go into the step's trace; a program that fails,
times out or prints nothing usable leaves the step to a plain answer, and the trace says so.

This is the pipeline's one I/O edge for tools: ``sandbox_works`` and ``run_program`` touch the
sandbox, and so does ``examples_passed`` (verification before the vote); ``solving_style``,
``solving_temperature`` and ``program_answer`` are pure.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import anyio

from symphony.errors import ConfigError
from symphony.pipeline.executor import extract_program
from symphony.pipeline.extraction import AnswerKind, extract_answer
from symphony.pipeline.verification import CHECK_TIMEOUT_S, Example, check_program, passed_count
from symphony.sandbox import Limits, SandboxUnavailableError, run_python

#: The tool names a node may offer (``TaskService.tools``, ``--no-tools``).
PYTHON_TOOL: Final = "python"
KNOWN_TOOLS: Final = (PYTHON_TOOL,)
#: The ledger tag that declares the python tool. Its words are those computational sub-tasks use
#: (the hashing tag encoder matches words), so the beacon's cosine score leans towards agents that
#: have it for such steps.
TOOL_TAGS: Final[dict[str, str]] = {PYTHON_TOOL: "tool python: calculate compute arithmetic exactly"}
#: A word-problem step's program is a few lines of arithmetic: a tight budget, and a run that needs
#: more is a loop the model did not mean.
PROGRAM_TIMEOUT_S: Final = 5.0
PROGRAM_LIMITS: Final = Limits(memory_bytes=256 << 20, max_processes=4, output_bytes=1024)
#: Answer kinds a program is asked for: those whose answer a computation prints.
PROGRAM_KINDS: Final = frozenset({"number"})

#: The least temperature of a chain after each style's first (``solving_temperature``).
DIVERSE_TEMPERATURE: Final = 0.7

Style = Literal["program", "text"]
_CHAIN_SLOT: Final = re.compile(r"/c(\d+)/s\d+$")


def _chain_slot(task_id: str) -> int | None:
    """The chain slot of a step's task ID (``{task}/c{n}/s{i}``); None for a direct request."""
    slot = _CHAIN_SLOT.search(task_id)
    return None if slot is None else int(slot[1])


def solving_style(task_id: str, kind: AnswerKind, tools: tuple[str, ...]) -> Style:
    """How an executor solves a step: with a program, or in text.

    Chains should differ so that the vote has something to pool (issue 16: identical solves added
    nothing). The chain's slot is in the step's task ID (``{task}/c{n}/s{i}``): slot 1 of every
    question solves in text and the others with programs, when this node has the python tool and
    the answer is one a program prints. A task ID without a slot (a direct request) uses a program."""
    if PYTHON_TOOL not in tools or kind not in PROGRAM_KINDS:
        return "text"
    slot = _chain_slot(task_id)
    return "text" if slot is not None and slot % 3 == 1 else "program"


def solving_temperature(task_id: str, requested: float | None) -> tuple[float | None, int | None]:
    """The sampling temperature and seed of a step (None: the request's temperature, the backend's seed).

    Slots 0 and 1, each solving style's first chain, sample at the requested temperature (unset: the
    backend's default, 0 here: each style's best guess). Later slots exist only to break a tie, and
    at 0 they repeat those two solves word for word (issue 16: the chains collapsed into copies), so
    they sample at ``DIVERSE_TEMPERATURE`` at least, with a seed of their own step (servers that
    seed every request alike would otherwise sample the same text)."""
    slot = _chain_slot(task_id)
    if slot is None or slot < 2:
        return requested, None
    seed = int.from_bytes(hashlib.blake2b(task_id.encode(), digest_size=4).digest(), "big") >> 1
    return max(requested or 0.0, DIVERSE_TEMPERATURE), seed


@dataclass(frozen=True)
class ProgramRun:
    """One program-of-thought attempt: the program (None when the reply held none), what it printed,
    the answer read from that (None when unusable) and why not (``reason``)."""

    program: str | None
    output: str
    answer: str | None
    reason: str

    def trace(self) -> dict[str, Any]:
        """The attempt for a step's trace (program and output clipped)."""
        return {"program": (self.program or "")[-1500:], "output": self.output[-300:], "ok": self.answer is not None,
                "reason": self.reason}


#: What a step's trace keeps of an executor's tool report, each field's type and bound: the report
#: comes from a peer, so anything else in it is dropped.
_REPORT_FIELDS: Final[dict[str, tuple[type, int]]] = {
    "program": (str, 1500), "output": (str, 300), "ok": (bool, 0), "reason": (str, 200), "fallback": (str, 20)}


def reported_tool(value: object) -> dict[str, Any]:
    """A peer's tool report (``ProgramRun.trace``, plus ``fallback``) as a step's trace keeps it: only
    the known fields, of the right type, strings clipped; {} for anything that is not a report."""
    if not isinstance(value, dict):
        return {}
    kept: dict[str, Any] = {}
    for key, (kind, limit) in _REPORT_FIELDS.items():
        field_value = value.get(key)
        if type(field_value) is kind:
            kept[key] = field_value[-limit:] if isinstance(field_value, str) else field_value
    return kept


def program_answer(output: str, kind: AnswerKind, *, is_final: bool) -> str | None:
    """The answer in what a program printed: its last non-empty line, read as ``kind`` on the
    final step (a number for ``number``), as text on an intermediate one."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines:
        return None
    last = _FLOAT_NOISE.sub(_rounded, lines[-1])
    return extract_answer(last, kind) if is_final else last[:200]


#: A float a program printed with binary noise (0.1 + 0.2 prints 0.30000000000000004; 2.2 * 100 prints
#: 220.00000000000003): rounded to ``_DECIMALS`` places before it is read, so that such answers pool in
#: the vote with the exact ones.
_DECIMALS: Final = 6
_FLOAT_NOISE: Final = re.compile(r"(?<![\w.])-?\d+\.\d{%d,}(?![\w.])" % (_DECIMALS + 1))


def _rounded(match: re.Match[str]) -> str:
    return f"{round(float(match[0]), _DECIMALS):.{_DECIMALS}f}".rstrip("0").rstrip(".")


@functools.cache
def sandbox_works() -> bool:
    """Whether this machine can build the sandbox (probed once, by running a one-line program). A
    node offers the python tool only then: without the jail no program of a peer's task runs."""
    try:
        return run_python("print(1)", timeout_s=PROGRAM_TIMEOUT_S, limits=PROGRAM_LIMITS).passed
    except SandboxUnavailableError:
        return False


def resolve_tools(asked: Sequence[str] | None) -> tuple[str, ...]:
    """The tools a node offers: ``asked`` (None: the python tool when the sandbox works here, else
    none). Raises ``ConfigError`` for an unknown tool, or for python asked for explicitly on a
    machine that cannot build the sandbox: a program written for a peer's task never runs unjailed."""
    if asked is None:
        return (PYTHON_TOOL,) if sandbox_works() else ()
    unknown = sorted(set(asked) - set(KNOWN_TOOLS))
    if unknown:
        raise ConfigError(f"unknown tool(s) {unknown}; known: {list(KNOWN_TOOLS)}")
    if PYTHON_TOOL in asked and not sandbox_works():
        raise ConfigError("the python tool needs the code sandbox, which this machine cannot build "
                          "(docs/sandbox.md); start the node with --no-tools")
    return tuple(dict.fromkeys(asked))


async def run_program(reply: str, kind: AnswerKind, *, is_final: bool) -> ProgramRun:
    """Run the program in a model's ``reply`` in the sandbox (in a worker thread: it blocks for the
    run) and read the step's answer from its output."""
    program = extract_program(reply)
    if program is None:
        return ProgramRun(None, "", None, "no program in the reply")
    try:
        result = await anyio.to_thread.run_sync(
            functools.partial(run_python, program, timeout_s=PROGRAM_TIMEOUT_S, limits=PROGRAM_LIMITS))
    except SandboxUnavailableError as exc:
        return ProgramRun(program, "", None, f"sandbox unavailable: {str(exc)[:200]}")
    if not result.passed:
        return ProgramRun(program, result.output, None, result.reason)
    answer = program_answer(result.output, kind, is_final=is_final)
    return ProgramRun(program, result.output, answer, "ok" if answer is not None else "printed no answer")


async def examples_passed(code: str, question: str, examples: tuple[Example, ...]) -> int | None:
    """How many of ``examples`` (stated in ``question``) ``code`` passes, run in the sandbox in a worker
    thread (``verification.check_program``); None when the run gave no report or the sandbox is unavailable."""
    nonce = uuid.uuid4().hex
    program = check_program(code, question, examples, nonce)
    try:
        result = await anyio.to_thread.run_sync(
            functools.partial(run_python, program, timeout_s=CHECK_TIMEOUT_S, limits=PROGRAM_LIMITS))
    except SandboxUnavailableError:
        return None
    return passed_count(result.output, nonce, len(examples))


__all__ = ["DIVERSE_TEMPERATURE", "KNOWN_TOOLS", "PROGRAM_KINDS", "PROGRAM_LIMITS", "PROGRAM_TIMEOUT_S", "PYTHON_TOOL",
           "TOOL_TAGS", "ProgramRun", "Style", "examples_passed", "program_answer", "reported_tool", "resolve_tools",
           "run_program", "sandbox_works", "solving_style", "solving_temperature"]
