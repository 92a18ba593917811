"""Join from home: real nodes in Linux network namespaces behind NAT routers (issue 20).

The test bed: a "public" namespace holding a bridge (the internet), two router namespaces
each with a public address on it and a home namespace behind it (MASQUERADE, no inbound,
no route between the homes). Every address lives only inside namespaces the test creates,
every process runs inside one (``ip netns exec``), and everything is removed at the end,
also on failure. Needs root and ``ip``/``iptables``; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from symphony.testing import NodeProcess, wait_for

pytestmark = pytest.mark.e2e

PUBLIC = "10.77.0"  # the "internet": relay .1, router1 .2, router2 .3
HOMES = {"home1": "10.78.1", "home2": "10.78.2"}  # each home's LAN: router .1, machine .2
LAN = "10.79.0"  # the mDNS pair's link: lan1 .1, lan2 .2


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make system-deps)"
    return None


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=20)


@dataclass
class NatBed:
    """The namespaces of one test run; ``ns(role)`` gives the real name of ``public``,
    ``router1``, ``home1``, ``router2``, ``home2``."""

    tag: str
    created: list[str] = field(default_factory=list)

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
        self.ip("public", "addr", "add", f"{PUBLIC}.1/24", "dev", "br0")
        self.ip("public", "link", "set", "br0", "up")
        for index, (home, lan) in enumerate(HOMES.items(), start=1):
            self._home(f"router{index}", home, wan=f"{PUBLIC}.{index + 1}", lan=lan)

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

    def remove(self) -> None:
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


@pytest.fixture
def nat_bed() -> Iterator[NatBed]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    bed = NatBed(uuid.uuid4().hex[:6])
    try:
        bed.build()
        yield bed
    finally:
        bed.remove()


@pytest.fixture
def lan_bed() -> Iterator[NatBed]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    bed = NatBed(uuid.uuid4().hex[:6])
    try:
        bed.build_lan()
        yield bed
    finally:
        bed.remove()


class NsNode(NodeProcess):
    """A ``symphony node`` inside a namespace, listening on ``host`` there; its API (on the
    namespace's own loopback) is asked from inside the namespace too."""

    def __init__(self, bed: NatBed, role: str, host: str, data_dir: Path, *, bootstrap: list[str],
                 args: list[str]) -> None:
        super().__init__(data_dir, role, bootstrap=bootstrap, heartbeat=0.5, args=args)
        self.bed, self.role, self.host = bed, role, host

    def start(self) -> NsNode:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = ["ip", "netns", "exec", self.bed.ns(self.role), sys.executable, "-m", "symphony", "node",
               "--data-dir", str(self.data_dir), "--name", self.role, "--listen", f"/ip4/{self.host}/tcp/4001",
               "--api", "127.0.0.1:8080", "--heartbeat", "0.5", "--anti-entropy", "1", *self.args]
        for addr in self.bootstrap:
            cmd += ["--bootstrap", addr]
        log = (self.data_dir / "stdout.log").open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return self

    def api(self, path: str, body: Any = None, timeout: float = 10) -> Any:
        code = ("import httpx,json,sys; a=sys.argv; b=json.loads(a[2]);"
                "r=httpx.post(a[1],json=b,timeout=float(a[3])) if b is not None else httpx.get(a[1],timeout=5);"
                "print(json.dumps({'status': r.status_code, 'body': r.json()}))")
        result = self.bed.run(self.role, sys.executable, "-c", code, f"http://127.0.0.1:8080{path}",
                              json.dumps(body), str(timeout), timeout=timeout + 10)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


def test_bed_lets_homes_out_but_nothing_in(nat_bed: NatBed) -> None:
    """Each home reaches the public relay address; neither the public side nor the other home reaches a home."""
    assert nat_bed.tcp_ok("home1", "public", f"{PUBLIC}.1")
    assert nat_bed.tcp_ok("home2", "public", f"{PUBLIC}.1")
    assert not nat_bed.tcp_ok("public", "home1", f"{HOMES['home1']}.2")
    assert not nat_bed.tcp_ok("home2", "home1", f"{HOMES['home1']}.2")
    assert not nat_bed.tcp_ok("home1", "home2", f"{HOMES['home2']}.2")


def test_two_homes_behind_nat_work_together_through_a_relay(nat_bed: NatBed, tmp_path: Path) -> None:
    """home1 (no model) and home2 (scripted:arith), each behind its own NAT, join through a
    public --relay-service node: home2 learns it is private (AutoNAT: the relay cannot dial
    it back), holds a relay slot and publishes its /p2p-circuit
    address in its signed record, home1 dials it, and a question asked at home1 is planned
    by home2; DCUtR then upgrades the relayed connection to a hole-punched direct one, and
    the next question is planned by home2 as well."""
    nodes: list[NsNode] = []
    try:
        relay = NsNode(nat_bed, "public", f"{PUBLIC}.1", tmp_path / "relay", bootstrap=[], args=["--relay-service"])
        nodes.append(relay.start())
        relay.wait_ready()
        homes = {}
        for home, model in (("home2", ["--model", "scripted:arith"]), ("home1", [])):
            node = NsNode(nat_bed, home, f"{HOMES[home]}.2", tmp_path / home, bootstrap=[relay.addr], args=model)
            nodes.append(node.start())
            homes[home] = node.wait_ready()
        home1, home2 = homes["home1"], homes["home2"]

        def home2_record_at_home1() -> dict[str, Any] | None:
            records = {r["agent_id"]: r for r in home1.api("/v1/ledger")["body"]["records"]}
            record = records.get(home2.agent_id)
            return record if record and record["addrs"] and "/p2p-circuit" in record["addrs"][0] else None

        record = wait_for(home2_record_at_home1, timeout=30, what="home2's relayed address in home1's ledger")
        assert record["addrs"][0].startswith(f"{relay.addr}/p2p-circuit/p2p/")
        # AutoNAT: the relay could not dial home2 back, so home2 knows it is private and took the slot
        reach = home2.api("/v1/node")["body"]["reach"]
        assert reach["reachability"] == "private", reach
        assert reach["relay_slots"] == {relay.agent_id: "granted"}, reach
        row = wait_for(lambda: next((p for p in home1.api("/v1/peers")["body"]["peers"]
                                     if p["agent_id"] == home2.agent_id and p["connected"]), None),
                       timeout=60, what="home1 connected to home2 through the relay")
        assert row["connection"] in ("relayed", "hole-punched"), row  # never "direct": the homes cannot dial

        _ask_planned_by(home1, home2)

        # DCUtR: both homes dial each other's router from their listen port at once (TCP simultaneous
        # open through both NATs), and the relayed connection is upgraded to a direct one
        wait_for(lambda: _connection(home1, home2) == "hole-punched", timeout=45, what="home1-home2 hole-punched")
        assert _connection(home2, home1) == "hole-punched"
        _ask_planned_by(home1, home2)
    finally:
        for node in nodes:
            node.kill()


def _connection(node: NsNode, peer: NsNode) -> str | None:
    """How ``node`` reaches ``peer`` now ("direct", "relayed", "hole-punched"), per /v1/peers."""
    rows = [p for p in node.api("/v1/peers")["body"]["peers"] if p["agent_id"] == peer.agent_id and p["connected"]]
    return rows[0]["connection"] if rows else None


def _ask_planned_by(asker: NsNode, planner: NsNode) -> None:
    """A question asked at ``asker`` is answered, planned by ``planner`` alone."""
    answer = asker.api("/v1/tasks", {"question": "What is (17 + 25) * 2?", "cots": 1, "wait": True}, timeout=60)
    assert answer["status"] == 200, answer
    trace = answer["body"]["trace"]
    assert trace["answer"] == "84"
    assert {c["planner"] for c in trace["chains"] if c["ok"]} == {planner.agent_id}


def test_mdns_finds_the_other_node_on_the_link_without_bootstrap(lan_bed: NatBed, tmp_path: Path) -> None:
    """lan1 (no model) and lan2 (scripted:arith) start with --mdns and no --bootstrap on one link:
    each hears the other's announcement, they connect, sync ledgers, and lan2 plans lan1's question."""
    nodes: list[NsNode] = []
    try:
        for machine, model in (("lan2", ["--model", "scripted:arith"]), ("lan1", [])):
            node = NsNode(lan_bed, machine, f"{LAN}.{machine[-1]}", tmp_path / machine, bootstrap=[],
                          args=["--mdns", *model])
            nodes.append(node.start())
        lan1, lan2 = (node.wait_ready() for node in reversed(nodes))
        wait_for(lambda: _connection(lan1, lan2) == "direct", timeout=30, what="lan1 connected to lan2 by mDNS")
        wait_for(lambda: any(r["agent_id"] == lan2.agent_id for r in lan1.api("/v1/ledger")["body"]["records"]),
                 timeout=30, what="lan2's record in lan1's ledger")
        found = [node.api("/v1/node")["body"]["reach"]["mdns"]["found"] for node in (lan1, lan2)]
        assert sum(found) >= 1, found  # one of them dialed; the other may have found the connection open
        _ask_planned_by(lan1, lan2)
    finally:
        for node in nodes:
            node.kill()
