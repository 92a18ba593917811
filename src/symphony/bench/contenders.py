"""The contenders the accuracy benchmark compares (paper Table 2 and the ablations), on one agent pool.

Every system answers with the models of the same pool (one ``ChatModel`` per agent, each sampling
at the run's temperature with seeded calls) and the same prompts (``pipeline.planner`` /
``pipeline.executor``), so they differ only in how they organise the calls:

- ``direct``: agent 0 solves the question in one call (the executor's one-step prompt);
- ``sc``: self-consistency, ``samples`` direct solutions spread round-robin over the pool, plain
  majority (``voting.weighted_vote`` with weight 1 each); no decomposition;
- ``orchestrator``: ``bench.orchestrator``: agent 0 plans, agents take the steps round-robin,
  one chain, no beacon, no vote (AutoGen/CrewAI-style);
- ``symphony``: the real stack: AgentRuntimes on the in-process memory network, beacon selection,
  ``cots`` chains and the weighted vote (``TaskService.ask``).

A system is named by a spec: ``direct``, ``sc``, ``sc:samples=5``, ``orchestrator``, ``symphony``,
``symphony:cots=1``, ``symphony:strategy=random`` (``parse_system``). Every solver returns a dict
with ``answer``, ``tokens``, ``calls``, ``latency_s`` and, where there is one, the ``trace``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from symphony.bench.datasets import Item
from symphony.llm import ChatModel, Completion, ModelError
from symphony.node import AgentRuntime
from symphony.pipeline import Ballot, weighted_vote
from symphony.pipeline.executor import STEP_MAX_TOKENS, execution_messages, parse_step_answer, program_messages
from symphony.pipeline.tools import run_program
from symphony.bench.orchestrator import orchestrate
from symphony.pipeline.service import ONE_STEP_NOTE, AskOptions, TaskFailed

SYSTEMS: Final = ("direct", "direct-pot", "sc", "orchestrator", "symphony")
_INT_OPTIONS: Final = {"samples", "cots", "max_steps", "first_cots", "agree"}
_STR_OPTIONS: Final = {"strategy", "tools", "verify", "adaptive"}
_STR_VALUES: Final = {"strategy": ("cosine", "random", "linucb"), "tools": ("on", "off"), "verify": ("on", "off"),
                      "adaptive": ("on", "off")}


class SampledModel:
    """Wraps a model so every call samples at ``temperature`` with a seed from ``rng``."""

    def __init__(self, inner: ChatModel, *, temperature: float, rng: random.Random) -> None:
        self.inner = inner
        self.name = inner.name
        self.supports_json_schema = inner.supports_json_schema
        self.temperature = temperature
        self.rng = rng

    async def chat(self, messages: list[dict[str, str]], **kwargs: Any) -> Completion:
        kwargs.update(temperature=self.temperature, seed=self.rng.randrange(2**31))
        return await self.inner.chat(messages, **kwargs)

    async def aclose(self) -> None:
        pass


@dataclass(frozen=True)
class SystemSpec:
    """A parsed system spec: its base ``system`` and options (``samples``, ``cots``, ...)."""

    name: str
    system: str
    samples: int = 5
    cots: int = 3
    max_steps: int = AskOptions.max_steps
    strategy: str = "cosine"
    tools: str = "on"
    verify: str = "on"
    adaptive: str = "on" if AskOptions.adaptive else "off"
    first_cots: int = AskOptions.first_cots
    agree: int = AskOptions.agree


def parse_system(spec: str, *, cots: int = AskOptions.cots, max_steps: int = AskOptions.max_steps,
                 samples: int = 5) -> SystemSpec:
    """``direct`` | ``direct-pot`` | ``sc[:samples=K]`` | ``orchestrator[:max_steps=N]`` |
    ``symphony[:cots=N,strategy=cosine|random|linucb,max_steps=N,tools=on|off,verify=on|off,adaptive=on|off,
    first_cots=N,agree=N]``; ``ValueError`` otherwise. ``tools=off`` runs the question with the executors' python
    tool switched off, ``verify=off`` without checking code answers on the question's examples before the vote
    (ablations); ``adaptive=off`` launches all ``cots`` chains at once, else ``first_cots`` start and more follow
    while fewer than ``agree`` agree (``pipeline.adaptive``)."""
    system, _, rest = spec.strip().partition(":")
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r} in {spec!r}; expected one of {SYSTEMS}")
    values: dict[str, Any] = {"cots": cots, "max_steps": max_steps, "samples": samples}
    for part in filter(None, rest.split(",")):
        key, sep, value = part.partition("=")
        if not sep or key not in _INT_OPTIONS | _STR_OPTIONS:
            raise ValueError(f"bad option {part!r} in system {spec!r}; use key=value with key in "
                             f"{sorted(_INT_OPTIONS | _STR_OPTIONS)}")
        if key in _INT_OPTIONS:
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"{key} must be a positive integer in {spec!r}")
            values[key] = int(value)
        elif value not in _STR_VALUES[key]:
            raise ValueError(f"{key} must be one of {', '.join(_STR_VALUES[key])} in {spec!r}")
        else:
            values[key] = value
    return SystemSpec(name=spec.strip(), system=system, **values)


def _tokens(c: Completion) -> int:
    return c.prompt_tokens + c.completion_tokens


async def _one_shot(model: ChatModel, item: Item) -> tuple[str | None, int, str]:
    messages = execution_messages(item.question, question=item.question, previous=[], is_final=True,
                                  answer_kind=item.kind)
    completion = await model.chat(messages, max_tokens=STEP_MAX_TOKENS)
    return parse_step_answer(completion.text, kind=item.kind).answer, _tokens(completion), completion.text


async def solve_direct(model: ChatModel, item: Item) -> dict[str, Any]:
    """One call to one agent."""
    started = time.perf_counter()
    try:
        answer, tokens, raw = await _one_shot(model, item)
    except ModelError as exc:
        return {"answer": None, "error": str(exc), "tokens": 0, "calls": 1, "latency_s": time.perf_counter() - started}
    return {"answer": answer, "tokens": tokens, "calls": 1, "latency_s": time.perf_counter() - started,
            "trace": {"raw": raw[-2000:]}}


async def solve_direct_program(model: ChatModel, item: Item) -> dict[str, Any]:
    """One program-of-thought call to one agent: its program run in the sandbox, the printed value
    the answer (none when the program fails: no second call). The honest baseline for tool use."""
    started = time.perf_counter()
    messages = program_messages(item.question, question=item.question, previous=[])
    try:
        completion = await model.chat(messages, max_tokens=STEP_MAX_TOKENS)
    except ModelError as exc:
        return {"answer": None, "error": str(exc), "tokens": 0, "calls": 1, "latency_s": time.perf_counter() - started}
    run = await run_program(completion.text, item.kind, is_final=True)
    return {"answer": run.answer, "tokens": _tokens(completion), "calls": 1,
            "latency_s": time.perf_counter() - started, "trace": {"tool": run.trace()}}


async def solve_self_consistency(models: list[ChatModel], item: Item, samples: int) -> dict[str, Any]:
    """``samples`` one-shot solutions, round-robin over the pool, plain majority vote."""
    started = time.perf_counter()
    ballots, tokens = [], 0
    for n in range(samples):
        try:
            answer, used, _ = await _one_shot(models[n % len(models)], item)
        except ModelError:
            continue
        tokens += used
        ballots.append(Ballot(f"s{n}", answer, 1.0))
    vote = weighted_vote(ballots, item.kind)
    return {"answer": vote.answer, "tokens": tokens, "calls": samples, "latency_s": time.perf_counter() - started,
            "trace": {"votes": [{"answer": t.answer, "count": t.count} for t in vote.tallies]}}


async def solve_orchestrator(models: list[ChatModel], item: Item, max_steps: int) -> dict[str, Any]:
    """Agent 0 coordinates, all agents work round-robin (``bench.orchestrator``)."""
    started = time.perf_counter()
    run = await orchestrate(item.question, coordinator=models[0], workers=models, kind=item.kind, max_steps=max_steps)
    return {"answer": run.answer, "tokens": run.prompt_tokens + run.completion_tokens, "calls": run.calls,
            "latency_s": time.perf_counter() - started, "trace": {"plan": run.plan_note, "steps": run.steps}}


def symphony_calls(trace: dict[str, Any]) -> int:
    """Model calls a Symphony trace made: one plan per chain (none for a one-step plan, which calls no
    planner) plus every executor attempt (two for a program that fell back to a text answer)."""
    return sum(_chain_calls(c["trace"]) for c in trace.get("chains", []))


def _chain_calls(chain: dict[str, Any]) -> int:
    attempts = [a for s in chain.get("steps", []) for a in s["attempts"]]
    planned = not str(chain.get("plan", "")).startswith(ONE_STEP_NOTE)
    return planned + sum(1 + ("fallback" in a.get("tool", {})) for a in attempts)


def blacklists(nodes: Sequence[AgentRuntime]) -> dict[str, list[str]]:
    """Which pool agents each node has blacklisted right now (by index, only nodes with any): a
    blacklisted agent is neither invited by that node's beacons nor served, so a question asked
    then runs on fewer agents. Cross-voting's verdicts on honest but disagreeing agents build up
    across questions, so a result row records this to tell a small pool apart from a shrunken one."""
    index = {node.identity.agent_id: str(n) for n, node in enumerate(nodes)}
    listed = {str(n): sorted(index.get(a, a) for a in node.defences.reputation.blacklisted(now=node.defences.clock()))
              for n, node in enumerate(nodes)}
    return {n: agents for n, agents in listed.items() if agents}


async def solve_symphony(nodes: list[AgentRuntime], item: Item, options: AskOptions) -> dict[str, Any]:
    """The full Symphony stack, asked at node 0; ``blacklisted`` is ``blacklists`` when asked."""
    started = time.perf_counter()
    listed = blacklists(nodes)
    try:
        trace = await nodes[0].tasks.ask(item.question, options)
    except TaskFailed as exc:
        trace = exc.trace
        return {"answer": None, "error": str(exc), "calls": symphony_calls(trace),
                "tokens": trace.get("prompt_tokens", 0) + trace.get("completion_tokens", 0),
                "latency_s": time.perf_counter() - started, "trace": trace, "blacklisted": listed}
    return {"answer": trace["answer"], "tokens": trace["prompt_tokens"] + trace["completion_tokens"],
            "calls": symphony_calls(trace), "latency_s": time.perf_counter() - started, "trace": trace,
            "blacklisted": listed}


async def solve(spec: SystemSpec, item: Item, *, models: list[ChatModel], nodes: list[AgentRuntime] | None,
                deadline_s: float = 1800.0) -> dict[str, Any]:
    """Answer ``item`` with the system ``spec`` names, on the pool's ``models`` / ``nodes``."""
    if spec.system == "direct":
        return await solve_direct(models[0], item)
    if spec.system == "direct-pot":
        return await solve_direct_program(models[0], item)
    if spec.system == "sc":
        return await solve_self_consistency(models, item, spec.samples)
    if spec.system == "orchestrator":
        return await solve_orchestrator(models, item, spec.max_steps)
    if nodes is None:
        raise ValueError("symphony needs the pool's nodes")
    # hop_timeout off: the pool's agents share this machine's cores (and one model per spec), so a hop's
    # time is the queue's, not the executor's; an adaptive timeout cut honest executors, retried the step on
    # backups behind the same queue and made them suspects (NotAdmitted) at load 15-20 (session 7)
    options = AskOptions(cots=spec.cots, strategy=spec.strategy, max_steps=spec.max_steps, deadline_s=deadline_s,
                         answer_kind=item.kind, hop_timeout="off", verify=spec.verify == "on",
                         adaptive=spec.adaptive == "on", first_cots=spec.first_cots, agree=spec.agree)
    with tools_off(nodes, spec.tools == "off"):
        return await solve_symphony(nodes, item, options)


@contextmanager
def tools_off(nodes: Sequence[AgentRuntime], off: bool) -> Iterator[None]:
    """The ``tools=off`` ablation: the pool's executors answer in text while the block runs (their
    records keep declaring the tool; only how they solve changes). Not for concurrent questions."""
    saved = [node.tasks.tools for node in nodes]
    if off:
        for node in nodes:
            node.tasks.tools = ()
    try:
        yield
    finally:
        for node, tools in zip(nodes, saved, strict=True):
            node.tasks.tools = tools


__all__ = ["SYSTEMS", "SampledModel", "SystemSpec", "blacklists", "parse_system", "solve", "solve_direct",
           "solve_direct_program", "tools_off",
           "solve_orchestrator", "solve_self_consistency", "solve_symphony", "symphony_calls"]
