"""An answer as it flows through the pipeline: normalised once, where it arrives.

An executor's step answer, a chain's final answer and the vote's winner are all compared: the
step's redundant executors against each other (settle), a planner's reported answer against its
own last step (consistency), chains against each other (the weighted vote, eqs. 2-3) and every
agent against the winner (cross-voting). ``Answer.of`` runs ``normalize_answer`` once when an
answer enters (from a ``TaskResult`` or a planner's trace) and every comparison afterwards reads
the stored ``key``; only ``equivalent`` may go further (math-verify, for numbers written as latex).
"""

from __future__ import annotations

from dataclasses import dataclass

from symphony.pipeline.extraction import AnswerKind, keys_equivalent, normalize_answer


@dataclass(frozen=True)
class Answer:
    """``raw`` as the model or peer wrote it, of ``kind``, with its comparison ``key``.

    Build it with ``Answer.of``; equal keys are the same vote. ``raw`` is what traces and
    ``TaskResult`` carry (the wire keeps the answer as written)."""

    raw: str
    kind: AnswerKind
    key: str

    @classmethod
    def of(cls, raw: str, kind: AnswerKind) -> Answer:
        """``raw`` normalised for ``kind`` (``extraction.normalize_answer``)."""
        return cls(raw=raw, kind=kind, key=normalize_answer(raw, kind))

    def same(self, other: Answer) -> bool:
        """The same vote by key (what a step's redundant executors and pooled steps compare)."""
        return self.key == other.key

    def equivalent(self, other: Answer) -> bool:
        """The same vote by key, or for numbers by math-verify (``extraction.answers_equivalent``)."""
        return keys_equivalent(self.key, other.key, self.kind)


__all__ = ["Answer"]
