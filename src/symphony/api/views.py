"""The API's JSON bodies built from a node's snapshots (``api.node_api.NodeApi``)."""

from __future__ import annotations

from typing import Any

from symphony import __version__
from symphony.api.node_api import NodeApi
from symphony.node.snapshots import NodeStatus

#: task records a new ``/v1/events`` subscriber gets in its snapshot (the newest)
SNAPSHOT_TASKS = 50


def node_view(status: NodeStatus) -> dict[str, Any]:
    """``GET /v1/node``: this node, its traffic and the counters of what it refused or lost."""
    return {
        "agent_id": status.agent_id,
        "name": status.name,
        "version": __version__,
        "addrs": status.addrs,
        "api": status.api_url,
        "lamport": status.lamport,
        "uptime_s": status.uptime_s,
        "connected_peers": status.connected_peers,
        "ledger_size": status.ledger_size,
        "rejected": dict(status.rejected),
        "refused": dict(status.refused),
        "event_log": dict(status.event_log),
        "task_records": status.task_records,
        "traffic": {kind: dict(counts) for kind, counts in status.traffic.items()},
        "model_features": dict(status.model_features),  # e.g. {"json_output": "json_object"}: how it gives JSON
        "reach": dict(status.reach),
    }


def peers_view(node: NodeApi) -> list[dict[str, Any]]:
    """``GET /v1/peers``' rows: every other agent in the ledger with connectivity and availability."""
    return [peer.to_wire() for peer in node.peers()]


def ledger_view(node: NodeApi) -> list[dict[str, Any]]:
    """``GET /v1/ledger``'s records, decoded capability vectors included."""
    return [entry.to_wire() for entry in node.ledger_entries()]


def snapshot(node: NodeApi) -> dict[str, Any]:
    """Everything a new ``/v1/events`` subscriber needs before the live events: the node, its peers and
    ledger, the newest task records, and the progress events of the tasks in flight (``progress``,
    as published: the viewer replays them to show the running chains as a live viewer saw them)."""
    return {"node": node_view(node.status()), "peers": peers_view(node), "ledger": ledger_view(node),
            "tasks": [record.to_wire() for record in node.tasks()[-SNAPSHOT_TASKS:]], "progress": node.progress()}
