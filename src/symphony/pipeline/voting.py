"""Weighted majority voting over chains of thought (Symphony, arXiv:2508.20019, eqs. 2-3).

Each CoT i returns a final answer a_i and a weight w_i, the mean beacon score of the executors
that ran its sub-tasks (eq. 2, ``chain_weight``). The answer with the largest summed weight wins
(eq. 3): a* = argmax_a sum_i w_i * [a_i == a], where "==" is ``Answer.equivalent`` so that "1,000",
"1000" and "\\boxed{1000}" pool their weights.

Rules the paper leaves open, fixed here so every node reaches the same verdict:

- Empty answers, and answers over ``MAX_ANSWER_CHARS`` for every kind but code, do not vote; they
  are reported in ``VoteResult.excluded``.
- A negative weight (possible: cosine scores lie in [-1, 1]) counts as 0, so a chain never votes
  against its own answer.
- Ties: larger total weight, then more chains, then the larger single chain weight, then the
  smaller normalised answer. None of these depends on the order the chains arrive in; totals use
  ``math.fsum``, which is exact, so float addition order cannot flip a tie either.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from symphony.pipeline.answer import Answer
from symphony.pipeline.extraction import AnswerKind

MAX_ANSWER_CHARS = 1_000


def chain_weight(scores: Sequence[float]) -> float:
    """w_i: the mean beacon score over a chain's sub-tasks (eq. 2); 0.0 for an empty chain."""
    return math.fsum(scores) / len(scores) if scores else 0.0


@dataclass(frozen=True)
class Ballot:
    """One chain's final answer (already extracted; None when there was none) and its weight.

    The answer is the raw text, or an ``Answer`` the caller already normalised where it arrived
    (then its kind must be the vote's)."""

    chain_id: str
    answer: str | Answer | None
    weight: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.weight):
            raise ValueError(f"weight of chain {self.chain_id!r} must be finite, not {self.weight!r}")


@dataclass(frozen=True)
class Tally:
    """One pooled answer: its key, a representative spelling, summed weight and the chains behind it."""

    key: str
    answer: str
    weight: float
    count: int
    chains: tuple[str, ...]


@dataclass(frozen=True)
class Exclusion:
    chain_id: str
    reason: Literal["empty", "too_long"]


@dataclass(frozen=True)
class VoteResult:
    """The winner (None if no valid ballot), every tally best first, and excluded ballots."""

    winner: Tally | None
    tallies: tuple[Tally, ...]
    excluded: tuple[Exclusion, ...]

    @property
    def answer(self) -> str | None:
        return self.winner.answer if self.winner else None

    @property
    def supporting_chains(self) -> tuple[str, ...]:
        return self.winner.chains if self.winner else ()


def _raw(ballot: Ballot) -> str | None:
    return ballot.answer.raw if isinstance(ballot.answer, Answer) else ballot.answer


def _answer(ballot: Ballot, kind: AnswerKind) -> Answer:
    """The ballot's answer normalised (once: an ``Answer`` is taken as it is)."""
    return ballot.answer if isinstance(ballot.answer, Answer) else Answer.of(ballot.answer or "", kind)


def _exclusion(ballot: Ballot, kind: AnswerKind) -> Exclusion | None:
    raw = _raw(ballot)
    if raw is None or not raw.strip():
        return Exclusion(ballot.chain_id, "empty")
    if kind != "code" and len(raw) > MAX_ANSWER_CHARS:
        return Exclusion(ballot.chain_id, "too_long")
    return None


def weighted_vote(
    ballots: Iterable[Ballot],
    kind: AnswerKind,
    *,
    equivalent: Callable[[Answer, Answer], bool] = Answer.equivalent,
) -> VoteResult:
    """Pool equivalent answers, sum their weights and pick the winner (eq. 3; tie rules above).

    Raises ``ValueError`` when two ballots share a chain id.
    """
    ballots = list(ballots)
    if len({b.chain_id for b in ballots}) != len(ballots):
        raise ValueError("each chain may cast one ballot; chain ids repeat")
    excluded = sorted((e for b in ballots if (e := _exclusion(b, kind))), key=lambda e: e.chain_id)
    skip = {e.chain_id for e in excluded}
    # Canonical order first: grouping then never depends on arrival order, even if "equivalent"
    # is not transitive (math-verify need not be).
    valid = sorted(
        ((_answer(b, kind), b) for b in ballots if b.chain_id not in skip),
        key=lambda ab: (ab[0].key, ab[1].chain_id),
    )
    groups: list[tuple[Answer, list[Ballot]]] = []
    for answer, ballot in valid:
        home = next((g for g in groups if g[0].same(answer) or equivalent(answer, g[0])), None)
        if home is None:
            groups.append((answer, [ballot]))
        else:
            home[1].append(ballot)
    tallies = [_tally(first.key, members) for first, members in groups]
    best_single = {t.key: max(max(0.0, b.weight) for b in g) for t, (_, g) in zip(tallies, groups, strict=True)}
    tallies.sort(key=lambda t: (-t.weight, -t.count, -best_single[t.key], t.key))
    return VoteResult(tallies[0] if tallies else None, tuple(tallies), tuple(excluded))


def largest_agreement(answers: Iterable[str | Answer], kind: AnswerKind) -> int:
    """How many of ``answers`` give the most common answer, pooled as ``weighted_vote`` pools them
    (its normalisation, equivalence and exclusions: empty or over-long answers agree with nothing).
    The adaptive-chains stop rule reads it (``pipeline.adaptive``)."""
    ballots = [Ballot(f"a{n}", answer, 1.0) for n, answer in enumerate(answers)]
    return max((t.count for t in weighted_vote(ballots, kind).tallies), default=0)


def _tally(key: str, ballots: list[Ballot]) -> Tally:
    heaviest = min(ballots, key=lambda b: (-b.weight, b.chain_id))
    return Tally(
        key=key,
        answer=(_raw(heaviest) or "").strip(),
        weight=math.fsum(max(0.0, b.weight) for b in ballots),
        count=len(ballots),
        chains=tuple(sorted(b.chain_id for b in ballots)),
    )
