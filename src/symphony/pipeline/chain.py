"""A planner's chain, sans I/O: which executor next, when a step is settled, when the chain ends.

Theory of operation
-------------------
The planner role (``service.TaskService``) is a thin shell around ``ChainDriver``, in h11's
shape: the shell feeds in what happened (the chain's beacon round, a step's fresh beacon round,
an executor's result, always with ``now_ms``) and asks ``next_action`` what to do; the driver
answers with a decision and never awaits, sleeps or reads a clock:

- ``SendStep``: send sub-task ``index`` to ``candidate`` (then feed ``step_result``);
- ``BeaconStep``: every candidate of the step failed: after backoff ``attempt``, beacon again
  for this sub-task alone, leaving out ``exclude`` (then feed ``step_beaconed``);
- ``StepSettled``: a step ended; apply its ``verdicts`` to the reputation table;
- ``ChainDone``: the chain's answer and weight (eq. 2), or why it failed.

Each sub-task (``StepDriver``) starts on the candidates the chain's one beacon round chose for it
(primary first, then backups); when all have failed it beacons again, at most ``MAX_STEP_ROUNDS``
rounds in all, and stops at the deadline. With ``redundancy`` 2 a step is cross-checked: it
settles on two agreeing answers or on three answers; the majority stands (the first answer when
there is none) and, given a majority, each executor is judged against it (blamed harder than by
cross-voting: two executors agreed against it). Answers are normalised once, on arrival
(``answer.Answer``). The laws the tests check: no executor is tried twice for one step, and a
step never tries more executors than its rounds offered.

Fault knobs (issue 17; paper §4 "fault tolerance", Alg. 1):

- **Adaptive hop timeouts.** Each ``SendStep`` carries ``timeout_s``: how long that executor may
  hold the step before the shell moves on. ``"adaptive"`` (the default) gives ``HOP_FACTOR`` x the
  larger of its beacon-reported expected latency and this planner's own p95 of it
  (``LatencyBook``), within ``[HOP_FLOOR_S, HOP_CAP_S]``, doubled for each hop of this step that
  already timed out (so a uniformly slow network still gets through, a hung node costs one hop).
  A number fixes it; ``"off"`` leaves only the task deadline (the old behaviour).
- **Re-planning.** When a step fails on every executor and re-plans are left, the driver returns
  ``Replan`` instead of failing the chain: the shell asks the planner model for the rest of the
  chain given the failure and what is done, beacons for the new steps, and feeds ``replanned``.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from symphony.beacon.ranking import Candidate
from symphony.beacon.service import BeaconOutcome
from symphony.pipeline.answer import Answer
from symphony.pipeline.crossvote import Verdict
from symphony.pipeline.extraction import AnswerKind
from symphony.pipeline.tools import reported_tool
from symphony.pipeline.trace import Attempt, StepSpans, StepTrace, reported_ms
from symphony.pipeline.voting import chain_weight
from symphony.protocol.messages import TaskResult

#: Beacon rounds one sub-task may use: the chain's shared one, then fresh ones for it alone.
MAX_STEP_ROUNDS = 3
#: Adaptive hop timeout: this many times an executor's expected latency, within [floor, cap] seconds.
#: The floor covers an executor with no history (it reports a 1 s guess); the cap bounds a hung hop.
HOP_FACTOR = 4.0
HOP_FLOOR_S = 15.0
HOP_CAP_S = 120.0
#: The error of an attempt cut by its hop timeout (not by the task deadline).
HOP_TIMEOUT_ERROR = "hop timeout"
#: A hop timeout setting: "adaptive", "off" (the task deadline only) or fixed seconds.
HopTimeout = Literal["adaptive", "off"] | float


@dataclass
class LatencyBook:
    """This planner's own observations of its executors' round trips (ms): the last ``keep`` per agent.

    The beacon reply's expected latency is the executor's word; this is the planner's. A hop
    timeout uses the larger, so neither a boastful executor nor a stale estimate cuts a live one short."""

    keep: int = 32
    _seen: dict[str, deque[float]] = field(default_factory=dict)

    def observe(self, agent_id: str, rtt_ms: float) -> None:
        self._seen.setdefault(agent_id, deque(maxlen=self.keep)).append(rtt_ms)
        if len(self._seen) > 10_000:  # bounded whatever the network's size
            self._seen.pop(next(iter(self._seen)))

    def p95_ms(self, agent_id: str) -> float:
        """The 95th percentile of ``agent_id``'s observed round trips (0.0 when never seen)."""
        seen = sorted(self._seen.get(agent_id, ()))
        return seen[min(len(seen) - 1, int(0.95 * len(seen)))] if seen else 0.0


def hop_timeout_s(setting: HopTimeout, candidate: Candidate, *, observed_p95_ms: float = 0.0,
                  strikes: int = 0) -> float | None:
    """How long ``candidate`` may hold a step (None: until the task deadline); see the module docstring.

    ``strikes``: hops of this step that already timed out (each doubles the adaptive limit, up to the cap)."""
    if setting == "off":
        return None
    if not isinstance(setting, str):
        return float(setting)
    expected_s = max(candidate.expected_latency_ms, observed_p95_ms) / 1000
    return min(HOP_CAP_S, max(HOP_FLOOR_S, HOP_FACTOR * expected_s) * 2 ** strikes)


@dataclass(frozen=True, kw_only=True)
class SendStep:
    """Send sub-task ``index`` (``question``, with the earlier steps' ``previous`` Q/A pairs) to ``candidate``."""

    index: int
    candidate: Candidate
    question: str
    previous: tuple[tuple[str, str], ...]
    final: bool
    timeout_s: float | None = None  # the hop limit (None: the task deadline)
    revision: int = 0  # re-plans before this step: a re-planned step is new work, under a new task ID


@dataclass(frozen=True, kw_only=True)
class BeaconStep:
    """After backoff ``attempt``, beacon again for sub-task ``index`` alone, without ``exclude``."""

    index: int
    question: str
    attempt: int
    exclude: frozenset[str]


@dataclass(frozen=True, kw_only=True)
class StepSettled:
    """Sub-task ``index`` ended as ``step``; ``verdicts`` judge its executors (redundancy only)."""

    index: int
    step: StepTrace
    verdicts: tuple[Verdict, ...]


@dataclass(frozen=True, kw_only=True)
class ChainDone:
    """The chain's outcome: the last step's answer and the chain weight, or the failed step's error."""

    ok: bool
    answer: str
    weight: float
    error: str
    steps: tuple[StepTrace, ...]

    @property
    def prompt_tokens(self) -> int:
        return sum(s.prompt_tokens for s in self.steps)

    @property
    def completion_tokens(self) -> int:
        return sum(s.completion_tokens for s in self.steps)


@dataclass(frozen=True, kw_only=True)
class Replan:
    """Step ``index`` (``failed``) failed with ``error``: plan the rest of the chain given ``done``
    (the Q/A pairs so far), beacon without ``exclude``, then feed ``replanned`` (or ``replan_failed``)."""

    index: int
    failed: str
    error: str
    done: tuple[tuple[str, str], ...]
    exclude: frozenset[str]


ChainAction = SendStep | BeaconStep | StepSettled | Replan | ChainDone


def attempt_of(candidate: Candidate, result: TaskResult, *, rtt_ms: float) -> Attempt:
    """The trace of ``candidate``'s try: its score and what its result reported."""
    return Attempt(executor=candidate.agent_id, score=round(candidate.score, 4), ok=result.ok, error=result.error,
                   latency_ms=round(result.latency_ms, 1), rtt_ms=rtt_ms, model_ms=round(result.latency_ms, 3),
                   model_wall_ms=reported_ms(result.trace.get("model_wall_ms", 0.0)),
                   tool=reported_tool(result.trace.get("tool")))


class StepDriver:
    """Sub-task ``index`` of a chain: its candidates round by round, the answers, and when it is settled.

    Feed ``beaconed`` with a round's outcome before asking ``next_action``."""

    def __init__(self, *, index: int, question: str, previous: tuple[tuple[str, str], ...], final: bool,
                 kind: AnswerKind, deadline_ms: int, redundancy: int, hop_timeout: HopTimeout = "off",
                 latencies: LatencyBook | None = None, revision: int = 0) -> None:
        self.index = index
        self._revision = revision
        self._hop_timeout = hop_timeout
        self._latencies = latencies or LatencyBook()
        self._strikes = 0  # hops of this step cut by their timeout
        self.question = question
        self._previous = previous
        self._final = final
        self._kind = kind
        self._deadline_ms = deadline_ms
        self._redundancy = redundancy
        self._queue: deque[Candidate] = deque()
        self._rounds = 0
        self._tried: set[str] = set()
        self._answers: list[tuple[Candidate, Answer]] = []
        self._attempts: list[Attempt] = []
        self._error = "no executor answered"
        self._tokens = [0, 0]
        self._beacon_ms = 0.0
        self._candidates = 0
        self._span_beacon_ms = 0.0
        self._query_ms = 0.0
        self._settled = False

    def beaconed(self, outcome: BeaconOutcome, *, waited_ms: float, charged: bool) -> None:
        """A beacon round for this step returned after ``waited_ms``; ``charged``: its reported
        cost counts here (the chain's shared round counts for its first step only)."""
        self._rounds += 1
        if charged:
            self._beacon_ms += round(outcome.elapsed_s * 1000, 2)
            self._query_ms += round(outcome.query_s * 1000, 3)
        self._candidates += outcome.replied
        self._span_beacon_ms += waited_ms
        self._queue = deque(outcome.selection.ordered)

    def result(self, candidate: Candidate, result: TaskResult, *, rtt_ms: float) -> None:
        """``candidate`` answered (or failed) after ``rtt_ms``."""
        self._attempts.append(attempt_of(candidate, result, rtt_ms=rtt_ms))
        self._tokens[0] += result.prompt_tokens
        self._tokens[1] += result.completion_tokens
        if not result.ok:
            self._error = result.error
            self._strikes += result.error.startswith(HOP_TIMEOUT_ERROR)
            return
        self._latencies.observe(candidate.agent_id, rtt_ms)
        self._answers.append((candidate, Answer.of(result.answer, self._kind)))
        self._settled = self._enough()

    def next_action(self, *, now_ms: int) -> SendStep | BeaconStep | StepSettled:
        """The candidate to try next, a fresh round after a backoff, or the settled step."""
        if self._settled:
            return self._settle()
        while self._queue:
            if now_ms >= self._deadline_ms:
                self._error = "deadline passed"
                return self._settle()
            candidate = self._queue.popleft()
            if candidate.agent_id not in self._tried:
                self._tried.add(candidate.agent_id)
                limit = hop_timeout_s(self._hop_timeout, candidate, strikes=self._strikes,
                                      observed_p95_ms=self._latencies.p95_ms(candidate.agent_id))
                return SendStep(index=self.index, candidate=candidate, question=self.question,
                                previous=self._previous, final=self._final, timeout_s=limit,
                                revision=self._revision)
        if now_ms >= self._deadline_ms or self._rounds >= MAX_STEP_ROUNDS:
            return self._settle()
        return BeaconStep(index=self.index, question=self.question, attempt=self._rounds - 1,
                          exclude=frozenset(self._tried))

    @property
    def tried(self) -> frozenset[str]:
        """The executors this step was sent to."""
        return frozenset(self._tried)

    def _enough(self) -> bool:
        """One answer without redundancy; two that agree, or three, with it."""
        if self._redundancy < 2 or len(self._answers) >= 3:
            return True
        return len(self._answers) == 2 and self._answers[0][1].same(self._answers[1][1])

    def _settle(self) -> StepSettled:
        """The majority answer (the first answer if there is none) and, given a majority, the verdicts."""
        if not self._answers:
            return StepSettled(index=self.index, step=self._trace(ok=False), verdicts=())
        top, count = Counter(a.key for _, a in self._answers).most_common(1)[0]
        verdicts: tuple[Verdict, ...] = ()
        if len(self._answers) < 2 or count * 2 <= len(self._answers):
            top = self._answers[0][1].key
        else:
            verdicts = tuple(Verdict(c.agent_id, a.key == top, "execute") for c, a in self._answers)
        chosen, answer = next((c, a) for c, a in self._answers if a.key == top)
        checked_by = tuple(c.agent_id for c, _ in self._answers if c.agent_id != chosen.agent_id)
        step = self._trace(ok=True, chosen=chosen, answer=answer.raw, checked_by=checked_by)
        return StepSettled(index=self.index, step=step, verdicts=verdicts)

    def _trace(self, *, ok: bool, chosen: Candidate | None = None, answer: str = "",
               checked_by: tuple[str, ...] = ()) -> StepTrace:
        return StepTrace(
            question=self.question, ok=ok, answer=answer, error="" if ok else self._error,
            score=chosen.score if chosen else 0.0, prompt_tokens=self._tokens[0], completion_tokens=self._tokens[1],
            attempts=tuple(self._attempts), beacon_ms=self._beacon_ms, candidates=self._candidates,
            spans=StepSpans(beacon_ms=self._span_beacon_ms, query_ms=self._query_ms),
            executor=chosen.agent_id if chosen else None, checked_by=checked_by,
        )


class ChainDriver:
    """A planner's chain of sub-tasks, one after the other, each on beacon-chosen executors.

    Call ``executors_selected`` with the chain's beacon round, then loop on ``next_action`` until
    it returns ``ChainDone``, feeding ``step_result`` after a ``SendStep``, ``step_beaconed``
    after a ``BeaconStep`` and ``replanned`` (or ``replan_failed``) after a ``Replan``.

    ``redundancy``: executors per step (2: cross-checked); ``hop_timeout``: see ``hop_timeout_s``;
    ``replans``: how many failed steps may be re-planned before the chain fails."""

    def __init__(self, steps: Sequence[str], *, kind: AnswerKind, deadline_ms: int, redundancy: int = 1,
                 hop_timeout: HopTimeout = "off", replans: int = 0, latencies: LatencyBook | None = None) -> None:
        if not steps:
            raise ValueError("a chain needs at least one step")
        self._questions = list(steps)
        self._kind = kind
        self._deadline_ms = deadline_ms
        self._redundancy = redundancy
        self._hop_timeout = hop_timeout
        self._replans_left = replans
        self._revision = 0
        self._latencies = latencies or LatencyBook()
        self._rounds: list[BeaconOutcome] = []
        self._round_ms = 0.0
        self._index = 0
        self._step: StepDriver | None = None
        self._steps: list[StepTrace] = []
        self._previous: list[tuple[str, str]] = []
        self._scores: list[float] = []
        self._replan: Replan | None = None
        self._done: ChainDone | None = None

    @property
    def questions(self) -> tuple[str, ...]:
        """The chain's steps as planned now (re-planning replaces those after a failed step)."""
        return tuple(self._questions)

    def executors_selected(self, rounds: Sequence[BeaconOutcome], *, waited_ms: float) -> None:
        """The chain's one beacon round (one outcome per step) returned after ``waited_ms``."""
        if len(rounds) != len(self._questions):
            raise ValueError(f"one beacon outcome per step: {len(rounds)} for {len(self._questions)} steps")
        self._rounds = list(rounds)
        self._round_ms = waited_ms

    def step_result(self, candidate: Candidate, result: TaskResult, *, rtt_ms: float) -> None:
        """The current step's ``candidate`` returned ``result`` after ``rtt_ms``."""
        self._current().result(candidate, result, rtt_ms=rtt_ms)

    def step_beaconed(self, outcome: BeaconOutcome, *, waited_ms: float) -> None:
        """The current step's fresh beacon round returned after ``waited_ms``."""
        self._current().beaconed(outcome, waited_ms=waited_ms, charged=True)

    def replanned(self, steps: Sequence[str], rounds: Sequence[BeaconOutcome], *, waited_ms: float) -> None:
        """The new steps after the failed one (with their beacon round, one outcome each) replace the rest."""
        if self._replan is None:
            raise RuntimeError("replanned without a Replan")
        if not steps or len(rounds) != len(steps):
            raise ValueError(f"a re-plan needs steps and one beacon outcome each: {len(rounds)} for {len(steps)}")
        self._questions[self._index:] = list(steps)
        self._rounds[self._index:] = list(rounds)
        self._round_ms = waited_ms
        self._revision += 1
        self._replan = None

    def replan_failed(self, error: str) -> None:
        """The planner could not re-plan (its model failed): the chain fails on the step that did."""
        if self._replan is None:
            raise RuntimeError("replan_failed without a Replan")
        failed, self._replan = self._replan, None
        self._fail(f"step {failed.index + 1} failed: {failed.error}; re-plan failed: {error}")

    def next_action(self, *, now_ms: int) -> ChainAction:
        """What the shell does next (see the module docstring)."""
        if self._done is not None:
            return self._done
        if self._replan is not None:
            return self._replan
        step = self._current()
        decision = step.next_action(now_ms=now_ms)
        if isinstance(decision, StepSettled):
            self._step_ended(decision.step, tried=step.tried, now_ms=now_ms)
        return decision

    def _current(self) -> StepDriver:
        if not self._rounds:
            raise RuntimeError("executors_selected must come first")
        if self._step is None:
            self._step = StepDriver(index=self._index, question=self._questions[self._index],
                                    previous=tuple(self._previous), final=self._index == len(self._questions) - 1,
                                    kind=self._kind, deadline_ms=self._deadline_ms, redundancy=self._redundancy,
                                    hop_timeout=self._hop_timeout, latencies=self._latencies,
                                    revision=self._revision)
            first_ms, self._round_ms = self._round_ms, 0.0  # a round's wait counts for the step it starts
            self._step.beaconed(self._rounds[self._index], waited_ms=first_ms, charged=bool(first_ms))
        return self._step

    def _step_ended(self, step: StepTrace, *, tried: frozenset[str], now_ms: int) -> None:
        self._steps.append(step)
        self._step = None
        if step.ok:
            self._scores.append(step.score)
            self._previous.append((step.question, step.answer))
            self._index += 1
            if self._index == len(self._questions):
                self._done = ChainDone(ok=True, answer=step.answer, weight=chain_weight(self._scores), error="",
                                       steps=tuple(self._steps))
        elif self._replans_left > 0 and now_ms < self._deadline_ms:
            self._replans_left -= 1
            self._replan = Replan(index=self._index, failed=step.question, error=step.error,
                                  done=tuple(self._previous), exclude=tried)
        else:
            self._fail(f"step {self._index + 1} failed: {step.error}")

    def _fail(self, error: str) -> None:
        self._done = ChainDone(ok=False, answer="", weight=0.0, error=error, steps=tuple(self._steps))


__all__ = [
    "HOP_CAP_S",
    "HOP_FACTOR",
    "HOP_FLOOR_S",
    "HOP_TIMEOUT_ERROR",
    "MAX_STEP_ROUNDS",
    "BeaconStep",
    "ChainAction",
    "ChainDone",
    "ChainDriver",
    "HopTimeout",
    "LatencyBook",
    "Replan",
    "SendStep",
    "StepDriver",
    "StepSettled",
    "attempt_of",
    "hop_timeout_s",
]
