"""``symphony demo``: a local, heterogeneous swarm of real node processes answers one GSM8K question.

What it shows, in order: every node starting and loading its embedded model (a live table),
the replicated ledger converging, the question asked at one node, the chains' progress as the
nodes log it (plans, each step and its executor), then the answer, the weighted vote and the
trace, and the URL of the asking node's dashboard (live while the swarm runs).

The swarm is deliberately mixed: a Qwen2.5-Coder-1.5B planner, Qwen2.5-Coder-0.5B agents with
different declared skills, and a SmolLM2-135M agent that can neither plan nor count, so the Beacon
has real choices to make. On a small machine llama.cpp collapses when processes fight over cores,
so each node gets ``cores // cots`` threads (``SYMPHONY_LLAMA_THREADS``). The question's defaults
(chains, steps, deadline) are those of ``symphony ask`` and the API (``AskOptions``), except that the
demo plans (``ASK_DEFAULTS``: 3 chains of up to 3 steps).

Every node process is stopped on the way out, whatever the way out is: normal end, error,
Ctrl-C (SIGINT) or SIGTERM. Nodes get SIGTERM first (they announce that they leave), and
SIGKILL of their process group after a grace period.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import ValidationError
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from symphony.api.app import AskRequest
from symphony.cli.render import agent_label, console, print_error, print_trace
from symphony.errors import ConfigError
from symphony.node.config import probe_model_server
from symphony.pipeline.extraction import answers_equivalent
from symphony.pipeline.service import AskOptions
from symphony.testing import NodeProcess, Swarm, open_swarm, wait_for


@dataclass(frozen=True)
class DemoAgent:
    """One node of the demo swarm: its name, model spec and declared skills."""

    name: str
    model: str
    skills: str
    roles: str = "planner, executor"


#: How long stopping waits for the nodes to announce that they leave and exit before killing them: a node
#: with a loaded model on a busy 2-core machine needs more than 10 s to close its streams and free the model.
STOP_TIMEOUT_S = 30.0

#: The default five nodes: (name, model, declared skills, pipeline roles); ``--agents N`` takes the
#: first N (cycling). The slow 1.5B model only plans: were it also an executor, the Beacon (best match
#: first, queue only as a tie-break) could queue every sub-task on it while the others sit idle.
LINEUP = (
    ("planner", "llama:qwen2.5-coder-1.5b", "planning, decomposition, math, logic", "planner"),
    ("math", "llama:qwen2.5-coder-0.5b", "math, arithmetic, word problems", "planner, executor"),
    ("logic", "llama:qwen2.5-coder-0.5b", "logic, units, percentages", "planner, executor"),
    ("code", "llama:qwen2.5-coder-0.5b", "code, python, algorithms", "planner, executor"),
    ("weak", "llama:smollm2-135m", "chat, small talk", "planner, executor"),
)


def lineup(agents: int, model: str | None) -> list[DemoAgent]:
    """``agents`` nodes from ``LINEUP``, every model replaced by ``model`` if given. Names say
    the role and the model's size (``math-0.5b``), plus a number when the lineup repeats."""
    chosen = []
    for n in range(agents):
        role, default_model, skills, roles = LINEUP[n % len(LINEUP)]
        spec = model or default_model
        name = f"{role}-{spec.rsplit('-', 1)[-1]}" if spec.startswith("llama:qwen") or "smollm" in spec else role
        chosen.append(DemoAgent(name if n < len(LINEUP) else f"{name}-{n // len(LINEUP) + 1}", spec, skills, roles))
    return chosen


def prepare_models(specs: set[str]) -> None:
    """Check every model spec here, before any node starts (errors name the fix), and join
    split model files into the cache once, so nodes only load them."""
    from symphony.llm import parse_model_spec

    for spec in sorted(specs):
        parse_model_spec(spec)  # raises ModelSpecError with the pip command when a package is missing
        probe_model_server(spec)
        name = spec.split(":", 1)[1]
        if spec.startswith("llama:"):
            from symphony.llm.llama_backend import PACKAGED_MODELS, ensure_model_file

            packaged = PACKAGED_MODELS.get(name)
            if packaged is not None and len(packaged.parts) > 1:
                with console.status(f"preparing {spec}: joining {len(packaged.parts)} packaged parts and "
                                    "checking the sha256 (first run only) ..."):
                    ensure_model_file(packaged)


#: The demo's question: ``ask``'s and ``POST /v1/tasks``'s defaults, but planned (3 chains of up to 3
#: steps): the demo shows the paper's pipeline, and its lineup's 1.5B agent only plans, so one-step
#: chains (the API's default, ``AskOptions.max_steps``) would leave it idle. ``--max-steps 1 --cots 5``
#: asks as the API does.
ASK_DEFAULTS = AskOptions(cots=3, max_steps=3)

#: The question a swarm of ``scripted:`` test doubles gets by default: they compute arithmetic
#: expressions and cannot read a word problem (a GSM8K question would get no answer).
SCRIPTED_QUESTION = ("scripted", "What is (17 + 25) * 2?", "84")


def default_question(index: int, model: str | None) -> tuple[str, str, str]:
    """(id, question, gold answer): packaged GSM8K question ``index``, or ``SCRIPTED_QUESTION`` for a
    swarm of scripted test doubles."""
    if model is not None and model.startswith("scripted:"):
        return SCRIPTED_QUESTION
    return sample_question(index)


def sample_question(index: int) -> tuple[str, str, str]:
    """(id, question, gold answer) of packaged GSM8K test question ``index``."""
    from symphony.bench.datasets import load_gsm8k

    items = load_gsm8k(log=console.print)
    if not 0 <= index < len(items):
        raise ConfigError(f"--gsm8k-index must be between 0 and {len(items) - 1}, not {index}")
    item = items[index]
    return item.id, item.question, item.gold


# ---- start-up ----------------------------------------------------------------------------------


class NodeStatus:
    """What the start-up table shows for one node, read from its ``node.json`` and event log."""

    def __init__(self, node: NodeProcess, agent: DemoAgent) -> None:
        self.node = node
        self.agent = agent
        self.loaded_s: float | None = None
        self.error = ""

    @property
    def needs_load(self) -> bool:
        return self.agent.model.startswith("llama:")

    def refresh(self) -> None:
        if self.node.proc is not None and self.node.proc.poll() is not None:
            self.error = f"exited with {self.node.proc.returncode}: {self.node.output()[-600:]}"
            return
        if not self.node.info and (self.node.data_dir / "node.json").exists():
            self.node.wait_ready(timeout=5)
        for event in self.node.events():
            if event["event"] == "model_loaded":
                self.loaded_s = float(event["load_s"])
            elif event["event"] == "model_failed":
                self.error = str(event["error"])

    @property
    def ready(self) -> bool:
        return bool(self.node.info) and (self.loaded_s is not None or not self.needs_load)

    def text(self) -> str:
        if self.error:
            return f"[red]failed[/red]: {escape(self.error[:200])}"
        if not self.node.info:
            return "starting (libp2p, keys, ledger) ..."
        if not self.ready:
            return "up; loading the model ..."
        loaded = f" (model loaded in {self.loaded_s:.0f} s)" if self.loaded_s is not None else ""
        return f"[green]ready[/green]{loaded}"


def startup_table(statuses: list[NodeStatus], converged: int) -> Table:
    table = Table("node", "model", "declared skills", "roles", "status",
                  title=f"local swarm on 127.0.0.1 (ledger: {converged}/{len(statuses)} replicas complete)")
    for s in statuses:
        table.add_row(s.agent.name, s.agent.model, s.agent.skills, s.agent.roles, s.text())
    return table


def start_swarm(swarm: Swarm, agents: list[DemoAgent], *, threads: int, timeout: float) -> list[NodeProcess]:
    """Start one node per agent (the first is everyone's bootstrap), show their progress live and
    return once every model is loaded and every ledger replica holds every node."""
    env = {"SYMPHONY_LLAMA_THREADS": str(threads)}

    def spawn(agent: DemoAgent, boot: NodeProcess | None) -> NodeProcess:
        return swarm.spawn(agent.name, bootstrap=boot, env=env,
                           args=("--model", agent.model, "--skills", agent.skills, "--roles", agent.roles))

    boot = spawn(agents[0], None)
    statuses = [NodeStatus(boot, agents[0])]
    converged = 0

    def progress() -> bool:
        nonlocal converged
        for s in statuses:
            s.refresh()
            if s.error:
                raise RuntimeError(f"node {s.agent.name} failed: {s.error}")
        if len(statuses) == 1 and boot.info:
            statuses.extend(NodeStatus(spawn(agent, boot), agent) for agent in agents[1:])
        if len(statuses) == len(agents) and all(s.node.info for s in statuses):
            ids = {s.node.agent_id for s in statuses}
            converged = sum(ids <= {a for a, r in s.node.ledger().items() if r["available"]} for s in statuses)
        live.update(startup_table(statuses, converged))
        return len(statuses) == len(agents) and all(s.ready for s in statuses) and converged == len(agents)

    with Live(startup_table(statuses, 0), console=console, refresh_per_second=4) as live:
        wait_for(progress, timeout=timeout, what="every node to start, load its model and converge", interval=0.25)
    console.print()
    return [s.node for s in statuses]


# ---- the question ------------------------------------------------------------------------------


class EventTail:
    """New events of every node since the last call (the nodes' ``events.jsonl``)."""

    def __init__(self, nodes: list[NodeProcess]) -> None:
        self.nodes = nodes
        self.seen = {n.name: len(n.events()) for n in nodes}

    def new(self) -> list[tuple[NodeProcess, dict[str, Any]]]:
        """The events logged since the last call, oldest first across nodes."""
        batch = []
        for node in self.nodes:
            events = node.events()
            batch += [(node, event) for event in events[self.seen[node.name]:]]
            self.seen[node.name] = len(events)
        return sorted(batch, key=lambda pair: float(pair[1]["ts"]))


def describe(node: NodeProcess, event: dict[str, Any], task_id: str, names: dict[str, str]) -> str | None:
    """One progress line for a pipeline event of this task, or None for other events."""
    task = str(event.get("task", ""))
    if not task.startswith(task_id):
        return None
    chain = task[len(task_id) + 1:] or "-"
    kind = event["event"]
    if kind == "task_started":
        return f"{node.name}: Beacon chose planners {', '.join(agent_label(p, names) for p in event['planners'])}"
    if kind == "plan_made":
        return f"{chain}: planner {node.name} split the question into {len(event['steps'])} step(s) (plan {event['plan']})"
    if kind == "step_finished":
        who = agent_label(event["executor"], names)
        verdict = repr(str(event["answer"])[:40]) if event["ok"] else f"failed ({str(event['error'])[:60]}), trying a backup"
        return f"{chain}: step {event['step'] + 1} answered by {who}: {verdict}"
    if kind == "task_finished":
        return f"{node.name}: vote done -> {event['answer']}"
    return None


def ask_and_follow(node: NodeProcess, nodes: list[NodeProcess], question: str, *, cots: int, max_steps: int,
                   deadline: float) -> dict[str, Any]:
    """Ask ``question`` at ``node`` and print each chain's progress until the task ends; returns its record."""
    names = {n.agent_id: n.name for n in nodes}
    tail = EventTail(nodes)
    response = node.post("/v1/tasks", {"question": question, "cots": cots, "max_steps": max_steps,
                                       "deadline_s": deadline})
    if response.status_code != 202:
        raise RuntimeError(f"the node refused the question: HTTP {response.status_code}: {response.text[:500]}")
    task_id = response.json()["task_id"]
    started, asked_at = time.monotonic(), time.time()
    record: dict[str, Any] = {"status": "running"}
    with console.status("thinking ...") as spinner:
        while record["status"] == "running":
            time.sleep(0.5)
            # the record first: every event of a finished task is then already in the logs
            record = httpx.get(f"{node.info['api']}/v1/tasks/{task_id}", timeout=10).json()
            for who, event in tail.new():
                line = describe(who, event, task_id, names)
                if line:
                    console.print(f"  [dim]{event['ts'] - asked_at:6.1f} s[/dim]  {line}", highlight=False)
            spinner.update(f"thinking ... {time.monotonic() - started:.0f} s (task {task_id[:8]})")
    return record


# ---- the command -------------------------------------------------------------------------------


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the demo like Ctrl-C does (so the swarm is stopped either way)."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_swarm(swarm: Swarm) -> None:
    """Stop every node; a second Ctrl-C cannot interrupt this (it would leave orphans)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if swarm.nodes:
            with console.status(f"stopping {len(swarm.nodes)} nodes (they announce that they leave) ..."):
                codes = swarm.stop(timeout=STOP_TIMEOUT_S)
            killed = sum(code is None for code in codes)
            console.print(f"stopped {len(codes)} nodes" + (f" ({killed} killed after {STOP_TIMEOUT_S:.0f} s)" if killed else ""))
    finally:
        signal.signal(signal.SIGINT, previous)


def demo(
    question: Annotated[
        str | None, typer.Option(help="Your own question instead of a packaged GSM8K one (scripted: models, which "
                                      "only compute arithmetic, get \"What is (17 + 25) * 2?\").")
    ] = None,
    agents: Annotated[int, typer.Option(help="Number of node processes (the lineup cycles beyond 5).", min=2,
                                        max=20)] = 5,
    model: Annotated[
        str | None, typer.Option(help="One model spec for every node instead of the mixed lineup, e.g. "
                                      "llama:qwen2.5-coder-0.5b or scripted:arith (a test double).")
    ] = None,
    cots: Annotated[int, typer.Option(help="Chains of thought (planners) k.", min=1, max=9)] = ASK_DEFAULTS.cots,
    max_steps: Annotated[int, typer.Option(help="Most sub-tasks per chain.", min=1, max=12)] = ASK_DEFAULTS.max_steps,
    deadline: Annotated[float, typer.Option(help="Seconds before the network gives up on the question.")
                        ] = ASK_DEFAULTS.deadline_s,
    gsm8k_index: Annotated[int, typer.Option(help="Which packaged GSM8K test question (0-99).")] = 0,
    threads: Annotated[
        int | None, typer.Option(help="llama.cpp threads per node. \\[default: CPU cores // cots, at least 1]")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the nodes keep their data (kept afterwards). \\[default: a temporary "
                                       "directory, removed afterwards]")
    ] = None,
    stay: Annotated[bool, typer.Option(help="Keep the swarm and its dashboard running after the answer, or after "
                                            "a failed question, until Ctrl-C.")] = False,
) -> None:
    """Start a local swarm of mixed agents on 127.0.0.1, ask it a GSM8K question, and print the
    answer, the weighted vote and the trace (planners, executors, Beacon scores, times).
    Every node process is stopped on exit, on error and on Ctrl-C."""
    began = time.monotonic()
    chosen = lineup(agents, model)
    threads = threads or max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                 else os.cpu_count() or 1) // cots)
    try:
        gold = ""
        if question is None:
            item_id, question, gold = default_question(gsm8k_index, model)
        AskRequest(question=question, cots=cots, max_steps=max_steps, deadline_s=deadline)  # the node's own checks
        prepare_models({a.model for a in chosen})
    except ValidationError as exc:
        error = exc.errors()[0]
        print_error(f"--{str(error['loc'][0]).replace('_s', '').replace('_', '-')}: {error['msg']}")
        raise typer.Exit(2) from exc
    except ConfigError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    source = f" ({item_id}, packaged GSM8K test set)" if gold and item_id != SCRIPTED_QUESTION[0] else ""
    console.print(f"[bold]question[/bold]{source}: {question}", highlight=False)
    workdir = nullcontext(str(data_dir)) if data_dir else tempfile.TemporaryDirectory(prefix="symphony-demo-")
    with _sigterm_as_interrupt(), workdir as root_name:
        root = Path(root_name)
        code = 0
        with open_swarm(root, heartbeat=2.0) as swarm:
            try:
                code = _run(swarm, chosen, question, gold, cots=cots, max_steps=max_steps, deadline=deadline,
                            threads=threads, stay=stay)
            except KeyboardInterrupt:
                console.print("[yellow]interrupted[/yellow]")
                code = 130
            except (RuntimeError, AssertionError, httpx.HTTPError) as exc:
                print_error(exc, label="demo failed")
                code = 1
            finally:
                stop_swarm(swarm)
    console.print(f"total wall time {time.monotonic() - began:.1f} s")
    raise typer.Exit(code)


def _run(swarm: Swarm, agents: list[DemoAgent], question: str, gold: str, *, cots: int, max_steps: int,
         deadline: float, threads: int, stay: bool) -> int:
    started = time.monotonic()
    console.print(f"starting {len(agents)} nodes ({threads} llama.cpp thread(s) each) ...")
    nodes = start_swarm(swarm, agents, threads=threads, timeout=900)
    asked = nodes[0]
    console.print(f"swarm ready in {time.monotonic() - started:.1f} s")
    console.print(f"[bold]dashboard:[/bold] {asked.info['api']}/   (live while the swarm runs)", highlight=False)
    console.print(f"asking {asked.name} (k={cots} chains, at most {max_steps} steps each) ...")
    record = ask_and_follow(asked, nodes, question, cots=cots, max_steps=max_steps, deadline=deadline)
    if record.get("trace"):
        print_trace(record["trace"], {n.agent_id: n.name for n in nodes})
    code = 0
    if record["status"] != "done":
        print_error(record.get("error", ""), label="no answer")
        code = 1
    elif gold:
        right = answers_equivalent(str(record["answer"]), gold, "number")
        verdict = "[green]correct[/green]" if right else "[red]wrong[/red]"
        console.print(f"gold answer: {gold} -> {verdict}")
    console.print(f"[bold]dashboard:[/bold] {asked.info['api']}/", highlight=False)
    if stay:
        stay_up(nodes)
    return code


def stay_up(nodes: list[NodeProcess]) -> None:
    """Keep the swarm (and its dashboards) running until Ctrl-C or SIGTERM (raised as KeyboardInterrupt: here
    the expected end, so the demo's exit status stays the question's); a node that dies meanwhile is reported."""
    console.print(f"[bold]the swarm of {len(nodes)} nodes and the dashboard stay up: press Ctrl-C to stop "
                  "them[/bold]", highlight=False)
    reported: set[str] = set()
    try:
        while True:
            time.sleep(1.0)
            for node in nodes:
                if node.name not in reported and node.proc is not None and node.proc.poll() is not None:
                    reported.add(node.name)
                    print_error(f"node {node.name} exited with {node.proc.returncode}", label="warning")
    except KeyboardInterrupt:
        console.print()  # after the ^C the terminal echoes

