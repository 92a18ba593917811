"""A team agent: observe the board, claim (or win by contract net) a ready sub-task, execute, post.

Theory of operation
-------------------
Each agent runs ``TeamAgent.run`` on its own ``BoardReplica``; nobody orchestrates. One round:

1. *Observe*: the replica's board at ``now`` gives the ready sub-tasks (dependencies done, no
   result, no live holder).
2. *Decide* by mode: ``assigned`` takes only its pre-assigned sub-tasks, in order (the paper's
   pre-assigned teams); ``claim`` picks one ready sub-task at random (so agents rarely pick the
   same one); ``cnet`` first does what it was awarded, else claims what nobody was awarded
   (or whose award went unclaimed for a lease: the awardee is gone).
3. *Claim*: post a claim, wait ``settle_s`` (about one gossip delay) for rival claims in flight,
   and keep going only if the board names us the holder; a loser backs off with full jitter.
4. *Execute* while beating every ``beat_s``. At each beat the agent re-reads the board: if a rival
   claim that ranks first arrived late, or another artifact already won, it stops (wasted work is
   counted). An agent that dies stops beating; its lease ends after ``lease_s`` and the sub-task is
   ready again for anyone.
5. *Post* the artifact (its content's sha256, signed).

Capability gaps: an executor that cannot do a sub-task (its model fails, or its function fails the
sub-task's own test) raises ``CapabilityGap``. If the sub-task is a planned one with no gap yet,
the agent posts a signed *fix gap* (``entries.fix_id``: a new sub-task that the failed one now waits
for), releases its claim and posts nothing; else it posts the content it has (no gap of a gap, and
one per sub-task, so a team whose every model fails still finishes). The gap excludes its poster
for ``gap_grace_s`` (board time from the gap's ``ts_ms``), so another agent claims it; after that the
poster may take it too, so a team of one is not stuck.

Stragglers: an idle agent with nothing ready may hedge a sub-task held ``hedge_after`` times its
expected time without a result: it posts a ``hedge`` claim (which never displaces the holder) and
runs the sub-task too; whichever artifact comes first wins (``Board.result``).

Contract net (``cnet``): the producer of the artifact that makes sub-tasks ready announces them
(the plan's poster announces the roots), idle agents bid their expected finish time, and the
announcer awards each at the deadline (``contract.Announcement``); no bid, no award: plain claiming.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Literal

import trio

from symphony.board.contract import Announcement, Bid
from symphony.board.crdt import backoff_s
from symphony.board.entries import MAX_NEED_CHARS, Artifact, Beat, Claim, Gap, fix_id
from symphony.board.graph import Subtask
from symphony.board.replica import BoardReplica
from symphony.protocol import Envelope

Mode = Literal["assigned", "claim", "cnet"]
#: How long a fix gap excludes the agent that posted it: every board's default (``TeamConfig``,
#: ``service.TeamTimings``, ``service.Team``).
DEFAULT_GAP_GRACE_S: Final = 30.0
Executor = Callable[[Subtask], Awaitable[tuple[str, int]]]  # -> (content, tokens spent)


@dataclass(frozen=True)
class TeamConfig:
    """Timing of one team; seconds of the replica's clock."""

    mode: Mode = "claim"
    lease_s: float = 3.0
    beat_s: float = 1.0
    settle_s: float = 0.05
    idle_poll_s: float = 0.25
    expected_s: float = 6.0  # expected execution time of a cost-1 sub-task (bids, hedging)
    hedge_after: float | None = 2.0  # None: never hedge
    bid_window_s: float = 0.05
    gap_grace_s: float = DEFAULT_GAP_GRACE_S


class CapabilityGap(Exception):
    """Raised by an executor that could not do a sub-task: ``need`` says what is missing; ``content`` and
    ``tokens`` are what it has, posted as the result when no gap may be posted (see the module docstring)."""

    def __init__(self, need: str, content: str, tokens: int) -> None:
        super().__init__(need)
        self.need, self.content, self.tokens = need, content, tokens


@dataclass
class AgentStats:
    """What one agent did: executions (finished, wasted), tokens, busy and idle seconds, claims lost."""

    executed: int = 0
    wasted: int = 0
    tokens: int = 0
    busy_s: float = 0.0
    idle_s: float = 0.0
    lost_claims: int = 0
    hedges: int = 0
    bids: int = 0
    awards_won: int = 0
    gaps_posted: int = 0


@dataclass
class TeamAgent:
    """One agent of a team (see the module docstring for the loop)."""

    replica: BoardReplica
    executor: Executor
    config: TeamConfig
    rng: random.Random
    assigned: tuple[str, ...] = ()
    initiator: bool = False
    stats: AgentStats = field(default_factory=AgentStats)
    _awarded: list[str] = field(default_factory=list, init=False)
    _awards: dict[str, float] = field(default_factory=dict, init=False)  # sub-task -> when its award was seen
    _calls: dict[str, Announcement] = field(default_factory=dict, init=False)

    @property
    def me(self) -> str:
        return self.replica.identity.agent_id

    @property
    def board_id(self) -> str:
        return self.replica.board.board_id

    def complete(self) -> bool:
        board = self.replica.board
        return set(board.current_graph().ids) <= board.done()

    async def run(self) -> None:
        """Work until every sub-task of the board has a result."""
        if self.config.mode == "cnet":
            self.replica.on_cnet = self._on_cnet
            if self.initiator:
                await self._announce(self.replica.board.ready(self.replica.now_ms()))
        attempt = 0
        while not self.complete():
            pick = self._choose()
            if pick is None:
                await self._idle(self.config.idle_poll_s)
                continue
            subtask, hedge = pick
            if await self._claim(subtask, hedge=hedge):
                attempt = 0
                await self._execute(subtask, hedge=hedge)
            else:
                attempt += 1
                self.stats.lost_claims += 1
                await self._idle(backoff_s(attempt, self.rng))

    # -- decide ---------------------------------------------------------------------------

    def _choose(self) -> tuple[str, bool] | None:
        now_ms = self.replica.now_ms()
        ready = self.replica.board.ready(now_ms)
        mode = self.config.mode
        if mode == "assigned":
            mine = [s for s in self.assigned if s in ready]
            return (mine[0], False) if mine else None
        if mode == "cnet":
            mine = [s for s in self._awarded if s in ready]
            if mine:
                return mine[0], False
            ready = [s for s in ready if self._open_to_all(s)]
        ready = [s for s in ready if not self._excluded(s, now_ms)]
        if ready:
            return self.rng.choice(ready), False
        straggler = self._straggler(now_ms)
        return (straggler, True) if straggler else None

    def _open_to_all(self, subtask: str) -> bool:
        """In cnet mode: not under an open call, and not awarded to a peer within the last lease."""
        call = self._calls.get(subtask)
        if call is not None and self.replica.clock() <= call.deadline_s + self.config.settle_s:
            return False
        seen = self._awards.get(subtask)
        return seen is None or self.replica.clock() - seen > self.config.lease_s

    def _excluded(self, subtask: str, now_ms: int) -> bool:
        """A fix gap this agent posted, within its grace: it failed this work, so another agent should do it."""
        gap = self.replica.board.gap(subtask)
        return (gap is not None and gap.poster == self.me and subtask == fix_id(gap.blocks)
                and now_ms < gap.ts_ms + self.config.gap_grace_s * 1000)

    def _straggler(self, now_ms: int) -> str | None:
        if self.config.hedge_after is None:
            return None
        board = self.replica.board
        for s in board.current_graph().subtasks:
            holder = board.holder(s.id, now_ms)
            if holder is None or holder.claimant == self.me or board.result(s.id) is not None:
                continue
            late = now_ms - holder.lease_start_ms > self.config.hedge_after * self.config.expected_s * s.cost * 1000
            if late and not any(c.hedge for c in board.claims(s.id)):
                return s.id
        return None

    # -- claim, execute, post ---------------------------------------------------------------

    async def _claim(self, subtask: str, *, hedge: bool) -> bool:
        board = self.replica.board
        attempt = 1 + sum(c.claimant == self.me for c in board.claims(subtask))
        claim = Claim(board=self.board_id, subtask=subtask, claimant=self.me, lease_start_ms=self.replica.now_ms(),
                      lease_ms=int(self.config.lease_s * 1000), attempt=attempt, hedge=hedge)
        await self.replica.post(claim.signed_by(self.replica.identity))
        if hedge:
            self.stats.hedges += 1
            return True
        if await self._settle(subtask):
            return True
        await self._post_beat(subtask, released=True)  # ends our claim now: the conflict's length is measured
        return False

    def holds(self, subtask: str) -> bool:
        """Whether this agent holds ``subtask`` now, on its own board."""
        holder = self.replica.board.holder(subtask, self.replica.now_ms())
        return holder is not None and holder.claimant == self.me

    async def _settle(self, subtask: str) -> bool:
        """Wait ``settle_s`` for rival claims in flight, or less once one wins; True if we hold ``subtask``."""
        started = self.replica.clock()
        with trio.move_on_after(self.config.settle_s):
            while self.holds(subtask):
                await self.replica.changed()
        self.stats.idle_s += self.replica.clock() - started
        return self.holds(subtask)

    async def _execute(self, subtask: str, *, hedge: bool) -> None:
        started = self.replica.clock()
        outcome: list[tuple[str, int]] = []
        missing: CapabilityGap | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._beat, subtask, hedge, nursery.cancel_scope)
            try:
                outcome.append(await self.executor(self.replica.board.current_graph()[subtask]))
            except CapabilityGap as exc:
                missing = exc
            nursery.cancel_scope.cancel()  # no beat may follow the release that a gap posts
        if missing is not None and not hedge and await self._post_gap(subtask, missing):
            self.stats.busy_s += self.replica.clock() - started
            return  # given up to the gap: not wasted work
        if missing is not None:
            outcome.append((missing.content, missing.tokens))
        self.stats.busy_s += self.replica.clock() - started
        if not outcome or self.replica.board.result(subtask) is not None:
            self.stats.wasted += 1
            return
        content, tokens = outcome[0]
        self.stats.executed += 1
        self.stats.tokens += tokens
        artifact = Artifact(board=self.board_id, subtask=subtask, producer=self.me,
                            digest=hashlib.sha256(content.encode()).hexdigest(), ts_ms=self.replica.now_ms())
        await self.replica.post(artifact.signed_by(self.replica.identity))
        if self.config.mode == "cnet":
            await self._announce(self._newly_ready(subtask))

    def _may_post_gap(self, subtask: str) -> bool:
        """Only for a planned sub-task we still hold, with no result yet, and only one gap ever for it."""
        board = self.replica.board
        return (subtask in board.graph and self.holds(subtask) and board.result(subtask) is None
                and not any(g.blocks == subtask for g in board.gaps()))

    async def _post_gap(self, subtask: str, gap: CapabilityGap) -> bool:
        """Post the fix gap for ``subtask`` and release it; False (nothing posted) where no gap may be posted."""
        if not self._may_post_gap(subtask):
            return False
        board = self.replica.board
        entry = Gap(board=self.board_id, subtask=fix_id(subtask), poster=self.me, need=gap.need[:MAX_NEED_CHARS],
                    blocks=subtask, depends_on=list(board.graph[subtask].depends_on), ts_ms=self.replica.now_ms())
        if not board.gap_fits(entry):
            return False
        await self.replica.post(entry.signed_by(self.replica.identity))
        await self._post_beat(subtask, released=True)
        self.stats.gaps_posted += 1
        self.stats.tokens += gap.tokens
        return True

    async def _beat(self, subtask: str, hedge: bool, scope: trio.CancelScope) -> None:
        """Renew the lease every ``beat_s``; stop the work once it can no longer win."""
        board = self.replica.board
        while True:
            await trio.sleep(self.config.beat_s)
            holder = board.holder(subtask, self.replica.now_ms())
            displaced = not hedge and (holder is None or holder.claimant != self.me)
            if displaced or board.result(subtask) is not None:
                scope.cancel()  # ``_execute`` counts the wasted run
                await self._post_beat(subtask, released=True)
                return
            await self._post_beat(subtask)

    async def _post_beat(self, subtask: str, *, released: bool = False) -> None:
        beat = Beat(board=self.board_id, subtask=subtask, agent=self.me, ts_ms=self.replica.now_ms(), released=released)
        await self.replica.post(beat.signed_by(self.replica.identity))

    async def _idle(self, seconds: float) -> None:
        started = self.replica.clock()
        with trio.move_on_after(seconds):
            await self.replica.changed()
        self.stats.idle_s += self.replica.clock() - started

    # -- contract net -----------------------------------------------------------------------

    def _newly_ready(self, done: str) -> list[str]:
        graph, ready = self.replica.board.current_graph(), self.replica.board.ready(self.replica.now_ms())
        return [s for s in ready if done in graph[s].depends_on]

    async def _announce(self, subtasks: list[str]) -> None:
        if not subtasks:
            return
        deadline = self.replica.clock() + self.config.bid_window_s
        for s in subtasks:
            self._calls[s] = Announcement(s, self.me, deadline)
            await self.replica.send_cnet("board.announce", {"subtask": s, "deadline_ms": int(deadline * 1000)})
        while self.replica.clock() < deadline:  # ``award`` refuses an early call: sleep to the clock's deadline
            await trio.sleep(deadline - self.replica.clock())
        load_s: Counter[str] = Counter()  # spread one round's awards: each win adds to its bidder's latency
        for s in subtasks:
            won = self._calls[s].award(self.replica.clock(), load_s=load_s)
            if won is not None:
                load_s[won.bidder] += won.latency_s
                await self.replica.send_cnet("board.award", {"subtask": s, "winner": won.bidder})

    async def _on_cnet(self, env: Envelope) -> None:
        subtask = env.body.get("subtask")
        if not isinstance(subtask, str) or subtask not in self.replica.board.current_graph():
            self.replica.board.rejected["cnet_subtask"] += 1
            return
        if env.kind == "board.announce":
            await self._on_announce(env, subtask)
        elif env.kind == "board.bid":
            self._on_bid(env, subtask)
        elif env.kind == "board.award":
            self._on_award(env, subtask)

    async def _on_announce(self, env: Envelope, subtask: str) -> None:
        deadline_ms = env.body.get("deadline_ms")
        if not isinstance(deadline_ms, int):
            self.replica.board.rejected["cnet_malformed"] += 1
            return
        self._calls.setdefault(subtask, Announcement(subtask, env.sender, deadline_ms / 1000))
        cost = self.replica.board.current_graph()[subtask].cost
        queue = len([s for s in self._awarded if self.replica.board.result(s) is None])
        latency = (queue + 1) * self.config.expected_s * cost
        self.stats.bids += 1
        await self.replica.send_cnet("board.bid", {"subtask": subtask, "announcer": env.sender,
                                                   "cost": cost * 1000, "quality": 1.0, "latency_s": latency})

    def _on_bid(self, env: Envelope, subtask: str) -> None:
        call = self._calls.get(subtask)
        if call is None or call.announcer != self.me or env.body.get("announcer") != self.me:
            return
        try:
            bid = Bid(subtask=subtask, bidder=env.sender, cost=float(env.body["cost"]),
                      quality=float(env.body["quality"]), latency_s=float(env.body["latency_s"]))
        except (KeyError, TypeError, ValueError):
            self.replica.board.rejected["cnet_malformed"] += 1
            return
        call.offer(bid, self.replica.clock())

    def _on_award(self, env: Envelope, subtask: str) -> None:
        call = self._calls.get(subtask)
        if call is None or call.announcer != env.sender:
            self.replica.board.rejected["cnet_award_not_announcer"] += 1
            return
        self._awards[subtask] = self.replica.clock()
        if env.body.get("winner") == self.me:
            self.stats.awards_won += 1
            self._awarded.append(subtask)


__all__ = ["AgentStats", "CapabilityGap", "Executor", "Mode", "TeamAgent", "TeamConfig"]
