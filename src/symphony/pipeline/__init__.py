"""The Symphony algorithm's pure parts (paper Alg. 1): answer extraction and weighted voting.

``extraction`` turns a model's output into a comparable final answer; ``voting`` pools
equivalent answers across chains of thought and picks the weighted majority (eqs. 2-3).
"""

from symphony.pipeline.extraction import (
    ANSWER_KINDS,
    AnswerKind,
    answers_equivalent,
    extract_answer,
    extract_code,
    extract_number,
    extract_option,
    extract_text,
    extract_yes_no,
    guess_answer_kind,
    last_boxed,
    normalize_answer,
)
from symphony.pipeline.voting import (
    MAX_ANSWER_CHARS,
    Ballot,
    Exclusion,
    Tally,
    VoteResult,
    chain_weight,
    weighted_vote,
)

__all__ = [
    "ANSWER_KINDS",
    "MAX_ANSWER_CHARS",
    "AnswerKind",
    "Ballot",
    "Exclusion",
    "Tally",
    "VoteResult",
    "answers_equivalent",
    "chain_weight",
    "extract_answer",
    "extract_code",
    "extract_number",
    "extract_option",
    "extract_text",
    "extract_yes_no",
    "guess_answer_kind",
    "last_boxed",
    "normalize_answer",
    "weighted_vote",
]
