"""An executor's prompt for one sub-task, and the parsing of its answer (DESIGN §4).

A Symphony executor (arXiv:2508.20019) gets a sub-question with background: the original question
and the Q/A pairs of the chain's earlier steps (``protocol.messages.Task``). ``execution_messages``
renders that as a short chat prompt; ``parse_step_answer`` pulls the step's answer out of the
model's output with ``extraction`` and says whether it is usable, so the planner can move to a
backup executor when it is not (DESIGN §4, fault handling).

Prompts stay small for 0.1-1.5B models: one worked example, the question clipped head-and-tail to
``MAX_QUESTION_CHARS``, and only the last ``MAX_PREVIOUS_PAIRS`` earlier steps, each clipped. The
last earlier steps are kept because a step usually builds on the one just before it.

Validity (``StepAnswer.valid``): an empty output, an answer over ``MAX_ANSWER_CHARS`` (all kinds but
code, the same bound voting uses), or an output that never concluded (no boxed answer, or for code
no closed code block) and either looped or was cut at its token budget is invalid. A cut output's
last line is wherever the budget ran out ("3. **Calculate the difference"), not a result; passing
it on as the step's answer made the next steps build on it (docs/results.md, GSM8K items 25-34,
where 15 of 20 non-numeric intermediate answers came from cut steps). On the final
step the answer must also be extractable in the wanted kind: a number, an option letter, yes/no,
code. Intermediate steps are read as text (boxed content, else the "answer is" phrase, else the
last line), since their answers need not have the final answer's form.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from symphony.pipeline.extraction import AnswerKind, extract_answer, extract_code, extract_text, last_boxed
from symphony.pipeline.planner import (
    FINAL_FORMS,
    MAX_QUESTION_CHARS,
    MAX_STEP_CHARS,
    check_answer_kind,
    clip,
    context_block,
)
from symphony.pipeline.voting import MAX_ANSWER_CHARS

#: Token budget of every executor call, intermediate or final (and of the one-shot baselines). It
#: was 256 for intermediate steps: then 30% of a 0.5B model's steps were cut before their boxed
#: result, and on dev items all such steps concluded within 512 (docs/results.md, GSM8K items
#: 25-34). A step that loops still stops here.
STEP_MAX_TOKENS: Final = 512
MAX_PREVIOUS_PAIRS: Final = 6
MAX_PREVIOUS_QUESTION_CHARS: Final = 300
MAX_PREVIOUS_ANSWER_CHARS: Final = 400
#: A line repeated this often, making up half the output, with no boxed answer: the model looped.
_LOOP_REPEATS = 8

_STEP_EXAMPLE = (
    "Problem: Tom buys 4 pens at $3 each and pays with a $20 bill. How much change does he get?\n"
    "Earlier steps: none\n"
    "Step: How much do 4 pens at $3 each cost?\n"
    "Answer: 4 * 3 = 12. \\boxed{12}"
)
_FINAL_EXAMPLES: Final[dict[str, str]] = {
    "number": (
        "Problem: Tom buys 4 pens at $3 each and pays with a $20 bill. How much change does he get?\n"
        "Earlier steps:\n1. How much do 4 pens at $3 each cost? -> 12\n"
        "Step: What is $20 minus that cost?\n"
        "Answer: 20 - 12 = 8. \\boxed{8}"
    ),
    "option": (
        "Problem: Which is largest? (A) 2^5 (B) 5^2 (C) 3^3\n"
        "Earlier steps:\n1. What are the values of 2^5, 5^2 and 3^3? -> 32, 25, 27\n"
        "Step: Which option has the largest value?\n"
        "Answer: 32 is the largest, so option A. \\boxed{A}"
    ),
    "yes_no": (
        "Problem: Is 91 a prime number?\n"
        "Earlier steps:\n1. Which prime numbers below 10 divide 91? -> 7, since 91 = 7 * 13\n"
        "Step: Is 91 a prime number?\n"
        "Answer: 91 has the divisor 7, so it is not prime. \\boxed{no}"
    ),
    "text": (
        "Problem: What is the capital of the country where the Eiffel Tower stands?\n"
        "Earlier steps:\n1. In which country is the Eiffel Tower? -> France\n"
        "Step: What is the capital of that country?\n"
        "Answer: The capital of France is Paris. \\boxed{Paris}"
    ),
    "code": (
        "Problem: Write a Python function sum_even(xs) that returns the sum of the even numbers in a list.\n"
        "Earlier steps:\n1. How do you test whether an integer n is even in Python? -> n % 2 == 0\n"
        "Step: Write the complete Python function sum_even(xs).\n"
        "Answer:\n```python\ndef sum_even(xs):\n    return sum(x for x in xs if x % 2 == 0)\n```"
    ),
}
_FINAL_SAMPLES: Final[dict[str, str]] = {
    "number": "\\boxed{8}",
    "option": "\\boxed{B}",
    "yes_no": "\\boxed{yes} or \\boxed{no}",
    "text": "\\boxed{Paris}",
}


def _earlier(previous: Sequence[tuple[str, str]]) -> str:
    pairs = [(q.strip(), a.strip()) for q, a in previous if q.strip() or a.strip()]
    if not pairs:
        return "Earlier steps: none"
    kept = pairs[-MAX_PREVIOUS_PAIRS:]
    first = len(pairs) - len(kept) + 1
    lines = ["Earlier steps:"]
    if first > 1:
        lines.append(f"({first - 1} earlier steps omitted)")
    for n, (q, a) in enumerate(kept, start=first):
        answer = clip(a, MAX_PREVIOUS_ANSWER_CHARS) or "(no answer)"
        lines.append(f"{n}. {clip(q, MAX_PREVIOUS_QUESTION_CHARS)} -> {answer}")
    return "\n".join(lines)


def execution_messages(
    step: str,
    *,
    question: str,
    previous: Sequence[tuple[str, str]],
    is_final: bool,
    answer_kind: str,
    context: str = "",
) -> list[dict[str, str]]:
    """System and user chat messages asking an executor model to answer one sub-question.

    Args:
        step: the sub-question (clipped to ``MAX_STEP_CHARS``). A step equal to ``question`` (the
            ``single_step_plan`` fallback) is not repeated: the model is told to solve the problem.
        question: the original question, as background (clipped to ``MAX_QUESTION_CHARS``); blank under
            minimal disclosure, when the planner did not mark the step as needing it: no Problem line then.
        previous: the chain's earlier (sub-question, answer) pairs, oldest first; only the last
            ``MAX_PREVIOUS_PAIRS`` are shown, each clipped.
        is_final: whether this step must give the final answer, in the form ``answer_kind`` needs.
        answer_kind: one of ``extraction.ANSWER_KINDS``.
        context: the conversation before the question (``planner.context_block``).

    Raises ``ValueError`` for an unknown kind.
    """
    kind = check_answer_kind(answer_kind)
    if not is_final:
        rule = ("Answer only this step, not the whole problem. Think in a few short lines, then give the "
                "result of this step as \\boxed{...}.")
        example = _STEP_EXAMPLE
    elif kind == "code":
        rule = "This is the last step. Think briefly, then write the complete Python code in one ```python block."
        example = _FINAL_EXAMPLES[kind]
    else:
        rule = (
            f"This is the last step. Think in a few short lines, then give the final answer to the problem "
            f"as {FINAL_FORMS[kind]}, written like {_FINAL_SAMPLES[kind]}."
        )
        example = _FINAL_EXAMPLES[kind]
    system = (
        "You answer one step of a larger problem. Use the results of the earlier steps.\n"
        f"{rule}\n\nExample\n{example}{context_block(context)}"
    )
    if step.strip() != question.strip():
        step_line = f"Step: {clip(step.strip(), MAX_STEP_CHARS)}"
    elif previous:  # the anchored final step (planner.anchor_final_step): earlier results are working
        step_line = "Step: Solve the problem. Use the earlier steps' results, but check them: they may be wrong."
    else:
        step_line = "Step: Solve the problem."
    problem = f"Problem: {clip(question.strip(), MAX_QUESTION_CHARS)}\n" if question.strip() else ""
    user = f"{problem}{_earlier(previous)}\n{step_line}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


#: The worked example of a program-of-thought step (``program_messages``), as one earlier chat turn:
#: variables named after the problem's quantities, one ``print`` of the result. It prints, never boxes:
#: a program's answer is what the sandbox saw it print (``tools.run_program``), not a value the model
#: claims. A turn, not text in the system message: shown as text, the example's "Step:" line was copied
#: into 9 of 12 replies on GSM8K dev items 1-4, and 2 of those ended there, with no program.
_PROGRAM_EXAMPLE: Final = (
    "Problem: Tom buys 4 pens at $3 each and pays with a $20 bill. How much change does he get?\n"
    "Step: Solve the problem.",
    "```python\npens_cost = 4 * 3\nchange = 20 - pens_cost\nprint(change)\n```",
)
_FENCED: Final = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)(?:```|\Z)", re.S | re.I)


def program_messages(
    step: str, *, question: str, previous: Sequence[tuple[str, str]], context: str = "",
) -> list[dict[str, str]]:
    """Chat messages asking an executor model for a short Python program that prints the step's
    result (program of thought: the sandbox computes, the model only writes the arithmetic down):
    the instruction, the worked example as one earlier exchange, then this step with the same
    background as ``execution_messages`` (the problem, the earlier steps)."""
    system = (
        "You solve one step of a problem by writing a short Python program. Name a variable for each "
        "quantity in the problem, compute the result, and print only the result with one print(). "
        f"Reply with one ```python block and nothing else.{context_block(context)}"
    )
    step_line = (f"Step: {clip(step.strip(), MAX_STEP_CHARS)}" if step.strip() != question.strip()
                 else "Step: Solve the problem.")
    problem = f"Problem: {clip(question.strip(), MAX_QUESTION_CHARS)}\n" if question.strip() else ""
    earlier = f"{_earlier(previous)}\n" if previous else ""
    asked, answered = _PROGRAM_EXAMPLE
    return [{"role": "system", "content": system}, {"role": "user", "content": asked},
            {"role": "assistant", "content": answered},
            {"role": "user", "content": f"{problem}{earlier}{step_line}"}]


def extract_program(text: str) -> str | None:
    """The program in a model's program-of-thought reply: its last ```python block (a cut block
    counts: the sandbox then reports the syntax error), else the whole reply when it calls print."""
    blocks = [b for b in _FENCED.findall(text) if b.strip()]
    if blocks:
        return str(blocks[-1]).strip("\n")
    return text.strip() if "print(" in text and "```" not in text else None


StepReason = Literal["ok", "empty", "no_answer", "too_long", "looping", "truncated"]


@dataclass(frozen=True)
class StepAnswer:
    """An executor's answer to one step: the extracted ``answer`` (None when there is none), the
    model's ``raw`` output, whether the answer is usable (``valid``) and why not (``reason``)."""

    answer: str | None
    raw: str
    valid: bool
    reason: StepReason


def _looping(text: str) -> bool:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return False
    _, repeats = Counter(lines).most_common(1)[0]
    return repeats >= _LOOP_REPEATS and repeats * 2 >= len(lines)


def parse_step_answer(text: str, *, kind: AnswerKind, is_final: bool = True, truncated: bool = False) -> StepAnswer:
    """The answer in an executor's output, and whether the chain can use it.

    ``kind`` is the question's answer kind. The final step's answer is extracted as that kind
    (``extraction.extract_answer``); an intermediate step's as text, or as code for code
    questions when the output holds a code block. ``truncated`` says the model stopped at its
    token budget (``llm.Completion.truncated``). See the module docstring for validity.
    Raises ``ValueError`` for an unknown kind.
    """
    kind = check_answer_kind(kind)
    if not text.strip():
        return StepAnswer(None, text, valid=False, reason="empty")
    if is_final:
        answer = extract_answer(text, kind)
    else:
        answer = (extract_code(text) if kind == "code" and "```" in text else None) or extract_text(text)
    if answer is not None and not answer.strip():
        answer = None
    concluded = last_boxed(text) is not None or (kind == "code" and text.count("```") >= 2)
    if not concluded and _looping(text):
        return StepAnswer(answer, text, valid=False, reason="looping")
    if not concluded and truncated:
        return StepAnswer(answer, text, valid=False, reason="truncated")
    if answer is None:
        return StepAnswer(None, text, valid=False, reason="no_answer")
    if kind != "code" and len(answer) > MAX_ANSWER_CHARS:
        return StepAnswer(answer, text, valid=False, reason="too_long")
    return StepAnswer(answer, text, valid=True, reason="ok")


__all__ = [
    "MAX_PREVIOUS_ANSWER_CHARS",
    "MAX_PREVIOUS_PAIRS",
    "MAX_PREVIOUS_QUESTION_CHARS",
    "STEP_MAX_TOKENS",
    "StepAnswer",
    "StepReason",
    "execution_messages",
    "extract_program",
    "parse_step_answer",
    "program_messages",
]
