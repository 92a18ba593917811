"""Join from home: real nodes in Linux network namespaces behind NAT routers (issue 20).

The test bed is ``symphony.bench.nat.NatBed`` (shared with ``symphony bench nat``): a "public"
namespace holding a bridge (the internet), two router namespaces each with a public address on
it and a home namespace behind it (MASQUERADE, no inbound, no route between the homes), and a
LAN pair for mDNS. Every address lives only inside namespaces the test creates, every process
runs inside one (``ip netns exec``), and everything is removed at the end, also on failure.
Needs root and ``ip``/``iptables``; skipped otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from symphony.bench.nat import HOMES, LAN, PUBLIC, NatBed, NsNode, PointNode, missing_tools, running_bed
from symphony.testing import wait_for

pytestmark = pytest.mark.e2e


def _bed(*, lan: bool = False, upnp: bool = False) -> Iterator[NatBed]:
    reason = missing_tools(upnp=upnp)
    if reason:
        pytest.skip(reason)
    with running_bed(lan=lan, upnp=upnp) as bed:
        yield bed


@pytest.fixture
def nat_bed() -> Iterator[NatBed]:
    yield from _bed(lan=False)


@pytest.fixture
def lan_bed() -> Iterator[NatBed]:
    yield from _bed(lan=True)


@pytest.fixture
def upnp_bed() -> Iterator[NatBed]:
    yield from _bed(upnp=True)


def _up(nodes: list[NsNode], node: NsNode) -> None:
    """Start ``node``, list it for the test's cleanup, and wait until its API answers."""
    nodes.append(node.start())
    node.wait_ready()


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
        _up(nodes, relay)
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


def test_two_homes_that_share_only_a_rendezvous_point_find_each_other_there(nat_bed: NatBed, tmp_path: Path) -> None:
    """home1 (scripted:arith) and home2 (no model) bootstrap only to a bare relay + rendezvous point
    (no ledger: no record can pass from one home to the other through it). home1 takes a relay slot
    and registers its /p2p-circuit address; home2 discovers it at the point, dials it through the
    relay, their ledgers sync over that connection, and a question asked at home2 is planned by home1."""
    nodes: list[NsNode] = []
    try:
        point = PointNode(nat_bed, "public", f"{PUBLIC}.1", tmp_path / "point")
        _up(nodes, point)
        home1 = NsNode(nat_bed, "home1", f"{HOMES['home1']}.2", tmp_path / "home1", bootstrap=[point.addr],
                       args=["--rendezvous", "--model", "scripted:arith"])
        _up(nodes, home1)
        wait_for(lambda: home1.api("/v1/node")["body"]["reach"]["rendezvous"]["registered"] == [point.agent_id],
                 timeout=30, what="home1 registered at the point")
        assert home1.api("/v1/node")["body"]["reach"]["relay_slots"] == {point.agent_id: "granted"}
        home2 = NsNode(nat_bed, "home2", f"{HOMES['home2']}.2", tmp_path / "home2", bootstrap=[point.addr],
                       args=["--rendezvous"])
        _up(nodes, home2)
        wait_for(lambda: _connection(home2, home1), timeout=30, what="home2 connected to home1")
        # the connection can show before dial_announced returns and counts it: wait for the count too
        wait_for(lambda: home2.api("/v1/node")["body"]["reach"]["rendezvous"]["dialed"] == 1, timeout=10,
                 what="home2's rendezvous dial counted")
        wait_for(lambda: any(r["agent_id"] == home1.agent_id for r in home2.api("/v1/ledger")["body"]["records"]),
                 timeout=30, what="home1's record in home2's ledger")
        _ask_planned_by(home2, home1)
    finally:
        for node in nodes:
            node.kill()


def test_a_home_node_with_upnp_is_reached_directly_at_its_routers_address(upnp_bed: NatBed, tmp_path: Path) -> None:
    """router1 is a UPnP gateway (miniupnpd). home1 (--upnp, scripted:arith) has it forward its port and
    publishes router1's external address first; the relay then dials it back (AutoNAT: public, no relay
    slot), home2 behind its own NAT connects to that address directly, and home2's question is planned
    by home1. Without the published address home2 could only have gone through a relay."""
    bed, public = upnp_bed, upnp_bed.public
    nodes: list[NsNode] = []
    try:
        relay = NsNode(bed, "public", f"{public}.1", tmp_path / "relay", bootstrap=[], args=["--relay-service"])
        _up(nodes, relay)
        home1 = NsNode(bed, "home1", f"{HOMES['home1']}.2", tmp_path / "home1", bootstrap=[relay.addr],
                       args=["--upnp", "--model", "scripted:arith"])
        _up(nodes, home1)
        assert home1.addr == f"/ip4/{public}.2/tcp/4001/p2p/{home1.agent_id}"  # router1's WAN address
        reach = wait_for(lambda: (r := home1.api("/v1/node")["body"]["reach"])["relay_slots"] and r, timeout=30,
                         what="home1's AutoNAT answer")
        assert reach["upnp"] == {"state": "mapped", "external": [f"/ip4/{public}.2/tcp/4001"]}, reach
        assert reach["reachability"] == "public" and reach["relay_slots"] == {relay.agent_id: "not needed"}, reach
        home2 = NsNode(bed, "home2", f"{HOMES['home2']}.2", tmp_path / "home2", bootstrap=[relay.addr], args=[])
        _up(nodes, home2)
        wait_for(lambda: any(r["agent_id"] == home1.agent_id for r in home2.api("/v1/ledger")["body"]["records"]),
                 timeout=30, what="home1's record at home2")
        wait_for(lambda: _connection(home2, home1) == "direct", timeout=30, what="home2 connected to home1 directly")
        _ask_planned_by(home2, home1)
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
