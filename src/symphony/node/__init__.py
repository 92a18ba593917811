"""A node: one agent's protocol stack, and the daemon that runs it on the real network.

- ``runtime``: ``AgentRuntime``, the one assembly of an agent (ledger gossip, beacon responder and
  selector, the pipeline's task service, the defences at the edge) on any ``Transport``.
  ``open_simulated_agents`` starts many of them on the memory engine; tests and benchmarks build
  agents this way, so the simulator measures the code nodes run.
- ``config``: ``NodeConfig`` and how ``symphony node`` options and TOML files become one.
- What a node shows its viewers (the API reads these): the live ``EventBus`` (``bus``), the
  read-only ``PeerState`` / ``LedgerEntry`` / ``NodeStatus`` snapshots (``snapshots``) and the
  frozen ``TaskRecord`` of each question it initiated, kept in a ``TaskBook`` (``tasks``).
- ``daemon``: ``Node``, the runtime on libp2p with a data dir, an event log, metrics
  (``metrics``) and its task book. Import it from ``symphony.node.daemon``: it is kept out of this
  namespace so that importing the runtime, as every simulation does, does not load the daemon.
- ``defences``, ``datadir``, ``eventlog``: what the daemon and the runtime are built from.
- ``hardware``: detected memory/cores/accelerator, the measured tokens/s (``ThroughputMeter``), and the
  coarsened hardware a node publishes with privacy noise on (``noised`` in ``runtime``).
"""

from symphony.node.bus import EventBus
from symphony.node.config import NodeConfig, load_node_file, node_config
from symphony.node.hardware import DetectedHardware, ThroughputMeter, coarsen_hardware, detect_hardware
from symphony.node.runtime import AgentProfile, AgentRuntime, SimulatedAgent, noised, open_simulated_agents
from symphony.node.snapshots import LedgerEntry, NodeStatus, PeerState
from symphony.node.tasks import TaskBook, TaskRecord

__all__ = [
    "AgentProfile",
    "AgentRuntime",
    "DetectedHardware",
    "EventBus",
    "LedgerEntry",
    "NodeConfig",
    "NodeStatus",
    "PeerState",
    "SimulatedAgent",
    "TaskBook",
    "TaskRecord",
    "ThroughputMeter",
    "coarsen_hardware",
    "detect_hardware",
    "load_node_file",
    "node_config",
    "noised",
    "open_simulated_agents",
]
