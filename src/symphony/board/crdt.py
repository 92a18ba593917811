"""The shared task board's pure core: a state-based CRDT of signed entries, and the views derived from it.

Theory of operation
-------------------
*State.* A board is the set of verified entries posted for one task (``entries``): claims,
artifacts and gaps form a grow-only set keyed by ``entry_key``, and heartbeats keep only the
newest per (agent, sub-task), ordered by ``(ts_ms, entry_key)``. Set union and per-key max are
commutative, associative and idempotent, so replicas that have merged the same entries, in any
order and any number of times, hold equal states (``tests/board`` checks the three laws with
hypothesis). Nothing is ever edited in place: a lease renewal is a new heartbeat, a retry a new
claim with a higher ``attempt``.

*Views.* Everything an agent decides on is a pure function of that state and ``now``, so replicas
that agree on entries agree on decisions:

- A claim's lease ends ``lease_ms`` after its start or its claimant's newest heartbeat on that
  sub-task, whichever is later, or at once at a ``released`` heartbeat (a claimant that lost a
  contest or gave up says so). A claimant that dies stops beating, its lease ends, and the
  sub-task is free again (no one has to notice the death).
- Among claims whose lease is running, the holder is the one with the lowest
  ``(lease_start_ms, claimant)`` (hedge claims never hold). Two agents that claim the same ready
  sub-task before seeing each other therefore agree, once their claims cross, on one winner; the
  loser stops and backs off with jitter (``backoff_s``). A claimant that backdates its start wins
  contests, but must still beat and deliver, or ``stuck`` and hedging take the sub-task over;
  refusing backdated claims would need the receiver's arrival time, which would make views depend
  on arrival order, so it is left out. A heartbeat dated more than ``MAX_SKEW_MS`` after ``now``
  is ignored by the views (not dropped: it counts once ``now`` reaches it), so a beat from the
  future cannot hold a lease without further beats.
- The first artifact, by ``(ts_ms, entry_key)``, whose producer had claimed the sub-task is its
  result. An artifact from a producer with no claim is kept, marked (``unclaimed_artifacts``) and
  never chosen, so a peer cannot overwrite work by posting unasked.
- A gap adds a sub-task that the sub-task it ``blocks`` now waits for. Gaps are applied in
  ``(ts_ms, entry_key)`` order and one that would close a waits-for cycle, or names an unknown
  sub-task, is skipped and listed in ``refused_gaps``: the same set of entries always yields the
  same graph.
- A claim still held ``stuck_ms`` after it started, with no artifact, is *stuck* (its claimant
  beats but does not finish): ``stuck`` lists them, for a hedge or for the operator.

*Measured in the structure.* A conflict is two claimants whose non-hedge claims on one sub-task
were live at the same time; its length is how long both held it: the overlap of their
``[start, lease end]`` spans. A loser that releases as soon as it sees the winner held it for about
one gossip delay; one that just goes quiet holds it, on paper, until its lease runs out.
``conflicts`` computes both from the entries, so every replica reports the same figures.

Local bookkeeping that is not part of the CRDT state (why entries were refused) lives in
``rejected`` and is never merged.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from symphony.board.entries import Artifact, Beat, Claim, Entry, Gap, entry_key
from symphony.board.graph import Subtask, TaskGraph, find_cycle
from symphony.errors import PeerError

MAX_ENTRIES = 50_000
MAX_SKEW_MS = 30_000  # as the envelopes' skew window (protocol.envelope.DEFAULT_SKEW_MS)


@dataclass(frozen=True)
class Conflict:
    """Two claimants live on one sub-task at once, both holding it for ``overlap_ms``."""

    subtask: str
    winner: str
    loser: str
    overlap_ms: int


@dataclass
class Board:
    """One task's board: its planned graph plus the merged entries.

    Args:
        board_id: the task this board belongs to; entries naming another board are refused.
        graph: the plan (already checked acyclic by ``TaskGraph``).
        stuck_ms: how long a claim may be held without an artifact before ``stuck`` lists it.
    """

    board_id: str
    graph: TaskGraph
    stuck_ms: int = 600_000
    entries: dict[str, Claim | Artifact | Gap] = field(default_factory=dict)
    beats: dict[tuple[str, str], Beat] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)
    _by_subtask: dict[str, list[Claim | Artifact | Gap]] = field(default_factory=dict, repr=False, compare=False)
    _graph_now: tuple[TaskGraph, list[Gap]] | None = field(default=None, repr=False, compare=False)

    # -- the CRDT ------------------------------------------------------------------------

    def add(self, entry: Entry) -> bool:
        """Merge one entry whose signature was already checked (``parse_entry``); True if it was new.

        An entry for another board, or past ``MAX_ENTRIES``, is refused and counted in ``rejected``.
        """
        if entry.board != self.board_id:
            self.rejected["other_board"] += 1
            return False
        if isinstance(entry, Beat):
            return self._add_beat(entry)
        key = entry_key(entry)
        if key in self.entries:
            return False
        if len(self.entries) >= MAX_ENTRIES:
            self.rejected["board_full"] += 1
            return False
        self.entries[key] = entry
        self._by_subtask.setdefault(entry.subtask, []).append(entry)  # the views read one sub-task at a time
        if isinstance(entry, Gap):
            self._graph_now = None  # only a gap changes the graph
        return True

    def add_checked(self, entry: Entry) -> bool:
        """``add`` after verifying the signature; a bad one is counted under its reason, never raised."""
        try:
            entry.verify()
        except PeerError as exc:
            self.rejected[exc.reason] += 1
            return False
        return self.add(entry)

    def _add_beat(self, beat: Beat) -> bool:
        slot = (beat.agent, beat.subtask)
        old = self.beats.get(slot)
        if old is not None and (old.ts_ms, entry_key(old)) >= (beat.ts_ms, entry_key(beat)):
            return False
        self.beats[slot] = beat
        return True

    def merge(self, other: Board) -> int:
        """Merge another replica's state into this one; returns how many entries were new here."""
        return sum(self.add(e) for e in [*other.entries.values(), *other.beats.values()])

    def state(self) -> tuple[frozenset[str], frozenset[str]]:
        """The CRDT state, comparable across replicas (entry keys and heartbeat keys)."""
        return frozenset(self.entries), frozenset(entry_key(b) for b in self.beats.values())

    def all_entries(self) -> list[Entry]:
        """Every entry held, for anti-entropy with a replica that missed some."""
        return [*self.entries.values(), *self.beats.values()]

    # -- views ---------------------------------------------------------------------------

    def claims(self, subtask: str) -> list[Claim]:
        return sorted((e for e in self._by_subtask.get(subtask, ()) if isinstance(e, Claim)),
                      key=lambda c: (c.lease_start_ms, c.claimant, c.attempt, entry_key(c)))

    def last_beat_ms(self, claim: Claim, now_ms: int | None = None) -> int:
        """The claim's start or its claimant's newest beat on it, a beat past ``now + MAX_SKEW_MS`` aside."""
        beat = self.beats.get((claim.claimant, claim.subtask))
        counted = beat is not None and (now_ms is None or beat.ts_ms <= now_ms + MAX_SKEW_MS)
        return max(claim.lease_start_ms, beat.ts_ms if beat and counted else 0)

    def lease_end_ms(self, claim: Claim, now_ms: int | None = None) -> int:
        last = self.last_beat_ms(claim, now_ms)
        beat = self.beats.get((claim.claimant, claim.subtask))
        return last if beat is not None and beat.released and beat.ts_ms == last else last + claim.lease_ms

    def holder(self, subtask: str, now_ms: int) -> Claim | None:
        """The winning live claim on ``subtask`` at ``now_ms``, or None if it is free."""
        live = [c for c in self.claims(subtask)
                if not c.hedge and c.lease_start_ms <= now_ms < self.lease_end_ms(c, now_ms)]
        return live[0] if live else None

    def result(self, subtask: str) -> Artifact | None:
        """The sub-task's chosen artifact: the first one by ``(ts_ms, key)`` from a claimant."""
        claimants = {c.claimant for c in self.claims(subtask)}
        arts = [a for a in self._artifacts(subtask) if a.producer in claimants]
        return arts[0] if arts else None

    def unclaimed_artifacts(self) -> list[Artifact]:
        """Artifacts kept but marked: their producer never claimed the sub-task."""
        return [a for s in self.current_graph().ids for a in self._artifacts(s)
                if a.producer not in {c.claimant for c in self.claims(s)}]

    def _artifacts(self, subtask: str) -> list[Artifact]:
        arts = [e for e in self._by_subtask.get(subtask, ()) if isinstance(e, Artifact)]
        return sorted(arts, key=lambda a: (a.ts_ms, entry_key(a)))

    def done(self) -> set[str]:
        return {s for s in self.current_graph().ids if self.result(s) is not None}

    def ready(self, now_ms: int) -> list[str]:
        """Sub-tasks with every dependency done, no result and no live holder, in plan order."""
        graph, finished = self.current_graph(), self.done()
        return [s.id for s in graph.subtasks if s.id not in finished and self.holder(s.id, now_ms) is None
                and all(d in finished for d in s.depends_on)]

    def stuck(self, now_ms: int) -> list[Claim]:
        """Live holders that have held their sub-task ``stuck_ms`` or more without a result."""
        out = []
        for s in self.current_graph().ids:
            claim = self.holder(s, now_ms)
            if claim and self.result(s) is None and now_ms - claim.lease_start_ms >= self.stuck_ms:
                out.append(claim)
        return out

    def current_graph(self) -> TaskGraph:
        """The plan plus the gaps that keep it acyclic (see ``refused_gaps``)."""
        return self._apply_gaps()[0]

    def refused_gaps(self) -> list[Gap]:
        return self._apply_gaps()[1]

    def gaps(self) -> list[Gap]:
        """Every gap held, applied or refused, in the order they are applied."""
        return sorted((e for e in self.entries.values() if isinstance(e, Gap)), key=lambda g: (g.ts_ms, entry_key(g)))

    def gap(self, subtask: str) -> Gap | None:
        """The applied gap that added ``subtask``, or None (a planned sub-task, or unknown)."""
        refused = self.refused_gaps()  # at most one applied gap adds a sub-task (``gap_fits``: a new id)
        return next((g for g in self._by_subtask.get(subtask, ()) if isinstance(g, Gap) and g not in refused), None)

    def gap_fits(self, gap: Gap) -> bool:
        """Whether ``gap`` would be applied now: a new sub-task, known ``blocks`` and dependencies, no cycle."""
        return self._gap_fits(gap, {s.id: list(s.depends_on) for s in self.current_graph().subtasks})

    def _apply_gaps(self) -> tuple[TaskGraph, list[Gap]]:
        """The graph with the gaps applied, computed once per set of gaps (every view reads it, every loop pass)."""
        if self._graph_now is None:
            self._graph_now = self._compute_gaps()
        return self._graph_now

    def _compute_gaps(self) -> tuple[TaskGraph, list[Gap]]:
        gaps = self.gaps()
        if not gaps:
            return self.graph, []
        deps = {s.id: list(s.depends_on) for s in self.graph.subtasks}
        specs = {s.id: s for s in self.graph.subtasks}
        refused: list[Gap] = []
        for gap in gaps:
            if not self._gap_fits(gap, deps):
                refused.append(gap)
                continue
            deps[gap.subtask] = list(gap.depends_on)
            deps[gap.blocks] = [*deps[gap.blocks], gap.subtask]
            specs[gap.subtask] = Subtask(gap.subtask, spec=gap.need)
        order = [*[s.id for s in self.graph.subtasks], *[g.subtask for g in gaps if g not in refused]]
        return TaskGraph(tuple(Subtask(i, specs[i].spec, tuple(deps[i]), specs[i].cost) for i in order)), refused

    @staticmethod
    def _gap_fits(gap: Gap, deps: dict[str, list[str]]) -> bool:
        if gap.subtask in deps or gap.blocks not in deps or any(d not in deps for d in gap.depends_on):
            return False
        trial = {**deps, gap.subtask: list(gap.depends_on), gap.blocks: [*deps[gap.blocks], gap.subtask]}
        return find_cycle(trial) is None

    def conflicts(self) -> list[Conflict]:
        """Every pair of claimants that held one sub-task at once, and for how long both held it."""
        out = []
        for s in self.current_graph().ids:
            claims = [c for c in self.claims(s) if not c.hedge]
            for i, first in enumerate(claims):
                for later in claims[i + 1:]:
                    if later.claimant == first.claimant or later.lease_start_ms >= self.lease_end_ms(first):
                        continue
                    overlap = min(self.lease_end_ms(first), self.lease_end_ms(later)) - later.lease_start_ms
                    out.append(Conflict(s, first.claimant, later.claimant, max(0, overlap)))
        return out


def backoff_s(attempt: int, rng: random.Random, *, base_s: float = 0.05, cap_s: float = 2.0) -> float:
    """Full-jitter exponential backoff (AWS architecture blog, "Exponential Backoff And Jitter"):
    uniform in [0, min(cap, base * 2**attempt)], so contenders that lost together do not retry together."""
    return rng.uniform(0.0, min(cap_s, base_s * 2 ** max(0, attempt)))


def merged(boards: Iterable[Board]) -> Board:
    """One board holding every entry of ``boards`` (all for the same task and plan)."""
    boards = list(boards)
    out = Board(boards[0].board_id, boards[0].graph, boards[0].stuck_ms)
    for b in boards:
        out.merge(b)
    return out


__all__ = ["MAX_ENTRIES", "MAX_SKEW_MS", "Board", "Conflict", "backoff_s", "merged"]
