"""Adaptive chains: sample another chain only while the chains so far do not settle the question.

Adaptive consistency (Aggarwal et al. 2023, "Let's Sample Step by Step"): instead of launching
``cots`` chains on every question, the initiator starts ``first`` of them and launches the next
chain slot only when every launched chain has returned and the question is still open, up to
``most`` chains. The issue-16 budget (tokens <= 4x direct) pays for extra chains only where the
first ones disagree.

When a question is settled depends on its answer kind (``rule_for``):

- ``"answers"`` (numbers, options, text...): ``agree`` returned chains give the same answer, by
  the vote's own pooling (``voting.largest_agreement``); the weighted vote then runs over every
  returned chain, as without adaptation.
- ``"examples"`` (code with stated examples, checked in the sandbox): a returned chain's code passes
  all of them (``verification``).
- ``"off"``: adaptation off (asked so, or a code question whose chains cannot be checked): every
  slot at once, as before; the trace's ``adaptive`` record says why.

Chains already running when the question settles are not cancelled: a cut planner's executors keep
spending tokens that would then go unreported; the rule only stops new launches. A new chain is not
launched when the time left is less than the observed chain round trip (``"deadline"``).

Pure code: ``next_move`` decides from counts; the initiator driver keeps the counts and the shell
(``service``) launches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from symphony.pipeline.extraction import AnswerKind

#: The defaults every face shares (``service.AskOptions``, the REST/OpenAI ``symphony`` options, the
#: accuracy bench): one place to change them.
ADAPTIVE: Final = True
FIRST_COTS: Final = 2
AGREE: Final = 2

Rule = Literal["answers", "examples", "off"]
Stop = Literal["agreed", "passed", "max_chains", "deadline", "off"]
Move = Literal["launch", "wait"] | Stop


def rule_for(kind: AnswerKind, *, adaptive: bool, examples: int, checkable: bool) -> tuple[Rule, str]:
    """Which stop rule a question gets, and when it is ``"off"``, why (for the trace)."""
    if not adaptive:
        return "off", "adaptive chains off: every chain at once"
    if kind != "code":
        return "answers", ""
    if not examples:
        return "off", "a code question without stated examples: every chain at once"
    if not checkable:
        return "off", "a code question whose examples this node cannot check: every chain at once"
    return "examples", ""


def next_move(*, rule: Rule, launched: int, running: int, most: int, agreeing: int, agree: int, passed: bool,
              time_left_ms: float, chain_ms: float) -> Move:
    """What to do after a chain slot returned (see the module docstring).

    ``launched`` slots so far, ``running`` of them not back; ``agreeing``: the largest number of
    returned chains giving one answer; ``passed``: some returned chain passed every example;
    ``chain_ms``: the observed chain round trip (0: none observed, no deadline estimate)."""
    if rule == "off":
        return "off"
    if rule == "answers" and agreeing >= agree:
        return "agreed"
    if rule == "examples" and passed:
        return "passed"
    if running:
        return "wait"
    if launched >= most:
        return "max_chains"
    if chain_ms > 0 and time_left_ms < chain_ms:
        return "deadline"
    return "launch"


@dataclass(frozen=True, kw_only=True)
class AdaptiveRecord:
    """The trace's ``adaptive`` record: the rule, chains launched (of at most ``most``, ``first`` at
    once), why launching stopped, and for ``"off"`` why the rule was off."""

    rule: Rule
    launched: int
    first: int
    most: int
    agree: int
    stopped: Stop | None  # None: the question ended before a decision (no chain returned)
    detail: str = ""

    def to_wire(self) -> dict[str, Any]:
        entry = {"rule": self.rule, "launched": self.launched, "first": self.first, "max": self.most,
                 "agree": self.agree, "stopped": self.stopped}
        return {**entry, "detail": self.detail} if self.detail else entry


__all__ = ["ADAPTIVE", "AGREE", "FIRST_COTS", "AdaptiveRecord", "Move", "Rule", "Stop", "next_move", "rule_for"]
