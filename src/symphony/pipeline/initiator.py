"""The initiator's decisions, sans I/O: which planner next, the checks, the vote, the verdicts, the trace.

The initiator role (``service.TaskService.ask``) is a thin shell around ``InitiatorDriver``: the
shell beacons for planners and sends the chains; the driver, fed what came back, decides:

1. ``planners_found``: whether a planner beacon round is enough to start (some candidate, or the
   deadline too near to try again);
2. ``first_planners``: the top candidates, one per chain slot launched at once (``cots``, or with
   adaptive chains ``first_cots``); the rest queue as backups;
3. ``chain_returned``: record a planner's answer; a failed chain's slot moves to the next backup
   planner while the deadline allows (shared by all slots, each planner used once);
   ``plan_limit_s``: how long a planner may hold its chain before its slot moves on (adaptive
   planner hop, below);
4. ``check_consistency``: a chain whose answer contradicts its own last step is failed and its
   planner judged (``crossvote.ChainEvidence.consistent``);
   ``slot_finished``: a slot is done (its chain and its check): adaptive chains (``adaptive``) say
   whether to launch the next slot, and on which planner (a backup, else one planning again);
5. ``code_to_check`` / ``chain_checked``: for a code question that states examples, each good chain's
   code is run on them as it returns (by the shell, in the sandbox) and only the chains with the most
   examples passed go on to vote (``verification``: verification before the vote);
   ``vote``: the weighted majority over the good chains (eqs. 2-3), each weight scaled by how far
   this node trusts the planner that reported it;
6. ``cross_verdicts``: every planner and executor judged against the winner (``crossvote.judge``);
7. ``outcomes``: those verdicts grouped per chain, for its planner (``feedback``: outcome feedback);
8. ``trace``: the question's ``QuestionTrace``, with what ran degraded: each chain's own report
   and chains that collapsed into the same solve (``collapsed_chains``).

Each chain's answer is normalised once, when it arrives (``ChainEvidence``), for all of 4-7.

Adaptive planner hop (issue 17; like ``chain.hop_timeout_s`` one hop up): a planner gets
``PLAN_FACTOR`` x the largest of its own p95 chain round trip, the p95 of all recent chains and the
fastest chain of this question so far, at least ``PLAN_FLOOR_S``; with nothing observed yet, half
the time left to the deadline (``PLAN_SHARE``), so a hung planner still leaves a backup planner the
other half, and no limit while no backup planner is queued (a cut would hand the other half to
nobody: the chain would only fail early, with the time it could have used left over). The shell
re-asks ``plan_limit_s`` whenever a chain comes back, so the first answer of a question tightens
its siblings' limits: a hung planner costs a few chain-lengths, not the deadline.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from statistics import fmean
from typing import Any

from symphony.beacon.ranking import Candidate
from symphony.beacon.service import BeaconOutcome
from symphony.pipeline.adaptive import AGREE, FIRST_COTS, AdaptiveRecord, Stop, next_move, rule_for
from symphony.pipeline.answer import Answer
from symphony.pipeline.chain import HopTimeout, LatencyBook
from symphony.pipeline.crossvote import ChainEvidence, Verdict, judge
from symphony.pipeline.extraction import AnswerKind
from symphony.pipeline.feedback import ChainOutcome
from symphony.pipeline.trace import BeaconCost, ChainRecord, CodeCheck, Degraded, QuestionSpans, QuestionTrace
from symphony.pipeline.verification import Example, examples_in, survivors
from symphony.pipeline.voting import Ballot, VoteResult, largest_agreement, weighted_vote

#: Beacon rounds for planners before a question fails with ``no_agents`` (peers churning, partition).
PLANNER_ROUNDS = 3
#: No new planner round, and no backup chain, is started this close to the deadline.
PLANNER_ROUND_MARGIN_MS = 1000
INCONSISTENT = "chain answer contradicts its own trace"
#: Adaptive planner hop: this many times the observed chain round trip, at least the floor (seconds);
#: with nothing observed, this share of the time left. A chain is several model calls and may lose an
#: executor hop (``chain.HOP_FLOOR_S``; ``HOP_COLD_S`` on first contact) on the way, hence a higher floor
#: than an executor's.
PLAN_FACTOR = 4.0
PLAN_FLOOR_S = 30.0
PLAN_SHARE = 0.5
#: The error of a chain cut by its planner limit (not by the task deadline).
PLAN_TIMEOUT_ERROR = "plan timeout"
#: ``LatencyBook`` key of every planner's chains together.
ALL_PLANNERS = "*"


def plan_timeout_s(setting: HopTimeout, *, observed_ms: float, remaining_s: float,
                   backup: bool = True) -> float | None:
    """How long a planner may hold its chain (None: until the deadline); see the module docstring.

    ``observed_ms``: the chain round trip to scale (0: nothing observed yet); ``backup``: whether a
    backup planner is queued to take the time a cut leaves."""
    if setting == "off":
        return None
    if not isinstance(setting, str):
        return float(setting)
    if observed_ms <= 0:
        return PLAN_SHARE * max(0.0, remaining_s) if backup else None
    return max(PLAN_FLOOR_S, PLAN_FACTOR * observed_ms / 1000)


class InitiatorDriver:
    """One question's chains from planner beacon to trace (steps 1-7 of the module docstring)."""

    def __init__(self, *, task_id: str, question: str, kind: AnswerKind, cots: int, deadline_ms: int,
                 plan_timeout: HopTimeout = "off", chain_latencies: LatencyBook | None = None,
                 adaptive: bool = False, first_cots: int = FIRST_COTS, agree: int = AGREE,
                 checkable: bool = True) -> None:
        """``cots``: the most chains; ``adaptive``: start ``first_cots`` and grow while fewer than ``agree``
        chains agree (``pipeline.adaptive``); ``checkable``: code chains can be checked on their examples."""
        self.task_id = task_id
        self.question = question
        self.kind = kind
        self._cots = cots
        self.deadline_ms = deadline_ms
        self._beacon: BeaconOutcome | None = None
        self._queue: list[Candidate] = []
        self._records: list[ChainRecord] = []
        self._evidence: dict[int, ChainEvidence] = {}  # by position in _records, ok chains only
        self._vote: VoteResult | None = None
        self._plan_timeout = plan_timeout
        self._chains = chain_latencies or LatencyBook()  # ok chains' round trips (ms), shared across questions
        self._fastest_ms = 0.0  # this question's fastest ok chain so far
        self._examples = examples_in(question) if kind == "code" else ()
        self._passed: dict[str, int | None] = {}  # examples each checked chain passed (by chain id)
        self._degraded: list[Degraded] = []  # what this node itself ran degraded (a check it could not run)
        self._checkable = checkable
        self._rule, self._rule_detail = rule_for(kind, adaptive=adaptive, examples=len(self._examples),
                                                 checkable=checkable)
        self._first = cots if self._rule == "off" else max(1, min(first_cots, cots))
        self._agree = agree
        self._ordered: list[Candidate] = []
        self._launched = 0  # chain slots launched
        self._finished = 0  # of them, done (chain and check)
        self._stopped: Stop | None = None
        self._asks: Counter[str] = Counter()  # chains handed to each planner (first, backup or later slots)
        self._chain_ids: dict[tuple[int, str], str] = {}  # (slot, planner) -> the chain's task ID

    def planners_found(self, outcome: BeaconOutcome, *, now_ms: int) -> bool:
        """Take a planner round; True when it is enough to start (or no time is left to retry)."""
        self._beacon = outcome
        return bool(outcome.selection.ordered) or now_ms >= self.deadline_ms - PLANNER_ROUND_MARGIN_MS

    def first_planners(self) -> list[Candidate]:
        """The planners of the chain slots launched at once (empty: none answered); the rest become
        backups (and, with adaptive chains, the planners of later slots)."""
        self._ordered = list(self._beacon.selection.ordered) if self._beacon else []
        self._queue = self._ordered[self._first:]
        first = [self._hand_out(slot, c) for slot, c in enumerate(self._ordered[: self._first])]
        self._launched = len(first)
        if self._rule == "off" and first:
            self._stopped = "off"
        return first

    def slot_finished(self, *, now_ms: int) -> list[tuple[int, Candidate]]:
        """A chain slot is done (its last planner returned, its code checked): the slot to launch next
        and its planner (``pipeline.adaptive.next_move``), or none. A later slot takes the next backup
        planner, else the planner ranked ``slot`` places down (mod their count) plans another chain."""
        self._finished += 1
        if self._stopped is not None:
            return []
        move = next_move(rule=self._rule, launched=self._launched, running=self._launched - self._finished,
                         most=self._cots, agreeing=self._agreeing(), agree=self._agree, passed=self._passed_all(),
                         time_left_ms=self.deadline_ms - now_ms, chain_ms=self._chains.p95_ms(ALL_PLANNERS))
        if move == "wait":
            return []
        if move != "launch":
            self._stopped = move
            return []
        slot = self._launched
        self._launched += 1
        planner = self._queue.pop(0) if self._queue else self._ordered[slot % len(self._ordered)]
        return [(slot, self._hand_out(slot, planner))]

    def _hand_out(self, slot: int, planner: Candidate) -> Candidate:
        """Give chain slot ``slot`` to ``planner`` under its chain task ID (``chain_task_id``)."""
        repeat = self._asks[planner.agent_id]
        self._asks[planner.agent_id] += 1
        prefix = f"{self.task_id}/r{repeat}" if repeat else self.task_id
        self._chain_ids[(slot, planner.agent_id)] = f"{prefix}/c{slot}"
        return planner

    def chain_task_id(self, slot: int, planner: str) -> str:
        """The task ID ``planner`` gets for chain slot ``slot``: ``{task}/c{slot}``, or ``{task}/r{n}/c{slot}``
        for its n-th further chain of this question. A planner serves one chain per question's task ID and
        question (``service.TaskService._serve``: durable across re-asks); a planner asked again must be
        asked for a new chain. The slot stays last: it picks the chain's solving style (``tools.solving_style``)."""
        return self._chain_ids[(slot, planner)]

    def _agreeing(self) -> int:
        """The most returned (self-consistent) chains that give one answer."""
        return largest_agreement((e.answer for e in self._evidence.values() if e.consistent), self.kind)

    def _passed_all(self) -> bool:
        total = len(self._examples)
        return bool(total) and any(p == total for p in self._passed.values())

    def chain_returned(self, record: ChainRecord, *, now_ms: int) -> Candidate | None:
        """Record a planner's reply; for a failed chain, the backup planner to ask next (None: give up)."""
        self._records.append(record)
        if record.result.ok:
            self._observe(record)
            self._evidence[len(self._records) - 1] = ChainEvidence.of(
                planner=record.planner, answer=record.result.answer, trace=record.result.trace, kind=self.kind)
            return None
        if self._queue and now_ms < self.deadline_ms - PLANNER_ROUND_MARGIN_MS:
            return self._hand_out(record.index, self._queue.pop(0))
        return None

    def plan_limit_s(self, planner: str, *, now_ms: int) -> float | None:
        """How long ``planner`` may hold its chain, from when it was asked (None: the deadline only)."""
        observed = max(self._chains.p95_ms(planner), self._chains.p95_ms(ALL_PLANNERS), self._fastest_ms)
        return plan_timeout_s(self._plan_timeout, observed_ms=observed, remaining_s=(self.deadline_ms - now_ms) / 1000,
                              backup=bool(self._queue))

    def _observe(self, record: ChainRecord) -> None:
        """An ok chain's round trip: for its planner, for all planners, and for this question's siblings."""
        self._chains.observe(record.planner, record.rtt_ms)
        self._chains.observe(ALL_PLANNERS, record.rtt_ms)
        self._fastest_ms = min(self._fastest_ms or record.rtt_ms, record.rtt_ms)

    def check_consistency(self) -> list[Verdict]:
        """Fail each chain whose answer is not its own last step's; the verdicts against their planners."""
        verdicts = []
        for position, evidence in list(self._evidence.items()):
            if not evidence.consistent:  # a planner that misreports its own chain
                record = self._records[position]
                result = record.result.model_copy(update={"ok": False, "error": INCONSISTENT})
                self._records[position] = replace(record, result=result)
                del self._evidence[position]
                verdicts.append(Verdict(record.planner, False, "plan"))
        return verdicts

    def code_to_check(self, record: ChainRecord) -> str | None:
        """The code of a just returned chain to run on ``examples``: None unless the question asks for
        code and states examples, this node can check it (``checkable``), and the chain answered consistently."""
        if not self._examples or not self._checkable or not record.result.ok:
            return None
        position = max(p for p, r in enumerate(self._records) if r is record)
        evidence = self._evidence.get(position)
        return evidence.answer.raw if evidence is not None and evidence.consistent else None

    @property
    def examples(self) -> tuple[Example, ...]:
        """The examples the question states (``verification.examples_in``; none unless it asks for code)."""
        return self._examples

    def chain_checked(self, record: ChainRecord, passed: int | None) -> None:
        """The examples ``record``'s code passed (None: its check gave no report); after every chain,
        only the chains passing the most (``verification.survivors``) vote."""
        self._passed[f"c{record.index}"] = passed

    def check_skipped(self, why: str) -> None:
        """The question states examples but this node could not check the chains' code against them."""
        self._degraded.append(Degraded(kind="check_skipped", detail=why))

    def vote(self, *, trust: Callable[[str], float]) -> VoteResult:
        """The weighted vote over the good chains (those whose code passed the most examples, after
        ``checked``); ``trust(planner)`` scales each reported weight."""
        voting = self._voting()
        chains = {f"c{self._records[p].index}": p for p in self._evidence}
        ballots = [Ballot(chain, self._evidence[p].answer, self._weight(self._records[p], trust))
                   for chain, p in chains.items() if voting is None or chain in voting]
        self._vote = weighted_vote(ballots, self.kind)
        return self._vote

    def _voting(self) -> set[str] | None:
        """The chains left to vote after the check (``verification.survivors``); None: none was checked."""
        return survivors(self._passed) if self._passed else None

    def cross_verdicts(self) -> list[Verdict]:
        """Each planner's and executor's agreement with the vote (after ``vote``)."""
        winner = self._voted().answer
        return judge(list(self._evidence.values()), None if winner is None else Answer.of(winner, self.kind))

    def outcomes(self, verdicts: Sequence[Verdict]) -> list[ChainOutcome]:
        """``cross_verdicts`` per chain, for its planner to learn from and pass on to its executors.

        A planner's ``agreed`` is its verdict (None: not judged); an executor's is the share of its
        verdicts in this question that agreed, told once, through the first chain (by index) it served,
        so an executor used by several chains learns once per question."""
        planners = {v.agent_id: float(v.agreed) for v in verdicts if v.role == "plan"}
        steps: defaultdict[str, list[bool]] = defaultdict(list)
        for verdict in verdicts:
            if verdict.role == "execute":
                steps[verdict.agent_id].append(verdict.agreed)
        told: set[str] = set()
        outcomes = []
        for position, evidence in sorted(self._evidence.items(), key=lambda pe: self._records[pe[0]].index):
            record = self._records[position]
            executors = []
            for step in evidence.steps:
                if step.executor in steps and step.executor not in told:
                    told.add(step.executor)
                    executors.append((step.executor, fmean(steps[step.executor])))
            agreed = planners.get(record.planner)
            if agreed is not None or executors:
                outcomes.append(ChainOutcome(task_id=record.result.task_id, planner=record.planner,
                                             agreed=agreed, executors=tuple(executors)))
        return outcomes

    def failure(self, *, now_ms: int) -> str | None:
        """Why the question failed (``TaskFailed.reason``), or None when the vote has a winner."""
        if self._voted().winner is not None:
            return None
        return "timeout" if now_ms >= self.deadline_ms else "no_answer"

    def trace(self, *, latency_ms: float, spans: QuestionSpans) -> QuestionTrace:
        """The question's trace (after ``vote``)."""
        outcome = self._beacon
        cost = BeaconCost.of(outcome) if outcome else BeaconCost(contacted=0, replied=0, elapsed_ms=0.0)
        chains = tuple(sorted(self._records, key=lambda r: r.index))
        reported = [d for r in chains for d in _reported_degradations(r)]
        good = [self._records[p] for p in sorted(self._evidence)]
        collapsed = collapsed_chains(good)
        checks = tuple(CodeCheck(chain=chain, passed=passed, total=len(self._examples),
                                 voted=chain in (self._voting() or ())) for chain, passed in sorted(self._passed.items()))
        return QuestionTrace(task_id=self.task_id, question=self.question, answer_kind=self.kind, vote=self._voted(),
                             chains=chains, planner_beacon=cost, latency_ms=latency_ms, spans=spans,
                             degraded=(*reported, *((collapsed,) if collapsed else ()), *self._degraded),
                             checks=checks, adaptive=self._adaptive_record())

    def _adaptive_record(self) -> AdaptiveRecord:
        return AdaptiveRecord(rule=self._rule, launched=self._launched, first=self._first, most=self._cots,
                              agree=self._agree, stopped=self._stopped, detail=self._rule_detail)

    @property
    def records(self) -> Sequence[ChainRecord]:
        return tuple(self._records)

    def _voted(self) -> VoteResult:
        if self._vote is None:
            raise RuntimeError("vote must come first")
        return self._vote

    @staticmethod
    def _weight(record: ChainRecord, trust: Callable[[str], float]) -> float:
        """A planner reports its own chain weight; scale it by how far we trust that planner."""
        return max(0.0, float(record.result.weight)) * trust(record.planner)


def _reported_degradations(record: ChainRecord) -> list[Degraded]:
    """The degradations a planner reported in its chain trace (entries of unknown kinds are dropped)."""
    entries = record.result.trace.get("degraded")
    if not isinstance(entries, list):
        return []
    return [d for e in entries if (d := Degraded.from_wire(e, chain=record.index)) is not None]


def _how(step: dict[str, Any]) -> str | None:
    """How a step was answered: "program" or "text" by its answering attempt, or None when that attempt
    sampled (a temperature above 0: an independent draw, no copy of another chain's)."""
    attempts = [a for a in step.get("attempts", ()) if isinstance(a, dict) and a.get("ok")]
    last = attempts[-1] if attempts else {}
    temperature = last.get("temperature") or 0
    if isinstance(temperature, int | float) and temperature > 0:
        return None
    tool = last.get("tool")
    return "program" if isinstance(tool, dict) and tool.get("ok") else "text"


def _solve(record: ChainRecord) -> tuple[tuple[Any, ...], ...]:
    """A chain's step questions, executors, step answers and how each was answered, as its planner reported them."""
    steps = record.result.trace.get("steps")
    rows = [s for s in steps if isinstance(s, dict)] if isinstance(steps, list) else []

    def column(key: str) -> tuple[str, ...]:
        return tuple(str(s.get(key, "")) for s in rows)

    return column("question"), column("executor"), column("answer"), tuple(_how(s) for s in rows)


def collapsed_chains(records: Sequence[ChainRecord]) -> Degraded | None:
    """The chains (of those that answered) that were the same solve as an earlier one: the same step
    questions, each answered the same way (program or text) without sampling, and by the same executors
    or with the same step answers. The vote gains nothing from them. Chains that differ in solving style
    or sample their steps (``tools.solving_temperature``) are independent even when they agree: that
    agreement is what adaptive chains stop on."""
    seen: list[tuple[ChainRecord, tuple[tuple[Any, ...], ...]]] = []
    same: set[int] = set()
    for record in records:
        questions, executors, answers, hows = solve = _solve(record)
        for other, (o_questions, o_executors, o_answers, o_hows) in seen:
            if (questions and questions == o_questions and hows == o_hows and None not in hows
                    and (executors == o_executors or answers == o_answers)):
                same |= {other.index, record.index}
        seen.append((record, solve))
    if not same:
        return None
    names = ", ".join(f"c{i}" for i in sorted(same))
    return Degraded(kind="chains_collapsed", detail=f"chains {names} were the same solve: same steps, and the "
                                                    "same executors or answers")


__all__ = ["INCONSISTENT", "PLANNER_ROUNDS", "PLANNER_ROUND_MARGIN_MS", "PLAN_TIMEOUT_ERROR", "InitiatorDriver",
           "collapsed_chains", "plan_timeout_s"]
