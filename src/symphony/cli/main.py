"""``symphony``: run a node, inspect the network, ask it questions, run the demo and benchmarks."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import trio
import typer
from pydantic import ValidationError
from rich.table import Column, Table
from typer.core import TyperArgument, TyperGroup, TyperOption

from symphony.api.guard import TOKEN_ENV, TOKEN_FILE, node_api_token, read_token
from symphony.api.progress import progress_line
from symphony.cli.bench import bench_app
from symphony.cli.demo import demo
from symphony.cli.models import models
from symphony.cli.render import console, print_error, print_json, print_trace
from symphony.errors import ConfigError
from symphony.node.config import (
    DEFAULT_API,
    default_data_dir,
    load_node_file,
    node_config,
    parse_hop_timeout,
    probe_model_server,
)
from symphony.pipeline.service import AskOptions

#: typer's type labels (``<str>``, ``<list[float]>``, ``<int range>``) -> the metavars the help shows
METAVARS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "path": "PATH", "file": "PATH", "directory": "PATH"}


def clean_metavars(command: Any) -> None:
    """Plain metavars in help (``TEXT``, ``INTEGER``, ``PATH``; nothing for a flag) where typer would show
    ``<str>``, ``<list[str]>``, ``<bool>``; recurses into sub-groups such as ``bench``."""
    ctx = typer.Context(command)
    for param in [*command.params, command.get_help_option(ctx)]:
        if isinstance(param, TyperArgument):
            # typer.core._TyperParameter.display_type_rich ignores an argument's metavar: the name says enough
            param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
        elif isinstance(param, TyperOption) and param.metavar is None:
            label = param.display_type(ctx).strip("<>").removeprefix("list[").rstrip("]")
            param.metavar = "" if param.is_flag else METAVARS.get(label.split()[0], label.upper())
    for sub in getattr(command, "commands", {}).values():
        clean_metavars(sub)


class SymphonyGroup(TyperGroup):
    """The ``symphony`` group: every command's help gets plain metavars (``clean_metavars``), including
    commands other modules register."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            clean_metavars(command)
        return command

    def get_params(self, ctx: Any) -> Any:
        clean_metavars(self)  # the group's own options: --version, --help
        return super().get_params(ctx)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"symphony {version()}", highlight=False)
        raise typer.Exit()


def version() -> str:
    """The installed distribution's version (``symphony-agents``), else the package's own."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    from symphony import __version__

    try:
        return dist_version(DISTRIBUTION)
    except PackageNotFoundError:
        return __version__


#: The name on PyPI (``symphony`` there is an unrelated project); the command and the import stay ``symphony``.
DISTRIBUTION = "symphony-agents"

app = typer.Typer(cls=SymphonyGroup, help="Symphony: a decentralized network of small language-model agents.",
                  no_args_is_help=True)


@app.callback()
def _root(
    show_version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                               help="Print the version and exit.")] = False,
) -> None:
    """Symphony: a decentralized network of small language-model agents."""


app.add_typer(bench_app, name="bench")
app.command()(demo)
app.command()(models)
#: The defaults of one question, the same for ``ask``, ``demo`` and ``POST /v1/tasks``.
ASK_DEFAULTS = AskOptions()

ApiOption = Annotated[
    str | None, typer.Option("--api", help=f"API address of the node to ask (HOST:PORT, e.g. localhost:8470, or an "
                                           f"http URL). \\[default: the one in --data-dir's node.json, else "
                                           f"{DEFAULT_API}]")
]
TokenOption = Annotated[
    str | None, typer.Option("--api-token", envvar=TOKEN_ENV, show_envvar=True,
                             help=f"Bearer token of a node whose API requires one. "
                                  f"\\[default: --data-dir's {TOKEN_FILE}]")
]
NodeDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Data dir of a node on this machine: its API address (node.json) "
                                                 f"and token ({TOKEN_FILE}) are read from there. \\[default: "
                                                 "`symphony node`'s default data dir, when a node runs there]")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print raw JSON instead of a table.")]


@app.command()
def node(
    data_dir: Annotated[
        Path | None, typer.Option(help="Directory for the key (0600), record and event log. \\[default: "
                                       "$XDG_DATA_HOME/symphony/node, or ~/.local/share/symphony/node]")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML file with the same keys as these options (data_dir, name, listen, "
                                       "bootstrap, api, api_auth, skills, model, roles, memory_gb, accelerator, "
                                       "heartbeat, anti_entropy, shards, max_task_records, event_log_max_mb, "
                                       "event_log_keep, privacy_sigma, redundancy, hop_timeout, replans, disclosure, "
                                       "learn_republish_s); "
                                       "options given here override it.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Human-readable agent name. \\[default: agent]")] = None,
    listen: Annotated[
        list[str] | None, typer.Option(help="Multiaddr to listen on (repeatable). \\[default: /ip4/127.0.0.1/tcp/0]")
    ] = None,
    bootstrap: Annotated[
        list[str] | None, typer.Option(help="Full multiaddr (/ip4/HOST/tcp/PORT/p2p/ID) of a node to join through "
                                            "(repeatable; all are dialed at once, the node joins through any that "
                                            "answers and reports the rest).")
    ] = None,
    api: Annotated[
        str | None, typer.Option(help=f"HOST:PORT for the local HTTP API (a host name such as localhost is "
                                      f"resolved), port 0 = any, 'none' = off. "
                                      f"\\[default: {DEFAULT_API}]")
    ] = None,
    api_auth: Annotated[
        str | None, typer.Option(help=f"auto: the API requires a bearer token (created in DATA_DIR/{TOKEN_FILE}, "
                                      "mode 0600) only when --api binds a non-loopback address; token: always. "
                                      "\\[default: auto]")
    ] = None,
    skills: Annotated[
        list[str] | None, typer.Option("--skills", "--tags", help='Declared skills, e.g. "math, logic".')
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model spec: llama:qwen2.5-coder-0.5b | llama:qwen2.5-coder-1.5b | llama:smollm2-135m | "
                          "llama:/path/model.gguf | openai:http://HOST:PORT/v1#MODEL (Ollama, vLLM, llama.cpp "
                          "server; key from OPENAI_API_KEY) | scripted:arith | timed:20. Without one the node "
                          "only routes and initiates."),
    ] = None,
    roles: Annotated[
        list[str] | None, typer.Option(help='Pipeline roles this node offers: "planner, executor" (both, the default '
                                            'with a model), "planner" (it only decomposes questions and drives '
                                            'chains) or "executor" (it only answers sub-tasks).')
    ] = None,
    memory_gb: Annotated[float | None, typer.Option(
        help="Memory available to the model, in GB. \\[default: detected: total GPU memory (nvidia-smi), "
             "else total RAM]")] = None,
    accelerator: Annotated[str | None, typer.Option(
        help="cpu, cuda, metal, ... \\[default: detected: the GPU's name (nvidia-smi), apple on Apple "
             "silicon, else cpu]")] = None,
    privacy_sigma: Annotated[float | None, typer.Option(
        help="Privacy (paper §privacy): publish the capability vector with Gaussian noise of sigma times each "
             "block's norm, and the hardware coarsened (powers of two); beacons are still scored with the exact "
             "vector. \\[default: 0, off]")] = None,
    heartbeat: Annotated[
        float | None, typer.Option(help="Heartbeat interval in seconds (TTL = 3 heartbeats; neighbours notice a "
                                        "crash at once). \\[default: 60]")
    ] = None,
    anti_entropy: Annotated[float | None, typer.Option(help="Anti-entropy interval in seconds. \\[default: 30]")] = None,
    shards: Annotated[int | None, typer.Option(help="Sharded mode: L >= 2 shards, the same on every node; each node "
                                                    "keeps its own shard's records. \\[default: 0, off]")] = None,
    max_task_records: Annotated[int | None, typer.Option(help="Finished questions kept for GET /v1/tasks/ID (running "
                                                              "ones always). \\[default: 1000]")] = None,
    event_log_max_mb: Annotated[float | None, typer.Option(help="Rotate events.jsonl at this size. "
                                                                "\\[default: 64]")] = None,
    event_log_keep: Annotated[int | None, typer.Option(help="Rotated event logs kept (events.jsonl.1 ..). "
                                                            "\\[default: 3]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the start-up line (ID, addresses, API, data dir) "
                                                         "as one JSON object instead of text.")] = False,
    relay_service: Annotated[bool | None, typer.Option("--relay-service", help="Relay connections (circuit relay v2, "
                                                       "with limits) for nodes behind NAT; for a node others can "
                                                       "dial.")] = None,
    reachability: Annotated[str | None, typer.Option(help="auto: ask the bootstrap peers to dial back (AutoNAT) "
                                                          "and take relay slots on them only if they cannot; "
                                                          "public or private: tell. \\[default: auto]")] = None,
    mdns: Annotated[bool | None, typer.Option("--mdns", help="Find the Symphony nodes on the same link by mDNS, "
                                                             "with no --bootstrap (announces this node on the "
                                                             "LAN).")] = None,
    rendezvous_service: Annotated[bool | None, typer.Option("--rendezvous-service", help="Serve rendezvous: the "
                                                            "nodes that bootstrap through this one register here "
                                                            "and find each other.")] = None,
    rendezvous: Annotated[bool | None, typer.Option("--rendezvous", help="Register at the --bootstrap peers that "
                                                    "serve rendezvous and dial the Symphony nodes registered "
                                                    "there.")] = None,
    dht: Annotated[bool | None, typer.Option("--dht", help="Serve the Kademlia DHT with the peers this node "
                                                           "connects to, announce this node there and dial the "
                                                           "Symphony nodes it names.")] = None,
    upnp: Annotated[bool | None, typer.Option("--upnp", help="Ask the home router (UPnP) to forward the listen "
                                                             "port and publish its external address.")] = None,
    redundancy: Annotated[int | None, typer.Option(help="As a planner: executors per step, 1 or 2 (cross-checked) "
                                                        "when a question does not say. \\[default: 1]")] = None,
    hop_timeout: Annotated[str | None, typer.Option(help="As a planner: how long one executor may hold a step: "
                                                         "adaptive (4 x its latency, 15-120 s), off (the "
                                                         "deadline) or seconds. \\[default: adaptive]")] = None,
    replans: Annotated[int | None, typer.Option(help="As a planner: failed steps re-planned per chain, 0-3. "
                                                     "\\[default: 1]")] = None,
    disclosure: Annotated[str | None, typer.Option(help="As a planner: full, or minimal (executors get the step "
                                                        "and only the context it needs). \\[default: full]")] = None,
    learn_republish_s: Annotated[float | None, typer.Option(
        help="Outcome feedback: republish the learned skill scores in this node's record at most once per this "
             "many seconds, 1-3600 (outcomes meanwhile coalesce). \\[default: 10]")] = None,
    warm_peers: Annotated[int | None, typer.Option(
        help="Connect ahead of questions to up to this many planners, then executors, as their records arrive, "
             "so a question's first beacon rounds dial no one; 0 = off (dial when a round asks), at most 64. "
             "\\[default: 16]")] = None,
    no_tools: Annotated[bool, typer.Option("--no-tools", help="As an executor: answer in text only, no python "
                                                              "programs (on by default where the code sandbox "
                                                              "works).")] = False,
) -> None:
    """Start a node: join through --bootstrap, register in the ledger, serve until Ctrl-C.

    With an openai: model, the server is probed first (3 s), so a typo or a stopped server is reported at once.
    """
    from symphony.api.server import node_with_api

    given = {"data_dir": data_dir, "name": name, "listen": listen, "bootstrap": bootstrap, "api": api,
             "api_auth": api_auth, "skills": skills, "model": model, "roles": roles, "memory_gb": memory_gb,
             "accelerator": accelerator, "heartbeat": heartbeat, "anti_entropy": anti_entropy, "shards": shards,
             "max_task_records": max_task_records, "event_log_max_mb": event_log_max_mb,
             "event_log_keep": event_log_keep, "relay_service": relay_service,
             "reachability": reachability, "mdns": mdns,
             "rendezvous_service": rendezvous_service, "rendezvous": rendezvous, "dht": dht, "upnp": upnp,
             "privacy_sigma": privacy_sigma,
             "redundancy": redundancy, "hop_timeout": hop_timeout,
             "replans": replans, "disclosure": disclosure, "learn_republish_s": learn_republish_s,
             "warm_peers": warm_peers, "no_tools": no_tools or None}
    try:
        values = load_node_file(config) if config else {}
        values.update({key: value for key, value in given.items() if value is not None and value != []})
        node_cfg = node_config(values)
        # checks the model spec and packages, binds the ports, makes (or checks) the API token, so an
        # unsafe token file stops the start with the fix
        the_node = node_with_api(node_cfg)
        probe_model_server(node_cfg.model)
        token = node_api_token(node_cfg.data_dir, node_cfg.api, node_cfg.api_auth) if node_cfg.api else None
    except (ConfigError, ValidationError) as exc:
        print_error(exc)
        raise typer.Exit(2) from exc

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, the_node)
            await nursery.start(the_node.run)
            info = json.loads((node_cfg.data_dir / "node.json").read_text())
            try:
                print_started(node_cfg.name, info, node_cfg.data_dir, token, as_json=as_json)
            except OSError:
                pass  # stdout is gone (a full disk, a closed pipe): the node serves on; node.json says the same


    try:
        trio.run(main)
    except BaseException as exc:
        error = _config_error(exc)  # raised inside a nursery, it comes wrapped in an ExceptionGroup
        if error is None:
            raise
        print_error(error)
        raise typer.Exit(2) from None
    _exit_now()


def print_started(name: str, info: dict[str, Any], data_dir: Path, token: str | None, *, as_json: bool) -> None:
    """The node's start-up lines: its ID, every address to --bootstrap from, the API, the dashboard
    and the data dir; each whole on its own line (or one JSON object), so it can be copied from a log."""
    dashboard = dashboard_url(info["api"], token) if info["api"] else None
    if as_json:
        line = {"name": name, "agent_id": info["agent_id"], "addrs": info["addrs"], "api": info["api"],
                "dashboard": dashboard, "data_dir": str(data_dir)}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        return
    console.print(f"[bold green]node {name} up[/bold green] id={info['agent_id']}", soft_wrap=True)
    for addr in info["addrs"]:
        console.print(f"  listening {addr}", highlight=False, soft_wrap=True)
    if info["api"]:
        console.print(f"  api {info['api']}", highlight=False, soft_wrap=True)
        console.print(f"  dashboard {dashboard}", highlight=False, soft_wrap=True)
    console.print(f"  data dir {data_dir}", highlight=False, soft_wrap=True)


def _config_error(exc: BaseException) -> ConfigError | None:
    """The ``ConfigError`` in ``exc``, looking inside exception groups; None if there is none."""
    if isinstance(exc, ConfigError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        return next((e for e in map(_config_error, exc.exceptions) if e is not None), None)
    return None


def _exit_now() -> None:
    """End the process now that the node has left the network and closed its files.

    A model call cancelled by the shutdown may still run in an abandoned worker thread (llama.cpp
    cannot be stopped mid-generation, see ``llm.llama_backend``). Normal interpreter finalization
    would wait for it to return to Python and free the model under it: measured 2.2-2.6 s after a
    SIGTERM during a generation, once ending in SIGSEGV. There is nothing left to finalize that
    matters, so flush the output and exit at once."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a full disk or a closed pipe must not change the exit status
            stream.flush()
    os._exit(0)


async def _stop_on_signal(the_node: Any) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            the_node.stop()
            return


def dashboard_url(api_url: str, token: str | None) -> str:
    """The dashboard's address; the token rides in the fragment, which the browser never sends to a server."""
    return f"{api_url}/" + (f"#token={token}" if token else "")


@dataclass(frozen=True)
class ApiTarget:
    """The node API a client command talks to, and the headers that authenticate it."""

    base: str
    headers: dict[str, str]


def api_target(api: str | None, token: str | None, data_dir: Path | None) -> ApiTarget:
    """Resolve ``--api``, ``--api-token`` (or ``SYMPHONY_API_TOKEN``) and ``--data-dir`` into a target.

    Explicit options win; ``--data-dir`` supplies the address from its ``node.json`` and the
    token from its ``api-token`` file; without either, the default data dir does when a node runs
    there; else the address defaults to ``DEFAULT_API``, the token to none."""
    if api is None and data_dir is None and (default_data_dir() / "node.json").exists():
        data_dir = default_data_dir()
    try:
        if api is None and data_dir is not None:
            api = _running_api(data_dir)
        if token is None and data_dir is not None and (data_dir / TOKEN_FILE).exists():
            token = read_token(data_dir / TOKEN_FILE)
    except ConfigError as exc:
        print_error(exc)
        raise typer.Exit(1) from exc
    api = api or DEFAULT_API
    return ApiTarget(base=api if api.startswith("http") else f"http://{api}",
                     headers={"Authorization": f"Bearer {token}"} if token else {})


def _running_api(data_dir: Path) -> str:
    try:
        api = json.loads((data_dir / "node.json").read_text()).get("api")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"no running node in {data_dir} (cannot read node.json: {exc}); start it with "
                          "`symphony node`, or pass --api") from exc
    if not api:
        raise ConfigError(f"the node in {data_dir} serves no API (it runs with --api none)")
    return str(api)


def _api_get(target: ApiTarget, path: str) -> Any:
    try:
        response = httpx.get(target.base + path, headers=target.headers, timeout=10)
    except httpx.TransportError as exc:
        print_error(f"no node API at {target.base} ({exc}); start one with `symphony node` or pass --api")
        raise typer.Exit(1) from exc
    if response.status_code >= 400:
        try:
            detail = response.json().get("error", response.text)
        except ValueError:
            detail = response.text
        print_error(f"{target.base}{path}: HTTP {response.status_code}: {detail}")
        raise typer.Exit(1)
    return response.json()


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question to put to the network.")],
    api: ApiOption = None,
    api_token: TokenOption = None,
    data_dir: NodeDirOption = None,
    cots: Annotated[int, typer.Option(help="Most chains of thought (k); all at once with --no-adaptive.")
                    ] = ASK_DEFAULTS.cots,
    adaptive: Annotated[bool, typer.Option(help="Start --first-cots chains and add one while fewer than --agree "
                                                "agree (a code question: while none passes its examples).")
                        ] = ASK_DEFAULTS.adaptive,
    first_cots: Annotated[int, typer.Option(help="Chains started at once (adaptive).")] = ASK_DEFAULTS.first_cots,
    agree: Annotated[int, typer.Option(help="Chains that must agree to stop adding (adaptive).")] = ASK_DEFAULTS.agree,
    strategy: Annotated[str, typer.Option(help="Executor selection: cosine | random | linucb.")] = "cosine",
    max_steps: Annotated[int, typer.Option(help="Most sub-tasks per chain.")] = ASK_DEFAULTS.max_steps,
    deadline: Annotated[float, typer.Option(help="Seconds before the network gives up.")] = ASK_DEFAULTS.deadline_s,
    redundancy: Annotated[int | None, typer.Option(help="Executors per step: 1, or 2 (cross-checked). "
                                                        "\\[default: each planner's]")] = None,
    hop_timeout: Annotated[str | None, typer.Option(help="How long one executor may hold a step: adaptive, off or "
                                                         "seconds. \\[default: each planner's]")] = None,
    replans: Annotated[int | None, typer.Option(help="Failed steps re-planned per chain (0-3). "
                                                     "\\[default: each planner's]")] = None,
    disclosure: Annotated[str | None, typer.Option(help="full, or minimal: executors get their step and only "
                                                        "the context the planner marks. "
                                                        "\\[default: each planner's]")] = None,
    priority: Annotated[int, typer.Option(help="0-9: served before lower priorities where work queues.")] = 0,
    latency_budget: Annotated[float | None, typer.Option(help="Milliseconds: candidates expecting more are "
                                                              "tried last.")] = None,
    task_id: Annotated[str | None, typer.Option(
        help="Your own task ID (8-64 letters, digits, - or _). Re-asking another node under the same ID, "
             "after the first one died, reuses the chains its planners already finished.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Ask the network a question through a node; print its task ID and live progress (stderr), then the
    answer, the vote and the trace."""
    target = api_target(api, api_token, data_dir)
    task_id = task_id or uuid.uuid4().hex  # known before the question starts, so its events can be followed
    knobs = {"redundancy": redundancy, "hop_timeout": _hop_option(hop_timeout), "replans": replans,
             "disclosure": disclosure, "priority": priority, "latency_budget_ms": latency_budget}
    body = {"question": question, "cots": cots, "adaptive": adaptive, "first_cots": first_cots, "agree": agree,
            "strategy": strategy, "max_steps": max_steps, "deadline_s": deadline, "task_id": task_id,
            **{key: value for key, value in knobs.items() if value is not None}}
    try:
        if not as_json:
            typer.echo(f"task {task_id} (`symphony status {task_id}`)", err=True)
            _follow_progress(target, body, deadline)
        response = httpx.post(target.base + "/v1/tasks", json={**body, "wait": True}, headers=target.headers,
                              timeout=deadline + 30)  # the task exists by now: this only waits for its record
        record = response.json()
    except httpx.TransportError as exc:
        print_error(f"no node API at {target.base} ({exc}); start one with `symphony node` or pass --api")
        raise typer.Exit(1) from exc
    except ValueError as exc:
        print_error(f"{target.base} answered HTTP {response.status_code} without JSON: {response.text[:300]}")
        raise typer.Exit(1) from exc
    if as_json:
        console.print_json(data=record)
        return
    if response.status_code != 200 or record.get("status") != "done":
        print_error(f"task {task_id}: {record.get('error', response.text)}", label="no answer")
        raise typer.Exit(1)
    print_trace(record["trace"], agent_names(target))


def _hop_option(text: str | None) -> str | float | None:
    """``--hop-timeout`` checked here (``config.parse_hop_timeout``), before any node is asked."""
    if text is None:
        return None
    try:
        return parse_hop_timeout(text)
    except ConfigError as exc:
        print_error(str(exc))
        raise typer.Exit(2) from None


def _follow_progress(target: ApiTarget, body: dict[str, Any], deadline: float) -> None:
    """Submit ``body`` and print its progress from ``GET /v1/events`` (to stderr) until it ends.

    Subscribes before submitting so no event is missed. Without an event stream (the node has too
    many subscribers, or cut this one off) it says so and returns: the caller then waits for the record."""
    with httpx.stream("GET", target.base + "/v1/events", headers=target.headers,
                      timeout=httpx.Timeout(30.0, read=60.0)) as events:
        if events.status_code != 200:
            typer.echo(f"(no live progress: {events.read().decode(errors='replace')[:200]})", err=True)
            httpx.post(target.base + "/v1/tasks", json=body, headers=target.headers, timeout=30)
            return
        lines = events.iter_lines()
        next(line for line in lines if line.startswith("data: "))  # the snapshot: subscribed from here on
        submitted = httpx.post(target.base + "/v1/tasks", json=body, headers=target.headers, timeout=30)
        if submitted.status_code != 202:
            return  # refused: the caller's second POST shows why
        for line in lines:
            if not line.startswith("data: "):
                continue
            event = json.loads(line.removeprefix("data: "))
            if (text := progress_line(event, body["task_id"])) is not None:
                typer.echo(text.rstrip("\n"), err=True)
            data = event.get("data") or {}
            if event.get("type") == "task_record" and data.get("task_id") == body["task_id"] \
                    and data.get("status") != "running":
                return
    typer.echo("(live progress stopped: the node closed its event stream)", err=True)


def id_column() -> Column:
    """The agent ID column: whole IDs; on a narrow terminal they fold onto more lines, never cut."""
    return Column("agent", overflow="fold")


def agent_names(target: ApiTarget) -> dict[str, str]:
    """Agent ID -> declared name, from the node's ledger replica (for readable traces)."""
    return {row["agent_id"]: row["name"] for row in _api_get(target, "/v1/ledger")["records"]}


@app.command()
def status(
    task_id: Annotated[str, typer.Argument(help="Task ID printed by `symphony ask`.")],
    api: ApiOption = None,
    api_token: TokenOption = None,
    data_dir: NodeDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a task this node initiated: running, done (with its trace) or failed."""
    target = api_target(api, api_token, data_dir)
    record = _api_get(target, f"/v1/tasks/{task_id}")
    if as_json:
        print_json(record)
    elif record["status"] == "done":
        print_trace(record["trace"], agent_names(target))
    else:
        console.print(f"{record['status']}: {record.get('error', '')}", highlight=False)


@app.command()
def peers(api: ApiOption = None, api_token: TokenOption = None, data_dir: NodeDirOption = None,
          as_json: JsonOption = False) -> None:
    """List the agents this node knows, with connectivity and availability."""
    rows = _api_get(api_target(api, api_token, data_dir), "/v1/peers")["peers"]
    if as_json:
        print_json(rows)
        return
    table = Table(id_column(), "name", "connection", "available", "last seen (s)", "models", "tags")
    for row in rows:
        table.add_row(row["agent_id"], row["name"], row.get("connection") or "no", str(row["available"]),
                      str(row["last_seen_s_ago"]), ", ".join(row["models"]), ", ".join(row["tags"]))
    console.print(table)


@app.command()
def ledger(api: ApiOption = None, api_token: TokenOption = None, data_dir: NodeDirOption = None,
           as_json: JsonOption = False) -> None:
    """Print the node's replica of the capability ledger."""
    data = _api_get(api_target(api, api_token, data_dir), "/v1/ledger")
    if as_json:
        print_json(data)
        return
    table = Table(id_column(), "name", "lamport", "available", "tags", Column("addrs", overflow="fold"))
    for row in data["records"]:
        table.add_row(row["agent_id"], row["name"], str(row["lamport"]), str(row["available"]),
                      ", ".join(row["tags"]), "\n".join(row["addrs"]))
    console.print(table)
    console.print(f"{data['count']} records")



# ---- team tasks on the shared task board (issue #21) ----------------------------------------------


@app.command()
def team(
    library: Annotated[str | None, typer.Argument(help="A bench library to build: text_utils or geometry.")] = None,
    p: Annotated[float, typer.Option(help="The library's parallel fraction (0.9, 0.5, 0.2, ...).")] = 0.9,
    graph: Annotated[Path | None, typer.Option(help="A JSON file of your own: {\"subtasks\": [...], "
                                                    "\"tests\": {...}} as POST /v1/teams takes it.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the team to finish.")] = 1800.0,
    api: ApiOption = None,
    api_token: TokenOption = None,
    data_dir: NodeDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Post a team task (a graph of sub-tasks) to a node's shared task board and wait for the team to finish it."""
    target = api_target(api, api_token, data_dir)
    body: dict[str, Any] = {"library": library, "p": p} if graph is None else json.loads(graph.read_text())
    try:
        response = httpx.post(target.base + "/v1/teams", json=body, headers=target.headers, timeout=30)
    except httpx.TransportError as exc:
        print_error(f"no node API at {target.base} ({exc}); start one with `symphony node` or pass --api")
        raise typer.Exit(1) from exc
    if response.status_code != 202:
        print_error(f"HTTP {response.status_code}: {response.json().get('error', response.text)}")
        raise typer.Exit(1)
    board = response.json()["board"]
    typer.echo(f"team task {board} (GET /v1/teams/{board})", err=True)
    deadline = time.monotonic() + timeout
    view = response.json()
    while view["status"] != "done" and time.monotonic() < deadline:
        time.sleep(2.0)
        view = _api_get(target, f"/v1/teams/{board}")
        typer.echo(f"{view['subtasks_done']}/{view['subtasks_total']} sub-tasks done", err=True)
    if as_json:
        print_json(view)
        return
    _print_team(view)
    if view["status"] != "done":
        raise typer.Exit(1)


def _print_team(view: dict[str, Any]) -> None:
    table = Table("sub-task", "depends on", Column("producer", overflow="fold"), "claimants", "test")
    passed = (view.get("tests") or {}).get("by_subtask", {})
    for row in view["subtasks"]:
        table.add_row(row["id"], ", ".join(row["depends_on"]), row["producer"] or "-", str(len(row["claimants"])),
                      {True: "pass", False: "FAIL"}.get(passed.get(row["id"]), "-"))
    console.print(table)
    tests = view.get("tests")
    console.print(f"{view['status']}: {view['subtasks_done']}/{view['subtasks_total']} sub-tasks in "
                  f"{view['seconds']} s; conflicts {view['conflicts']} ({view['conflict_ms']} ms); "
                  f"extra artifacts {view['extra_artifacts']}"
                  + (f"; tests passed {tests['passed']}/{tests['total']}" if tests else ""), highlight=False)


@app.command()
def mcp(api: ApiOption = None, api_token: TokenOption = None, data_dir: NodeDirOption = None) -> None:
    """Serve the network to MCP hosts (Claude Desktop, IDE agents) over stdio: an `ask` tool and the ledger."""
    target = api_target(api, api_token, data_dir)
    try:
        from symphony.mcp_server import serve_stdio  # the mcp package is an optional extra
    except ConfigError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    serve_stdio(target.base, target.headers)
