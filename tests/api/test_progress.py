"""The progress lines ``symphony ask`` prints and the OpenAI face streams: a chain is named in words."""

from __future__ import annotations

from symphony.api.progress import progress_line


def _step_line(task: str) -> str | None:
    return progress_line({"type": "step_assigned", "data": {"task": task, "step": 0, "executor": "e" * 20}}, "t")


def test_a_planners_further_chain_is_named_in_words_not_by_its_task_id() -> None:
    """``t/r1/c3`` (the planner's second chain of the question, e.g. launched by adaptive chains) used to read
    ``r1/c3``: now it is a chain of the trace and what makes it special."""
    assert _step_line("t/r1/c3") == "chain c3 (its planner's 2nd): step 1 → executor eeeeee…eeee\n"
    assert _step_line("t/r2/c11") == "chain c11 (its planner's 3rd): step 1 → executor eeeeee…eeee\n"


def test_a_first_chain_is_chain_n_and_other_ids_show_as_they_are() -> None:
    assert _step_line("t/c0") == "chain c0: step 1 → executor eeeeee…eeee\n"
    assert _step_line("t/x/y") == "x/y: step 1 → executor eeeeee…eeee\n"
    assert _step_line("other/c0") is None


def test_chain_finished_and_launched_lines_use_the_same_name() -> None:
    finished = progress_line({"type": "chain_finished", "data": {"task": "t", "chain": {
        "index": 3, "planner": "p", "ok": True, "answer": "7", "trace": {"steps": []}}}}, "t")
    assert finished == "chain c3: planner p answered '7'\n"
    launched = progress_line({"type": "chain_launched", "data": {"task": "t", "chain": 3, "planner": "p"}}, "t")
    assert launched == "The chains so far do not settle it: chain c3 → planner p\n"
