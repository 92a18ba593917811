"""Scripted chat models: TEST DOUBLES with canned replies, never a language model.

``ScriptedModel`` answers from a list of (regex, reply) rules matched against the last user
message, so protocol tests (planning, execution, voting, retries) run deterministically and
instantly. ``scripted:arith`` is a built-in script for Symphony's own prompts: it answers a
decomposition prompt with a fixed two-step JSON plan and an execution prompt with the value of the
arithmetic expression in the step (or else in the problem) as ``\\boxed{N}``.

Token counts are approximate (words); latency is ~0; every ``Completion`` has ``stand_in=True``.
"""

from __future__ import annotations

import ast
import json
import operator
import re
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, Final, TypeAlias

from symphony.llm.base import (
    Completion,
    ModelError,
    ModelSpecError,
    approx_tokens,
    check_chat_args,
    last_user_message,
)

#: A reply: fixed text, or a function of the rule's match (e.g. to echo part of the prompt).
Reply: TypeAlias = str | Callable[[re.Match[str]], str]
Rule: TypeAlias = tuple[str | re.Pattern[str], Reply]


class ScriptedModel:
    """A test double: the reply of the first rule whose regex ``search``-es the last user message.

    Args:
        rules: ``(pattern, reply)`` pairs, tried in order; a string pattern is compiled with
            ``re.S``. A callable reply gets the match object.
        default: the reply when no rule matches; ``None`` makes an unmatched prompt a ``ModelError``
            (useful to test a failing backend).
        name: the model's name (``Completion.model``).

    Each call is recorded in ``calls`` (the messages and keyword arguments), for tests to inspect.
    """

    supports_json_schema = False

    def __init__(self, rules: Sequence[Rule], *, default: str | None = "", name: str = "scripted") -> None:
        self.name = name
        self._rules = [(re.compile(p, re.S) if isinstance(p, str) else p, r) for p, r in rules]
        self._default = default
        self.calls: list[tuple[list[dict[str, str]], dict[str, Any]]] = []

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 512,
        temperature: float = 0.0,
        seed: int | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> Completion:
        check_chat_args(messages, max_tokens=max_tokens, temperature=temperature)
        started = time.perf_counter()
        self.calls.append(([dict(m) for m in messages],
                           {"max_tokens": max_tokens, "temperature": temperature, "seed": seed,
                            "json_schema": json_schema}))
        prompt = last_user_message(messages)
        text = self._reply(prompt)
        words = text.split()
        truncated = len(words) > max_tokens
        if truncated:  # the token limit cuts the reply, as a real model's would
            text = " ".join(words[:max_tokens])
        return Completion(
            text=text,
            prompt_tokens=sum(approx_tokens(m["content"]) for m in messages),
            completion_tokens=approx_tokens(text),
            latency_s=time.perf_counter() - started,
            model=self.name,
            stand_in=True,
            truncated=truncated,
        )

    def _reply(self, prompt: str) -> str:
        for pattern, reply in self._rules:
            match = pattern.search(prompt)
            if match is not None:
                return reply(match) if callable(reply) else reply
        if self._default is None:
            raise ModelError(f"model {self.name!r}: no scripted reply for {prompt[:200]!r}", model=self.name)
        return self._default

    async def aclose(self) -> None:
        return None


# ---- the built-in "arith" script ---------------------------------------------------------------

# A run of digits, operators, parentheses and spaces holding at least one operator between numbers.
_EXPRESSION: Final = re.compile(r"[-(]*\s*\d+(?:\.\d+)?(?:\s*[-+*/x\u00d7\u00f7]\s*[(]*\s*\d+(?:\.\d+)?\s*[)]*)+")
_BINARY: Final[dict[type[ast.operator], Callable[[Any, Any], Any]]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}
_FINAL_STEP: Final = "What is the final answer to the problem? Give a single number."


def find_expression(text: str) -> str | None:
    """The first arithmetic expression (``+ - * /``, ``x``, parentheses) in ``text``, or None."""
    match = _EXPRESSION.search(text)
    return match.group(0).strip() if match else None


def evaluate(expression: str) -> str:
    """The exact value of an arithmetic expression, as an integer or a reduced decimal/fraction.

    Only numbers, ``+ - * /`` and parentheses are evaluated (through ``ast``, never ``eval``).
    Raises ``ValueError`` for anything else or a division by zero.
    """
    source = expression.replace("x", "*").replace("\u00d7", "*").replace("\u00f7", "/")
    source = source.strip()
    if len(source) > 200:
        raise ValueError("expression too long")
    try:
        value = _eval(ast.parse(source, mode="eval").body)
    except (SyntaxError, ZeroDivisionError) as exc:
        raise ValueError(f"cannot evaluate {expression!r}: {exc}") from None
    if value.denominator == 1:
        return str(value.numerator)
    as_float = float(value)
    return repr(as_float) if Fraction(as_float) == value else f"{value.numerator}/{value.denominator}"


def _eval(node: ast.expr) -> Fraction:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _eval(node.operand)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return Fraction(_BINARY[type(node.op)](_eval(node.left), _eval(node.right)))
    raise ValueError(f"not arithmetic: {ast.dump(node)[:80]}")


def _line(prompt: str, label: str) -> str:
    match = re.search(rf"^{label}:\s*(.*)$", prompt, re.M)
    return match.group(1) if match else ""


def _arith_plan(match: re.Match[str]) -> str:
    problem = match.group(1)
    expression = find_expression(problem)
    first = f"Compute {expression}." if expression else problem.strip()
    return json.dumps({"steps": [{"question": first}, {"question": _FINAL_STEP}]})


def _arith_step(match: re.Match[str]) -> str:
    prompt = match.string
    for text in (_line(prompt, "Step"), _line(prompt, "Problem")):
        expression = find_expression(text)
        if expression:
            try:
                return f"{expression} = {evaluate(expression)}.\n\\boxed{{{evaluate(expression)}}}"
            except ValueError:
                continue
    return "I cannot compute this."


def arith_model() -> ScriptedModel:
    """``scripted:arith``: fixed JSON plans and computed ``\\boxed{}`` answers for arithmetic.

    A prompt with a ``Step:`` line (an execution prompt) is answered with the value of the first
    arithmetic expression in the step, else in the ``Problem:`` line; any other prompt starting
    with ``Problem:`` (a decomposition prompt) gets ``{"steps": [{"question": "Compute EXPR."},
    {"question": "What is the final answer ...?"}]}``.
    """
    return ScriptedModel(
        [
            (re.compile(r"^Step:", re.M), _arith_step),
            (re.compile(r"^Problem:\s*(.*)", re.S), _arith_plan),
        ],
        default="I cannot compute this.",
        name="scripted:arith",
    )


_GROUP: Final = re.compile(r"\(([^()]*)\)")


def _parts_plan(match: re.Match[str]) -> str:
    """Each parenthesised group of the problem's expression as an independent step, then the final
    step needing them all: a DAG plan (issue #21); ``_arith_plan`` when there are fewer than two groups."""
    groups = [g.strip() for g in _GROUP.findall(find_expression(match.group(1)) or "") if find_expression(g)]
    if len(groups) < 2:
        return _arith_plan(match)
    parts = [{"question": f"Compute {g}.", "depends_on": []} for g in groups]
    return json.dumps({"steps": [*parts, {"question": _FINAL_STEP, "depends_on": list(range(len(parts)))}]})


def parts_model() -> ScriptedModel:
    """``scripted:parts``: ``scripted:arith`` whose plans compute each parenthesised group of the
    problem in parallel ("(1 + 2) * (3 + 4)": two independent steps, then the final one)."""
    return ScriptedModel(
        [
            (re.compile(r"^Step:", re.M), _arith_step),
            (re.compile(r"^Problem:\s*(.*)", re.S), _parts_plan),
        ],
        default="I cannot compute this.",
        name="scripted:parts",
    )


def echo_model() -> ScriptedModel:
    """``scripted:echo``: replies with the last user message."""
    return ScriptedModel([(re.compile(r".*", re.S), lambda m: m.group(0))], name="scripted:echo")


_SCRIPTS: Final[dict[str, Callable[[], ScriptedModel]]] = {"arith": arith_model, "echo": echo_model,
                                                           "parts": parts_model}


def named_script(name: str) -> ScriptedModel:
    """The built-in script ``name``; ``ModelSpecError`` naming the known ones otherwise."""
    factory = _SCRIPTS.get(name.strip().lower())
    if factory is None:
        known = ", ".join(f"scripted:{n}" for n in sorted(_SCRIPTS))
        raise ModelSpecError(f"unknown script {name!r}: use one of {known}")
    return factory()


__all__ = ["Reply", "Rule", "ScriptedModel", "arith_model", "echo_model", "evaluate", "find_expression",
           "named_script", "parts_model"]
