"""The event bus: fan-out in order, a slow subscriber is cut off (never blocks), limits hold."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from symphony.node.bus import EventBus


def drain(stream) -> list[int]:
    """The seqs of the events waiting in ``stream`` (until it is empty or ended)."""
    seqs = []
    while True:
        try:
            seqs.append(stream.receive_nowait()["seq"])
        except (anyio.EndOfStream, anyio.WouldBlock):
            return seqs


async def test_every_subscriber_gets_every_event_in_order() -> None:
    bus = EventBus(max_queue=8)
    async with bus.subscribe() as a, bus.subscribe() as b:
        for n in range(5):
            bus.publish("tick", {"n": n})
        got_a = [a.receive_nowait() for _ in range(5)]
        got_b = [b.receive_nowait() for _ in range(5)]
    assert [e["data"]["n"] for e in got_a] == [0, 1, 2, 3, 4] and got_a == got_b
    assert [e["seq"] for e in got_a] == [1, 2, 3, 4, 5] and got_a[0]["type"] == "tick"
    assert bus.subscribers == 0, "leaving the context unsubscribes"


async def test_a_slow_subscriber_is_cut_off_while_others_keep_up() -> None:
    bus = EventBus(max_queue=4)
    async with bus.subscribe() as slow, bus.subscribe() as fast:
        for n in range(10):
            bus.publish("tick", {"n": n})  # never waits, whatever the subscribers do
            assert fast.receive_nowait()["seq"] == n + 1
        assert bus.disconnected == 1 and bus.subscribers == 1
        assert drain(slow) == [1, 2, 3, 4], "the buffered events, then the end of the stream"
        with pytest.raises(anyio.EndOfStream):
            await slow.receive()


@given(published=st.integers(0, 40), queue=st.integers(1, 16))
async def test_a_subscriber_that_never_reads_costs_at_most_its_queue(published: int, queue: int) -> None:
    bus = EventBus(max_queue=queue)
    async with bus.subscribe() as idle:
        for n in range(published):
            bus.publish("tick", {"n": n})
        assert bus.disconnected == (1 if published > queue else 0)
        assert drain(idle) == list(range(1, min(published, queue) + 1))


async def test_subscriber_limit() -> None:
    bus = EventBus(max_subscribers=1)
    async with bus.subscribe():
        with pytest.raises(OverflowError):
            async with bus.subscribe():
                pass
    async with bus.subscribe():  # the slot is free again
        assert bus.subscribers == 1


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        EventBus(max_queue=0)
