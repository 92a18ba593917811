"""What a question leaves behind: frozen traces of its attempts, steps, chains and vote.

Three wire shapes come out of here, each from one ``to_wire()``:

- a planner's chain trace (``ChainTrace``), carried in its ``TaskResult.trace``: the plan note,
  one ``StepTrace`` per sub-task run (each with its executor ``Attempt``s) and the chain's spans;
- the initiator's entry for each planner it asked (``ChainRecord``): the planner, its beacon
  score, the round trip and the planner's ``TaskResult`` (its ``trace`` passed on as received:
  it is the planner's word, checked by the initiator, never rewritten);
- the question's trace (``QuestionTrace``) that ``TaskService.ask`` returns, the API serves,
  the benches read and ``TaskFailed`` carries.

The dicts are exactly the ones the pipeline produced before it had these types (pinned by
tests/pipeline/test_pipeline_trace_shape.py): key order, value types and the step rule that
empty and zero entries are left out, except those every reader indexes (question, answer, ok,
score, attempts and each attempt's executor, score, ok and latency). Durations come from the
node's injected clock.

Degradation is never silent: a chain trace lists what its planner knows went wrong
(``chain_degradations``: the plan fell back to one step, the model had no constrained JSON, a step
was answered only after failed attempts) and the question trace lists those of every chain plus
what only the initiator sees (``collapsed_chains``: chains that were the same solve). Each entry is
a ``Degraded``; a peer's entries are read back through ``Degraded.from_wire`` (known kinds only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from symphony.beacon.service import BeaconOutcome
from symphony.pipeline.adaptive import AdaptiveRecord
from symphony.pipeline.extraction import AnswerKind
from symphony.pipeline.voting import VoteResult
from symphony.protocol.messages import TaskResult


def _present(value: object) -> bool:
    """Whether a trace entry goes on the wire: empty and zero ones (0 covers 0.0 and False) do not."""
    return not (value in (None, "", 0) or value == [] or value == {})


def _without_empty(entry: dict[str, Any], *, keep: frozenset[str]) -> dict[str, Any]:
    return {key: value for key, value in entry.items() if key in keep or _present(value)}


def reported_temperature(value: object) -> float | None:
    """A sampling temperature a peer reported, if it is one (a finite number in [0, 2]); else None (left out)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 2.0:
        return None
    return float(value)


def reported_ms(value: object) -> float:
    """A duration a peer reported in its trace, as a finite float; anything else counts as 0.0 (left out)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0.0
    return float(value)


#: the kinds of degradation (``symphony_degraded_total{kind}``), and what each means
DEGRADED_KINDS: Final = {
    "plan_fallback": "the planner could not plan and ran the question as one step",
    "structured_output": "the planner's model server has no constrained JSON output",
    "step_retried": "a step was answered only after failed attempts",
    "chains_collapsed": "chains were the same solve (same steps, solved the same way without sampling, and the "
                        "same executors or answers)",
    "check_skipped": "the question states examples, but the chains' code could not be checked against them",
}
_DETAIL_CHARS: Final = 300


@dataclass(frozen=True, kw_only=True)
class Degraded:
    """One way a question ran worse than designed: a ``DEGRADED_KINDS`` kind, a detail, and the chain
    slot it happened in (None: the question as a whole)."""

    kind: str
    detail: str
    chain: int | None = None

    def to_wire(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"kind": self.kind, "detail": self.detail}
        return entry if self.chain is None else {**entry, "chain": self.chain}

    @classmethod
    def from_wire(cls, entry: object, *, chain: int) -> Degraded | None:
        """A peer's entry for chain slot ``chain``; None when it is not a known kind (dropped)."""
        if not isinstance(entry, dict) or entry.get("kind") not in DEGRADED_KINDS:
            return None
        return cls(kind=str(entry["kind"]), detail=str(entry.get("detail", ""))[:_DETAIL_CHARS], chain=chain)


@dataclass(frozen=True, kw_only=True)
class CodeCheck:
    """A chain's code run on the examples its question states (``pipeline.verification``): how many
    of ``total`` it passed (None: the run gave no report) and whether it went on to vote."""

    chain: str
    passed: int | None
    total: int
    voted: bool

    def to_wire(self) -> dict[str, Any]:
        return {"chain": self.chain, "passed": self.passed, "total": self.total, "voted": self.voted}


@dataclass(frozen=True, kw_only=True)
class BeaconCost:
    """What one beacon round cost: agents contacted, replies, elapsed time (the ``beacon_round`` event's fields)."""

    contacted: int
    replied: int
    elapsed_ms: float

    @classmethod
    def of(cls, outcome: BeaconOutcome) -> BeaconCost:
        return cls(contacted=outcome.contacted, replied=outcome.replied, elapsed_ms=round(outcome.elapsed_s * 1000, 2))

    def to_wire(self) -> dict[str, Any]:
        return {"contacted": self.contacted, "replied": self.replied, "elapsed_ms": self.elapsed_ms}


_ATTEMPT_KEEP = frozenset({"executor", "score", "ok", "latency_ms"})


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One executor's try at a step: its beacon score, outcome and timings (ms)."""

    executor: str
    score: float
    ok: bool
    error: str
    latency_ms: float  # the executor's model latency it reported, 0.1 ms
    rtt_ms: float  # request to reply, by the planner's clock
    model_ms: float  # the same reported latency, 1 us (the accounting's "model" part)
    model_wall_ms: float  # the executor's own clock around its model call ("queue" = this - model_ms)
    tool: dict[str, Any] = field(default_factory=dict)  # its program and how it ran (pipeline.tools.reported_tool)
    temperature: float | None = None  # the sampling temperature it reported (``tools.solving_temperature``)

    def to_wire(self) -> dict[str, Any]:
        wire = _without_empty({"executor": self.executor, "score": self.score, "ok": self.ok, "error": self.error,
                               "latency_ms": self.latency_ms, "rtt_ms": self.rtt_ms, "model_ms": self.model_ms,
                               "model_wall_ms": self.model_wall_ms, "tool": self.tool}, keep=_ATTEMPT_KEEP)
        return wire if self.temperature is None else {**wire, "temperature": self.temperature}


@dataclass(frozen=True, kw_only=True)
class StepSpans:
    """A step's time in beacon rounds (``beacon_ms``) and of that in the local ledger query."""

    beacon_ms: float = 0.0
    query_ms: float = 0.0

    def to_wire(self) -> dict[str, Any]:
        return _without_empty({"beacon_ms": self.beacon_ms, "query_ms": self.query_ms}, keep=frozenset())


_STEP_KEEP = frozenset({"question", "answer", "ok", "attempts", "score", "index", "depends_on", "started_at",
                        "finished_at"})


@dataclass(frozen=True, kw_only=True)
class StepTrace:
    """One sub-task as run: the answer that stands (``executor``'s, checked by ``checked_by``) or why none.

    ``beacon_ms`` is what the step's beacon rounds reported (the chain's shared round is charged to
    its first step only); ``candidates`` counts the replies they got. ``index`` is the step's place
    in the plan it ran in, ``depends_on`` the steps it waited for (issue #21: a DAG plan), and
    ``started_at`` / ``finished_at`` the ms from the start of the planner's chain to the step's
    start and its settling (steps with overlapping spans ran at the same time)."""

    question: str
    ok: bool
    answer: str
    error: str
    score: float
    prompt_tokens: int
    completion_tokens: int
    attempts: tuple[Attempt, ...]
    beacon_ms: float
    candidates: int
    spans: StepSpans
    executor: str | None = None  # set when the step settled on an answer
    checked_by: tuple[str, ...] = ()
    index: int = 0
    depends_on: tuple[int, ...] = ()
    started_at: int = 0
    finished_at: int = 0

    def to_wire(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "question": self.question, "ok": self.ok, "answer": self.answer, "error": self.error,
            "score": self.score, "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "attempts": [a.to_wire() for a in self.attempts], "beacon_ms": self.beacon_ms,
            "candidates": self.candidates, "spans": self.spans.to_wire(),
        }
        if self.executor is not None:
            entry.update(executor=self.executor, checked_by=list(self.checked_by))
        entry.update(index=self.index, depends_on=list(self.depends_on), started_at=self.started_at,
                     finished_at=self.finished_at)
        return _without_empty(entry, keep=_STEP_KEEP)


@dataclass(frozen=True, kw_only=True)
class ChainTrace:
    """A planner's trace of its chain: how its plan was read, the steps, and its spans (ms)."""

    plan: str  # "ok", "repaired: <fixes>" or "fallback: <why>"
    steps: tuple[StepTrace, ...]
    plan_model_ms: float
    chain_ms: float
    degraded: tuple[Degraded, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {"plan": self.plan, "steps": [s.to_wire() for s in self.steps],
                "spans": {"plan_model_ms": self.plan_model_ms, "chain_ms": self.chain_ms},
                "degraded": [d.to_wire() for d in self.degraded]}


def chain_degradations(plan: str, steps: Sequence[StepTrace], *, json_output: str) -> tuple[Degraded, ...]:
    """What a planner knows went wrong in its chain: its plan note, its model's JSON output mode
    (``prompt``: unconstrained) and each step answered after failed attempts."""
    found = []
    if plan.startswith("fallback"):
        found.append(Degraded(kind="plan_fallback", detail=plan[:_DETAIL_CHARS]))
    if json_output == "prompt":
        found.append(Degraded(kind="structured_output", detail="the server refused json_schema and json_object: "
                              "plans were asked for in the prompt only"))
    for index, step in enumerate(steps):
        failed = sum(not a.ok for a in step.attempts)
        if step.ok and failed:
            found.append(Degraded(kind="step_retried",
                                  detail=f"step {index + 1} answered after {failed} failed attempt(s)"))
    return tuple(found)


@dataclass(frozen=True, kw_only=True)
class ChainRecord:
    """The initiator's record of one planner it asked for chain ``index``, and what came back."""

    index: int
    planner: str
    planner_score: float
    rtt_ms: float
    result: TaskResult

    def to_wire(self) -> dict[str, Any]:
        return {"index": self.index, "planner": self.planner, "planner_score": self.planner_score,
                "rtt_ms": self.rtt_ms, **self.result.model_dump(mode="json", exclude={"task_id"})}


@dataclass(frozen=True, kw_only=True)
class QuestionSpans:
    """The initiator's critical path (ms, injected clock): all, the planner beacon (of it the ledger query), the vote."""

    wall_ms: float
    beacon_ms: float
    query_ms: float
    vote_ms: float

    def to_wire(self) -> dict[str, Any]:
        return {"wall_ms": self.wall_ms, "beacon_ms": self.beacon_ms, "query_ms": self.query_ms,
                "vote_ms": self.vote_ms}


@dataclass(frozen=True, kw_only=True)
class QuestionTrace:
    """A question's whole trace: the vote over its chains, every planner attempt, costs and spans."""

    task_id: str
    question: str
    answer_kind: AnswerKind
    vote: VoteResult
    chains: tuple[ChainRecord, ...]  # every planner attempt, by chain index, in arrival order within one
    planner_beacon: BeaconCost
    latency_ms: float
    spans: QuestionSpans
    degraded: tuple[Degraded, ...] = ()
    checks: tuple[CodeCheck, ...] = ()
    adaptive: AdaptiveRecord | None = None  # adaptive chains: launched, and why launching stopped

    @property
    def answer(self) -> str | None:
        return self.vote.answer

    def vote_wire(self) -> list[dict[str, Any]]:
        return [{"answer": t.answer, "weight": round(t.weight, 4), "count": t.count, "chains": list(t.chains)}
                for t in self.vote.tallies]

    def to_wire(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id, "question": self.question, "answer": self.answer,
            "answer_kind": self.answer_kind, "vote": self.vote_wire(), "chains": [c.to_wire() for c in self.chains],
            "planner_beacon": self.planner_beacon.to_wire(),
            "prompt_tokens": sum(c.result.prompt_tokens for c in self.chains),
            "completion_tokens": sum(c.result.completion_tokens for c in self.chains),
            "latency_ms": self.latency_ms, "spans": self.spans.to_wire(),
            "degraded": [d.to_wire() for d in self.degraded], "checks": [c.to_wire() for c in self.checks],
            "adaptive": None if self.adaptive is None else self.adaptive.to_wire(),
        }


__all__ = [
    "Attempt",
    "BeaconCost",
    "ChainRecord",
    "ChainTrace",
    "CodeCheck",
    "DEGRADED_KINDS",
    "Degraded",
    "QuestionSpans",
    "QuestionTrace",
    "StepSpans",
    "StepTrace",
    "chain_degradations",
    "reported_ms",
    "reported_temperature",
]
