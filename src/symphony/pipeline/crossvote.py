"""Cross-voting: turn one question's chains into per-agent verdicts for the reputation table.

After the weighted vote (eqs. 2-3) the initiator knows which answer won. Every agent that
contributed to a chain is judged against the evidence closest to what it did:

- a **planner** answered for its whole chain: it agrees iff its chain's answer is equivalent
  to the winner;
- an **executor** answered one sub-task. Chains often ask the same sub-question (the same
  plan from similar planners); steps with the same normalised question across chains are
  pooled, and when a strict majority of their answers agree, each executor is judged against
  that majority. Otherwise only the final step can be judged, against the winner.

No verdict is given when fewer than two chains answered (one chain cannot be cross-checked), and
none against the winner unless a strict majority of the chains reached it: with real models honest
chains often disagree (three chains, three answers), and the weighted vote's pick among them is no
evidence that the others lied. Measured: without this rule, a GSM8K run of three honest Qwen-0.5B
agents blacklisted its own agents 128 times in 10 questions.
A limit (see docs/architecture.md, robustness): the steps come from the planner's trace, so a
lying planner could frame an executor; the planner's own verdict then still catches the lie
whenever its chain answer loses.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from symphony.pipeline.answer import Answer
from symphony.pipeline.extraction import AnswerKind


@dataclass(frozen=True)
class Verdict:
    """``agent_id`` agreed (True) or disagreed with the evidence, in ``role`` ("plan"/"execute")."""

    agent_id: str
    agreed: bool
    role: str


@dataclass(frozen=True, kw_only=True)
class StepEvidence:
    """A successful step a planner reports: its question (collapsed, lowercased), answer and executor."""

    question: str
    answer: Answer
    executor: str


@dataclass(frozen=True, kw_only=True)
class ChainEvidence:
    """What a chain that returned an answer shows: its planner, its answer and the steps in its trace.

    ``last`` is the answer of the trace's last step, successful or not (None when the trace shows
    no such string): a planner's answer must be its chain's last step answer (``consistent``)."""

    planner: str
    answer: Answer
    steps: tuple[StepEvidence, ...]
    last: Answer | None

    @classmethod
    def of(cls, *, planner: str, answer: str, trace: object, kind: AnswerKind) -> ChainEvidence:
        """Read a planner's reported ``trace`` (untrusted: anything not shaped as expected is skipped)."""
        steps = trace.get("steps") if isinstance(trace, dict) else None
        steps = steps if isinstance(steps, list) else []
        last = steps[-1].get("answer") if steps and isinstance(steps[-1], dict) else None
        return cls(planner=planner, answer=Answer.of(answer, kind),
                   steps=tuple(_step(s, kind) for s in steps
                               if isinstance(s, dict) and s.get("ok") and isinstance(s.get("executor"), str)),
                   last=Answer.of(last, kind) if isinstance(last, str) else None)

    @property
    def consistent(self) -> bool:
        """The reported answer is the chain's last step answer (when the trace shows one)."""
        return self.last is None or self.last.same(self.answer)


def _step(step: dict[str, Any], kind: AnswerKind) -> StepEvidence:
    return StepEvidence(question=" ".join(str(step.get("question", "")).lower().split()),
                        answer=Answer.of(str(step.get("answer", "")), kind), executor=step["executor"])


def judge(good: Sequence[ChainEvidence], winner: Answer | None) -> list[Verdict]:
    """Verdicts for the planners and executors of the chains that returned an answer (rules above)."""
    if winner is None or len(good) < 2:
        return []
    agrees = [c.answer.equivalent(winner) for c in good]
    consensus = sum(agrees) * 2 > len(good)
    verdicts = [Verdict(c.planner, agreed, "plan") for c, agreed in zip(good, agrees, strict=True) if consensus]
    steps = [(s, i == len(c.steps) - 1) for c in good for i, s in enumerate(c.steps)]
    pooled: defaultdict[str, list[str]] = defaultdict(list)
    for step, _ in steps:
        pooled[step.question].append(step.answer.key)
    for step, final in steps:
        top, count = Counter(pooled[step.question]).most_common(1)[0]
        if len(pooled[step.question]) >= 2 and count * 2 > len(pooled[step.question]):
            verdicts.append(Verdict(step.executor, step.answer.key == top, "execute"))
        elif final and consensus:
            verdicts.append(Verdict(step.executor, step.answer.equivalent(winner), "execute"))
    return verdicts


def cross_vote(chains: Sequence[Mapping[str, Any]], winner: str | None, kind: AnswerKind) -> list[Verdict]:
    """Verdicts for the planners and executors of ``chains`` (the chain entries of a question's trace)."""
    good = [ChainEvidence.of(planner=str(c["planner"]), answer=str(c.get("answer", "")), trace=c.get("trace"),
                             kind=kind) for c in chains if c.get("ok")]
    return judge(good, None if winner is None else Answer.of(winner, kind))


__all__ = ["ChainEvidence", "StepEvidence", "Verdict", "cross_vote", "judge"]
