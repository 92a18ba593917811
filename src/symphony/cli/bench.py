"""``symphony bench ...``: the benchmark commands.

Only the command line lives here (typer signatures, option help, exit codes); each command builds
its config and calls a plain function of ``symphony.bench``, which can be called the same way from
Python without typer.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from symphony.bench.accuracy import RunConfig, run_accuracy_bench
from symphony.bench.contenders import parse_system
from symphony.bench.datasets import DATASETS
from symphony.bench.frameworks import FrameworksConfig, run_frameworks_bench
from symphony.bench.loopback import LoopbackConfig, run_loopback_bench
from symphony.bench.robustness import ATTACKS, FRACTIONS, NETWORK_ROWS, SCENARIOS, Setup, run_robustness
from symphony.bench.sharding import ShardingConfig, run_sharding_bench
from symphony.bench.shardnet import ShardNetConfig
from symphony.bench.systems import SystemsConfig, run_systems_bench
from symphony.cli.render import console, print_error
from symphony.errors import ConfigError
from symphony.ledger.shard import DEFAULT_CONES
from symphony.pipeline.service import AskOptions

bench_app = typer.Typer(help="Benchmarks (write tables to bench-results/).", no_args_is_help=True)


@contextmanager
def config_errors_exit() -> Iterator[None]:
    """A ``ConfigError`` (e.g. matplotlib missing for the plots) ends the command with its message, status 2."""
    try:
        yield
    except ConfigError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc


@bench_app.command("systems")
def bench_systems(
    sizes: list[int] = [100, 1000, 10_000],  # noqa: B006 - typer reads the default
    tasks: int = 6,
    concurrency: int = 3,
    latency_ms: float = 10.0,
    tokens_per_s: float = 35.0,
    beacon_candidates: int = 100,
    beacon_rounds: int = 50,
    group_size: int = 100,
    seed: int = 0,
    out: Path = Path("bench-results/systems"),
) -> None:
    """Overhead, latency, bytes/task and beacon cost vs N, against a centralized coordinator."""
    cfg = SystemsConfig(sizes=tuple(sizes), tasks=tasks, concurrency=concurrency, latency_ms=latency_ms,
                        tokens_per_s=tokens_per_s, beacon_candidates=beacon_candidates, beacon_rounds=beacon_rounds,
                        group_size=group_size, seed=seed)
    with config_errors_exit():
        run_systems_bench(cfg, out)


@bench_app.command("systems-libp2p")
def bench_systems_libp2p(
    agents: list[int] = [10, 25],  # noqa: B006 - typer reads the default
    per_process: int = 5,
    tasks: int = 6,
    concurrency: int = 3,
    tokens_per_s: float = 35.0,
    beacon_rounds: int = 20,
    seed: int = 0,
    out: Path = Path("bench-results/systems-libp2p"),
    profile: Annotated[bool, typer.Option(help="Run each worker under pyinstrument (bench extra); "
                                                "profiles are written beside the worker logs.")] = False,
    stress: Annotated[bool, typer.Option(help="Time the join phase with 2 busy processes per core.")] = False,
    centralized: Annotated[bool, typer.Option(help="Also run the centralized hub baseline on real processes.")] = True,
) -> None:
    """The systems table on real py-libp2p node processes on 127.0.0.1."""
    if per_process < 1 or any(n < 2 for n in agents):
        raise SystemExit("--per-process must be >= 1 and every --agents >= 2")
    cfg = LoopbackConfig(sizes=tuple(agents), per_process=per_process, tasks=tasks, concurrency=concurrency,
                         tokens_per_s=tokens_per_s, beacon_rounds=beacon_rounds, seed=seed, profile=profile, stress=stress,
                         centralized=centralized)
    run_loopback_bench(cfg, out)


@bench_app.command("sharding")
def bench_sharding(
    sizes: list[int] = [100, 300],  # noqa: B006 - typer reads the default
    window_s: float = 1800.0,
    seed: int = 0,
    out: Path = Path("bench-results/sharding"),
    upkeep: bool = True,
    beacon_sizes: list[int] = [],  # noqa: B006
    beacons: int = 20,
    cones: int = DEFAULT_CONES,
    caps: list[int] = [8, 16, 0],  # noqa: B006
    top_l: int = 8,
    wave: int = 4,
) -> None:
    """Ledger upkeep (MB/agent/h) with flooded vs gateway-sharded liveness, and the sharding arithmetic.

    ``--beacon-sizes 100 --beacon-sizes 1000 ...`` adds the sharded-ledger bench: per-node state and
    per-beacon messages / recall, flooded vs sharded (``--caps``: most gateways a beacon asks, 0 = no
    cap; ``--cones``: clusters per shard summary; ``--wave``: gateways per later wave, 0 = all at once).
    ``--no-upkeep`` skips the upkeep runs."""
    net = ShardNetConfig(beacons=beacons, cones=cones, caps=tuple(caps), top_l=top_l, seed=seed, wave=wave)
    run_sharding_bench(ShardingConfig(sizes=tuple(sizes), window_s=window_s, seed=seed, upkeep=upkeep,
                                      beacon_sizes=tuple(beacon_sizes), shardnet=net), out)


@bench_app.command("privacy")
def bench_privacy(
    sigmas: list[float] = [0.0, 0.05, 0.1, 0.2, 0.5],  # noqa: B006 - typer reads the default
    agents: int = 200,
    rounds: int = 300,
    seeds: int = 3,
    out: Path = Path("bench-results/privacy"),
) -> None:
    """Selection quality vs --privacy-sigma: best agent chosen (% of rounds), score shortfall."""
    from symphony.bench.privacy import PrivacyConfig, run_privacy_bench

    run_privacy_bench(PrivacyConfig(sigmas=tuple(sigmas), agents=agents, rounds=rounds, seeds=seeds), out, console)


@bench_app.command("robustness")
def bench_robustness(
    scenario: Annotated[list[str], typer.Option(
        help="crash, churn, process-crash, targeted-kill, partition, network, byzantine, hostile (repeat).")] = list(SCENARIOS),  # noqa: B006
    agents: Annotated[int, typer.Option(help="Agents in the simulated swarm.")] = 20,
    tasks: Annotated[int, typer.Option(help="Questions per run.")] = 60,
    seed: Annotated[int, typer.Option(help="Seed of the swarm, the questions and the faults.")] = 0,
    attack_name: Annotated[list[str], typer.Option("--attack", help="Byzantine attacks (repeat).")] = list(ATTACKS),  # noqa: B006 - typer reads the default
    out: Annotated[Path, typer.Option(help="Directory for robustness.json and robustness.md.")] = Path("bench-results"),
) -> None:
    """Robustness: node crashes, partitions, link conditions, Byzantine agents (memory engine)."""
    run_robustness(scenarios=scenario, setup=Setup(agents=agents, tasks=tasks, seed=seed, entries=3),
                   fractions=FRACTIONS, attacks=attack_name, network_rows=NETWORK_ROWS, out_dir=out,
                   console=Console())


@bench_app.command("knobs")
def bench_knobs(
    agents: Annotated[int, typer.Option(help="Agents in the simulated swarm.")] = 10,
    tasks: Annotated[int, typer.Option(help="Questions per run.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the swarm, the questions and the faults.")] = 0,
    step_s: Annotated[float, typer.Option(help="Model seconds per call (virtual time).")] = 2.0,
    out: Annotated[Path, typer.Option(help="Directory for knobs.json and knobs.md.")] = Path("bench-results"),
    processes: Annotated[bool, typer.Option("--processes", help="Real `symphony node` processes (timed stand-in "
                                                                "models, 2 of 6 hung) instead of the memory engine: "
                                                                "a few minutes.")] = False,
) -> None:
    """Fault knobs: redundancy 1/2 x adaptive/fixed/no hop timeouts under hung executors and crashes."""
    from symphony.bench.knobs import run_knobs_bench, run_process_knobs_bench

    if processes:
        run_process_knobs_bench(out_dir=out, console=Console(), seed=seed)
        return

    setup = Setup(agents=agents, tasks=tasks, seed=seed, entries=3, concurrency=4, arrival_s=2.0,
                  plan_timeout="adaptive", deadline_s=300.0)  # as on real nodes
    run_knobs_bench(setup, faults=[("slow", 0.3), ("crash", 0.2)], step_s=step_s, out_dir=out, console=Console())


@bench_app.command("nat")
def bench_nat(
    tries: Annotated[int, typer.Option(help="Fresh home1 nodes joining (each: first task, hole punch).")] = 20,
    relayed_tries: Annotated[int, typer.Option(help="Then fresh home1 nodes behind a port-randomizing NAT (no "
                                                    "punch: relayed latency and bytes).")] = 5,
    tasks: Annotated[int, typer.Option(help="Questions per try on each connection kind.")] = 3,
    punch_timeout: Annotated[float, typer.Option(help="Seconds after home1's first task to wait for the "
                                                      "hole punch.")] = 30.0,
    fresh: Annotated[str, typer.Option(help="Which home starts fresh each try: asker (home1, no model) or "
                                            "planner (home2, scripted:arith).")] = "asker",
    out: Annotated[Path, typer.Option(help="Directory for nat.json and nat.md.")] = Path("bench-results"),
) -> None:
    """Join from home (root only): network namespaces with two NATs and a relay; time to the first task,
    hole-punch success rate, task latency relayed vs hole-punched, relay bytes per task."""
    from symphony.bench.nat import NatBenchConfig, run_nat_bench

    with config_errors_exit():
        run_nat_bench(NatBenchConfig(tries=tries, relayed_tries=relayed_tries, tasks=tasks,
                                     punch_timeout_s=punch_timeout, fresh=fresh), out, console)


@bench_app.command("ledger")
def bench_ledger(
    real: Annotated[list[int], typer.Option(help="Real node-process swarm sizes.")] = [5, 10, 20],  # noqa: B006 - typer reads the default
    sim: Annotated[list[int], typer.Option(help="Memory-engine (simulated) sizes.")] = [100, 1000, 10000],  # noqa: B006 - typer reads the default
    out: Annotated[Path, typer.Option(help="Directory for ledger.json and ledger.md.")] = Path("bench-results"),
    seed: Annotated[int, typer.Option(help="Random seed of the simulations.")] = 0,
) -> None:
    """Ledger gossip: update propagation (time, rounds), join catch-up, failure detection, upkeep bytes."""
    from symphony.bench.ledger import run_ledger_bench

    run_ledger_bench(real_sizes=real, sim_sizes=sim, out_dir=out, seed=seed, console=console)


@bench_app.command("accuracy")
def bench_accuracy(
    dataset: Annotated[list[str], typer.Option("--dataset", help=f"Datasets (repeat): {', '.join(DATASETS)}.")] = ["gsm8k"],  # noqa: B006
    system: Annotated[list[str], typer.Option("--system", help="Systems (repeat): direct, sc, orchestrator, "
                                                               "symphony; variants like symphony:cots=1 or "
                                                               "symphony:strategy=random or sc:samples=3.")]
    = ["direct", "sc", "orchestrator", "symphony"],  # noqa: B006
    agent_model: Annotated[list[str], typer.Option("--agent-model", help="One model spec per agent (repeat); "
                                                                         "agent 0 also runs direct.")] = ["llama:qwen2.5-coder-0.5b"] * 3,
    pool: Annotated[str, typer.Option(help="Name of this agent pool in the results (e.g. homogeneous).")] = "default",
    limit: Annotated[int, typer.Option(help="Items per dataset (after --offset).")] = 20,
    offset: Annotated[int, typer.Option(help="Skip this many items of each dataset first.")] = 0,
    seeds: Annotated[list[int], typer.Option("--seed", help="Sampling seeds (repeat).")] = [0, 1],  # noqa: B006
    per_task: Annotated[int, typer.Option(help="BBH examples per task (fixed-seed sample).")] = 6,
    cots: Annotated[int, typer.Option(help="Default chains of thought for symphony.")] = AskOptions.cots,
    max_steps: Annotated[int, typer.Option(help="Default most sub-tasks per chain.")] = AskOptions.max_steps,
    samples: Annotated[int, typer.Option(help="Default samples for self-consistency (sc).")] = 5,
    concurrency: Annotated[int, typer.Option(help="Items answered at once.")] = 1,
    temperature: Annotated[float, typer.Option(help="Sampling temperature of every agent.")] = 0.7,
    out: Annotated[Path, typer.Option(help="Output directory (accuracy.jsonl resumes a run).")] = Path("bench-results/accuracy"),
    report_only: Annotated[bool, typer.Option(help="Only rebuild the report from accuracy.jsonl.")] = False,
) -> None:
    """Direct, self-consistency, a central orchestrator and Symphony on packaged benchmarks (paper Table 2)."""
    out_console = Console()
    try:
        config = RunConfig(
            datasets=tuple(dataset), pool=pool, seeds=tuple(seeds), limit=limit, offset=offset, per_task=per_task,
            systems=tuple(parse_system(s, cots=cots, max_steps=max_steps, samples=samples) for s in system),
            agent_models=tuple(agent_model), concurrency=concurrency, temperature=temperature, out_dir=out)
    except ValueError as exc:
        out_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    with config_errors_exit():
        run_accuracy_bench(config, report_only=report_only, console=out_console)


@bench_app.command("frameworks")
def bench_frameworks(
    system: Annotated[list[str], typer.Option("--system", help="Systems (repeat): direct, autogen, crewai, symphony "
                                                               "(its endpoint's defaults) or symphony:k=v,... "
                                                               "(the request's symphony options).")]
    = ["direct", "autogen", "crewai", "symphony"],  # noqa: B006
    dataset: Annotated[str, typer.Option(help=f"Packaged dataset: {', '.join(DATASETS)}.")] = "gsm8k",
    offset: Annotated[int, typer.Option(help="Skip this many items first.")] = 0,
    limit: Annotated[int, typer.Option(help="Problems (after --offset).")] = 20,
    problems: Annotated[Path | None, typer.Option(help="JSONL of {id, question, answer} (held-out problems); "
                                                        "replaces --dataset/--offset/--limit.")] = None,
    model: Annotated[str, typer.Option(help="Packaged model the llama.cpp server serves.")] = "qwen2.5-coder-0.5b",
    agents: Annotated[int, typer.Option(help="Symphony node processes.")] = 3,
    server_threads: Annotated[int, typer.Option(help="The llama.cpp server's threads.")] = 2,
    frameworks_python: Annotated[Path, typer.Option(help="Python with AutoGen and CrewAI (make frameworks-venv).")]
    = Path(".venv-frameworks/bin/python"),
    out: Annotated[Path, typer.Option(help="Output directory (frameworks.jsonl resumes a run).")]
    = Path("bench-results/frameworks"),
    report_only: Annotated[bool, typer.Option(help="Only rebuild the report from frameworks.jsonl.")] = False,
) -> None:
    """Symphony against AutoGen and CrewAI plan-and-solve teams and one direct call, on one llama.cpp
    server behind a token-counting proxy (the fresh-problems comparison)."""
    try:
        config = FrameworksConfig(systems=tuple(system), dataset=dataset, offset=offset, limit=limit,
                                  problems=problems, model=model, agents=agents, server_threads=server_threads,
                                  frameworks_python=frameworks_python, out_dir=out)
    except ValueError as exc:
        print_error(exc)
        raise typer.Exit(2) from None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the server, nodes and workers are killed
    run_frameworks_bench(config, report_only=report_only)


@bench_app.command("gsm8k")
def bench_gsm8k(
    model: Annotated[str, typer.Option(help="Model spec every agent uses (also the direct baseline).")] = "llama:qwen2.5-coder-0.5b",
    limit: Annotated[int, typer.Option(help="First N of the 100 packaged GSM8K questions.")] = 100,
    seeds: Annotated[list[int], typer.Option("--seed", help="Sampling seeds (repeat).")] = [0, 1, 2],  # noqa: B006 - typer reads the default
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


@bench_app.command("learning")
def bench_learning(
    error_rate: Annotated[list[float], typer.Option("--error-rate", help="One execution error rate per agent (repeat).")]
    = [0.6, 0.5, 0.05, 0.5, 0.35, 0.2],  # noqa: B006 - typer reads the default
    tasks: Annotated[int, typer.Option(help="Questions per run (the first N a fresh pool answers).")] = 60,
    seeds: Annotated[list[int], typer.Option("--seed", help="Seeds (repeat).")] = [0, 1, 2],  # noqa: B006
    republish_s: Annotated[float, typer.Option(help="Most often an agent republishes its learned skills (s).")] = 10.0,
    out: Annotated[Path, typer.Option(help="Directory for learning.json and learning.md.")] = Path("bench-results"),
) -> None:
    """Routing that learns: random vs cosine (static / learned skills) vs LinUCB on a heterogeneous pool."""
    from symphony.bench.learning import LearningConfig, run_learning_bench

    run_learning_bench(LearningConfig(error_rates=tuple(error_rate), tasks=tasks, seeds=tuple(seeds),
                                      republish_s=republish_s), out)


# ---- issue 21, part A: DAG plans --------------------------------------------------------------
@bench_app.command("dag")
def bench_dag(
    parts: Annotated[list[int], typer.Option("--parts", help="Independent parts k per question (repeat).")]
    = [2, 4],  # noqa: B006 - typer reads the default
    agents: Annotated[int, typer.Option(help="Agents in the simulated swarm.")] = 6,
    repeats: Annotated[int, typer.Option(help="Questions per (k, plan) cell.")] = 5,
    tokens_per_s: Annotated[float, typer.Option(help="The timed stand-in's decoding speed.")] = 20.0,
    out: Annotated[Path, typer.Option(help="Directory for dag.json and dag.md.")] = Path("bench-results"),
) -> None:
    """DAG plans: k independent parts + a combining step, linear chain vs DAG (timed stand-in, virtual time)."""
    from symphony.bench.dag import run_dag_bench

    run_dag_bench(parts=parts, agents=agents, repeats=repeats, tokens_per_s=tokens_per_s, out_dir=out,
                  console=Console())


@bench_app.command("teams")
def bench_teams(
    sizes: Annotated[list[int], typer.Option("--size", help="Team sizes N (repeat).")] = [1, 2, 3, 4, 5],  # noqa: B006
    repeats: Annotated[int, typer.Option(help="Runs per cell (seeds seed .. seed + repeats - 1).")] = 5,
    seed: Annotated[int, typer.Option(help="First seed.")] = 0,
    out: Annotated[Path, typer.Option(help="Directory for teams.json and teams.md.")] = Path("bench-results"),
    real: Annotated[str | None, typer.Option(help="A model spec (llama:qwen2.5-coder-0.5b): instead, real nodes "
                                                  "with it build one library per size, scored by its tests.")] = None,
    theme: Annotated[str, typer.Option(help="With --real: the library (text_utils or geometry).")] = "text_utils",
    p: Annotated[float, typer.Option(help="With --real: the library's parallel fraction.")] = 0.9,
) -> None:
    """Teams of N agents on a task board vs Amdahl: pre-assigned, claimed, contract net, chains (virtual time);
    with --real, a correctness run on real nodes."""
    from symphony.bench.teams import TeamsConfig, run_real_teams, run_teams_bench

    if real is not None:
        run_real_teams(real, theme, p, sizes, out, console=console)
        return
    run_teams_bench(TeamsConfig(sizes=tuple(sizes), repeats=repeats, seed=seed), out, console)


__all__ = ["bench_app"]
