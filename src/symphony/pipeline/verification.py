"""Verification before the vote: code answers checked against the examples their question states.

A code question usually shows how the function behaves (``>>> f(2)`` then ``4``; ``f(2) == 4``;
``f(2) => 4``; "For x = 2 the output should be 4" is not parsed). Chains whose code gets more of
those examples right are better evidence than chains that fail them, whatever their beacon
weight: the initiator runs each chain's code on the examples in the sandbox and only the chains
with the most examples passed vote (``survivors``). This is the checking step the issue-16
measurements asked for ("a chain held the gold answer ... and the vote returned it in only
half"), in the spirit of execution-filtered sampling (CodeT, AlphaCode): it costs no model call.

Pure code: ``examples_in`` parses, ``check_program`` writes the program the sandbox runs and
``passed_count`` reads its output; running it is the initiator shell's job (``service``).

A limit: the code under check runs with the check in one sandboxed process, so code written to
cheat (printing the marker line, or hard-coding the examples) can claim passes; the marker carries
a nonce to make the first harder. Verification ranks honest attempts; lying peers are the
reputation table's job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

#: At most this many examples are checked per question, each call and expected value clipped.
MAX_EXAMPLES: Final = 12
MAX_EXAMPLE_CHARS: Final = 400
#: One check run: the code and its examples together (a sandbox run, like a tool step's program).
CHECK_TIMEOUT_S: Final = 5.0

_DEF: Final = re.compile(r"^[ \t]*def[ \t]+([A-Za-z_]\w*)[ \t]*\(", re.M)
_IMPORT: Final = re.compile(r"^[ \t]*(?:import[ \t]+\w|from[ \t]+[\w.]+[ \t]+import[ \t])[^\n]*$", re.M)
_DOCTEST: Final = re.compile(r"^[ \t]*>>>[ \t]?(?P<call>[^\n]+)\n(?P<want>(?:[ \t]*(?!>>>)\S[^\n]*\n?)+)", re.M)
_END_OF_BLOCK: Final = re.compile(r'"""|\'\'\'|```')
_RELATION: Final = re.compile(r"^[ \t]*(?:==>|=>|==|➞|->|=|should return|returns?)[ \t]*(?P<want>\S.*?)[ \t.,;]*$")


@dataclass(frozen=True)
class Example:
    """One stated behaviour: ``call`` (a Python expression calling the question's function) should
    give the value that ``want`` spells (Python source, or the value's printed form)."""

    call: str
    want: str


def examples_in(question: str) -> tuple[Example, ...]:
    """The examples ``question`` states for the functions it defines (doctest lines first, then
    ``f(x) == y``-style lines), without repeats, at most ``MAX_EXAMPLES``."""
    names = set(_DEF.findall(question))
    if not names:
        return ()
    found = [*_doctests(question), *_relations(question, names)]
    unique = list(dict.fromkeys(e for e in found if len(e.call) <= MAX_EXAMPLE_CHARS
                                and len(e.want) <= MAX_EXAMPLE_CHARS))
    return tuple(unique[:MAX_EXAMPLES])


def _doctests(question: str) -> list[Example]:
    """``>>> call`` followed by the lines of its expected output, up to a blank line or the next prompt."""
    examples = []
    for match in _DOCTEST.finditer(question):
        want = " ".join(line.strip() for line in match["want"].splitlines() if line.strip())
        want = _END_OF_BLOCK.split(want, maxsplit=1)[0].strip()
        if want:
            examples.append(Example(match["call"].strip(), want))
    return examples


def _relations(question: str, names: set[str]) -> list[Example]:
    """Lines that call one of ``names`` and state its value: ``f(1, 2) == 3``, ``f("a") => 'b'``, ``f(x) ➞ y``."""
    examples = []
    for line in question.splitlines():
        if ">>>" in line or _DEF.match(line):
            continue
        for name in names:
            start = _call_start(line, name)
            if start < 0:
                continue
            end = _call_end(line, start + len(name))
            if end < 0:
                continue
            relation = _RELATION.match(line[end:])
            if relation:
                examples.append(Example(line[start:end], relation["want"]))
            break
    return examples


def _call_start(line: str, name: str) -> int:
    match = re.search(rf"(?<![\w.]){re.escape(name)}\(", line)
    return match.start() if match else -1


def _call_end(line: str, open_at: int) -> int:
    """The index just past the parenthesis closing the one at ``open_at`` (strings skipped), else -1."""
    depth, quote, escaped = 0, "", False
    for index in range(open_at, len(line)):
        char = line[index]
        if quote:
            escaped, quote = (not escaped and char == "\\"), ("" if char == quote and not escaped else quote)
            continue
        if char in "\"'":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                return index + 1
    return -1


def check_program(code: str, question: str, examples: tuple[Example, ...], nonce: str) -> str:
    """The program that runs ``code`` on ``examples``: the question's imports, the code, then each
    example evaluated from source in its own ``try`` (an exception, or an example that is no valid
    Python, fails that example only), ending with one line
    ``<nonce> <passed> <total>``. A value matches when it equals ``want`` evaluated (as written,
    its value after a last "=", or with ``true``/``false`` capitalised), or, where ``want`` is no
    Python expression, when its ``str`` or ``repr`` is ``want``."""
    imports = "\n".join(dict.fromkeys(m.strip() for m in _IMPORT.findall(question)))
    cases = ",\n    ".join(f"({e.call!r}, {e.want!r})" for e in examples)
    return f"""{imports}
{code}

def __symphony_same(got, want):
    import math
    spelled = [want, want.rpartition("=")[2], want.replace("true", "True").replace("false", "False")]
    for text in spelled:  # as written; its last "= value" ("19 - 5 - 6 = 8"); JavaScript-style booleans
        try:
            value = eval(text.strip(), globals())
            break
        except Exception:
            pass
    else:
        return str(got).strip() == want.strip() or repr(got) == want.strip()
    if isinstance(got, float) or isinstance(value, float):
        try:
            return math.isclose(got, value, rel_tol=1e-6, abs_tol=1e-9)
        except TypeError:
            return False
    return got == value or (isinstance(got, tuple) and list(got) == value)

__symphony_passed = 0
__symphony_cases = [
    {cases},
]
for __symphony_call, __symphony_want in __symphony_cases:
    try:
        __symphony_passed += bool(__symphony_same(eval(__symphony_call, globals()), __symphony_want))
    except BaseException:
        pass
print({nonce!r}, __symphony_passed, {len(examples)})
"""


def passed_count(output: str, nonce: str, total: int) -> int | None:
    """How many examples the run passed, from the last line of its ``output`` (None: no valid report)."""
    lines = output.strip().splitlines()
    parts = lines[-1].split() if lines else []
    if len(parts) != 3 or parts[0] != nonce or parts[2] != str(total) or not parts[1].isdigit():
        return None
    passed = int(parts[1])
    return passed if passed <= total else None


def survivors(passed: Mapping[str, int | None]) -> set[str]:
    """The ballots (by chain id) that vote after the check: those with the most examples passed. A
    chain whose check gave no report counts as passing none; when no chain passes any, all vote
    (the check told nothing apart)."""
    best = max((p or 0 for p in passed.values()), default=0)
    return set(passed) if best == 0 else {chain for chain, p in passed.items() if (p or 0) == best}


__all__ = ["CHECK_TIMEOUT_S", "MAX_EXAMPLES", "Example", "check_program", "examples_in", "passed_count", "survivors"]
