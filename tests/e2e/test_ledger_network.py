"""The ledger on real node processes over libp2p on 127.0.0.1 (issue #2's acceptance list)."""

from __future__ import annotations

import pytest

from symphony.testing import NodeProcess, Swarm, open_swarm, wait_for

pytestmark = pytest.mark.e2e


def sees_all(node: NodeProcess, agents: set[str], *, available: bool = True) -> bool:
    ledger = node.ledger()
    return agents <= set(ledger) and (not available or all(ledger[a]["available"] for a in agents))


@pytest.fixture
def swarm(tmp_path) -> Swarm:
    with open_swarm(tmp_path) as swarm:
        yield swarm


def test_five_nodes_through_one_bootstrap_see_all_records_and_updates(swarm: Swarm) -> None:
    """5 nodes joined through one bootstrap converge; an UPDATE on one reaches the others."""
    nodes = swarm.start(5)
    agents = {n.agent_id for n in nodes}
    for node in nodes:
        wait_for(lambda: sees_all(node, agents), timeout=30, what=f"{node.name} to see all 5 records")

    response = nodes[3].post("/v1/node/record", {"tags": ["math", "logic"]})
    assert response.status_code == 200, response.text
    lamport = response.json()["lamport"]
    for node in nodes:
        wait_for(lambda: node.ledger()[nodes[3].agent_id]["lamport"] == lamport, timeout=15,
                 what=f"{node.name} to see the update")
        assert node.ledger()[nodes[3].agent_id]["tags"] == ["math", "logic"]


def test_network_survives_the_bootstrap_node(swarm: Swarm) -> None:
    """After the bootstrap node is killed, the rest still exchange updates: it was no hub."""
    boot, *rest = swarm.start(4)
    agents = {n.agent_id for n in rest}
    for node in rest:
        wait_for(lambda: node.get("/v1/node")["connected_peers"] >= 2, timeout=30,
                 what=f"{node.name} to connect beyond the bootstrap node")
    boot.kill()
    lamport = rest[0].post("/v1/node/record", {"name": "renamed"}).json()["lamport"]
    for node in rest[1:]:
        wait_for(lambda: node.ledger()[rest[0].agent_id]["lamport"] == lamport, timeout=20,
                 what=f"{node.name} to get the update without the bootstrap node")
        wait_for(lambda: sees_all(node, agents), timeout=10, what="survivors to stay available")


def test_late_joiner_catches_up(swarm: Swarm) -> None:
    """A node joining later receives every existing record (anti-entropy), incl. old updates."""
    nodes = swarm.start(3)
    lamport = nodes[1].post("/v1/node/record", {"tags": ["early"]}).json()["lamport"]
    late = swarm.spawn("late", bootstrap=nodes[0]).wait_ready()
    agents = {n.agent_id for n in nodes} | {late.agent_id}
    wait_for(lambda: sees_all(late, agents), timeout=30, what="the late joiner to see everyone")
    assert late.ledger()[nodes[1].agent_id]["lamport"] == lamport
    for node in nodes:
        wait_for(lambda: sees_all(node, agents), timeout=30, what=f"{node.name} to see the late joiner")


def test_killed_node_turns_unavailable(swarm: Swarm) -> None:
    """A SIGKILLed node (no goodbye) is marked unavailable within a few heartbeats."""
    nodes = swarm.start(3)
    agents = {n.agent_id for n in nodes}
    wait_for(lambda: sees_all(nodes[0], agents), timeout=30, what="convergence")
    nodes[2].kill()
    # TTL = 3 heartbeats of 0.5 s; allow generous slack for a loaded CI machine
    wait_for(lambda: not nodes[0].ledger()[nodes[2].agent_id]["available"], timeout=15,
             what="the killed node to turn unavailable")
    assert nodes[1].ledger()[nodes[1].agent_id]["available"]


def test_graceful_stop_announces_leaving_and_restart_keeps_the_id(swarm: Swarm) -> None:
    """SIGTERM exits 0 after announcing 'leaving'; restarting on the same data dir keeps the ID
    and a higher lamport, so the network takes the new record."""
    boot, node = swarm.start(2)
    wait_for(lambda: sees_all(boot, {node.agent_id}), timeout=30, what="convergence")
    old_id, old_lamport = node.agent_id, boot.ledger()[node.agent_id]["lamport"]
    assert node.terminate() == 0
    wait_for(lambda: boot.ledger()[old_id]["availability"] == "leaving", timeout=10, what="the leave notice")
    assert not (node.data_dir / "node.json").exists()

    again = swarm.spawn("n1-again", bootstrap=boot, data_dir=node.data_dir).wait_ready()
    assert again.agent_id == old_id
    wait_for(lambda: boot.ledger()[old_id]["availability"] == "online"
             and boot.ledger()[old_id]["lamport"] > old_lamport, timeout=20, what="the restarted record")
    events = [e["event"] for e in again.events()]
    assert events.count("starting") == 2 and "stopped" in events
