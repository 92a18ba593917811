"""``symphony bench robustness``: crashes, partitions, network conditions, Byzantine agents (issue 7).

Every scenario runs the real protocol stack (``node.runtime.AgentRuntime``: ledger gossip,
Beacon, planners, executors, voting, defences) of N agents on the in-process memory engine,
each agent with the ``scripted:arith`` test-double model, so every question has a known right
answer and accuracy measures the *network's* robustness, not a language model's. Questions are
arithmetic expressions ("What is 12 + 7 * 3?") drawn from the seed.

- **crash**: kill a fraction of the agents (planners, executors, initiators alike) at random
  moments while tasks run. A client whose initiator dies re-asks another live node with the
  same task ID; planners key chains by task ID, so a re-ask reuses the chains already done.
- **churn**: a fraction of the agents leaves gracefully (announces ``leaving``) and rejoins with
  the same identity a few seconds later, while questions keep coming.
- **partition**: cut a fraction of the agents off, keep asking on both sides, update a ledger
  record on each side, heal, and time until every replica holds the same ledger and sees every
  agent available again.
- **network**: Table 7-style link conditions (latency, bandwidth) on every link; run on the
  real clock so protocol CPU counts; the model costs ~0, so wall time per task is the overhead.
- **hostile**: a stranger attacks three real ``symphony node`` processes (``bench.hostile``): garbage
  on every protocol, a signed task flood, slot holding, cross-site requests, sandbox escapes.
- **byzantine**: a fraction of the agents runs one attack from ``bench.byzantine``; accuracy loss
  against the clean run with the same seed, detection rate (Byzantine agents blacklisted by at
  least one honest node) and detection time (first offence seen by an honest node to the first
  blacklisting), and honest agents wrongly blacklisted.

crash, partition and byzantine run in virtual time (``trio.testing.MockClock``, autojump):
latencies are network and timeout time, without CPU; they are deterministic per seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import httpx
import trio
from rich.console import Console

from symphony.bench.byzantine import Misdeeds, attack, corrupt
from symphony.bench.hostile import hostile_scenario
from symphony.bench.hostile import markdown as hostile_markdown
from symphony.bench.virtual import run_virtual
from symphony.ledger import GossipConfig, LedgerConfig
from symphony.llm import ChatModel
from symphony.llm.scripted import arith_model, evaluate
from symphony.node import AgentProfile, AgentRuntime, SimulatedAgent, open_simulated_agents
from symphony.pipeline import answers_equivalent
from symphony.pipeline.service import EXECUTOR_TAG, PLANNER_TAG, AskOptions, HopTimeout, TaskFailed
from symphony.protocol import Hardware, Identity
from symphony.testing import NodeProcess, wait_for
from symphony.testing import open_swarm as open_process_swarm
from symphony.transport import LinkModel, MemoryNetwork

EPOCH = 1_700_000_000.0
SKILLS = ("arithmetic", "algebra", "reasoning", "code", "writing", "science", "finance", "logic")
SCENARIOS = ("crash", "churn", "process-crash", "targeted-kill", "partition", "network", "byzantine", "hostile")
ATTACKS = ("wrong", "inflate", "squat", "replay", "forge", "records", "flood")
# Table 7-style rows: (one-way latency ms, bandwidth Mbps)
NETWORK_ROWS = ((0, 1000), (10, 100), (50, 100), (100, 10), (200, 10), (50, 2), (200, 2))
#: the fractions of agents each scenario hits, one row per fraction (``symphony bench robustness``)
FRACTIONS = {"crash": (0.05, 0.10, 0.20), "churn": (0.10, 0.20), "partition": (0.10, 0.25, 0.50),
             "byzantine": (0.05, 0.10, 0.15)}


def _clock() -> float:
    return EPOCH + trio.current_time()


@dataclass(frozen=True)
class Setup:
    """One swarm and its workload."""

    agents: int = 20
    tasks: int = 60
    concurrency: int = 4
    seed: int = 0
    cots: int = 3
    latency_s: float = 0.005
    bandwidth_mbps: float | None = None
    deadline_s: float = 60.0
    hop_timeout: HopTimeout = 5.0  # fixed seconds, "adaptive" or "off" (pipeline.chain.hop_timeout_s)
    plan_timeout: HopTimeout = 10.0  # per planner request: seconds, "adaptive" (as on real nodes) or "off"
    entries: int = 0  # initiators the clients use (0: any live node)
    redundancy: int = 2  # executors per sub-task (cross-checked)
    replans: int = 1  # failed steps a chain may re-plan
    arrival_s: float = 0.5  # one new question every arrival_s (bounded by concurrency)


@dataclass
class Outcome:
    task_id: str
    ok: bool = False
    correct: bool = False
    started: float = 0.0
    finished: float = 0.0
    asks: int = 0

    @property
    def latency_s(self) -> float:
        return self.finished - self.started


# ---- swarm and workload ---------------------------------------------------------------------------


def questions(n: int, rng: random.Random) -> list[tuple[str, str]]:
    """``n`` arithmetic questions with their right answers."""
    out = []
    for _ in range(n):
        a, b, c = rng.randint(2, 99), rng.randint(2, 30), rng.randint(2, 30)
        expression = f"{a} {rng.choice('+-')} {b} * {c}"
        out.append((f"What is {expression}?", evaluate(expression)))
    return out


def _profile(n: int, rng: random.Random) -> AgentProfile:
    """Agents differ in declared skills and hardware, so beacon scores differ as in a real swarm."""
    tags = ("math", *rng.sample(SKILLS, rng.randint(1, 3)))
    hardware = Hardware(memory_gb=rng.choice((8, 16, 32, 64)), tokens_per_s=rng.uniform(5, 100))
    return AgentProfile(name=f"a{n}", tags=tags, hardware=hardware)


def _identity(seed: int, n: int) -> Identity:
    return Identity(hashlib.sha256(f"robustness/{seed}/{n}".encode()).digest())


@asynccontextmanager
async def open_swarm(setup: Setup, *, byzantine: dict[int, frozenset[str]] | None = None,
                     misdeeds: dict[int, Misdeeds] | None = None,
                     clock: Callable[[], float] = _clock,
                     model_for: Callable[[int], ChatModel] = lambda n: arith_model(),
                     ) -> AsyncIterator[tuple[MemoryNetwork, list[AgentRuntime]]]:
    """Start ``setup.agents`` agents (index -> behaviours for the Byzantine ones, whose bad acts
    are counted in ``misdeeds``; ``model_for(index)`` their models) and yield them."""
    bandwidth = None if setup.bandwidth_mbps is None else setup.bandwidth_mbps * 1e6
    net = MemoryNetwork(link=LinkModel(latency_s=setup.latency_s, bandwidth_bps=bandwidth),
                        rng=random.Random(setup.seed))
    rng = random.Random(f"profiles/{setup.seed}")
    specs = [SimulatedAgent(_identity(setup.seed, n), model_for(n), _profile(n, rng)) for n in range(setup.agents)]
    gossip = GossipConfig(anti_entropy_interval_s=2.0, maintain_interval_s=0.5, target_degree=setup.agents - 1)
    async with open_simulated_agents(net, specs, clock=clock, ledger_config=LedgerConfig(heartbeat_interval_s=5.0),
                                     gossip_config=gossip, converge_timeout_s=300) as nodes:
        for node in nodes:
            node.tasks.hop_timeout = setup.hop_timeout
            node.tasks.plan_timeout = setup.plan_timeout
            node.tasks.redundancy = setup.redundancy
            node.tasks.replans = setup.replans
            node.reputation_interval_s = 1.0
        async with anyio.create_task_group() as tg:
            for index, behaviours in (byzantine or {}).items():
                acts = corrupt(nodes[index], behaviours, (misdeeds or {}).get(index))
                tg.start_soon(attack, nodes[index], behaviours, random.Random(setup.seed * 1000 + index), acts)
            yield net, nodes
            tg.cancel_scope.cancel()


@dataclass
class Client:
    """Asks questions the way a user's client would: at one node, re-asking another if it dies."""

    nodes: list[AgentRuntime]
    options: AskOptions
    rng: random.Random
    entries: list[int] = field(default_factory=list)
    dead: dict[str, anyio.Event] = field(default_factory=dict)
    clock: Callable[[], float] = _clock
    asking: Counter[int] = field(default_factory=Counter)  # node index -> questions open there now

    def alive(self) -> list[int]:
        pool = self.entries or range(len(self.nodes))
        return [i for i in pool if not self.dead.get(self.nodes[i].agent_id, anyio.Event()).is_set()]

    def event(self, agent_id: str) -> anyio.Event:
        return self.dead.setdefault(agent_id, anyio.Event())

    async def ask(self, task_id: str, question: str, truth: str, *, tries: int = 4) -> Outcome:
        outcome = Outcome(task_id, started=self.clock())
        for _ in range(tries):
            alive = self.alive()
            if not alive:
                break
            index = self.rng.choice(alive)
            node = self.nodes[index]
            outcome.asks += 1
            self.asking[index] += 1
            try:
                trace = await self._ask_on(node, task_id, question)
            finally:
                self.asking[index] -= 1
                if not self.asking[index]:
                    del self.asking[index]
            if trace is not None:
                outcome.ok = True
                outcome.correct = answers_equivalent(str(trace["answer"]), truth, "number")
                break
        outcome.finished = self.clock()
        return outcome

    async def _ask_on(self, node: AgentRuntime, task_id: str, question: str) -> dict[str, Any] | None:
        """The trace, or None if the node failed or died before answering (the client saw it go)."""
        died = self.event(node.agent_id)
        result: list[dict[str, Any]] = []
        async with anyio.create_task_group() as tg:
            async def watch() -> None:
                await died.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            try:
                result.append(await node.tasks.ask(question, self.options, task_id=task_id))
            except TaskFailed:
                pass
            tg.cancel_scope.cancel()
        return result[0] if result and not died.is_set() else None


async def run_workload(client: Client, items: Sequence[tuple[str, str]], *, concurrency: int, prefix: str,
                       arrival_s: float = 0.0,
                       on_start: Callable[[int], None] = lambda index: None) -> list[Outcome]:
    """Ask ``items``, one every ``arrival_s`` and at most ``concurrency`` at once; outcomes in order."""
    outcomes: list[Outcome] = []
    limiter = anyio.Semaphore(concurrency)

    async def one(index: int, question: str, truth: str) -> None:
        on_start(index)
        outcomes.append(await client.ask(f"{prefix}-{index}", question, truth))
        limiter.release()

    async with anyio.create_task_group() as tg:
        for index, (question, truth) in enumerate(items):
            await limiter.acquire()
            tg.start_soon(one, index, question, truth)
            await anyio.sleep(arrival_s)
    return sorted(outcomes, key=lambda o: int(o.task_id.rsplit("-", 1)[1]))


def _options(setup: Setup) -> AskOptions:
    # every chain at once (adaptive chains would make the workload depend on the answers, and the rows incomparable);
    # planned chains of up to 3 steps, as the tabled runs had: faults strike planners and executors mid-chain
    return AskOptions(cots=setup.cots, deadline_s=setup.deadline_s, answer_kind="number", adaptive=False, max_steps=3)


def _summary(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    latencies = [o.latency_s for o in outcomes if o.ok]
    return {
        "tasks": len(outcomes),
        "completion": sum(o.ok for o in outcomes) / len(outcomes) if outcomes else 0.0,
        "accuracy": sum(o.correct for o in outcomes) / len(outcomes) if outcomes else 0.0,
        "latency_p50_s": statistics.median(latencies) if latencies else None,
        "latency_p95_s": _p95(latencies),
        "re_asks": sum(max(0, o.asks - 1) for o in outcomes),
    }


def _p95(values: Sequence[float]) -> float | None:
    return sorted(values)[min(len(values) - 1, int(0.95 * len(values)))] if values else None


# ---- scenarios ----------------------------------------------------------------------------------------


async def crash_scenario(setup: Setup, fraction: float,
                         model_for: Callable[[int], ChatModel] = lambda n: arith_model()) -> dict[str, Any]:
    """Kill ``fraction`` of the agents at random moments during the workload, each while it works.

    A kill is scheduled at a random task's start plus a random delay within a typical task's
    latency; the victim is then drawn from the agents busy at that instant (initiators of open
    questions, planners and executors with a task in hand), so every kill lands mid-task."""
    rng = random.Random(setup.seed)
    items = questions(setup.tasks, rng)
    async with open_swarm(setup, model_for=model_for) as (net, nodes):
        client = Client(nodes, _options(setup), random.Random(setup.seed + 1))
        warm = await run_workload(client, items[:3], concurrency=1, prefix="warm")
        typical = statistics.median(o.latency_s for o in warm)
        count = round(fraction * len(nodes))
        schedule: dict[int, list[float]] = {}
        for _ in range(count):
            schedule.setdefault(rng.randrange(len(items)), []).append(rng.uniform(0, typical))
        kills: list[tuple[float, str]] = []

        async def kill_later(delay: float) -> None:
            await anyio.sleep(delay)
            alive = [i for i in range(len(nodes)) if not client.event(nodes[i].agent_id).is_set()]
            initiators = set(client.asking) & set(alive)
            busy = [i for i in alive if nodes[i].tasks.load.active or i in initiators]
            victim = rng.choice(busy or alive)
            net.kill(nodes[victim].agent_id)
            client.event(nodes[victim].agent_id).set()
            kills.append((_clock(), "initiator" if victim in initiators else "worker" if busy else "idle"))

        async with anyio.create_task_group() as killers:
            def on_start(index: int) -> None:
                for delay in schedule.get(index, []):
                    killers.start_soon(kill_later, delay)
            outcomes = await run_workload(client, items, concurrency=setup.concurrency, prefix="crash",
                                          arrival_s=setup.arrival_s, on_start=on_start)
    affected = [o for o in outcomes if any(o.started <= k <= o.finished for k, _ in kills)]
    calm = [o.latency_s for o in outcomes if o not in affected and o.ok]
    base = statistics.median(calm) if calm else typical
    recovery = [max(0.0, o.latency_s - base) for o in affected if o.ok]
    roles = Counter(role for _, role in kills)
    return {"scenario": "crash", "fraction": fraction, "killed": len(kills), "killed_roles": dict(roles),
            **_summary(outcomes), "affected_tasks": len(affected),
            "recovery_p50_s": statistics.median(recovery) if recovery else None,
            "recovery_max_s": max(recovery) if recovery else None}


async def churn_scenario(setup: Setup, fraction: float, *, down_s: float = 5.0) -> dict[str, Any]:
    """Graceful leave and rejoin: ``fraction`` of the agents leave (``LedgerService.leave``, then go)
    at random moments, stay away ``down_s`` and come back with the same identity and address.
    Reports completion meanwhile and how long until every other agent sees a rejoined one available."""
    rng = random.Random(setup.seed)
    items = questions(setup.tasks, rng)
    async with open_swarm(setup) as (net, nodes):
        client = Client(nodes, _options(setup), random.Random(setup.seed + 1))
        leavers = rng.sample(range(len(nodes)), round(fraction * len(nodes)))
        horizon = setup.tasks * setup.arrival_s
        visible: list[float] = []

        async def cycle(index: int, at: float, tg: anyio.abc.TaskGroup) -> None:
            await anyio.sleep(at)
            old = nodes[index]
            client.event(old.agent_id).set()
            await old.gossip.leave()
            net.kill(old.agent_id)
            await anyio.sleep(down_s)
            fresh = await _rejoin(net, old, [n for i, n in enumerate(nodes) if i != index], tg)
            nodes[index] = fresh
            client.dead[fresh.agent_id] = anyio.Event()
            back = _clock()
            def seen() -> bool:  # by every other agent up now (some may be away on their own cycle)
                return all(o.ledger.is_available(fresh.agent_id, now=_clock()) for o in nodes
                           if o is not fresh and not client.event(o.agent_id).is_set())

            with anyio.fail_after(120):
                while not seen():
                    await anyio.sleep(0.05)
            visible.append(_clock() - back)

        async with anyio.create_task_group() as tg:
            async with anyio.create_task_group() as cycles:
                for index in leavers:
                    cycles.start_soon(cycle, index, rng.uniform(0, horizon * 0.6), tg)
                outcomes = await run_workload(client, items, concurrency=setup.concurrency, prefix="churn",
                                              arrival_s=setup.arrival_s)
            tg.cancel_scope.cancel()
    return {"scenario": "churn", "fraction": fraction, "left_and_rejoined": len(visible), **_summary(outcomes),
            "rejoin_visible_p50_s": statistics.median(visible) if visible else None,
            "rejoin_visible_max_s": max(visible) if visible else None}


async def _rejoin(net: MemoryNetwork, old: AgentRuntime, others: Sequence[AgentRuntime],
                  tg: anyio.abc.TaskGroup) -> AgentRuntime:
    """Restart ``old``'s agent (same identity, model, declared profile, address; a newer lamport)."""
    record = old.gossip.own_record
    assert record is not None
    profile = AgentProfile(name=record.name, hardware=record.hardware,
                           tags=tuple(t for t in record.tags if t not in (PLANNER_TAG, EXECUTOR_TAG)))
    box: list[AgentRuntime] = []

    async def serve(*, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with net.open_node(old.identity) as transport:
            fresh = AgentRuntime(transport=transport, identity=old.identity, model=old.model, profile=profile,
                                 clock=old.tasks.clock, rng=random.Random(old.agent_id),
                                 ledger_config=old.ledger.config, gossip_config=old.gossip.config,
                                 bootstrap=[a for o in others[:2] for a in o.transport.listen_addrs()],
                                 lamport=record.lamport)
            for name in ("hop_timeout", "plan_timeout", "redundancy", "replans"):
                setattr(fresh.tasks, name, getattr(old.tasks, name))
            fresh.reputation_interval_s = old.reputation_interval_s
            box.append(fresh)
            await fresh.run(task_status=task_status)

    await tg.start(serve)
    return box[0]


async def partition_scenario(setup: Setup, fraction: float, *, hold_s: float = 20.0) -> dict[str, Any]:
    """Cut ``fraction`` of the agents off for ``hold_s``, ask on both sides, heal, time convergence."""
    rng = random.Random(setup.seed)
    items = questions(setup.tasks, rng)
    async with open_swarm(setup) as (net, nodes):
        cut = sorted(rng.sample(range(len(nodes)), max(1, round(fraction * len(nodes)))))
        rest = [i for i in range(len(nodes)) if i not in cut]
        net.partition([nodes[i].agent_id for i in cut])
        cut_at = _clock()
        side_a = Client(nodes, _options(setup), random.Random(1), entries=rest)
        side_b = Client(nodes, _options(setup), random.Random(2), entries=cut)
        half = len(items) // 2
        results: dict[str, list[Outcome]] = {}

        async def side(name: str, client: Client, chunk: Sequence[tuple[str, str]]) -> None:
            results[name] = await run_workload(client, chunk, concurrency=setup.concurrency, prefix=name,
                                               arrival_s=setup.arrival_s)

        async with anyio.create_task_group() as tg:
            tg.start_soon(side, "major", side_a, items[:half])
            tg.start_soon(side, "minor", side_b, items[half:])
            await nodes[rest[0]].gossip.update(name="updated-in-major")
            await nodes[cut[0]].gossip.update(name="updated-in-minor")
        await anyio.sleep(max(0.0, hold_s - (_clock() - cut_at)))
        net.heal()
        healed = _clock()
        converge_s = await _converged(nodes, timeout=120.0) - healed
        after = await run_workload(Client(nodes, _options(setup), random.Random(3)), items[:10],
                                   concurrency=setup.concurrency, prefix="healed")
    return {"scenario": "partition", "fraction": fraction, "isolated": len(cut),
            "major": _summary(results["major"]), "minor": _summary(results["minor"]),
            "converge_s": converge_s, "after_heal": _summary(after)}


async def _converged(nodes: Sequence[AgentRuntime], *, timeout: float) -> float:
    """Wait until every replica has the same ledger and sees every agent available; return the time."""
    with anyio.fail_after(timeout):
        while True:
            now = _clock()
            hashes = {n.ledger.digest_hash() for n in nodes}
            if len(hashes) == 1 and all(len(n.ledger.query(now=now)) == len(nodes) for n in nodes):
                return now
            await anyio.sleep(0.05)


async def network_scenario(setup: Setup, latency_ms: float, bandwidth_mbps: float) -> dict[str, Any]:
    """Wall time per task under one link condition (run on the real clock)."""
    rng = random.Random(setup.seed)
    items = questions(setup.tasks, rng)
    conditioned = replace(setup, latency_s=latency_ms / 1000, bandwidth_mbps=bandwidth_mbps)
    async with open_swarm(conditioned, clock=time.time) as (_, nodes):
        client = Client(nodes, _options(setup), random.Random(1), entries=[0], clock=time.time)
        outcomes = await run_workload(client, items, concurrency=1, prefix="net")
        sent = sum(sum(n.transport.stats.bytes_sent.values()) for n in nodes)
    return {"scenario": "network", "latency_ms": latency_ms, "bandwidth_mbps": bandwidth_mbps,
            **_summary(outcomes), "bytes_sent_total": sent}


async def byzantine_scenario(setup: Setup, attack_name: str, fraction: float) -> dict[str, Any]:
    """A ``fraction`` of agents runs ``attack_name`` (``inflate`` also answers wrong, to profit from it)."""
    rng = random.Random(setup.seed)
    items = questions(setup.tasks, rng)
    entries = list(range(max(1, setup.entries)))
    pool = [i for i in range(setup.agents) if i not in entries]
    bad = sorted(rng.sample(pool, round(fraction * setup.agents)))
    behaviours = frozenset({attack_name, "wrong"} if attack_name == "inflate" else {attack_name})
    acts = {i: Misdeeds() for i in bad}
    async with open_swarm(setup, byzantine={i: behaviours for i in bad}, misdeeds=acts) as (_, nodes):
        started = _clock()
        client = Client(nodes, _options(setup), random.Random(1), entries=entries)
        outcomes = await run_workload(client, items, concurrency=setup.concurrency, prefix="byz",
                                      arrival_s=setup.arrival_s)
        honest = [n for i, n in enumerate(nodes) if i not in bad]
        acted = [i for i in bad if acts[i].acts]
        detections = [_detection(nodes[i].agent_id, acts[i], honest) for i in acted]
        wrongly = sum(1 for i, n in enumerate(nodes) if i not in bad and _detection(n.agent_id, Misdeeds(), honest)
                      is not None)
        refused = sum(sum(h.defences.rejected.values()) for h in honest)
    times = [d for d in detections if d is not None]
    return {"scenario": "byzantine", "attack": attack_name, "fraction": fraction, "byzantine": len(bad),
            "acted": len(acted), "bad_acts": sum(a.acts for a in acts.values()), **_summary(outcomes),
            "detected": len(times), "detection_rate": len(times) / len(acted) if acted else None,
            "detection_p50_s": statistics.median(times) if times else None,
            "detection_max_s": max(times) if times else None, "honest_blacklisted": wrongly,
            "rejections_counted": refused, "run_s": _clock() - started}


def _detection(agent_id: str, misdeeds: Misdeeds, honest: Sequence[AgentRuntime]) -> float | None:
    """Seconds from the agent's first bad act to the first time an honest node blacklisted it, or None."""
    listed = [s.first_blacklisted for h in honest if (s := h.defences.reputation.standing(agent_id)) is not None
              and s.first_blacklisted is not None]
    if not listed:
        return None
    return max(0.0, min(listed) - (misdeeds.first if misdeeds.first is not None else min(listed)))


def process_crash_scenario(root: Path, *, agents: int = 6, tasks: int = 12, kills: int = 2,
                           seed: int = 0) -> dict[str, Any]:
    """SIGKILL real ``symphony node`` processes mid-task: the first victim is the initiator of the
    task in flight, the second the bootstrap node, then anyone. The client polls its initiator
    over HTTP and, when the connection fails, re-asks another live node under the same
    client-chosen task ID, so planners hand back the chains they already finished; recovery is
    the time from the kill to the answer of the re-asked question."""
    rng = random.Random(seed)
    items = questions(tasks, rng)
    kill_at = set(rng.sample(range(1, tasks), min(kills, tasks - 1)))
    outcomes: list[dict[str, Any]] = []
    with open_process_swarm(root, heartbeat=1.0) as swarm:
        boot = swarm.spawn("n0", args=("--model", "scripted:arith")).wait_ready()
        rest = [swarm.spawn(f"n{i}", bootstrap=boot, args=("--model", "scripted:arith")) for i in range(1, agents)]
        nodes = [boot] + [n.wait_ready() for n in rest]
        wait_for(lambda: all(len(n.ledger()) == agents for n in nodes), timeout=60, what="every ledger complete")
        alive = list(range(agents))
        typical = 0.5
        roles: list[str] = []
        for index, (question, truth) in enumerate(items):
            started = time.monotonic()
            initiator = rng.choice(alive)
            task_id = _post_task(nodes[initiator], question, uuid.uuid4().hex)
            killed: float | None = None
            if index in kill_at:
                time.sleep(rng.uniform(0, typical))
                kind = ("initiator", "bootstrap")[len(roles)] if len(roles) < 2 else "random"
                victim = initiator if kind == "initiator" else 0 if kind == "bootstrap" and 0 in alive \
                    else rng.choice(alive)
                nodes[victim].kill()
                alive.remove(victim)
                roles.append(kind)
                killed = time.monotonic()
            record, asks = _poll_task(nodes, initiator, task_id, question, alive, rng)
            finished = time.monotonic()
            outcomes.append({"ok": record is not None and record.get("status") == "done",
                             "killed": roles[-1] if killed is not None else None,
                             "correct": record is not None and answers_equivalent(str(record.get("answer")), truth,
                                                                                  "number"),
                             "latency_s": finished - started, "asks": asks,
                             "recovery_s": None if killed is None else finished - killed})
            if killed is None and outcomes[-1]["ok"]:
                typical = statistics.median(o["latency_s"] for o in outcomes if o["recovery_s"] is None)
    calm = [o["latency_s"] for o in outcomes if o["recovery_s"] is None and o["ok"]]
    recovery = [o["recovery_s"] for o in outcomes if o["recovery_s"] is not None and o["ok"]]
    return {"scenario": "process-crash", "agents": agents, "killed": len(kill_at), "killed_roles": roles,
            "tasks": len(outcomes),
            "completion": sum(o["ok"] for o in outcomes) / len(outcomes),
            "accuracy": sum(o["correct"] for o in outcomes) / len(outcomes),
            "latency_p50_s": statistics.median(calm) if calm else None,
            "recovery_p50_s": statistics.median(recovery) if recovery else None,
            "recovery_max_s": max(recovery) if recovery else None,
            "re_asks": sum(o["asks"] - 1 for o in outcomes),
            "kill_rows": [{"role": o["killed"], "ok": o["ok"], "recovery_s": o["recovery_s"], "asks": o["asks"]}
                          for o in outcomes if o["killed"] is not None]}


#: The stand-in of the targeted kills: each model call sleeps about a second (``llm.timed``), so a
#: step is still running when the victim is chosen and killed; it plans no JSON, so a chain is one step.
TARGETED_MODEL = "timed:50"


def targeted_kill_scenario(root: Path, *, agents: int = 8, kills: int = 10, role: str = "executor",
                           seed: int = 0) -> dict[str, Any]:
    """SIGKILL, ``kills`` times, the node holding a running step of a question in flight: its
    executor (``role="executor"``) or the planner driving its chain (``"planner"``), never the
    initiator. The victim is read from the nodes' event logs (``step_assigned`` without its
    ``step_finished``). Per kill: ``detect_s``, kill to the node that depended on the victim
    (the planner, or the initiator for a planner) logging the failure; ``backup_s``, kill to the
    step being sent to another executor (executor kills; for a planner, detection is the hand-over:
    the initiator asks its next planner at once); ``answer_s``, kill to the question's answer."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    with open_process_swarm(root, heartbeat=1.0) as swarm:
        model = ("--model", TARGETED_MODEL)
        boot = swarm.spawn("n0", args=model).wait_ready()
        rest = [swarm.spawn(f"n{i}", bootstrap=boot, args=model) for i in range(1, agents + kills)]
        nodes = [boot] + [n.wait_ready() for n in rest]
        wait_for(lambda: all(len(n.ledger()) == len(nodes) for n in nodes), timeout=120, what="every ledger complete")
        alive = list(range(len(nodes)))
        for _ in range(kills * 10):  # a question with no running step to kill (see below) is skipped
            if len(rows) == kills:
                break
            row = _one_targeted_kill(nodes, alive, role, rng)
            if row is not None:
                rows.append(row)
    worst = {key: max((r[key] for r in rows if r.get(key) is not None), default=None)
             for key in ("detect_s", "backup_s", "answer_s", "closed_s")}
    return {"scenario": f"targeted-kill-{role}", "agents": len(alive) + len(rows), "kills": len(rows),
            "answered": sum(r["ok"] for r in rows), "worst": worst, "rows": rows}


def _one_targeted_kill(nodes: list[NodeProcess], alive: list[int], role: str,
                       rng: random.Random) -> dict[str, Any] | None:
    """Ask one question of one-step chains (3 when a planner is to die, so that one is likely not the
    initiator; 1 for an executor, whom a lone chain's planner less often keeps for itself), kill the
    ``role`` holding one of its running steps and time the recovery (None: skipped, no running step
    had a victim other than the initiator or, for an executor, its planner)."""
    initiator = rng.choice(alive)
    tails = {i: nodes[i].tail(skip_existing=True) for i in alive}
    seen: list[tuple[int, dict[str, Any]]] = []  # (node, event), this question's, in order read
    response = nodes[initiator].post("/v1/tasks", {"question": "What is 6 * 7?", "answer_kind": "number",
                                                   "cots": 3 if role == "planner" else 1, "max_steps": 1,
                                                   "adaptive": False,
                                                   "deadline_s": 60})
    response.raise_for_status()
    task_id = str(response.json()["task_id"])
    by_id = {nodes[i].agent_id: i for i in alive}

    def read() -> None:
        for i, tail in tails.items():
            seen.extend((i, e) for e in tail.read()
                        if str(e.get("task", "")).startswith(task_id) or e.get("event") == "peer_closed")

    def target() -> tuple[int, tuple[int, str, int], str] | str | None:
        """(victim, (planner node, chain, step), executor id) of a step out whose ``role`` is neither the
        initiator nor (for an executor) its own planner; "over" once the question has ended."""
        read()
        out = {(i, e["task"], e["step"]): e["executor"] for i, e in seen if e["event"] == "step_assigned"}
        for i, e in seen:
            if e["event"] == "step_finished":
                out.pop((i, e["task"], e["step"]), None)
        for key, executor in out.items():
            victim = key[0] if role == "planner" else by_id.get(executor, initiator)
            if victim != initiator and (role == "planner" or victim != key[0]):
                return victim, key, executor
        if nodes[initiator].get(f"/v1/tasks/{task_id}").get("status") != "running":
            return "over"
        return None

    found = wait_for(target, timeout=60, interval=0.02, what="a step running")
    if isinstance(found, str):
        return None
    victim, step, executor = found
    killed = time.time()  # before the kill: ``kill`` returns only once the process is reaped
    nodes[victim].kill()
    alive.remove(victim)
    tails.pop(victim)
    record = _wait_done(nodes[initiator], task_id)
    answered = time.time()
    read()
    return {"role": role, "ok": record.get("status") == "done", "answer_s": round(answered - killed, 3),
            **_recovery(seen, role, step, executor, initiator, killed, victim=nodes[victim].agent_id)}


def _recovery(seen: list[tuple[int, dict[str, Any]]], role: str, step: tuple[int, str, int], executor: str,
              initiator: int, killed: float, *, victim: str) -> dict[str, Any]:
    """``detect_s`` and ``backup_s`` of one kill, from the event logs' timestamps (None: not seen)."""
    def first(match: Callable[[int, dict[str, Any]], bool]) -> float | None:
        return next((round(e["ts"] - killed, 3) for i, e in seen if match(i, e)), None)

    planner, chain, index = step
    if role == "planner":
        detect = first(lambda i, e: i == initiator and e["event"] == "chain_finished" and not e["chain"]["ok"]
                       and e["chain"].get("planner") == victim)
        # where the time went: the initiator's transport saw the connection close, then its chain failed
        closed = first(lambda i, e: i == initiator and e["event"] == "peer_closed" and e.get("agent") == victim)
        return {"detect_s": detect, "backup_s": detect, "closed_s": closed}
    def mine(i: int, e: dict[str, Any]) -> bool:
        return i == planner and e.get("task") == chain and e.get("step") == index

    detect = first(lambda i, e: mine(i, e) and e["event"] == "step_finished" and e["executor"] == executor)
    backup = first(lambda i, e: mine(i, e) and e["event"] == "step_assigned" and e["executor"] != executor)
    return {"detect_s": detect, "backup_s": backup}


def _wait_done(node: NodeProcess, task_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        record: dict[str, Any] = node.get(f"/v1/tasks/{task_id}")
        return None if record.get("status") == "running" else record

    return wait_for(done, timeout=90, interval=0.02, what=f"task {task_id} to end")


def _post_task(node: NodeProcess, question: str, task_id: str) -> str:
    response = node.post("/v1/tasks", {"question": question, "answer_kind": "number", "deadline_s": 60,
                                       "task_id": task_id})
    response.raise_for_status()
    return str(response.json()["task_id"])


def _poll_task(nodes: list[NodeProcess], initiator: int, task_id: str, question: str, alive: list[int],
               rng: random.Random) -> tuple[dict[str, Any] | None, int]:
    """Poll until the task ends; if the initiator is gone, re-ask a live node. Returns (record, asks)."""
    asks = 1
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if initiator not in alive:
            if not alive:
                return None, asks
            initiator = rng.choice(alive)
            task_id = _post_task(nodes[initiator], question, task_id)
            asks += 1
        try:
            record = nodes[initiator].get(f"/v1/tasks/{task_id}")
        except (httpx.HTTPError, OSError):
            if initiator in alive:
                alive.remove(initiator)
            continue
        if record.get("status") != "running":
            return record, asks
        time.sleep(0.05)
    return None, asks


# ---- driver ------------------------------------------------------------------------------------------


def run_robustness(*, scenarios: Sequence[str], setup: Setup, fractions: Mapping[str, Sequence[float]],
                   attacks: Sequence[str], network_rows: Sequence[tuple[float, float]], out_dir: Path,
                   console: Console) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    logging.getLogger("symphony.transport.memory").setLevel(logging.CRITICAL)  # refused requests are counted

    def record(row: dict[str, Any]) -> None:
        rows.append(row)
        console.print(json.dumps(row, default=str))

    if "crash" in scenarios:
        for fraction in (0.0, *fractions["crash"]):
            record(run_virtual(crash_scenario, setup, fraction))
    if "partition" in scenarios:
        for fraction in fractions["partition"]:
            record(run_virtual(partition_scenario, setup, fraction))
    if "network" in scenarios:
        for latency_ms, mbps in network_rows:
            record(trio.run(network_scenario, replace(setup, tasks=max(5, setup.tasks // 3)), latency_ms, mbps))
    if "churn" in scenarios:
        for fraction in fractions.get("churn", (0.1, 0.2)):
            record(run_virtual(churn_scenario, setup, fraction))
    if "process-crash" in scenarios:
        with tempfile.TemporaryDirectory() as root:
            record(process_crash_scenario(Path(root), agents=10, tasks=16, kills=2, seed=setup.seed))
    if "targeted-kill" in scenarios:
        for role in ("executor", "planner"):
            with tempfile.TemporaryDirectory() as root:
                record(targeted_kill_scenario(Path(root), agents=6, kills=10, role=role, seed=setup.seed))
    if "hostile" in scenarios:
        with tempfile.TemporaryDirectory() as root:
            record(hostile_scenario(Path(root)))
    if "byzantine" in scenarios:
        record({**run_virtual(crash_scenario, setup, 0.0), "scenario": "byzantine", "attack": "none"})
        for name in attacks:
            for fraction in fractions["byzantine"]:
                record(run_virtual(byzantine_scenario, setup, name, fraction))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "robustness.json").write_text(json.dumps({"setup": asdict(setup), "rows": rows}, indent=1))
    (out_dir / "robustness.md").write_text(markdown(rows))
    console.print(markdown(rows))
    return rows


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _table(header: str, lines: Sequence[str]) -> list[str]:
    """A markdown table: ``header``, its separator (one column per cell), ``lines``, a blank line."""
    return [header, "|---" * (header.count("|") - 1) + "|", *lines, ""]


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The tables for docs/results.md."""
    out: list[str] = []
    crash = [r for r in rows if r["scenario"] == "crash"]
    if crash:
        out += _table(
            "| killed | victims' role | completion | accuracy | p50 / p95 latency (s) | affected tasks | "
            "recovery p50 / max (s) | re-asks |",
            [f"| {r['fraction']:.0%} ({r['killed']}) | "
                f"{', '.join(f'{k} {v}' for k, v in sorted(r['killed_roles'].items())) or '-'} | "
                f"{r['completion']:.3f} | {r['accuracy']:.3f} | "
                f"{_f(r['latency_p50_s'])} / {_f(r['latency_p95_s'])} | {r['affected_tasks']} | "
                f"{_f(r['recovery_p50_s'])} / {_f(r['recovery_max_s'])} | {r['re_asks']} |" for r in crash])
    churn = [r for r in rows if r["scenario"] == "churn"]
    if churn:
        out += _table(
            "| left gracefully, rejoined 5 s later | completion | accuracy | p50 / p95 latency (s) | "
            "rejoined agent seen available by all, p50 / max (s) | re-asks |",
            [f"| {r['fraction']:.0%} ({r['left_and_rejoined']}) | {r['completion']:.3f} | {r['accuracy']:.3f} | "
                f"{_f(r['latency_p50_s'])} / {_f(r['latency_p95_s'])} | {_f(r['rejoin_visible_p50_s'])} / "
                f"{_f(r['rejoin_visible_max_s'])} | {r['re_asks']} |" for r in churn])
    proc = [r for r in rows if r["scenario"] == "process-crash"]
    if proc:
        out += _table(
            "| real processes | SIGKILLed (role) | completion | accuracy | p50 latency (s) | recovery p50 / max (s) | "
            "re-asks |",
            [f"| {r['agents']} | {r['killed']} ({', '.join(r['killed_roles'])}) | {r['completion']:.3f} | "
                f"{r['accuracy']:.3f} | {_f(r['latency_p50_s'])} | {_f(r['recovery_p50_s'])} / "
                f"{_f(r['recovery_max_s'])} | {r['re_asks']} |" for r in proc])
    targeted = [r for r in rows if r["scenario"].startswith("targeted-kill")]
    if targeted:
        out += _table(
            "| SIGKILL of the node holding a running step | kills | answered | kill to failure seen, max (s) | "
            "kill to backup sent, max (s) | kill to answer, max (s) | planner: kill to its connection seen closed "
            "at the initiator, max (s) |",
            [f"| {r['scenario'].removeprefix('targeted-kill-')} | {r['kills']} | {r['answered']} | "
                f"{_f(r['worst']['detect_s'])} | {_f(r['worst']['backup_s'])} | {_f(r['worst']['answer_s'])} | "
                f"{_f(r['worst'].get('closed_s'))} |" for r in targeted])
    for hostile in (r for r in rows if r["scenario"] == "hostile"):
        out += hostile_markdown(hostile)
    part = [r for r in rows if r["scenario"] == "partition"]
    if part:
        out += _table(
            "| isolated | major side completion / accuracy | minor side completion / accuracy | "
            "ledger converged after heal (s) | completion after heal |",
            [f"| {r['fraction']:.0%} ({r['isolated']}) | {r['major']['completion']:.3f} / "
                f"{r['major']['accuracy']:.3f} | {r['minor']['completion']:.3f} / {r['minor']['accuracy']:.3f} | "
                f"{_f(r['converge_s'])} | {r['after_heal']['completion']:.3f} |" for r in part])
    net = [r for r in rows if r["scenario"] == "network"]
    if net:
        base = net[0]["latency_p50_s"] or 0.0
        out += _table(
            "| latency (ms) | bandwidth (Mbps) | wall time per task p50 / p95 (s) | overhead vs first row (s) | "
            "completion |",
            [f"| {r['latency_ms']:g} | {r['bandwidth_mbps']:g} | {_f(r['latency_p50_s'])} / "
                f"{_f(r['latency_p95_s'])} | {_f((r['latency_p50_s'] or 0.0) - base)} | {r['completion']:.3f} |"
                for r in net])
    byz = [r for r in rows if r["scenario"] == "byzantine"]
    if byz:
        clean = next((r["accuracy"] for r in byz if r["attack"] == "none"), None)
        lines: list[str] = []
        for r in byz:
            if r["attack"] == "none":
                continue
            loss = 100 * (clean - r["accuracy"]) if clean is not None else None
            lines.append(f"| {r['attack']} | {r['fraction']:.0%} ({r['byzantine']}) | {r['accuracy']:.3f} "
                       f"({_f(loss, 1)}) | {r['completion']:.3f} | {r['detected']}/{r['acted']} | "
                       f"{_f(r['detection_p50_s'])} / {_f(r['detection_max_s'])} | {r['honest_blacklisted']} |")
        out += _table(
            "| attack | byzantine | accuracy (loss, points) | completion | detected / acted | detection p50 / max (s) | "
            "honest blacklisted |", lines)
    return "\n".join(out)
