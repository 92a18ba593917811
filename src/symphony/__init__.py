"""Symphony: a decentralized multi-agent LLM network.

General layout, from the bottom up (each a subpackage; a lower layer never imports a higher one):

- ``protocol``    wire messages, identities, signed envelopes, validation, limits (pure)
- ``capability``  capability vectors, encoders, the match score phi (pure)
- ``transport``   one async interface, two engines: ``libp2p`` and ``memory``
- ``llm``         model backends behind one async interface
- ``sandbox``     a jail for generated code
- ``ledger``      the replicated, signed capability ledger (pure store + gossip shell), reputation
- ``beacon``      BEACONSELECT: the pure ranking core, the responder, selector and shard gateways
- ``pipeline``    the Symphony algorithm: plan, select, execute chains, vote
- ``node``        one agent's assembly (``AgentRuntime``) and the daemon that runs it on libp2p
- ``api``         the node's local HTTP API
- ``cli``         the ``symphony`` command
- ``bench``       benchmarks

Beside them: ``errors`` (the one error tree) and ``testing`` (real node processes for tests,
the demo and the benches, as ``trio.testing``).

Surface: each package's ``__init__`` says what it is and re-exports its API in ``__all__``;
other packages import through it, or through the modules it names as public
(``tests/test_surface.py`` holds the rule and the list).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
