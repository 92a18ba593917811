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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from symphony.pipeline.extraction import (
    AnswerKind,
    answers_equivalent,
    normalize_answer,
)


@dataclass(frozen=True)
class Verdict:
    """``agent_id`` agreed (True) or disagreed with the evidence, in ``role`` ("plan"/"execute")."""

    agent_id: str
    agreed: bool
    role: str


def cross_vote(chains: Sequence[dict[str, Any]], winner: str | None, kind: AnswerKind) -> list[Verdict]:
    """Verdicts for the planners and executors of ``chains`` (trace dicts of ``TaskService.ask``)."""
    good = [c for c in chains if c.get("ok")]
    if winner is None or len(good) < 2:
        return []
    agrees = [answers_equivalent(str(c.get("answer", "")), winner, kind) for c in good]
    consensus = sum(agrees) * 2 > len(good)
    verdicts = [Verdict(str(c["planner"]), agreed, "plan") for c, agreed in zip(good, agrees, strict=True)
                if consensus]
    steps = [(s, i == len(chain_steps) - 1) for c in good for chain_steps in [_steps(c)]
             for i, s in enumerate(chain_steps)]
    pooled: defaultdict[str, list[str]] = defaultdict(list)
    for (question, answer, _), _ in steps:
        pooled[question].append(normalize_answer(answer, kind))
    for (question, answer, executor), final in steps:
        top, count = Counter(pooled[question]).most_common(1)[0]
        if len(pooled[question]) >= 2 and count * 2 > len(pooled[question]):
            verdicts.append(Verdict(executor, normalize_answer(answer, kind) == top, "execute"))
        elif final and consensus:
            verdicts.append(Verdict(executor, answers_equivalent(answer, winner, kind), "execute"))
    return verdicts


def _steps(chain: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(normalised question, answer, executor) of a chain's successful steps; a planner's trace is
    untrusted input, so anything not shaped as expected is skipped."""
    trace = chain.get("trace")
    steps = trace.get("steps", []) if isinstance(trace, dict) else []
    return [(" ".join(str(s.get("question", "")).lower().split()), str(s.get("answer", "")), s["executor"])
            for s in steps if isinstance(s, dict) and s.get("ok") and isinstance(s.get("executor"), str)]
