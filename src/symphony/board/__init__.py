"""The shared task board (issue #21): a task's sub-task graph, claimed by agents instead of assigned.

General layout:

- ``graph``: ``TaskGraph`` of sub-tasks with dependencies; ``find_cycle`` (the waits-for check).
- ``entries``: the signed entries (``Claim``, ``Beat``, ``Artifact``, ``Gap``), checked like ledger records.
- ``crdt``: ``Board``, the state-based CRDT of entries and the views agents decide on (holder, ready,
  result, stuck, conflicts).
- ``contract``: the contract net (announce, bid, award by a deadline, else plain claiming).
- ``replica``: the trio shell that gossips a board's entries over a ``Transport``.
- ``team``: an agent's observe -> claim -> execute -> post loop on a replica.
- ``coder``: a sub-task done by a model (one Python function), and sandboxed scoring of a library.
- ``service``: the boards of a running node (``TeamService``: announce, join, replicate, serve).

``graph``, ``entries``, ``crdt`` and ``contract`` do no I/O: callers pass ``now``.
"""

from symphony.board.coder import passing, write_function
from symphony.board.contract import Announcement, Bid, Weights, utility
from symphony.board.crdt import Board, Conflict, backoff_s, merged
from symphony.board.entries import (MAX_NEED_CHARS, Artifact, Beat, Claim, Entry, Gap, SubtaskId, decode_entry, entry_key,
                                    fix_id, parse_entry)
from symphony.board.graph import Subtask, TaskGraph, find_cycle
from symphony.board.replica import BoardReplica, pull_quietly, topic
from symphony.board.service import (MAX_GAP_GRACE_S, MAX_SUBTASKS, Team, TeamService, TeamTimings, gap_view,
                                    parse_graph, parse_tests)
from symphony.board.team import AgentStats, CapabilityGap, Executor, Mode, TeamAgent, TeamConfig

__all__ = [
    "AgentStats",
    "Announcement",
    "Artifact",
    "Beat",
    "Bid",
    "Board",
    "BoardReplica",
    "CapabilityGap",
    "Claim",
    "Conflict",
    "Entry",
    "Executor",
    "Gap",
    "MAX_GAP_GRACE_S",
    "MAX_NEED_CHARS",
    "MAX_SUBTASKS",
    "Mode",
    "Subtask",
    "SubtaskId",
    "TaskGraph",
    "Team",
    "TeamAgent",
    "TeamConfig",
    "TeamService",
    "TeamTimings",
    "Weights",
    "backoff_s",
    "decode_entry",
    "entry_key",
    "find_cycle",
    "fix_id",
    "gap_view",
    "merged",
    "parse_entry",
    "parse_graph",
    "parse_tests",
    "passing",
    "pull_quietly",
    "topic",
    "utility",
    "write_function",
]
