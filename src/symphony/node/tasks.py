"""The questions a node initiated: a frozen ``TaskRecord`` per question and the ``TaskBook`` that keeps them.

A record is a value: each status change makes a new one (``answered``, ``failed``, ``cancelled``),
and ``to_wire()`` is its one JSON form, the same in ``GET /v1/tasks/ID``, the ``task_record`` event
and ``events.jsonl``. Whoever waits for a question's end waits on the book (``TaskBook.wait``), whose
completion signals are kept apart from the records.

The keys of ``to_wire()`` come in the order clients have always seen: the four fields every record
has, then those of its outcome in the order they were first written (``_OUTCOME_KEYS``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import trio

TaskStatus = Literal["running", "done", "failed", "cancelled"]

#: the keys after ``task_id, status, question, submitted_at``, by status; a failure without a trace is
#: one this node refused to start (it could not be recorded), one with a trace came back from the network
_OUTCOME_KEYS: dict[str, tuple[str, ...]] = {
    "running": (),
    "done": ("trace", "answer"),
    "cancelled": ("error",),
}
_REFUSED_KEYS = ("reason", "error")
_FAILED_KEYS = ("error", "reason", "trace")


@dataclass(frozen=True, kw_only=True)
class TaskRecord:
    """One question this node initiated, as it stands; ``answer`` and ``trace`` once the network answered."""

    task_id: str
    question: str
    submitted_at: float
    status: TaskStatus = "running"
    answer: Any = None
    error: str | None = None
    reason: str | None = None
    trace: dict[str, Any] | None = None

    @property
    def is_finished(self) -> bool:
        return self.status != "running"

    def answered(self, trace: dict[str, Any]) -> TaskRecord:
        """The record once the network answered: ``done``, with the voted answer of ``trace``."""
        return dataclasses.replace(self, status="done", trace=trace, answer=trace["answer"])

    def failed(self, error: str, *, reason: str, trace: dict[str, Any] | None = None) -> TaskRecord:
        """The record of a question that got no answer (``trace``: what the chains returned), or that this
        node refused to start (no ``trace``)."""
        return dataclasses.replace(self, status="failed", error=error, reason=reason, trace=trace)

    def cancelled(self, error: str) -> TaskRecord:
        """The record of a question stopped before its answer; ``error`` says who stopped it."""
        return dataclasses.replace(self, status="cancelled", error=error)

    def to_wire(self) -> dict[str, Any]:
        """The record as JSON, exactly as ``GET /v1/tasks/ID`` has always answered it."""
        wire: dict[str, Any] = {"task_id": self.task_id, "status": self.status, "question": self.question,
                                "submitted_at": self.submitted_at}
        for key in self._outcome_keys():
            wire[key] = getattr(self, key)
        return wire

    def _outcome_keys(self) -> tuple[str, ...]:
        if self.status == "failed":
            return _REFUSED_KEYS if self.trace is None else _FAILED_KEYS
        return _OUTCOME_KEYS[self.status]


class _Completion:
    """The end of one running task: set once, with the record it ended as."""

    def __init__(self) -> None:
        self.event = trio.Event()
        self.record: TaskRecord | None = None


class TaskBook(Mapping[str, TaskRecord]):
    """Task records by ID: every running one and the newest ``keep`` finished ones (older are dropped).

    A mapping of the records as they stand; ``add`` a new one, ``finish`` it with its final value,
    ``wait`` for that final value."""

    def __init__(self, *, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, not {keep!r}")
        self.keep = keep
        self._records: dict[str, TaskRecord] = {}
        self._running: dict[str, _Completion] = {}

    def __getitem__(self, task_id: str) -> TaskRecord:
        return self._records[task_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def add(self, record: TaskRecord) -> None:
        """Keep a new record (a running one can later be finished and waited for)."""
        self._records[record.task_id] = record
        if not record.is_finished:
            self._running[record.task_id] = _Completion()
        self._prune()

    def finish(self, record: TaskRecord) -> None:
        """Replace a running record with its final value and wake whoever waits for it."""
        if not record.is_finished:
            raise ValueError(f"task {record.task_id} is still running")
        self._records[record.task_id] = record
        completion = self._running.pop(record.task_id, None)
        if completion is not None:
            completion.record = record
            completion.event.set()
        self._prune()

    async def wait(self, task_id: str) -> TaskRecord:
        """The final record of ``task_id`` once it is finished (at once if it is). ``KeyError`` if unknown."""
        completion = self._running.get(task_id)
        if completion is None:
            return self._records[task_id]
        await completion.event.wait()
        assert completion.record is not None  # set before the event
        return completion.record

    def _prune(self) -> None:
        finished = [task_id for task_id, record in self._records.items() if record.is_finished]
        for task_id in finished[: max(0, len(finished) - self.keep)]:
            del self._records[task_id]
