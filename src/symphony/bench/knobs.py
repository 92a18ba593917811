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
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import trio
import trio.testing
from rich.console import Console

from symphony.bench.robustness import (
    Client,
    Setup,
    _options,
    _summary,
    crash_scenario,
    open_swarm,
    questions,
    run_workload,
)
from symphony.llm import ChatModel, Completion
from symphony.llm.scripted import arith_model
from symphony.pipeline.service import HopTimeout

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

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


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
        lines.append(f"| {r['scenario']} {r['fraction']:.0%} | {r['redundancy']} | {r['hop_timeout']} | {r['plan_timeout']} | "
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


__all__ = ["SETTINGS", "SlowArith", "knobs_rows", "markdown", "run_knobs_bench", "slow_scenario"]
