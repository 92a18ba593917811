"""Routing that learns (issue 17): does outcome feedback send sub-tasks to the strongest agent?

A heterogeneous pool on the memory engine, in virtual time (``trio.testing.MockClock``): every
agent runs ``scripted:arith`` (exact arithmetic), and each agent's execution answers are made wrong
at its own error rate (``NoisyModel``: a wrong answer is the right one plus a random non-zero
offset, so wrong answers rarely collude). All agents declare the same profile, so static cosine
scores tie and the tie-break (agent ID) decides; only what an agent learns can tell them apart.

Systems, the same questions and pool for each (paper Table 6's random vs score-based, with
Symphony-Coord's LinUCB added):

- ``random``: executors and planners in random order;
- ``cosine-static``: cosine with the skill block fixed at the prior (outcome feedback off);
- ``cosine-learned``: cosine with the skill EMA moved by outcome feedback (alpha = 0.9);
- ``linucb``: LinUCB, with the per-step reward and the end-to-end reward of outcome feedback.

Measured per run of the first ``tasks`` questions: the share of settled sub-tasks executed by the
strongest agent (lowest error rate; every agent can do every sub-task, so all are suitable), and
task accuracy (the vote's answer is the true value), for the first and the second half of the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import trio

from symphony.bench.virtual import run_virtual, virtual_now
from symphony.ledger import GossipConfig, LedgerConfig
from symphony.llm import Completion
from symphony.llm.scripted import arith_model
from symphony.node import AgentProfile, AgentRuntime, SimulatedAgent, open_simulated_agents
from symphony.pipeline.service import AskOptions, TaskFailed
from symphony.protocol import Identity
from symphony.transport import LinkModel, MemoryNetwork

SYSTEMS = ("random", "cosine-static", "cosine-learned", "linucb")
_BOXED = re.compile(r"\\boxed\{([^}]*)\}")


@dataclass(frozen=True)
class LearningConfig:
    """The pool (one error rate per agent), the run length and the seeds."""

    error_rates: tuple[float, ...] = (0.6, 0.5, 0.05, 0.5, 0.35, 0.2)
    tasks: int = 60
    seeds: tuple[int, ...] = (0, 1, 2)
    cots: int = 3
    gap_s: float = 2.0  # virtual seconds between questions
    republish_s: float = 10.0  # an agent's skill changes reach its record (and its beacon scores) this often at most

    def __post_init__(self) -> None:
        if len(self.error_rates) < 2 or not all(0.0 <= p <= 1.0 for p in self.error_rates):
            raise ValueError("need >= 2 agents, each error rate in [0, 1]")
        if self.tasks < 2 or not self.seeds or self.cots < 1:
            raise ValueError("need >= 2 tasks, a seed and >= 1 chain")


class NoisyModel:
    """``scripted:arith`` whose execution answers are wrong with probability ``error_rate``."""

    supports_json_schema = False

    def __init__(self, error_rate: float, rng: random.Random) -> None:
        self._inner, self._rate, self._rng = arith_model(), error_rate, rng
        self.name = self._inner.name

    async def chat(self, messages: list[dict[str, str]], **kwargs: Any) -> Completion:
        done = await self._inner.chat(messages, **kwargs)
        if "Step:" not in messages[-1]["content"] or self._rng.random() >= self._rate:
            return done
        return replace(done, text=_BOXED.sub(lambda m: f"\\boxed{{{self._wrong(m.group(1))}}}", done.text))

    def _wrong(self, answer: str) -> str:
        try:
            return str(Fraction(answer) + self._rng.choice((-3, -2, -1, 1, 2, 3)))
        except ValueError:
            return answer + "?"

    async def aclose(self) -> None:
        pass


def _questions(seed: int, n: int) -> list[tuple[str, str]]:
    rng = random.Random(f"learning/questions/{seed}")
    out = []
    for _ in range(n):
        a, b, c = rng.randint(2, 40), rng.randint(2, 40), rng.randint(2, 9)
        out.append((f"What is {a} + {b} * {c}?", str(a + b * c)))
    return out


def _identity(seed: int, n: int) -> Identity:
    return Identity(hashlib.sha256(f"learning/{seed}/{n}".encode()).digest())


async def _run(config: LearningConfig, system: str, seed: int) -> list[dict[str, Any]]:
    """One system over the questions of ``seed``; one row per question (answer right, share to the best)."""
    net = MemoryNetwork(link=LinkModel(latency_s=0.005), rng=random.Random(seed))
    specs = [SimulatedAgent(_identity(seed, n), NoisyModel(p, random.Random(f"{system}/{seed}/{n}")),
                            AgentProfile(name=f"a{n}", tags=("math",))) for n, p in enumerate(config.error_rates)]

    rows = []
    async with open_simulated_agents(net, specs, clock=virtual_now,
                                     ledger_config=LedgerConfig(heartbeat_interval_s=5.0),
                                     gossip_config=GossipConfig(anti_entropy_interval_s=2.0)) as nodes:
        best = nodes[min(range(len(nodes)), key=lambda n: config.error_rates[n])].agent_id
        _set_feedback(nodes, on=system != "cosine-static")
        for node in nodes:
            node.learning_interval_s = config.republish_s
        strategy = "cosine" if system.startswith("cosine") else system
        for index, (question, truth) in enumerate(_questions(seed, config.tasks)):
            rows.append(await _ask(nodes[index % len(nodes)], question, truth, best,
                                   AskOptions(cots=config.cots, strategy=strategy, deadline_s=60, adaptive=False,
                                              max_steps=3)))  # routing is learned per sub-task: planned chains
            await trio.sleep(config.gap_s)
    return rows


def _set_feedback(nodes: Sequence[AgentRuntime], *, on: bool) -> None:
    for node in nodes:
        node.tasks.feedback = node.feedback if on else None


async def _ask(node: AgentRuntime, question: str, truth: str, best: str, options: AskOptions) -> dict[str, Any]:
    try:
        trace = await node.tasks.ask(question, options)
    except TaskFailed as exc:
        trace = exc.trace
    executors = [s["executor"] for c in trace.get("chains", []) for s in (c.get("trace") or {}).get("steps", [])
                 if s.get("executor")]
    return {"right": trace.get("answer") == truth, "steps": len(executors),
            "to_best": sum(e == best for e in executors)}


def _summary(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    steps = sum(r["steps"] for r in rows)
    return {"accuracy": sum(r["right"] for r in rows) / len(rows),
            "to_best": sum(r["to_best"] for r in rows) / steps if steps else 0.0}


def run_learning_bench(config: LearningConfig, out_dir: Path) -> dict[str, Any]:
    """Every system over every seed (virtual time); writes ``learning.json`` and ``learning.md``."""
    table: dict[str, Any] = {}
    logging.getLogger("symphony.transport").setLevel(logging.CRITICAL)  # refused outvoted agents, by design
    for system in SYSTEMS:
        runs = [run_virtual(_run, config, system, seed)
                for seed in config.seeds]
        half = config.tasks // 2
        table[system] = {part: _summary([r for run in runs for r in rows_of(run, part, half)])
                         for part in ("first", "second", "all")}
    result = {"config": asdict(config), "systems": table}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "learning.json").write_text(json.dumps(result, indent=1) + "\n")
    (out_dir / "learning.md").write_text(markdown(result))
    print(markdown(result))
    return result


def rows_of(run: Sequence[dict[str, Any]], part: str, half: int) -> Sequence[dict[str, Any]]:
    return run[:half] if part == "first" else run[half:] if part == "second" else run


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [(f"Pool error rates {cfg['error_rates']}, {cfg['tasks']} questions x seeds {cfg['seeds']}, "
              f"{cfg['cots']} chains, a question every {cfg['gap_s']} s, skills republished every "
              f"{cfg['republish_s']} s at most; share of settled sub-tasks run by the strongest agent, and accuracy."),
             "",
             "| system | to strongest, 1st half | 2nd half | accuracy, 1st half | 2nd half | accuracy, all |",
             "|---|---|---|---|---|---|"]
    for system, parts in result["systems"].items():
        lines.append(f"| {system} | {parts['first']['to_best']:.1%} | {parts['second']['to_best']:.1%} | "
                     f"{parts['first']['accuracy']:.1%} | {parts['second']['accuracy']:.1%} | "
                     f"{parts['all']['accuracy']:.1%} |")
    return "\n".join(lines) + "\n"


__all__ = ["SYSTEMS", "LearningConfig", "NoisyModel", "markdown", "run_learning_bench"]
