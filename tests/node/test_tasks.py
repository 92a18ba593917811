"""Task records as values: each outcome's JSON (keys in the order clients have always seen), and the
book that keeps them, drops old finished ones and wakes whoever waits for an end."""

from __future__ import annotations

import dataclasses

import pytest
import trio
import trio.testing

from symphony.node.tasks import TaskBook, TaskRecord

RUNNING = TaskRecord(task_id="t1", question="What is 6 * 7?", submitted_at=12.5)
HEAD = [("task_id", "t1"), ("status", None), ("question", "What is 6 * 7?"), ("submitted_at", 12.5)]


def wire(record: TaskRecord) -> list[tuple[str, object]]:
    """The record's JSON as (key, value) pairs in order, the status left out of the comparison."""
    return [(key, None if key == "status" else value) for key, value in record.to_wire().items()]


def test_each_outcome_has_its_json_shape() -> None:
    """Running, done, failed, refused and cancelled records give today's keys, in today's order."""
    trace = {"answer": "42", "vote": []}
    assert wire(RUNNING) == HEAD
    assert wire(RUNNING.answered(trace)) == [*HEAD, ("trace", trace), ("answer", "42")]
    assert wire(RUNNING.failed("no planner", reason="no_agents", trace={})) == [
        *HEAD, ("error", "no planner"), ("reason", "no_agents"), ("trace", {})]
    assert wire(RUNNING.failed("disk full", reason="storage")) == [*HEAD, ("reason", "storage"), ("error", "disk full")]
    assert wire(RUNNING.cancelled("cancelled: the client went away")) == [
        *HEAD, ("error", "cancelled: the client went away")]
    assert RUNNING.answered(trace).to_wire()["status"] == "done"


def test_a_record_is_a_value() -> None:
    """A status change makes a new record; the old one stays as it was."""
    done = RUNNING.answered({"answer": "42"})
    assert RUNNING.status == "running" and done.status == "done" and done.is_finished
    with pytest.raises(dataclasses.FrozenInstanceError):
        RUNNING.status = "done"  # type: ignore[misc]


async def test_waiters_get_the_final_record_even_once_dropped() -> None:
    """Whoever waits for a task gets its final record, though the book dropped it meanwhile."""
    book = TaskBook(keep=1)
    book.add(RUNNING)
    got: list[TaskRecord] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_wait_into, book, "t1", got)
        await trio.testing.wait_all_tasks_blocked()
        final = RUNNING.answered({"answer": "42"})
        book.finish(final)
        book.add(TaskRecord(task_id="t2", question="q", submitted_at=13.0, status="done"))  # drops t1
    assert got == [final] and list(book) == ["t2"]


async def _wait_into(book: TaskBook, task_id: str, got: list[TaskRecord]) -> None:
    got.append(await book.wait(task_id))


async def test_a_finished_task_is_waited_for_at_once() -> None:
    """Waiting for a finished task returns its record without blocking; an unknown one is a KeyError."""
    book = TaskBook(keep=5)
    done = RUNNING.answered({"answer": "42"})
    book.add(done)
    with trio.fail_after(1):
        assert await book.wait("t1") == done
    with pytest.raises(KeyError):
        await book.wait("nope")


def test_finishing_needs_a_final_record() -> None:
    """``finish`` with a running record is a local mistake, said as such."""
    book = TaskBook(keep=5)
    book.add(RUNNING)
    with pytest.raises(ValueError, match=r"^task t1 is still running$"):
        book.finish(RUNNING)
