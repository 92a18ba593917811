"""``symphony bench dag``: k independent parts and a combining step, as a linear chain and as a DAG (issue #21).

Every agent runs the timed stand-in (``llm.timed.TimedModel``: it sleeps a model's time, one call
at a time per agent, and writes filler) on the robustness bench's swarm (``bench.robustness.open_swarm``:
the real protocol stack on the memory engine, under virtual time, so each agent is as if on its own
machine and the numbers are exact, not this machine's load). Only its plans are scripted: the
question has ``k`` parts and a final step that combines them, planned either without ``depends_on``
(the old linear chain: k + 1 steps one after another) or with it (the k parts at once, then the
final step). One chain per question (``cots`` 1), no redundancy, no re-plans, so the time is the
chain's critical path: the ideal ratio is (k + 1) / 2 steps, less the planning and beacon time both
modes share.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from symphony.bench.robustness import Setup, open_swarm, run_virtual
from symphony.llm import Completion, TimedModel
from symphony.pipeline.service import AskOptions

MODES = ("linear", "dag")


def parts_plan(parts: int, *, dag: bool) -> str:
    """A plan of ``parts`` parts and a combining step, with ``depends_on`` when ``dag``."""
    steps: list[dict[str, Any]] = [{"question": f"What is the value of part {n + 1}?"} for n in range(parts)]
    steps.append({"question": "What is the sum of all the parts?"})
    if dag:
        for step in steps[:-1]:
            step["depends_on"] = []
        steps[-1]["depends_on"] = list(range(parts))
    return json.dumps({"steps": steps})


@dataclass
class PartsStandIn:
    """The timed stand-in for every call; a planning call's (the one passing a JSON schema, as in
    ``workload.PlanningStandIn``) text is ``parts_plan`` instead of filler."""

    parts: int
    dag: bool
    tokens_per_s: float

    def __post_init__(self) -> None:
        self._timed = TimedModel(self.tokens_per_s, max_concurrent=1)
        self.name = self._timed.name
        self.supports_json_schema = False

    async def chat(self, messages: list[dict[str, str]], *, json_schema: dict[str, Any] | None = None,
                   **kwargs: Any) -> Completion:
        done = await self._timed.chat(messages, **kwargs)
        return done if json_schema is None else replace(done, text=parts_plan(self.parts, dag=self.dag))

    async def aclose(self) -> None:
        return None


async def _latencies(setup: Setup, parts: int, mode: str, *, tokens_per_s: float, repeats: int) -> list[float]:
    """Virtual seconds per question, ``repeats`` questions one after another on one swarm."""
    async with open_swarm(setup, model_for=lambda n: PartsStandIn(parts, mode == "dag", tokens_per_s)) as (_, nodes):
        seconds = []
        for repeat in range(repeats):
            trace = await nodes[repeat % len(nodes)].tasks.ask(
                f"Question {repeat}: add up {parts} parts.",
                AskOptions(cots=1, deadline_s=setup.deadline_s, answer_kind="number", max_steps=parts + 1))
            seconds.append(trace["latency_ms"] / 1000)
    return seconds


def dag_rows(*, parts: Sequence[int], agents: int, repeats: int, tokens_per_s: float, seed: int = 0,
             console: Console | None = None) -> list[dict[str, Any]]:
    """One row per (k, mode): the median and every run's virtual seconds, and the DAG's speedup."""
    setup = Setup(agents=agents, seed=seed, cots=1, redundancy=1, replans=0, hop_timeout="off",
                  plan_timeout="off", deadline_s=600.0)
    rows: list[dict[str, Any]] = []
    for k in parts:
        medians = {}
        for mode in MODES:
            runs = run_virtual(lambda: _latencies(setup, k, mode, tokens_per_s=tokens_per_s, repeats=repeats))
            medians[mode] = statistics.median(runs)
            rows.append({"parts": k, "mode": mode, "median_s": round(medians[mode], 3),
                         "runs_s": [round(r, 3) for r in runs]})
        rows[-1]["speedup"] = round(medians["linear"] / medians["dag"], 3)
        rows[-1]["ideal"] = round((k + 1) / 2, 3)
        if console is not None:
            console.print(markdown(rows[-2:]).splitlines()[-1])
    return rows


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The comparison table (virtual seconds)."""
    lines = ["| parts k | plan | median s | speedup vs linear | ideal (k+1)/2 |", "|---|---|---|---|---|"]
    for r in rows:
        speedup = f"{r['speedup']:.2f}" if "speedup" in r else "1"
        ideal = f"{r['ideal']:.1f}" if "ideal" in r else "-"
        lines.append(f"| {r['parts']} | {r['mode']} | {r['median_s']:.2f} | {speedup} | {ideal} |")
    return "\n".join(lines)


def run_dag_bench(*, parts: Sequence[int], agents: int, repeats: int, tokens_per_s: float, out_dir: Path,
                  console: Console) -> list[dict[str, Any]]:
    """Run the comparison, print it, and write dag.json and dag.md under ``out_dir``."""
    rows = dag_rows(parts=parts, agents=agents, repeats=repeats, tokens_per_s=tokens_per_s, console=console)
    out_dir.mkdir(parents=True, exist_ok=True)
    setup = {"parts": list(parts), "agents": agents, "repeats": repeats, "tokens_per_s": tokens_per_s}
    (out_dir / "dag.json").write_text(json.dumps({"setup": setup, "rows": rows}, indent=1))
    (out_dir / "dag.md").write_text(markdown(rows) + "\n")
    console.print(markdown(rows))
    return rows


__all__ = ["MODES", "PartsStandIn", "dag_rows", "markdown", "parts_plan", "run_dag_bench"]
