"""Direct solving vs Symphony on the packaged GSM8K questions, same model, several seeds.

Both systems use the *same* model object. Direct: one call with the executor's
single-step prompt. Symphony: ``agents`` AgentRuntimes on the in-process memory network
(real clock), 3 CoTs by default, beacon-selected executors, weighted vote. With one
shared model, chain diversity comes from sampling, so both systems sample at the same
temperature with per-call seeds drawn from the run's seed. Per-item results go to a
JSONL file (an interrupted run resumes); the summary is a markdown table.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import trio
from rich.console import Console

from symphony.bench.contenders import SampledModel, solve_direct, solve_symphony
from symphony.bench.datasets import Item, load_gsm8k
from symphony.ledger import GossipConfig, LedgerConfig
from symphony.llm import parse_model_spec
from symphony.node import AgentProfile, SimulatedAgent, open_simulated_agents
from symphony.pipeline import answers_equivalent
from symphony.pipeline.service import AskOptions
from symphony.protocol import Identity
from symphony.transport import LinkModel, MemoryNetwork


async def _run(model_spec: str, items: list[Item], seeds: list[int], agents: int, options: AskOptions,
               temperature: float, results_path: Path, console: Console) -> None:
    done = {(r["system"], r["seed"], r["id"]) for r in _read(results_path)}
    base = parse_model_spec(model_spec)
    net = MemoryNetwork(link=LinkModel(latency_s=0.001), rng=random.Random(0))
    for seed in seeds:
        model = SampledModel(base, temperature=temperature, rng=random.Random(seed))
        specs = [SimulatedAgent(Identity(random.Random(1000 * seed + n).randbytes(32)), model,
                                AgentProfile(name=f"agent{n}", tags=("math", "arithmetic"))) for n in range(agents)]
        async with open_simulated_agents(net, specs, clock=time.time,
                                         ledger_config=LedgerConfig(heartbeat_interval_s=5.0),
                                         gossip_config=GossipConfig(anti_entropy_interval_s=2.0)) as nodes:
            for i, item in enumerate(items):
                for system in ("direct", "symphony"):
                    if (system, seed, item.id) in done:
                        continue
                    result = await (solve_direct(model, item) if system == "direct"
                                    else solve_symphony(nodes, item, options))
                    correct = result["answer"] is not None and answers_equivalent(result["answer"], item.gold, "number")
                    row = {"system": system, "seed": seed, "id": item.id, "gold": item.gold, "correct": correct,
                           **result}
                    with results_path.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    console.print(f"seed {seed} item {i + 1}/{len(items)} {system:8s} "
                                  f"{'✓' if correct else '✗'} answer={result['answer']!r} gold={item.gold} "
                                  f"{result['latency_s']:.0f}s {result['tokens']} tok")
    await base.aclose()


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize(rows: list[dict[str, Any]], items: list[Item]) -> dict[str, Any]:
    """Accuracy per seed, mean ± std over seeds, tokens and latency per question, per system."""
    ids = {item.id for item in items}
    summary: dict[str, Any] = {}
    for system in ("direct", "symphony"):
        mine = [r for r in rows if r["system"] == system and r["id"] in ids]
        seeds = sorted({r["seed"] for r in mine})
        per_seed = [statistics.mean(r["correct"] for r in mine if r["seed"] == s) for s in seeds]
        summary[system] = {
            "n": len(mine), "seeds": seeds, "accuracy_per_seed": per_seed,
            "accuracy_mean": statistics.mean(per_seed) if per_seed else None,
            "accuracy_std": statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0,
            "tokens_per_question": statistics.mean(r["tokens"] for r in mine) if mine else None,
            "calls_per_question": statistics.mean(r.get("calls", 1) for r in mine) if mine else None,
            "latency_s_median": statistics.median(r["latency_s"] for r in mine) if mine else None,
        }
    return summary


def run_gsm8k_compare(*, model: str, limit: int, seeds: list[int], agents: int, cots: int, max_steps: int,
                      temperature: float, out_dir: Path, console: Console) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    items = load_gsm8k(log=console.print)[:limit]
    results_path = out_dir / "gsm8k.jsonl"
    options = AskOptions(cots=cots, max_steps=max_steps, deadline_s=1800, answer_kind="number")
    trio.run(_run, model, items, seeds, agents, options, temperature, results_path, console)
    summary = summarize(_read(results_path), items)
    (out_dir / "gsm8k.json").write_text(json.dumps(summary, indent=2))
    lines = [("| system | n | accuracy mean ± std over seeds | per seed | tokens / question | model calls / question "
              "| median latency (s) |"), "|---|---|---|---|---|---|---|"]
    for system, s in summary.items():
        if s["n"]:
            lines.append(f"| {system} | {s['n']} | {s['accuracy_mean']:.3f} ± {s['accuracy_std']:.3f} | "
                         f"{', '.join(f'{a:.2f}' for a in s['accuracy_per_seed'])} | {s['tokens_per_question']:.0f} | "
                         f"{s['calls_per_question']:.1f} | {s['latency_s_median']:.1f} |")
    (out_dir / "gsm8k.md").write_text("\n".join(lines) + "\n")
    console.print("\n".join(lines))
    return summary
