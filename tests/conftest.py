"""Shared fixtures. Identities are cached: key generation is cheap but signing
keys must stay fixed for hypothesis to shrink reproducibly."""

from __future__ import annotations

import functools

from symphony.protocol.identity import Identity


@functools.cache
def identity(n: int) -> Identity:
    """The n-th fixed test identity (deterministic seed)."""
    return Identity(bytes([n + 1]) * 32)
