"""Benchmarks in virtual time: a trio run on a ``MockClock`` that jumps whenever every task waits.

The in-process benchmarks (robustness, ledger, sharding, shardnet, learning, teams, knobs, dag)
simulate minutes of heartbeats and gossip in seconds this way. ``virtual_now`` is their wall clock:
virtual time 0 is ``EPOCH``, so signed records carry plausible timestamps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import trio
import trio.testing

T = TypeVar("T")

#: virtual time 0 as a wall-clock instant, for signed timestamps
EPOCH = 1_700_000_000.0


def run_virtual(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in its own trio run on a virtual clock that jumps whenever every task waits."""
    return trio.run(partial(fn, *args, **kwargs), clock=trio.testing.MockClock(autojump_threshold=0))


def virtual_now() -> float:
    """The wall clock of a virtual-time run (call inside ``run_virtual``): ``EPOCH`` plus trio's clock."""
    return EPOCH + trio.current_time()


__all__ = ["EPOCH", "run_virtual", "virtual_now"]
