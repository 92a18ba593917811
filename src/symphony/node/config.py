"""Node configuration, checked when built so errors name the fix.

A node is configured by ``symphony node`` flags, or by a TOML file (``--config node.toml``)
with the same keys; flags given on the command line override the file::

    data_dir = "~/.symphony/alice"
    name = "alice"
    listen = "/ip4/0.0.0.0/tcp/4001"
    api = "127.0.0.1:8470"
    skills = ["math", "logic"]
    model = "ollama:qwen2.5:0.5b"
    roles = ["planner", "executor"]
    shards = 0  # sharded mode: L >= 2 shards (every node the same L), architecture §9
    max_task_records = 1000  # questions kept for GET /v1/tasks/ID: the last N finished (running ones always)
    event_log_max_mb = 64  # events.jsonl is rotated at this size ...
    event_log_keep = 3  # ... keeping this many old files (events.jsonl.1 .. .3)
    privacy_sigma = 0.1  # noise on the published capability vector, coarsened hardware; 0 = off
    # memory_gb / accelerator: detected when not given (node.hardware)
    redundancy = 1  # fault knobs (README "Fault knobs"): this node's defaults as a planner
    hop_timeout = "adaptive"  # or "off", or seconds such as "30"
    replans = 1
    disclosure = "full"  # or "minimal"
    learn_republish_s = 10  # learned skills reach the record at most this often (s)
    warm_peers = 16  # planners, then executors, dialled as their records arrive (beacon.warm); 0 = off
    tools = ["python"]  # tools its executor uses; default: python when the code sandbox works here; [] = off
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from symphony.beacon import WARM_PEERS
from symphony.errors import ConfigError
from symphony.node.hardware import detect_hardware, detected_cores
from symphony.pipeline.tools import resolve_tools
from symphony.pipeline.service import EXECUTOR_TAG, PLANNER_TAG, HopTimeout
from symphony.protocol.messages import Hardware
from symphony.protocol.sharding import MAX_SHARDS
from symphony.transport import REACHABILITY

DEFAULT_API = "127.0.0.1:8470"
#: Beyond this the noise is several times the signal: ranking by the published vector is random
MAX_PRIVACY_SIGMA = 10.0
#: ``--learn-republish-s`` bounds: below 1 s a learning node would flood the gossip with UPDATEs.
MIN_LEARN_REPUBLISH_S = 1.0
MAX_LEARN_REPUBLISH_S = 3600.0
#: ``--warm-peers`` bound: each warm connection is a live libp2p connection the node keeps.
MAX_WARM_PEERS = 64
#: The pipeline roles a node with a model may offer (``--roles``); the tags its record carries.
ROLES = (PLANNER_TAG, EXECUTOR_TAG)
#: ``--api-auth``: "auto" requires the API token only on a non-loopback address, "token" always.
API_AUTH = ("auto", "token")
#: A DNS host name (RFC 1123 labels), checked before asking the resolver.
HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def parse_host_port(text: str) -> tuple[str, int]:
    """Parse ``HOST:PORT`` for the HTTP API (port 0 picks a free one); a host name such as
    ``localhost`` is resolved to its first address, which is what the API binds."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--api must look like 127.0.0.1:8470 or localhost:8470, not {text!r}")
    host = host.strip("[]")  # [::1]:8470
    try:
        ipaddress.ip_address(host)
    except ValueError:
        host = _resolve(host)
    return host, int(port)


def _resolve(host: str) -> str:
    """The first address ``host`` resolves to (IPv4 preferred: ``localhost`` -> 127.0.0.1)."""
    if not HOSTNAME.fullmatch(host):
        raise ConfigError(f"--api host must be an IP address or a host name such as localhost, not {host!r}")
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"--api host {host!r} is neither an IP address nor a name this machine resolves "
                          f"({exc}); use e.g. 127.0.0.1 or localhost") from None
    addresses = [str(info[4][0]) for info in found]
    return next((a for a in addresses if ":" not in a), addresses[0])


def normalize_api(text: str) -> str:
    """``HOST:PORT`` with the host resolved to an IP address (what the node binds and advertises)."""
    host, port = parse_host_port(text)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def default_data_dir() -> Path:
    """Where ``symphony node`` keeps its data when given no ``--data-dir``: ``$XDG_DATA_HOME/symphony/node``,
    or ``~/.local/share/symphony/node`` when XDG_DATA_HOME is unset (the XDG base directory spec)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "symphony" / "node"


def choice_error(value: str, choices: tuple[str, ...], option: str = "") -> ConfigError:
    """``[--option: ]'value' is not one of ...; did you mean ...?`` for a value outside ``choices``."""
    close = difflib.get_close_matches(value, choices, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    prefix = f"{option}: " if option else ""
    return ConfigError(f"{prefix}{value!r} is not one of {', '.join(choices)}{hint}")


def _check_multiaddr(addr: str, *, option: str, needs_peer: bool) -> None:
    parts = addr.split("/")
    if not addr.startswith("/") or len(parts) < 5:
        raise ConfigError(f"{option} {addr!r} is not a multiaddr such as /ip4/127.0.0.1/tcp/4001")
    if needs_peer and "/p2p/" not in addr:
        raise ConfigError(
            f"{option} {addr!r} lacks the peer ID: use the full address a node prints, ending in /p2p/12D3KooW..."
        )
    if needs_peer:
        from symphony.transport.libp2p import check_peer_addr

        try:
            check_peer_addr(addr)
        except ConfigError as exc:
            raise ConfigError(f"{option}: {exc}; use the full address a node prints, ending in /p2p/12D3KooW...") from None


#: node config keys bounding what a ``relay_service`` node grants (NodeConfig)
RELAY_LIMIT_KEYS = ("relay_max_reservations", "relay_max_circuits", "relay_circuit_mb", "relay_circuit_seconds")


@dataclass(frozen=True)
class NodeConfig:
    """Everything ``symphony node`` needs; the CLI and tests build one of these."""

    data_dir: Path
    name: str = "agent"
    listen: list[str] = field(default_factory=lambda: ["/ip4/127.0.0.1/tcp/0"])
    bootstrap: list[str] = field(default_factory=list)
    api: str | None = DEFAULT_API
    #: "auto": API token required only when ``api`` binds a non-loopback address; "token": always
    api_auth: str = "auto"
    tags: list[str] = field(default_factory=list)
    model: str | None = None
    #: pipeline roles this node offers; None = both (planner and executor) when it has a model
    roles: tuple[str, ...] | None = None
    hardware: Hardware = field(default_factory=Hardware)
    heartbeat_interval_s: float = 60.0
    ttl_heartbeats: float = 3.0
    anti_entropy_interval_s: float = 30.0
    target_degree: int = 6
    #: sharded mode (architecture §9): L shards, each node keeping its own shard's records; 0 = off
    shards: int = 0
    #: task records kept in memory (GET /v1/tasks/ID): the last N finished ones; running ones always
    max_task_records: int = 1000
    #: events.jsonl is rotated at this size, keeping ``event_log_keep`` old files (node.eventlog)
    event_log_max_mb: float = 64.0
    event_log_keep: int = 3
    #: offer circuit relay v2 (with limits) to nodes behind NAT: for a node others can dial
    relay_service: bool = False
    #: what a relay grants (``relay_*`` keys, README "Two machines on two home networks"): peers holding a
    #: slot at once, relayed connections at once, MiB and seconds per relayed connection; None = the
    #: transport's default (``transport.reach.RelayServiceLimits``: 64, 64, 64 MiB, 3600 s)
    relay_max_reservations: int | None = None
    relay_max_circuits: int | None = None
    relay_circuit_mb: int | None = None
    relay_circuit_seconds: int | None = None
    #: "auto": ask the bootstrap peers whether they can dial us back (AutoNAT) and take relay slots only
    #: if not; "public"/"private": what this node knows it is
    reachability: str = "auto"
    #: find the Symphony nodes on the same link by mDNS (announces this node on the LAN)
    mdns: bool = False
    #: serve rendezvous (libp2p.discovery.rendezvous) to the nodes that bootstrap through this one
    rendezvous_service: bool = False
    #: register at the bootstrap peers that serve rendezvous and dial the Symphony nodes registered there
    rendezvous: bool = False
    #: serve the Kademlia DHT and find Symphony nodes through it (transport.dht): announces this node to DHT peers
    dht: bool = False
    #: ask the router (UPnP IGD) to forward the listen port and publish its external address first
    upnp: bool = False
    #: DESIGN §2: published capability vector noised (sigma x each block's norm) and hardware coarsened; 0 = off
    privacy_sigma: float = 0.0
    #: fault knobs: this node's defaults as a planner for what a question leaves open (README "Fault knobs")
    redundancy: int = 1
    hop_timeout: HopTimeout = "adaptive"
    replans: int = 1
    disclosure: str = "full"
    #: outcome feedback: learned skills are republished in the record at most once per this many seconds
    learn_republish_s: float = 10.0
    #: peers (planners first, then executors) this node connects to as their records arrive, before any
    #: question needs them (``beacon.warm``); 0 = off, dialling only when a round asks
    warm_peers: int = WARM_PEERS
    #: tools the executor uses (pipeline.tools): None = python when the code sandbox works here; () = none
    tools: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for addr in self.listen:
            _check_multiaddr(addr, option="--listen", needs_peer=False)
        for addr in self.bootstrap:
            _check_multiaddr(addr, option="--bootstrap", needs_peer=True)
        if self.api is not None:
            parse_host_port(self.api)
        if self.api_auth not in API_AUTH:
            raise choice_error(self.api_auth, API_AUTH, "--api-auth")
        if not 0 < len(self.name) <= 64:
            raise ConfigError(f"--name must be 1 to 64 characters, not {self.name!r}")
        if self.roles is not None:
            if self.model is None:
                raise ConfigError("--roles needs a --model: a node without one can only route and ask")
            _check_roles(self.roles)
        if self.heartbeat_interval_s <= 0:
            raise ConfigError(f"--heartbeat must be > 0 seconds, not {self.heartbeat_interval_s}")
        if self.shards == 1 or not 0 <= self.shards <= MAX_SHARDS:
            raise ConfigError(f"--shards must be 0 (off) or 2 to {MAX_SHARDS}, the same on every node, not {self.shards}")
        if self.max_task_records < 1:
            raise ConfigError(f"--max-task-records must be >= 1, not {self.max_task_records}")
        _check_knobs(self.redundancy, self.replans, self.disclosure)
        if self.tools is not None:
            resolve_tools(self.tools)  # unknown names, or python asked for without a sandbox
        if not self.event_log_max_mb > 0 or self.event_log_keep < 0:
            raise ConfigError(f"--event-log-max-mb must be > 0 and --event-log-keep >= 0, not "
                              f"{self.event_log_max_mb} and {self.event_log_keep}")
        if not 0 <= self.privacy_sigma <= MAX_PRIVACY_SIGMA:
            raise ConfigError(f"--privacy-sigma must be 0 (off) to {MAX_PRIVACY_SIGMA}, not {self.privacy_sigma}")
        if not MIN_LEARN_REPUBLISH_S <= self.learn_republish_s <= MAX_LEARN_REPUBLISH_S:
            raise ConfigError(f"--learn-republish-s must be {MIN_LEARN_REPUBLISH_S} to {MAX_LEARN_REPUBLISH_S} "
                              f"seconds, not {self.learn_republish_s}")
        if not 0 <= self.warm_peers <= MAX_WARM_PEERS:
            raise ConfigError(f"--warm-peers must be 0 (off) to {MAX_WARM_PEERS}, not {self.warm_peers}")
        for key in RELAY_LIMIT_KEYS:
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"{key} must be >= 1, not {value}")
        if self.reachability not in REACHABILITY:
            raise choice_error(self.reachability, REACHABILITY, "--reachability")


    def task_defaults(self) -> dict[str, Any]:
        """The fault knobs and tools as ``TaskService`` fields (``AgentRuntime(task_defaults=...)``)."""
        return {"redundancy": self.redundancy, "hop_timeout": self.hop_timeout, "replans": self.replans,
                "disclosure": self.disclosure, "tools": resolve_tools(self.tools) if self.model else ()}


def _check_knobs(redundancy: int, replans: int, disclosure: str) -> None:
    if redundancy not in (1, 2):
        raise ConfigError(f"--redundancy must be 1 or 2 (executors per step), not {redundancy}")
    if not 0 <= replans <= 3:
        raise ConfigError(f"--replans must be 0 to 3, not {replans}")
    if disclosure not in ("full", "minimal"):
        raise ConfigError(f"--disclosure must be full or minimal, not {disclosure!r}")


#: Keys of a ``symphony node --config FILE`` TOML file: the command's flags ('-' or '_' both work),
#: each with its type. List keys also take one string ("math, logic" for skills).
FILE_KEYS: dict[str, type] = {
    "data_dir": str, "name": str, "listen": list, "bootstrap": list, "api": str, "api_auth": str, "skills": list,
    "model": str, "roles": list, "memory_gb": float, "accelerator": str, "heartbeat": float, "anti_entropy": float,
    "shards": int, "max_task_records": int, "event_log_max_mb": float, "event_log_keep": int,
    "relay_service": bool, "relay_max_reservations": int, "relay_max_circuits": int, "relay_circuit_mb": int,
    "relay_circuit_seconds": int, "reachability": str, "mdns": bool,
    "rendezvous_service": bool, "rendezvous": bool, "dht": bool, "upnp": bool,
    "privacy_sigma": float,
    "redundancy": int, "hop_timeout": str, "replans": int, "disclosure": str,
    "learn_republish_s": float, "warm_peers": int,
    "tools": list,
}


def load_node_file(path: Path) -> dict[str, Any]:
    """Read a node TOML file into ``{flag_name: value}``, checked key by key.

    Relative ``data_dir`` paths are taken from the file's directory. Raises ``ConfigError``
    naming the file, the key and the fix: unknown key (with the closest known one), wrong type,
    bad value (the same checks as the flag).
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in FILE_KEYS:
            close = difflib.get_close_matches(name, FILE_KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{path}: unknown key {key!r}; {hint}known keys: {', '.join(FILE_KEYS)}")
        try:
            values[name] = _file_value(name, value)
            _check_file_value(name, values[name])
        except ConfigError as exc:
            raise ConfigError(f"{path}: key {key!r}: {exc}") from None
    if "data_dir" in values:
        values["data_dir"] = str(path.parent / Path(values["data_dir"]).expanduser())
    return values


def _file_value(name: str, value: Any) -> Any:
    kind = FILE_KEYS[name]
    if kind is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f'must be a string or a list of strings, e.g. {name} = ["..."], not {value!r}')
        return split_list(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"must be a whole number, e.g. {name} = 4, not {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"must be a number, e.g. {name} = 60, not {value!r}")
        return float(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"must be true or false, e.g. {name} = true, not {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f'must be a string, e.g. {name} = "...", not {value!r}')
    return value


def _check_file_value(name: str, value: Any) -> None:
    """The flag's own checks, run early so the error names the file's key."""
    if name in ("listen", "bootstrap"):
        for addr in value:
            _check_multiaddr(addr, option=f"--{name}", needs_peer=name == "bootstrap")
    elif name == "api" and value.lower() != "none":
        parse_host_port(value)
    elif name == "api_auth" and value not in API_AUTH:
        raise choice_error(value, API_AUTH)
    elif name == "roles":
        _check_roles(tuple(value), option="")
    elif name == "name" and not 0 < len(value) <= 64:
        raise ConfigError(f"must be 1 to 64 characters, not {value!r}")
    elif name in ("heartbeat", "anti_entropy") and not value > 0:
        raise ConfigError(f"must be > 0 seconds, not {value}")
    elif name == "shards" and (value == 1 or not 0 <= value <= MAX_SHARDS):
        raise ConfigError(f"must be 0 (off) or 2 to {MAX_SHARDS}, not {value}")
    elif name == "max_task_records" and value < 1:
        raise ConfigError(f"must be >= 1, not {value}")
    elif name == "event_log_keep" and value < 0:
        raise ConfigError(f"must be >= 0, not {value}")
    elif name == "event_log_max_mb" and not value > 0:
        raise ConfigError(f"must be > 0, not {value}")
    elif name == "privacy_sigma" and not 0 <= value <= MAX_PRIVACY_SIGMA:
        raise ConfigError(f"must be 0 (off) to {MAX_PRIVACY_SIGMA}, not {value}")
    elif name == "hop_timeout":
        parse_hop_timeout(value)
    elif name == "learn_republish_s" and not MIN_LEARN_REPUBLISH_S <= value <= MAX_LEARN_REPUBLISH_S:
        raise ConfigError(f"must be {MIN_LEARN_REPUBLISH_S} to {MAX_LEARN_REPUBLISH_S} seconds, not {value}")
    elif name == "warm_peers" and not 0 <= value <= MAX_WARM_PEERS:
        raise ConfigError(f"must be 0 (off) to {MAX_WARM_PEERS}, not {value}")
    elif name in RELAY_LIMIT_KEYS and value < 1:
        raise ConfigError(f"must be >= 1, not {value}")
    elif name == "reachability" and value not in REACHABILITY:
        raise choice_error(value, REACHABILITY)


def _check_roles(roles: tuple[str, ...], option: str = "--roles") -> None:
    """Each role is a known one (``ROLES``), with a "did you mean" for a typo."""
    if not roles:
        raise ConfigError(f"{option or 'roles'} must be one or both of {', '.join(ROLES)}")
    for role in roles:
        if role not in ROLES:
            raise choice_error(role, ROLES, option)


def parse_hop_timeout(text: str) -> HopTimeout:
    """``--hop-timeout``: ``adaptive``, ``off`` or a number of seconds in (0, 3600]; the one parser of
    the node's setting and ``symphony ask``'s option (``ConfigError`` otherwise)."""
    word = text.strip().lower()
    if word in ("adaptive", "off"):
        return "adaptive" if word == "adaptive" else "off"
    try:
        seconds = float(word)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds <= 3600:
        raise ConfigError(f"--hop-timeout must be adaptive, off or seconds in (0, 3600], not {text!r}")
    return seconds


def split_list(values: list[str]) -> list[str]:
    """Accept both repeated options and comma-separated lists: --skills "math, logic"."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def node_config(values: dict[str, Any]) -> NodeConfig:
    """Build a ``NodeConfig`` from flag-named values (the TOML file's, overridden by the command line)."""
    data_dir = values.get("data_dir") or default_data_dir()
    api = values.get("api", DEFAULT_API)
    try:
        hardware = declared_or_detected(values.get("memory_gb"), values.get("accelerator"))
    except ValidationError as exc:
        raise ConfigError(f"--memory-gb/--accelerator: {exc.errors()[0]['msg']}") from None
    return NodeConfig(
        data_dir=Path(data_dir).expanduser(), name=values.get("name", "agent"),
        listen=values.get("listen") or ["/ip4/127.0.0.1/tcp/0"], bootstrap=values.get("bootstrap", []),
        api=None if api.lower() == "none" else normalize_api(api), api_auth=values.get("api_auth", "auto"),
        tags=split_list(values.get("skills", [])),
        model=values.get("model"), roles=tuple(split_list(values["roles"])) if values.get("roles") else None,
        hardware=hardware,
        heartbeat_interval_s=values.get("heartbeat", 60.0), anti_entropy_interval_s=values.get("anti_entropy", 30.0),
        shards=values.get("shards", 0),
        **{key: values[key] for key in ("max_task_records", "event_log_max_mb", "event_log_keep", "relay_service",
                                         "privacy_sigma", "redundancy", "replans", "disclosure", "learn_republish_s",
                                         "warm_peers")
           if key in values},
        **{key: values[key] for key in (*RELAY_LIMIT_KEYS, "reachability", "mdns", "rendezvous_service", "rendezvous",
                                         "dht", "upnp")
           if key in values},
        **({"hop_timeout": parse_hop_timeout(values["hop_timeout"])} if "hop_timeout" in values else {}),
        tools=() if values.get("no_tools") else tuple(split_list(values["tools"])) if "tools" in values else None,
    )


def declared_or_detected(memory_gb: float | None, accelerator: str | None) -> Hardware:
    """``--memory-gb`` / ``--accelerator`` as given; what is not given is detected (``node.hardware``), cores always."""
    if memory_gb is None or accelerator is None:
        found = detect_hardware()
        memory_gb = found.memory_gb if memory_gb is None else memory_gb
        accelerator = found.accelerator if accelerator is None else accelerator
    return Hardware(memory_gb=memory_gb, accelerator=accelerator, cores=detected_cores())


def probe_model_server(spec: str | None, *, timeout: float = 3.0) -> None:
    """For an ``openai:URL#MODEL`` spec, check that something answers at URL before the node joins
    (for ``ollama:MODEL``, that Ollama runs and has MODEL: ``llm.ollama.probe_ollama``).

    A node whose model server is down would register, get picked by the Beacon and fail every
    task; better to refuse at start with the fix. Any HTTP reply counts as "up" (servers differ
    in what ``GET /models`` returns); a refused key is reported too.
    """
    if spec and spec.lower().startswith("ollama:"):
        from symphony.llm import probe_ollama

        probe_ollama(spec.split(":", 1)[1], timeout=timeout)
        return
    if not spec or not spec.lower().startswith("openai:"):
        return
    url = spec.split(":", 1)[1].partition("#")[0].rstrip("/")
    key = os.environ.get("OPENAI_API_KEY") or "symphony"
    try:
        response = httpx.get(url + "/models", timeout=timeout, headers={"Authorization": f"Bearer {key}"})
    except httpx.HTTPError as exc:
        raise ConfigError(
            f"cannot reach the model server at {url} ({type(exc).__name__}: {exc}): is Ollama/vLLM/llama.cpp "
            f"server running there? Start it, or fix --model (e.g. openai:http://127.0.0.1:11434/v1#qwen2.5:0.5b)"
        ) from exc
    if response.status_code in (401, 403):
        raise ConfigError(f"the model server at {url} refused the API key (HTTP {response.status_code}): "
                          "set OPENAI_API_KEY to a key it accepts")
