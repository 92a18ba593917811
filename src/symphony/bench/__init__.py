"""Benchmarks behind ``symphony bench ...``; each writes JSON and a markdown table.

One module per benchmark or part of one; each module's ``__all__`` is its API, a plain function
plus a frozen config (the typer commands that call them live in ``symphony.cli.bench``). This
package re-exports no names, so importing it loads no benchmark: some load py-libp2p, and
``loopback`` also runs as its own worker process (``python -m symphony.bench.loopback``).

Benches that simulate agents build them through ``symphony.node.runtime`` (``AgentRuntime`` /
``open_simulated_agents``), the assembly a node runs; where a bench runs a lighter stack, its
module docstring says what it builds and why it stops there.

- ``systems``: overhead, latency, bytes per task and beacon cost vs N, against the
  ``centralized`` baselines (relay hub, GroupChat); ``accounting`` and ``workload`` support it;
  ``loopback`` is the same table on real py-libp2p processes.
- ``sharding`` / ``shardnet``: ledger upkeep and the gateway-sharded beacon at 100-10,000 agents.
- ``ledger``: gossip propagation, join catch-up, failure detection, upkeep (a subpackage).
- ``robustness``: crashes, churn, partitions, link conditions and Byzantine agents
  (``byzantine``: the simulated attackers), and ``hostile``: a stranger against real processes.
- ``accuracy`` / ``gsm8k``: the paper's accuracy tables on packaged data: ``datasets``,
  ``contenders`` (direct, self-consistency, an ``orchestrator``, Symphony), ``scoring``, ``report``.
- ``learning``: routing that learns from outcome feedback (random, cosine static / learned, LinUCB).
- ``api``: the local HTTP API's overhead (``python -m symphony.bench.api``).
- ``privacy``: selection quality vs the privacy noise on published vectors (``--privacy-sigma``).
- ``dag``: k independent parts + a combining step, planned as a linear chain vs as a DAG (issue #21).
"""

__all__ = [
    "accounting",
    "accuracy",
    "api",
    "byzantine",
    "centralized",
    "contenders",
    "dag",
    "datasets",
    "gsm8k",
    "hostile",
    "learning",
    "ledger",
    "loopback",
    "orchestrator",
    "privacy",
    "report",
    "robustness",
    "scoring",
    "sharding",
    "shardnet",
    "systems",
    "workload",
]
