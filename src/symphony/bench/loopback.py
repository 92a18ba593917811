"""``symphony bench systems-libp2p``: the systems table on real py-libp2p node processes (issue #6).

Where ``bench systems`` runs every agent in one process on the memory engine, this runs N real
py-libp2p nodes (TCP, Noise, yamux, gossipsub) on 127.0.0.1, ``per_process`` agents per OS
process so that N = 25 fits two cores. Every agent is an ``AgentRuntime`` with its *own* ledger
replica, filled by real gossip from one bootstrap agent; the model is the ``timed:`` stand-in that
plans 3 CoTs x 5 sub-tasks (``bench.workload``), so inference time is known exactly.

The parent drives its workers over their stdin/stdout, one JSON object per line:

- worker -> ``{"ev": "opened", "addrs": [...]}`` once its hosts listen;
- parent -> ``{"op": "start", "bootstrap": [addr]}``; worker -> ``{"ev": "converged"}`` when
  each of its replicas holds all N available records;
- parent -> ``{"op": "ask" | "beacon" | "stats", "id": k, ...}``; worker -> ``{"ev": "reply", "id": k, ...}``;
- parent -> ``{"op": "exit"}``: the worker closes its hosts, writes its final counters and exits 0.

Bytes are each node's transport counters (payload bytes of the real serialized envelopes, as in
``bench systems``; Noise/yamux framing excluded), read from every process before and after the
task batch. Every wait has a deadline, and every worker is killed if it has not exited by then.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import trio
from rich.console import Console
from rich.table import Table

import symphony
from symphony.beacon import BEACON_PROTOCOL, WARM_PEERS
from symphony.bench.accounting import Traffic
from symphony.bench.centralized import Coordinator, centralized_agent, register_with
from symphony.bench.systems import (
    HEADERS,
    SystemsConfig,
    _agents,
    _options,
    _quantile,
    _run_tasks,
    _summary,
    table_rows,
)
from symphony.bench.workload import COTS, QUESTION, STEPS
from symphony.capability import classify_task_type, requirement_vector
from symphony.node import AgentRuntime, SimulatedAgent
from symphony.pipeline.service import EXECUTOR_TAG, TASK_PROTOCOL, TaskFailed, TaskService
from symphony.protocol import Identity
from symphony.transport.libp2p import Libp2pConfig, Libp2pTransport, open_libp2p_transport

CHANNELS = (TASK_PROTOCOL, BEACON_PROTOCOL)
LOOPBACK = "/ip4/127.0.0.1/tcp/0"
HUB_IDENTITY = Identity(hashlib.sha256(b"systems-libp2p/coordinator").digest())
#: How often a worker checks its event loop's lag (``_Worker._probe_lag``).
LAG_PROBE_S = 0.1  # 10 wake-ups a second: at 100 they cost a worker 1.5 s of CPU in a 90 s run


@dataclass(frozen=True)
class LoopbackConfig:
    sizes: tuple[int, ...] = (10, 25)
    per_process: int = 5
    tasks: int = 6
    concurrency: int = 3
    tokens_per_s: float = 35.0
    beacon_rounds: int = 20
    seed: int = 0
    start_timeout_s: float = 180.0  # workers up and listening (10 processes importing at load 20 took over 60 s)
    converge_timeout_s: float = 240.0  # enforced by each worker; the parent allows start_timeout_s more
    task_timeout_s: float = 600.0
    exit_timeout_s: float = 30.0
    profile: bool = False  # each worker runs under pyinstrument and writes its profile beside its log
    stress: bool = False  # run the join phase with 2 busy processes per core (bounded by join_timeout_s)
    join_timeout_s: float = 120.0  # per joiner
    joiners: int = 3  # agents that join the running network one after another
    centralized: bool = True  # also run the centralized hub baseline on real processes, after each size


# ---- the worker: several agents in one process --------------------------------------------------


class _Lines:
    """JSON lines over a pair of byte streams (one writer at a time)."""

    def __init__(self, receive: trio.abc.ReceiveStream, send: trio.abc.SendStream) -> None:
        self._receive, self._send = receive, send
        self._buffer = bytearray()
        self._lock = trio.Lock()

    async def read(self) -> dict[str, Any] | None:
        """The next object, or None at end of stream."""
        while b"\n" not in self._buffer:
            chunk = await self._receive.receive_some(1 << 16)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        obj: dict[str, Any] = json.loads(line)
        return obj

    async def write(self, obj: dict[str, Any]) -> None:
        async with self._lock:
            await self._send.send_all(json.dumps(obj, default=str).encode() + b"\n")


@dataclass
class _Worker:
    """Agents ``first .. first + count - 1`` of an N-agent network, run in this process.

    ``role`` is ``symphony`` (each agent an ``AgentRuntime``), ``hub-agents`` (the centralized
    baseline's agents: ``bench.centralized``, registered with the hub the parent names) or ``hub``
    (the baseline's coordinator alone; ``count`` is 0)."""

    n: int
    first: int
    count: int
    tokens_per_s: float
    seed: int
    converge_timeout_s: float
    role: str = "symphony"
    channel_fd: int = 1
    runtimes: list[AgentRuntime] = field(default_factory=list)
    transports: list[Libp2pTransport] = field(default_factory=list)
    tasks: list[TaskService] = field(default_factory=list)
    lags_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    rounds: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10_000))

    def _note_round(self, kind: str, fields: dict[str, Any]) -> None:
        """Keep each beacon round's cost and timing (the event sink of every local agent); written to the
        worker's log at exit (``_write_rounds``), not inside the measured tasks."""
        if kind == "beacon_round":
            self.rounds.append({"event": kind, "at": round(time.time(), 3), **fields})

    def _write_rounds(self) -> None:
        for row in self.rounds:
            print(json.dumps(row, default=str), file=sys.stderr)
        sys.stderr.flush()

    async def main(self) -> None:
        lines = _Lines(trio.lowlevel.FdStream(os.dup(0)), trio.lowlevel.FdStream(self.channel_fd))
        agents = _agents(self.n, self.tokens_per_s, self.seed)[self.first : self.first + self.count]
        identities = [HUB_IDENTITY] if self.role == "hub" else [a.identity for a in agents]
        async with AsyncExitStack() as stack:
            self.transports = [
                await stack.enter_async_context(open_libp2p_transport(identity, Libp2pConfig([LOOPBACK])))
                for identity in identities
            ]
            await lines.write({"ev": "opened", "addrs": [t.listen_addrs()[0] for t in self.transports]})
            start = await lines.read()
            if start is None or start.get("op") != "start":
                return
            if self.role == "symphony":
                await self._run_symphony(lines, agents, start["bootstrap"])
            else:
                await self._run_centralized(lines, agents, start["bootstrap"][0])
        self._write_rounds()
        await lines.write({"ev": "exit", "stats": self._stats()})

    async def _run_centralized(self, lines: _Lines, agents: list[SimulatedAgent], hub_addr: str) -> None:
        """The hub's coordinator, or agents registered with it; then serve the parent."""
        if self.role == "hub":
            Coordinator(self.transports[0], HUB_IDENTITY, time.time)
        else:
            for i, (agent, transport) in enumerate(zip(agents, self.transports, strict=True)):
                member, signed = centralized_agent(transport, agent, self.first + i, HUB_IDENTITY.agent_id,
                                                   clock=time.time)
                await register_with(member, HUB_IDENTITY.agent_id, hub_addr, signed)
                self.tasks.append(member.tasks)
        await lines.write({"ev": "converged", "up": time.time(), "at": time.time()})
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._probe_lag)
            await self._serve(lines, tg)
            tg.cancel_scope.cancel()

    async def _run_symphony(self, lines: _Lines, agents: list[SimulatedAgent], bootstrap: list[str]) -> None:
        """Every agent an ``AgentRuntime`` gossiping its ledger; converge, then serve the parent."""
        for i, (agent, transport) in enumerate(zip(agents, self.transports, strict=True)):
            index = self.first + i
            self.runtimes.append(
                AgentRuntime(
                    transport=transport,
                    identity=agent.identity,
                    profile=agent.profile,
                    model=agent.model,
                    clock=time.time,
                    rng=random.Random(index),
                    bootstrap=[] if index == 0 else bootstrap,
                    on_event=self._note_round,
                    warm_peers=WARM_PEERS,  # as a node does (node.daemon)
                )
            )
        self.tasks = [runtime.tasks for runtime in self.runtimes]
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._probe_lag)
            for runtime in self.runtimes:
                await tg.start(runtime.run)
            up = time.time()
            await self._converge(self.n, settled=True)
            await lines.write({"ev": "converged", "up": up, "at": time.time()})
            await self._serve(lines, tg)
            tg.cancel_scope.cancel()

    async def _converge(self, count: int, *, settled: bool = False) -> None:
        """Wait (with a deadline) until every local replica holds ``count`` available records and, with
        ``settled``, every agent's warm-up has opened its connections (``beacon.warm``: the rounds measured
        next are meant on a calm network, not among 10-25 processes' handshakes); polled every 10 ms,
        the resolution of the join phase's figures."""
        with trio.fail_after(self.converge_timeout_s):
            while not all(len(r.ledger.query(now=time.time())) >= count and (r.warm.idle or not settled)
                          for r in self.runtimes):
                await trio.sleep(0.01)

    async def _serve(self, lines: _Lines, tg: anyio.abc.TaskGroup) -> None:
        """Answer the parent's requests, each in its own task, until ``exit`` or end of input."""
        while (msg := await lines.read()) is not None and msg["op"] != "exit":
            tg.start_soon(self._answer, lines, msg)

    async def _answer(self, lines: _Lines, msg: dict[str, Any]) -> None:
        """One request; an unexpected error goes back to the parent as ``error`` rather than leave it waiting."""
        op = msg["op"]
        try:
            if op == "ask":
                reply = await self._ask(msg["agent"])
            elif op == "beacon":
                reply = await self._beacon(msg["agent"], msg["rounds"])
            elif op == "dial":
                reply = await _fresh_dials(msg["addrs"])
            elif op == "records":
                await self._converge(msg["count"])
                reply = {"at": time.time()}
            else:
                reply = {"stats": self._stats()}
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the run
            reply = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        await lines.write({"ev": "reply", "id": msg["id"], **reply})

    async def _probe_lag(self) -> None:
        """How late this process's event loop wakes a task: every ``LAG_PROBE_S`` a sleeper notes
        how long past its due time it ran (issue #19: a beacon reply waits as long on a lagging
        responder). The last 10,000 are kept."""
        while True:
            due = time.perf_counter() + LAG_PROBE_S
            await trio.sleep(LAG_PROBE_S)
            self.lags_ms.append((time.perf_counter() - due) * 1000)

    def _runtime(self, agent: int) -> AgentRuntime:
        return self.runtimes[agent - self.first]

    async def _ask(self, agent: int) -> dict[str, Any]:
        try:
            return {"trace": await self.tasks[agent - self.first].ask(QUESTION, _options())}
        except TaskFailed as exc:
            return {"trace": exc.trace, "failed": str(exc)}

    async def _beacon(self, agent: int, rounds: int) -> dict[str, Any]:
        """BEACONSELECT from ``agent`` to all N agents (itself included), ``rounds`` + 1 times, each
        waiting for every reply; the first round, which dials every candidate, is left out."""
        runtime = self._runtime(agent)
        r = list(requirement_vector(QUESTION, classify_task_type(QUESTION), runtime.encoder))
        elapsed, replied = [], []
        for i in range(rounds + 1):
            outcome = await runtime.selector.select(r, top_l=self.n, tags_any=frozenset({EXECUTOR_TAG}))
            if i:
                elapsed.append(outcome.elapsed_s * 1000)
                replied.append(outcome.replied)
        return {"elapsed_ms": elapsed, "replied": replied}

    def _stats(self) -> dict[str, Any]:
        """This process's counters: every local node's bytes and messages sent, by channel, and CPU seconds."""
        sent: dict[str, list[int]] = {}
        for transport in self.transports:
            stats = transport.stats
            for channel, size in stats.bytes_sent.items():
                total = sent.setdefault(channel, [0, 0])
                total[0] += size
                total[1] += stats.messages_sent[channel]
        lag = {"lag_ms_p50": round(_quantile(self.lags_ms, 0.5), 2), "lag_ms_p95": round(_quantile(self.lags_ms, 0.95), 2),
               "lag_ms_max": round(max(self.lags_ms), 2)} if self.lags_ms else {}
        return {"sent": sent, "cpu_s": round(time.process_time(), 3), **lag}


async def _fresh_dials(addrs: list[str]) -> dict[str, Any]:
    """A new host of this process dials each of ``addrs`` in turn: the milliseconds each ``connect``
    took (TCP, Noise, yamux; what a first contact costs), then it closes."""
    took = []
    async with open_libp2p_transport(Identity.generate(), Libp2pConfig([LOOPBACK])) as prober:
        for addr in addrs:
            started = time.perf_counter()
            await prober.connect(addr)
            took.append(round((time.perf_counter() - started) * 1000, 2))
    return {"dial_ms": took}


# ---- the parent ---------------------------------------------------------------------------------


class _Process:
    """One worker process, as the parent sees it: requests by id, replies dispatched by a reader task."""

    def __init__(self, process: trio.Process, first: int, count: int) -> None:
        self.process = process
        self.first, self.count = first, count
        assert process.stdout is not None and process.stdin is not None
        self.lines = _Lines(process.stdout, process.stdin)
        self._pending: dict[int, tuple[trio.Event, list[dict[str, Any]]]] = {}
        self._ids = 0
        self.events: dict[str, trio.Event] = {"opened": trio.Event(), "converged": trio.Event(), "exit": trio.Event()}
        self.received: dict[str, dict[str, Any]] = {}
        self.closed = trio.Event()

    async def read_all(self) -> None:
        """Dispatch the worker's lines until it closes its output."""
        try:
            while (msg := await self.lines.read()) is not None:
                if msg["ev"] == "reply":
                    event, box = self._pending.pop(msg["id"])
                    box.append(msg)
                    event.set()
                else:
                    self.received[msg["ev"]] = msg
                    self.events[msg["ev"]].set()
        finally:
            self.closed.set()

    async def call(self, op: str, timeout: float, **fields: Any) -> dict[str, Any]:
        self._ids += 1
        event, box = trio.Event(), list[dict[str, Any]]()
        self._pending[self._ids] = (event, box)
        await self.lines.write({"op": op, "id": self._ids, **fields})
        with trio.fail_after(timeout):
            await event.wait()
        if "error" in box[0]:
            raise WorkerError(f"worker {self.first}..{self.first + self.count - 1}: {box[0]['error']}")
        return box[0]


class WorkerError(RuntimeError):
    """A worker process could not answer a request."""


def _src_path() -> str:
    """The directory holding the ``symphony`` package, for the workers' PYTHONPATH."""
    return str(Path(symphony.__file__).resolve().parents[1])


async def _spawn(n: int, first: int, count: int, cfg: LoopbackConfig, log: Path, role: str = "symphony") -> _Process:
    spec = {
        "role": role,
        "n": n,
        "first": first,
        "count": count,
        "tokens_per_s": cfg.tokens_per_s,
        "seed": cfg.seed,
        "converge_timeout_s": cfg.converge_timeout_s,
        "profile": str(log.with_suffix(".profile.txt")) if cfg.profile else None,
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_src_path(), os.environ.get("PYTHONPATH")]))}
    with log.open("wb") as err:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "symphony.bench.loopback", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
        )
    return _Process(process, first, count)


async def _wait_all(procs: list[_Process], ev: str, timeout: float, what: str) -> None:
    """Wait until every worker has sent ``ev``; fail at once if one exits first, or after ``timeout``."""
    with trio.move_on_after(timeout) as scope:
        while not all(p.events[ev].is_set() for p in procs):
            if any(p.closed.is_set() for p in procs):
                raise WorkerError(f"{what}: a worker exited early (see its log)")
            await trio.sleep(0.05)
    if scope.cancelled_caught:
        missing = sum(not p.events[ev].is_set() for p in procs)
        raise TimeoutError(f"{what}: {missing} of {len(procs)} processes not there after {timeout} s")


async def _stop(procs: list[_Process], timeout: float) -> list[int | None]:
    """Ask every worker to exit; kill the ones still running after ``timeout``. Returns exit codes."""
    for p in procs:
        try:
            await p.lines.write({"op": "exit"})
            await p.process.stdin.aclose()  # type: ignore[union-attr]
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # already gone
    with trio.move_on_after(timeout):
        for p in procs:
            await p.process.wait()
    for p in procs:
        if p.process.returncode is None:
            p.process.kill()
    with trio.move_on_after(5):
        for p in procs:
            await p.process.wait()
            await p.closed.wait()  # its last line (final counters) is read
    return [p.process.returncode for p in procs]


def _traffic(stats: list[dict[str, Any]]) -> Traffic:
    sent = [s["sent"].get(c, [0, 0]) for s in stats for c in CHANNELS]
    return Traffic(sum(b for b, _ in sent), sum(m for _, m in sent))


async def _gather_stats(procs: list[_Process], timeout: float) -> list[dict[str, Any]]:
    return [(await p.call("stats", timeout))["stats"] for p in procs]


def _beacon_summary(reply: dict[str, Any], n: int) -> dict[str, Any]:
    elapsed = reply["elapsed_ms"]
    return {
        "candidates": n,
        "rounds": len(elapsed),
        "p50_ms": round(statistics.median(elapsed), 2),
        "p95_ms": round(_quantile(elapsed, 0.95), 2),
        "replied_min": min(reply["replied"]),
    }


async def _run_size(
    n: int, cfg: LoopbackConfig, root: Path, say: Callable[[str], None], *, centralized: bool = False
) -> dict[str, Any]:
    """One network of ``n`` agents in ceil(n / per_process) processes: beacon rounds, the task batch,
    then one more agent joins. With ``centralized``, the hub baseline instead: a coordinator process
    first (whose address stands in for the bootstrap) and the same agents registered with it; the
    same task batch, no beacon, no ledger."""
    counts = [min(cfg.per_process, n - first) for first in range(0, n, cfg.per_process)]
    role = "hub-agents" if centralized else "symphony"
    specs = [(k * cfg.per_process, count, role, f"n{n}-{'hub-agents' if centralized else 'worker'}{k}.log")
             for k, count in enumerate(counts)]
    if centralized:
        specs.insert(0, (0, 0, "hub", f"n{n}-hub.log"))
    started = time.perf_counter()
    procs: list[_Process] = []
    arch = "centralized-libp2p" if centralized else "symphony-libp2p"
    row: dict[str, Any] = {"arch": arch, "n": n, "processes": len(specs)}
    async with trio.open_nursery() as nursery:
        try:
            for first, count, worker_role, log in specs:
                procs.append(await _spawn(n, first, count, cfg, root / log, worker_role))
                nursery.start_soon(procs[-1].read_all)
            await _wait_all(procs, "opened", cfg.start_timeout_s, "listening")
            bootstrap = [procs[0].received["opened"]["addrs"][0]]
            for p in procs:
                await p.lines.write({"op": "start", "bootstrap": bootstrap})
            await _wait_all(procs, "converged", cfg.converge_timeout_s + cfg.start_timeout_s, "ledger convergence")
            setup = time.perf_counter() - started
            say(f"{arch} N={n}: {len(procs)} processes up and {'registered' if centralized else 'converged'} "
                f"after {setup:.1f} s")
            row.update(await _measure(n, procs, cfg, setup, say, arch=arch))
            if not centralized:
                row["join"] = await _join(n, procs, cfg, root, nursery, say)
        except (TimeoutError, trio.TooSlowError, WorkerError) as exc:
            row.update({"tasks": cfg.tasks, "failed": cfg.tasks, "errors": [str(exc) or type(exc).__name__]})
            say(f"libp2p N={n}: {exc}")
        finally:
            row["pids"] = [p.process.pid for p in procs]
            row["exit_codes"] = await _stop(procs, cfg.exit_timeout_s)
            row["cpu_s"] = [p.received.get("exit", {}).get("stats", {}).get("cpu_s") for p in procs]
            row["lag_ms_p95"] = [p.received.get("exit", {}).get("stats", {}).get("lag_ms_p95") for p in procs]
            nursery.cancel_scope.cancel()
    row["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    return row


async def _measure(
    n: int, procs: list[_Process], cfg: LoopbackConfig, setup: float, say: Callable[[str], None], *, arch: str
) -> dict[str, Any]:
    """Beacon rounds from agent 0 to all N (Symphony only), then the task batch between two reads of
    the counters (every process's, the hub's included)."""
    beacon = None
    if arch == "symphony-libp2p":
        reply = await procs[0].call("beacon", cfg.task_timeout_s, agent=0, rounds=cfg.beacon_rounds)
        beacon = _beacon_summary(reply, n)
        say(f"libp2p N={n}: beacon round to {n} candidates P50 {beacon['p50_ms']} ms, P95 {beacon['p95_ms']} ms")
        addrs = [a for p in procs for a in p.received["opened"]["addrs"]]
        dials = (await procs[-1].call("dial", cfg.task_timeout_s, addrs=addrs))["dial_ms"]
        beacon.update(dial_ms_p50=round(statistics.median(dials), 2), dial_ms_max=max(dials))
        say(f"libp2p N={n}: a fresh host's first dial to each of {n} agents P50 {beacon['dial_ms_p50']} ms, "
            f"max {beacon['dial_ms_max']} ms")
    rng = random.Random(cfg.seed)
    initiators = [rng.randrange(n) for _ in range(cfg.tasks)]
    owner = {a: p for p in procs for a in range(p.first, p.first + p.count)}

    async def ask(i: int) -> dict[str, Any]:
        reply = await owner[initiators[i]].call("ask", cfg.task_timeout_s, agent=initiators[i])
        if "failed" in reply:
            raise TaskFailed(reply["failed"], trace=reply["trace"])
        trace: dict[str, Any] = reply["trace"]
        return trace

    before = _traffic(await _gather_stats(procs, cfg.task_timeout_s))
    traces, batch = await _run_tasks(ask, SystemsConfig(tasks=cfg.tasks, concurrency=cfg.concurrency))
    after = _traffic(await _gather_stats(procs, cfg.task_timeout_s))
    row = _summary(
        arch,
        n,
        traces,
        batch,
        Traffic(after.bytes - before.bytes, after.messages - before.messages),
        setup,
    )
    rounds = [  # compact traces leave out the spans of a step that waited for no beacon round
        s["spans"]["beacon_ms"]
        for t in traces
        for c in t.get("chains", [])
        for s in (c.get("trace") or {}).get("steps", [])
        if "beacon_ms" in s.get("spans", {})
    ]
    row["beacon_ms_p95"] = round(_quantile(rounds, 0.95), 2) if rounds else None
    row["spread"] = executor_spread(traces)
    if beacon is not None:
        row["beacon"] = beacon
    return row


def executor_spread(traces: list[dict[str, Any]]) -> dict[str, Any]:
    """How the batch's executor calls spread over the agents: calls and model-slot wait ("queue":
    the executor's wall time around its model call beyond the stand-in's nominal time) per agent,
    busiest first, and the wait per call. Shows whether concurrent chains piled on a few executors."""
    per: dict[str, dict[str, float]] = {}
    waits: list[float] = []
    for t in traces:
        for c in t.get("chains", []):
            for s in (c.get("trace") or {}).get("steps", []):
                for a in s.get("attempts", []):
                    model = float(a.get("model_ms", 0.0))
                    wait = max(0.0, float(a.get("model_wall_ms", model)) - model)
                    agent = per.setdefault(str(a.get("executor", ""))[:12], {"calls": 0, "queue_ms": 0.0})
                    agent["calls"] += 1
                    agent["queue_ms"] = round(agent["queue_ms"] + wait, 1)
                    waits.append(wait)
    busiest = dict(sorted(per.items(), key=lambda kv: (-kv[1]["calls"], kv[0])))
    return {"calls": len(waits), "executors": len(per), "per_executor": busiest,
            "queue_ms_p50": round(_quantile(waits, 0.5), 1) if waits else None,
            "queue_ms_p95": round(_quantile(waits, 0.95), 1) if waits else None}


async def _join(
    n: int, procs: list[_Process], cfg: LoopbackConfig, root: Path, nursery: trio.Nursery, say: Callable[[str], None]
) -> dict[str, Any]:
    """``cfg.joiners`` more agents join the running network one after another, each in a process of
    its own (the k-th has index n + k). Times from the moment a joiner's runtime is up: until it
    holds every record, and until every other replica holds its record (each worker stamps the time
    it saw it, on the machine's one clock). With ``cfg.stress``, 2 busy processes per core run
    throughout."""
    stress = 2 * (os.cpu_count() or 1) if cfg.stress else 0
    at_new: list[float] = []
    everywhere: list[float] = []
    with _stress(stress, cfg.join_timeout_s * cfg.joiners):
        for k in range(cfg.joiners):
            new, took = await _one_join(n + k, procs, cfg, root, nursery)
            at_new.append(new)
            everywhere.append(took)
    join = {"stress_processes": stress, "at_new_s": at_new, "everywhere_s": everywhere,
            "max_s": round(max(at_new + everywhere), 3), "load_avg": [round(x, 2) for x in os.getloadavg()]}
    say(f"libp2p N={n}: {cfg.joiners} joiners held every record after {at_new} s; their records were everywhere "
        f"after {everywhere} s (stress processes: {stress})")
    return join


async def _one_join(index: int, procs: list[_Process], cfg: LoopbackConfig, root: Path,
                    nursery: trio.Nursery) -> tuple[float, float]:
    """Agent ``index`` joins the ``index`` agents running in ``procs``; returns (seconds until it held
    all index + 1 records, seconds until every other replica held its record)."""
    waits: list[float] = []

    async def wait_for_joiner(p: _Process) -> None:
        waits.append((await p.call("records", cfg.join_timeout_s, count=index + 1))["at"])

    joiner = await _spawn(index + 1, index, 1, cfg, root / f"joiner{index}.log")
    procs.append(joiner)  # stopped with the others
    nursery.start_soon(joiner.read_all)
    await _wait_all([joiner], "opened", cfg.start_timeout_s, "joiner listening")
    async with trio.open_nursery() as watchers:
        for p in procs[:-1]:
            watchers.start_soon(wait_for_joiner, p)
        await joiner.lines.write({"op": "start", "bootstrap": [procs[0].received["opened"]["addrs"][0]]})
        await _wait_all([joiner], "converged", cfg.join_timeout_s, "joiner convergence")
    up, held = joiner.received["converged"]["up"], joiner.received["converged"]["at"]
    return round(held - up, 3), round(max(waits) - up, 3)


@contextmanager
def _stress(count: int, limit_s: float) -> Iterator[None]:
    """``count`` busy-looping processes, each ending by itself after ``limit_s`` and killed on exit."""
    loop = f"import time\nend = time.monotonic() + {limit_s}\nwhile time.monotonic() < end: pass"
    busy = [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(count)]
    try:
        yield
    finally:
        for p in busy:
            p.kill()
        for p in busy:
            p.wait()


@dataclass
class LoopbackResults:
    config: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)


def markdown(results: LoopbackResults) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results.rows)]
    lines.append("")
    for r in results.rows:
        b = r.get("beacon")
        if b:
            lines.append(
                f"- N = {r['n']} in {r['processes']} processes: beacon round to all {b['candidates']} agents, "
                f"{b['rounds']} rounds: P50 {b['p50_ms']} ms, P95 {b['p95_ms']} ms (fewest replies "
                f"{b['replied_min']}); a fresh host's first dial to each agent P50 {b.get('dial_ms_p50')} ms, "
                f"max {b.get('dial_ms_max')} ms; in-task beacon rounds P95 {r.get('beacon_ms_p95')} ms; worker CPU "
                f"{r['cpu_s']} s; event-loop lag P95 {r.get('lag_ms_p95')} ms; exit codes {r['exit_codes']}; "
                f"load {r['load_avg']}"
            )
            lines.append(spread_line(r))
            j = r.get("join")
            if j:
                lines.append(
                    f"- N = {r['n']}, {len(j['at_new_s'])} agents join one by one ({j['stress_processes']} stress "
                    f"processes): each holds every record {j['at_new_s']} s after it is up, its record is everywhere "
                    f"after {j['everywhere_s']} s (worst {j['max_s']} s); load {j['load_avg']}"
                )
        elif r.get("errors"):
            lines.append(f"- {r['arch']} N = {r['n']}: {r.get('errors')}; exit codes {r['exit_codes']}")
        else:
            lines.append(f"- {r['arch']} N = {r['n']} in {r['processes']} processes: worker CPU {r['cpu_s']} s; "
                         f"event-loop lag P95 {r.get('lag_ms_p95')} ms; exit codes {r['exit_codes']}; load {r['load_avg']}")
            lines.append(spread_line(r))
    return "\n".join(lines) + "\n"


def spread_line(row: dict[str, Any]) -> str:
    """One line of ``executor_spread``: calls per executor (busiest first) and the wait per call."""
    s = row.get("spread") or {}
    counts = ", ".join(f"{int(v['calls'])}" for v in s.get("per_executor", {}).values())
    queue = ", ".join(f"{v['queue_ms'] / max(1, v['calls']):.0f}" for v in s.get("per_executor", {}).values())
    on = "the hub (it forwards each to an agent)" if row["arch"].startswith("centralized") else \
        f"{s.get('executors', 0)} agents"
    return (f"- {row['arch']} N = {row['n']}: {s.get('calls', 0)} executor calls on {on} "
            f"(calls each, busiest first: {counts}; mean wait per call, ms: {queue}); model-slot wait per call "
            f"P50 {s.get('queue_ms_p50')} ms, P95 {s.get('queue_ms_p95')} ms")


async def _run(cfg: LoopbackConfig, root: Path, say: Callable[[str], None]) -> LoopbackResults:
    results = LoopbackResults(config=asdict(cfg))
    for n in cfg.sizes:
        results.rows.append(await _run_size(n, cfg, root, say))
        if cfg.centralized:
            results.rows.append(await _run_size(n, cfg, root, say, centralized=True))
    return results


def run_loopback_bench(cfg: LoopbackConfig, out: Path, console: Console | None = None) -> LoopbackResults:
    """Run the benchmark; write ``systems-libp2p.json`` and ``.md`` (and worker logs) under ``out``."""
    console = console or Console(width=200)
    out.mkdir(parents=True, exist_ok=True)
    results = trio.run(_run, cfg, out, lambda line: console.print(f"[dim]{line}[/dim]"))
    (out / "systems-libp2p.json").write_text(json.dumps(asdict(results), indent=2, default=str) + "\n")
    (out / "systems-libp2p.md").write_text(markdown(results))
    table = Table(
        *HEADERS,
        title=f"symphony bench systems-libp2p (127.0.0.1, {cfg.per_process} agents per process, "
        f"timed:{cfg.tokens_per_s:g}, {COTS} CoTs x {STEPS} sub-tasks)",
    )
    for row in table_rows(results.rows):
        table.add_row(*row)
    console.print(table)
    console.print(markdown(results).split("\n\n", 1)[-1])
    return results


def _worker_main(argv: list[str]) -> None:
    """Entry point of a worker process: the parent's channel keeps fd 1; stray prints go to stderr."""
    channel = os.dup(1)
    os.dup2(2, 1)
    spec = json.loads(argv[0])
    profile = spec.pop("profile", None)
    worker = _Worker(**spec, channel_fd=channel)
    if profile is None:
        trio.run(worker.main)
    else:
        _profiled(lambda: trio.run(worker.main), Path(profile))


def _profiled(run: Callable[[], None], out: Path) -> None:
    """Run ``run`` under pyinstrument (the ``bench`` extra) and write its call tree to ``out``.

    Sampling every 1 ms, all threads' Python frames; ``async_mode="disabled"`` because trio's
    tasks interleave on one thread and the profile is meant to say where the CPU goes, not which
    task waited."""
    from pyinstrument import Profiler  # the bench extra; only a profiled run needs it

    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    try:
        run()
    finally:
        profiler.stop()
        tree = profiler.output_text(unicode=False, color=False, show_all=False)
        flat = profiler.output_text(unicode=False, color=False, show_all=True, flat=True, flat_time="self")
        out.write_text(f"{tree}\n\n# self time per function (flat)\n{flat}")


if __name__ == "__main__":
    _worker_main(sys.argv[1:])


__all__ = ["LoopbackConfig", "LoopbackResults", "markdown", "run_loopback_bench"]
