"""What the pipeline puts on the wire: defaults omitted, compact step traces, raw text only on failure."""

from __future__ import annotations

from symphony.pipeline.trace import Attempt, StepSpans, StepTrace
from symphony.protocol.messages import Task, TaskResult


def test_task_body_omits_defaults_and_reads_back_equal() -> None:
    task = Task(task_id="t/s0", role="execute", question="2+2?", deadline_ms=5)
    assert task.wire() == {"task_id": "t/s0", "role": "execute", "question": "2+2?", "deadline_ms": 5}
    assert Task.model_validate(task.wire()) == task
    result = TaskResult(task_id="t", ok=True, answer="4")
    assert TaskResult.model_validate(result.wire()) == result and "error" not in result.wire()


def test_step_trace_drops_empty_entries_but_keeps_what_readers_index() -> None:
    """A step's wire form leaves out empty and zero entries, except question, answer, ok, score, attempts,
    each attempt's executor, score, ok and latency, and the step's place in the plan's graph and its span."""
    attempt = Attempt(executor="x", score=0.5, ok=False, error="", latency_ms=0.0, rtt_ms=1.0, model_ms=0.0,
                      model_wall_ms=0.0)
    step = StepTrace(question="q", ok=False, answer="", error="", score=0.0, prompt_tokens=0, completion_tokens=0,
                     attempts=(attempt,), beacon_ms=0.0, candidates=3, spans=StepSpans(beacon_ms=0.0, query_ms=0.25))
    assert step.to_wire() == {"question": "q", "ok": False, "answer": "", "score": 0.0, "attempts":
                              [{"executor": "x", "score": 0.5, "ok": False, "latency_ms": 0.0, "rtt_ms": 1.0}],
                              "candidates": 3, "spans": {"query_ms": 0.25}, "index": 0, "depends_on": [],
                              "started_at": 0, "finished_at": 0}


def test_settled_step_names_its_executor_and_checkers_last() -> None:
    """A settled step ends with its executor, then the executors that checked it (left out when none),
    before its place in the graph (index, depends_on) and its span."""
    base = StepTrace(question="q", ok=True, answer="4", error="", score=0.9, prompt_tokens=5, completion_tokens=1,
                     attempts=(), beacon_ms=0.0, candidates=0, spans=StepSpans(), executor="x")
    assert list(base.to_wire())[-6:-4] == ["attempts", "executor"]
    checked = StepTrace(**{**base.__dict__, "checked_by": ("y",), "index": 2, "depends_on": (0, 1),
                           "started_at": 5, "finished_at": 9})
    assert list(checked.to_wire().items())[-6:] == [("executor", "x"), ("checked_by", ["y"]), ("index", 2),
                                                    ("depends_on", [0, 1]), ("started_at", 5), ("finished_at", 9)]
