import json
from typing import Any

import pytest

from symphony.errors import SymphonyError
from symphony.pipeline.planner import (
    DECOMPOSITION_SCHEMA,
    MAX_PLAN_INPUT_CHARS,
    MAX_QUESTION_CHARS,
    MAX_STEP_CHARS,
    Plan,
    PlanError,
    check_answer_kind,
    clip,
    decomposition_messages,
    decomposition_schema,
    parse_plan,
    plan_json,
    single_step_plan,
)

# ---- a minimal JSON Schema validator (jsonschema is not a dependency) -----------------------

_SUPPORTED = {"type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
              "minLength", "maxLength", "minimum", "maximum"}  # fmt: skip
_TYPES: dict[str, type | tuple[type, ...]] = {"object": dict, "array": list, "string": str, "integer": int}


def _keywords(schema: dict[str, Any]) -> set[str]:
    found = set(schema)
    for sub in schema.get("properties", {}).values():
        found |= _keywords(sub)
    if "items" in schema:
        found |= _keywords(schema["items"])
    return found


def _valid(instance: object, schema: dict[str, Any]) -> bool:
    if not isinstance(instance, _TYPES[schema["type"]]):
        return False
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        if any(k not in instance for k in schema.get("required", [])):
            return False
        if schema.get("additionalProperties") is False and set(instance) - set(props):
            return False
        return all(_valid(v, props[k]) for k, v in instance.items() if k in props)
    if isinstance(instance, list):
        if not schema.get("minItems", 0) <= len(instance) <= schema.get("maxItems", len(instance)):
            return False
        return all(_valid(i, schema["items"]) for i in instance)
    if isinstance(instance, int):
        return not isinstance(instance, bool) and schema.get("minimum", instance) <= instance <= schema.get(
            "maximum", instance)
    assert isinstance(instance, str)
    low: int = schema.get("minLength", 0)
    high: int = schema.get("maxLength", len(instance))
    return low <= len(instance) <= high


def _plan(*questions: str) -> dict[str, Any]:
    return {"steps": [{"question": q} for q in questions]}


# ---- schema ---------------------------------------------------------------------------------


def test_schema_uses_only_keywords_the_test_validator_checks() -> None:
    """The schema sticks to the keywords constrained decoders (and our validator) support."""
    assert _keywords(DECOMPOSITION_SCHEMA) <= _SUPPORTED | {"type"}
    assert json.loads(json.dumps(DECOMPOSITION_SCHEMA)) == DECOMPOSITION_SCHEMA


def test_valid_plan_validates_against_schema() -> None:
    """A plan of 1..5 non-empty questions is valid."""
    assert _valid(_plan("How much do 4 pens cost?", "What is 20 minus that?"), DECOMPOSITION_SCHEMA)
    assert _valid(_plan(*"abcde"), DECOMPOSITION_SCHEMA)


@pytest.mark.parametrize(
    "instance",
    [
        {"steps": []},
        _plan(*"abcdef"),
        _plan(""),
        _plan("x" * (MAX_STEP_CHARS + 1)),
        {"steps": [{"question": "a", "answer": "b"}]},
        {"steps": ["a"]},
        {"steps": [{"question": "a"}], "notes": "x"},
        ["a"],
    ],
)
def test_schema_rejects_non_plans(instance: object) -> None:
    """Empty, too many, empty or over-long questions, extra keys and wrong shapes are invalid."""
    assert not _valid(instance, DECOMPOSITION_SCHEMA)


def test_schema_max_items_follows_max_steps() -> None:
    """decomposition_schema(n) allows n steps and not n + 1."""
    schema = decomposition_schema(3)
    assert _valid(_plan(*"abc"), schema) and not _valid(_plan(*"abcd"), schema)


def test_schema_copies_are_independent() -> None:
    """Mutating a returned schema does not change the shared constant."""
    schema = decomposition_schema()
    schema["properties"]["steps"]["maxItems"] = 99
    assert DECOMPOSITION_SCHEMA["properties"]["steps"]["maxItems"] == 5


def test_schema_rejects_zero_steps() -> None:
    """max_steps < 1 is a caller bug."""
    with pytest.raises(ValueError, match=r"^max_steps must be >= 1, not 0$"):
        decomposition_schema(0)


# ---- prompt ---------------------------------------------------------------------------------


def test_messages_are_system_then_user_with_the_question() -> None:
    """The question goes in the user message, the instructions in the system message."""
    messages = decomposition_messages("Janet has 3 ducks and buys 5. How many?", answer_kind="number")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == "Problem: Janet has 3 ducks and buys 5. How many?"
    assert "JSON" in messages[0]["content"] and "Janet" not in messages[0]["content"]


@pytest.mark.parametrize(
    ("kind", "form"),
    [("number", "a single number"), ("option", "a single option letter"), ("yes_no", "yes or no"),
     ("text", "a short phrase"), ("code", "complete Python code")],
)  # fmt: skip
def test_messages_ask_last_step_for_the_answer_form(kind: str, form: str) -> None:
    """The system message says the last step asks for the final answer in the kind's form."""
    system = decomposition_messages("q", answer_kind=kind)[0]["content"]
    assert f"The last step must ask for the final answer to the problem as {form}." in system


@pytest.mark.parametrize("kind", ["number", "option", "yes_no", "text", "code"])
def test_worked_example_is_a_schema_valid_plan(kind: str) -> None:
    """The example plan in the prompt is itself valid JSON under the schema (models copy its form)."""
    system = decomposition_messages("q", answer_kind=kind, max_steps=2)[0]["content"]
    example = json.loads(system.splitlines()[-1])
    assert _valid(example, decomposition_schema(2))


def test_messages_state_max_steps() -> None:
    """The step budget appears in the prompt."""
    assert "Use 1 to 3 steps" in decomposition_messages("q", max_steps=3, answer_kind="text")[0]["content"]
    assert "Use exactly 1 step." in decomposition_messages("q", max_steps=1, answer_kind="text")[0]["content"]


def test_messages_clip_a_huge_question_keeping_head_and_tail() -> None:
    """A huge question is clipped, but its start and its end (often the options) survive."""
    question = "START " + "filler " * 5_000 + "(A) 1 (B) 2 END"
    user = decomposition_messages(question, answer_kind="option")[1]["content"]
    assert len(user) <= len("Problem: ") + MAX_QUESTION_CHARS
    assert user.startswith("Problem: START") and user.endswith("(A) 1 (B) 2 END")


def test_messages_reject_unknown_kind() -> None:
    """An answer kind extraction does not know is refused."""
    with pytest.raises(ValueError, match=r"^unknown answer kind 'essay'"):
        decomposition_messages("q", answer_kind="essay")


def test_check_answer_kind_accepts_known_kinds() -> None:
    """Known kinds pass through unchanged."""
    assert check_answer_kind("yes_no") == "yes_no"


# ---- parse_plan -----------------------------------------------------------------------------


def test_strict_schema_json_is_not_repaired() -> None:
    """Schema-conformant output parses as is, with repaired False."""
    plan = parse_plan(json.dumps(_plan("How many apples?", "What is the total?")), max_steps=5)
    assert plan == Plan(("How many apples?", "What is the total?"), repaired=False)


FENCED = """Sure! Here is the plan:
```json
{
  "steps": [
    {"question": "How many apples does Tom have?"},
    {"question": "How many are left? Give a single number."},
  ]
}
```
Hope this helps!"""


@pytest.mark.parametrize(
    ("output", "fix"),
    [
        (FENCED, "code_fence"),
        ('Here is the [JSON] plan: {"steps": [{"question": "How many apples does Tom have?"}, '
         '{"question": "How many are left? Give a single number."}]} Done.', "extracted_block"),
        ("{'steps': [{'question': 'How many apples does Tom have?'}, "
         "{'question': 'How many are left? Give a single number.'}]}", "python_literal"),
        ('["How many apples does Tom have?", "How many are left? Give a single number."]', "shape"),
        ('[{"step": 1, "question": "How many apples does Tom have?"}, '
         '{"step": 2, "question": "How many are left? Give a single number."}]', "shape"),
        ('{"sub_questions": [{"q": "How many apples does Tom have?"}, '
         '{"step": "How many are left? Give a single number."}]}', "shape"),
        ("1. How many apples does Tom have?\n2. How many are left? Give a single number.", "numbered_lines"),
        ("**Step 1:** How many apples does Tom have?\n**Step 2:** How many are left? Give a single number.",
         "numbered_lines"),
        ('{steps: [{question: "How many apples does Tom have?"}, '
         '{question: "How many are left? Give a single number."}]}', "salvaged_fields"),
    ],
)  # fmt: skip
def test_repairs_small_model_output(output: str, fix: str) -> None:
    """Fenced, prose-wrapped, single-quoted, bare-list, odd-key and numbered plans all parse."""
    plan = parse_plan(output, max_steps=5)
    assert plan.steps == ("How many apples does Tom have?", "How many are left? Give a single number.")
    assert plan.repaired and fix in plan.fixes


def test_truncated_json_keeps_the_complete_steps() -> None:
    """Output cut at the token limit keeps the steps that were finished."""
    plan = parse_plan('{"steps": [{"question": "How many apples?"}, {"question": "What is the to', max_steps=5)
    assert plan.steps == ("How many apples?",) and plan.fixes == ("salvaged_fields",)


def test_skips_a_non_plan_block_before_the_plan() -> None:
    """A balanced block holding no steps (here LaTeX) does not stop the search."""
    plan = parse_plan('We need \\frac{1}{2}. Plan: {"steps": [{"question": "What is half of 10?"}]}', max_steps=5)
    assert plan.steps == ("What is half of 10?",)


def test_latex_in_json_strings_survives() -> None:
    """'\\sqrt' (invalid escape) and '\\frac'/'\\times' (escapes JSON would eat) keep their backslash."""
    output = r'{"steps": [{"question": "What is \frac{1}{2} of 10?"}, {"question": "What is \sqrt{16} \times 2?"}]}'
    plan = parse_plan(output, max_steps=5)
    assert plan.steps == (r"What is \frac{1}{2} of 10?", r"What is \sqrt{16} \times 2?")
    assert "latex_escape" in plan.fixes


@pytest.mark.parametrize(
    ("output", "reason", "message"),
    [
        ("I'm sorry, I cannot help with that.", "no_steps", r"^no steps \(JSON, repaired JSON or numbered lines\)"),
        ('{"steps": []}', "no_steps", r"^no steps"),
        ('{"steps": [{"question": "..."}]}', "no_steps", r"^no steps"),
        ("{" * 10_000, "no_steps", r"^no steps"),
        ("[" * 5_000 + "]" * 5_000, "no_steps", r"^no steps"),
        ("   \n ", "empty", r"^the planner's output is empty$"),
    ],
)
def test_garbage_raises_plan_error_with_reason(output: str, reason: str, message: str) -> None:
    """Output with no usable step raises PlanError naming why (deep nesting too, not RecursionError)."""
    with pytest.raises(PlanError, match=message) as info:
        parse_plan(output, max_steps=5)
    assert info.value.reason == reason


def test_copied_worked_example_is_refused() -> None:
    """A planner that echoes the prompt's example has not planned."""
    system = decomposition_messages("q", answer_kind="number")[0]["content"]
    with pytest.raises(PlanError, match=r"copied the prompt's worked example") as info:
        parse_plan(system.splitlines()[-1], max_steps=5)
    assert info.value.reason == "copied_example"


def test_copied_example_followed_by_a_real_plan_uses_the_real_plan() -> None:
    """When the example is echoed first, the next block is the plan."""
    system = decomposition_messages("q", answer_kind="yes_no")[0]["content"]
    output = f"{system.splitlines()[-1]}\nNow yours:\n{json.dumps(_plan('Is 7 odd?'))}"
    assert parse_plan(output, max_steps=5).steps == ("Is 7 odd?",)


def test_too_many_steps_keep_first_and_last() -> None:
    """Over max_steps, the first max_steps-1 steps and the final-answer step are kept."""
    plan = parse_plan(json.dumps(_plan(*(f"Step {c}?" for c in "abcdefg"))), max_steps=3)
    assert plan.steps == ("Step a?", "Step b?", "Step g?") and plan.fixes == ("capped",)


def test_max_steps_one_keeps_the_last_step() -> None:
    """With a budget of one step, the final-answer step survives."""
    assert parse_plan('["a?", "b?", "final?"]', max_steps=1).steps == ("final?",)


def test_duplicates_and_empty_steps_are_dropped() -> None:
    """Repeated (case/punctuation-insensitive) and empty steps go; order is kept."""
    plan = parse_plan('["How many?", "  ", "how many", "1. ", "What total?"]', max_steps=5)
    assert plan.steps == ("How many?", "What total?")
    assert {"deduplicated", "dropped_empty"} <= set(plan.fixes)


def test_list_item_numbering_is_stripped_but_leading_numbers_stay() -> None:
    """'1. X' and 'Step 2: Y' lose their numbering; '12 eggs ...' keeps its number."""
    plan = parse_plan('["1. Find x.", "Step 2: Find y.", "12 eggs cost $3; what does one cost?"]', max_steps=5)
    assert plan.steps == ("Find x.", "Find y.", "12 eggs cost $3; what does one cost?")


def test_overlong_step_is_clipped() -> None:
    """A rambling step is clipped to MAX_STEP_CHARS, keeping its start and end."""
    long_step = "Begin " + "and so on " * 200 + "give a number."
    plan = parse_plan(json.dumps(_plan(long_step)), max_steps=5)
    assert len(plan.steps[0]) <= MAX_STEP_CHARS and plan.steps[0].endswith("give a number.")
    assert plan.steps[0].startswith("Begin ") and "clipped_step" in plan.fixes


def test_whitespace_inside_steps_is_collapsed() -> None:
    """Newlines and runs of spaces inside a step become single spaces."""
    assert parse_plan('["How  many\\n apples?"]', max_steps=5).steps == ("How many apples?",)


def test_huge_output_is_clipped_before_parsing() -> None:
    """Only the first MAX_PLAN_INPUT_CHARS are read, and the clip is recorded."""
    output = json.dumps(_plan("How many?")) + " blah" * MAX_PLAN_INPUT_CHARS
    plan = parse_plan(output, max_steps=5)
    assert plan.steps == ("How many?",) and "input_clipped" in plan.fixes


def test_text_past_the_input_limit_is_not_read() -> None:
    """Steps after the first MAX_PLAN_INPUT_CHARS characters are ignored (bounded work)."""
    with pytest.raises(PlanError, match=r"^no steps"):
        parse_plan("blah " * MAX_PLAN_INPUT_CHARS + "\n1. How many?", max_steps=5)


def test_parse_plan_rejects_zero_max_steps() -> None:
    """max_steps < 1 is a caller bug, not a model failure."""
    with pytest.raises(ValueError, match=r"^max_steps must be >= 1, not 0$"):
        parse_plan('["a?"]', max_steps=0)


def test_plan_error_is_a_symphony_value_error() -> None:
    """PlanError sits under SymphonyError and ValueError."""
    assert issubclass(PlanError, SymphonyError) and issubclass(PlanError, ValueError)


# ---- Plan, fallback and helpers -------------------------------------------------------------


def test_single_step_plan_is_the_question() -> None:
    """The fallback plan has the question as its only step and is not marked repaired."""
    assert single_step_plan("  Is 91 prime?\n") == Plan(("Is 91 prime?",), repaired=False)


@pytest.mark.parametrize("steps", [(), ("ok", " ")])
def test_plan_rejects_empty_steps(steps: tuple[str, ...]) -> None:
    """A plan needs at least one non-empty step."""
    with pytest.raises(ValueError, match=r"^(a plan needs at least one step|plan steps must be non-empty)"):
        Plan(steps, repaired=False)


def test_plan_json_round_trips_unrepaired() -> None:
    """plan_json writes schema-valid JSON that parses back to the same steps, unrepaired."""
    plan = Plan(("How many?", r"What is \frac{1}{2} of it?"), repaired=True)
    text = plan_json(plan)
    assert _valid(json.loads(text), DECOMPOSITION_SCHEMA)
    assert parse_plan(text, max_steps=5) == Plan(plan.steps, repaired=False)


def test_clip_keeps_head_and_tail_within_limit() -> None:
    """clip returns short text unchanged and long text as head [...] tail within the limit."""
    assert clip("short", 10) == "short"
    clipped = clip("a" * 50 + "b" * 50, 40)
    assert len(clipped) <= 40 and clipped.startswith("a") and clipped.endswith("b") and " [...] " in clipped


# ---- anchoring the final step to the question -----------------------------------------------


def test_anchor_final_step_replaces_a_loose_last_step_with_the_question() -> None:
    """A restated last step gives way to the question itself; earlier steps stay."""
    from symphony.pipeline.planner import anchor_final_step

    question = "Tom buys 4 pens at $3 each and pays with $20. How much change does he get?"
    plan = Plan(steps=("How much do the pens cost?", "What is the cost?"), repaired=True, fixes=("shape",))
    anchored = anchor_final_step(plan, question)
    assert anchored.steps == ("How much do the pens cost?", question)
    assert anchored.fixes == ("shape",)


def test_anchor_final_step_drops_a_copy_of_the_question_and_keeps_direct_plans() -> None:
    """The question is asked once, last; a one-step plan becomes the direct plan."""
    from symphony.pipeline.planner import anchor_final_step

    question = "What is 2 + 2?"
    assert anchor_final_step(Plan(steps=("what is 2 + 2", "Add."), repaired=False), question).steps == (question,)
    assert anchor_final_step(single_step_plan(question), question) == single_step_plan(question)
