"""One error tree for Symphony.

::

    SymphonyError
    ├── PeerError                 a remote peer sent something wrong (not our bug)
    │   ├── MalformedMessage      undecodable, schema-invalid or oversized input
    │   ├── WrongVersion          a protocol version we do not speak
    │   ├── BadSignature          signature does not verify / signer is not the claimed author
    │   ├── ReplayedMessage       nonce already seen inside the skew window
    │   └── StaleMessage          timestamp outside the allowed clock-skew window
    ├── TransportError            the network failed us
    │   ├── PeerUnreachable       no route / connection refused / peer gone
    │   └── RequestTimeout        no reply before the deadline
    ├── LocalError                local misuse or configuration (fix it here)
    │   └── ConfigError
    │       └── ModelSpecError    (llm.base) bad --model spec or missing model package
    ├── ModelError                (llm.base) a model backend failed or timed out
    │   └── ModelTimeout
    ├── PlanError                 (pipeline.planner) a model's decomposition is unusable
    └── TaskFailed                (pipeline.service) no chain produced an answer in time

Every ``PeerError`` carries a short machine-readable ``reason`` used as the key of the
rejection counters, so each drop is counted and logged under a stable name.
"""

from __future__ import annotations


class SymphonyError(Exception):
    """Root of every error raised by Symphony."""


class PeerError(SymphonyError):
    """A remote peer sent input we reject. Never a local bug; count it and move on."""

    reason = "peer_error"


class MalformedMessage(PeerError, ValueError):
    reason = "malformed"


class TooLarge(MalformedMessage):
    reason = "too_large"


class WrongVersion(PeerError):
    reason = "wrong_version"


class BadSignature(PeerError):
    reason = "bad_signature"


class ReplayedMessage(PeerError):
    reason = "replayed"


class StaleMessage(PeerError):
    reason = "stale"


class TransportError(SymphonyError):
    """The network failed to carry a message."""


class PeerUnreachable(TransportError, ConnectionError):
    """The peer cannot be reached (unknown, disconnected, partitioned or dead)."""


class RequestTimeout(TransportError, TimeoutError):
    """No reply arrived before the deadline."""


class LocalError(SymphonyError):
    """Local misuse or bad configuration; the message says how to fix it."""


class ConfigError(LocalError, ValueError):
    """Invalid configuration value."""
