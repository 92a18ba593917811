"""The Symphony pipeline over the network (paper Alg. 1; DESIGN §4).

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
  background and the previous Q/A pairs, and on a timeout or an invalid answer moves
  to the next backup. It returns the last step's answer, the chain weight and the trace.
- **Executor**: answers one sub-task with its model and extracts the ``\\boxed{}`` answer.

So coordination is spread over planners: no node sees everything or is needed by
everyone. Every hop carries the absolute deadline; ``task_id``s make retries
idempotent (a repeated Task from the same sender gets the same result).
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

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
from symphony.llm.base import ChatModel, Completion, ModelError
from symphony.pipeline.crossvote import cross_vote
from symphony.pipeline.executor import STEP_MAX_TOKENS, execution_messages, parse_step_answer
from symphony.pipeline.extraction import AnswerKind, guess_answer_kind, normalize_answer
from symphony.pipeline.planner import (
    PlanError,
    anchor_final_step,
    decomposition_messages,
    decomposition_schema,
    parse_plan,
    single_step_plan,
)
from symphony.pipeline.voting import Ballot, chain_weight, weighted_vote
from symphony.protocol.envelope import ReplayGuard, open_body, seal
from symphony.protocol.identity import Identity
from symphony.protocol.limits import backoff_delay
from symphony.protocol.messages import Task, TaskResult
from symphony.transport.base import Transport

TASK_PROTOCOL = "/symphony/task/1.0.0"
MAX_TASK_BYTES = 512 * 1024
PLANNER_TAG = "planner"
EXECUTOR_TAG = "executor"


_KEEP = frozenset({"question", "answer", "ok", "attempts", "executor", "score", "latency_ms"})


def compact(entry: dict[str, Any]) -> dict[str, Any]:
    """A step trace for the wire: empty and zero entries dropped (recursively), except the ones every
    reader indexes (question, answer, ok, attempts and each attempt's executor, score, latency)."""
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if isinstance(value, dict):
            value = compact(value)
        elif isinstance(value, list):
            value = [compact(v) if isinstance(v, dict) else v for v in value]
        if key in _KEEP or not (value in (None, "", 0) or value == [] or value == {}):  # 0 covers 0.0 and False
            out[key] = value
    return out


def _question_id(chain_task_id: str) -> str:
    """The question's task ID of a chain's ``{task_id}/c{slot}`` (any other ID unchanged)."""
    base, sep, slot = chain_task_id.rpartition("/c")
    return base if sep and slot.isdigit() else chain_task_id


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

    cots: int = 3
    strategy: str = "cosine"
    top_l: int = 8
    max_steps: int = 5
    deadline_s: float = 300.0
    answer_kind: AnswerKind | None = None


@dataclass
class _Load:
    """This agent's queue and latency estimate, reported in beacon replies (QoS)."""

    active: int = 0
    latency_ema_ms: float = 1000.0

    def observe(self, latency_ms: float) -> None:
        self.latency_ema_ms = 0.8 * self.latency_ema_ms + 0.2 * latency_ms


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
    hop_timeout_s: float | None = None  # per executor request; None = up to the task deadline
    plan_timeout_s: float | None = None  # per planner request (a squatting planner); None = deadline
    redundancy: int = 1  # executors per sub-task (2: cross-checked, a third referees a disagreement)
    rng: random.Random = field(default_factory=random.Random)
    _done: dict[tuple[str, str, str], TaskResult] = field(default_factory=dict)
    _running: dict[tuple[str, str, str], anyio.Event] = field(default_factory=dict)

    def qos(self) -> tuple[int, float]:
        return self.load.active, self.load.latency_ema_ms * (self.load.active + 1)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _span_ms(self, since: float) -> float:
        """Milliseconds since ``since`` by the injected clock (orchestration accounting spans)."""
        return round((self.clock() - since) * 1000, 3)

    def _strategy(self, name: str) -> SelectionStrategy:
        if name == "random":
            return RandomStrategy(random.Random())
        return self.linucb if name == "linucb" else CosineStrategy()

    # ---- initiator ---------------------------------------------------------------------

    async def ask(self, question: str, options: AskOptions = AskOptions(), *, task_id: str | None = None) -> dict[str, Any]:
        """Answer ``question`` with ``options.cots`` chains and a weighted vote. Returns the trace."""
        task_id = task_id or uuid.uuid4().hex
        kind = options.answer_kind or guess_answer_kind(question)
        started = time.perf_counter()
        begun = self.clock()  # spans below use the injected clock, so virtual time measures them exactly
        deadline_ms = self._now_ms() + int(options.deadline_s * 1000)
        r = list(requirement_vector(question, classify_task_type(question), self.encoder))
        for attempt in range(3):  # an empty beacon (peers churning, partition) is retried with backoff
            beacon = await self.selector.select(r, task_type="planning", m=1,
                                                top_l=max(options.top_l, options.cots),
                                                strategy=self._strategy(options.strategy),
                                                tags_any=frozenset({PLANNER_TAG}))
            self.on_event("beacon_round", {"task": task_id, "role": "planning", "contacted": beacon.contacted,
                                           "replied": beacon.replied, "elapsed_ms": round(beacon.elapsed_s * 1000, 2)})
            candidates = list(beacon.selection.ordered)
            if candidates or self._now_ms() >= deadline_ms - 1000:
                break
            await anyio.sleep(backoff_delay(attempt, self.rng, base_s=0.5))
        beacon_ms = self._span_ms(begun)
        if not candidates:
            raise TaskFailed("no available planner answered the beacon; are other nodes running with --model?",
                             reason="no_agents")
        self.on_event("task_started", {"task": task_id, "planners": [c.agent_id for c in candidates[: options.cots]]})
        queue = candidates[options.cots:]
        chains: list[dict[str, Any]] = []

        async def run_chain(index: int, first: Candidate) -> None:
            candidate: Candidate | None = first
            while candidate is not None:
                task = Task(task_id=f"{task_id}/c{index}", role="plan", question=question, answer_kind=kind,
                            max_steps=options.max_steps, strategy=options.strategy,  # type: ignore[arg-type]
                            top_l=options.top_l, deadline_ms=deadline_ms)
                sent = self.clock()
                result = await self._send(candidate.agent_id, task)
                chains.append({"index": index, "planner": candidate.agent_id, "planner_score": candidate.score,
                               "rtt_ms": self._span_ms(sent), **result.model_dump(mode="json", exclude={"task_id"})})
                self.on_event("chain_finished", {"task": task_id, "chain": chains[-1]})
                if result.ok:
                    return
                candidate = queue.pop(0) if queue and self._now_ms() < deadline_ms else None

        async with anyio.create_task_group() as tg:
            for index, candidate in enumerate(candidates[: options.cots]):
                tg.start_soon(run_chain, index, candidate)
        for chain in chains:
            if chain["ok"] and not self._consistent(chain, kind):  # a planner that misreports its own chain
                chain.update(ok=False, error="chain answer contradicts its own trace")
                self._blame(chain["planner"], Offence.INVALID)
        good = [c for c in chains if c["ok"]]
        voting = self.clock()
        vote = weighted_vote([Ballot(f"c{c['index']}", c["answer"], self._trusted_weight(c)) for c in good], kind)
        vote_ms = self._span_ms(voting)
        self._cross_vote(chains, vote.answer, kind)
        trace = {
            "task_id": task_id, "question": question, "answer": vote.answer, "answer_kind": kind,
            "vote": [{"answer": t.answer, "weight": round(t.weight, 4), "count": t.count, "chains": list(t.chains)}
                     for t in vote.tallies],
            "chains": sorted(chains, key=lambda c: c["index"]),
            "planner_beacon": {"contacted": beacon.contacted, "replied": beacon.replied,
                               "elapsed_ms": round(beacon.elapsed_s * 1000, 2)},
            "prompt_tokens": sum(c["prompt_tokens"] for c in chains),
            "completion_tokens": sum(c["completion_tokens"] for c in chains),
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            "spans": {"wall_ms": self._span_ms(begun), "beacon_ms": beacon_ms,
                      "query_ms": round(beacon.query_s * 1000, 3), "vote_ms": vote_ms},
        }
        if vote.winner is None:
            self.on_event("task_failed", {"task": task_id, "chains": len(chains)})
            raise TaskFailed(f"no chain returned a usable answer ({len(chains)} attempts); see the trace",
                             trace=trace, reason="timeout" if self._now_ms() >= deadline_ms else "no_answer")
        self.on_event("task_finished", {"task": task_id, "answer": vote.answer, "vote": trace["vote"],
                                        "latency_ms": trace["latency_ms"]})
        return trace

    def _trusted_weight(self, chain: dict[str, Any]) -> float:
        """A planner reports its own chain weight; scale it by how far we trust that planner."""
        weight = max(0.0, float(chain["weight"]))
        if self.reputation is None:
            return weight
        return weight * self.reputation.weight(chain["planner"], now=self.clock())

    @staticmethod
    def _consistent(chain: dict[str, Any], kind: AnswerKind) -> bool:
        """The answer a planner reports is its chain's last step answer (when it shows its steps)."""
        trace = chain.get("trace")
        steps = trace.get("steps") if isinstance(trace, dict) else None
        if not isinstance(steps, list) or not steps or not isinstance(steps[-1], dict):
            return True
        last = steps[-1].get("answer")
        return not isinstance(last, str) or normalize_answer(last, kind) == normalize_answer(chain["answer"], kind)

    def _cross_vote(self, chains: list[dict[str, Any]], winner: str | None, kind: AnswerKind) -> None:
        """Feed each planner's and executor's agreement with the vote to the reputation table."""
        if self.reputation is None:
            return
        for verdict in cross_vote(chains, winner, kind):
            if not verdict.agreed:
                self._blame(verdict.agent_id, Offence.OUTVOTED)
            elif verdict.agent_id != self.identity.agent_id:
                self.reputation.reward(verdict.agent_id, now=self.clock())

    # ---- sending and serving Tasks -------------------------------------------------------

    async def _send(self, agent_id: str, task: Task) -> TaskResult:
        """Run ``task`` on ``agent_id`` (in-process if it is us); failures become ``ok=False``."""
        remaining = max(0.001, task.deadline_ms / 1000 - self.clock())
        hop = self.hop_timeout_s if task.role == "execute" else self.plan_timeout_s
        timeout = remaining if hop is None else min(remaining, hop)
        try:
            if agent_id == self.identity.agent_id:
                with anyio.fail_after(timeout):
                    return await self._serve(self.identity.agent_id, task)
            envelope = seal(self.identity, "task", task.wire(), now_ms=self._now_ms())
            raw = await self.transport.request(agent_id, TASK_PROTOCOL, envelope.to_bytes(), timeout=timeout)
            return self._check_result(raw, agent_id, task.task_id)
        except TimeoutError:
            if timeout < remaining:  # the peer held a task past its hop limit, not just the deadline
                self._blame(agent_id, Offence.TIMEOUT)
            return TaskResult(task_id=task.task_id, ok=False, error="deadline passed")
        except (TransportError, PeerError) as exc:
            if isinstance(exc, PeerError):
                self._blame(agent_id, Offence.INVALID)
            return TaskResult(task_id=task.task_id, ok=False, error=f"{type(exc).__name__}: {exc}"[:1000])

    def _blame(self, agent_id: str, offence: Offence, *, weight: float = 1.0) -> None:
        if self.reputation is not None and agent_id != self.identity.agent_id:
            if self.reputation.penalize(agent_id, offence, now=self.clock(), weight=weight):
                self.on_event("blacklisted", {"agent": agent_id, "offence": offence.value})

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
        timeout = max(0.001, task.deadline_ms / 1000 - self.clock())
        try:
            with anyio.fail_after(timeout):
                result = await self._serve(peer, task)
        except TimeoutError:
            result = TaskResult(task_id=task.task_id, ok=False, error="deadline passed")
        return seal(self.identity, "task.result", result.wire(), now_ms=self._now_ms()).to_bytes()

    async def _serve(self, sender: str, task: Task) -> TaskResult:
        """Run a task once per (sender, task_id); concurrent or later repeats share the result.

        A chain (``role="plan"``) is keyed by the question's task ID (without its chain slot ``/cN``)
        and the question, not by sender or slot: it is the durable part of a task, so when the
        initiator dies and the client re-asks another node with the same task ID, the planners hand
        over (or keep running) the chains they already have, whatever slot the new initiator gives
        them; a peer sending another question under that ID cannot plant its chain in the re-ask."""
        key = ((sender, task.task_id, "") if task.role == "execute"
               else ("", _question_id(task.task_id), task.question))
        if key in self._done:
            return self._done[key].model_copy(update={"task_id": task.task_id})
        if key in self._running:
            await self._running[key].wait()
            return self._done[key].model_copy(update={"task_id": task.task_id})
        self._running[key] = anyio.Event()
        self.load.active += 1
        result = TaskResult(task_id=task.task_id, ok=False, error="cancelled")
        try:
            result = await (self._plan(task) if task.role == "plan" else self._execute(task))
        finally:
            self.load.active -= 1
            self._done[key] = result
            self._running.pop(key).set()
            if len(self._done) > 10_000:
                self._done.pop(next(iter(self._done)))
        self.load.observe(result.latency_ms)
        return result

    async def _chat(self, messages: list[dict[str, str]], **kwargs: Any) -> Completion:
        if self.model is None:
            raise ModelError("this node runs no model (start it with --model)")
        return await self.model.chat(messages, **kwargs)

    # ---- executor role -------------------------------------------------------------------

    async def _execute(self, task: Task) -> TaskResult:
        called = self.clock()
        try:
            completion = await self._chat(execution_messages(
                task.question, question=task.background, previous=list(task.previous), is_final=task.final,
                answer_kind=task.answer_kind), max_tokens=STEP_MAX_TOKENS)
        except ModelError as exc:
            return TaskResult(task_id=task.task_id, ok=False, error=str(exc)[:1000])
        step = parse_step_answer(completion.text, kind=task.answer_kind, is_final=task.final,
                                 truncated=completion.truncated)
        return TaskResult(
            task_id=task.task_id, ok=step.valid, answer=step.answer or "", error="" if step.valid else step.reason,
            prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
            latency_ms=completion.latency_s * 1000,
            trace={"model": completion.model, "model_wall_ms": self._span_ms(called),
                   **({} if step.valid else {"raw": completion.text[-2000:]})},  # the raw text explains a failure only
        )

    # ---- planner role --------------------------------------------------------------------

    async def _plan(self, task: Task) -> TaskResult:
        started = time.perf_counter()
        begun = self.clock()
        tokens = [0, 0]
        spans = {"plan_model_ms": 0.0}
        try:
            completion = await self._chat(
                decomposition_messages(task.question, max_steps=task.max_steps, answer_kind=task.answer_kind),
                max_tokens=400, json_schema=decomposition_schema(task.max_steps))
            tokens = [completion.prompt_tokens, completion.completion_tokens]
            spans["plan_model_ms"] = round(completion.latency_s * 1000, 3)
            plan = anchor_final_step(parse_plan(completion.text, max_steps=task.max_steps), task.question)
            plan_note = "repaired: " + ", ".join(plan.fixes) if plan.repaired else "ok"
        except (ModelError, PlanError) as exc:
            plan, plan_note = single_step_plan(task.question), f"fallback: {str(exc)[:200]}"
        self.on_event("plan_made", {"task": task.task_id, "steps": list(plan.steps), "plan": plan_note})
        steps: list[dict[str, Any]] = []
        previous: list[tuple[str, str]] = []
        scores: list[float] = []
        selecting = self.clock()
        rounds = await self._select_executors(task, plan.steps)  # one beacon round for the whole chain
        round_ms = self._span_ms(selecting)
        self.on_event("beacon_round", {"task": task.task_id, "role": "execution", "steps": len(plan.steps),
                                       "contacted": rounds[0].contacted, "replied": rounds[0].replied,
                                       "elapsed_ms": round(rounds[0].elapsed_s * 1000, 2)})
        for index, question in enumerate(plan.steps):
            final = index == len(plan.steps) - 1
            step = await self._run_step(task, index, question, previous, final, rounds[index],
                                        round_ms if index == 0 else 0.0)
            steps.append(step)
            tokens[0] += step["prompt_tokens"]
            tokens[1] += step["completion_tokens"]
            if not step["ok"]:
                return self._chain_result(task, False, "", 0.0, tokens, started, plan_note, steps,
                                          error=f"step {index + 1} failed: {step['error']}",
                                          spans={**spans, "chain_ms": self._span_ms(begun)})
            scores.append(step["score"])
            previous.append((question, step["answer"]))
        return self._chain_result(task, True, previous[-1][1], chain_weight(scores), tokens, started, plan_note, steps,
                                  spans={**spans, "chain_ms": self._span_ms(begun)})

    def _chain_result(self, task: Task, ok: bool, answer: str, weight: float, tokens: list[int], started: float,
                      plan_note: str, steps: list[dict[str, Any]], error: str = "",
                      spans: dict[str, float] | None = None) -> TaskResult:
        return TaskResult(task_id=task.task_id, ok=ok, answer=answer, error=error, weight=weight,
                          prompt_tokens=tokens[0], completion_tokens=tokens[1],
                          latency_ms=(time.perf_counter() - started) * 1000,
                          trace={"plan": plan_note, "steps": [compact(step) for step in steps], "spans": spans or {}})

    async def _select_executors(self, task: Task, questions: tuple[str, ...] | list[str]) -> list[BeaconOutcome]:
        """BEACONSELECT(r(sub-task), L, m=1) among executors for every sub-task of a chain, in one round."""
        rs = [list(requirement_vector(q, classify_task_type(q), self.encoder)) for q in questions]
        return await self.selector.select_many(rs, task_type="chain", m=1, top_l=task.top_l,
                                               strategy=self._strategy(task.strategy),
                                               tags_any=frozenset({EXECUTOR_TAG}))

    async def _select_executor(self, task: Task, question: str, exclude: frozenset[str]) -> BeaconOutcome:
        """A fresh single-requirement BEACONSELECT for a failed sub-task, leaving out those already tried."""
        task_type = classify_task_type(question)
        r = list(requirement_vector(question, task_type, self.encoder))
        return await self.selector.select(r, task_type=task_type, m=1, top_l=task.top_l,
                                          strategy=self._strategy(task.strategy), tags_any=frozenset({EXECUTOR_TAG}),
                                          exclude=exclude)

    async def _run_step(self, task: Task, index: int, question: str, previous: list[tuple[str, str]],
                        final: bool, first: BeaconOutcome, first_ms: float) -> dict[str, Any]:
        """Run one sub-task on the executor the chain's beacon round chose for it (``first``, which
        took ``first_ms`` of this step's time), falling back to its backups; when every candidate
        failed, beacon again for this sub-task alone without them, after a backoff.

        With ``redundancy`` 2 the step is cross-checked: a second executor answers too, and if
        the two disagree a third referees; the majority answer stands and the outvoted executor
        loses reputation (cross-voting at the step, where the evidence is sharpest)."""
        step: dict[str, Any] = {"question": question, "ok": False, "answer": "", "error": "no executor answered",
                                "score": 0.0, "prompt_tokens": 0, "completion_tokens": 0, "attempts": [],
                                "beacon_ms": 0.0, "candidates": 0, "spans": {"beacon_ms": 0.0, "query_ms": 0.0}}
        tried: set[str] = set()
        answers: list[tuple[Candidate, str]] = []
        for round_ in range(3):
            if round_:
                await anyio.sleep(backoff_delay(round_ - 1, self.rng, base_s=0.2))
                selecting = self.clock()
                beacon = await self._select_executor(task, question, frozenset(tried))
                waited_ms = self._span_ms(selecting)
                self.on_event("beacon_round", {"task": task.task_id, "role": "execution", "steps": 1,
                                               "contacted": beacon.contacted, "replied": beacon.replied,
                                               "elapsed_ms": round(beacon.elapsed_s * 1000, 2)})
            else:
                beacon, waited_ms = first, first_ms
            if round_ or first_ms:  # the chain's shared round is charged to its first step only
                step["beacon_ms"] += round(beacon.elapsed_s * 1000, 2)
                step["spans"]["query_ms"] += round(beacon.query_s * 1000, 3)
            step["candidates"] += beacon.replied
            step["spans"]["beacon_ms"] += waited_ms
            for candidate in beacon.selection.ordered:
                if self._now_ms() >= task.deadline_ms:
                    step["error"] = "deadline passed"
                    return self._settle(step, answers, task.answer_kind)
                if candidate.agent_id in tried:
                    continue
                tried.add(candidate.agent_id)
                sub = Task(task_id=f"{task.task_id}/s{index}", role="execute", question=question,
                           background=task.question, previous=previous, answer_kind=task.answer_kind, final=final,
                           deadline_ms=task.deadline_ms)
                self.on_event("step_assigned", {"task": task.task_id, "step": index, "question": question,
                                                "executor": candidate.agent_id, "score": round(candidate.score, 4)})
                sent = self.clock()
                result = await self._send(candidate.agent_id, sub)
                rtt_ms = self._span_ms(sent)
                self._learn(candidate, result)
                self.on_event("step_finished", {"task": task.task_id, "step": index, "executor": candidate.agent_id,
                                                "ok": result.ok, "answer": result.answer, "error": result.error,
                                                "latency_ms": round(result.latency_ms, 1)})
                step["attempts"].append({"executor": candidate.agent_id, "score": round(candidate.score, 4),
                                         "ok": result.ok, "error": result.error,
                                         "latency_ms": round(result.latency_ms, 1), "rtt_ms": rtt_ms,
                                         "model_ms": round(result.latency_ms, 3),
                                         "model_wall_ms": result.trace.get("model_wall_ms", 0.0)})
                step["prompt_tokens"] += result.prompt_tokens
                step["completion_tokens"] += result.completion_tokens
                if not result.ok:
                    step["error"] = result.error
                    continue
                answers.append((candidate, result.answer))
                if self._settled(answers, task.answer_kind):
                    return self._settle(step, answers, task.answer_kind)
            if self._now_ms() >= task.deadline_ms:
                break
        return self._settle(step, answers, task.answer_kind)

    def _settled(self, answers: list[tuple[Candidate, str]], kind: AnswerKind) -> bool:
        """Enough answers: one without redundancy; two that agree, or three, with it."""
        if self.redundancy < 2 or len(answers) >= 3:
            return True
        return len(answers) == 2 and len({normalize_answer(a, kind) for _, a in answers}) == 1

    def _settle(self, step: dict[str, Any], answers: list[tuple[Candidate, str]], kind: AnswerKind) -> dict[str, Any]:
        """Take the majority answer (the first answer if there is none) and judge the executors."""
        if not answers:
            return step
        counts = Counter(normalize_answer(a, kind) for _, a in answers)
        top, count = counts.most_common(1)[0]
        if len(answers) < 2 or count * 2 <= len(answers):
            top = normalize_answer(answers[0][1], kind)
        else:
            for candidate, answer in answers:
                if normalize_answer(answer, kind) != top:  # two executors agreed against it: strong evidence
                    self._blame(candidate.agent_id, Offence.OUTVOTED, weight=1.5)
                elif self.reputation is not None and candidate.agent_id != self.identity.agent_id:
                    self.reputation.reward(candidate.agent_id, now=self.clock())
        chosen, answer = next((c, a) for c, a in answers if normalize_answer(a, kind) == top)
        step.update(ok=True, answer=answer, error="", score=chosen.score, executor=chosen.agent_id,
                    checked_by=[c.agent_id for c, _ in answers if c is not chosen])
        return step

    def _learn(self, candidate: Candidate, result: TaskResult) -> None:
        """Feed the outcome to LinUCB (Symphony-Coord); harmless for the other strategies."""
        reward = linucb_reward(success=result.ok, latency_ms=result.latency_ms)
        self.linucb.update(candidate.agent_id, self.linucb.context(candidate), reward)
