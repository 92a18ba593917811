"""Team tasks on a running node: the board service that ``symphony node`` runs (issue #21).

Theory of operation
-------------------
A user posts a *team task* (a graph of sub-tasks, e.g. one of the bench libraries) to any node
(``POST /v1/teams``, ``symphony team``). That node becomes its *poster*: it makes a board for it
and announces it on ``TEAMS_TOPIC`` in a sealed envelope (``protocol.envelope``: signature, skew,
replay), again every ``announce_s`` until the board is complete, so a node that joins late still
hears of it. Every node that hears an announcement from a member (an available ledger record,
not blacklisted) makes a replica of the board and, if it has a model, a ``TeamAgent`` that
observes, claims, executes, heartbeats and posts like any other; nobody assigns work, and the
poster is an agent like the rest.

What travels, all on fixed topics so a node holds no per-board subscription:

- board entries (``entries``: claims, beats, artifacts, gaps) on ``ENTRIES_TOPIC``, each routed to
  its replica by its ``board`` field, with the replica's checks (signature, author is a member);
- artifact contents on ``BLOBS_TOPIC`` as ``{"board", "digest", "content"}``: an artifact entry
  carries only the sha256 of its content, so a content is kept only if it hashes to its digest;
- contract-net envelopes (announce, bid, award; boards posted with ``mode="cnet"``) on ``CNET_TOPIC``,
  sealed and checked like announcements, routed by the ``board`` in their body;
- anti-entropy: every ``sync_s`` a replica of an unfinished board pulls the whole board from the
  poster or an author (``replica.SYNC_PROTOCOL``, one handler for every board), and a missing
  content is fetched by digest from its producer or any peer (``BLOB_PROTOCOL``).

Everything from the network is hostile input: each message is size-capped before parsing, and
what is refused is counted in ``rejected`` by reason (``/v1/teams`` shows it), never raised.
Generated code is run only in the sandbox: the poster scores the finished library against the
tests it was given (``coder.passing``) in a worker thread.

Capability gaps: the announcement carries the sub-tasks' tests, and an agent checks the function
its model wrote against its sub-task's test in the sandbox before posting it. A function that fails
its test, or a model that fails, raises ``team.CapabilityGap``: the agent posts a signed fix gap
(``entries.fix_id``) and releases the sub-task; another agent, chosen as any claim is (the first
live claim wins) among all but the gap's poster, claims the gap and writes the same function again
(the failed sub-task's spec, dependencies and test). The failed sub-task waits for the gap, and its
next claimant takes the gap's result as its own (no model call). A user may post a gap too
(``post_gap``: a new sub-task, with its spec, that an unfinished one waits for). ``team_view`` lists
each gap: who posted it, why, who closed it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from symphony.board.coder import passing, write_function
from symphony.board.crdt import Board
from symphony.board.entries import MAX_ENTRY_BYTES, SUBTASK_ID, Artifact, Gap, decode_entry, fix_id
from symphony.board.graph import Subtask, TaskGraph
from symphony.board.replica import SYNC_PROTOCOL, BoardReplica
from symphony.board.team import DEFAULT_GAP_GRACE_S, CapabilityGap, Mode, TeamAgent, TeamConfig
from symphony.errors import ConfigError, PeerError, TransportError
from symphony.llm import ChatModel, ModelError
from symphony.protocol import Identity, ReplayGuard, open_envelope, parse_json, seal
from symphony.transport import Transport

logger = logging.getLogger(__name__)

TEAMS_TOPIC = "symphony/teams"
ENTRIES_TOPIC = "symphony/teams/entries"
BLOBS_TOPIC = "symphony/teams/blobs"
CNET_TOPIC = "symphony/teams/cnet"
MAX_CNET_BYTES = 2 * 1024
BLOB_PROTOCOL = "/symphony/board-blob/1.0.0"
ANNOUNCE_KIND = "board.team"
MAX_SUBTASKS = 64
MAX_SPEC_CHARS = 2_000
MAX_TEST_CHARS = 4_000
MAX_ANNOUNCE_BYTES = 768 * 1024  # 64 sub-tasks of a 2,000-character spec and a 4,000-character test, escaped
MAX_GAP_GRACE_S = 600.0
MAX_CONTENT_BYTES = 32 * 1024
MAX_BLOB_BYTES = MAX_CONTENT_BYTES * 2 + 512  # the content JSON-escaped, plus board and digest
EventSink = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class TeamTimings:
    """How a node's agent works a board: real seconds (a real model takes seconds per sub-task)."""

    lease_s: float = 10.0
    beat_s: float = 2.0
    settle_s: float = 0.5
    idle_poll_s: float = 1.0
    expected_s: float = 60.0  # a sub-task held 2x this long without a result is hedged
    announce_s: float = 3.0
    sync_s: float = 5.0

    gap_grace_s: float = DEFAULT_GAP_GRACE_S  # a board's default
    bid_window_s: float = 1.0  # contract net: a few gossip delays for bids to arrive

    def team_config(self, gap_grace_s: float, mode: Mode) -> TeamConfig:
        return TeamConfig(mode=mode, lease_s=self.lease_s, beat_s=self.beat_s, settle_s=self.settle_s,
                          idle_poll_s=self.idle_poll_s, expected_s=self.expected_s, gap_grace_s=gap_grace_s,
                          bid_window_s=self.bid_window_s)


@dataclass
class Team:
    """One board this node holds: the replica, contents by digest, and (on the poster) tests and score."""

    poster: str
    replica: BoardReplica
    posted_at: float
    tests: dict[str, str] = field(default_factory=dict)  # every replica's: agents check their functions
    gap_grace_s: float = DEFAULT_GAP_GRACE_S
    mode: Mode = "claim"  # how agents take sub-tasks: plain claiming, or contract net first
    library: str | None = None
    checks: Counter[str] = field(default_factory=Counter)  # this node's sandbox checks: passed, failed, unavailable
    contents: dict[str, str] = field(default_factory=dict)
    agent: TeamAgent | None = None
    finished_at: float | None = None
    passed: dict[str, bool] | None = None
    scoring_error: str | None = None

    @property
    def board(self) -> Board:
        return self.replica.board

    def complete(self) -> bool:
        return set(self.board.current_graph().ids) <= self.board.done()


def parse_graph(items: Any) -> TaskGraph:
    """A team task's graph from untrusted JSON (``[{"id", "spec", "depends_on"}]``), capped.

    Raises:
        ConfigError: not a list of at most ``MAX_SUBTASKS`` sub-tasks with string ids and specs, an
            id the board refuses (``entries.SubtaskId``), a duplicate, an unknown dependency or a cycle.
    """
    if not isinstance(items, list) or not 0 < len(items) <= MAX_SUBTASKS:
        raise ConfigError(f"a team task has 1 to {MAX_SUBTASKS} sub-tasks")
    subtasks = []
    for item in items:
        sid, spec = (item.get("id"), item.get("spec", "")) if isinstance(item, dict) else (None, None)
        deps = item.get("depends_on", []) if isinstance(item, dict) else None
        if not (isinstance(sid, str) and _valid_id(sid) and isinstance(spec, str) and len(spec) <= MAX_SPEC_CHARS
                and isinstance(deps, list) and len(deps) <= 16 and all(isinstance(d, str) for d in deps)):
            raise ConfigError(f"bad sub-task {str(item)[:120]!r}: id of 1-64 [A-Za-z0-9_.:-], spec of at most "
                              f"{MAX_SPEC_CHARS} characters, at most 16 depends_on ids")
        subtasks.append(Subtask(sid, spec, tuple(deps)))
    return TaskGraph(tuple(subtasks))


def parse_tests(tests: Any, graph: TaskGraph) -> dict[str, str]:
    """Sub-tasks' tests from untrusted JSON (``{"id": "def test_id(): ..."}``): each names a sub-task, capped.

    Raises:
        ConfigError: not an object of strings, a test of no sub-task, or one over ``MAX_TEST_CHARS``.
    """
    if not isinstance(tests, dict) or not all(isinstance(t, str) for t in tests.values()):
        raise ConfigError("tests are an object of sub-task id -> test code")
    unknown = sorted(set(tests) - set(graph.ids))
    if unknown or any(len(t) > MAX_TEST_CHARS for t in tests.values()):
        raise ConfigError(f"tests must name sub-tasks and be at most {MAX_TEST_CHARS} characters: {unknown[:5]}")
    return dict(tests)


def parse_grace(value: Any) -> float:
    """A board's ``gap_grace_s`` from untrusted JSON. Raises ``ConfigError`` outside 0..``MAX_GAP_GRACE_S``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_GAP_GRACE_S:
        raise ConfigError(f"gap_grace_s is a number of seconds from 0 to {MAX_GAP_GRACE_S:g}")
    return float(value)


def parse_mode(value: Any) -> Mode:
    """A board's ``mode`` from untrusted JSON: ``claim`` or ``cnet`` (``assigned`` is the bench's alone).

    Raises:
        ConfigError: any other value.
    """
    if value not in ("claim", "cnet"):
        raise ConfigError("mode is claim (plain claiming) or cnet (contract net: announce, bid, award)")
    return value  # type: ignore[no-any-return]


def _valid_id(text: str) -> bool:
    """What ``entries.SubtaskId`` accepts."""
    return SUBTASK_ID.fullmatch(text) is not None


def graph_wire(graph: TaskGraph) -> list[dict[str, Any]]:
    return [{"id": s.id, "spec": s.spec, "depends_on": list(s.depends_on)} for s in graph.subtasks]


class TeamService:
    """The boards of one node (see the module docstring).

    Args:
        transport: the node's network (pass the guarded one: request handlers go through the defences).
        identity: signs this node's announcements and board entries.
        model: executes sub-tasks; None: the node replicates boards but works none.
        clock: the node's wall clock in seconds (board times are compared across nodes).
        is_member: whether an agent may post to our boards (an available, not blacklisted member).
        emit: the node's event sink (``team_posted``, ``team_joined``, ``team_done``).
    """

    def __init__(self, transport: Transport, identity: Identity, model: ChatModel | None, *,
                 clock: Callable[[], float], is_member: Callable[[str], bool], emit: EventSink,
                 timings: TeamTimings = TeamTimings(), max_teams: int = 32, rng: random.Random | None = None) -> None:
        self.transport = transport
        self.identity = identity
        self.model = model
        self.clock = clock
        self.is_member = is_member
        self.emit = emit
        self.timings = timings
        self.max_teams = max_teams
        self.rng = rng or random.Random()
        self.teams: dict[str, Team] = {}
        self.rejected: Counter[str] = Counter()
        self._guard = ReplayGuard()
        self._nursery: trio.Nursery | None = None

    @property
    def me(self) -> str:
        return self.identity.agent_id

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the boards until cancelled."""
        await self.transport.subscribe(TEAMS_TOPIC, self._on_announce)
        await self.transport.subscribe(ENTRIES_TOPIC, self._on_entry)
        await self.transport.subscribe(BLOBS_TOPIC, self._on_blob)
        await self.transport.subscribe(CNET_TOPIC, self._on_cnet)
        self.transport.set_handler(SYNC_PROTOCOL, self._serve_sync)
        self.transport.set_handler(BLOB_PROTOCOL, self._serve_blob)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    # -- posting and joining ------------------------------------------------------------------

    def post(self, graph: TaskGraph, *, tests: Mapping[str, str] | None = None, library: str | None = None,
             gap_grace_s: float | None = None, mode: Mode = "claim") -> Team:
        """Start a team task here as its poster; returns its (running) team. Raises ``ConfigError`` when full."""
        self._make_room()
        board_id = uuid.uuid4().hex
        grace = self.timings.gap_grace_s if gap_grace_s is None else gap_grace_s
        team = self._open(board_id, graph, poster=self.me, tests=dict(tests or {}), gap_grace_s=grace,
                          mode=parse_mode(mode))
        team.library = library
        self.emit("team_posted", {"board": board_id, "subtasks": len(graph.ids), "library": library})
        assert self._nursery is not None, "post() is for a running service"
        self._nursery.start_soon(self._announce, team)
        return team

    def _make_room(self) -> None:
        """Forget the oldest finished board when full; refuse (``ConfigError``) when every board is running."""
        if len(self.teams) < self.max_teams:
            return
        finished = [bid for bid, t in self.teams.items() if t.finished_at is not None]
        if not finished:
            raise ConfigError(f"this node already works {self.max_teams} unfinished team tasks")
        del self.teams[finished[0]]

    def _open(self, board_id: str, graph: TaskGraph, *, poster: str, tests: dict[str, str],
              gap_grace_s: float, mode: Mode) -> Team:
        replica = BoardReplica(self.transport, self.identity, Board(board_id, graph), clock=self.clock,
                               topic_name=ENTRIES_TOPIC, is_member=self._may_post, cnet_topic=CNET_TOPIC)
        team = Team(poster=poster, replica=replica, posted_at=self.clock(), tests=tests, gap_grace_s=gap_grace_s,
                    mode=mode)
        self.teams[board_id] = team
        assert self._nursery is not None
        if self.model is not None:  # in cnet mode the poster's agent announces the first ready sub-tasks
            team.agent = TeamAgent(replica, self._executor(team), self.timings.team_config(gap_grace_s, mode),
                                   random.Random(self.rng.random()), initiator=poster == self.me)
        self._nursery.start_soon(self._work, team)
        return team

    async def _work(self, team: Team) -> None:
        """A joiner first pulls the poster's board: entries posted before the announcement reached us were
        dropped as ``entry_unknown_board``, and an agent blind to a claim would claim the same sub-task."""
        if team.poster != self.me:
            await self._pull(team, team.poster)
        if team.agent is not None:
            assert self._nursery is not None
            self._nursery.start_soon(self._run_agent, team, team.agent)
        await self._watch(team)

    async def _run_agent(self, team: Team, agent: TeamAgent) -> None:
        """The agent's loop; if it fails, the board goes on without this node's work, and the node goes on."""
        try:
            await agent.run()
        except Exception as exc:  # a model backend's unexpected error must not take the node down
            logger.exception("team agent on board %s failed", team.board.board_id)
            self.emit("team_agent_failed", {"board": team.board.board_id, "error": str(exc)[:300]})

    def _may_post(self, author: str) -> bool:
        return author == self.me or self.is_member(author)

    async def _announce(self, team: Team) -> None:
        """Announce the board now and every ``announce_s`` until it is complete."""
        body = {"board": team.board.board_id, "subtasks": graph_wire(team.board.graph), "tests": team.tests,
                "gap_grace_s": team.gap_grace_s, "mode": team.mode}
        while not team.complete():
            env = seal(self.identity, ANNOUNCE_KIND, body, now_ms=int(self.clock() * 1000))
            await self._publish(TEAMS_TOPIC, env.to_bytes())
            with trio.move_on_after(self.timings.announce_s):
                while not team.complete():
                    await team.replica.changed()

    async def _on_announce(self, _source: str, data: bytes) -> None:
        try:
            env = open_envelope(data, guard=self._guard, now_ms=int(self.clock() * 1000), limit=MAX_ANNOUNCE_BYTES)
        except PeerError as exc:
            self.rejected[f"announce_{exc.reason}"] += 1
            return
        board_id = env.body.get("board")
        if env.kind != ANNOUNCE_KIND or not isinstance(board_id, str) or not 0 < len(board_id) <= 64:
            self.rejected["announce_malformed"] += 1
        elif board_id in self.teams:
            return  # a re-announcement
        elif not self.is_member(env.sender):
            self.rejected["announce_not_member"] += 1
        else:
            self._join(board_id, env.sender, env.body)

    def _join(self, board_id: str, poster: str, body: dict[str, Any]) -> None:
        try:
            graph = parse_graph(body.get("subtasks"))
            tests = parse_tests(body.get("tests", {}), graph)
            grace = parse_grace(body.get("gap_grace_s", self.timings.gap_grace_s))
            mode = parse_mode(body.get("mode", "claim"))
            self._make_room()
        except ConfigError as exc:
            self.rejected["announce_refused"] += 1
            logger.info("team task %s from %s refused: %s", board_id, poster, exc)
            return
        self._open(board_id, graph, poster=poster, tests=tests, gap_grace_s=grace, mode=mode)
        self.emit("team_joined", {"board": board_id, "poster": poster, "subtasks": len(graph.ids)})

    # -- executing --------------------------------------------------------------------------------

    def _executor(self, team: Team) -> Callable[[Subtask], Any]:
        async def execute(subtask: Subtask) -> tuple[str, int]:
            assert self.model is not None
            fix = team.board.gap(fix_id(subtask.id))
            if fix is not None and fix.blocks == subtask.id and team.board.result(fix.subtask) is not None:
                content = await self.content(team, fix.subtask) or ""  # a peer did it for us: take its result
                await self._share(team, content)
                return content, 0
            target, gap = self._target(team, subtask), team.board.gap(subtask.id)
            deps = {d: await self.content(team, d) or "" for d in target.depends_on}
            try:
                content, tokens = await write_function(self.model, target, deps,
                                                       failed=gap.need if gap and target is not subtask else None)
                problem = None
            except ModelError as exc:
                content, tokens = f"# the model failed: {str(exc)[:200]}", exc.prompt_tokens + exc.completion_tokens
                problem = f"{target.id}: the model failed ({str(exc)[:120]})"
            content = content.encode()[:MAX_CONTENT_BYTES].decode(errors="ignore")
            problem = problem or await self._check(team, target, deps, content)
            await self._share(team, content)
            if problem is not None:
                raise CapabilityGap(problem, content, tokens)
            return content, tokens

        return execute

    @staticmethod
    def _target(team: Team, subtask: Subtask) -> Subtask:
        """The function ``subtask`` asks for: a fix gap asks for the planned sub-task it fixes, spec and all."""
        gap = team.board.gap(subtask.id)
        if gap is not None and subtask.id == fix_id(gap.blocks) and gap.blocks in team.board.graph:
            return team.board.graph[gap.blocks]
        return subtask

    async def _check(self, team: Team, target: Subtask, deps: Mapping[str, str], content: str) -> str | None:
        """Run ``target``'s test (if the board has one) on ``content`` in the sandbox; what failed, or None."""
        test = team.tests.get(target.id)
        if test is None:
            return None
        order, code = [*deps, target.id], {**deps, target.id: content}
        try:
            passed = await trio.to_thread.run_sync(lambda: passing(order, code, {target.id: test}))
        except ConfigError as exc:  # SandboxUnavailableError: post unchecked, and say so in the view
            team.checks["unavailable"] += 1
            logger.warning("cannot check %s in the sandbox: %s", target.id, exc)
            return None
        team.checks["passed" if passed[target.id] else "failed"] += 1
        return None if passed[target.id] else f"{target.id}: the function written fails its test"

    async def _share(self, team: Team, content: str) -> None:
        digest = hashlib.sha256(content.encode()).hexdigest()
        team.contents[digest] = content
        blob = {"board": team.board.board_id, "digest": digest, "content": content}
        await self._publish(BLOBS_TOPIC, json.dumps(blob, ensure_ascii=False).encode())

    async def content(self, team: Team, subtask: str) -> str | None:
        """The content of ``subtask``'s result: held here, else fetched from its producer or a peer."""
        result = team.board.result(subtask)
        if result is None:
            return None
        if result.digest not in team.contents:
            await self._fetch(team, result)
        return team.contents.get(result.digest)

    async def _fetch(self, team: Team, artifact: Artifact) -> None:
        peers = [artifact.producer, *[p for p in self.transport.peers() if p != artifact.producer]][:4]
        ask = json.dumps({"board": team.board.board_id, "digest": artifact.digest}).encode()
        for peer in peers:
            try:
                raw = await self.transport.request(peer, BLOB_PROTOCOL, ask, timeout=5.0)
            except TransportError:
                continue
            if len(raw) <= MAX_CONTENT_BYTES and hashlib.sha256(raw).hexdigest() == artifact.digest:
                team.contents[artifact.digest] = raw.decode(errors="replace")
                return
            self.rejected["blob_mismatch"] += 1
        self.rejected["blob_missing"] += 1

    # -- watching a board to its end -----------------------------------------------------------------

    async def _watch(self, team: Team) -> None:
        """Pull the board now and then until it is complete; then record the end (and score, as poster)."""
        while not team.complete():
            with trio.move_on_after(self.timings.sync_s):
                while not team.complete():
                    await team.replica.changed()
            if not team.complete():
                await self._pull(team, self._random_author(team))
        finished_at = self.clock()  # the agent's loop ends by itself once it sees the board complete
        if team.poster == self.me and team.tests:
            await self._score(team)
        team.finished_at = finished_at  # "done" once the score is in
        self.emit("team_done", {"board": team.board.board_id, "seconds": round(team.finished_at - team.posted_at, 3),
                                "passed": None if team.passed is None else sum(team.passed.values())})

    def _random_author(self, team: Team) -> str | None:
        """A connected peer that wrote on the board (or posted it): one that holds its entries."""
        authors = {e.author for e in team.board.all_entries()} | {team.poster}
        peers = [p for p in self.transport.peers() if p in authors]
        return self.rng.choice(peers) if peers else None

    async def _pull(self, team: Team, peer: str | None) -> None:
        if peer is None:
            return
        try:
            await team.replica.pull(peer)
        except TransportError:
            self.rejected["sync_failed"] += 1

    async def _score(self, team: Team) -> None:
        order = team.board.current_graph().ids
        code = {s: await self.content(team, s) or "" for s in order}
        try:
            team.passed = await trio.to_thread.run_sync(lambda: passing(order, code, team.tests))
        except ConfigError as exc:  # SandboxUnavailableError: this machine cannot isolate code
            team.scoring_error = str(exc)

    # -- serving peers ----------------------------------------------------------------------------------

    async def _publish(self, topic: str, data: bytes) -> None:
        try:
            await self.transport.publish(topic, data)
        except TransportError:
            self.rejected["publish_failed"] += 1

    async def _on_entry(self, _source: str, data: bytes) -> None:
        try:
            entry = decode_entry(data)
        except PeerError as exc:
            self.rejected[f"entry_{exc.reason}"] += 1
            return
        team = self.teams.get(entry.board)
        if team is None:
            self.rejected["entry_unknown_board"] += 1  # not announced yet: the next pull brings it
        else:
            team.replica.offer(entry)

    async def _on_cnet(self, _source: str, data: bytes) -> None:
        try:
            env = open_envelope(data, guard=self._guard, now_ms=int(self.clock() * 1000), limit=MAX_CNET_BYTES)
        except PeerError as exc:
            self.rejected[f"cnet_{exc.reason}"] += 1
            return
        team = self.teams.get(str(env.body.get("board")))
        if team is None:
            self.rejected["cnet_unknown_board"] += 1
        else:
            await team.replica.deliver_cnet(env)  # checks the kind and the sender's membership

    async def _on_blob(self, source: str, data: bytes) -> None:
        if not self._may_post(source):
            self.rejected["blob_not_member"] += 1
            return
        try:
            blob = parse_json(data, limit=MAX_BLOB_BYTES)
        except PeerError as exc:
            self.rejected[f"blob_{exc.reason}"] += 1
            return
        fields = blob if isinstance(blob, dict) else {}
        team, content = self.teams.get(str(fields.get("board"))), fields.get("content")
        if team is None or not isinstance(content, str) or len(team.contents) >= 4 * MAX_SUBTASKS:
            self.rejected["blob_refused"] += 1
        elif hashlib.sha256(content.encode()).hexdigest() != fields.get("digest"):
            self.rejected["blob_mismatch"] += 1
        else:
            team.contents[fields["digest"]] = content

    async def _serve_sync(self, _peer: str, payload: bytes) -> bytes:
        team = self.teams.get(payload.decode(errors="replace"))
        return b"[]" if team is None else team.replica.sync_reply()

    async def _serve_blob(self, _peer: str, payload: bytes) -> bytes:
        ask = parse_json(payload, limit=512)  # a PeerError fails the request and is counted by the defences
        team = self.teams.get(str(ask.get("board"))) if isinstance(ask, dict) else None
        content = None if team is None else team.contents.get(str(ask.get("digest")))
        return b"" if content is None else content.encode()

    # -- gaps from the API ----------------------------------------------------------------------------------

    async def post_gap(self, board_id: str, subtask: str, need: str, blocks: str, depends_on: list[str]) -> Gap:
        """Post a gap signed by this node to a running board: sub-task ``subtask`` (spec ``need``) that ``blocks``
        waits for.

        Raises:
            KeyError: no such board here.
            ConfigError: the board is finished, or the gap does not fit (a bad or taken id, an unknown
                sub-task, a cycle, ``blocks`` already done, an entry over ``MAX_ENTRY_BYTES``).
        """
        team = self.teams[board_id]
        board = team.board
        if team.complete():
            raise ConfigError("this team task is finished: its agents have stopped")
        if blocks in board.done():
            raise ConfigError(f"{blocks!r} already has a result: a gap must block an unfinished sub-task")
        try:
            gap = Gap(board=board_id, subtask=subtask, poster=self.me, need=need, blocks=blocks,
                      depends_on=depends_on, ts_ms=int(self.clock() * 1000)).signed_by(self.identity)
        except ValueError as exc:  # pydantic's ValidationError: an id or need out of range
            raise ConfigError(f"bad gap: {str(exc)[:300]}") from exc
        if not board.gap_fits(gap):
            raise ConfigError("the gap does not fit the board: its id is taken, it names an unknown sub-task, "
                              "or it would close a cycle")
        if len(gap.to_bytes()) > MAX_ENTRY_BYTES:
            raise ConfigError(f"the gap is over {MAX_ENTRY_BYTES} bytes on the wire")
        try:
            await team.replica.post(gap)  # applied here at once, then gossiped
        except TransportError:
            self.rejected["publish_failed"] += 1  # applied here all the same: the peers' pulls bring it
        self.emit("team_gap", {"board": board_id, "subtask": subtask, "blocks": blocks, "poster": self.me})
        return gap

    # -- what the API shows --------------------------------------------------------------------------------

    def view(self, board_id: str) -> dict[str, Any] | None:
        team = self.teams.get(board_id)
        return None if team is None else team_view(team, self.clock())

    def views(self) -> list[dict[str, Any]]:
        return [team_view(t, self.clock(), subtasks=False) for t in self.teams.values()]


def team_view(team: Team, now: float, *, subtasks: bool = True) -> dict[str, Any]:
    """A board as the API shows it: the shared figures every replica agrees on, and this node's agent's own."""
    board, now_ms = team.board, int(now * 1000)
    graph, conflicts = board.current_graph(), board.conflicts()
    arts = Counter(e.subtask for e in board.entries.values() if isinstance(e, Artifact))
    done = board.done()
    view: dict[str, Any] = {
        "board": board.board_id, "poster": team.poster, "library": team.library, "mode": team.mode,
        "status": "done" if team.finished_at is not None else "running", "subtasks_total": len(graph.ids),
        "subtasks_done": len(done), "posted_at": round(team.posted_at, 3),
        "seconds": round((team.finished_at or now) - team.posted_at, 3),
        "conflicts": len(conflicts), "conflict_ms": sum(c.overlap_ms for c in conflicts),
        "extra_artifacts": sum(n - 1 for n in arts.values()), "unclaimed_artifacts": len(board.unclaimed_artifacts()),
        "stuck": [c.subtask for c in board.stuck(now_ms)], "refused_gaps": len(board.refused_gaps()),
        "gaps": [gap_view(board, g) for g in board.gaps()], "gap_grace_s": team.gap_grace_s,
        "checks": dict(team.checks),
        "rejected": dict(board.rejected),
        "tests": None if team.passed is None else {"passed": sum(team.passed.values()), "total": len(team.passed),
                                                   "by_subtask": team.passed},
        "scoring_error": team.scoring_error,
        "agent": None if team.agent is None else {"agent": team.agent.me, **vars(team.agent.stats)},
    }
    if subtasks:
        view["subtasks"] = [_subtask_view(team, s, now_ms) for s in graph.subtasks]
    return view


def gap_view(board: Board, gap: Gap) -> dict[str, Any]:
    """A gap as the API shows it: who posted it and why, and who closed it (the producer of its result)."""
    applied = gap not in board.refused_gaps()
    result = board.result(gap.subtask) if applied else None
    return {"subtask": gap.subtask, "blocks": gap.blocks, "poster": gap.poster, "need": gap.need,
            "fix": gap.subtask == fix_id(gap.blocks), "ts_ms": gap.ts_ms,
            "status": "refused" if not applied else "closed" if result else "open",
            "closed_by": None if result is None else result.producer}


def _subtask_view(team: Team, subtask: Subtask, now_ms: int) -> dict[str, Any]:
    board = team.board
    result, holder = board.result(subtask.id), board.holder(subtask.id, now_ms)
    return {"id": subtask.id, "depends_on": list(subtask.depends_on),
            "claimants": sorted({c.claimant for c in board.claims(subtask.id)}),
            "holder": None if holder is None else holder.claimant,
            "producer": None if result is None else result.producer,
            "digest": None if result is None else result.digest,
            "content": None if result is None else team.contents.get(result.digest)}


__all__ = ["ANNOUNCE_KIND", "BLOBS_TOPIC", "BLOB_PROTOCOL", "CNET_TOPIC", "ENTRIES_TOPIC", "MAX_GAP_GRACE_S", "MAX_SUBTASKS",
           "MAX_TEST_CHARS", "TEAMS_TOPIC", "Team", "TeamService", "TeamTimings", "graph_wire", "parse_grace",
           "parse_graph", "parse_mode", "parse_tests", "team_view"]
