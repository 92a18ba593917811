"""A node killed by SIGKILL restarts on its fixed port at once (real processes)."""

from __future__ import annotations

import pytest

from symphony.testing import free_port, open_swarm, wait_for

pytestmark = pytest.mark.e2e


def test_a_killed_node_restarts_on_its_port_at_once(tmp_path) -> None:
    """A peer connected to the fixed port leaves the dead node's connections in TIME_WAIT;
    the restart on the same port and data dir must not mistake that for a live listener."""
    port = free_port()
    with open_swarm(tmp_path) as swarm:
        node = swarm.spawn("fixed", args=("--listen", f"/ip4/127.0.0.1/tcp/{port}")).wait_ready()
        fixed_addr = next(a for a in node.info["addrs"] if f"/tcp/{port}/" in a)
        peer = swarm.spawn("peer", args=("--bootstrap", fixed_addr)).wait_ready()
        wait_for(lambda: node.get("/v1/node")["connected_peers"] >= 1, timeout=30, what="the peer connected")
        node.kill()
        wait_for(lambda: peer.get("/v1/node")["connected_peers"] == 0, timeout=30, what="the peer saw it go")
        node.start().wait_ready(timeout=30)
        assert any(f"/tcp/{port}/" in a for a in node.info["addrs"])
