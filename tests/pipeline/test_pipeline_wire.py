"""What the pipeline puts on the wire: defaults omitted, compact step traces, raw text only on failure."""

from __future__ import annotations

from symphony.pipeline.service import compact
from symphony.protocol.messages import Task, TaskResult


def test_task_body_omits_defaults_and_reads_back_equal() -> None:
    task = Task(task_id="t/s0", role="execute", question="2+2?", deadline_ms=5)
    assert task.wire() == {"task_id": "t/s0", "role": "execute", "question": "2+2?", "deadline_ms": 5}
    assert Task.model_validate(task.wire()) == task
    result = TaskResult(task_id="t", ok=True, answer="4")
    assert TaskResult.model_validate(result.wire()) == result and "error" not in result.wire()


def test_compact_step_drops_empty_entries_but_keeps_what_readers_index() -> None:
    step = {"question": "q", "ok": False, "answer": "", "error": "", "score": 0.0, "checked_by": [], "beacon_ms": 0.0,
            "candidates": 3, "spans": {"beacon_ms": 0.0, "query_ms": 0.25},
            "attempts": [{"executor": "x", "score": 0.5, "ok": False, "error": "", "latency_ms": 0.0, "rtt_ms": 1.0}]}
    assert compact(step) == {"question": "q", "ok": False, "answer": "", "score": 0.0, "candidates": 3,
                             "spans": {"query_ms": 0.25},
                             "attempts": [{"executor": "x", "score": 0.5, "ok": False, "latency_ms": 0.0, "rtt_ms": 1.0}]}
