"""The Symphony pipeline (paper Alg. 1): a question's path from initiator to planners to executors.

General layout (one module per concept; the pure ones never await, sleep or read a clock):

- ``extraction``: a model output's final answer per kind, and answer normalisation;
- ``answer``: ``Answer``, an answer normalised once where it arrives;
- ``voting``: the weighted majority over chains (eqs. 2-3);
- ``crossvote``: verdicts on planners and executors from the chains' evidence;
- ``planner`` / ``executor``: the prompts and the parsing of plans and step answers;
- ``trace``: frozen traces of attempts, steps, chains and the question, each with ``to_wire()``;
- ``chain``: the planner's chain driver (next executor, redundancy settle, chain end);
- ``initiator``: the initiator's driver (planners, consistency, vote, verdicts, outcomes, trace);
- ``feedback``: outcome feedback after the vote (skills, LinUCB), sender-checked, over its own protocol;
- ``tools``: tool-using executors (a step answered by a program run in ``symphony.sandbox``);
- ``service``: ``TaskService``, the I/O shells of the three roles over the transport.

This package exports the pure algorithm; import the service and drivers from their modules.
"""

from symphony.pipeline.answer import Answer
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
    "Answer",
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
