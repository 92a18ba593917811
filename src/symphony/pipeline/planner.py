"""Stage-specific decomposition: a planner's prompt and the parsing of its plan (DESIGN §4).

Symphony (arXiv:2508.20019) has each planner decompose the question "into strictly computable
sub-questions as JSON"; the chain then sends every sub-question to an executor picked by Beacon
selection. This module is pure: ``decomposition_messages`` builds the chat prompt,
``DECOMPOSITION_SCHEMA`` / ``decomposition_schema`` constrain decoding where the backend can, and
``parse_plan`` turns whatever the model wrote into a ``Plan`` or raises ``PlanError``.

Theory of operation for ``parse_plan``. The planners are small models (0.1-1.5B parameters).
Without constrained decoding they wrap the JSON in code fences or prose, use single quotes or
trailing commas, return a bare list, stop mid-object at the token limit, or fall back to a numbered
list. So parsing is a ladder, and the first rung that yields at least one step wins:

1. strict ``json.loads`` of the whole output;
2. the body of the first code fence, then each balanced ``{...}``/``[...]`` block in turn (the
   first that holds steps wins), read as JSON, as JSON without trailing commas, then as a Python
   literal (``ast.literal_eval``: single quotes; it evaluates literals only, and blocks are
   depth- and size-bounded first because deep nesting can exhaust its stack);
3. ``"question": "..."`` fields salvaged from a truncated object;
4. numbered lines ("1. ...", "Step 2: ...").

The accepted shapes are ``{"steps": [...]}`` (or another list-valued key), or a bare list, whose
items are strings or objects with a "question"/"q"/"step"/... string. A block whose steps are all
copied from the prompt's worked example is skipped: tiny models echo it. Every deviation from the
schema is named in ``Plan.fixes`` and sets ``Plan.repaired``, which the chain trace shows. Steps
are then whitespace-collapsed, stripped of their own numbering, de-duplicated (case-insensitively),
clipped to ``MAX_STEP_CHARS`` and capped at ``max_steps`` by keeping the first ``max_steps - 1`` and
the last, because the last step is the one that asks for the final answer.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from symphony.errors import SymphonyError
from symphony.pipeline.dag import Dependencies, check_runnable, is_linear, linear, topological_order, waits_for_cycle
from symphony.pipeline.extraction import ANSWER_KINDS, AnswerKind

DEFAULT_MAX_STEPS: Final = 5
MAX_STEP_CHARS: Final = 500
#: Only this much of a planner's output is looked at: a plan comes first, the rest is rambling.
MAX_PLAN_INPUT_CHARS: Final = 32_000
#: The original question is clipped (head and tail kept) to this many characters in prompts.
MAX_QUESTION_CHARS: Final = 6_000
#: The conversation before the question (``Task.context``) is clipped to this many characters in
#: prompts, a bound for small models' windows whatever a peer sends (the API's own budget is smaller).
MAX_CONTEXT_CHARS: Final = 8_000

_MAX_BLOCKS_TRIED = 32
_MAX_BLOCK_DEPTH = 8
_CLIP_MARKER = " [...] "


def clip(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its head and tail joined by " [...] "."""
    if len(text) <= limit:
        return text
    room = max(0, limit - len(_CLIP_MARKER))
    head = room * 2 // 3
    return text[:head].rstrip() + _CLIP_MARKER + text[len(text) - (room - head) :].lstrip()


def context_block(context: str) -> str:
    """The conversation before the question as a section of a system prompt ("" when there is none).

    It goes into the system message, not the user message: the problem stays the one thing asked."""
    if not context.strip():
        return ""
    return ("\n\nThe conversation before this problem, for context (it may define names or numbers the "
            f"problem uses):\n{clip(context.strip(), MAX_CONTEXT_CHARS)}")


# ---- schema and prompt ----------------------------------------------------------------------


def decomposition_schema(max_steps: int = DEFAULT_MAX_STEPS) -> dict[str, Any]:
    """A fresh JSON Schema for ``{"steps": [{"question": str, "depends_on": [int]}, ...]}`` with
    1..max_steps items; ``depends_on`` (the indices of the steps it needs) is optional.

    Only keywords that grammar-constrained decoders (outlines, xgrammar, llama.cpp) support.
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, not {max_steps!r}")
    index = {"type": "integer", "minimum": 0, "maximum": max_steps - 1}
    step = {
        "type": "object",
        "properties": {"question": {"type": "string", "minLength": 1, "maxLength": MAX_STEP_CHARS},
                       "depends_on": {"type": "array", "items": index, "maxItems": max_steps}},
        "required": ["question"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"steps": {"type": "array", "items": step, "minItems": 1, "maxItems": max_steps}},
        "required": ["steps"],
        "additionalProperties": False,
    }


#: The schema for ``DEFAULT_MAX_STEPS``. Shared: do not mutate; ``decomposition_schema`` gives a copy.
DECOMPOSITION_SCHEMA: Final = decomposition_schema()

#: What the last step (and the executor's final answer) must be, per answer kind.
FINAL_FORMS: Final[dict[str, str]] = {
    "number": "a single number",
    "option": "a single option letter",
    "yes_no": "yes or no",
    "text": "a short phrase",
    "code": "complete Python code",
}

# One worked example per kind, so the example's last step already has the wanted form.
_EXAMPLES: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "number": (
        "Tom buys 4 pens at $3 each and pays with a $20 bill. How much change does he get?",
        ("How much do 4 pens at $3 each cost?", "What is $20 minus that cost? Give the answer as a single number."),
    ),
    "option": (
        "Which is largest? (A) 2^5 (B) 5^2 (C) 3^3",
        ("What are the values of 2^5, 5^2 and 3^3?", "Which option has the largest value? Give the option letter."),
    ),
    "yes_no": (
        "Is 91 a prime number?",
        ("Which prime numbers below 10 divide 91?", "Is 91 a prime number? Answer yes or no."),
    ),
    "text": (
        "What is the capital of the country where the Eiffel Tower stands?",
        ("In which country is the Eiffel Tower?", "What is the capital of that country? Give only the name."),
    ),
    "code": (
        "Write a Python function sum_even(xs) that returns the sum of the even numbers in a list.",
        (
            "How do you test whether an integer n is even in Python?",
            "Write the complete Python function sum_even(xs) that returns the sum of the even numbers.",
        ),
    ),
}


def check_answer_kind(answer_kind: str) -> AnswerKind:
    """``answer_kind`` as an ``AnswerKind``; ``ValueError`` when it is not one of ``ANSWER_KINDS``."""
    for kind in ANSWER_KINDS:
        if kind == answer_kind:
            return kind
    raise ValueError(f"unknown answer kind {answer_kind!r}; expected one of {ANSWER_KINDS}")


#: Minimal disclosure (Alg. 1 line 4, background extraction): a step the planner starts with this mark
#: is sent with the problem and its context; every other step is sent alone (``split_marks``).
NEEDS_PROBLEM_MARK: Final = "[problem]"
_MINIMAL_RULE: Final = (
    "\nEach sub-question is sent alone to a stranger who never sees the problem: copy into it every number "
    f"and fact it needs. Start a sub-question with {NEEDS_PROBLEM_MARK} only if it cannot be answered "
    "without the whole problem text."
)


#: DAG plans (issue #21): independent steps run at the same time when the plan says so.
_DEPENDS_RULE: Final = (
    'A step may add "depends_on": [indices, from 0, of the earlier steps whose answers it needs]; '
    "steps that need nothing from each other run at the same time.\n"
)


def decomposition_messages(
    question: str, *, max_steps: int = DEFAULT_MAX_STEPS, answer_kind: str, context: str = "",
    minimal: bool = False,
) -> list[dict[str, str]]:
    """System and user chat messages asking a planner model for a JSON plan of ``question``.

    Args:
        question: the user's question (clipped to ``MAX_QUESTION_CHARS``, head and tail kept).
        max_steps: the most sub-questions allowed; the prompt asks for fewer when possible.
        answer_kind: one of ``ANSWER_KINDS``; the last step must ask for the answer in that form.
        context: the conversation before the question (``context_block``), clipped to ``MAX_CONTEXT_CHARS``.
        minimal: minimal disclosure: ask for self-contained steps, marking those that need the problem.

    Raises ``ValueError`` for an unknown kind or ``max_steps < 1``.
    """
    kind = check_answer_kind(answer_kind)
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, not {max_steps!r}")
    example_q, example_steps = _EXAMPLES[kind]
    example_plan = json.dumps({"steps": [{"question": s} for s in example_steps]})
    count = "exactly 1 step" if max_steps == 1 else f"1 to {max_steps} steps, as few as needed"
    system = (
        "You split a problem into short sub-questions. Each sub-question must be answerable by one "
        "calculation or one fact. Do not answer them.\n"
        'Reply with JSON only, in this form: {"steps": [{"question": "..."}]}\n'
        f"Use {count}. The last step must ask for the final answer to the problem as {FINAL_FORMS[kind]}.\n"
        f"{_DEPENDS_RULE}"
        f"{_MINIMAL_RULE if minimal else ''}"
        "\n"
        "Example\n"
        f"Problem: {example_q}\n"
        f"{example_plan}"
        f"{context_block(context)}"
    )
    user = f"Problem: {clip(question.strip(), MAX_QUESTION_CHARS)}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def replan_messages(
    question: str, *, failed: str, error: str, done: list[tuple[str, str]], max_steps: int = DEFAULT_MAX_STEPS,
    answer_kind: str, context: str = "", minimal: bool = False,
) -> list[dict[str, str]]:
    """The decomposition prompt for the REST of a chain whose step ``failed`` with ``error``
    (paper §4: the planner re-plans around a failure), given the ``done`` (step, answer) pairs.

    Same schema and parsing as ``decomposition_messages``; the user message adds what is done and
    what failed, and asks for different remaining steps that avoid the failed one."""
    messages = decomposition_messages(question, max_steps=max_steps, answer_kind=answer_kind, context=context,
                                      minimal=minimal)
    lines = [f"{n}. {clip(q, MAX_STEP_CHARS)} -> {clip(a, 200)}" for n, (q, a) in enumerate(done, start=1)]
    messages[1]["content"] += (
        "\nSteps already done:\n" + ("\n".join(lines) or "none") +
        f"\nThis step failed ({clip(error, 200)}): {clip(failed, MAX_STEP_CHARS)}\n"
        "Plan only the remaining steps, worded differently or split smaller, so they avoid that failure."
    )
    return messages


def split_marks(steps: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[bool, ...]]:
    """``steps`` without their ``NEEDS_PROBLEM_MARK`` and, for each, whether it carried one."""
    marked = tuple(s.lstrip().lower().startswith(NEEDS_PROBLEM_MARK) for s in steps)
    bare = tuple(s.lstrip()[len(NEEDS_PROBLEM_MARK):].strip() if m else s for s, m in zip(steps, marked, strict=True))
    return tuple(b or s for b, s in zip(bare, steps, strict=True)), marked


# ---- plans --------------------------------------------------------------------------------


class PlanError(SymphonyError, ValueError):
    """A planner's output holds no usable plan. The model's fault: fall back to ``single_step_plan``.

    ``reason`` is a short stable name for counters: ``empty``, ``no_steps``, ``copied_example``.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Plan:
    """A chain's sub-questions in order (the last asks for the final answer) and what each needs.

    ``repaired`` is True when the model's output was not schema-conformant JSON or its steps had
    to be changed; ``fixes`` names each repair (e.g. ``"code_fence"``, ``"capped"``) for the trace.
    ``depends_on`` holds, per step, the indices of the earlier steps it needs (``dag``); left empty
    it is the old linear chain (each step after the one before it).
    """

    steps: tuple[str, ...]
    repaired: bool
    fixes: tuple[str, ...] = ()
    depends_on: Dependencies = ()

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("a plan needs at least one step")
        if any(not isinstance(s, str) or not s.strip() for s in self.steps):
            raise ValueError(f"plan steps must be non-empty strings, not {self.steps!r}")
        if not self.depends_on:  # frozen: the default graph is filled in once, here
            object.__setattr__(self, "depends_on", linear(len(self.steps)))
        if len(self.depends_on) != len(self.steps):
            raise ValueError(f"one depends_on entry per step: {len(self.depends_on)} for {len(self.steps)} steps")
        check_runnable(self.depends_on)


def single_step_plan(question: str) -> Plan:
    """The fallback plan: the question itself as the only (final) step, solved directly.

    Not clipped: ``execution_messages`` recognises a step equal to the question and does not
    repeat it. Raises ``ValueError`` for an empty question.
    """
    return Plan(steps=(question.strip(),), repaired=False)


_STEP_KEYS = ("question", "q", "sub_question", "subquestion", "step", "text", "content", "description")
_LIST_KEYS = ("steps", "plan", "sub_questions", "subquestions", "questions")
# "- ", "1. ", "2) ", "3: ", "Step 4:", "**Q5.**": numbering a model put inside a step's text.
_ENUMERATOR = re.compile(
    r"^(?:[-*\u2022]\s+)?"
    r"(?:(?:\*\*)?(?:(?:step|q)\s*\d{1,2}\s*[.):\-]?|\d{1,2}\s*[.)]|\d{1,2}:)(?:\*\*)?(?:\s+|$))?",
    re.I,
)
_NUMBERED_LINE = re.compile(r"^[ \t]*(?:\*\*)?(?:step\s*)?\d{1,2}\s*[.):](?:\*\*)?[ \t]+(\S.*)$", re.I | re.M)
_FENCE = re.compile(r"```[ \t]*[\w-]*[ \t]*\n?(.*?)(?:```|\Z)", re.S)
_QUESTION_FIELD = re.compile(
    r"""(?<!\w)["']?(?:question|q)["']?\s*:\s*"""
    r"""(?:"((?:[^"\\\n]|\\.)*)"|'((?:[^'\\\n]|\\.)*)')"""
)
_JSON_REPAIRS: Final = (
    ("trailing_comma", re.compile(r",\s*([}\]])"), r"\1"),
    # LaTeX in a JSON string: "\sqrt{2}" is an invalid JSON escape; keep the backslash.
    ("latex_escape", re.compile(r'\\(?!["\\/bfnrt]|u[0-9a-fA-F]{4})'), r"\\\\"),
)
# ...while "\frac", "\times", "\beta", "\right", "\neq" are valid escapes that JSON turns into
# control characters. A plan never means a form feed or a tab before a letter: undo them.
_LATEX_CONTROL: Final = re.compile(r"[\f\b\t\r](?=[a-zA-Z])|\n(?=(?:eq|ot|abla|u|eg|e|i)\b)")
_CONTROL_NAMES: Final = {"\f": "\\f", "\b": "\\b", "\t": "\\t", "\r": "\\r", "\n": "\\n"}


def _key(step: str) -> str:
    return re.sub(r"\W+", " ", step.casefold()).strip()


_EXAMPLE_KEYS: Final = frozenset(_key(s) for _, steps in _EXAMPLES.values() for s in steps)


def _decoded(value: str) -> str:
    """A string decoded from JSON with LaTeX commands that JSON took for escapes restored."""
    return _LATEX_CONTROL.sub(lambda m: _CONTROL_NAMES[m[0]], value)


#: A step as the model wrote it: its text and its raw ``depends_on`` value (None when it has none).
_RawStep = tuple[str, object]


def _item_text(item: object) -> str | None:
    if isinstance(item, str):
        return _decoded(item)
    if isinstance(item, dict):
        for key in _STEP_KEYS:
            value = item.get(key)
            if isinstance(value, str):
                return _decoded(value)
    return None


def _raw_steps(value: object) -> tuple[list[_RawStep], bool] | None:
    """Step texts in ``value`` and whether it had the schema's shape; None when it holds none."""
    items: list[object] | None = None
    canonical = False
    if isinstance(value, list):
        items = value
    elif isinstance(value, dict):
        key = next((k for k in _LIST_KEYS if isinstance(value.get(k), list)), None)
        if key is None:
            key = next((k for k, v in value.items() if isinstance(v, list)), None)
        if key is not None:
            items = value[key]
            canonical = key == "steps" and all(
                isinstance(i, dict) and isinstance(i.get("question"), str) for i in value[key]
            )
    if items is None:
        return None
    found = [(t, i.get("depends_on") if isinstance(i, dict) else None)
             for i in items if (t := _item_text(i)) is not None and re.search(r"\w", t)]
    return (found, canonical) if found else None


def _balanced_blocks(text: str) -> Iterator[str]:
    """Each balanced, string-aware ``{...}`` or ``[...]`` block, by start position (bounded)."""
    starts = [i for i, c in enumerate(text) if c in "{["][:_MAX_BLOCKS_TRIED]
    for start in starts:
        stack: list[str] = []
        quote: str | None = None
        escaped = False
        for j in range(start, len(text)):
            c = text[j]
            if quote is not None:
                if escaped:
                    escaped = False
                elif c == "\\":
                    escaped = True
                elif c == quote or (c == "\n" and quote == "'"):  # an apostrophe in prose ends nothing
                    quote = None
            elif c in "\"'":
                quote = c
            elif c in "{[":
                stack.append("}" if c == "{" else "]")
                if len(stack) > _MAX_BLOCK_DEPTH:
                    break
            elif c in "}]":
                if not stack or stack.pop() != c:
                    break
                if not stack:
                    yield text[start : j + 1]
                    break


def _load_block(block: str) -> tuple[object, list[str]] | None:
    """A block read as JSON, JSON with repairs, or a Python literal; with the fixes used."""
    try:
        return json.loads(block, strict=False), []
    except ValueError:
        pass
    candidate, fixes = block, []
    for name, pattern, repl in _JSON_REPAIRS:
        repaired = pattern.sub(repl, candidate)
        if repaired == candidate:
            continue
        candidate = repaired
        fixes.append(name)
        try:
            return json.loads(candidate, strict=False), fixes
        except ValueError:
            pass
    try:
        with warnings.catch_warnings():  # "\\s" in a string literal warns (invalid escape sequence)
            warnings.simplefilter("ignore")
            return ast.literal_eval(block), ["python_literal"]
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _copied(steps: list[_RawStep]) -> bool:
    return all(_key(s) in _EXAMPLE_KEYS for s, _ in steps)


def _structured(text: str, fixes: list[str]) -> tuple[tuple[list[_RawStep], bool] | None, bool]:
    """Steps from the first block that holds some (``fixes`` gets what that took), and whether a
    block was skipped as a copy of the worked example."""
    copied = False
    for block in _balanced_blocks(text):
        loaded = _load_block(block)
        found = None if loaded is None else _raw_steps(loaded[0])
        if loaded is None or found is None:
            continue
        if _copied(found[0]):
            copied = True
            continue
        if block.strip() != text.strip():
            fixes.append("extracted_block")
        fixes.extend(loaded[1])
        return found, copied
    return None, copied


def _unescape(value: str) -> str:
    try:
        decoded = json.loads(f'"{value}"', strict=False)
    except ValueError:
        return value.replace('\\"', '"')
    return decoded if isinstance(decoded, str) else value


def _salvaged(text: str) -> list[_RawStep]:
    fields = (_decoded(_unescape(dq)) if dq else sq for dq, sq in _QUESTION_FIELD.findall(text))
    return [(f, None) for f in fields if re.search(r"\w", f)]


def _find_steps(text: str, fixes: list[str]) -> list[_RawStep]:
    try:
        strict = _raw_steps(json.loads(text))
    except (ValueError, RecursionError):  # json recurses once per nesting level
        strict = None
    if strict is not None and not _copied(strict[0]):
        if not strict[1]:
            fixes.append("shape")
        return strict[0]
    fence = _FENCE.search(text)
    bodies = [fence[1], text] if fence else [text]
    copied = False
    for body in bodies:
        tried: list[str] = ["code_fence"] if body is not text else []
        found, skipped = _structured(body, tried)
        copied = copied or skipped
        if found is not None:
            fixes.extend(tried)
            if not found[1]:
                fixes.append("shape")
            return found[0]
    if (salvaged := _salvaged(text)) and not _copied(salvaged):
        fixes.append("salvaged_fields")
        return salvaged
    if (numbered := [(m.strip(), None) for m in _NUMBERED_LINE.findall(text)]) and not _copied(numbered):
        fixes.append("numbered_lines")
        return numbered
    if copied or salvaged or numbered:
        raise PlanError("the planner copied the prompt's worked example instead of planning", reason="copied_example")
    raise PlanError(
        f"no steps (JSON, repaired JSON or numbered lines) in planner output {clip(text, 80)!r}", reason="no_steps"
    )


def _clean(steps: list[_RawStep], max_steps: int, fixes: list[str]) -> tuple[tuple[str, ...], list[int | None]]:
    """The cleaned step texts and, for each step as written, the index of the step it became
    (a duplicate: the first copy's; None when it was dropped or capped away)."""
    cleaned: list[str] = []
    seen: dict[str, int] = {}
    target: list[int | None] = []
    for raw, _ in steps:
        step = re.sub(r"\s+", " ", _ENUMERATOR.sub("", raw.strip())).strip()
        key = _key(step)
        if not key:
            fixes.append("dropped_empty")
            target.append(None)
            continue
        if key in seen:
            fixes.append("deduplicated")
            target.append(seen[key])
            continue
        seen[key] = len(cleaned)
        target.append(len(cleaned))
        if len(step) > MAX_STEP_CHARS:
            fixes.append("clipped_step")
            step = clip(step, MAX_STEP_CHARS)
        cleaned.append(step)
    if len(cleaned) > max_steps:
        fixes.append("capped")
        last = len(cleaned) - 1
        cleaned = cleaned[: max_steps - 1] + cleaned[-1:]
        target = [None if t is None or max_steps - 1 <= t < last else (t if t < last else len(cleaned) - 1)
                  for t in target]
    return tuple(cleaned), target


def _raw_dependencies(steps: list[_RawStep], fixes: list[str]) -> list[list[int]]:
    """Each written step's ``depends_on`` as in-range indices of other written steps (what is not is
    dropped and named in ``fixes``). A step without one depends on nothing when another step has
    one, and on the step before it when none has (the old linear chain)."""
    if all(raw is None for _, raw in steps):
        return [[] if i == 0 else [i - 1] for i in range(len(steps))]
    found: list[list[int]] = []
    for index, (_, raw) in enumerate(steps):
        values = raw if isinstance(raw, list) else ([] if raw is None else [raw])
        valid = [v for v in values if type(v) is int and 0 <= v < len(steps) and v != index]
        if len(valid) != len(values):
            fixes.append("bad_dependency")
        found.append(valid)
    return found


def _merged(deps: list[list[int]], target: Sequence[int | None], count: int, fixes: list[str]) -> list[set[int]]:
    """``deps`` (over steps as written) over the ``count`` kept steps: a dropped step's dependents
    inherit what it depended on; a step that came to depend on itself (a duplicate) does not."""
    def kept(step: int) -> set[int]:
        """The kept steps ``step``'s dependencies stand for (iterative: a hostile plan can be long)."""
        found: set[int] = set()
        seen, todo = {step}, list(deps[step])
        while todo:
            need = todo.pop()
            if need in seen:
                continue
            seen.add(need)
            if (into := target[need]) is not None:
                found.add(into)
            else:
                todo.extend(deps[need])
        return found

    merged: list[set[int]] = [set() for _ in range(count)]
    for step, into in enumerate(target):
        if into is not None:
            merged[into] |= kept(step)
    for step, needs in enumerate(merged):
        if step in needs:
            needs.discard(step)
            fixes.append("self_dependency")
    return merged


def _runnable(steps: tuple[str, ...], deps: list[set[int]], fixes: list[str]) -> tuple[tuple[str, ...], Dependencies]:
    """``steps`` in an order the chain can run, and their graph; a plan whose steps wait for each
    other in a cycle is refused (``PlanError`` ``cycle``: none of them could ever start)."""
    if (cycle := waits_for_cycle([sorted(d) for d in deps])) is not None:
        names = " -> ".join(str(i) for i in (*cycle, cycle[0]))
        raise PlanError(f"the plan's steps wait for each other in a cycle ({names}): none could start",
                        reason="cycle")
    order = topological_order([sorted(d) for d in deps])
    if order != sorted(order):
        fixes.append("reordered")
    position = {step: n for n, step in enumerate(order)}
    graph = [sorted(position[d] for d in deps[step]) for step in order]
    needed = {d for needs in graph for d in needs}
    dangling = [i for i in range(len(graph) - 1) if i not in needed]
    if dangling:  # a result nothing waits for would be computed and lost: the final step takes it
        fixes.append("dangling")
        graph[-1] = sorted({*graph[-1], *dangling})
    return tuple(steps[i] for i in order), tuple(tuple(g) for g in graph)


def parse_plan(text: str, *, max_steps: int = DEFAULT_MAX_STEPS) -> Plan:
    """The plan in a planner model's output (see the module docstring for the repair ladder).

    Returns a ``Plan`` of 1..max_steps distinct, non-empty steps of at most ``MAX_STEP_CHARS``.
    Raises ``PlanError`` (with ``reason``) when no step can be found; the caller then records the
    failure and uses ``single_step_plan``. Raises ``ValueError`` for ``max_steps < 1``.
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, not {max_steps!r}")
    fixes: list[str] = []
    if len(text) > MAX_PLAN_INPUT_CHARS:
        fixes.append("input_clipped")
        text = text[:MAX_PLAN_INPUT_CHARS]
    text = text.strip()
    if not text:
        raise PlanError("the planner's output is empty", reason="empty")
    found = _find_steps(text, fixes)
    steps, target = _clean(found, max_steps, fixes)
    if not steps:
        raise PlanError(f"the plan's steps are all empty in planner output starting {text[:80]!r}", reason="no_steps")
    steps, depends_on = _runnable(steps, _merged(_raw_dependencies(found, fixes), target, len(steps), fixes), fixes)
    return Plan(steps=steps, repaired=bool(fixes), fixes=tuple(dict.fromkeys(fixes)), depends_on=depends_on)


def anchor_final_step(plan: Plan, question: str) -> Plan:
    """``plan`` with its last step replaced by the original question itself.

    Small planners end a plan with a loose restatement ("What is the combined length of the
    remoras?" for a question asking for a percentage), so the chain answered a different question
    than the user's. The paper's chain must end in the answer to the question, so the final executor
    gets the question itself with the earlier steps' results as its working (the executor prompt
    then says "solve the problem"). Found by reading the traces of packaged GSM8K items 1-10, which
    the reported run then leaves out (docs/results.md, issue #5). A one-step plan becomes the direct plan.
    """
    if plan.steps[-1].strip() == question.strip():
        return plan
    target: list[int | None] = []
    for step in plan.steps[:-1]:
        target.append(None if _key(step) == _key(question) else sum(t is not None for t in target))
    count = sum(t is not None for t in target) + 1
    deps = _merged([list(d) for d in plan.depends_on], [*target, count - 1], count, [])
    kept = tuple(s for s, t in zip(plan.steps, target, strict=False) if t is not None)
    return Plan(steps=(*kept, question.strip()), repaired=plan.repaired, fixes=plan.fixes,
                depends_on=tuple(tuple(sorted(d)) for d in deps))


def plan_json(plan: Plan) -> str:
    """``plan`` in the schema's shape, e.g. to record it in a trace or replay it as a model turn
    (``depends_on`` only when the plan is not the linear chain, so a linear plan reads as before)."""
    if is_linear(plan.depends_on):
        return json.dumps({"steps": [{"question": s} for s in plan.steps]}, ensure_ascii=False)
    return json.dumps({"steps": [{"question": s, "depends_on": list(d)} for s, d in zip(plan.steps, plan.depends_on,
                                                                                          strict=True)]},
                      ensure_ascii=False)


__all__ = [
    "DECOMPOSITION_SCHEMA",
    "DEFAULT_MAX_STEPS",
    "FINAL_FORMS",
    "MAX_PLAN_INPUT_CHARS",
    "MAX_CONTEXT_CHARS",
    "MAX_QUESTION_CHARS",
    "MAX_STEP_CHARS",
    "NEEDS_PROBLEM_MARK",
    "Plan",
    "PlanError",
    "anchor_final_step",
    "check_answer_kind",
    "clip",
    "context_block",
    "decomposition_messages",
    "decomposition_schema",
    "parse_plan",
    "plan_json",
    "replan_messages",
    "single_step_plan",
    "split_marks",
]
