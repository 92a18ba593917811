"""``symphony bench accuracy``: the paper's accuracy tables on packaged data, with any agent pool.

For each seed, the run builds one agent pool (``--agent-model``, one spec per agent; each agent's
model samples at ``--temperature`` with calls seeded from the seed), starts the Symphony swarm on
the in-process memory network when a ``symphony`` system is asked for, and answers every item of
every dataset with every system (``bench.contenders``), ``--concurrency`` items at a time. Each
answer is scored (``bench.scoring``) and appended as one JSON line to ``accuracy.jsonl`` at once,
with its tokens, model calls, latency and trace; rows already there are skipped, so an
interrupted run resumes where it stopped. The report (``bench.report``) goes to ``accuracy.md``
with one PNG per dataset.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import trio
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from symphony.bench.contenders import SampledModel, SystemSpec, solve
from symphony.bench.datasets import DATASETS, Item, load_dataset
from symphony.bench.report import pyplot, render
from symphony.bench.scoring import score
from symphony.ledger import GossipConfig, LedgerConfig
from symphony.llm import ChatModel, parse_model_spec
from symphony.node import AgentProfile, AgentRuntime, SimulatedAgent, open_simulated_agents
from symphony.pipeline.tools import resolve_tools
from symphony.protocol import Identity
from symphony.transport import LinkModel, MemoryNetwork

RESULTS_FILE = "accuracy.jsonl"

#: The skills each packaged model declares (its tags, which with its name make the tag block of its
#: capability vector c_j, paper §3.1; the beacon scores a sub-task against them, eq. 1). They follow
#: the model cards and ``llm.llama_backend``'s notes, not benchmark items: Qwen2.5-Coder is a code
#: model that also does maths word problems and can plan; SmolLM2-135M "cannot plan or do
#: arithmetic" and declares short chat only. The hashing tag encoder matches words, so a skill is
#: described in the words sub-tasks needing it use (the vocabulary of
#: ``capability.vector.classify_task_type``'s arithmetic and word-problem types). A ledger record
#: holds at most 32 tags of 64 characters, the two role tags included.
_MATHS_SKILLS: Final = (
    "maths", "arithmetic word problems", "how many", "how much", "what is the total number", "find the number",
    "each", "per", "calculate", "compute", "add", "subtract", "multiply", "times", "divided by", "sum",
    "difference", "product", "percent", "fractions", "money", "cost", "price", "left over")
MODEL_TAGS: Final[dict[str, tuple[str, ...]]] = {
    "llama:qwen2.5-coder-1.5b": (*_MATHS_SKILLS, "python code", "reasoning", "planning steps"),
    "llama:qwen2.5-coder-0.5b": (*_MATHS_SKILLS, "python code", "reasoning", "planning steps"),
    "llama:smollm2-135m": ("short chat replies", "greetings", "simple rewriting"),
}
#: Tags of a model with no profile above (an endpoint, a GGUF path, a scripted test model).
DEFAULT_TAGS: Final = ("math", "reasoning", "code")


def agent_profile(spec: str, n: int) -> AgentProfile:
    """Agent ``n``'s declared profile for model ``spec``: ``MODEL_TAGS`` when the model has one."""
    return AgentProfile(name=f"agent{n}", tags=MODEL_TAGS.get(spec.strip(), DEFAULT_TAGS))


def pool_agents(seed: int, specs: Sequence[str], models: Sequence[ChatModel]) -> list[SimulatedAgent]:
    """The pool as Symphony agents: one seeded identity per agent, its model and its model's profile."""
    return [SimulatedAgent(Identity(random.Random(f"agent:{seed}:{n}").randbytes(32)), model, agent_profile(spec, n))
            for n, (spec, model) in enumerate(zip(specs, models, strict=True))]


@dataclass(frozen=True)
class RunConfig:
    """What one accuracy run compares, on what, and where it writes."""

    datasets: tuple[str, ...]
    systems: tuple[SystemSpec, ...]
    agent_models: tuple[str, ...]
    pool: str
    seeds: tuple[int, ...]
    limit: int
    offset: int = 0
    per_task: int = 6
    concurrency: int = 1
    temperature: float = 0.7
    out_dir: Path = Path("bench-results/accuracy")

    def __post_init__(self) -> None:
        if not self.agent_models:
            raise ValueError("the pool needs at least one agent model")
        if self.concurrency < 1 or self.limit < 1 or self.offset < 0:
            raise ValueError("concurrency and limit must be >= 1, offset >= 0")
        if self.concurrency > 1 and len({s.tools for s in self.systems if s.system == "symphony"}) > 1:
            # tools=off switches the pool's tools off for its question (contenders.tools_off): one at a time
            raise ValueError("symphony systems with tools=on and tools=off need --concurrency 1")
        for d in self.datasets:
            if d not in DATASETS:
                raise ValueError(f"unknown dataset {d!r}; expected one of {DATASETS}")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a results file; a line cut short by an interrupt is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def drop_partial_line(path: Path) -> None:
    """Cut a last line an interrupt left without its newline, so appends start on a fresh line."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def _key(row: dict[str, Any]) -> tuple[str, str, str, int, str]:
    return row["dataset"], row["pool"], row["system"], row["seed"], row["id"]


def load_items(config: RunConfig, log: Any) -> dict[str, list[Item]]:
    """Each dataset's items: BBH sampled ``per_task`` per task, then ``offset``/``limit`` applied."""
    return {d: load_dataset(d, per_task=config.per_task, log=log)[config.offset: config.offset + config.limit]
            for d in config.datasets}


async def _answer(config: RunConfig, spec: SystemSpec, item: Item, dataset: str, seed: int,
                  models: list[ChatModel], nodes: list[AgentRuntime] | None) -> dict[str, Any]:
    result = await solve(spec, item, models=models, nodes=nodes)
    correct = await trio.to_thread.run_sync(score, item, result["answer"])
    return {"dataset": dataset, "pool": config.pool, "system": spec.name, "seed": seed, "id": item.id,
            "gold": item.gold, "correct": correct, **result}


async def run(config: RunConfig, console: Console) -> list[dict[str, Any]]:
    """Answer what is not in the results file yet; returns all rows."""
    config.out_dir.mkdir(parents=True, exist_ok=True)
    path = config.out_dir / RESULTS_FILE
    drop_partial_line(path)
    done = {_key(r) for r in read_rows(path)}
    items = load_items(config, console.print)
    todo = [(seed, d, item, spec) for seed in config.seeds for d in config.datasets for item in items[d]
            for spec in config.systems if (d, config.pool, spec.name, seed, item.id) not in done]
    console.print(f"{len(done)} rows already in {path}; {len(todo)} to answer")
    bases = {spec: parse_model_spec(spec) for spec in dict.fromkeys(config.agent_models)}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task("answering", total=len(todo))
            for seed in config.seeds:
                mine = [t for t in todo if t[0] == seed]
                if mine:
                    await _run_seed(config, seed, mine, bases, path, progress, bar)
    finally:
        for base in bases.values():
            await base.aclose()
    return read_rows(path)


async def _run_seed(config: RunConfig, seed: int, todo: Sequence[tuple[int, str, Item, SystemSpec]],
                    bases: dict[str, ChatModel], path: Path, progress: Progress, bar: Any) -> None:
    models: list[ChatModel] = [
        SampledModel(bases[spec], temperature=config.temperature, rng=random.Random(f"{seed}:{n}"))
        for n, spec in enumerate(config.agent_models)]
    limiter = trio.CapacityLimiter(config.concurrency)
    async with AsyncExitStack() as stack:
        nodes = None
        if any(spec.system == "symphony" for *_, spec in todo):
            net = MemoryNetwork(link=LinkModel(latency_s=0.001), rng=random.Random(seed))
            nodes = await stack.enter_async_context(open_simulated_agents(
                net, pool_agents(seed, config.agent_models, models), clock=time.time, ledger_config=LedgerConfig(heartbeat_interval_s=5.0),
                gossip_config=GossipConfig(anti_entropy_interval_s=2.0),
                # the python tool wherever the sandbox works; no planner limit, as hop_timeout in contenders.solve:
                # a chain's time here is the shared cores' queue, and the limit cut honest planners (session 7)
                task_defaults={"tools": resolve_tools(None), "plan_timeout": "off"}))
        by_item: dict[tuple[str, str], list[tuple[int, str, Item, SystemSpec]]] = {}
        for entry in todo:
            by_item.setdefault((entry[1], entry[2].id), []).append(entry)

        async def one_item(entries: list[tuple[int, str, Item, SystemSpec]]) -> None:
            async with limiter:
                for _, dataset, item, spec in entries:  # all systems on an item in turn: pairs complete together
                    row = await _answer(config, spec, item, dataset, seed, models, nodes)
                    with path.open("a", encoding="utf-8") as f:
                        f.write(json.dumps(row) + "\n")
                    progress.console.print(
                        f"seed {seed} {dataset} {item.id} {spec.name:24s} {'✓' if row['correct'] else '✗'} "
                        f"answer={str(row['answer'])[:30]!r} gold={item.gold[:30]!r} {row['latency_s']:.0f}s "
                        f"{row['tokens']} tok {row['calls']} calls")
                    progress.advance(bar)

        async with trio.open_nursery() as nursery:
            for entries in by_item.values():
                nursery.start_soon(one_item, entries)


def rescore(rows: list[dict[str, Any]], items: dict[str, list[Item]]) -> int:
    """Score the stored answers again with the current scorer (``--report-only`` after a scorer
    fix); code answers keep their stored sandbox verdict. Returns how many verdicts changed."""
    by_id = {(d, item.id): item for d, its in items.items() for item in its}
    changed = 0
    for row in rows:
        item = by_id.get((row["dataset"], row["id"]))
        if item is None or item.kind == "code":
            continue
        correct = score(item, row["answer"])
        changed += correct != row["correct"]
        row["correct"] = correct
    return changed


def write_report(config: RunConfig, rows: list[dict[str, Any]], item_ids: set[str] | None = None) -> str:
    """Render the report for this run's datasets, seeds, systems and (if given) items, all pools in
    the file, to accuracy.md."""
    rows = [r for r in rows if r["dataset"] in config.datasets and r["seed"] in config.seeds
            and (item_ids is None or r["id"] in item_ids)]
    config.out_dir.mkdir(parents=True, exist_ok=True)
    pools = list(dict.fromkeys(r["pool"] for r in rows))  # in run order: later pools are compared with the first
    names = [s.name for s in config.systems]
    systems = [f"{n} [{p}]" for p in pools for n in names] if len(pools) > 1 else names
    text = render(rows, datasets=list(config.datasets), systems=systems, out_dir=config.out_dir)
    (config.out_dir / "accuracy.md").write_text(text, encoding="utf-8")
    return text


def run_accuracy_bench(config: RunConfig, *, report_only: bool = False, console: Console | None = None) -> str:
    """Answer what ``accuracy.jsonl`` lacks (``report_only``: only re-score the stored answers), then
    write ``accuracy.md``; prints and returns the report. Raises ``ConfigError`` before any work when
    matplotlib (the ``bench`` extra) is missing."""
    pyplot()
    console = console or Console()
    rows = read_rows(config.out_dir / RESULTS_FILE) if report_only else trio.run(run, config, console)
    items = load_items(config, console.print)
    if report_only:
        console.print(f"re-scored the stored answers: {rescore(rows, items)} verdicts changed")
    ids = {item.id for its in items.values() for item in its}
    text = write_report(config, rows, ids)
    console.print(text, markup=False, soft_wrap=True)
    return text


__all__ = ["DEFAULT_TAGS", "MODEL_TAGS", "RESULTS_FILE", "RunConfig", "agent_profile", "drop_partial_line",
           "load_items", "pool_agents", "read_rows", "rescore", "run", "run_accuracy_bench", "write_report"]
