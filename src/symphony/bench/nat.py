"""``symphony bench nat``: joining from home, measured in a NAT test bed (issue 20). Root only.

The test bed (``NatBed``, also used by tests/e2e/test_nat.py): a "public" namespace holding a
bridge (the internet) with the relay node, two router namespaces each with a public address on it
and a home namespace behind it (MASQUERADE; no inbound connection, no RST from the router; no route
between the homes), and, apart, a LAN pair on a bridge for mDNS. Every address lives only inside
namespaces the bed creates, every process runs inside one (``ip netns exec``), and ``remove``
deletes them all (the bench calls it also on failure).

Measured, over ``tries`` fresh home1 nodes (the asker, no model) joining a running relay and home2
(scripted:arith), or with ``fresh="planner"`` fresh home2 nodes joining a running relay and home1:

- **first task**: from starting the fresh node to the first question asked at home1 that home2 planned;
- **hole punch**: whether DCUtR upgraded the home1-home2 connection within ``punch_timeout_s`` of
  that first task, and when (from home1's start);
- **task latency**: the initiator's ``latency_ms`` of questions while the connection was relayed
  (before and after the question) and once it was hole-punched;
- **relay bytes per task**: bytes on router1's WAN link (home1's whole uplink, all through the
  relay while relayed) during relayed questions, less the same link's idle rate, per question.

The punch usually lands within seconds of the first task, so few questions run relayed. Then
``relayed_tries`` more tries run with router1 mapping ports at random (``MASQUERADE
--random-fully``, as a port-randomizing NAT does): the port prediction DCUtR relies on fails,
the connection stays relayed, and its questions give the relayed latency and bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio
from rich.console import Console

from symphony.errors import ConfigError
from symphony.protocol import Identity
from symphony.testing import NodeProcess, wait_for
from symphony.transport.libp2p import Libp2pConfig, open_libp2p_transport

PUBLIC = "10.77.0"  # the "internet": relay .1, router1 .2, router2 .3
#: the "internet" of a bed whose router1 runs a UPnP gateway: a publicly routable /24, because
#: miniupnpd maps nothing behind a reserved or private WAN address (that would be double NAT). It
#: exists only inside the bed's namespaces, which have no link to the root namespace or beyond.
UPNP_PUBLIC = "44.77.0"
HOMES = {"home1": "10.78.1", "home2": "10.78.2"}  # each home's LAN: router .1, machine .2
LAN = "10.79.0"  # the mDNS pair's link: lan1 .1, lan2 .2


def missing_tools(*, upnp: bool = False) -> str | None:
    """Why the bed (with ``upnp``, the one whose router1 is a UPnP gateway) cannot be built here
    (None: it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables", *(("nft", "miniupnpd") if upnp else ())):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed (make system-deps)"
    return None


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=20)


@dataclass
class NatBed:
    """The namespaces of one test run; ``ns(role)`` gives the real name of ``public``,
    ``router1``, ``home1``, ``router2``, ``home2``."""

    tag: str
    public: str = PUBLIC
    created: list[str] = field(default_factory=list)
    daemons: list[subprocess.Popen[bytes]] = field(default_factory=list)
    scratch: Path | None = None

    def ns(self, role: str) -> str:
        return f"sy{self.tag}{role}"

    def run(self, role: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns(role), *args], capture_output=True, text=True,
                              timeout=kwargs.pop("timeout", 20), **kwargs)

    def add_ns(self, role: str) -> None:
        _sh("ip", "netns", "add", self.ns(role))
        self.created.append(self.ns(role))
        self.ip(role, "link", "set", "lo", "up")

    def ip(self, role: str, *args: str) -> None:
        _sh("ip", "-n", self.ns(role), *args)

    def build(self) -> None:
        self.add_ns("public")
        self.ip("public", "link", "add", "br0", "type", "bridge")
        self.ip("public", "addr", "add", f"{self.public}.1/24", "dev", "br0")
        self.ip("public", "link", "set", "br0", "up")
        for index, (home, lan) in enumerate(HOMES.items(), start=1):
            self._home(f"router{index}", home, wan=f"{self.public}.{index + 1}", lan=lan)

    def _home(self, router: str, home: str, *, wan: str, lan: str) -> None:
        self.add_ns(router)
        self.add_ns(home)
        # veth ends are created inside the namespaces (-n), so no name ever exists in the root namespace
        self.ip(router, "link", "add", "wan", "type", "veth", "peer", "name", f"to{router}", "netns", self.ns("public"))
        self.ip("public", "link", "set", f"to{router}", "master", "br0", "up")
        self.ip(router, "addr", "add", f"{wan}/24", "dev", "wan")
        self.ip(router, "link", "set", "wan", "up")
        self.ip(router, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", self.ns(home))
        self.ip(router, "addr", "add", f"{lan}.1/24", "dev", "lan")
        self.ip(router, "link", "set", "lan", "up")
        self.ip(home, "addr", "add", f"{lan}.2/24", "dev", "eth0")
        self.ip(home, "link", "set", "eth0", "up")
        self.ip(home, "route", "add", "default", "via", f"{lan}.1")
        for rule in (["-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"],
                     ["-A", "FORWARD", "-i", "wan", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
                      "-j", "ACCEPT"],
                     ["-A", "FORWARD", "-i", "wan", "-j", "DROP"],
                     # like a home router, answer nothing unsolicited on the WAN side: a RST from the router's
                     # own stack would kill a TCP hole punch's simultaneous open
                     ["-A", "INPUT", "-i", "wan", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
                     ["-A", "INPUT", "-i", "wan", "-j", "DROP"]):
            result = self.run(router, "iptables", *rule)
            assert result.returncode == 0, result.stderr
        assert self.run(router, "sysctl", "-w", "net.ipv4.ip_forward=1").returncode == 0

    def build_lan(self) -> None:
        """Two machines on one link (a bridge in namespace ``lan``) and nothing else: no router, no
        route anywhere, so whatever they find they found on the link."""
        self.add_ns("lan")
        self.ip("lan", "link", "add", "br0", "type", "bridge")
        self.ip("lan", "link", "set", "br0", "up")
        for index, machine in enumerate(("lan1", "lan2"), start=1):
            self.add_ns(machine)
            self.ip(machine, "link", "add", "eth0", "type", "veth", "peer", "name", f"to{machine}", "netns",
                    self.ns("lan"))
            self.ip("lan", "link", "set", f"to{machine}", "master", "br0", "up")
            self.ip(machine, "addr", "add", f"{LAN}.{index}/24", "dev", "eth0")
            self.ip(machine, "link", "set", "eth0", "up")
            self.ip(machine, "route", "add", "224.0.0.0/4", "dev", "eth0")  # mDNS multicast leaves by the link

    def start_upnp(self, router: str, home: str) -> None:
        """Make ``router`` a UPnP gateway for ``home`` (miniupnpd, nftables backend): it forwards the
        ports ``home`` asks for (and only to ``home``), as a home router with UPnP on does."""
        lan = HOMES[home]
        self.scratch = Path(tempfile.mkdtemp(prefix="symphony-upnp-"))
        config = self.scratch / "miniupnpd.conf"
        config.write_text(_MINIUPNPD_CONF.format(lan=lan, uuid=uuid.uuid4()))
        # connections the gateway forwards (DNAT) pass the router's "no inbound" FORWARD rules
        assert self.run(router, "iptables", "-I", "FORWARD", "1", "-i", "wan", "-m", "conntrack", "--ctstate",
                        "DNAT", "-j", "ACCEPT").returncode == 0
        result = self.run(router, "nft", "-f", "-", input=_MINIUPNPD_NFT)
        assert result.returncode == 0, result.stderr
        self.ip(router, "route", "add", "224.0.0.0/4", "dev", "lan")  # SSDP's multicast stays on the LAN
        log = (self.scratch / "miniupnpd.log").open("ab")
        self.daemons.append(subprocess.Popen(["ip", "netns", "exec", self.ns(router), "miniupnpd", "-d", "-f",
                                              str(config), "-P", str(self.scratch / "miniupnpd.pid")],
                                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    def remove(self) -> None:
        for daemon in self.daemons:
            daemon.kill()
            daemon.wait(timeout=10)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
        for name in reversed(self.created):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)

    def tcp_ok(self, client: str, server: str, host: str, port: int = 7000) -> bool:
        """Whether ``client`` can open a TCP connection to ``host:port`` served in ``server``."""
        listener = subprocess.Popen(["ip", "netns", "exec", self.ns(server), sys.executable, "-c",
                                     "import socket,sys; s=socket.create_server(('0.0.0.0', int(sys.argv[1])));"
                                     "print('up', flush=True); s.settimeout(5); s.accept()", str(port)],
                                    stdout=subprocess.PIPE, text=True)
        try:
            assert listener.stdout is not None and listener.stdout.readline().strip() == "up"
            probe = self.run(client, sys.executable, "-c", "import socket,sys;"
                             "socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)", host, str(port))
            return probe.returncode == 0
        finally:
            listener.kill()
            listener.wait(timeout=10)


#: miniupnpd's configuration in ``NatBed.start_upnp``: UPnP IGD on the LAN side only, maps only
#: for the home machine's own address (secure mode), unprivileged ports, rules in our own table
_MINIUPNPD_CONF = """ext_ifname=wan
listening_ip=lan
port=5000
enable_upnp=yes
enable_natpmp=no
secure_mode=yes
system_uptime=yes
uuid={uuid}
upnp_table_name=miniupnpd
upnp_nat_table_name=miniupnpd
upnp_forward_chain=forward_upnp
upnp_nat_chain=prerouting_upnp
upnp_nat_postrouting_chain=postrouting_upnp
allow 1024-65535 {lan}.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
"""
#: the nftables table whose chains miniupnpd fills (what its nft_init.sh sets up, with our names)
_MINIUPNPD_NFT = """table inet miniupnpd {
  chain forward { type filter hook forward priority 0; policy accept; jump forward_upnp; }
  chain forward_upnp { }
  chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_upnp; }
  chain prerouting_upnp { }
  chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_upnp; }
  chain postrouting_upnp { }
}
"""


class NsNode(NodeProcess):
    """A ``symphony node`` inside a namespace, listening on ``host`` there; its API (on the
    namespace's own loopback) is asked from inside the namespace too."""

    def __init__(self, bed: NatBed, role: str, host: str, data_dir: Path, *, bootstrap: list[str],
                 args: list[str]) -> None:
        super().__init__(data_dir, role, bootstrap=bootstrap, heartbeat=0.5, args=args)
        self.bed, self.role, self.host = bed, role, host
        self.listen, self.api_addr = f"/ip4/{host}/tcp/4001", "127.0.0.1:8080"

    def command(self) -> list[str]:
        return ["ip", "netns", "exec", self.bed.ns(self.role), *super().command()]

    def api(self, path: str, body: Any = None, timeout: float = 10) -> Any:
        code = ("import httpx,json,sys; a=sys.argv; b=json.loads(a[2]);"
                "r=httpx.post(a[1],json=b,timeout=float(a[3])) if b is not None else httpx.get(a[1],timeout=float(a[3]));"
                "print(json.dumps({'status': r.status_code, 'body': r.json()}))")
        result = self.bed.run(self.role, sys.executable, "-c", code, f"http://{self.api_addr}{path}",
                              json.dumps(body), str(timeout), timeout=timeout + 10)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


class PointNode(NsNode):
    """A bare meeting point in a namespace (``point_command``). Nodes that share only this point
    share no ledger path: what they learn of each other they learn by rendezvous or the DHT."""

    def __init__(self, bed: NatBed, role: str, host: str, data_dir: Path) -> None:
        super().__init__(bed, role, host, data_dir, bootstrap=[], args=[])

    def command(self) -> list[str]:
        return ["ip", "netns", "exec", self.bed.ns(self.role), *point_command(self.listen, self.data_dir)]


def point_command(listen: str, data_dir: Path) -> list[str]:
    """A bare meeting point: a libp2p host with ``relay_service``, ``rendezvous_service`` and the
    DHT and nothing else (no ledger, no API), as a community-run point could be. It writes
    ``data_dir/node.json`` (pid, agent_id, addrs) like a node, so ``NodeProcess`` can run it."""
    code = "import sys; from symphony.bench.nat import serve_point; serve_point(*sys.argv[1:])"
    return [sys.executable, "-c", code, listen, str(data_dir / "node.json")]


def serve_point(listen: str, info_path: str) -> None:
    """Run ``point_command``'s host until killed."""

    async def serve() -> None:
        config = Libp2pConfig(listen=[listen], relay_service=True, rendezvous_service=True, dht=True)
        async with open_libp2p_transport(Identity.generate(), config) as transport:
            info = {"pid": os.getpid(), "agent_id": transport.peer_id, "addrs": transport.listen_addrs()}
            Path(info_path).write_text(json.dumps(info))
            await trio.sleep_forever()

    trio.run(serve)


QUESTION = "What is (17 + 25) * 2?"


@dataclass(frozen=True)
class NatBenchConfig:
    """How much to measure: ``tries`` fresh nodes (``fresh``: ``asker``, home1, or ``planner``, home2),
    ``tasks`` questions on each connection kind."""

    tries: int = 20
    relayed_tries: int = 5
    tasks: int = 3
    punch_timeout_s: float = 30.0
    fresh: str = "asker"

    def __post_init__(self) -> None:
        if self.fresh not in ("asker", "planner"):
            raise ConfigError(f"fresh must be asker or planner, not {self.fresh!r}")


@dataclass
class Try:
    """One fresh node: what it took to join, and its questions' latencies by connection kind."""

    nat: str  # router1's port mapping: "port-keeping" or "port-randomizing"
    first_task_s: float
    punched_after_s: float | None
    connection_at_end: str | None = None  # how home1 reached home2 when the punch wait ended
    relayed_ms: list[float] = field(default_factory=list)
    direct_ms: list[float] = field(default_factory=list)
    relay_bytes_per_task: float | None = None


def ask(asker: NsNode, planner: NsNode) -> float | None:
    """One question at ``asker``; its latency (ms) when answered and planned by ``planner``, else None."""
    answer = asker.api("/v1/tasks", {"question": QUESTION, "cots": 1, "wait": True}, timeout=60)
    if answer["status"] != 200:
        return None
    trace = answer["body"]["trace"]
    planners = {c["planner"] for c in trace["chains"] if c["ok"]}
    return float(trace["latency_ms"]) if trace["answer"] == "84" and planners == {planner.agent_id} else None


def connection(node: NsNode, peer: NsNode) -> str | None:
    """How ``node`` reaches ``peer`` now ("direct", "relayed", "hole-punched"), per /v1/peers."""
    rows = [p for p in node.api("/v1/peers")["body"]["peers"] if p["agent_id"] == peer.agent_id and p["connected"]]
    return rows[0]["connection"] if rows else None


def wan_bytes(bed: NatBed, router: str) -> int:
    """Bytes both ways on ``router``'s WAN link so far."""
    out = bed.run(router, "ip", "-s", "-j", "link", "show", "wan")
    stats = json.loads(out.stdout)[0]["stats64"]
    return int(stats["rx"]["bytes"]) + int(stats["tx"]["bytes"])


def home_node(bed: NatBed, role: str, relay: NsNode, data_dir: Path) -> NsNode:
    """home1, the asker (no model), or home2, the planner (scripted:arith), bootstrapping to ``relay``."""
    args = ["--model", "scripted:arith"] if role == "home2" else []
    return NsNode(bed, role, f"{HOMES[role]}.2", data_dir, bootstrap=[relay.addr], args=args)


def one_try(bed: NatBed, relay: NsNode, steady: NsNode, data_dir: Path, cfg: NatBenchConfig, nat: str) -> Try:
    """Start a fresh node (``cfg.fresh``) beside the ``steady`` other home; time the first task asked at
    home1 and planned by home2, the relayed questions, the hole punch, and the direct questions; the
    fresh node is killed at the end."""
    started = time.monotonic()
    fresh = home_node(bed, "home1" if cfg.fresh == "asker" else "home2", relay, data_dir).start()
    home1, home2 = (fresh, steady) if cfg.fresh == "asker" else (steady, fresh)
    try:
        fresh.wait_ready()
        wait_for(lambda: ask(home1, home2), timeout=120, what="a first task served by home2", interval=0.2)
        result = Try(nat=nat, first_task_s=round(time.monotonic() - started, 2), punched_after_s=None)
        _relayed_tasks(bed, home1, home2, result, cfg)
        deadline = time.monotonic() + cfg.punch_timeout_s
        while time.monotonic() < deadline and connection(home1, home2) != "hole-punched":
            time.sleep(0.2)
        result.connection_at_end = connection(home1, home2)
        if result.connection_at_end == "hole-punched":
            result.punched_after_s = round(time.monotonic() - started, 2)
            result.direct_ms = [ms for ms in (ask(home1, home2) for _ in range(cfg.tasks)) if ms is not None]
        return result
    finally:
        fresh.kill()


def _relayed_tasks(bed: NatBed, home1: NsNode, home2: NsNode, result: Try, cfg: NatBenchConfig) -> None:
    """Questions while the connection stays relayed (checked before and after each), and the bytes on
    home1's uplink they cost beyond an idle window of the same length."""
    idle_start, idle_bytes = time.monotonic(), wan_bytes(bed, "router1")
    time.sleep(2.0)
    idle_rate = (wan_bytes(bed, "router1") - idle_bytes) / (time.monotonic() - idle_start)
    busy_start, busy_bytes, relayed = time.monotonic(), wan_bytes(bed, "router1"), 0
    for _ in range(cfg.tasks):
        if connection(home1, home2) != "relayed":
            break
        latency = ask(home1, home2)
        if latency is None or connection(home1, home2) != "relayed":
            break
        result.relayed_ms.append(latency)
        relayed += 1
    if relayed:
        spent = wan_bytes(bed, "router1") - busy_bytes - idle_rate * (time.monotonic() - busy_start)
        result.relay_bytes_per_task = round(spent / relayed)


def _randomize_ports(bed: NatBed, router: str) -> None:
    """Make ``router`` a port-randomizing NAT (its MASQUERADE rule is the first of POSTROUTING)."""
    result = bed.run(router, "iptables", "-t", "nat", "-R", "POSTROUTING", "1", "-o", "wan", "-j", "MASQUERADE",
                     "--random-fully")
    if result.returncode != 0:
        raise RuntimeError(f"cannot randomize {router}'s ports: {result.stderr}")


@contextmanager
def running_bed(*, lan: bool = False, upnp: bool = False) -> Iterator[NatBed]:
    """A built bed (the two homes, or with ``lan`` the mDNS pair; with ``upnp``, router1 is a UPnP
    gateway on ``UPNP_PUBLIC``), removed on the way out whatever happened."""
    bed = NatBed(uuid.uuid4().hex[:6], public=UPNP_PUBLIC if upnp else PUBLIC)
    try:
        bed.build_lan() if lan else bed.build()
        if upnp:
            bed.start_upnp("router1", "home1")
        yield bed
    finally:
        bed.remove()


def run_nat_bench(cfg: NatBenchConfig, out_dir: Path, console: Console) -> dict[str, Any]:
    """Run ``cfg.tries`` tries, then ``cfg.relayed_tries`` behind a port-randomizing router1, in a fresh bed;
    print the summary and write nat.json and nat.md under ``out_dir``.

    Raises:
        ConfigError: not root, or ``ip``/``iptables`` missing.
    """
    reason = missing_tools()
    if reason:
        raise ConfigError(f"symphony bench nat needs network namespaces: {reason}")
    tries: list[Try] = []
    with tempfile.TemporaryDirectory(prefix="symphony-nat-") as tmp, running_bed() as bed:
        root = Path(tmp)
        nodes: list[NsNode] = []
        try:
            relay = NsNode(bed, "public", f"{PUBLIC}.1", root / "relay", bootstrap=[], args=["--relay-service"])
            nodes.append(relay.start())
            relay.wait_ready()
            steady = home_node(bed, "home2" if cfg.fresh == "asker" else "home1", relay, root / "steady")
            nodes.append(steady.start())
            steady.wait_ready()
            for index in range(cfg.tries + cfg.relayed_tries):
                if index == cfg.tries:
                    _randomize_ports(bed, "router1")
                nat = "port-keeping" if index < cfg.tries else "port-randomizing"
                tries.append(one_try(bed, relay, steady, root / f"fresh-{index}", cfg, nat))
                console.print(f"try {index + 1}/{cfg.tries + cfg.relayed_tries}: {asdict(tries[-1])}")
        finally:
            for node in nodes:
                node.kill()
    summary = {nat: summarize([t for t in tries if t.nat == nat]) for nat in ("port-keeping", "port-randomizing")}
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"config": asdict(cfg), "load": os.getloadavg(), "summary": summary, "tries": [asdict(t) for t in tries]}
    (out_dir / "nat.json").write_text(json.dumps(report, indent=1))
    (out_dir / "nat.md").write_text(markdown(summary) + "\n")
    console.print(markdown(summary))
    return report


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def summarize(tries: list[Try]) -> dict[str, Any]:
    """Medians over the tries, and the hole-punch success rate."""
    punched = [t.punched_after_s for t in tries if t.punched_after_s is not None]
    return {
        "tries": len(tries),
        "first_task_s_median": _median([t.first_task_s for t in tries]),
        "hole_punched": len(punched),
        "punched_after_s_median": _median(punched),
        "relayed_task_ms_median": _median([ms for t in tries for ms in t.relayed_ms]),
        "relayed_tasks": sum(len(t.relayed_ms) for t in tries),
        "direct_task_ms_median": _median([ms for t in tries for ms in t.direct_ms]),
        "direct_tasks": sum(len(t.direct_ms) for t in tries),
        "relay_bytes_per_task_median": _median([t.relay_bytes_per_task for t in tries
                                                if t.relay_bytes_per_task is not None]),
    }


def markdown(summaries: dict[str, dict[str, Any]]) -> str:
    """One column per router1 NAT kind."""
    names = [name for name in summaries if summaries[name]["tries"]]
    table = ["| measure | " + " | ".join(f"router1 {name}" for name in names) + " |",
             "|---|" + "---|" * len(names)]
    rows = _rows(summaries[names[0]])
    for index, (label, _) in enumerate(rows):
        table.append(f"| {label} | " + " | ".join(str(_rows(summaries[n])[index][1]) for n in names) + " |")
    return "\n".join(table)


def _rows(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    return [("tries (a fresh node joining the relay and the other home)", summary["tries"]),
            ("start to first task served across the two NATs, median (s)", summary["first_task_s_median"]),
            ("hole punched (DCUtR) within the timeout", f"{summary['hole_punched']}/{summary['tries']}"),
            ("start to hole-punched, median (s)", summary["punched_after_s_median"]),
            ("questions relayed", summary["relayed_tasks"]),
            ("task latency relayed, median (ms)", summary["relayed_task_ms_median"]),
            ("questions hole-punched", summary["direct_tasks"]),
            ("task latency hole-punched, median (ms)", summary["direct_task_ms_median"]),
            ("uplink bytes per relayed question beyond idle, median", summary["relay_bytes_per_task_median"])]
