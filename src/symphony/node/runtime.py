"""One agent's protocol stack on any transport: ledger gossip, Beacon and the pipeline roles.

The daemon runs it on libp2p; tests and benchmarks run many of them on the memory
engine. Keeping the assembly in one place means the simulator measures exactly the
code real nodes run.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import anyio

from symphony.beacon import WarmConnections
from symphony.beacon.gateway import (
    GATEWAY_PROTOCOL,
    RELAY_PROTOCOL,
    FanoutConfig,
    Gateway,
    GatewayFanout,
    RelayResponder,
)
from symphony.beacon.service import BEACON_PROTOCOL, BeaconConfig, BeaconResponder, BeaconSelector
from symphony.capability.vector import (
    HashingTagEncoder,
    SkillScores,
    TagEncoder,
    capability_vector,
    encode_hardware,
    privacy_noise,
)
from symphony.ledger import GossipConfig, Ledger, LedgerConfig, LedgerService
from symphony.ledger.shard import SummaryBook, keeps_shard, shard_of
from symphony.ledger.summaries import SummaryConfig, SummaryService
from symphony.llm.base import ChatModel
from symphony.node.defences import Defences, GuardedTransport
from symphony.node.hardware import ThroughputMeter, coarsen_hardware
from symphony.pipeline.feedback import OUTCOME_PROTOCOL, OutcomeService
from symphony.pipeline.service import EXECUTOR_TAG, PLANNER_TAG, STOP_PROTOCOL, TASK_PROTOCOL, TaskService
from symphony.pipeline.tools import TOOL_TAGS
from symphony.protocol.envelope import ReplayGuard
from symphony.protocol.identity import Identity
from symphony.protocol.messages import Hardware, LedgerRecord, encode_vector
from symphony.transport.base import Transport
from symphony.transport.memory import MemoryNetwork

EventSink = Callable[[str, dict[str, Any]], None]
#: Version of the learned-state document (``LearningStore``).
LEARNING_VERSION = 1


class LearningStore(Protocol):
    """Where an agent keeps what it learned (skill EMA, LinUCB) across restarts."""

    def load(self) -> dict[str, Any] | None:
        """The saved state, None when none was saved; ValueError when it cannot be read back."""

    def save(self, state: dict[str, Any]) -> None:
        """Keep ``state``; OSError when it cannot be written."""


@dataclass(frozen=True)
class LearningFile:
    """A ``LearningStore`` in one JSON file (the data dir's ``learned.json``), replaced atomically."""

    path: Path

    def load(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.path}: {exc}") from exc
        if not isinstance(state, dict):
            raise ValueError(f"{self.path}: not a JSON object")  # noqa: TRY004 - load's contract: ValueError
        return state

    def save(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(state))
            tmp.replace(self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise


def _ignore(kind: str, fields: dict[str, Any]) -> None:
    pass


def _tee(*sinks: EventSink) -> EventSink:
    def emit(kind: str, fields: dict[str, Any]) -> None:
        for sink in sinks:
            sink(kind, fields)
    return emit


@dataclass(frozen=True)
class AgentProfile:
    """What an agent declares about itself (its ledger record's content)."""

    name: str = "agent"
    tags: tuple[str, ...] = ()
    hardware: Hardware = field(default_factory=Hardware)
    #: pipeline roles offered (``planner``, ``executor``); None = both when the agent has a model
    roles: tuple[str, ...] | None = None


def noised(identity: Identity, *, exact: Sequence[float], coarse: Sequence[float], sigma: float) -> list[float]:
    """``coarse`` (the vector of the coarsened hardware) plus ``privacy_noise`` seeded by our signature
    over ``exact``: Ed25519 signing is deterministic and needs the private key, so the noise is fixed per
    content and secret (``AgentRuntime.published_vector``; ``bench.privacy`` measures its cost)."""
    seed = identity.sign(b"symphony-privacy-noise-v1" + encode_vector(list(exact)).encode())
    return list(privacy_noise(coarse, sigma, seed))


class AgentRuntime:
    """Ledger service + beacon responder/selector + task service for one identity.

    ``await runtime.run(task_status=...)`` (e.g. via ``nursery.start``) serves until
    cancelled; it reports started once the agent's record is registered.
    """

    def __init__(
        self,
        *,
        transport: Transport,
        identity: Identity,
        profile: AgentProfile,
        model: ChatModel | None,
        clock: Callable[[], float],
        rng: random.Random | None = None,
        ledger_config: LedgerConfig = LedgerConfig(),
        gossip_config: GossipConfig = GossipConfig(),
        beacon_config: BeaconConfig = BeaconConfig(),
        bootstrap: Sequence[str] = (),
        encoder: TagEncoder | None = None,
        lamport: int = 0,
        on_event: EventSink = _ignore,
        on_own_record: Callable[[LedgerRecord], None] = lambda record: None,
        defences: Defences | None = None,
        reputation_interval_s: float = 10.0,
        ledger: Ledger | None = None,
        shards: int = 0,
        summary_config: SummaryConfig = SummaryConfig(),
        fanout_config: FanoutConfig = FanoutConfig(),
        privacy_sigma: float = 0.0,
        throughput: ThroughputMeter | None = None,
        task_defaults: Mapping[str, Any] | None = None,
        learning_store: LearningStore | None = None,
        learning_interval_s: float = 10.0,
        warm_peers: int = 0,
    ) -> None:
        if shards < 0:
            raise ValueError(f"shards must be 0 (off) or >= 2, not {shards!r}")
        self.shards = shards if shards >= 2 else 0
        self.reputation_interval_s = reputation_interval_s
        self.transport = transport
        self.defences = defences or Defences(clock=clock, on_event=on_event)
        # connections to planners and executors opened as their records arrive, not in a question's round
        self.warm = WarmConnections(limit=warm_peers, roles=(frozenset({PLANNER_TAG}), frozenset({EXECUTOR_TAG})))
        on_event = _tee(on_event, self.defences.observe, self.warm.on_event)
        guarded = GuardedTransport(transport, self.defences)
        transport.on_offence(self.defences.on_transport_offence)
        self.identity = identity
        self.model = model
        self.encoder = encoder or HashingTagEncoder()
        # a tool the executor uses is declared in the record's tags and capability vector (pipeline.tools)
        tools = tuple((task_defaults or {}).get("tools", ()))
        profile = replace(profile, tags=profile.tags + tuple(TOOL_TAGS[t] for t in tools if t in TOOL_TAGS))
        self.profile, self._emit = profile, on_event
        self.privacy_sigma = privacy_sigma
        self.throughput = throughput
        self.learning_store, self.learning_interval_s = learning_store, learning_interval_s
        self._learned = anyio.Event()  # set when skills or LinUCB moved and are not yet published/saved
        saved = self._load_learning()
        self.skills = self._saved_skills(saved)
        self.vector = self._vector(profile, model)
        # a benchmark may hand many simulated agents one pre-filled replica (see bench.systems)
        keeps = keeps_shard(shard_of(identity.agent_id, shards), shards) if self.shards else None
        self.ledger = ledger if ledger is not None else Ledger(ledger_config, lamport=lamport, keeps=keeps)
        roles = profile.roles if profile.roles is not None else (PLANNER_TAG, EXECUTOR_TAG) if model else ()
        record = LedgerRecord(
            agent_id=identity.agent_id, lamport=0, issued_at=0, name=profile.name,
            tags=list(profile.tags + roles)[:32], models=[model.name[:128]] if model else [],
            hardware=self.published_hardware(), capability=encode_vector(self.published_vector()),
        )
        self.gossip = LedgerService(
            transport=guarded, identity=identity, ledger=self.ledger, profile=record, clock=clock,
            rng=rng or random.Random(), config=gossip_config, bootstrap=list(bootstrap), on_event=on_event,
            on_own_record=on_own_record,
        )
        self.responder = BeaconResponder(identity=identity, private_vector=lambda: self.vector,
                                         qos=lambda: self.tasks.qos(), clock=clock, guard=ReplayGuard())
        self.book = SummaryBook(shards=self.shards) if self.shards else None
        self.fanout = None if self.book is None else GatewayFanout(
            transport=transport, identity=identity, book=self.book, clock=clock, config=fanout_config)
        self.selector = BeaconSelector(transport=transport, identity=identity, ledger=self.ledger,
                                       responder=self.responder, clock=clock, config=beacon_config,
                                       on_event=on_event, reputation=self.defences.reputation, fanout=self.fanout)
        self.tasks = TaskService(transport=transport, identity=identity, selector=self.selector, model=model,
                                 encoder=self.encoder, clock=clock, on_event=on_event,
                                 reputation=self.defences.reputation, rng=rng or random.Random(),
                                 **(task_defaults or {}))  # the node's fault knobs (NodeConfig.task_defaults)
        guarded.set_handler(BEACON_PROTOCOL, self.responder.handle)
        guarded.set_handler(TASK_PROTOCOL, self.defences.admit(self.tasks.handle, is_member=self._is_member))
        # a stop is not admitted like work: it only ends work its sender sent (whatever standing the sender has
        # here now, perhaps lowered by the very hop that made it stop), and it costs a cancel
        guarded.set_handler(STOP_PROTOCOL, self.tasks.handle_stop)
        self._set_up_feedback(guarded, clock, on_event, saved)
        self.gateway: Gateway | None = None
        self.summaries: SummaryService | None = None
        if self.book is not None:
            self._serve_shard(guarded, clock, summary_config, on_event)

    def _serve_shard(self, guarded: GuardedTransport, clock: Callable[[], float], config: SummaryConfig,
                     on_event: EventSink) -> None:
        """Sharded mode (architecture §9 "As wired"): answer relayed beacons, serve as a gateway for
        our shard (any member can), and keep every shard's summary."""
        assert self.book is not None
        relay = RelayResponder(responder=self.responder, identity=self.identity, clock=clock,
                               guard=self.responder.guard)
        self.gateway = Gateway(transport=self.transport, identity=self.identity, ledger=self.ledger,
                               shards=self.shards, relay=relay, clock=clock)
        guarded.set_handler(RELAY_PROTOCOL, relay.handle)
        guarded.set_handler(GATEWAY_PROTOCOL, self.gateway.handle)
        self.summaries = SummaryService(transport=guarded, identity=self.identity, ledger=self.ledger,
                                        gossip=self.gossip, book=self.book, clock=clock, rng=random.Random(self.agent_id),
                                        config=config,
                                        on_event=on_event)

    def holds_slots(self, peer: str) -> bool:
        """Whether ``peer`` gets a member's request slots at the transport (``Libp2pTransport.set_membership``):
        a member not blacklisted here; strangers share a small pool of their own."""
        now = self.defences.clock()
        return self._is_member(peer, now) and not self.defences.reputation.is_blacklisted(peer, now=now)

    def _is_member(self, peer: str, now: float) -> bool:
        """Whether ``peer`` may hand us a Task: it holds an available record in our ledger.

        A sharded replica keeps only its own shard's records, so a member of another shard cannot
        be checked here; only its standing and the per-peer bounds apply to it (``Defences.admit``)."""
        if self.ledger.keeps is not None and not self.ledger.keeps(peer):
            return True
        return self.ledger.is_available(peer, now=now)

    def _vector(self, profile: AgentProfile, model: ChatModel | None) -> list[float]:
        """c_j from declared skills (+ model name), hardware and the skill EMA prior."""
        hw = profile.hardware
        text = " ".join(profile.tags + ((model.name,) if model else ()))
        return list(capability_vector(
            tags=self.encoder.encode(text),
            hardware=encode_hardware(memory_gb=hw.memory_gb, accelerator=hw.accelerator, tokens_per_s=hw.tokens_per_s,
                                     cores=hw.cores),
            skills=self.skills,
        ))

    # ---- what the ledger sees (DESIGN §2: published vectors may be coarsened and noised) -------

    def published_hardware(self) -> Hardware:
        """The record's hardware: exact, or coarsened (``coarsen_hardware``) when privacy noise is on."""
        return coarsen_hardware(self.profile.hardware) if self.privacy_sigma else self.profile.hardware

    def published_vector(self, exact: list[float] | None = None) -> list[float]:
        """The record's capability vector for ``exact`` (default ``self.vector``, which the beacon responder
        keeps scoring with).

        With ``privacy_sigma`` > 0: built from the coarsened hardware, plus calibrated Gaussian noise
        (``privacy_noise``) drawn once per content: its seed is our signature (deterministic Ed25519,
        secret to us) over the exact vector, so republishing the same content republishes the same
        noise (a watcher cannot average it away), and nobody else can recompute it to test a guess.
        """
        exact = self.vector if exact is None else exact
        if not self.privacy_sigma:
            return list(exact)
        coarse = self._vector(replace(self.profile, hardware=self.published_hardware()), self.model)
        return noised(self.identity, exact=exact, coarse=coarse, sigma=self.privacy_sigma)

    async def _publish_throughput(self) -> None:
        """Republish hardware + vector (ledger UPDATE) when the measured tokens/s moves materially
        (``ThroughputMeter``: > 25 %, at most once a minute by default)."""
        assert self.throughput is not None
        while True:
            tokens_per_s = round(await self.throughput.next_publication(), 1)
            hardware = self.profile.hardware.model_copy(update={"tokens_per_s": tokens_per_s})
            self.profile = replace(self.profile, hardware=hardware)
            self.vector = self._vector(self.profile, self.model)
            await self.gossip.update(hardware=self.published_hardware(),
                                     capability=encode_vector(self.published_vector()))

    # ---- outcome feedback: learned skills and LinUCB (pipeline.feedback) -----------------------

    def _set_up_feedback(self, guarded: GuardedTransport, clock: Callable[[], float], on_event: EventSink,
                         saved: dict[str, Any] | None) -> None:
        """Serve ``OUTCOME_PROTOCOL`` behind the admission guard; restore the planner's saved LinUCB."""
        self.feedback = OutcomeService(transport=self.transport, identity=self.identity, clock=clock,
                                       linucb=self.tasks.linucb, learn=self.learn_skill, changed=self._mark_learned,
                                       on_event=on_event)
        self.tasks.feedback = self.feedback
        guarded.set_handler(OUTCOME_PROTOCOL, self.defences.admit(self.feedback.handle, is_member=self._is_member))
        if saved is not None and "linucb" in saved:
            try:
                self.tasks.linucb.load_state(saved["linucb"])
            except (ValueError, TypeError, AttributeError) as exc:
                self._emit("learning_load_failed", {"part": "linucb", "error": str(exc)[:200]})

    def learn_skill(self, task_type: str, outcome: float) -> None:
        """Move the skill EMA of ``task_type`` toward ``outcome``. The vector this agent scores beacons
        with changes when it is republished (``_publish_learning``), not before: a beacon's initiator
        caps (and counts against us) a claimed score above phi(published vector, r) + tolerance."""
        before = self.skills.score(task_type)
        self.skills = self.skills.update(task_type, outcome)
        self._emit("skill_learned", {"task_type": task_type, "outcome": round(outcome, 4),
                                     "before": round(before, 4), "score": round(self.skills.score(task_type), 4)})
        self._mark_learned()

    def _mark_learned(self) -> None:
        self._learned.set()

    def _load_learning(self) -> dict[str, Any] | None:
        """The saved learned state; an unreadable one is reported and learning starts afresh."""
        if self.learning_store is None:
            return None
        try:
            saved = self.learning_store.load()
        except ValueError as exc:
            self._emit("learning_load_failed", {"part": "file", "error": str(exc)[:200]})
            return None
        if saved is not None and saved.get("version") != LEARNING_VERSION:
            self._emit("learning_load_failed", {"part": "file", "error": f"version {saved.get('version')!r}"})
            return None
        return saved

    def _saved_skills(self, saved: dict[str, Any] | None) -> SkillScores:
        if saved is None or "skills" not in saved:
            return SkillScores()
        try:
            return SkillScores(tuple(float(v) for v in saved["skills"]))
        except (ValueError, TypeError) as exc:
            self._emit("learning_load_failed", {"part": "skills", "error": str(exc)[:200]})
            return SkillScores()

    def learning_state(self) -> dict[str, Any]:
        """What ``learning_store`` keeps: the skill EMA and the planner's LinUCB arms."""
        return {"version": LEARNING_VERSION, "skills": list(self.skills.values), "linucb": self.tasks.linucb.state()}

    def _save_learning(self) -> None:
        if self.learning_store is None:
            return
        try:
            self.learning_store.save(self.learning_state())
        except OSError as exc:
            self._emit("learning_save_failed", {"error": exc.strerror or str(exc)})

    async def _publish_learning(self) -> None:
        """Republish our record (UPDATE with the new capability vector) and save the learned state when
        they moved, at most once per ``learning_interval_s``: outcomes arriving meanwhile coalesce."""
        try:
            while True:
                await self._learned.wait()
                self._learned = anyio.Event()
                vector = self._vector(self.profile, self.model)
                capability = encode_vector(self.published_vector(vector))  # noised when privacy is on
                own = self.gossip.own_record
                if own is not None and own.capability != capability:
                    record = await self.gossip.update(capability=capability)
                    self.vector = vector  # scored with from now on, as peers will see it
                    self._emit("skills_published", {"lamport": record.lamport})
                self._save_learning()
                await anyio.sleep(self.learning_interval_s)
        finally:
            if self._learned.is_set():  # what moved since the last save survives a shutdown
                self._save_learning()

    @property
    def agent_id(self) -> str:
        return self.identity.agent_id

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.gossip.run)
            await self.gossip.register()
            tg.start_soon(self._share_reputation)
            if self.throughput is not None:
                tg.start_soon(self._publish_throughput)
            tg.start_soon(self._publish_learning)
            tg.start_soon(self.feedback.run)  # outcome delivery, off the answer path
            tg.start_soon(self.warm.run, self.selector)
            if self.summaries is not None:
                tg.start_soon(self.summaries.run)
            task_status.started()

    async def _share_reputation(self) -> None:
        """Publish our blacklist in our record when it changes; absorb others' accusations."""
        while True:
            await anyio.sleep(self.reputation_interval_s)
            self.defences.absorb(list(self.ledger.records.values()), me=self.agent_id)
            accusations = self.defences.accusations(now=self.defences.clock())
            own = self.gossip.own_record
            if own is not None and own.reputation != accusations:
                await self.gossip.update(reputation=accusations)


@dataclass(frozen=True)
class SimulatedAgent:
    """One agent to start on a memory network: who it is, its model and what it declares."""

    identity: Identity
    model: ChatModel | None
    profile: AgentProfile


def _converged(runtime: AgentRuntime, sizes: Counter[int], *, now: float) -> bool:
    """Whether ``runtime`` holds every record it keeps, available, and (sharded) every shard's full summary;
    ``sizes`` counts the agents per shard (all of them under shard 0 when unsharded)."""
    if runtime.book is None:
        return len(runtime.ledger.query(now=now)) == sizes.total()
    summaries = {s.shard: s.members for s in runtime.book.fresh(now=now)}
    mine = shard_of(runtime.agent_id, runtime.shards)
    return len(runtime.ledger.query(now=now)) == sizes[mine] and summaries == sizes


@asynccontextmanager
async def open_simulated_agents(
    net: MemoryNetwork,
    agents: Sequence[SimulatedAgent],
    *,
    clock: Callable[[], float],
    ledger_config: LedgerConfig = LedgerConfig(),
    gossip_config: GossipConfig = GossipConfig(),
    converge_timeout_s: float = 60.0,
    shards: int = 0,
    task_defaults: Mapping[str, Any] | None = None,
    warm_peers: int = 0,
) -> AsyncIterator[list[AgentRuntime]]:
    """Start one ``AgentRuntime`` per agent on ``net``, each joining through the first, and
    yield them once every replica holds every agent's available record (sharded, ``shards`` >= 2:
    its own shard's, plus every shard's summary counting all its members). Used by tests and
    benchmarks so they run exactly the stack a node runs."""
    runtimes: list[AgentRuntime] = []
    async with anyio.create_task_group() as tg, AsyncExitStack() as stack:
        for n, agent in enumerate(agents):
            transport = await stack.enter_async_context(net.open_node(agent.identity))
            runtime = AgentRuntime(
                transport=transport, identity=agent.identity, model=agent.model, profile=agent.profile,
                clock=clock, rng=random.Random(n), ledger_config=ledger_config, gossip_config=gossip_config,
                bootstrap=runtimes[0].transport.listen_addrs() if runtimes else [], shards=shards,
                task_defaults=task_defaults, warm_peers=warm_peers,
            )
            await tg.start(runtime.run)
            runtimes.append(runtime)
        with anyio.fail_after(converge_timeout_s):
            sizes = Counter(shard_of(r.agent_id, shards) if shards >= 2 else 0 for r in runtimes)
            while not all(_converged(r, sizes, now=clock()) for r in runtimes):
                await anyio.sleep(0.05)
        yield runtimes
        tg.cancel_scope.cancel()
