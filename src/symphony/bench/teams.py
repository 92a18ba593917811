"""``symphony bench teams``: teams of N agents on a shared task board, against Amdahl's law (issue #21).

After "Language model teams as distributed systems": a 20-sub-task coding library (one function per
sub-task, ``teams_data/``: ``text_utils`` and ``geometry``, each function with a docstring spec and
a test) in three dependency structures with parallel fraction p = 0.9 / 0.5 / 0.2: the first
``round((1 - p) * 20)`` sub-tasks form a chain and the rest fan out from its end, so the serial share
is exactly 1 - p and Amdahl's bound is ``1 / ((1 - p) + p / N)``. The structure is imposed on the
library, as that paper imposes it: dependents receive their dependencies' results.

Teams (``TeamAgent`` on ``BoardReplica``s, memory engine, ``trio.testing.MockClock``): ``assigned``
(sub-task i pre-assigned to agent i mod N), ``claim`` (self-claimed on the board), ``cnet``
(contract net, plain claiming as fallback) and ``chain`` (our linear chains: the same graph made a
total order, claimed on the board). Each agent executes on its own ``timed:`` stand-in
(``max_concurrent=1``) in VIRTUAL time: each agent as if on its own machine, so speedups are what
the coordination allows, not what this 2-core machine does. Measured per run: success (every
sub-task has a result), makespan and speedup against the same mode's N = 1 run, claim conflicts
(count, ms of doubled work), idle seconds, hedged stragglers, wasted executions, tokens.

Two fault rows: ``kill`` crashes one agent mid-sub-task (lost sub-tasks: the board re-issues its
lease, pre-assignment cannot), ``straggler`` makes one agent 4x slower with hedging on and off.

A real-model correctness run (not run here) would swap ``stand_in_executor`` for an executor that
asks a coder model for the function from its spec and dependencies' code, put the code in the
artifact, and score the finished library with ``count_passing`` (sandboxed).
"""

from __future__ import annotations

import ast
import functools
import json
import logging
import os
import random
import statistics
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio
from rich.console import Console

from symphony.bench.virtual import run_virtual
from symphony.board import (
    Artifact,
    Board,
    BoardReplica,
    Executor,
    Mode,
    Subtask,
    TaskGraph,
    TeamAgent,
    TeamConfig,
    merged,
    passing,
)
from symphony.errors import ConfigError
from symphony.llm import TimedModel
from symphony.protocol import Identity
from symphony.testing import open_swarm as open_process_swarm
from symphony.testing import wait_for
from symphony.transport import LinkModel, MemoryNetwork

DATA = Path(__file__).parent / "teams_data"
THEMES = ("text_utils", "geometry")
STRUCTURES = (0.9, 0.5, 0.2)
MODES: tuple[str, ...] = ("assigned", "claim", "cnet", "chain")
SUBTASKS = 20


@dataclass(frozen=True)
class Function:
    """One sub-task of a library: the spec an agent gets, our reference and the test."""

    name: str
    spec: str
    reference: str
    test: str


@functools.cache
def load_library(theme: str) -> tuple[Function, ...]:
    """The 20 functions of ``teams_data/<theme>.py`` (each ``def f`` followed by its ``test_f``)."""
    source = (DATA / f"{theme}.py").read_text()
    lines = source.splitlines()
    defs = {n.name: n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}

    def text(node: ast.FunctionDef) -> str:
        return "\n".join(lines[node.lineno - 1:node.end_lineno])

    return tuple(Function(name, ast.get_docstring(node) or "", text(node), text(defs[f"test_{name}"]))
                 for name, node in defs.items() if not name.startswith("test_"))


def structure(functions: Sequence[Function], p: float) -> TaskGraph:
    """The library as a graph of parallel fraction ``p``: a chain of ``round((1 - p) * n)`` then a fan-out."""
    serial = max(1, round((1 - p) * len(functions)))
    subtasks = []
    for i, f in enumerate(functions):
        deps = (functions[i - 1].name,) if 0 < i < serial else (functions[serial - 1].name,) if i >= serial else ()
        subtasks.append(Subtask(f.name, f.spec, deps))
    return TaskGraph(tuple(subtasks))


def library_task(theme: str, p: float) -> tuple[TaskGraph, dict[str, str]]:
    """A library as a team task for real nodes: each spec is the function's signature and docstring (an
    agent must know the arguments), each test ``test_<name>`` keyed by the sub-task it scores.

    Raises:
        ConfigError: ``theme`` is not one of ``THEMES``.
    """
    if theme not in THEMES:
        raise ConfigError(f"unknown library {theme!r}; one of {list(THEMES)}")
    functions = load_library(theme)
    graph = structure(functions, p)
    specs = {f.name: f"{f.reference.splitlines()[0]}\n    \"\"\"{f.spec}\"\"\"" for f in functions}
    subtasks = tuple(Subtask(s.id, specs[s.id], s.depends_on, s.cost) for s in graph.subtasks)
    return TaskGraph(subtasks), {f.name: f.test for f in functions}


def linearized(graph: TaskGraph) -> TaskGraph:
    """The same sub-tasks as one chain in plan order: what our linear chains run today."""
    ids = graph.ids
    return TaskGraph(tuple(Subtask(s.id, s.spec, (ids[i - 1],) if i else (), s.cost)
                           for i, s in enumerate(graph.subtasks)))


def amdahl(p: float, n: int) -> float:
    return 1.0 / ((1.0 - p) + p / n)


def count_passing(functions: Sequence[Function], code: dict[str, str], *, timeout_s: float = 10.0) -> int:
    """How many functions' tests pass with ``code`` (name -> source), each run alone in the sandbox.

    The whole library is defined first, so a function may call the others it depends on.
    """
    return sum(passing([f.name for f in functions], code, {f.name: f.test for f in functions},
                       timeout_s=timeout_s).values())


# -- one run --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeamsConfig:
    """The grid and the stand-in's speed."""

    sizes: tuple[int, ...] = (1, 2, 3, 4, 5)
    structures: tuple[float, ...] = STRUCTURES
    modes: tuple[str, ...] = MODES
    themes: tuple[str, ...] = THEMES
    repeats: int = 5
    tokens_per_s: float = 35.0
    reply_tokens: int = 200
    latency_ms: float = 5.0
    seed: int = 0
    faults: bool = True


@dataclass
class Fault:
    """A crash (``kill_after_s``: the agent that holds a sub-task then dies) or a slow agent."""

    kill_after_s: float | None = None
    slow_factor: float = 1.0


@dataclass
class TeamRun:
    mode: str
    n: int
    p: float
    theme: str
    seed: int
    success: bool
    lost: int
    makespan_s: float
    conflicts: int
    conflict_ms: int
    extra_artifacts: int  # artifacts beyond a sub-task's first: posted, kept, never its result
    idle_s: float
    wasted: int
    hedges: int
    tokens: int
    rejected: int
    killed: str | None = None
    stats: list[dict[str, Any]] = field(default_factory=list)


def stand_in_executor(model: TimedModel) -> Executor:
    """Execute a sub-task on the ``timed:`` stand-in: the model's time and tokens, no real code."""

    async def execute(subtask: Subtask) -> tuple[str, int]:
        prompt = f"Write the Python function {subtask.id}. Spec: {subtask.spec} Uses: {', '.join(subtask.depends_on)}"
        done = await model.chat([{"role": "user", "content": prompt}], max_tokens=1024)
        return f"# {subtask.id}\n{done.text}", done.prompt_tokens + done.completion_tokens

    return execute


@asynccontextmanager
async def open_board_mesh(net: MemoryNetwork, idents: Sequence[Identity], board_id: str,
                          graph: TaskGraph) -> AsyncIterator[list[BoardReplica]]:
    """One started ``BoardReplica`` of board ``board_id`` per identity, on a full mesh of the memory engine
    (the teams bench's set-up, and the board tests'); the nodes close on exit."""
    async with AsyncExitStack() as stack:
        nodes = [await stack.enter_async_context(net.open_node(ident)) for ident in idents]
        for i, node in enumerate(nodes):
            for other in nodes[i + 1:]:
                await node.connect(other.listen_addrs()[0])
        replicas = [BoardReplica(node, ident, Board(board_id, graph))
                    for ident, node in zip(idents, nodes, strict=True)]
        for replica in replicas:
            await replica.start()
        yield replicas


async def run_team(
    graph: TaskGraph, n: int, mode: Mode, *, cfg: TeamsConfig, seed: int, team: TeamConfig | None = None,
    fault: Fault | None = None,
) -> tuple[Board, list[TeamAgent], str | None]:
    """N agents on a full mesh of the memory engine work ``graph`` to the end (or to a virtual deadline).

    Returns the merged board of the survivors, the agents, and the killed agent's id (or None)."""
    fault = fault or Fault()
    team = team or TeamConfig(mode=mode)
    net = MemoryNetwork(link=LinkModel(latency_s=cfg.latency_ms / 1000), rng=random.Random(seed))
    idents = [Identity(bytes([seed % 256, i]) * 16) for i in range(n)]
    models = [TimedModel(cfg.tokens_per_s / (fault.slow_factor if i == n - 1 else 1.0),
                         reply_tokens=cfg.reply_tokens) for i in range(n)]
    async with open_board_mesh(net, idents, f"lib-{seed}", graph) as replicas:
        agents = [TeamAgent(replica, stand_in_executor(models[i]), team, random.Random(seed * 100 + i),
                            assigned=tuple(graph.ids[i::n]), initiator=i == 0) for i, replica in enumerate(replicas)]
        killed = await _work(agents, net, fault, deadline_s=4 * _serial_s(graph, cfg))
        survivors = [a.replica.board for a in agents if a.me != killed]
        return merged(survivors), agents, killed


def _serial_s(graph: TaskGraph, cfg: TeamsConfig) -> float:
    return len(graph.ids) * (cfg.reply_tokens / cfg.tokens_per_s + 1.0)


async def _work(agents: list[TeamAgent], net: MemoryNetwork, fault: Fault, *, deadline_s: float) -> str | None:
    """Run every agent until all finish or the virtual deadline; crash one if ``fault`` says so."""
    scopes = [trio.CancelScope() for _ in agents]
    killed: list[str] = []

    async def one(agent: TeamAgent, scope: trio.CancelScope) -> None:
        with scope:
            await agent.run()

    async def killer(after_s: float) -> None:
        await trio.sleep(after_s)
        victim = next((i for i, a in enumerate(agents) if i and _holds_any(a)), len(agents) - 1)
        killed.append(agents[victim].me)
        scopes[victim].cancel()
        net.kill(agents[victim].me)

    with trio.move_on_after(deadline_s):
        async with trio.open_nursery() as nursery:
            for agent, scope in zip(agents, scopes, strict=True):
                nursery.start_soon(one, agent, scope)
            if fault.kill_after_s is not None and len(agents) > 1:
                nursery.start_soon(killer, fault.kill_after_s)
    return killed[0] if killed else None


def _holds_any(agent: TeamAgent) -> bool:
    """Whether ``agent`` holds a sub-task now, on its own board (the crash should cost a sub-task)."""
    return any(agent.holds(s) for s in agent.replica.board.graph.ids)


def measure(board: Board, agents: list[TeamAgent], *, mode: str, n: int, p: float, theme: str, seed: int,
            started_ms: int, killed: str | None) -> TeamRun:
    """A run's figures, from the merged board (every replica computes the same) and the agents' own counts."""
    results = [board.result(s) for s in board.current_graph().ids]
    finished = [r.ts_ms for r in results if r is not None]
    conflicts = board.conflicts()
    artifacts = Counter(e.subtask for e in board.entries.values() if isinstance(e, Artifact))
    return TeamRun(
        mode=mode, n=n, p=p, theme=theme, seed=seed, success=None not in results,
        lost=sum(r is None for r in results), makespan_s=(max(finished, default=started_ms) - started_ms) / 1000,
        conflicts=len(conflicts), conflict_ms=sum(c.overlap_ms for c in conflicts),
        extra_artifacts=sum(count - 1 for count in artifacts.values()),
        idle_s=round(sum(a.stats.idle_s for a in agents), 3), wasted=sum(a.stats.wasted for a in agents),
        hedges=sum(a.stats.hedges for a in agents), tokens=sum(a.stats.tokens for a in agents),
        rejected=sum(board.rejected.values()), killed=killed, stats=[asdict(a.stats) for a in agents])


async def one_run(theme: str, p: float, n: int, mode: str, *, cfg: TeamsConfig, seed: int,
                  fault: Fault | None = None, hedge: bool = True) -> TeamRun:
    """One team on one library structure, from an empty board to the last artifact."""
    graph = structure(load_library(theme), p)
    if mode == "chain":
        graph = linearized(graph)
    board_mode: Mode = "claim" if mode == "chain" else mode  # type: ignore[assignment]
    team = TeamConfig(mode=board_mode, hedge_after=2.0 if hedge else None,
                      expected_s=cfg.reply_tokens / cfg.tokens_per_s)
    started = int(trio.current_time() * 1000)
    board, agents, killed = await run_team(graph, n, board_mode, cfg=cfg, seed=seed, team=team, fault=fault)
    return measure(board, agents, mode=mode, n=n, p=p, theme=theme, seed=seed, started_ms=started, killed=killed)


def simulate(theme: str, p: float, n: int, mode: str, *, cfg: TeamsConfig, seed: int,
             fault: Fault | None = None, hedge: bool = True) -> TeamRun:
    """``one_run`` in its own trio run on a fresh virtual clock."""
    return run_virtual(lambda: one_run(theme, p, n, mode, cfg=cfg, seed=seed, fault=fault, hedge=hedge))


# -- the grid ---------------------------------------------------------------------------------------


def run_teams_bench(cfg: TeamsConfig, out_dir: Path, console: Console | None = None) -> dict[str, Any]:
    """The whole grid plus the fault rows; writes ``teams.json`` and ``teams.md``."""
    logging.getLogger("symphony.transport").setLevel(logging.CRITICAL)
    say: Callable[[str], None] = console.print if console else print
    cells = []
    for theme in cfg.themes:
        for p in cfg.structures:
            for mode in cfg.modes:
                runs = [simulate(theme, p, n, mode, cfg=cfg, seed=cfg.seed + r)
                        for n in cfg.sizes for r in range(cfg.repeats)]
                cells.extend(_cells(runs, cfg))
                say(f"{theme} p={p} {mode}: done")
    result: dict[str, Any] = {"config": asdict(cfg), "cells": cells,
                              "faults": fault_rows(cfg) if cfg.faults else []}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "teams.json").write_text(json.dumps(result, indent=1) + "\n")
    (out_dir / "teams.md").write_text(markdown(result))
    say(markdown(result))
    return result


def _cells(runs: list[TeamRun], cfg: TeamsConfig) -> list[dict[str, Any]]:
    """Median per (N) over repeats; speedup against the same mode's N = 1 median makespan."""
    by_n: dict[int, list[TeamRun]] = {}
    for run in runs:
        by_n.setdefault(run.n, []).append(run)
    base = statistics.median(r.makespan_s for r in by_n[min(by_n)])
    out = []
    for n, group in sorted(by_n.items()):
        span = statistics.median(r.makespan_s for r in group)
        first = group[0]
        out.append({
            "theme": first.theme, "p": first.p, "mode": first.mode, "n": n, "runs": len(group),
            "success": sum(r.success for r in group) / len(group), "makespan_s": round(span, 2),
            "speedup": round(base / span, 3) if span else 0.0, "amdahl": round(amdahl(first.p, n), 3),
            "conflicts": statistics.median(r.conflicts for r in group),
            "conflict_ms": statistics.median(r.conflict_ms for r in group),
            "extra_artifacts": max(r.extra_artifacts for r in group),
            "idle_share": round(statistics.median(_idle_share(r) for r in group), 3),
            "hedges": statistics.median(r.hedges for r in group), "wasted": statistics.median(r.wasted for r in group),
            "tokens": statistics.median(r.tokens for r in group)})
    return out


def _idle_share(run: TeamRun) -> float:
    """Idle agent-seconds over all agent-seconds of the run."""
    return run.idle_s / (run.n * run.makespan_s) if run.makespan_s else 0.0


def fault_rows(cfg: TeamsConfig, *, n: int = 4, p: float = 0.9) -> list[dict[str, Any]]:
    """A claimant killed mid-sub-task (each mode), and a 4x straggler with hedging on and off."""
    theme = cfg.themes[0]
    step_s = cfg.reply_tokens / cfg.tokens_per_s
    rows = []
    for mode in ("assigned", "claim", "cnet"):
        runs = [simulate(theme, p, n, mode, cfg=cfg, seed=cfg.seed + r, fault=Fault(kill_after_s=2.5 * step_s))
                for r in range(cfg.repeats)]
        rows.append(_fault_row("kill", mode, runs))
    for hedge in (False, True):
        slow = Fault(slow_factor=4.0)
        runs = [simulate(theme, p, n, "claim", cfg=cfg, seed=cfg.seed + r, fault=slow, hedge=hedge)
                for r in range(cfg.repeats)]
        rows.append(_fault_row("straggler x4, hedge " + ("on" if hedge else "off"), "claim", runs))
    return rows


def _fault_row(fault: str, mode: str, runs: list[TeamRun]) -> dict[str, Any]:
    return {"fault": fault, "mode": mode, "n": runs[0].n, "p": runs[0].p, "runs": len(runs),
            "success": sum(r.success for r in runs) / len(runs), "lost": sum(r.lost for r in runs),
            "extra_artifacts": max(r.extra_artifacts for r in runs), "hedges": sum(r.hedges for r in runs),
            "makespan_s": round(statistics.median(r.makespan_s for r in runs), 2)}


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [f"Timed stand-in at {cfg['tokens_per_s']:g} tokens/s, {cfg['reply_tokens']} tokens per sub-task, one "
             f"model per agent, VIRTUAL time (each agent as if on its own machine), link {cfg['latency_ms']:g} ms; "
             f"medians of {cfg['repeats']} runs; speedup vs the same mode at N = 1.", "",
             "| theme | p | mode | N | success | makespan s | speedup | Amdahl | conflicts | conflict ms "
             "| extra artifacts | idle share | hedges | tokens |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in result["cells"]:
        lines.append(f"| {c['theme']} | {c['p']} | {c['mode']} | {c['n']} | {c['success']:.0%} | {c['makespan_s']} "
                     f"| {c['speedup']} | {c['amdahl']} | {c['conflicts']} | {c['conflict_ms']} "
                     f"| {c['extra_artifacts']} | {c['idle_share']} | {c['hedges']} | {c['tokens']} |")
    if result["faults"]:
        lines += ["", "| fault | mode | N | p | success | lost sub-tasks | extra artifacts | hedges | makespan s |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {f['fault']} | {f['mode']} | {f['n']} | {f['p']} | {f['success']:.0%} | {f['lost']} "
                  f"| {f['extra_artifacts']} | {f['hedges']} | {f['makespan_s']} |" for f in result["faults"]]
    return "\n".join(lines) + "\n"



# -- a real-model correctness run on real nodes ------------------------------------------------------


def run_real_teams(model: str, theme: str, p: float, sizes: Sequence[int], out_dir: Path, *,
                   timeout_s: float = 3600.0, console: Console | None = None) -> dict[str, Any]:
    """For each N: N ``symphony node`` processes with ``model`` build library ``theme`` (posted to the
    first), and the poster scores it in the sandbox. All nodes share this machine's cores, each llama
    model with ``$SYMPHONY_LLAMA_THREADS`` threads, else ``cores // N`` (at least 1), so this measures
    correctness, not speed.

    Writes ``teams-real.json`` and ``teams-real.md`` under ``out_dir``."""
    say: Callable[[str], None] = console.print if console else print
    rows = []
    for n in sizes:
        rows.append(_real_run(model, theme, p, n, out_dir / f"nodes-{n}", timeout_s=timeout_s))
        say(f"N={n}: {rows[-1]}")
    result = {"model": model, "theme": theme, "p": p, "cores": os.cpu_count(), "rows": rows}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "teams-real.json").write_text(json.dumps(result, indent=1) + "\n")
    (out_dir / "teams-real.md").write_text(real_markdown(result))
    say(real_markdown(result))
    return result


def _real_run(model: str, theme: str, p: float, n: int, root: Path, *, timeout_s: float) -> dict[str, Any]:
    threads = os.environ.get("SYMPHONY_LLAMA_THREADS") or str(max(1, (os.cpu_count() or 1) // n))
    with open_process_swarm(root) as swarm:
        nodes = [swarm.spawn("t0", args=("--model", model), env={"SYMPHONY_LLAMA_THREADS": threads}).wait_ready()]
        nodes += [swarm.spawn(f"t{i}", bootstrap=nodes[0], args=("--model", model),
                              env={"SYMPHONY_LLAMA_THREADS": threads}) for i in range(1, n)]
        for node in nodes:
            node.wait_ready(timeout=120)
        wait_for(lambda: all(len(x.ledger()) == n for x in nodes), timeout=60, what=f"{n} nodes to know each other")
        # a lone agent must close its own fix gaps: no grace period for a poster that has no one to wait for
        posted = nodes[0].post("/v1/teams", {"library": theme, "p": p, **({"gap_grace_s": 0} if n == 1 else {})})
        posted.raise_for_status()
        board = posted.json()["board"]
        done = wait_for(lambda: (v := nodes[0].get(f"/v1/teams/{board}"))["status"] == "done" and v,
                        timeout=timeout_s, what="the team to finish", interval=2.0)
        agents = [x.get(f"/v1/teams/{board}")["agent"] for x in nodes]
        swarm.stop()
    return {"n": n, "threads_each": int(threads), "gap_grace_s": done["gap_grace_s"], "seconds": done["seconds"],
            "tests_passed": done["tests"]["passed"] if done["tests"] else None,
            "tests_total": done["tests"]["total"] if done["tests"] else None,
            "conflicts": done["conflicts"], "conflict_ms": done["conflict_ms"],
            "extra_artifacts": done["extra_artifacts"], "executed": sum(a["executed"] for a in agents),
            "wasted": sum(a["wasted"] for a in agents), "hedges": sum(a["hedges"] for a in agents),
            "tokens": sum(a["tokens"] for a in agents), "idle_s": round(sum(a["idle_s"] for a in agents), 1),
            "busy_s": round(sum(a["busy_s"] for a in agents), 1),
            "by_agent": [a["executed"] for a in agents]}


def real_markdown(result: dict[str, Any]) -> str:
    lines = [f"{result['model']}, library {result['theme']} (20 functions, p = {result['p']}), every node on this "
             f"machine's {result['cores']} cores (no speedup expected); real `symphony node` processes.", "",
             "| N | threads each | gap grace s | tests passed | seconds | conflicts | conflict ms | extra artifacts | executed "
             "| wasted | hedges | idle s | busy s | tokens | sub-tasks by agent |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['n']} | {r['threads_each']} | {r['gap_grace_s']} | {r['tests_passed']}/{r['tests_total']} | {r['seconds']} "
              f"| {r['conflicts']} | {r['conflict_ms']} | {r['extra_artifacts']} | {r['executed']} | {r['wasted']} "
              f"| {r['hedges']} | {r['idle_s']} | {r['busy_s']} | {r['tokens']} | {r['by_agent']} |"
              for r in result["rows"]]
    return "\n".join(lines) + "\n"


__all__ = ["Fault", "Function", "TeamRun", "TeamsConfig", "amdahl", "count_passing", "library_task",
           "linearized", "load_library", "one_run", "open_board_mesh", "real_markdown", "run_real_teams",
           "run_teams_bench", "simulate", "structure"]
