"""Final-answer extraction and normalisation, per answer kind (DESIGN §4, executor and voting).

Weighted voting (Symphony, arXiv:2508.20019, eqs. 2-3) needs every chain's final answer a_i in a
comparable form: ``extract_answer`` pulls it out of a model's free-form output, and
``normalize_answer`` / ``answers_equivalent`` decide which answers are the same vote.

Kinds: ``number`` (last ``\\boxed{}``, else "####"/"answer is" marker, else last number; commas,
``$``, ``%`` and trailing units dropped), ``option`` (a letter such as (A)-(E)), ``yes_no``,
``text`` and ``code`` (last fenced block). Maths answers that are not plain numbers are compared
with ``math-verify`` when it is installed, else by normalised text.
"""

from __future__ import annotations

import importlib
import re
import textwrap
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Literal

AnswerKind = Literal["number", "option", "yes_no", "text", "code"]
ANSWER_KINDS: tuple[AnswerKind, ...] = ("number", "option", "yes_no", "text", "code")
DEFAULT_LETTERS = "ABCDEFGHIJK"  # BBH geometric_shapes lists up to 11 options
_MATH_VERIFY_MAX_CHARS = 100

_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>-)?\s?\\?\$?\s?"
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:\s?/\s?(?P<den>\d+)(?![\d/]))?(?![\d/])"
)
_ANSWER_PHRASE = re.compile(r"(?:final answer|answer)\s*(?:is|:|=)?\s*:?\s*(?P<rest>[^\n]*)", re.IGNORECASE)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces allowed."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip()
    return None  # unbalanced: truncated output


def _canonical_number(sign: str | None, num: str, den: str | None) -> str | None:
    try:
        return _canonical_fraction(sign, num, den)
    except (InvalidOperation, ZeroDivisionError, ValueError):  # ValueError: int str-digit limit
        return None


def _canonical_fraction(sign: str | None, num: str, den: str | None) -> str:
    value = Fraction(Decimal(num.replace(",", "")))
    if den is not None:
        value /= int(den)
    if sign:
        value = -value
    if value.denominator == 1:
        return str(value.numerator)
    d = value.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d == 1:  # terminating decimal: 0.5, not 1/2
        return format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    return f"{value.numerator}/{value.denominator}"


def _numbers(text: str) -> list[str]:
    text = text.replace("\u2212", "-")
    found = (_canonical_number(m["sign"], m["num"], m["den"]) for m in _NUMBER.finditer(text))
    return [n for n in found if n is not None]


_LATEX_NOISE = re.compile(r"\\[,!;: ]|\\left|\\right|\\displaystyle|\^\{?\\circ\}?|°|\\%|%|\\\$|\$|~")
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_NUMBER_WITH_UNIT = re.compile(r"-?\s?\d[\d,]*(?:\.\d+)?(?:\s?/\s?\d+)?(?:\s+[a-zA-Z][a-zA-Z .]*)?")


def _clean_math(expr: str) -> str:
    """A boxed/latex answer with units and typesetting noise removed; plain numbers canonical."""
    expr = _LATEX_TEXT.sub(r"\1", expr)
    expr = _LATEX_NOISE.sub("", expr).strip().rstrip(".").strip()
    if frac := re.fullmatch(r"(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}", expr):
        return _canonical_number(frac[1], frac[2], frac[3]) or expr
    if _NUMBER_WITH_UNIT.fullmatch(expr):
        nums = _numbers(expr)
        if nums:
            return nums[0]
    return re.sub(r"\s+", "", expr)


def extract_number(text: str) -> str | None:
    """Boxed answer, else the first number after the last "####"/"answer is", else the last number."""
    boxed = last_boxed(text)
    if boxed is not None:
        return _clean_math(boxed) or None
    marker = text.rfind("####")
    if marker >= 0 and _numbers(text[marker:]):
        return _numbers(text[marker:])[0]
    for m in reversed(list(_ANSWER_PHRASE.finditer(text))):
        if nums := _numbers(m["rest"]):
            return nums[0]
    nums = _numbers(text)
    return nums[-1] if nums else None


def extract_option(text: str, letters: str = DEFAULT_LETTERS) -> str | None:
    """An option letter: boxed, else "answer is (B)", else the last "(B)", else a line holding only "B"."""
    cls = f"[{re.escape(letters)}{re.escape(letters.lower())}]"
    boxed = last_boxed(text)
    if boxed is not None and (m := re.match(rf"\(?({cls})\)?(?:[.:)\s]|$)", boxed)):
        return m[1].upper()
    bare = f"(?-i:[{re.escape(letters)}])"  # a bare lowercase "a" is the article, not option A
    phrase = rf"answer\s*(?:is|:)?\s*:?\s*(?:option\s*)?(?:\(({cls})\)|({bare})(?![\w']))"
    if found := re.findall(phrase, text, re.IGNORECASE):
        a, b = found[-1]
        return str(a or b).upper()
    if found := re.findall(rf"\(({cls})\)", text):
        return str(found[-1]).upper()
    if found := re.findall(rf"^[^\w\n]*({cls})[^\w\n]*$", text, re.MULTILINE):
        return str(found[-1]).upper()
    return None


_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def extract_yes_no(text: str) -> str | None:
    """Yes or no (lowercased): boxed, else after the last "answer", else in the last line, else the first word."""
    boxed = last_boxed(text)
    if boxed is not None and (m := _YES_NO.search(_LATEX_TEXT.sub(r"\1", boxed))):
        return m[1].lower()
    for m in reversed(list(_ANSWER_PHRASE.finditer(text))):
        if found := _YES_NO.search(m["rest"]):
            return found[1].lower()
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if lines and (found_all := _YES_NO.findall(lines[-1])):
        return str(found_all[-1]).lower()
    if first := re.match(r"\W*(yes|no)\b", text, re.IGNORECASE):
        return first[1].lower()
    return None


_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(text: str) -> str | None:
    """The last fenced block that defines something (else the last block); unfenced code as is."""
    blocks = [body for _, body in _FENCE.findall(text) if body.strip()]
    if blocks:
        defining = [b for b in blocks if re.search(r"^[ \t]*(?:def|class|import|from)\s", b, re.MULTILINE)]
        return str((defining or blocks)[-1]).strip("\n")
    if re.search(r"^[ \t]*(?:def|class)\s", text, re.MULTILINE):
        return text.strip("\n")
    return None


def extract_text(text: str) -> str | None:
    """Boxed content, else what follows the last "answer is"/"Answer:", else the last non-empty line."""
    boxed = last_boxed(text)
    if boxed is not None:
        candidate = _LATEX_TEXT.sub(r"\1", boxed)
    elif matches := [m["rest"] for m in _ANSWER_PHRASE.finditer(text) if m["rest"].strip()]:
        candidate = matches[-1]
    else:
        lines = [line for line in text.splitlines() if line.strip()]
        candidate = lines[-1] if lines else ""
    candidate = candidate.strip().strip("*_`\"' .").strip()
    return candidate or None


def extract_answer(text: str, kind: AnswerKind, *, letters: str = DEFAULT_LETTERS) -> str | None:
    """The final answer of ``kind`` in a model output, or None when there is none."""
    if kind == "number":
        return extract_number(text)
    if kind == "option":
        return extract_option(text, letters)
    if kind == "yes_no":
        return extract_yes_no(text)
    if kind == "code":
        return extract_code(text)
    if kind == "text":
        return extract_text(text)
    raise ValueError(f"unknown answer kind {kind!r}; expected one of {ANSWER_KINDS}")


def guess_answer_kind(question: str) -> AnswerKind:
    """A heuristic kind for a question: options listed, yes/no asked, code asked, numbers, else text."""
    if len(re.findall(r"\([A-E]\)", question)) >= 2:
        return "option"
    if re.search(r"\b(?:yes or no|yes/no|true or false)\b", question, re.IGNORECASE) or re.match(
        r"\s*(?:is|are|does|do|did|was|were|can|could|would|will|has|have)\b", question, re.IGNORECASE
    ):
        return "yes_no"
    if re.search(r"\bdef\s|\bwrite (?:a|an) (?:python )?(?:function|program|class)\b|```", question, re.IGNORECASE):
        return "code"
    if re.search(r"\d|how (?:many|much)", question, re.IGNORECASE):
        return "number"
    return "text"


# ---- normalisation and equivalence --------------------------------------------------------


def normalize_answer(answer: str, kind: AnswerKind) -> str:
    """The comparison key of an extracted answer: equal keys are the same vote."""
    if kind == "number":  # a peer's answer may come still boxed: "\\boxed{18}" is the vote of "18"
        boxed = last_boxed(answer)
        return _clean_math(answer if boxed is None else boxed)
    if kind in ("option", "yes_no"):
        return answer.strip().strip("()").strip().casefold()
    if kind == "code":
        lines = [line.rstrip() for line in textwrap.dedent(answer).splitlines()]
        return "\n".join(lines).strip("\n")
    return re.sub(r"\s+", " ", answer.casefold()).strip().strip(".!?\"'*` ").strip()


_SAFE_POWER = re.compile(r"\^\s*(?:\{\s*-?\s*(?:\d{1,3}|[a-zA-Z]|\d{1,2}\s*/\s*\d{1,2})\s*\}|-?\d|[a-zA-Z])")


def _math_verify_safe(expr: str) -> bool:
    # sympy evaluates powers eagerly: "9^{9^{9^9}}" would hang the node. Only short answers whose
    # exponents are small literals go to math-verify; no factorials either.
    return len(expr) <= _MATH_VERIFY_MAX_CHARS and "!" not in expr and expr.count("^") == len(_SAFE_POWER.findall(expr))


def _math_verify_equal(a: str, b: str) -> bool:
    try:
        math_verify = importlib.import_module("math_verify")  # optional dependency, untyped
    except ImportError:
        return False
    parse, verify = math_verify.parse, math_verify.verify
    if not (_math_verify_safe(a) and _math_verify_safe(b)):
        return False
    try:
        # No timeouts: math-verify implements them with SIGALRM, which fails off the main thread
        # and would clash with trio's signal handling; _math_verify_safe bounds the work instead.
        pa, pb = parse(f"${a}$", parsing_timeout=None), parse(f"${b}$", parsing_timeout=None)
        return bool(pa and pb and verify(pa, pb, timeout_seconds=None))
    except Exception:  # model-written latex can break the parser in any way; "not equal"
        return False


def answers_equivalent(a: str, b: str, kind: AnswerKind) -> bool:
    """Whether two extracted answers are the same vote (numbers exactly, latex via math-verify)."""
    return keys_equivalent(normalize_answer(a, kind), normalize_answer(b, kind), kind)


def keys_equivalent(ka: str, kb: str, kind: AnswerKind) -> bool:
    """``answers_equivalent`` on answers already normalised (``normalize_answer``) to ``ka`` and ``kb``."""
    if ka == kb:
        return True
    if kind != "number":
        return False
    plain = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")
    if plain.fullmatch(ka) and plain.fullmatch(kb):
        return False  # both canonical numbers already, and they differ
    return _math_verify_equal(ka, kb)
