"""The Symphony pipeline over the network (paper Alg. 1; DESIGN §4): the roles' I/O shells.

Theory of operation
-------------------
Three roles, any node can play each:

- **Initiator** (the node a question arrives at): BEACONSELECT for the planning role
  (requirement r(q) of the whole question), then sends ``Task(role="plan")`` to the top
  k planners concurrently. When a planner fails or times out it moves to the next
  candidate while the deadline allows; then it votes over the chains that returned
  (weighted majority, w_i = mean beacon score of chain i, eqs. 2-3).
- **Planner**: decomposes the question with its own model into a chain of sub-tasks
  (JSON, schema-constrained where the backend supports it, repaired otherwise, one
  direct step as the last resort), then drives the chain: for each sub-task it runs
  BEACONSELECT with r(sub-task), sends ``Task(role="execute")`` with the question as
  background and the Q/A pairs of the steps it depends on (a DAG plan's independent
  steps at the same time), and on a timeout or an invalid answer moves to the next
  backup. It returns the last step's answer, the chain weight and the trace.
- **Executor**: answers one sub-task with its model and extracts the ``\\boxed{}`` answer.

So coordination is spread over planners: no node sees everything or is needed by
everyone. Every hop carries the absolute deadline; ``task_id``s make retries
idempotent (a repeated Task from the same sender gets the same result).

This module holds only the I/O: beacon rounds, sending and serving Tasks, model calls, sleeps,
events and the reputation table. Every decision is made by a pure driver the shells feed:
``initiator.InitiatorDriver`` (planners, consistency, vote, verdicts) and ``chain.ChainDriver``
(the planner's next executor, redundancy, chain end); what flows is typed (``trace``, ``answer``).
"""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from symphony.beacon.ranking import (
    Candidate,
    CosineStrategy,
    LinUCBStrategy,
    RandomStrategy,
    SelectionStrategy,
    linucb_reward,
)
from symphony.beacon.service import BeaconOutcome, BeaconSelector
from symphony.capability.vector import TagEncoder, classify_task_type, requirement_vector
from symphony.errors import MalformedMessage, PeerError, SymphonyError, TransportError
from symphony.ledger.reputation import Offence, ReputationTable
from symphony.llm.base import ChatModel, Completion, ModelError, approx_tokens
from symphony.pipeline.adaptive import ADAPTIVE, AGREE, FIRST_COTS
from symphony.pipeline.chain import (
    DECLINED_ERROR,
    HOP_TIMEOUT_ERROR,
    BeaconStep,
    ChainDone,
    ChainDriver,
    HopTimeout,
    LatencyBook,
    Replan,
    SendStep,
    StepSettled,
    Wait,
)
from symphony.pipeline.crossvote import Verdict
from symphony.pipeline.executor import STEP_MAX_TOKENS, execution_messages, parse_step_answer, program_messages
from symphony.pipeline.extraction import AnswerKind, guess_answer_kind
from symphony.pipeline.feedback import OutcomeService
from symphony.pipeline.gate import PriorityGate
from symphony.pipeline.initiator import PLAN_TIMEOUT_ERROR, PLANNER_ROUNDS, InitiatorDriver
from symphony.pipeline.planner import (
    Plan,
    PlanError,
    anchor_final_step,
    decomposition_messages,
    decomposition_schema,
    parse_plan,
    replan_messages,
    single_step_plan,
    split_marks,
)
from symphony.pipeline.tools import examples_passed, run_program, sandbox_works, solving_style, solving_temperature
from symphony.pipeline.trace import BeaconCost, ChainRecord, ChainTrace, QuestionSpans, chain_degradations
from symphony.protocol.envelope import ReplayGuard, open_body, seal
from symphony.protocol.identity import Identity
from symphony.protocol.limits import backoff_delay
from symphony.protocol.messages import Task, TaskKnobs, TaskResult
from symphony.transport.base import Transport

TASK_PROTOCOL = "/symphony/task/1.0.0"
#: Stops (``Task.role == "stop"``) go on a protocol of their own, not admitted like work (``node.runtime``): a
#: stop only ends work its sender sent, and a sender with many steps out is the one that needs to stop some.
STOP_PROTOCOL = "/symphony/task-stop/1.0.0"
MAX_TASK_BYTES = 512 * 1024
PLANNER_TAG = "planner"
EXECUTOR_TAG = "executor"
#: The plan note of a chain whose one-step plan called no planner (``TaskService._make_plan``).
ONE_STEP_NOTE = "one step: max_steps is 1"
#: Work its sender stopped (``TaskService._stop``).
STOPPED_ERROR = "stopped by its sender"


def _question_id(chain_task_id: str) -> str:
    """The question's task ID of a chain's ``{task_id}/c{slot}`` (any other ID unchanged; a planner's further
    chain of one question, ``{task_id}/r{n}/c{slot}``, keeps its ``/r{n}``: it is another chain)."""
    base, sep, slot = chain_task_id.rpartition("/c")
    return base if sep and slot.isdigit() else chain_task_id


#: A planning call's answer budget (``_make_plan``, ``_replan``).
PLAN_MAX_TOKENS = 400
#: How long a stop waits for its reply (``TaskService._stop_work``): the answer is immediate from a live agent,
#: and the wait holds up the backup for the stopped work. A planner told to stop a chain lets it wind down (its
#: steps' own stops) for ``STOP_WAIT_S`` before it answers with what it spent so far, so it is given longer.
STOP_TIMEOUT_S = 3.0
STOP_WAIT_S = STOP_TIMEOUT_S + 1.0
STOP_CHAIN_TIMEOUT_S = STOP_WAIT_S + 1.0
#: Added to a cut hop's error when its agent did not answer the stop: the usage charged is ``_abandoned_cost``'s guess.
ESTIMATED_NOTE = "; no reply to the stop: its usage is an estimate"


def _abandoned_cost(task: Task) -> dict[str, int]:
    """An estimate of what a task we stopped waiting for spends anyway, when its agent did not answer the
    stop (``_stop_work``). An execute task: its prompt and a full answer (an HTTP
    model server may not stop: see ``llm.openai_backend``), erring high. A plan task: a planning call (none at
    ``max_steps`` 1) and one such executor call per step; a chain that retried steps spent more."""
    shown = approx_tokens(" ".join([task.question, task.background, task.context,
                                    *(f"{q} {a}" for q, a in task.previous)]))
    if task.role == "execute":
        return {"prompt_tokens": shown, "completion_tokens": STEP_MAX_TOKENS}
    planning = (shown, PLAN_MAX_TOKENS) if task.max_steps > 1 else (0, 0)
    return {"prompt_tokens": planning[0] + task.max_steps * shown,
            "completion_tokens": planning[1] + task.max_steps * STEP_MAX_TOKENS}


def _add(tally: list[int], tokens: Sequence[int]) -> None:
    tally[0] += tokens[0]
    tally[1] += tokens[1]


class TaskFailed(SymphonyError):
    """The network could not produce an answer before the deadline; the message says why.

    ``trace`` holds whatever the chains returned, so the failure can be inspected. ``reason`` is
    ``"no_agents"`` (no planner answered), ``"timeout"`` (the deadline passed) or ``"no_answer"``."""

    def __init__(self, message: str, *, trace: dict[str, Any] | None = None, reason: str = "no_answer") -> None:
        super().__init__(message)
        self.trace = trace or {}
        self.reason = reason


@dataclass(frozen=True)
class AskOptions:
    """Options of one question (``POST /v1/tasks``)."""

    cots: int = 5  # the most chains (all at once without adaptive chains)
    #: adaptive chains (``pipeline.adaptive``; defaults there): start ``first_cots`` chains, launch the next
    #: slot only while fewer than ``agree`` returned chains agree (code: none passed every example)
    adaptive: bool = ADAPTIVE
    first_cots: int = FIRST_COTS
    agree: int = AGREE
    strategy: str = "cosine"
    top_l: int = 8
    #: the one default for every face (API, OpenAI endpoint, ``ask``, ``demo``, ``bench accuracy``). 1: each
    #: chain solves the whole question (no planner call), the chains differ by style, executor and sampling,
    #: and they stop as soon as two agree. On the GSM8K dev range through the OpenAI endpoint (issue 16,
    #: docs/results.md) plans of up to 3 steps answered 0 of 12 at 2.7x the tokens of these chains (2 of 11)
    max_steps: int = 1
    deadline_s: float = 300.0
    answer_kind: AnswerKind | None = None
    #: the conversation before the question, shown to planners and executors as context; the caller
    #: keeps it within ``Task.context``'s 32,000 characters (the OpenAI endpoint's budget is smaller)
    context: str = ""
    temperature: float | None = None  # the executors' sampling temperature; None: their default
    # fault knobs (issue 17, ``pipeline.chain``); None: each planner node's own default
    redundancy: int | None = None
    hop_timeout: HopTimeout | None = None
    replans: int | None = None
    disclosure: str | None = None
    priority: int = 0
    latency_budget_ms: float | None = None
    #: verification before the vote: a code question's chains checked on the examples it states
    #: (``pipeline.verification``); False only for ablations
    verify: bool = True

    def knobs(self) -> TaskKnobs | None:
        """The knobs that travel with this question's Tasks (None when all are left to the planners)."""
        knobs = TaskKnobs(redundancy=self.redundancy, hop_timeout=self.hop_timeout, replans=self.replans,
                          disclosure=self.disclosure, priority=self.priority,  # type: ignore[arg-type]
                          latency_budget_ms=self.latency_budget_ms)
        return knobs if knobs.wire() else None


@dataclass(frozen=True, eq=False)  # each request is itself (hashed by identity, kept in a set)
class _PlanHop:
    """A chain slot's planner request in flight: its cancel scope (the limit), when it was sent, to whom,
    and its question's driver (which knows the limit)."""

    scope: anyio.CancelScope
    sent: float
    planner: str
    driver: InitiatorDriver


@dataclass(eq=False)
class _Work:
    """A task this agent is serving: who sent it (only they may stop it: ``_stop``), its cancel scope, and
    what it has spent so far, so that stopped or cancelled work still reports every token (``_serve``):
    ``calls``, this agent's model calls (``_chat``), and for a chain its ``driver``'s steps."""

    senders: set[str]
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    calls: list[int] = field(default_factory=lambda: [0, 0])
    driver: ChainDriver | None = None

    def spent(self) -> tuple[int, int]:
        steps = self.driver.spent() if self.driver else (0, 0)
        return self.calls[0] + steps[0], self.calls[1] + steps[1]


@dataclass
class _Load:
    """This agent's queue and latency estimate, reported in beacon replies (QoS)."""

    active: int = 0
    latency_ema_ms: float | None = None  # None until the first call, which then sets it

    def observe(self, latency_ms: float) -> None:
        ema = self.latency_ema_ms
        self.latency_ema_ms = latency_ms if ema is None else 0.8 * ema + 0.2 * latency_ms

    @property
    def expected_ms(self) -> float:
        """One call's expected latency: the average, or a 1 s guess before any call."""
        return 1000.0 if self.latency_ema_ms is None else self.latency_ema_ms


@dataclass
class TaskService:
    """Serves the plan/execute roles and initiates questions from this node."""

    transport: Transport
    identity: Identity
    selector: BeaconSelector
    model: ChatModel | None
    encoder: TagEncoder
    clock: Callable[[], float]
    on_event: Callable[[str, dict[str, Any]], None] = lambda kind, fields: None
    load: _Load = field(default_factory=_Load)
    linucb: LinUCBStrategy = field(default_factory=LinUCBStrategy)
    _guard: ReplayGuard = field(default_factory=ReplayGuard)
    reputation: ReputationTable | None = None
    # this node's defaults as a planner for what a question's ``TaskKnobs`` leaves open (issue 17)
    hop_timeout: HopTimeout = "adaptive"  # per executor request: adaptive, fixed seconds, or "off" (deadline)
    plan_timeout: HopTimeout = "adaptive"  # per planner request (``initiator.plan_timeout_s``); "off": deadline
    redundancy: int = 1  # executors per sub-task (2: cross-checked, a third referees a disagreement)
    replans: int = 1  # failed steps a chain may re-plan
    disclosure: str = "full"  # "minimal": executors get the sub-task and only the context marked as needed
    latencies: LatencyBook = field(default_factory=LatencyBook)
    chain_latencies: LatencyBook = field(default_factory=LatencyBook)  # as initiator: planners' chain round trips
    gate: PriorityGate = field(default_factory=PriorityGate)  # model calls at once; who waits goes by priority
    rng: random.Random = field(default_factory=random.Random)
    feedback: OutcomeService | None = None  # outcome feedback after the vote (skills, LinUCB); None: off
    tools: tuple[str, ...] = ()  # tools its executor uses (``pipeline.tools``; "python" only where the sandbox works)
    decline_busy: bool = True  # as executor: decline a step while every model slot is taken (``_declines``)
    _done: dict[tuple[str, str, str], TaskResult] = field(default_factory=dict)
    _running: dict[tuple[str, str, str], anyio.Event] = field(default_factory=dict)
    _work: dict[tuple[str, str, str], _Work] = field(default_factory=dict)  # the tasks in ``_running``
    _plan_hops: set[_PlanHop] = field(default_factory=set)  # as initiator: planner requests in flight
    _outstanding: Counter[str] = field(default_factory=Counter)  # as planner: steps out per executor
    _declined: dict[tuple[str, str, str], None] = field(default_factory=dict)  # as executor: steps declined once

    def qos(self) -> tuple[int, float]:
        """(queue, expected latency ms) for beacon replies. The queue is this node's model calls in
        flight plus queued at its gate, not its tasks: a planner driving chains mostly waits on
        others, and ranking discounts the queue (``ranking.load_discount``) to spread concurrent chains."""
        return self.gate.queue, self.load.expected_ms * (self.load.active + 1)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _span_ms(self, since: float) -> float:
        """Milliseconds since ``since`` by the injected clock (orchestration accounting spans)."""
        return round((self.clock() - since) * 1000, 3)

    def _strategy(self, name: str) -> SelectionStrategy:
        if name == "random":
            return RandomStrategy(self.rng)
        return self.linucb if name == "linucb" else CosineStrategy()

    def _beacon_event(self, task_id: str, role: str, outcome: BeaconOutcome, *, steps: int | None = None) -> None:
        fields: dict[str, Any] = {"task": task_id, "role": role}
        if steps is not None:
            fields["steps"] = steps
        self.on_event("beacon_round", {**fields, **BeaconCost.of(outcome).to_wire(), **outcome.timing.to_wire()})

    # ---- initiator ---------------------------------------------------------------------

    async def ask(self, question: str, options: AskOptions = AskOptions(), *, task_id: str | None = None) -> dict[str, Any]:
        """Answer ``question`` with up to ``options.cots`` chains (adaptive chains: only as many as it
        takes to settle it) and a weighted vote. Returns the trace.

        Raises ``TaskFailed`` (with the trace so far) when no chain produced an answer."""
        task_id = task_id or uuid.uuid4().hex
        begun = self.clock()  # every span below uses the injected clock, so virtual time measures them exactly
        kind = options.answer_kind or guess_answer_kind(question)
        checkable = options.verify and kind == "code" and sandbox_works()  # the probe runs only for code questions
        driver = InitiatorDriver(task_id=task_id, question=question, kind=kind, cots=options.cots,
                                 deadline_ms=self._now_ms() + int(options.deadline_s * 1000),
                                 plan_timeout=self.plan_timeout, chain_latencies=self.chain_latencies,
                                 adaptive=options.adaptive, first_cots=options.first_cots, agree=options.agree,
                                 checkable=checkable)
        if options.verify and driver.examples and not checkable:
            driver.check_skipped("this node cannot build the code sandbox (docs/sandbox.md)")
        beacon = await self._find_planners(driver, options)
        beacon_ms = self._span_ms(begun)
        planners = driver.first_planners()
        if not planners:
            raise TaskFailed("no available planner answered the beacon; are other nodes running with --model?",
                             reason="no_agents")
        self.on_event("task_started", {"task": task_id, "planners": [c.agent_id for c in planners]})
        async with anyio.create_task_group() as tg:
            for index, candidate in enumerate(planners):
                tg.start_soon(self._run_slot, tg, driver, options, index, candidate)
        self._judge(driver.check_consistency(), Offence.INVALID)
        voting = self.clock()
        vote = driver.vote(trust=self._trust)
        vote_ms = self._span_ms(voting)
        verdicts = driver.cross_verdicts()
        self._judge(verdicts, Offence.OUTVOTED)
        spans = QuestionSpans(wall_ms=self._span_ms(begun), beacon_ms=beacon_ms,
                              query_ms=round(beacon.query_s * 1000, 3), vote_ms=vote_ms)
        trace = driver.trace(latency_ms=round((self.clock() - begun) * 1000, 1), spans=spans).to_wire()
        degraded = [d["kind"] for d in trace["degraded"]]  # counted in /metrics (symphony_degraded_total)
        if (reason := driver.failure(now_ms=self._now_ms())) is not None:
            self.on_event("task_failed", {"task": task_id, "chains": len(driver.records), "degraded": degraded})
            raise TaskFailed(f"no chain returned a usable answer ({len(driver.records)} attempts); see the trace",
                             trace=trace, reason=reason)
        if self.feedback is not None:  # each judged planner (and through it its executors) learns how it did,
            trace["outcomes"] = self.feedback.queue(driver.outcomes(verdicts))  # after the answer is back
        self.on_event("task_finished", {"task": task_id, "answer": vote.answer, "vote": trace["vote"],
                                        "latency_ms": trace["latency_ms"], "degraded": degraded})
        return trace

    async def _run_slot(self, tg: TaskGroup, driver: InitiatorDriver, options: AskOptions, index: int,
                        first: Candidate) -> None:
        """Chain slot ``index``: its chain, then its code checked on the question's examples (verification
        before the vote, ``pipeline.verification``: as each chain returns, so that adaptive chains can stop
        at the first that passes), then the next slot the driver launches, if any, in ``tg``."""
        record = await self._run_chain(driver, options, index, first)
        code = driver.code_to_check(record)
        if code is not None:
            driver.chain_checked(record, await examples_passed(code, driver.question, driver.examples))
        for slot, planner in driver.slot_finished(now_ms=self._now_ms()):
            self.on_event("chain_launched", {"task": driver.task_id, "chain": slot, "planner": planner.agent_id})
            tg.start_soon(self._run_slot, tg, driver, options, slot, planner)

    async def _find_planners(self, driver: InitiatorDriver, options: AskOptions) -> BeaconOutcome:
        """BEACONSELECT among planners for r(q); an empty round (peers churning, partition) is retried
        with backoff while the driver says so. Returns the last round."""
        r = list(requirement_vector(driver.question, classify_task_type(driver.question), self.encoder))
        for attempt in range(PLANNER_ROUNDS):
            beacon = await self.selector.select(r, task_type="planning", m=1, top_l=max(options.top_l, options.cots),
                                                strategy=self._strategy(options.strategy),
                                                tags_any=frozenset({PLANNER_TAG}), priority=options.priority,
                                                latency_budget_ms=options.latency_budget_ms)
            self._beacon_event(driver.task_id, "planning", beacon)
            if driver.planners_found(beacon, now_ms=self._now_ms()):
                break
            await anyio.sleep(backoff_delay(attempt, self.rng, base_s=0.5))
        return beacon

    async def _run_chain(self, driver: InitiatorDriver, options: AskOptions, index: int,
                         first: Candidate) -> ChainRecord:
        """Chain slot ``index``: ask ``first``, then each backup planner the driver hands out; each
        planner may hold the chain for its ``plan_limit_s``, tightened as chains (of any question) come back.
        Returns the last planner's record."""
        candidate: Candidate | None = first
        while candidate is not None:
            task = Task(task_id=driver.chain_task_id(index, candidate.agent_id), role="plan", question=driver.question,
                        answer_kind=driver.kind, max_steps=options.max_steps, strategy=options.strategy,  # type: ignore[arg-type]
                        top_l=options.top_l, deadline_ms=driver.deadline_ms, context=options.context,
                        temperature=options.temperature, knobs=options.knobs())
            hop = _PlanHop(anyio.CancelScope(), self.clock(), candidate.agent_id, driver)
            self._plan_hops.add(hop)
            self._limit_plan(hop)
            with hop.scope:
                result = await self._send(candidate.agent_id, task)
            self._plan_hops.discard(hop)
            rtt_ms = self._span_ms(hop.sent)
            if hop.scope.cancelled_caught:  # the planner held the chain past its limit
                self._blame(candidate.agent_id, Offence.TIMEOUT)
                spent, note = await self._stop_work(candidate.agent_id, task)
                result = TaskResult(task_id=task.task_id, ok=False,
                                    error=f"{PLAN_TIMEOUT_ERROR} after {rtt_ms / 1000:.1f} s{note}", **spent)
            record = ChainRecord(index=index, planner=candidate.agent_id, planner_score=candidate.score,
                                 rtt_ms=rtt_ms, result=result)
            self.on_event("chain_finished", {"task": driver.task_id, "chain": record.to_wire()})
            candidate = driver.chain_returned(record, now_ms=self._now_ms())
            if result.ok:  # its round trip may tighten the planners still running, in this question or others
                for running in list(self._plan_hops):
                    self._limit_plan(running)
        return record

    async def _stop_work(self, agent_id: str, task: Task) -> tuple[dict[str, int], str]:
        """Tell ``agent_id``, whose ``task`` we stopped waiting for, to stop it (work not yet begun is never
        done), and return what it spent: the agent's count (and ""), or ``_abandoned_cost``'s estimate without
        one (and ``ESTIMATED_NOTE``, for the error the trace shows). A chain's planner waits for its own steps'
        stops, so it is given longer."""
        wait_s = STOP_CHAIN_TIMEOUT_S if task.role == "plan" else STOP_TIMEOUT_S
        stop = task.model_copy(update={"role": "stop", "deadline_ms": self._now_ms() + int(wait_s * 1000)})
        try:
            with anyio.fail_after(wait_s):
                reply = await (self._stop(agent_id, stop) if agent_id == self.identity.agent_id
                               else self._request(agent_id, STOP_PROTOCOL, stop, timeout=wait_s))
        except (TimeoutError, TransportError, PeerError):
            return _abandoned_cost(task), ESTIMATED_NOTE
        if not reply.ok:
            return _abandoned_cost(task), ESTIMATED_NOTE
        return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens}, ""

    def _limit_plan(self, hop: _PlanHop) -> None:
        """Set (or tighten) ``hop``'s cancel deadline to its planner's current limit."""
        limit = hop.driver.plan_limit_s(hop.planner, now_ms=self._now_ms())
        if limit is not None:
            left = limit - (self.clock() - hop.sent)
            hop.scope.deadline = min(hop.scope.deadline, anyio.current_time() + left)

    def _trust(self, agent_id: str) -> float:
        """How far this node trusts ``agent_id`` (1.0 without a reputation table)."""
        return 1.0 if self.reputation is None else self.reputation.weight(agent_id, now=self.clock())

    def _judge(self, verdicts: Iterable[Verdict], offence: Offence, *, weight: float = 1.0) -> None:
        """Apply verdicts to the reputation table: blame who disagreed for ``offence``, reward the others."""
        for verdict in verdicts:
            if not verdict.agreed:
                self._blame(verdict.agent_id, offence, weight=weight)
            elif self.reputation is not None and verdict.agent_id != self.identity.agent_id:
                self.reputation.reward(verdict.agent_id, now=self.clock())

    # ---- sending and serving Tasks -------------------------------------------------------

    async def _send(self, agent_id: str, task: Task, *, hop_s: float | None = None,
                    blame_late: bool = True) -> TaskResult:
        """Run ``task`` on ``agent_id`` (in-process if it is us) for at most ``hop_s`` (an execute
        task's hop limit; a plan's is set by ``_run_chain``'s cancel scope) within the deadline; failures
        become ``ok=False``. Holding it past ``hop_s`` is an offence unless not ``blame_late`` (a guessed limit)."""
        remaining = max(0.001, task.deadline_ms / 1000 - self.clock())
        timeout = remaining if hop_s is None else min(remaining, hop_s)
        try:
            if agent_id == self.identity.agent_id:
                with anyio.fail_after(timeout):
                    return await self._serve(self.identity.agent_id, task)
            return await self._request(agent_id, TASK_PROTOCOL, task, timeout=timeout)
        except TimeoutError:
            spent, note = await self._stop_work(agent_id, task)
            if timeout < remaining:  # the peer held a task past its hop limit, not just the deadline
                if blame_late:
                    self._blame(agent_id, Offence.TIMEOUT)
                return TaskResult(task_id=task.task_id, ok=False,
                                  error=f"{HOP_TIMEOUT_ERROR} after {timeout:.1f} s{note}", **spent)
            return TaskResult(task_id=task.task_id, ok=False, error=f"deadline passed{note}", **spent)
        except (TransportError, PeerError) as exc:
            if isinstance(exc, PeerError):
                self._blame(agent_id, Offence.INVALID)
            return TaskResult(task_id=task.task_id, ok=False, error=f"{type(exc).__name__}: {exc}"[:1000])

    def _blame(self, agent_id: str, offence: Offence, *, weight: float = 1.0) -> None:
        if (self.reputation is not None and agent_id != self.identity.agent_id
                and self.reputation.penalize(agent_id, offence, now=self.clock(), weight=weight)):
            self.on_event("blacklisted", {"agent": agent_id, "offence": offence.value})

    async def _request(self, agent_id: str, protocol: str, task: Task, *, timeout: float) -> TaskResult:
        """``task``, signed, to ``agent_id`` on ``protocol``; its checked result (raises on failure)."""
        envelope = seal(self.identity, "task", task.wire(), now_ms=self._now_ms())
        raw = await self.transport.request(agent_id, protocol, envelope.to_bytes(), timeout=timeout)
        return self._check_result(raw, agent_id, task.task_id)

    def _sealed(self, result: TaskResult) -> bytes:
        return seal(self.identity, "task.result", result.wire(), now_ms=self._now_ms()).to_bytes()

    def _check_result(self, raw: bytes, agent_id: str, task_id: str) -> TaskResult:
        _, result = open_body(raw, TaskResult, sender=agent_id, kind="task.result", guard=self._guard,
                              now_ms=self._now_ms(), limit=MAX_TASK_BYTES)
        if result.task_id != task_id:
            raise MalformedMessage(f"result for task {result.task_id!r}, expected {task_id!r}")
        return result

    async def handle(self, peer: str, payload: bytes) -> bytes:
        """Transport handler for ``TASK_PROTOCOL``."""
        _, task = open_body(payload, Task, sender=peer, kind="task", guard=self._guard, now_ms=self._now_ms(),
                            limit=MAX_TASK_BYTES)
        if task.role == "stop":
            raise MalformedMessage(f"a stop goes to {STOP_PROTOCOL}")
        timeout = max(0.001, task.deadline_ms / 1000 - self.clock())
        try:
            with anyio.fail_after(timeout):
                result = await self._serve(peer, task)
        except TimeoutError:
            result = TaskResult(task_id=task.task_id, ok=False, error="deadline passed")
        return self._sealed(result)

    async def handle_stop(self, peer: str, payload: bytes) -> bytes:
        """Transport handler for ``STOP_PROTOCOL``: ``_stop``."""
        _, task = open_body(payload, Task, sender=peer, kind="task", guard=self._guard, now_ms=self._now_ms(),
                            limit=MAX_TASK_BYTES)
        if task.role != "stop":
            raise MalformedMessage(f"only stops go to {STOP_PROTOCOL}, not a {task.role} task")
        result = TaskResult(task_id=task.task_id, ok=False, error="deadline passed")
        with anyio.move_on_after(max(0.001, task.deadline_ms / 1000 - self.clock())):
            result = await self._stop(peer, task)
        return self._sealed(result)

    async def _serve(self, sender: str, task: Task) -> TaskResult:
        """Run a task once per (sender, task_id); concurrent or later repeats share the result.

        A chain (``role="plan"``) is keyed by the question's task ID (without its chain slot ``/cN``)
        and the question, not by sender or slot: it is the durable part of a task, so when the
        initiator dies and the client re-asks another node with the same task ID, the planners hand
        over (or keep running) the chains they already have, whatever slot the new initiator gives
        them; a peer sending another question under that ID cannot plant its chain in the re-ask.
        Work stopped (``_stop``) or cancelled reports what it spent until then."""
        key = ((sender, task.task_id, "") if task.role == "execute"
               else ("", _question_id(task.task_id), task.question))
        if key in self._done:
            return self._done[key].model_copy(update={"task_id": task.task_id})
        if key in self._running:
            work = self._work[key]
            work.senders.add(sender)
            try:
                await self._running[key].wait()
            except anyio.get_cancelled_exc_class():  # this sender stopped waiting: it no longer holds the work
                work.senders.discard(sender)
                raise
            return self._done[key].model_copy(update={"task_id": task.task_id})
        if task.role == "execute" and self._declines(key):
            self.on_event("task_declined", {"task": task.task_id, "sender": sender, "queue": self.gate.queue})
            return TaskResult(task_id=task.task_id, ok=False,
                              error=f"{DECLINED_ERROR}: {self.gate.queue} model calls for {self.gate.slots} slots")
        self._running[key] = anyio.Event()
        if self.feedback is not None:
            self.feedback.remember(sender, task)
        self.load.active += 1
        begun = self.clock()
        work = self._work[key] = _Work({sender})
        result: TaskResult | None = None
        try:
            with work.scope:  # cancelled by ``_stop``
                result = await (self._plan(task, work) if task.role == "plan" else self._execute(task, work.calls))
        finally:
            self.load.active -= 1
            if result is None:  # stopped, or cancelled with the caller (an in-process hop)
                spent = work.spent()
                result = TaskResult(task_id=task.task_id, ok=False, prompt_tokens=spent[0], completion_tokens=spent[1],
                                    error=STOPPED_ERROR if work.scope.cancel_called else "cancelled",
                                    latency_ms=(self.clock() - begun) * 1000)
            del self._work[key]
            self._done[key] = result
            self._running.pop(key).set()
            if len(self._done) > 10_000:
                self._done.pop(next(iter(self._done)))
        self.load.observe(result.latency_ms)
        return result

    async def _stop(self, sender: str, task: Task) -> TaskResult:
        """Stop the task ``sender`` sent under ``task``'s ID (a step: that sender's; a chain: the question's,
        ``_serve``) and stopped waiting for; it is cancelled once no other sender waits for it. The reply is
        ok, with what the task spent (all of it when it has ended, else as much as it spent while winding down
        within ``STOP_WAIT_S``; nothing when it never ran here), or not ok when another agent's task is running
        under that ID (no one stops another's work)."""
        keys = [(sender, task.task_id, ""), ("", _question_id(task.task_id), task.question)]
        key = next((k for k in keys if k in self._work or k in self._done), None)
        if key is None:  # it never ran here (it came too late, or never came): it cost nothing
            return TaskResult(task_id=task.task_id, ok=True)
        work = self._work.get(key)
        if work is None:  # it has ended: all it spent
            done = self._done[key]
            return TaskResult(task_id=task.task_id, ok=True, prompt_tokens=done.prompt_tokens,
                              completion_tokens=done.completion_tokens)
        if sender not in work.senders:
            return TaskResult(task_id=task.task_id, ok=False, error=f"no task of yours named {task.task_id!r}")
        work.senders.discard(sender)
        if work.senders:  # others still wait for it: what it spends is theirs
            return TaskResult(task_id=task.task_id, ok=True)
        work.scope.cancel()
        self.on_event("task_stopped", {"task": task.task_id, "sender": sender})
        with anyio.move_on_after(STOP_WAIT_S):
            await self._running[key].wait()
        done = self._done.get(key)  # wound down; else what it spent so far
        prompt, completion = (done.prompt_tokens, done.completion_tokens) if done else work.spent()
        return TaskResult(task_id=task.task_id, ok=True, prompt_tokens=prompt, completion_tokens=completion)

    def _declines(self, key: tuple[str, str, str]) -> bool:
        """Whether to decline the step ``key`` at once instead of queueing it (paper: the Beacon's
        deadline discipline): every model slot is taken, so it would wait while other executors may
        idle, and the planner has backups. A step sent again by the same planner (it found no free
        backup: ``chain.StepDriver``) is taken whatever the queue, so a busy network still gets through."""
        if key in self._declined:
            del self._declined[key]
            return False
        if not self.decline_busy or self.gate.queue < self.gate.slots:
            return False
        self._declined[key] = None
        if len(self._declined) > 10_000:  # a planner that never insists must not grow this
            self._declined.pop(next(iter(self._declined)))
        return True

    async def _chat(self, messages: list[dict[str, str]], spent: list[int], *, temperature: float | None = None,
                    seed: int | None = None, priority: int = 0, max_tokens: int, **kwargs: Any) -> Completion:
        """One model call, through the priority gate (``gate.PriorityGate``: who is served first when busy),
        counted in its task's running tally ``spent`` (which a stop reports): once it has a slot, an estimate
        (its prompt and a full answer), which stays if the task is stopped while the call is out (erring high:
        the model may not stop); when it returns, what it cost, failed calls included."""
        if self.model is None:
            raise ModelError("this node runs no model (start it with --model)")
        if temperature is not None:  # else the backend's own default
            kwargs["temperature"] = temperature
        if seed is not None:
            kwargs["seed"] = seed
        async with self.gate.slot(priority):
            guess = [approx_tokens(" ".join(m["content"] for m in messages)), max_tokens]
            _add(spent, guess)
            try:
                completion = await self.model.chat(messages, max_tokens=max_tokens, **kwargs)
            except ModelError as exc:
                _add(spent, [exc.prompt_tokens - guess[0], exc.completion_tokens - guess[1]])
                raise
            _add(spent, [completion.prompt_tokens - guess[0], completion.completion_tokens - guess[1]])
            return completion

    def _json_output(self) -> str:
        """How this node's model gives JSON (``OpenAIModel.features``); "" for backends that do not say."""
        features = getattr(self.model, "features", None)
        return str(features().get("json_output", "")) if callable(features) else ""

    @staticmethod
    def _priority(task: Task) -> int:
        return task.knobs.priority if task.knobs else 0

    @staticmethod
    def _beacon_knobs(task: Task) -> dict[str, Any]:
        """The question's priority and latency budget, for its executors' beacon rounds."""
        if task.knobs is None:
            return {}
        return {"priority": task.knobs.priority, "latency_budget_ms": task.knobs.latency_budget_ms}

    # ---- executor role -------------------------------------------------------------------

    async def _execute(self, task: Task, spent: list[int]) -> TaskResult:
        """Answer one step: with a program run in the sandbox when ``tools.solving_style`` says so,
        else (and when the program fails, with its outcome kept in the trace) in text. Its model calls
        are counted in ``spent``, and the result charges all of them, failed calls included."""
        called = self.clock()
        tool: dict[str, Any] = {}
        temperature, seed = solving_temperature(task.task_id, task.temperature)
        call = {"temperature": temperature, "seed": seed, "priority": self._priority(task)}
        try:
            if solving_style(task.task_id, task.answer_kind, self.tools) == "program":
                result = await self._execute_program(task, called, call, spent)
                if result.ok:
                    return result
                tool = {**result.trace["tool"], "fallback": "text"}
            completion = await self._chat(execution_messages(
                task.question, question=task.background, previous=list(task.previous), is_final=task.final,
                answer_kind=task.answer_kind, context=task.context), spent, max_tokens=STEP_MAX_TOKENS, **call)
        except ModelError as exc:  # what the failed call spent still counts
            return TaskResult(task_id=task.task_id, ok=False, error=str(exc)[:1000], prompt_tokens=spent[0],
                              completion_tokens=spent[1])
        step = parse_step_answer(completion.text, kind=task.answer_kind, is_final=task.final,
                                 truncated=completion.truncated)
        return TaskResult(
            task_id=task.task_id, ok=step.valid, answer=step.answer or "", error="" if step.valid else step.reason,
            prompt_tokens=spent[0], completion_tokens=spent[1], latency_ms=completion.latency_s * 1000,
            trace={"model": completion.model, "model_wall_ms": self._span_ms(called), "temperature": temperature,
                   **({"tool": tool} if tool else {}),
                   **({} if step.valid else {"raw": completion.text[-2000:]})},  # the raw text explains a failure only
        )

    async def _execute_program(self, task: Task, called: float, call: dict[str, Any], spent: list[int]) -> TaskResult:
        """One program-of-thought attempt (``tools.run_program``): ok when the program printed an answer."""
        completion = await self._chat(program_messages(
            task.question, question=task.background, previous=list(task.previous), context=task.context),
            spent, max_tokens=STEP_MAX_TOKENS, **call)
        run = await run_program(completion.text, task.answer_kind, is_final=task.final)
        return TaskResult(
            task_id=task.task_id, ok=run.answer is not None, answer=run.answer or "",
            error="" if run.answer is not None else run.reason[:1000],
            prompt_tokens=spent[0], completion_tokens=spent[1],
            latency_ms=completion.latency_s * 1000,
            trace={"model": completion.model, "model_wall_ms": self._span_ms(called),
                   "temperature": call["temperature"], "tool": run.trace()})

    # ---- planner role --------------------------------------------------------------------

    def _knobs(self, task: Task) -> TaskKnobs:
        """The question's knobs with what it leaves open filled from this node's defaults."""
        asked = task.knobs or TaskKnobs()
        return asked.model_copy(update={
            "redundancy": asked.redundancy or self.redundancy,
            "hop_timeout": self.hop_timeout if asked.hop_timeout is None else asked.hop_timeout,
            "replans": self.replans if asked.replans is None else asked.replans,
            "disclosure": asked.disclosure or self.disclosure})

    async def _plan(self, task: Task, work: _Work) -> TaskResult:
        """Decompose ``task.question`` and drive the chain (``chain.ChainDriver`` decides, this shell sends);
        ``work`` counts what it spends as it goes. The result counts every token, steps abandoned included."""
        begun = self.clock()
        knobs = self._knobs(task)
        minimal = knobs.disclosure == "minimal"
        # dial the likely executors while the model plans; the chain's round joins the dials it needs
        # (``BeaconSelector._dial``) and nothing waits for the others, which end with the round
        async with anyio.create_task_group() as dials:
            dials.start_soon(self._preconnect, task)
            plan, plan_note, planning = await self._make_plan(task, work.calls, minimal=minimal)
            steps, marks = split_marks(plan.steps) if minimal else (plan.steps, ())
            self.on_event("plan_made", {"task": task.task_id, "steps": list(steps), "plan": plan_note,
                                        "depends_on": [list(d) for d in plan.depends_on]})  # the dashboard's graph
            driver = ChainDriver(steps, kind=task.answer_kind, deadline_ms=task.deadline_ms,
                                 redundancy=knobs.redundancy or 1, hop_timeout=knobs.hop_timeout or "off",
                                 replans=knobs.replans or 0, latencies=self.latencies, depends_on=plan.depends_on,
                                 origin_ms=int(begun * 1000))
            work.driver = driver
            selecting = self.clock()
            rounds = await self._select_executors(task, steps)  # one beacon round for the whole chain
            dials.cancel_scope.cancel()
        driver.executors_selected(rounds, waited_ms=self._span_ms(selecting))
        needs_problem = {q for q, marked in zip(steps, marks, strict=False) if marked}
        self._beacon_event(task.task_id, "execution", rounds[0], steps=len(steps))
        action = await self._drive(task, driver, needs_problem, work.calls, minimal=minimal)
        trace = ChainTrace(plan=plan_note, steps=action.steps, chain_ms=self._span_ms(begun),
                           plan_model_ms=round(planning.latency_s * 1000, 3) if planning else 0.0,
                           degraded=chain_degradations(plan_note, action.steps, json_output=self._json_output()))
        prompt_tokens, completion_tokens = work.spent()
        return TaskResult(task_id=task.task_id, ok=action.ok, answer=action.answer, error=action.error,
                          weight=action.weight, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          latency_ms=(self.clock() - begun) * 1000, trace=trace.to_wire())

    async def _preconnect(self, task: Task) -> None:
        """Connect to the executors a round for the whole question would invite (its sub-tasks mostly
        want the same agents), so the chain's beacon round and its steps find the connections open."""
        r = list(requirement_vector(task.question, classify_task_type(task.question), self.encoder))
        await self.selector.preconnect(r, tags_any=frozenset({EXECUTOR_TAG}), top_l=task.top_l)

    async def _drive(self, task: Task, driver: ChainDriver, needs_problem: set[str], plan_tokens: list[int], *,
                     minimal: bool) -> ChainDone:
        """Run the driver's actions until the chain is done: every ready step's send or beacon round
        at once, in a task group (issue #21: a DAG plan's independent steps run in parallel); on
        ``Wait``, until one of them returns. Steps still out when the chain fails are cancelled:
        nothing can use their answers."""
        returned, wake = anyio.create_memory_object_stream[None](math.inf)
        with returned, wake:
            async with anyio.create_task_group() as tg:
                while not isinstance(action := driver.next_action(now_ms=self._now_ms()), ChainDone):
                    if isinstance(action, Wait):
                        await wake.receive()
                    elif isinstance(action, SendStep):
                        disclose = not minimal or action.question in needs_problem
                        tg.start_soon(self._out, returned, partial(self._send_step, task, action, driver,
                                                                   disclose=disclose))
                    elif isinstance(action, BeaconStep):
                        tg.start_soon(self._out, returned, partial(self._beacon_step, task, action, driver))
                    elif isinstance(action, Replan):  # only once no step is out
                        needs_problem |= await self._replan(task, action, driver, plan_tokens, minimal=minimal)
                    else:
                        self._settled(action)
                tg.cancel_scope.cancel()
        return action

    @staticmethod
    async def _out(returned: MemoryObjectSendStream[None], work: Callable[[], Awaitable[None]]) -> None:
        """One step's send or beacon round; says so on ``returned`` when it is back (the driver has its result)."""
        try:
            await work()
        finally:
            returned.send_nowait(None)

    async def _make_plan(self, task: Task, tokens: list[int], *,
                         minimal: bool = False) -> tuple[Plan, str, Completion | None]:
        """The plan, its note for the trace, and the planning call (None when the model failed), counted in
        ``tokens``; a model that fails or writes no usable plan leaves the question itself as the one step.

        Under minimal disclosure the last step is not replaced by the question (``anchor_final_step``):
        that would show the whole question to the final executor. With ``max_steps`` 1 (and full
        disclosure) no planner is called: anchoring would replace its one step by the question anyway."""
        if task.max_steps == 1 and not minimal:
            return single_step_plan(task.question), ONE_STEP_NOTE, None
        messages = decomposition_messages(task.question, max_steps=task.max_steps, answer_kind=task.answer_kind,
                                          context=task.context, minimal=minimal)
        try:
            completion = await self._chat(messages, tokens, max_tokens=PLAN_MAX_TOKENS, priority=self._priority(task),
                                          json_schema=decomposition_schema(task.max_steps))
        except ModelError as exc:
            return single_step_plan(task.question), f"fallback: {str(exc)[:200]}", None
        try:
            plan = parse_plan(completion.text, max_steps=task.max_steps)
        except PlanError as exc:
            return single_step_plan(task.question), f"fallback: {str(exc)[:200]}", completion
        plan = plan if minimal else anchor_final_step(plan, task.question)
        return plan, "repaired: " + ", ".join(plan.fixes) if plan.repaired else "ok", completion

    async def _replan(self, task: Task, action: Replan, driver: ChainDriver, tokens: list[int], *,
                      minimal: bool) -> set[str]:
        """Re-plan the rest of the chain after step ``action.index`` failed, beacon for the new steps
        and feed them to the driver. Returns the new steps marked as needing the problem (minimal disclosure)."""
        left = max(1, task.max_steps - len(action.done))  # the steps answered so far stay
        messages = replan_messages(task.question, failed=action.failed, error=action.error, done=list(action.done),
                                   max_steps=left, answer_kind=task.answer_kind, context=task.context,
                                   minimal=minimal)
        try:
            completion = await self._chat(messages, tokens, max_tokens=PLAN_MAX_TOKENS, priority=self._priority(task),
                                          json_schema=decomposition_schema(left))
            plan = parse_plan(completion.text, max_steps=left)
        except (ModelError, PlanError) as exc:
            self.on_event("replan_failed", {"task": task.task_id, "step": action.index, "error": str(exc)[:200]})
            driver.replan_failed(str(exc)[:200])
            return set()
        plan = plan if minimal else anchor_final_step(plan, task.question)
        steps, marks = split_marks(plan.steps) if minimal else (plan.steps, ())
        self.on_event("replanned", {"task": task.task_id, "step": action.index, "error": action.error,
                                    "steps": list(steps)})
        selecting = self.clock()
        rounds = await self._select_executors(task, steps, exclude=action.exclude)
        driver.replanned(steps, rounds, waited_ms=self._span_ms(selecting), depends_on=plan.depends_on)
        self._beacon_event(task.task_id, "execution", rounds[0], steps=len(steps))
        return {q for q, marked in zip(steps, marks, strict=False) if marked}

    async def _send_step(self, task: Task, action: SendStep, driver: ChainDriver, *, disclose: bool) -> None:
        """Send sub-task ``action.index`` to its candidate, with the question and context only when
        ``disclose``; LinUCB and the driver learn the outcome."""
        candidate = action.candidate
        revision = f"r{action.revision}" if action.revision else ""
        sub = Task(task_id=f"{task.task_id}/s{action.index}{revision}", role="execute", question=action.question,
                   background=task.question if disclose else "", previous=list(action.previous),
                   answer_kind=task.answer_kind, final=action.final, deadline_ms=task.deadline_ms,
                   context=task.context if disclose else "", temperature=task.temperature, knobs=task.knobs)
        self.on_event("step_assigned", {"task": task.task_id, "step": action.index, "question": action.question,
                                        "executor": candidate.agent_id, "score": round(candidate.score, 4),
                                        "timeout_s": action.timeout_s, "guessed": action.guessed,
                                        "disclosed": disclose})
        sent = self.clock()
        with self._sending(candidate.agent_id):
            try:
                result = await self._send(candidate.agent_id, sub, hop_s=action.timeout_s,
                                          blame_late=not action.guessed)
            except anyio.get_cancelled_exc_class():  # the chain ended or was stopped with the step out:
                with anyio.CancelScope(shield=True):  # stop it, and count what it spent
                    spent, _ = await self._stop_work(candidate.agent_id, sub)  # no attempt left to show a note on
                    driver.step_abandoned(action.index, **spent)
                raise
        rtt_ms = self._span_ms(sent)
        if not result.error.startswith(DECLINED_ERROR):  # a busy executor's decline says nothing of its skill
            self._learn(candidate, result, chain_id=task.task_id, step_id=sub.task_id)
        self.on_event("step_finished", {"task": task.task_id, "step": action.index, "executor": candidate.agent_id,
                                        "ok": result.ok, "answer": result.answer, "error": result.error,
                                        "latency_ms": round(result.latency_ms, 1)})
        driver.step_result(candidate, result, rtt_ms=rtt_ms, index=action.index)

    @contextmanager
    def _sending(self, agent_id: str) -> Iterator[None]:
        """A step out to ``agent_id``: until it answers it counts as queued there in this planner's
        next beacon rankings (``BeaconSelector.select_many(outstanding=...)``), so chains this node
        plans meanwhile do not all pick the executor its replies said was idle a moment ago."""
        self._outstanding[agent_id] += 1
        try:
            yield
        finally:
            self._outstanding[agent_id] -= 1
            if not self._outstanding[agent_id]:
                del self._outstanding[agent_id]

    async def _beacon_step(self, task: Task, action: BeaconStep, driver: ChainDriver) -> None:
        """Every candidate of a step failed: after a backoff, a fresh single-requirement BEACONSELECT for
        it alone, leaving out those already tried."""
        await anyio.sleep(backoff_delay(action.attempt, self.rng, base_s=0.2))
        selecting = self.clock()
        task_type = classify_task_type(action.question)
        r = list(requirement_vector(action.question, task_type, self.encoder))
        beacon = await self.selector.select(r, task_type=task_type, m=1, top_l=task.top_l,
                                            strategy=self._strategy(task.strategy),
                                            tags_any=frozenset({EXECUTOR_TAG}), exclude=action.exclude,
                                            outstanding=self._outstanding, **self._beacon_knobs(task))
        waited_ms = self._span_ms(selecting)
        self._beacon_event(task.task_id, "execution", beacon, steps=1)
        driver.step_beaconed(beacon, waited_ms=waited_ms, index=action.index)

    def _settled(self, settled: StepSettled) -> None:
        """A cross-checked step's majority: two executors agreed against the outvoted one, strong evidence."""
        self._judge(settled.verdicts, Offence.OUTVOTED, weight=1.5)

    async def _select_executors(self, task: Task, questions: Sequence[str],
                                exclude: frozenset[str] = frozenset()) -> list[BeaconOutcome]:
        """BEACONSELECT(r(sub-task), L, m=1) among executors for every sub-task of a chain, in one round."""
        rs = [list(requirement_vector(q, classify_task_type(q), self.encoder)) for q in questions]
        return await self.selector.select_many(rs, task_type="chain", m=1, top_l=task.top_l,
                                               strategy=self._strategy(task.strategy),
                                               tags_any=frozenset({EXECUTOR_TAG}), exclude=exclude,
                                               outstanding=self._outstanding, **self._beacon_knobs(task))

    def _learn(self, candidate: Candidate, result: TaskResult, *, chain_id: str, step_id: str) -> None:
        """Feed the step's outcome to LinUCB (Symphony-Coord; harmless for the other strategies) and
        note the dispatch, so the chain's end-to-end outcome can reward it too (``feedback``)."""
        reward = linucb_reward(success=result.ok, latency_ms=result.latency_ms)
        context = self.linucb.context(candidate)
        self.linucb.update(candidate.agent_id, context, reward)
        if self.feedback is not None:
            self.feedback.dispatched(chain_id, candidate.agent_id, step_id, context)
