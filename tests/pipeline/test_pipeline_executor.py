import pytest

from symphony.pipeline.executor import (
    MAX_PREVIOUS_ANSWER_CHARS,
    MAX_PREVIOUS_PAIRS,
    StepAnswer,
    execution_messages,
    parse_step_answer,
)
from symphony.pipeline.extraction import AnswerKind
from symphony.pipeline.voting import MAX_ANSWER_CHARS

QUESTION = "Tom has 12 apples and gives 5 to Ann. He then buys 3 more. How many apples does he have?"


def _user(**overrides: object) -> str:
    kwargs: dict[str, object] = {"question": QUESTION, "previous": [], "is_final": False, "answer_kind": "number"}
    kwargs.update(overrides)
    step = str(kwargs.pop("step", "How many apples are left after giving 5 away?"))
    return execution_messages(step, **kwargs)[1]["content"]  # type: ignore[arg-type]


def _system(**overrides: object) -> str:
    kwargs: dict[str, object] = {"question": QUESTION, "previous": [], "is_final": False, "answer_kind": "number"}
    kwargs.update(overrides)
    return execution_messages("Step?", **kwargs)[0]["content"]  # type: ignore[arg-type]


# ---- execution_messages ---------------------------------------------------------------------


def test_messages_hold_question_previous_pairs_and_step_in_order() -> None:
    """The user message gives the original question, then the earlier Q/A pairs, then the sub-question."""
    messages = execution_messages(
        "How many does he have after buying 3?",
        question=QUESTION,
        previous=[("How many apples are left after giving 5 away?", "7")],
        is_final=True,
        answer_kind="number",
    )
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == (
        f"Problem: {QUESTION}\n"
        "Earlier steps:\n1. How many apples are left after giving 5 away? -> 7\n"
        "Step: How many does he have after buying 3?"
    )


def test_no_previous_pairs_says_none() -> None:
    """The first step says there are no earlier steps."""
    assert "Earlier steps: none" in _user()


def test_only_the_last_pairs_are_kept_with_their_numbers() -> None:
    """Of 10 earlier steps only the last MAX_PREVIOUS_PAIRS appear, numbered as in the chain."""
    previous = [(f"Sub-question {i}?", f"answer-{i}") for i in range(1, 11)]
    user = _user(previous=previous)
    assert MAX_PREVIOUS_PAIRS == 6
    assert "(4 earlier steps omitted)" in user
    assert "answer-4" not in user and "Sub-question 4?" not in user
    assert "5. Sub-question 5? -> answer-5" in user and "10. Sub-question 10? -> answer-10" in user


def test_each_previous_pair_is_clipped() -> None:
    """A rambling earlier answer is clipped (its conclusion kept), so prompts stay small."""
    long_answer = "First " + "blah " * 2_000 + "so the result is 7"
    user = _user(previous=[("Q?", long_answer)])
    assert len(user) < len(QUESTION) + MAX_PREVIOUS_ANSWER_CHARS + 200
    assert "so the result is 7" in user and "[...]" in user


def test_empty_previous_pairs_are_skipped_and_empty_answers_marked() -> None:
    """Blank pairs are left out; a question whose answer was empty says so."""
    user = _user(previous=[("", ""), ("Q?", "")])
    assert "1. Q? -> (no answer)" in user and "2." not in user


def test_step_equal_to_question_is_not_repeated() -> None:
    """The single-step fallback asks to solve the problem instead of repeating the question."""
    user = _user(step=QUESTION, is_final=True)
    assert user.count(QUESTION) == 1 and user.endswith("Step: Solve the problem.")


def test_intermediate_step_asks_for_a_boxed_result() -> None:
    """A non-final step asks for this step's result in \\boxed{}, not the final answer."""
    system = _system(is_final=False)
    assert "give the result of this step as \\boxed{...}" in system and "last step" not in system


@pytest.mark.parametrize(
    ("kind", "phrase"),
    [
        ("number", "as a single number, written like \\boxed{8}"),
        ("option", "as a single option letter, written like \\boxed{B}"),
        ("yes_no", "as yes or no, written like \\boxed{yes} or \\boxed{no}"),
        ("text", "as a short phrase, written like \\boxed{Paris}"),
        ("code", "write the complete Python code in one ```python block"),
    ],
)
def test_final_step_asks_for_the_answer_form(kind: str, phrase: str) -> None:
    """The final step names the required form for the question's answer kind."""
    system = _system(is_final=True, answer_kind=kind)
    assert "This is the last step." in system and phrase in system


@pytest.mark.parametrize("kind", ["number", "option", "yes_no", "text", "code"])
def test_final_worked_example_parses_as_its_kind(kind: AnswerKind) -> None:
    """The worked example's answer is itself extractable as the kind (models copy its form)."""
    example = _system(is_final=True, answer_kind=kind).split("\nAnswer:", 1)[1]
    assert parse_step_answer(example, kind=kind).valid


def test_messages_reject_unknown_kind() -> None:
    """An unknown answer kind is refused."""
    with pytest.raises(ValueError, match=r"^unknown answer kind 'float'"):
        _system(answer_kind="float")


# ---- parse_step_answer ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "kind", "answer"),
    [
        ("12 - 5 = 7, and 7 + 3 = 10.\n\\boxed{10}", "number", "10"),
        ("He has 7 + 3 = 10 apples.\nThe answer is 10.", "number", "10"),
        ("32 is the largest, so the answer is (A).", "option", "A"),
        ("91 = 7 * 13, so it is not prime. \\boxed{No}", "yes_no", "no"),
        ("The capital of France is Paris. \\boxed{Paris}", "text", "Paris"),
        ("Here:\n```python\ndef sum_even(xs):\n    return sum(x for x in xs if x % 2 == 0)\n```",
         "code", "def sum_even(xs):\n    return sum(x for x in xs if x % 2 == 0)"),
    ],
)  # fmt: skip
def test_final_step_answer_per_kind(output: str, kind: AnswerKind, answer: str) -> None:
    """The final step's answer is extracted as the question's kind."""
    assert parse_step_answer(output, kind=kind, is_final=True) == StepAnswer(answer, output, valid=True, reason="ok")


@pytest.mark.parametrize(
    ("output", "kind"),
    [
        ("I am not sure how to solve this.", "number"),
        ("The largest one is the first.", "option"),
        ("It depends on the definition.", "yes_no"),
        ("You can loop over the list and add even numbers.", "code"),
    ],
)
def test_final_step_without_extractable_answer_is_invalid(output: str, kind: AnswerKind) -> None:
    """No number / letter / yes-no / code on the final step: invalid, so a backup executor is tried."""
    expected = StepAnswer(None, output, valid=False, reason="no_answer")
    assert parse_step_answer(output, kind=kind, is_final=True) == expected


@pytest.mark.parametrize("output", ["", "  \n\t"])
def test_empty_output_is_invalid(output: str) -> None:
    """An empty output is invalid whatever the step."""
    assert parse_step_answer(output, kind="text", is_final=False).reason == "empty"


def test_overlong_text_answer_is_invalid() -> None:
    """A text answer over MAX_ANSWER_CHARS is absurd and invalid."""
    result = parse_step_answer("\\boxed{" + "x" * (MAX_ANSWER_CHARS + 1) + "}", kind="text")
    assert not result.valid and result.reason == "too_long"


def test_long_code_answer_is_valid() -> None:
    """Code has no length bound (a real solution can be long)."""
    code = "def f():\n" + "    x = 1\n" * 300
    result = parse_step_answer(f"```python\n{code}```", kind="code")
    assert result.valid and result.answer == code.rstrip("\n")


def test_looping_output_without_boxed_answer_is_invalid() -> None:
    """A small model stuck repeating a line, never boxing an answer, is invalid."""
    output = "Let me think.\n" + "We add the apples.\n" * 20 + "12"
    result = parse_step_answer(output, kind="number")
    assert result == StepAnswer("12", output, valid=False, reason="looping")


@pytest.mark.parametrize("is_final", [False, True])
def test_output_cut_at_its_budget_without_a_box_is_invalid(is_final: bool) -> None:
    """Cut mid-working, the last line is where the budget ran out, not a result: invalid."""
    output = "First we find the total time.\n1. Walking takes 12 minutes.\n2. **Calculate the difference"
    result = parse_step_answer(output, kind="number", is_final=is_final, truncated=True)
    assert not result.valid and result.reason == "truncated"
    assert parse_step_answer(output, kind="number", is_final=False).valid, "the same text, not cut, is read"


def test_output_cut_after_its_box_is_valid() -> None:
    """A cut output that already boxed its result keeps it."""
    output = "4 * 3 = 12. \\boxed{12}\nNext, we could also check"
    result = parse_step_answer(output, kind="number", is_final=False, truncated=True)
    assert result.valid and result.answer == "12"


def test_repetition_with_a_boxed_answer_is_valid() -> None:
    """Repeated lines are fine once the model boxed an answer."""
    output = "We add the apples.\n" * 20 + "\\boxed{10}"
    assert parse_step_answer(output, kind="number").valid


def test_intermediate_step_is_read_as_text() -> None:
    """An intermediate answer keeps its wording ('7 and 13'), not a number-mangled '7and13'."""
    output = "91 / 7 = 13, so the primes are 7 and 13.\n\\boxed{7 and 13}"
    assert parse_step_answer(output, kind="number", is_final=False).answer == "7 and 13"


def test_intermediate_step_without_box_uses_answer_phrase() -> None:
    """Without \\boxed{}, an intermediate step's answer is what follows 'the answer is'."""
    result = parse_step_answer("12 minus 5.\nThe answer is 7 apples.", kind="number", is_final=False)
    assert result.answer == "7 apples" and result.valid


def test_intermediate_step_of_code_question_keeps_code() -> None:
    """For code questions an intermediate code block is passed on whole."""
    output = "Use a helper:\n```python\ndef is_even(n):\n    return n % 2 == 0\n```"
    result = parse_step_answer(output, kind="code", is_final=False)
    assert result.answer == "def is_even(n):\n    return n % 2 == 0"


def test_parse_rejects_unknown_kind() -> None:
    """An unknown kind is a caller bug."""
    with pytest.raises(ValueError, match=r"^unknown answer kind 'float'"):
        parse_step_answer("1", kind="float")  # type: ignore[arg-type]


def test_final_question_step_shows_earlier_results_as_working() -> None:
    """The anchored last step asks to solve the problem, checking the earlier steps."""
    messages = execution_messages("Q?", question="Q?", previous=[("a?", "1")], is_final=True, answer_kind="number")
    assert "Step: Solve the problem. Use the earlier steps' results, but check them" in messages[1]["content"]
    alone = execution_messages("Q?", question="Q?", previous=[], is_final=True, answer_kind="number")
    assert alone[1]["content"].endswith("Step: Solve the problem.")
