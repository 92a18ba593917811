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
- ``Wait``: every ready step is out: feed one's result before asking again;
- ``ChainDone``: the chain's answer and weight (eq. 2), or why it failed.

A plan is a DAG (issue #21): each step names the earlier steps it ``depends_on`` (default: the one
before it, the old linear chain). Every step whose dependencies have settled is offered at once, so
the shell asks repeatedly and runs what it gets concurrently; a step is sent the Q/A pairs of
everything it depends on, directly or not (``dag.ancestors``, in index order), which for a linear
chain is every earlier step, as before.

Each sub-task (``StepDriver``) starts on the candidates the chain's one beacon round chose for it
(primary first, then backups); when all have failed it beacons again, at most ``MAX_STEP_ROUNDS``
rounds in all, and stops at the deadline. With ``redundancy`` 2 a step is cross-checked: it
settles on two agreeing answers or on three answers; the majority stands (the first answer when
there is none) and, given a majority, each executor is judged against it (blamed harder than by
cross-voting: two executors agreed against it). Answers are normalised once, on arrival
(``answer.Answer``). The laws the tests check: no executor is tried twice for one step, and a
step never tries more executors than its rounds offered, with one exception: an executor whose
model slots were all taken declines a step at once (``DECLINED_ERROR``, no fault) and the step
moves to its next candidate; only when none is left is the step sent again to the best-ranked
one that declined, which then takes it (it queues there, as before declines existed).

Fault knobs (issue 17; paper §4 "fault tolerance", Alg. 1):

- **Adaptive hop timeouts.** Each ``SendStep`` carries ``timeout_s``: how long that executor may
  hold the step before the shell moves on. ``"adaptive"`` (the default) gives ``HOP_FACTOR`` x the
  larger of its beacon-reported expected latency and this planner's own p95 of it
  (``LatencyBook``), within ``[HOP_FLOOR_S, HOP_CAP_S]`` (``HOP_COLD_S`` the floor while this planner
  has seen none of its round trips), doubled for each hop of this step that already timed out (so a
  uniformly slow network still gets through, a hung node costs one hop). A cut hop is a lower bound
  on that executor's round trip, and the book keeps it, so the next limit for it is ``HOP_FACTOR`` x
  longer, and later steps try it after the others. A limit set before this planner saw any round trip
  of the executor is a guess (``SendStep.guessed``): cutting it is no offence, since an honest executor
  queued behind others at a shared model server (three nodes on one Ollama or llama.cpp server) is
  slow for reasons its first beacon reply cannot know (issue 16's frameworks run: one such cut made
  the asking node a suspect at a planner, which then refused all its chains).
  A number fixes it; ``"off"`` leaves only the task deadline (the old behaviour).
- **Re-planning.** When a step fails on every executor and re-plans are left, the driver returns
  ``Replan`` instead of failing the chain: the shell asks the planner model for the rest of the
  chain given the failure and what is done, beacons for the new steps, and feeds ``replanned``.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from symphony.beacon.ranking import Candidate
from symphony.beacon.service import BeaconOutcome
from symphony.pipeline.answer import Answer
from symphony.pipeline.crossvote import Verdict
from symphony.pipeline.dag import Dependencies, ancestors, check_runnable, linear
from symphony.pipeline.extraction import AnswerKind
from symphony.pipeline.tools import reported_tool
from symphony.pipeline.trace import Attempt, StepSpans, StepTrace, reported_ms, reported_temperature
from symphony.pipeline.voting import chain_weight
from symphony.protocol.messages import TaskResult

#: Beacon rounds one sub-task may use: the chain's shared one, then fresh ones for it alone.
MAX_STEP_ROUNDS = 3
#: Adaptive hop timeout: this many times an executor's expected latency, within [floor, cap] seconds.
#: The floor covers an executor seen to answer quickly; the cap bounds a hung hop.
HOP_FACTOR = 4.0
HOP_FLOOR_S = 15.0
#: The floor of a guessed limit (this planner never saw the executor answer, which reports a 1 s guess
#: until its first call): a local model's first call on a CPU, behind a cold prompt cache or other
#: nodes' calls at a shared server, takes tens of seconds; 15 s cut every first call of issue 16's
#: frameworks run (then 30 s and 60 s: their tokens spent for nothing).
HOP_COLD_S = 60.0
HOP_CAP_S = 120.0
#: The error of an attempt cut by its hop timeout (not by the task deadline).
HOP_TIMEOUT_ERROR = "hop timeout"
#: The error an executor declines a step with while every model slot is taken (``TaskService._declines``).
DECLINED_ERROR = "declined: busy"
#: A hop timeout setting: "adaptive", "off" (the task deadline only) or fixed seconds.
HopTimeout = Literal["adaptive", "off"] | float


@dataclass
class LatencyBook:
    """This planner's own observations of its executors' round trips (ms): the last ``keep`` per agent.

    The beacon reply's expected latency is the executor's word; this is the planner's. A hop
    timeout uses the larger, so neither a boastful executor nor a stale estimate cuts a live one short."""

    keep: int = 32
    _seen: dict[str, deque[float]] = field(default_factory=dict)
    _cut: set[str] = field(default_factory=set)  # last hop cut by its timeout: tried after the others

    def observe(self, agent_id: str, rtt_ms: float, *, cut: bool = False) -> None:
        """A round trip of ``agent_id``; ``cut``: a hop cut at ``rtt_ms``, a lower bound on its latency."""
        self._seen.setdefault(agent_id, deque(maxlen=self.keep)).append(rtt_ms)
        if cut:
            self._cut.add(agent_id)
        else:
            self._cut.discard(agent_id)
        if len(self._seen) > 10_000:  # bounded whatever the network's size
            self._cut.discard(oldest := next(iter(self._seen)))
            self._seen.pop(oldest)

    def cut_last(self, ranked: Sequence[Candidate]) -> list[Candidate]:
        """``ranked`` with the executors whose last hop here was cut moved to the end, order kept otherwise:
        a slow or hung executor is not the first try of every later step (it answers again if no one else does)."""
        return sorted(ranked, key=lambda c: c.agent_id in self._cut)

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
    floor = HOP_FLOOR_S if observed_p95_ms > 0 else HOP_COLD_S
    return min(HOP_CAP_S, max(floor, HOP_FACTOR * expected_s) * 2 ** strikes)


@dataclass(frozen=True, kw_only=True)
class SendStep:
    """Send sub-task ``index`` (``question``, with the earlier steps' ``previous`` Q/A pairs) to ``candidate``."""

    index: int
    candidate: Candidate
    question: str
    previous: tuple[tuple[str, str], ...]
    final: bool
    timeout_s: float | None = None  # the hop limit (None: the task deadline)
    guessed: bool = False  # the limit rests on no round trip of this executor seen here: a cut is no offence
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


@dataclass(frozen=True, kw_only=True)
class Wait:
    """Every ready step is ``out`` (sent or beaconing): feed one's result before asking again."""

    out: tuple[int, ...]


ChainAction = SendStep | BeaconStep | StepSettled | Replan | Wait | ChainDone


def attempt_of(candidate: Candidate, result: TaskResult, *, rtt_ms: float) -> Attempt:
    """The trace of ``candidate``'s try: its score and what its result reported."""
    return Attempt(executor=candidate.agent_id, score=round(candidate.score, 4), ok=result.ok, error=result.error,
                   latency_ms=round(result.latency_ms, 1), rtt_ms=rtt_ms, model_ms=round(result.latency_ms, 3),
                   model_wall_ms=reported_ms(result.trace.get("model_wall_ms", 0.0)),
                   tool=reported_tool(result.trace.get("tool")),
                   temperature=reported_temperature(result.trace.get("temperature")))


class StepDriver:
    """Sub-task ``index`` of a chain: its candidates round by round, the answers, and when it is settled.

    Feed ``beaconed`` with a round's outcome before asking ``next_action``."""

    def __init__(self, *, index: int, question: str, previous: tuple[tuple[str, str], ...], final: bool,
                 kind: AnswerKind, deadline_ms: int, redundancy: int, hop_timeout: HopTimeout = "off",
                 latencies: LatencyBook | None = None, revision: int = 0, depends_on: tuple[int, ...] = (),
                 started_at: int = 0) -> None:
        self.index = index
        self._depends_on = depends_on
        self._started_at = started_at  # ms since the chain's origin (``ChainDriver``)
        self._finished_at = started_at
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
        self._declined: deque[Candidate] = deque()  # declined while busy: sent again if no one else is left
        self._insisted: set[str] = set()  # sent again after declining
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
        self._queue = deque(self._latencies.cut_last(outcome.selection.ordered))

    def result(self, candidate: Candidate, result: TaskResult, *, rtt_ms: float) -> None:
        """``candidate`` answered (or failed) after ``rtt_ms``."""
        self._attempts.append(attempt_of(candidate, result, rtt_ms=rtt_ms))
        self._tokens[0] += result.prompt_tokens
        self._tokens[1] += result.completion_tokens
        if not result.ok and result.error.startswith(DECLINED_ERROR) and candidate.agent_id not in self._insisted:
            self._declined.append(candidate)
            return
        if not result.ok:  # a second decline, after we insisted, is a failure like any other
            self._error = result.error
            if result.error.startswith(HOP_TIMEOUT_ERROR):
                self._strikes += 1
                self._latencies.observe(candidate.agent_id, rtt_ms, cut=True)
            return
        self._latencies.observe(candidate.agent_id, rtt_ms)
        self._answers.append((candidate, Answer.of(result.answer, self._kind)))
        self._settled = self._enough()

    @property
    def spent(self) -> tuple[int, int]:
        """Prompt and completion tokens its attempts have cost so far."""
        return self._tokens[0], self._tokens[1]

    def next_action(self, *, now_ms: int, busy: frozenset[str] = frozenset(),
                    elapsed_ms: int = 0) -> SendStep | BeaconStep | StepSettled:
        """The candidate to try next (the best ranked that is not ``busy`` with another step of the
        chain, if any is not), a fresh round after a backoff, or the settled step (``elapsed_ms``:
        ms since the chain's origin, its ``finished_at``)."""
        self._finished_at = elapsed_ms
        if self._settled:
            return self._settle()
        if self._queue and now_ms >= self._deadline_ms:
            self._error = "deadline passed"
            return self._settle()
        self._queue = deque(c for c in self._queue if c.agent_id not in self._tried)
        if not self._queue and self._declined and now_ms < self._deadline_ms:  # everyone left declined: insist
            # on the best ranked of them (past the deadline the step settles below, as it does without declines)
            self._queue.append(self._declined.popleft())
            self._insisted.add(self._queue[0].agent_id)
        if self._queue:
            candidate = next((c for c in self._queue if c.agent_id not in busy), self._queue[0])
            self._queue.remove(candidate)
            self._tried.add(candidate.agent_id)
            observed = self._latencies.p95_ms(candidate.agent_id)
            limit = hop_timeout_s(self._hop_timeout, candidate, strikes=self._strikes, observed_p95_ms=observed)
            return SendStep(index=self.index, candidate=candidate, question=self.question,
                            previous=self._previous, final=self._final, timeout_s=limit,
                            guessed=limit is not None and observed <= 0, revision=self._revision)
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
            executor=chosen.agent_id if chosen else None, checked_by=checked_by, index=self.index,
            depends_on=self._depends_on, started_at=self._started_at, finished_at=self._finished_at,
        )


class ChainDriver:
    """A planner's plan of sub-tasks, each on beacon-chosen executors, each as soon as what it
    depends on has settled (issue #21: independent steps run at the same time).

    Call ``executors_selected`` with the chain's beacon round, then loop on ``next_action`` until
    it returns ``ChainDone``, feeding ``step_result`` after a ``SendStep``, ``step_beaconed``
    after a ``BeaconStep`` and ``replanned`` (or ``replan_failed``) after a ``Replan``. Several
    ``SendStep``/``BeaconStep`` may be out at once (one per ready step); ``Wait`` says every
    ready step is out: feed a result before asking again.

    ``depends_on``: per step, the indices of the earlier steps it needs (``dag``; default: the
    linear chain); a step is sent the results of its ``dag.ancestors``, in index order, so a linear
    chain's step sees every earlier answer as before. ``redundancy``: executors per step (2:
    cross-checked); ``hop_timeout``: see ``hop_timeout_s``; ``replans``: how many failed steps may
    be re-planned before the chain fails. A failed step fails what depends on it, which is the
    final step (every step leads there): without a re-plan left the chain fails at once; with
    one, steps already out finish and their answers count as done for the re-plan.
    ``origin_ms``: the zero of each step's ``started_at`` / ``finished_at`` (default: the first
    ``now_ms`` seen)."""

    def __init__(self, steps: Sequence[str], *, kind: AnswerKind, deadline_ms: int, redundancy: int = 1,
                 hop_timeout: HopTimeout = "off", replans: int = 0, latencies: LatencyBook | None = None,
                 depends_on: Sequence[Sequence[int]] = (), origin_ms: int | None = None) -> None:
        if not steps:
            raise ValueError("a chain needs at least one step")
        self._questions = list(steps)
        self._deps = self._graph(depends_on, len(steps))
        self._kind = kind
        self._deadline_ms = deadline_ms
        self._redundancy = redundancy
        self._hop_timeout = hop_timeout
        self._replans_left = replans
        self._revision = 0
        self._latencies = latencies or LatencyBook()
        self._origin_ms = origin_ms
        self._rounds: list[BeaconOutcome] = []
        self._round_ms = 0.0
        self._started: set[int] = set()
        self._active: dict[int, StepDriver] = {}  # started, not settled
        self._out: dict[int, str] = {}  # step -> the executor it is out to ("" for a beacon round)
        self._answers: dict[int, tuple[str, float]] = {}  # settled steps: answer, score
        self._steps: list[StepTrace] = []
        # step -> its index in the trace: a re-plan renumbers the steps it keeps, but a trace index, once
        # shown, names one step for good (the dashboard draws the graph by it)
        self._traced: list[int] = list(range(len(steps)))
        self._failures: list[tuple[StepTrace, frozenset[str]]] = []  # awaiting a re-plan
        self._replan: Replan | None = None
        self._done: ChainDone | None = None
        self._abandoned = [0, 0]  # what steps cancelled while out cost anyway (``step_abandoned``)

    @staticmethod
    def _graph(depends_on: Sequence[Sequence[int]], count: int) -> Dependencies:
        deps = tuple(tuple(d) for d in depends_on) or linear(count)
        if len(deps) != count:
            raise ValueError(f"one depends_on entry per step: {len(deps)} for {count} steps")
        check_runnable(deps)
        return deps

    @property
    def questions(self) -> tuple[str, ...]:
        """The chain's steps as planned now (re-planning replaces those not yet answered)."""
        return tuple(self._questions)

    @property
    def depends_on(self) -> Dependencies:
        """What each step (of ``questions``) depends on."""
        return self._deps

    def executors_selected(self, rounds: Sequence[BeaconOutcome], *, waited_ms: float) -> None:
        """The chain's one beacon round (one outcome per step) returned after ``waited_ms``."""
        if len(rounds) != len(self._questions):
            raise ValueError(f"one beacon outcome per step: {len(rounds)} for {len(self._questions)} steps")
        self._rounds = list(rounds)
        self._round_ms = waited_ms

    def step_result(self, candidate: Candidate, result: TaskResult, *, rtt_ms: float, index: int | None = None) -> None:
        """Step ``index``'s ``candidate`` returned ``result`` after ``rtt_ms`` (``index`` may be
        left out while only one step is out)."""
        self._active[self._returned(index)].result(candidate, result, rtt_ms=rtt_ms)

    def step_beaconed(self, outcome: BeaconOutcome, *, waited_ms: float, index: int | None = None) -> None:
        """Step ``index``'s fresh beacon round returned after ``waited_ms`` (``index`` as in ``step_result``)."""
        self._active[self._returned(index)].beaconed(outcome, waited_ms=waited_ms, charged=True)

    def step_abandoned(self, index: int, *, prompt_tokens: int, completion_tokens: int) -> None:
        """Step ``index``'s send was cancelled while out (the chain ended or was stopped); what its
        executor spends anyway (the shell's estimate) still counts in ``spent``."""
        self._out.pop(index, None)
        self._abandoned[0] += prompt_tokens
        self._abandoned[1] += completion_tokens

    def spent(self) -> tuple[int, int]:
        """Every token the chain's steps have cost so far: settled steps, steps still open and sends
        abandoned. It can exceed ``ChainDone``'s, which counts the settled steps its trace shows."""
        open_steps = [step.spent for step in self._active.values()]
        return (sum(s.prompt_tokens for s in self._steps) + sum(p for p, _ in open_steps) + self._abandoned[0],
                sum(s.completion_tokens for s in self._steps) + sum(c for _, c in open_steps) + self._abandoned[1])

    def _returned(self, index: int | None) -> int:
        if index is None:
            if len(self._out) != 1:
                raise RuntimeError(f"say which step returned: {len(self._out)} are out")
            index = next(iter(self._out))
        if self._out.pop(index, None) is None:
            raise RuntimeError(f"step {index} is not out")
        return index

    def replanned(self, steps: Sequence[str], rounds: Sequence[BeaconOutcome], *, waited_ms: float,
                  depends_on: Sequence[Sequence[int]] = ()) -> None:
        """The new ``steps`` (with their beacon round, one outcome each, and their own graph,
        default linear) replace every step not answered. The answered steps keep their order and
        come first; a new step that depends on none of the new ones depends on the answered steps
        nothing else needed, so it sees every answer so far, as a re-planned linear chain did."""
        if self._replan is None:
            raise RuntimeError("replanned without a Replan")
        if not steps or len(rounds) != len(steps):
            raise ValueError(f"a re-plan needs steps and one beacon outcome each: {len(rounds)} for {len(steps)}")
        new_deps = self._graph(depends_on, len(steps))
        kept = sorted(self._answers)
        position = {old: n for n, old in enumerate(kept)}
        kept_deps = [tuple(position[d] for d in self._deps[old]) for old in kept]
        needed = {d for needs in kept_deps for d in needs}
        sinks = tuple(n for n in range(len(kept)) if n not in needed)
        shifted = [tuple(len(kept) + d for d in needs) if needs else sinks for needs in new_deps]
        self._deps = self._graph([*kept_deps, *shifted], len(kept) + len(steps))
        self._questions = [self._questions[old] for old in kept] + list(steps)
        kept_ids = [self._traced[old] for old in kept]
        fresh = 1 + max([*kept_ids, *(s.index for s in self._steps)], default=-1)
        self._traced = kept_ids + list(range(fresh, fresh + len(steps)))
        self._rounds = [self._rounds[old] for old in kept] + list(rounds)
        self._answers = {position[old]: value for old, value in self._answers.items()}
        self._started = set(range(len(kept)))
        self._round_ms = waited_ms
        self._revision += 1
        self._failures.clear()
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
        if self._origin_ms is None:
            self._origin_ms = now_ms
        if not self._failures:  # a pending re-plan replaces the steps not started: start none
            self._start_ready(now_ms)
        for index in sorted(self._active):
            if index not in self._out:
                return self._advance(index, now_ms)
        if self._out:
            return Wait(out=tuple(sorted(self._out)))
        if self._failures:
            return self._ask_replan()
        raise RuntimeError("no step is ready, out or failed: the graph cannot run")  # check_runnable forbids it

    def _start_ready(self, now_ms: int) -> None:
        """Start every step whose dependencies have all been answered."""
        if not self._rounds:
            raise RuntimeError("executors_selected must come first")
        for index, needs in enumerate(self._deps):
            if index in self._started or not all(d in self._answers for d in needs):
                continue
            self._started.add(index)
            previous = tuple((self._questions[d], self._answers[d][0]) for d in ancestors(self._deps, index))
            step = StepDriver(index=index, question=self._questions[index], previous=previous,
                              final=index == len(self._questions) - 1, kind=self._kind,
                              deadline_ms=self._deadline_ms, redundancy=self._redundancy,
                              hop_timeout=self._hop_timeout, latencies=self._latencies, revision=self._revision,
                              depends_on=needs, started_at=now_ms - (self._origin_ms or 0))
            first_ms, self._round_ms = self._round_ms, 0.0  # a round's wait counts for the first step it starts
            step.beaconed(self._rounds[index], waited_ms=first_ms, charged=bool(first_ms))
            self._active[index] = step

    def _advance(self, index: int, now_ms: int) -> SendStep | BeaconStep | StepSettled:
        """Step ``index``'s next decision; two steps out at once prefer different executors."""
        step = self._active[index]
        decision = step.next_action(now_ms=now_ms, busy=frozenset(self._out.values()),
                                    elapsed_ms=now_ms - (self._origin_ms or 0))
        if isinstance(decision, StepSettled):
            del self._active[index]
            self._step_ended(decision.step, tried=step.tried, now_ms=now_ms)
        else:
            self._out[index] = decision.candidate.agent_id if isinstance(decision, SendStep) else ""
        return decision

    def _step_ended(self, step: StepTrace, *, tried: frozenset[str], now_ms: int) -> None:
        self._steps.append(replace(step, index=self._traced[step.index],
                                   depends_on=tuple(self._traced[d] for d in step.depends_on)))
        if step.ok:
            self._answers[step.index] = (step.answer, step.score)
            if step.index == len(self._questions) - 1:  # every step leads to the last: all are answered
                scores = [score for _, (_, score) in sorted(self._answers.items())]
                self._done = ChainDone(ok=True, answer=step.answer, weight=chain_weight(scores), error="",
                                       steps=tuple(self._steps))
        elif self._failures or (self._replans_left > 0 and now_ms < self._deadline_ms):
            if not self._failures:  # one re-plan covers every step that fails while it is pending
                self._replans_left -= 1
            self._failures.append((step, tried))
        else:
            self._fail(f"step {step.index + 1} failed: {step.error}")

    def _ask_replan(self) -> Replan:
        """Every step out has returned: re-plan around the first failure, excluding whoever failed."""
        step = self._failures[0][0]
        done = tuple((self._questions[i], answer) for i, (answer, _) in sorted(self._answers.items()))
        self._replan = Replan(index=step.index, failed=step.question, error=step.error, done=done,
                              exclude=frozenset().union(*(tried for _, tried in self._failures)))
        return self._replan

    def _fail(self, error: str) -> None:
        self._done = ChainDone(ok=False, answer="", weight=0.0, error=error, steps=tuple(self._steps))


__all__ = [
    "DECLINED_ERROR",
    "HOP_CAP_S",
    "HOP_COLD_S",
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
    "Wait",
    "attempt_of",
    "hop_timeout_s",
]
