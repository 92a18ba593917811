"""Ledger benchmark (``symphony bench ledger``): dissemination, join, failure detection, upkeep.

Entry point: ``run_ledger_bench``. It prints rich tables, writes ``ledger.json`` and
``ledger.md`` and returns the results dict.

Layout: ``config`` (targets, production timers, ``LedgerBenchConfig``), ``progress``
(budgets, progress lines), ``figures`` (percentiles, traffic totals, rows, upkeep figures),
``processes`` (real node processes), ``memory`` (memory engine, shared pieces),
``memory_full``, ``memory_overlay`` and ``memory_join`` (its set-ups), ``cpu`` (derived CPU
costs), ``report`` (tables, checks, notes, markdown), ``runner`` (``run_ledger_bench``).

Theory of operation
-------------------
The issue asks, per network size N, for: time and gossip rounds until an update reaches
every node (p50/p95), join catch-up time, failure-detection time and steady-state bytes
per agent per hour; targets: every node within 1 s at N=20 (real), <= 2 log2 N rounds
(simulation), <= 0.1 MB per agent per hour (the paper reports 0.8).

**Real processes** (``symphony.testing``): N ``symphony node`` processes on 127.0.0.1
with fast timers (``--heartbeat`` max(1 s, N/4 s), TTL 3 heartbeats, and the swarm's
anti-entropy of 2 heartbeats), all on one machine, so every event log shares one clock
(ms resolution). 20 py-libp2p processes beating every 1-2 s saturate 2 cores (records
flicker unavailable, push gossip reaches only part of the mesh), hence a heartbeat that
grows with N: each process receives at most 4 heartbeats a second.

- update: POST /v1/node/record on a random node; time = the last ``record_merged`` ts of
  that (agent, lamport) over all other nodes minus the origin's ``record_issued`` ts.
  py-libp2p exposes no hop counts, so there are no rounds for processes.
- join: one more process bootstraps through a random node; catch-up = ts of the
  ``record_merged`` that completes its ledger minus its ``starting`` event (and from spawn).
- failure: SIGKILL a random node (once every survivor sees it available); every
  survivor's /v1/peers is polled in ~0.1 s sweeps until it reports the victim unavailable.
- upkeep: /v1/node ``traffic`` counters over a quiet window. They are application
  payload bytes, and the libp2p transport counts a publish once (not per mesh peer; relays
  not at all) and a delivery once. "Wire" bytes are therefore a lower bound: pubsub
  deliveries + sync bytes sent. Not counted: gossipsub duplicates and control traffic
  (GRAFT/PRUNE/IHAVE/IWANT), protobuf/yamux framing, Noise, TCP/IP. The run's fast timers
  are scaled to production timers (``LedgerConfig``/``GossipConfig`` defaults): derived.

**Memory engine** (``MemoryNetwork``) in virtual time (``trio.testing.MockClock``), one-way
link latency drawn per connection from 5-20 ms, production timers (``LedgerConfig`` and
``GossipConfig`` defaults). Virtual time leaves out CPU time: it is what a network of
infinitely fast nodes would see, so CPU costs are reported beside it (``cpu``).

- ``full`` set-up (N <= ``sim_full_max``): every node runs the real ``LedgerService``.
  Ledgers start pre-seeded with the same N signed records (shared objects, one copy in
  memory), as if registration had converged; each node then dials 6 random agents from its
  ledger (the service's own discovery). Rounds = max hops (``MemoryNetwork.on_deliver``) of
  the pubsub message that carried the update; time = the last ``record_merged``; upkeep =
  all nodes' ``transport.stats`` over a quiet window (every hop, duplicates included);
  failure = first instant each survivor's ``Ledger.is_available`` turns false (polled in
  virtual time, TTL/600 apart), whatever rule decides it.
- ``overlay`` set-up (every size; the only one above ``sim_full_max``): a full set-up costs
  O(N^2) CPU per heartbeat interval (every node verifies every heartbeat, ~0.15 ms each)
  plus O(N) digest hashing per anti-entropy step, hours of CPU per simulated minute at
  N=10,000. So: N transports on the same mesh model with the same discovery pattern and
  no LedgerService.
  - update: real signed record bytes published by a random node; rounds and time from
    ``on_deliver`` (relaying needs no handler work).
  - upkeep (derived): mean bytes of single-heartbeat floods of real signed heartbeats,
    times one flood per agent per heartbeat interval; sync bytes per agent from a full
    set-up (in steady state a sync is one digest-hash exchange, independent of N);
    records 0 (no updates in steady state).
  - failure: the victim heartbeats on the N-node overlay and is killed at a random phase;
    every node feeds its own ``Ledger`` the heartbeats that reach it and its direct
    connection events, as ``LedgerService`` does (signatures are checked once per
    distinct message: every node would reach the same verdict).
  - join: the joiner and 6 full peers run ``LedgerService``; the peers hold all N records;
    the other N-6 agents' heartbeats enter the mesh at their real aggregate rate (N per
    heartbeat interval, signed by their own keys, relayed by a peer), so heartbeats from
    unknown agents trigger pulls as they would in the full network.

Assembly: where a simulated agent gossips, it runs the ``LedgerService`` and ``Ledger`` classes that
``AgentRuntime`` builds, on the bare transport: the rest of the runtime (beacon, tasks, the
defences' guard) is left out, as nothing here asks questions or misbehaves. The overlay set-up
(failure detection) stops one step lower, at ``Ledger`` itself: every node feeds its own replica
what reaches it over the overlay, as ``LedgerService`` would, with one signature check per
distinct heartbeat (see "failure" above).
"""

from symphony.bench.ledger.config import MB, LedgerBenchConfig
from symphony.bench.ledger.runner import run_ledger_bench
from symphony.bench.virtual import EPOCH

__all__ = ["EPOCH", "MB", "LedgerBenchConfig", "run_ledger_bench"]
