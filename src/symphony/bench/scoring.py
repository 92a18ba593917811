"""Scorers: whether a system's extracted answer to a benchmark item is right.

Per answer kind: maths answers (GSM8K, AIME, CHAMP, BBH object counting) with
``extraction.answers_equivalent`` (exact for plain numbers, ``math-verify`` for LaTeX), and failing
that by the value the answer states: small models box their working ("\\boxed{6 \\times 8 = 48}",
"\\boxed{x = 48}", "\\boxed{8\\text{servings}}"), which is right when the right-hand side of its last
"=" equals the gold once a unit in ``\\text{}`` is dropped; option
letters and yes/no by their normalised form; free text (BBH word sorting, Dyck completions) by
normalised text; code (HumanEval) by running the item's tests on the completion in the
``symphony.sandbox`` jail (pass@1: one completion, pass or fail).
"""

from __future__ import annotations

import re
from typing import Final

from symphony.bench.datasets import Item
from symphony.pipeline import AnswerKind, answers_equivalent, extract_answer
from symphony.sandbox import run_python

_UNIT: Final = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{[^{}]*\}")


def stated_value(answer: str) -> str:
    """What a maths answer states: the right-hand side of its last "=", units in ``\\text{}`` dropped."""
    return _UNIT.sub(" ", answer.rpartition("=")[2]).strip()


def matches_gold(answer: str, gold: str, kind: AnswerKind) -> bool:
    """Whether an extracted non-code answer is ``gold``: equivalent as ``kind``, or for numbers by ``stated_value``."""
    if answers_equivalent(answer, gold, kind):
        return True
    value = stated_value(answer)
    return kind == "number" and bool(value) and value != answer.strip() and answers_equivalent(value, gold, kind)


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


def score(item: Item, answer: str | None, *, timeout_s: float = 10.0) -> bool:
    """Whether ``answer`` (already extracted, or None) is right for ``item``. Code runs sandboxed; raises
    ``SandboxUnavailableError`` when this machine cannot isolate it (it is never run unisolated)."""
    if answer is None or not answer.strip():
        return False
    if item.kind == "code":
        program = humaneval_program(answer, prompt=item.meta["prompt"], test=item.meta["test"],
                                    entry_point=item.meta["entry_point"])
        return run_python(program, timeout_s=timeout_s).passed
    if item.kind == "option":
        letter = extract_answer(answer, "option", letters=item.letters) if len(answer.strip()) > 1 else answer
        return letter is not None and letter.strip().upper() == item.gold
    return matches_gold(answer, item.gold, item.kind)


__all__ = ["humaneval_program", "matches_gold", "score", "stated_value"]
