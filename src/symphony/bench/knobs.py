"""``symphony bench knobs``: what the fault knobs buy under crashes and slow executors (issue 17).

The robustness bench's swarm (``bench.robustness.open_swarm``: real protocol stack, memory engine,
virtual time, ``scripted:arith`` answers) with each agent's model taking ``step_s`` of model time
per call, so hop timeouts have a real latency to adapt to. Two faults:

- **slow**: ``fraction`` of the agents never return from an execution call (a hung or grossly slow
  executor; they still plan, answer beacons and report their QoS);
- **crash**: ``fraction`` of the agents are killed at random moments mid-task (``crash_scenario``).

A hung node picked as a *planner* holds its chain (its model calls queue behind its hung ones):
the initiator's adaptive planner limit (``initiator.plan_timeout_s``, as on real nodes) moves the
chain to a backup planner; one row per fault runs with that limit "off" (the deadline only, the
behaviour before it) for comparison.

Each fault runs under every knob setting (redundancy 1/2 x hop timeout adaptive / fixed / off x
planner limit) on the same seed, and the table gives completion, accuracy and latency per setting.

``--processes`` (``process_rows``) runs the hung-executor case on real ``symphony node`` processes
instead: ``agents`` nodes, ``hung`` of them on ``HUNG_MODEL`` (a timed stand-in so slow that a call
never ends within the deadline, while the node still answers beacons and reports its QoS), the rest
on ``FAST_MODEL``. Every setting's questions are asked at once, through the working nodes, with the
knobs per question (``POST /v1/tasks``), so all settings share one swarm, one load and one clock;
latency is the client's wall time from the POST to the finished record (a few minutes in all).
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console

from symphony.bench.robustness import (
    Client,
    Setup,
    _options,
    _p95,
    _summary,
    crash_scenario,
    open_swarm,
    questions,
    run_virtual,
    run_workload,
)
from symphony.llm import ChatModel, Completion
from symphony.llm.scripted import arith_model
from symphony.pipeline.service import HopTimeout
from symphony.testing import NodeProcess, wait_for
from symphony.testing import open_swarm as open_process_swarm

#: (redundancy, executor hop timeout, planner limit) settings compared; 30 s is a fixed executor limit
#: twice the adaptive floor; the first row is the one without the planner limit (before issue 17's fix).
SETTINGS: tuple[tuple[int, HopTimeout, HopTimeout], ...] = (
    (1, "adaptive", "off"), (1, "adaptive", "adaptive"), (1, 30.0, "adaptive"), (1, "off", "adaptive"),
    (2, "adaptive", "adaptive"), (2, "off", "adaptive"))


@dataclass
class SlowArith:
    """``scripted:arith`` that takes ``step_s`` per call; ``hung``: execution calls never return."""

    step_s: float
    hung: bool = False

    def __post_init__(self) -> None:
        self._inner = arith_model()
        self.name = "scripted:arith"
        self.supports_json_schema = False

    async def chat(self, messages: list[dict[str, str]], **kwargs: Any) -> Completion:
        if self.hung and kwargs.get("json_schema") is None and "Step:" in messages[-1]["content"]:
            await anyio.sleep_forever()
        await anyio.sleep(self.step_s)
        return await self._inner.chat(messages, **kwargs)

    async def aclose(self) -> None:
        return None


async def slow_scenario(setup: Setup, fraction: float, *, step_s: float) -> dict[str, Any]:
    """Questions on a swarm where ``fraction`` of the agents hang on every execution call."""
    rng = random.Random(setup.seed)
    items = questions(setup.tasks, rng)
    hung = set(random.Random(f"hung/{setup.seed}").sample(range(setup.agents), round(fraction * setup.agents)))

    def model_for(n: int) -> ChatModel:
        return SlowArith(step_s, hung=n in hung)

    async with open_swarm(setup, model_for=model_for) as (_, nodes):
        client = Client(nodes, _options(setup), random.Random(setup.seed + 1))
        outcomes = await run_workload(client, items, concurrency=setup.concurrency, prefix="slow",
                                      arrival_s=setup.arrival_s)
    return {"scenario": "slow", "fraction": fraction, "hung": len(hung), **_summary(outcomes)}


def _run(setup: Setup, scenario: str, fraction: float, step_s: float) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        if scenario == "slow":
            return await slow_scenario(setup, fraction, step_s=step_s)
        return await crash_scenario(setup, fraction, model_for=lambda n: SlowArith(step_s))

    return run_virtual(main)


#: Real-process mode: the settings compared, per question, on one swarm.
PROCESS_SETTINGS: tuple[tuple[int, HopTimeout], ...] = ((1, "adaptive"), (1, "off"), (2, "adaptive"), (2, "off"))
#: 0.05 tokens/s: the 32-token reply alone takes 640 s, past any deadline here; FAST_MODEL answers in ~1 s.
HUNG_MODEL = "timed:0.05"
FAST_MODEL = "timed:200"


def process_rows(root: Path, *, agents: int = 6, hung: int = 2, per_setting: int = 5, deadline_s: float = 60.0,
                 seed: int = 0, settings: Sequence[tuple[int, HopTimeout]] = PROCESS_SETTINGS,
                 ) -> list[dict[str, Any]]:
    """One row per setting: completion and client-side latency on real node processes (module docstring)."""
    rng = random.Random(seed)
    items = questions(per_setting, rng)
    with open_process_swarm(root, heartbeat=1.0) as swarm:
        boot = swarm.spawn("n0", args=("--model", FAST_MODEL)).wait_ready()
        rest = [swarm.spawn(f"n{i}", bootstrap=boot, args=("--model", HUNG_MODEL if i >= agents - hung else FAST_MODEL))
                for i in range(1, agents)]
        nodes = [boot] + [n.wait_ready() for n in rest]
        wait_for(lambda: all(len(n.ledger()) == agents for n in nodes), timeout=60, what="every ledger complete")
        asked = []
        for question, _ in items:
            for setting in settings:
                node = rng.choice(nodes[: agents - hung])
                asked.append((setting, node, _ask(node, question, setting, deadline_s), time.monotonic()))
        finished = _await_all([(node, task_id) for _, node, task_id, _ in asked], timeout=deadline_s + 30)
    rows = []
    for setting in settings:
        mine = [(finished.get(task_id), begun) for s, _, task_id, begun in asked if s == setting]
        done = [end - begun for (status, end), begun in ((f, b) for f, b in mine if f is not None) if status == "done"]
        rows.append({"redundancy": setting[0], "hop_timeout": setting[1], "agents": agents, "hung": hung,
                     "tasks": len(mine), "completion": len(done) / len(mine),
                     "latency_p50_s": statistics.median(done) if done else None,
                     "latency_p95_s": _p95(done)})
    return rows


def _ask(node: NodeProcess, question: str, setting: tuple[int, HopTimeout], deadline_s: float) -> str:
    redundancy, hop = setting
    response = node.post("/v1/tasks", {"question": question, "answer_kind": "number", "deadline_s": deadline_s,
                                       "redundancy": redundancy, "hop_timeout": hop})
    response.raise_for_status()
    return str(response.json()["task_id"])


def _await_all(asked: Sequence[tuple[NodeProcess, str]], *, timeout: float) -> dict[str, tuple[str, float]]:
    """Poll every task until it ends (or ``timeout`` s pass): task ID -> (status, monotonic end time)."""
    ended: dict[str, tuple[str, float]] = {}
    deadline = time.monotonic() + timeout
    while len(ended) < len(asked) and time.monotonic() < deadline:
        for node, task_id in asked:
            if task_id not in ended and (status := node.get(f"/v1/tasks/{task_id}")["status"]) != "running":
                ended[task_id] = (status, time.monotonic())
        time.sleep(0.1)
    return ended


def process_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The real-process table (wall-clock seconds)."""
    lines = ["| real processes | redundancy | hop timeout | completion | p50 s | p95 s |", "|---|---|---|---|---|---|"]
    for r in rows:
        p50, p95 = (f"{r[k]:.1f}" if r[k] is not None else "-" for k in ("latency_p50_s", "latency_p95_s"))
        lines.append(f"| {r['hung']} of {r['agents']} hung | {r['redundancy']} | {r['hop_timeout']} | "
                     f"{r['completion']:.2f} | {p50} | {p95} |")
    return "\n".join(lines)


def run_process_knobs_bench(*, out_dir: Path, console: Console, **kwargs: Any) -> list[dict[str, Any]]:
    """Run ``process_rows`` (nodes' data in a temporary directory), print it, and write
    knobs-processes.json and .md under ``out_dir``."""
    with tempfile.TemporaryDirectory() as root:
        rows = process_rows(Path(root), **kwargs)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "knobs-processes.json").write_text(json.dumps({"rows": rows}, indent=1, default=str))
    (out_dir / "knobs-processes.md").write_text(process_markdown(rows) + "\n")
    console.print(process_markdown(rows))
    return rows


def knobs_rows(setup: Setup, *, faults: Sequence[tuple[str, float]], step_s: float,
               settings: Sequence[tuple[int, HopTimeout, HopTimeout]] = SETTINGS, console: Console | None = None,
               ) -> list[dict[str, Any]]:
    """One row per (fault, setting), on the same seed."""
    rows = []
    for scenario, fraction in faults:
        for redundancy, hop, plan in settings:
            row = _run(replace(setup, redundancy=redundancy, hop_timeout=hop, plan_timeout=plan), scenario, fraction,
                       step_s)
            rows.append({"redundancy": redundancy, "hop_timeout": hop, "plan_timeout": plan, **row})
            if console is not None:
                console.print(markdown([rows[-1]]).splitlines()[-1])
    return rows


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The comparison table (latencies in virtual seconds)."""
    head = ("| fault | redundancy | hop timeout | planner limit | completion | accuracy | p50 s | p95 s |\n"
            "|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        p50, p95 = (f"{r[k]:.1f}" if r[k] is not None else "-" for k in ("latency_p50_s", "latency_p95_s"))
        lines.append(f"| {r['scenario']} {r['fraction']:.0%} | {r['redundancy']} | {r['hop_timeout']} | "
                     f"{r['plan_timeout']} | "
                     f"{r['completion']:.2f} | {r['accuracy']:.2f} | {p50} | {p95} |")
    return "\n".join(lines)


def run_knobs_bench(setup: Setup, *, faults: Sequence[tuple[str, float]], step_s: float, out_dir: Path,
                    console: Console) -> list[dict[str, Any]]:
    """Run the comparison, print it, and write knobs.json and knobs.md under ``out_dir``."""
    rows = knobs_rows(setup, faults=faults, step_s=step_s, console=console)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "knobs.json").write_text(json.dumps({"setup": setup.__dict__, "step_s": step_s, "rows": rows},
                                                   indent=1, default=str))
    (out_dir / "knobs.md").write_text(markdown(rows) + "\n")
    console.print(markdown(rows))
    return rows


__all__ = ["FAST_MODEL", "HUNG_MODEL", "PROCESS_SETTINGS", "SETTINGS", "SlowArith", "knobs_rows", "markdown",
           "process_markdown", "process_rows", "run_knobs_bench", "run_process_knobs_bench", "slow_scenario"]
