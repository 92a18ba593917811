"""Symphony: a decentralized multi-agent LLM network.

General layout (each a subpackage, lower layers never import higher ones):

- ``protocol``   wire messages, identities, signatures, validation (pure)
- ``transport``  one async interface, two engines: ``libp2p`` and ``memory``
- ``ledger``     the replicated, signed capability ledger (pure core + gossip shell)
- ``node``       the daemon wiring transport + ledger; data dir, event log
- ``api``        the node's local HTTP API
- ``cli``        the ``symphony`` command
- ``bench``      benchmarks
"""

__version__ = "0.1.0"
