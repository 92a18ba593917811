"""Hostile input to every network message handler: arbitrary bytes, and well-signed envelopes with
arbitrary bodies. A handler may reply or raise ``PeerError`` (the transport then fails the request
on the sender's side); anything else is a bug. Every rejection is counted; memory stays bounded."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symphony.beacon.service import BEACON_PROTOCOL
from symphony.errors import PeerError
from symphony.ledger.gossip import (
    HEARTBEAT_TOPIC,
    LEDGER_TOPIC,
    SYNC_KIND,
    SYNC_PROTOCOL,
)
from symphony.llm.scripted import arith_model
from symphony.node.runtime import AgentProfile, AgentRuntime
from symphony.pipeline.service import TASK_PROTOCOL
from symphony.protocol.envelope import seal
from symphony.protocol.messages import encode_sparse
from symphony.transport.memory import MemoryNetwork
from tests.conftest import identity

EPOCH = 1_700_000_000.0
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=25,
)
# bodies shaped like the real ones, with hostile values, so validation past the schema is reached too
TASKISH = st.fixed_dictionaries({"task_id": st.text(max_size=200), "role": st.sampled_from(["plan", "execute", "x"]),
                                 "question": st.text(max_size=100), "deadline_ms": st.integers(-5, 2**63)},
                                optional={"previous": JSON, "top_l": st.integers(-5, 10**6), "final": JSON})
REQUIREMENT = (st.text(max_size=300) | st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode())
               | st.lists(st.floats(-1, 1), min_size=1, max_size=224).map(encode_sparse))
BEACONISH = st.fixed_dictionaries({"requirements": st.lists(REQUIREMENT, max_size=14),
                                   "deadline_ms": st.integers(-5, 2**63)},
                                  optional={"priority": st.integers(-5, 50), "task_type": JSON})
SYNCISH = st.fixed_dictionaries({}, optional={"digest_hash": st.text(max_size=80),
                                              "digest": st.dictionaries(st.text(max_size=60), JSON, max_size=5),
                                              "records": st.lists(JSON, max_size=4)})
KINDS = {TASK_PROTOCOL: ("task", TASKISH), BEACON_PROTOCOL: ("beacon", BEACONISH), SYNC_PROTOCOL: (SYNC_KIND, SYNCISH)}


def clock() -> float:
    return EPOCH + trio.current_time()


async def _with_node(body: Callable[[AgentRuntime], Awaitable[None]]) -> None:
    net = MemoryNetwork(rng=random.Random(0))
    async with net.open_node(identity(0)) as transport:
        runtime = AgentRuntime(transport=transport, identity=identity(0), profile=AgentProfile(tags=("math",)),
                               model=arith_model(), clock=clock)
        runtime.gossip.transport.set_handler(SYNC_PROTOCOL, runtime.gossip.anti_entropy.handle)
        await body(runtime)


async def _call(runtime: AgentRuntime, protocol: str, payload: bytes) -> bool:
    """Run the installed (guarded) handler; True if it rejected the input with a PeerError."""
    handler = runtime.transport._handlers[protocol]  # type: ignore[attr-defined]
    try:
        with trio.move_on_after(5):
            reply = await handler(identity(1).agent_id, payload)
            assert isinstance(reply, bytes)
        return False
    except PeerError:
        return True


def _run(body: Callable[[AgentRuntime], Awaitable[None]]) -> None:
    trio.run(_with_node, body, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.mark.parametrize("protocol", sorted(KINDS))
@FUZZ
@given(payload=st.binary(max_size=2048) | JSON.map(lambda v: json.dumps(v).encode()))
def test_raw_bytes_are_rejected_and_counted(protocol: str, payload: bytes) -> None:
    async def body(runtime: AgentRuntime) -> None:
        rejected = await _call(runtime, protocol, payload)
        assert rejected, "garbage cannot pass the envelope checks"
        assert sum(runtime.defences.rejected.values()) == 1

    _run(body)


@pytest.mark.parametrize("protocol", sorted(KINDS))
@FUZZ
@given(data=st.data())
def test_signed_envelopes_with_hostile_bodies_never_crash(protocol: str, data: st.DataObject) -> None:
    kind, shaped = KINDS[protocol]
    fields = data.draw(shaped | st.dictionaries(st.text(max_size=12), JSON, max_size=6))

    async def body(runtime: AgentRuntime) -> None:
        envelope = seal(identity(1), kind, fields, now_ms=int(clock() * 1000)).to_bytes()
        rejected = await _call(runtime, protocol, envelope)
        assert sum(runtime.defences.rejected.values()) == int(rejected), "each rejection counted once"
        assert await _call(runtime, protocol, envelope), "the same envelope again is a replay"

    _run(body)


@pytest.mark.parametrize("topic", [LEDGER_TOPIC, HEARTBEAT_TOPIC])
@FUZZ
@given(payload=st.binary(max_size=1024) | JSON.map(lambda v: json.dumps(v).encode()))
def test_pubsub_garbage_is_dropped_and_counted(topic: str, payload: bytes) -> None:
    async def body(runtime: AgentRuntime) -> None:
        handler = runtime.gossip._on_record_message if topic == LEDGER_TOPIC else runtime.gossip._on_heartbeat_message
        await handler(identity(1).agent_id, payload)  # must not raise
        assert sum(runtime.ledger.rejected.values()) == 1
        assert set(runtime.ledger.records) <= {runtime.agent_id}

    _run(body)


def test_memory_stays_bounded_under_a_stream_of_valid_unique_envelopes() -> None:
    """Replay-guard and rate-limit state are capped however many distinct messages arrive."""
    async def body(runtime: AgentRuntime) -> None:
        guard = runtime.responder.guard
        guard.capacity = 200
        limiter = runtime.defences.limiter
        for n in range(600):
            sender = identity(2 + n % 50)
            beacon: dict[str, Any] = {"requirements": [""], "deadline_ms": 0}
            envelope = seal(sender, "beacon", beacon, now_ms=int(clock() * 1000)).to_bytes()
            handler = runtime.transport._handlers[BEACON_PROTOCOL]  # type: ignore[attr-defined]
            try:
                await handler(sender.agent_id, envelope)
            except PeerError:
                pass
            await trio.sleep(0.01)
        assert len(guard) <= 200 and len(limiter) <= limiter.limit.max_peers

    _run(body)
