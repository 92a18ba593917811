"""Asking the network from a foreign API face (Ollama, Anthropic): the parts every face shares.

Each face parses its own request shape and answers in its own shape; what a question does in
between is the same as for ``POST /v1/tasks`` and the OpenAI endpoint: refuse when no planner is
available, submit through ``NodeApi``, wait (keeping the connection alive while the network works),
and cancel the question when the client leaves. The failure classes map a failed task to an HTTP
status the same way for every face, and ``split_conversation`` splits every face's conversation the
same way: the last user turn is the question, the system text and earlier turns its context within
one budget (``fit_conversation``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import anyio
from starlette.requests import Request

from symphony.api.http import wait_unless_client_leaves
from symphony.api.node_api import NodeApi
from symphony.ledger.store import QueryFilter
from symphony.node.tasks import TaskRecord
from symphony.pipeline.service import PLANNER_TAG

MODEL_ID = "symphony"
MAX_QUESTION_CHARS = 32_000
KEEPALIVE_S = 10.0
#: task failure reason -> HTTP status; anything else is a 502 (the network returned no usable answer)
FAILURE_STATUS = {"no_agents": 503, "timeout": 504}
#: tells SDKs that retry 5xx (anthropic, openai) not to run a failed question again: it would fail the same way
NO_RETRY = {"x-should-retry": "false"}
#: The conversation kept as context of one question (characters; ~4 per token).
CONTEXT_BUDGET_CHARS = 6_000


@dataclass(frozen=True)
class Conversation:
    """The question, its context and what the context budget left out."""

    question: str
    context: str
    messages: int  # messages before/around the question
    dropped: int  # oldest turns left out by the budget
    clipped_system: bool

    def report(self) -> dict[str, Any]:
        """The reply's ``symphony.context``: what of the conversation went to the network."""
        return {"messages": self.messages, "dropped_turns": self.dropped, "chars": len(self.context),
                "budget_chars": CONTEXT_BUDGET_CHARS, "truncated": self.dropped > 0 or self.clipped_system}


def fit_conversation(question: str, system: list[str], turns: list[str]) -> Conversation:
    """``question`` with its context: the ``system`` lines first (clipped to half of
    ``CONTEXT_BUDGET_CHARS``), then the newest ``turns`` (``Role: text`` lines, oldest first) that fit;
    older turns are dropped whole and counted, so the reply can say so."""
    text = "\n".join(system)
    clipped = len(text) > CONTEXT_BUDGET_CHARS // 2
    text = text[: CONTEXT_BUDGET_CHARS // 2]
    kept: list[str] = []
    room = CONTEXT_BUDGET_CHARS - len(text)
    for line in reversed(turns):  # newest first: the oldest turns are the ones dropped
        if len(line) + 1 > room:
            break
        kept.insert(0, line)
        room -= len(line) + 1
    context = "\n".join(part for part in (text, *kept) if part)
    return Conversation(question=question, context=context, messages=len(system) + len(turns),
                        dropped=len(turns) - len(kept), clipped_system=clipped)


class Turn(Protocol):
    """One message of a face's conversation, as ``split_conversation`` reads it."""

    @property
    def role(self) -> str: ...

    def text(self) -> str:
        """What the message says (the question, when it is the last user turn)."""
        ...

    def line(self) -> str:
        """The message as a line of the question's context: ``Role: text``."""
        ...


def split_conversation(messages: Sequence[Turn], *, system: Sequence[str] = (),
                       system_roles: Collection[str] = ("system",)) -> Conversation:
    """The last user message is the question (empty when there is none: the face refuses it); the
    ``system`` lines, then the messages whose role is in ``system_roles``, then the other turns in
    order, its context (``fit_conversation``)."""
    last = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
    question = messages[last].text() if last is not None else ""
    others = [m for i, m in enumerate(messages) if i != last]
    return fit_conversation(question, [*system, *(m.line() for m in others if m.role in system_roles)],
                            [m.line() for m in others if m.role not in system_roles])


def question_problem(question: str) -> Literal["empty", "too_long"] | None:
    """What makes ``question`` unaskable on every face (each says it in its own error shape): empty, or
    longer than ``MAX_QUESTION_CHARS``; None when it can be asked."""
    if not question.strip():
        return "empty"
    return "too_long" if len(question) > MAX_QUESTION_CHARS else None


def has_planners(node: NodeApi) -> bool:
    """Whether some available agent can plan a question now (else asking is refused with a 503)."""
    return node.has_agents(QueryFilter(tags_any=frozenset({PLANNER_TAG})))


def failure_status(record: TaskRecord) -> int:
    """The HTTP status of a task that finished without an answer."""
    return FAILURE_STATUS.get(record.reason or "", 502)


def usage(record: TaskRecord) -> tuple[int, int]:
    """``(prompt, completion)`` tokens every model call in the network spent on ``record``."""
    trace = record.trace or {}
    return int(trace.get("prompt_tokens", 0)), int(trace.get("completion_tokens", 0))


def extension(record: TaskRecord, talk: Conversation | None = None) -> dict[str, Any]:
    """Symphony's extension field of a reply: the task ID (for ``GET /v1/tasks/{id}``), the trace and, for a
    chat face, what of the conversation went to the network (``context``)."""
    base = {"task_id": record.task_id, "trace": record.trace or {}}
    return base if talk is None else {**base, "context": talk.report()}


async def answer_or_cancel(request: Request, node: NodeApi, submitted: TaskRecord) -> TaskRecord | None:
    """The question's final record; None when the client left first (the question is then cancelled, and the
    caller answers 499, nginx's "client closed request", which nobody reads)."""
    record = await wait_unless_client_leaves(request, lambda: node.wait_task(submitted.task_id))
    if record is None:
        node.cancel(submitted.task_id)
    return record


async def wait_with_keepalives(node: NodeApi, submitted: TaskRecord,
                               keepalive_s: float = KEEPALIVE_S) -> AsyncIterator[TaskRecord | None]:
    """Yields None every ``keepalive_s`` while the question runs, then its final record.

    The caller turns each None into its protocol's keep-alive. If the consumer stops early (the
    client disconnected and the response generator was closed) the question is cancelled."""
    record: TaskRecord | None = None
    try:
        while record is None:
            with anyio.move_on_after(keepalive_s):
                record = await node.wait_task(submitted.task_id)
            yield record
    finally:
        if record is None:
            node.cancel(submitted.task_id)
