"""``symphony``: run a node, inspect the network, run benchmarks."""

from __future__ import annotations

import json
import signal
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import httpx
import trio
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pydantic import ValidationError

from symphony.bench.accuracy import bench_accuracy
from symphony.errors import ConfigError
from symphony.node.config import DEFAULT_API, NodeConfig
from symphony.protocol.messages import Hardware

app = typer.Typer(help="Symphony: a decentralized network of small language-model agents.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks (write tables to bench-results/).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
console = Console()

ApiOption = Annotated[
    str, typer.Option("--api", help="API address of the node to ask (HOST:PORT or http URL).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print raw JSON instead of a table.")]


def _split(values: list[str]) -> list[str]:
    """Accept both repeated options and comma-separated lists: --skills "math, logic"."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@app.command()
def node(
    data_dir: Annotated[Path, typer.Option(help="Directory for the key (0600), record and event log.")],
    name: Annotated[str, typer.Option(help="Human-readable agent name.")] = "agent",
    listen: Annotated[list[str], typer.Option(help="Multiaddr to listen on (repeatable).")] = ["/ip4/127.0.0.1/tcp/0"],
    bootstrap: Annotated[list[str], typer.Option(help="Full multiaddr (.../p2p/ID) of a node to join through.")] = [],
    api: Annotated[str, typer.Option(help="HOST:PORT for the local HTTP API, port 0 = any, 'none' = off.")] = DEFAULT_API,
    skills: Annotated[list[str], typer.Option("--skills", "--tags", help='Declared skills, e.g. "math, logic".')] = [],
    model: Annotated[
        str | None,
        typer.Option(help="Model spec: llama:qwen2.5-coder-0.5b | openai:http://HOST:PORT/v1#MODEL | scripted:arith | "
                          "timed:20. Without one the node only routes and initiates."),
    ] = None,
    memory_gb: Annotated[float, typer.Option(help="Memory available to the model, in GB.")] = 0.0,
    accelerator: Annotated[str, typer.Option(help="cpu, cuda, metal, ...")] = "cpu",
    heartbeat: Annotated[
        float, typer.Option(help="Heartbeat interval in seconds (TTL = 3 heartbeats; neighbours notice a crash at once).")
    ] = 60.0,
    anti_entropy: Annotated[float, typer.Option(help="Anti-entropy interval in seconds.")] = 30.0,
) -> None:
    """Start a node: join through --bootstrap, register in the ledger, serve until Ctrl-C."""
    from symphony.node.daemon import Node

    try:
        config = NodeConfig(
            data_dir=data_dir, name=name, listen=listen, bootstrap=bootstrap,
            api=None if api.lower() == "none" else api, tags=_split(skills), model=model,
            hardware=Hardware(memory_gb=memory_gb, accelerator=accelerator),
            heartbeat_interval_s=heartbeat, anti_entropy_interval_s=anti_entropy,
        )
        the_node = Node(config)
    except (ConfigError, ValidationError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, the_node)
            await nursery.start(the_node.run)
            info = json.loads((data_dir / "node.json").read_text())
            console.print(f"[bold green]node {name} up[/bold green] id={info['agent_id']}")
            for addr in info["addrs"]:
                console.print(f"  listening {addr}")
            if info["api"]:
                console.print(f"  api {info['api']}")

    try:
        trio.run(main)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


async def _stop_on_signal(the_node: Any) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            the_node.stop()
            return


def _api_get(api: str, path: str) -> Any:
    base = api if api.startswith("http") else f"http://{api}"
    try:
        response = httpx.get(base + path, timeout=10)
    except httpx.TransportError as exc:
        console.print(f"[red]error:[/red] no node API at {base} ({exc}); start one with `symphony node` or pass --api")
        raise typer.Exit(1) from exc
    response.raise_for_status()
    return response.json()


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question to put to the network.")],
    api: ApiOption = DEFAULT_API,
    cots: Annotated[int, typer.Option(help="Number of planners / chains of thought (k).")] = 3,
    strategy: Annotated[str, typer.Option(help="Executor selection: cosine | random | linucb.")] = "cosine",
    deadline: Annotated[float, typer.Option(help="Seconds before the network gives up.")] = 300.0,
    as_json: JsonOption = False,
) -> None:
    """Ask the network a question through a node; print the answer, the vote and the trace."""
    base = api if api.startswith("http") else f"http://{api}"
    body = {"question": question, "cots": cots, "strategy": strategy, "deadline_s": deadline, "wait": True}
    try:
        response = httpx.post(base + "/v1/tasks", json=body, timeout=deadline + 30)
    except httpx.TransportError as exc:
        console.print(f"[red]error:[/red] no node API at {base} ({exc}); start one with `symphony node` or pass --api")
        raise typer.Exit(1) from exc
    record = response.json()
    if as_json:
        console.print_json(data=record)
        return
    if response.status_code != 200 or record.get("status") != "done":
        console.print(f"[red]no answer:[/red] {record.get('error', response.text)}")
        raise typer.Exit(1)
    print_trace(record["trace"])


def print_trace(trace: dict[str, Any]) -> None:
    """Human-readable trace: the vote, then each chain's planner and steps."""
    console.print(f"[bold]answer:[/bold] {trace['answer']}   ({trace['latency_ms'] / 1000:.1f} s, "
                  f"{trace['prompt_tokens'] + trace['completion_tokens']} tokens)")
    vote = Table("answer", "weight", "chains", title="weighted vote")
    for tally in trace["vote"]:
        vote.add_row(str(tally["answer"]), f"{tally['weight']:.3f}", ", ".join(tally["chains"]))
    console.print(vote)
    for chain in trace["chains"]:
        status = "ok" if chain["ok"] else f"failed: {chain['error']}"
        console.print(f"[bold]chain c{chain['index']}[/bold] planner …{chain['planner'][-8:]} "
                      f"(score {chain['planner_score']:.3f}, weight {chain['weight']:.3f}, plan "
                      f"{escape(str(chain['trace'].get('plan', '?')))}) -> {escape(chain['answer'] or '-')} "
                      f"{escape(f'[{status}]')}")
        for n, step in enumerate(chain["trace"].get("steps", []), 1):
            who = ", ".join(f"…{a['executor'][-8:]} ({a['score']:.2f}, {a['latency_ms'] / 1000:.1f}s"
                            f"{'' if a['ok'] else ', failed'})" for a in step["attempts"])
            console.print(f"   {n}. {escape(step['question'][:90])}\n      -> {escape(step['answer'][:60] or '-')}  by {who}")


@app.command()
def status(
    task_id: Annotated[str, typer.Argument(help="Task ID printed by `symphony ask --json`.")],
    api: ApiOption = DEFAULT_API,
) -> None:
    """Show a task this node initiated: running, done (with its trace) or failed."""
    record = _api_get(api, f"/v1/tasks/{task_id}")
    if record["status"] == "done":
        print_trace(record["trace"])
    else:
        console.print(f"{record['status']}: {record.get('error', '')}")


@app.command()
def peers(api: ApiOption = DEFAULT_API, as_json: JsonOption = False) -> None:
    """List the agents this node knows, with connectivity and availability."""
    rows = _api_get(api, "/v1/peers")["peers"]
    if as_json:
        console.print_json(data=rows)
        return
    table = Table("agent", "name", "connected", "available", "last seen (s)", "models", "tags")
    for row in rows:
        table.add_row(row["agent_id"][-12:], row["name"], str(row["connected"]), str(row["available"]),
                      str(row["last_seen_s_ago"]), ", ".join(row["models"]), ", ".join(row["tags"]))
    console.print(table)


@app.command()
def ledger(api: ApiOption = DEFAULT_API, as_json: JsonOption = False) -> None:
    """Print the node's replica of the capability ledger."""
    data = _api_get(api, "/v1/ledger")
    if as_json:
        console.print_json(data=data)
        return
    table = Table("agent", "name", "lamport", "available", "tags", "addrs")
    for row in data["records"]:
        table.add_row(row["agent_id"][-12:], row["name"], str(row["lamport"]), str(row["available"]),
                      ", ".join(row["tags"]), "\n".join(row["addrs"]))
    console.print(table)
    console.print(f"{data['count']} records")


def _holds_available(node: Any, agents: set[str]) -> bool:
    return agents <= {a for a, r in node.ledger().items() if r["available"]}


def _has_lamport(node: Any, agent_id: str, lamport: int) -> bool:
    return bool(node.ledger()[agent_id]["lamport"] == lamport)


DEMO_SKILLS = ["math, arithmetic", "logic, planning", "code, python", "medicine, biology", "commonsense"]


@app.command()
def demo(
    agents: Annotated[int, typer.Option(help="Number of node processes to start.", min=2, max=50)] = 5,
) -> None:
    """Start a local swarm of node processes on 127.0.0.1, show the replicated ledger
    converge and an update spread, then shut every process down."""
    import tempfile
    import time

    from symphony.node.swarm import open_swarm, wait_for

    with tempfile.TemporaryDirectory(prefix="symphony-demo-") as root, open_swarm(Path(root)) as swarm:
        with console.status(f"starting {agents} nodes on 127.0.0.1 ..."):
            boot = swarm.spawn("n0", args=("--skills", DEMO_SKILLS[0])).wait_ready()
            rest = [swarm.spawn(f"n{i}", bootstrap=boot, args=("--skills", DEMO_SKILLS[i % len(DEMO_SKILLS)]))
                    for i in range(1, agents)]
            nodes = [boot] + [n.wait_ready() for n in rest]
        ids = {n.agent_id for n in nodes}
        start = time.monotonic()
        with console.status("waiting for every ledger replica to hold every record ..."):
            for n in nodes:
                wait_for(partial(_holds_available, n, ids), timeout=60, what=f"{n.name} to converge")
        console.print(f"[green]all {agents} replicas converged[/green] in {time.monotonic() - start:.2f} s")
        console.print(f"ledger as seen by {nodes[-1].name} ({nodes[-1].info['api']}):")
        ledger(api=str(nodes[-1].info["api"]), as_json=False)
        start = time.monotonic()
        lamport = nodes[1].post("/v1/node/record", {"tags": ["math", "logic", "updated"]}).json()["lamport"]
        for n in nodes:
            wait_for(partial(_has_lamport, n, nodes[1].agent_id, lamport), timeout=30,
                     what=f"{n.name} to see the update")
        console.print(f"an UPDATE on {nodes[1].name} reached all {agents} nodes in {time.monotonic() - start:.3f} s")
        with console.status("stopping the swarm (SIGTERM, nodes announce they are leaving) ..."):
            codes = [n.terminate() for n in nodes]
        console.print(f"stopped: exit codes {codes}")


@bench_app.command("ledger")
def bench_ledger(
    real: Annotated[list[int], typer.Option(help="Real node-process swarm sizes.")] = [5, 10, 20],
    sim: Annotated[list[int], typer.Option(help="Memory-engine (simulated) sizes.")] = [100, 1000, 10000],
    out: Annotated[Path, typer.Option(help="Directory for ledger.json and ledger.md.")] = Path("bench-results"),
    seed: Annotated[int, typer.Option(help="Random seed of the simulations.")] = 0,
) -> None:
    """Ledger gossip: update propagation (time, rounds), join catch-up, failure detection, upkeep bytes."""
    from symphony.bench.ledger import run_ledger_bench

    run_ledger_bench(real_sizes=real, sim_sizes=sim, out_dir=out, seed=seed, console=console)


bench_app.command("accuracy")(bench_accuracy)


@bench_app.command("gsm8k")
def bench_gsm8k(
    model: Annotated[str, typer.Option(help="Model spec every agent uses (also the direct baseline).")] = "llama:qwen2.5-coder-0.5b",
    limit: Annotated[int, typer.Option(help="First N of the 100 packaged GSM8K questions.")] = 100,
    seeds: Annotated[list[int], typer.Option("--seed", help="Sampling seeds (repeat).")] = [0, 1, 2],
    agents: Annotated[int, typer.Option(help="Agents in the Symphony swarm.")] = 3,
    cots: Annotated[int, typer.Option(help="Chains of thought (planners).")] = 3,
    max_steps: Annotated[int, typer.Option(help="Most sub-tasks per chain.")] = 4,
    temperature: Annotated[float, typer.Option(help="Sampling temperature for both systems.")] = 0.7,
    out: Annotated[Path, typer.Option(help="Output directory (gsm8k.jsonl resumes an interrupted run).")] = Path("bench-results"),
) -> None:
    """Direct solving vs Symphony (k CoTs) on the packaged GSM8K questions, same model, several seeds."""
    from symphony.bench.gsm8k import run_gsm8k_compare

    run_gsm8k_compare(model=model, limit=limit, seeds=seeds, agents=agents, cots=cots, max_steps=max_steps,
                      temperature=temperature, out_dir=out, console=console)
