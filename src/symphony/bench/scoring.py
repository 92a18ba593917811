"""Scorers: whether a system's extracted answer to a benchmark item is right.

Per answer kind: maths answers (GSM8K, AIME, CHAMP, BBH object counting) with
``extraction.answers_equivalent`` (exact for plain numbers, ``math-verify`` for LaTeX); option
letters and yes/no by their normalised form; free text (BBH word sorting, Dyck completions) by
normalised text; code (HumanEval) by running the item's tests on the completion in
``bench.sandbox`` (pass@1: one completion, pass or fail).
"""

from __future__ import annotations

from symphony.bench.datasets import Item
from symphony.bench.sandbox import humaneval_program, run_python
from symphony.pipeline.extraction import answers_equivalent, extract_answer


def score(item: Item, answer: str | None, *, timeout_s: float = 10.0) -> bool:
    """Whether ``answer`` (already extracted, or None) is right for ``item``. Code runs sandboxed."""
    if answer is None or not answer.strip():
        return False
    if item.kind == "code":
        program = humaneval_program(answer, prompt=item.meta["prompt"], test=item.meta["test"],
                                    entry_point=item.meta["entry_point"])
        return run_python(program, timeout_s=timeout_s).passed
    if item.kind == "option":
        letter = extract_answer(answer, "option", letters=item.letters) if len(answer.strip()) > 1 else answer
        return letter is not None and letter.strip().upper() == item.gold
    return answers_equivalent(answer, item.gold, item.kind)


__all__ = ["score"]
