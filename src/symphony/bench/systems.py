"""``symphony bench systems``: overhead, latency, bytes and beacon cost at scale, vs a centralized baseline.

For each size N the same tasks (3 CoTs x 5 sub-tasks, ``bench.workload``) run twice on the memory
engine with the same link latency, the same stand-in model and the same agents:

- **Symphony**: every agent is an ``AgentRuntime`` (beacon responder/selector + task service), the
  code a node runs. The ledger is pre-distributed: all agents share one verified replica instead of
  gossiping N^2 records in one process (its upkeep is ``symphony bench ledger``'s subject), so the
  beacon's pre-filter still scans N records per round, as each node's replica would.
- **Centralized** (relay hub): ``bench.centralized``: one coordinator holds the registry and relays
  every task message; the cheapest hub possible (it shares no context).
- **GroupChat**: the same hub, plus AutoGen GroupChat's broadcast of every conversation message to
  every group member (``group_size``, default 100); the design the paper's 15.7 MB figure fits.

Per configuration it reports end-to-end P50/P95, throughput, orchestration overhead with its
breakdown (``bench.accounting``), payload bytes and messages per task counted by the transports,
and, once, the latency of a beacon round to 100 candidates on a loopback-like link.
"""

from __future__ import annotations

import gc
import hashlib
import json
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio
from rich.console import Console
from rich.table import Table

from symphony.beacon import BEACON_PROTOCOL
from symphony.bench.accounting import PARTS, KindMeter, mean_overhead, minus, task_overhead, traffic
from symphony.bench.centralized import GROUPCHAT_PROTOCOL, GroupChatCoordinator, open_centralized
from symphony.bench.report import pyplot
from symphony.bench.workload import COTS, QUESTION, STEPS, stand_in
from symphony.capability import HashingTagEncoder, classify_task_type, requirement_vector
from symphony.ledger import Ledger, LedgerConfig
from symphony.node import AgentProfile, AgentRuntime, SimulatedAgent
from symphony.pipeline.service import EXECUTOR_TAG, TASK_PROTOCOL, AskOptions, TaskFailed
from symphony.protocol import Identity
from symphony.transport import LinkModel, MemoryNetwork

SKILLS = ("math", "arithmetic", "algebra", "finance", "statistics", "geometry", "code", "logic", "units", "retail")
LONG_TTL = LedgerConfig(heartbeat_interval_s=24 * 3600.0)  # no gossip runs: records must stay available


@dataclass(frozen=True)
class SystemsConfig:
    sizes: tuple[int, ...] = (100, 1000, 10_000)
    tasks: int = 6
    concurrency: int = 3
    latency_ms: float = 10.0
    tokens_per_s: float = 35.0
    beacon_candidates: int = 100
    beacon_rounds: int = 50
    loopback_latency_ms: float = 0.05
    group_size: int = 100
    seed: int = 0


def _agents(n: int, tokens_per_s: float, seed: int) -> list[SimulatedAgent]:
    """N agents with the stand-in model (served without a queue) and two skills each."""
    rng = random.Random(seed)
    return [SimulatedAgent(
        Identity(hashlib.sha256(f"systems/{seed}/{i}".encode()).digest()),
        stand_in(tokens_per_s, max_concurrent=None),
        AgentProfile(name=f"agent{i}", tags=tuple(rng.sample(SKILLS, 2))),
    ) for i in range(n)]


async def _run_tasks(ask: Callable[[int], Awaitable[dict[str, Any]]], cfg: SystemsConfig) -> tuple[list[dict[str, Any]], float]:
    """Run ``cfg.tasks`` tasks, ``cfg.concurrency`` at a time; return traces and the batch's seconds.

    A task that fails (no chain answered before its deadlines) is kept with ``failed`` set."""
    limiter = trio.CapacityLimiter(cfg.concurrency)
    traces: list[dict[str, Any]] = []

    async def one(i: int) -> None:
        async with limiter:
            try:
                traces.append(await ask(i))
            except TaskFailed as exc:
                traces.append({**exc.trace, "failed": str(exc)})

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(cfg.tasks):
            nursery.start_soon(one, i)
    return traces, time.perf_counter() - started


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(arch: str, n: int, runs: list[dict[str, Any]], batch_s: float, moved: Any, setup_s: float) -> dict[str, Any]:
    traces = [t for t in runs if "failed" not in t]
    if not traces:
        return {"arch": arch, "n": n, "tasks": len(runs), "failed": len(runs), "setup_s": round(setup_s, 2),
                "errors": sorted({t["failed"][:200] for t in runs})}
    overheads = [task_overhead(t) for t in traces]
    walls = [o.wall / 1000 for o in overheads]
    mean = mean_overhead(overheads)
    return {
        "arch": arch, "n": n, "tasks": len(runs), "failed": len(runs) - len(traces), "setup_s": round(setup_s, 2),
        "p50_s": round(statistics.median(walls), 3), "p95_s": round(_quantile(walls, 0.95), 3),
        "tasks_per_min": round(len(traces) / batch_s * 60, 2),
        "overhead": round(mean.fraction, 5), "overhead_max": round(max(o.fraction for o in overheads), 5),
        "breakdown_ms": {p: round(getattr(mean, p), 2) for p in PARTS},
        "bytes_per_task": round(moved.bytes / len(runs)), "messages_per_task": round(moved.messages / len(runs), 1),
        "answers_ok": sum(1 for t in traces if t["answer"] == "0"),
    }


async def _open_symphony(stack: AsyncExitStack, net: MemoryNetwork, agents: list[SimulatedAgent]) -> list[AgentRuntime]:
    """One ``AgentRuntime`` per agent over a shared, pre-filled ledger replica (see module docstring)."""
    ledger, encoder, runtimes = Ledger(LONG_TTL), HashingTagEncoder(), []
    for i, agent in enumerate(agents):
        transport = await stack.enter_async_context(net.open_node(agent.identity))
        runtime = AgentRuntime(transport=transport, identity=agent.identity, profile=agent.profile, model=agent.model,
                               clock=time.time, rng=random.Random(i), ledger=ledger, encoder=encoder,
                               ledger_config=LONG_TTL)
        await runtime.gossip.register()
        runtimes.append(runtime)
    return runtimes


def _options() -> AskOptions:
    # every chain at once, as the hub baseline runs its CoTs: adaptive chains would change the workload
    return AskOptions(cots=COTS, max_steps=STEPS, deadline_s=3600, adaptive=False)


async def _symphony(n: int, cfg: SystemsConfig, say: Callable[[str], None]) -> dict[str, Any]:
    net = MemoryNetwork(link=LinkModel(latency_s=cfg.latency_ms / 1000), rng=random.Random(cfg.seed))
    rng = random.Random(cfg.seed)
    started = time.perf_counter()
    async with AsyncExitStack() as stack:
        runtimes = await _open_symphony(stack, net, _agents(n, cfg.tokens_per_s, cfg.seed))
        setup = time.perf_counter() - started
        say(f"symphony N={n}: {len(runtimes)} agents up in {setup:.1f} s")
        stats = [r.transport.stats for r in runtimes]
        channels = [TASK_PROTOCOL, BEACON_PROTOCOL]
        meter = KindMeter(frozenset(channels))
        for r in runtimes:
            meter.tap(r.transport)
        before = traffic(stats, channels)
        initiators = [rng.randrange(n) for _ in range(cfg.tasks)]
        traces, batch = await _run_tasks(lambda i: runtimes[initiators[i]].tasks.ask(QUESTION, _options()), cfg)
        row = _summary("symphony", n, traces, batch, minus(traffic(stats, channels), before), setup)
        row["by_kind"] = meter.per_task(len(traces))
        rounds = [waited for t in traces for c in t.get("chains", []) for s in (c.get("trace") or {}).get("steps", [])
                  if (waited := (s.get("spans") or {}).get("beacon_ms"))]  # steps that waited for a round
        row["beacon_ms_p95"] = round(_quantile(rounds, 0.95), 2) if rounds else None
        return row


async def _centralized(n: int, cfg: SystemsConfig, say: Callable[[str], None], *,
                       groupchat: bool = False) -> dict[str, Any]:
    arch = "groupchat" if groupchat else "centralized"
    channels = [TASK_PROTOCOL, GROUPCHAT_PROTOCOL] if groupchat else [TASK_PROTOCOL]
    net = MemoryNetwork(link=LinkModel(latency_s=cfg.latency_ms / 1000), rng=random.Random(cfg.seed))
    rng = random.Random(cfg.seed)
    hub = Identity(hashlib.sha256(f"systems/{cfg.seed}/coordinator".encode()).digest())
    started = time.perf_counter()
    async with open_centralized(net, hub, _agents(n, cfg.tokens_per_s, cfg.seed), clock=time.time,
                                groupchat=groupchat, group_size=cfg.group_size) as system:
        setup = time.perf_counter() - started
        say(f"{arch} N={n}: coordinator + {len(system.agents)} agents up in {setup:.1f} s")
        stats = [t.stats for t in system.transports()]
        meter = KindMeter(frozenset(channels))
        for transport in system.transports():
            meter.tap(transport)
        before = traffic(stats, channels)
        initiators = [rng.randrange(n) for _ in range(cfg.tasks)]
        traces, batch = await _run_tasks(lambda i: system.agents[initiators[i]].tasks.ask(QUESTION, _options()), cfg)
        if isinstance(system.coordinator, GroupChatCoordinator):  # a task's last broadcasts outlive its answer
            with trio.fail_after(60):
                await system.coordinator.drained()
        row = _summary(arch, n, traces, batch, minus(traffic(stats, channels), before), setup)
        row["by_kind"] = meter.per_task(len(traces))
        return row


async def _groupchat(n: int, cfg: SystemsConfig, say: Callable[[str], None]) -> dict[str, Any]:
    return await _centralized(n, cfg, say, groupchat=True)


async def _beacon_rounds(cfg: SystemsConfig) -> dict[str, Any]:
    """BEACONSELECT to ``beacon_candidates`` agents on a loopback-like link, ``beacon_rounds`` times."""
    k = cfg.beacon_candidates
    net = MemoryNetwork(link=LinkModel(latency_s=cfg.loopback_latency_ms / 1000), rng=random.Random(cfg.seed))
    async with AsyncExitStack() as stack:
        runtimes = await _open_symphony(stack, net, _agents(k + 1, cfg.tokens_per_s, cfg.seed))
        selector, encoder = runtimes[0].selector, runtimes[0].encoder
        r = list(requirement_vector(QUESTION, classify_task_type(QUESTION), encoder))
        rounds = []
        for i in range(cfg.beacon_rounds + 1):
            outcome = await selector.select(r, top_l=k + 1, tags_any=frozenset({EXECUTOR_TAG}))
            if i:  # the first round dials every candidate once
                rounds.append((outcome.elapsed_s * 1000, outcome.replied, outcome.query_s * 1000))
    elapsed = [e for e, _, _ in rounds]
    return {"candidates": k + 1, "rounds": len(rounds), "link_one_way_ms": cfg.loopback_latency_ms,
            "p50_ms": round(statistics.median(elapsed), 2), "p95_ms": round(_quantile(elapsed, 0.95), 2),
            "replied_min": min(r for _, r, _ in rounds), "query_ms_p50": round(statistics.median(q for _, _, q in rounds), 3)}


@dataclass
class SystemsResults:
    config: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    beacon: dict[str, Any] = field(default_factory=dict)


def _ratios(rows: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """Per N: each baseline's bytes per task and P50 over Symphony's (``bytes`` / ``p50`` for the relay hub)."""
    by = {(r["arch"], r["n"]): r for r in rows if "breakdown_ms" in r}
    out: dict[int, dict[str, float]] = {}
    for (arch, n), s in by.items():
        if arch != "symphony":
            continue
        for base, prefix in (("centralized", ""), ("groupchat", "groupchat_")):
            if c := by.get((base, n)):
                out.setdefault(n, {})[f"{prefix}bytes"] = round(c["bytes_per_task"] / s["bytes_per_task"], 2)
                out[n][f"{prefix}p50"] = round(c["p50_s"] / s["p50_s"], 3)
    return out


BREAKDOWN = "model / queue / query / beacon / transfer / vote / other (ms, mean task)"
HEADERS = ["arch", "N", "tasks (failed)", "P50 s", "P95 s", "tasks/min", "overhead %", BREAKDOWN, "kB/task", "msgs/task"]


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in rows:
        if "breakdown_ms" not in r:
            out.append([r["arch"], f"{r['n']:,}", f"{r['tasks']} ({r['failed']})", *["-"] * (len(HEADERS) - 3)])
            continue
        b = r["breakdown_ms"]
        out.append([r["arch"], f"{r['n']:,}", f"{r['tasks']} ({r['failed']})", f"{r['p50_s']:.2f}", f"{r['p95_s']:.2f}",
                    f"{r['tasks_per_min']:.1f}", f"{100 * r['overhead']:.2f}",
                    " / ".join(f"{b[p]:.0f}" if p == "model" else f"{b[p]:.1f}" for p in PARTS),
                    f"{r['bytes_per_task'] / 1000:.1f}", f"{r['messages_per_task']:.0f}"])
    return out


def kind_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per configuration: bytes per task by message kind (mean bytes per message)."""
    return [f"- {r['arch']} N = {r['n']:,}, bytes per task by kind: " + ", ".join(
        f"{kind} {k['bytes'] / 1000:.1f} kB ({k['messages']:g} x {k['bytes_per_message']} B)"
        for kind, k in r["by_kind"].items()) for r in rows if r.get("by_kind")]


def markdown(results: SystemsResults) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results.rows)]
    ratios = _ratios(results.rows)
    lines.append("")
    for n, ratio in ratios.items():
        if "bytes" in ratio:
            lines.append(f"- N = {n:,}: relay hub / Symphony bytes per task = {ratio['bytes']}x, P50 = {ratio['p50']}x")
        if "groupchat_bytes" in ratio:
            lines.append(f"- N = {n:,}: GroupChat / Symphony bytes per task = {ratio['groupchat_bytes']}x, "
                         f"P50 = {ratio['groupchat_p50']}x")
    lines += kind_lines(results.rows)
    if results.beacon:
        b = results.beacon
        lines.append(f"- Beacon round to {b['candidates'] - 1} remote candidates (+ itself), {b['link_one_way_ms']} ms "
                     f"one-way link, {b['rounds']} rounds: P50 {b['p50_ms']} ms, P95 {b['p95_ms']} ms, "
                     f"all replied: {b['replied_min'] == b['candidates']}; ledger query P50 {b['query_ms_p50']} ms")
    return "\n".join(lines) + "\n"


def plot(results: SystemsResults, out: Path) -> list[Path]:
    """Latency and overhead vs N, bytes per task vs N, both architectures (PNG)."""
    plt = pyplot()
    paths = []
    panels = [("latency", "end-to-end latency (s)", [("p50_s", "P50"), ("p95_s", "P95")]),
              ("overhead", "orchestration overhead (%)", [("overhead", "")]),
              ("bytes", "payload bytes per task (kB)", [("bytes_per_task", "")])]
    for name, ylabel, series in panels:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for arch, marker in (("symphony", "o"), ("centralized", "s"), ("groupchat", "^")):
            rows = sorted((r for r in results.rows if r["arch"] == arch and "breakdown_ms" in r), key=lambda r: r["n"])
            for key, label in series:
                scale = 100 if key == "overhead" else 1e-3 if key == "bytes_per_task" else 1
                ax.plot([r["n"] for r in rows], [r[key] * scale for r in rows], marker=marker,
                        label=f"{arch} {label}".strip())
        ax.set_xscale("log")
        ax.set_xlabel("agents (N)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"systems_{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


async def _run(cfg: SystemsConfig, say: Callable[[str], None]) -> SystemsResults:
    results = SystemsResults(config=asdict(cfg))
    if cfg.beacon_candidates:  # first, before big runs leave a heap whose collection would stall rounds
        results.beacon = await _beacon_rounds(cfg)
        say(f"beacon round to {cfg.beacon_candidates} candidates: P95 {results.beacon['p95_ms']} ms")
    for n in cfg.sizes:
        gc.collect()
        for fn in (_symphony, _centralized, _groupchat):
            row = await fn(n, cfg, say)
            say(f"{row['arch']} N={n}: {row.get('p50_s')} s P50, overhead {row.get('overhead')}, "
                f"{row.get('bytes_per_task')} B/task, {row['failed']} of {row['tasks']} failed")
            results.rows.append(row)
    return results


def run_systems_bench(cfg: SystemsConfig, out: Path, console: Console | None = None) -> SystemsResults:
    """Run the benchmark; write ``systems.json``, ``systems.md`` and PNG plots under ``out``. Raises
    ``ConfigError`` before any work when matplotlib (the ``bench`` extra) is missing."""
    pyplot()
    console = console or Console(width=200)
    results = trio.run(_run, cfg, lambda line: console.print(f"[dim]{line}[/dim]"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "systems.json").write_text(json.dumps(asdict(results), indent=2) + "\n")
    (out / "systems.md").write_text(markdown(results))
    plot(results, out)
    table = Table(*HEADERS, title=f"symphony bench systems (link {cfg.latency_ms} ms one-way, "
                                  f"timed:{cfg.tokens_per_s:g}, {COTS} CoTs x {STEPS} sub-tasks)")
    for row in table_rows(results.rows):
        table.add_row(*row)
    console.print(table)
    console.print(markdown(results).split("\n\n", 1)[-1])
    return results


__all__ = ["SystemsConfig", "SystemsResults", "markdown", "plot", "run_systems_bench"]
