"""Gateway beacon on the memory engine: end-to-end verified replies, forgeries dropped, failover."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import trio

from symphony.beacon.gateway import (
    GATEWAY_PROTOCOL,
    RELAY_PROTOCOL,
    FanoutConfig,
    Gateway,
    GatewayFanout,
    RelayResponder,
    beacon_body,
)
from symphony.beacon.service import BEACON_PROTOCOL, BeaconResponder
from symphony.errors import BadSignature, ReplayedMessage, StaleMessage
from symphony.ledger.shard import NotGateway, SummaryBook, gateways, issue_summary, keeps_shard, shard_of
from symphony.ledger.store import Ledger, LedgerConfig
from symphony.protocol.envelope import Envelope, ReplayGuard, open_envelope, seal
from symphony.protocol.messages import BeaconResponse, LedgerRecord, encode_vector
from symphony.protocol.sharding import GatewayBundle, GatewayForward
from symphony.transport.memory import LinkModel, MemoryNetwork, MemoryTransport
from tests.conftest import identity

EPOCH = 1_700_000_000.0
SHARDS = 3
COUNT = 18
TARGET = [0.0, 0.0, 1.0, 0.0]


def clock() -> float:
    return EPOCH + trio.current_time()


def vector(n: int) -> list[float]:
    rng = random.Random(n)
    return [rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0), rng.uniform(0.0, 0.3), rng.uniform(0.0, 0.2)]


@dataclass
class Net:
    net: MemoryNetwork
    transports: list[MemoryTransport]
    gateways: dict[int, Gateway]  # every member's Gateway handler, by node number
    summaries: dict[int, bytes]
    best: int  # the node whose vector matches TARGET best

    def fanout(self, n: int, **config: int) -> GatewayFanout:
        book = SummaryBook(shards=SHARDS)
        for raw in self.summaries.values():
            book.offer(raw, now=clock())
        return GatewayFanout(
            transport=self.transports[n], identity=identity(n), book=book, clock=clock, config=FanoutConfig(**config)
        )

    def shard(self, n: int) -> int:
        return shard_of(identity(n).agent_id, SHARDS)


def beacon(n: int, requirement: list[float] = TARGET) -> Envelope:
    now_ms = int(clock() * 1000)
    body = beacon_body([requirement], deadline_ms=now_ms + 2000)
    return seal(identity(n), "beacon", body.model_dump(mode="json"), now_ms=now_ms)


@contextlib.asynccontextmanager
async def network(best: int = 7) -> AsyncIterator[Net]:
    """COUNT nodes in SHARDS shards; node ``best`` has the TARGET vector itself."""
    net = MemoryNetwork(link=LinkModel(latency_s=0.005), rng=random.Random(0))
    async with contextlib.AsyncExitStack() as stack:
        transports = [await stack.enter_async_context(net.open_node(identity(n))) for n in range(COUNT)]
        vectors = [TARGET if n == best else vector(n) for n in range(COUNT)]
        records = [
            LedgerRecord(
                agent_id=identity(n).agent_id,
                lamport=1,
                capability=encode_vector(vectors[n]),
                addrs=transports[n].listen_addrs(),
                issued_at=int(EPOCH * 1000),
            ).signed_by(identity(n))
            for n in range(COUNT)
        ]
        ledgers = [Ledger(LedgerConfig(heartbeat_interval_s=3600), keeps=keeps_shard(s, SHARDS)) for s in range(SHARDS)]
        for record in records:
            for ledger in ledgers:
                ledger.merge(record, now=clock())
        handlers = {}
        for n in range(COUNT):
            guard = ReplayGuard()
            responder = BeaconResponder(
                identity=identity(n),
                private_vector=lambda v=vectors[n]: v,
                qos=lambda: (0, 0.0),
                clock=clock,
                guard=guard,
            )
            relay = RelayResponder(responder=responder, identity=identity(n), clock=clock, guard=guard)
            handlers[n] = Gateway(
                transport=transports[n],
                identity=identity(n),
                shards=SHARDS,
                relay=relay,
                ledger=ledgers[shard_of(identity(n).agent_id, SHARDS)],
                clock=clock,
            )
            transports[n].set_handler(BEACON_PROTOCOL, responder.handle)
            transports[n].set_handler(RELAY_PROTOCOL, relay.handle)
            transports[n].set_handler(GATEWAY_PROTOCOL, handlers[n].handle)
        by_id = {identity(n).agent_id: n for n in range(COUNT)}
        table = gateways(SHARDS, by_id)
        summaries = {
            s: issue_summary(identity(by_id[g]), records, shard=s, shards=SHARDS, now_ms=int(clock() * 1000)).to_bytes()
            for s, g in table.items()
        }
        yield Net(net, transports, handlers, summaries, best)


def initiator(net: Net) -> int:
    """A node outside the best node's shard (so the best is found through a gateway)."""
    return next(n for n in range(COUNT) if net.shard(n) != net.shard(net.best))


async def test_fanout_finds_the_best_agent_in_another_shard(autojump_clock) -> None:
    """The initiator reaches the best agent through its gateway; the reply verifies end to end."""
    async with network() as net:
        me = initiator(net)
        fanout = net.fanout(me)
        assert fanout.active(clock())
        replies = await fanout.collect([TARGET], beacon(me), top_l=4, deadline_s=2.0)
    best = max(replies, key=lambda v: v.scores[0])
    assert best.agent_id == identity(net.best).agent_id and best.scores[0] == pytest.approx(1.0)
    assert best.published([TARGET])[0] == pytest.approx(1.0, abs=1e-3)
    assert {v.shard for v in replies} <= {s for s in range(SHARDS) if s != net.shard(me)}
    assert not fanout.stats.rejected


async def test_no_summaries_means_inactive(autojump_clock) -> None:
    """Without summaries of other shards the fanout is off (an unsharded network)."""
    async with network() as net:
        fanout = GatewayFanout(
            transport=net.transports[0], identity=identity(0), book=SummaryBook(shards=SHARDS), clock=clock
        )
        assert not fanout.active(clock())
        assert await fanout.collect([TARGET], beacon(0), top_l=4, deadline_s=1.0) == []


async def test_dead_gateway_fails_over_to_its_standby(autojump_clock) -> None:
    """When the best shard's gateway is dead, its standby serves the shard and the best is still found."""
    async with network() as net:
        me = initiator(net)
        fanout = net.fanout(me)
        dead = fanout.book.summaries[net.shard(net.best)].gateway
        if dead == identity(net.best).agent_id:  # keep the best agent itself alive
            pytest.skip("the best agent is its shard's gateway")
        net.net.kill(dead)
        replies = await fanout.collect([TARGET], beacon(me), top_l=4, deadline_s=2.0)
    assert fanout.stats.failovers >= 1
    assert identity(net.best).agent_id in {v.agent_id for v in replies}


def best_shards_gateway(net: Net, fanout: GatewayFanout) -> tuple[int, Gateway]:
    """The index of the gateway serving the best agent's shard, and its honest ``Gateway``."""
    gateway_id = fanout.book.summaries[net.shard(net.best)].gateway
    index = next(n for n in range(COUNT) if identity(n).agent_id == gateway_id)
    return index, net.gateways[index]


async def test_forged_and_inflated_replies_are_dropped(autojump_clock) -> None:
    """A gateway that inflates a member's score (re-signing as itself) gets that entry dropped and counted."""
    async with network() as net:
        me = initiator(net)
        fanout = net.fanout(me)
        shard = net.shard(net.best)
        liar, honest = best_shards_gateway(net, fanout)

        async def inflate(peer: str, payload: bytes) -> bytes:
            env = open_envelope(await honest.handle(peer, payload), guard=ReplayGuard(), now_ms=int(clock() * 1000))
            bundle = GatewayBundle.model_validate(env.body)
            forged = []
            for entry in bundle.entries:
                reply = BeaconResponse.model_validate(entry.reply.body).model_dump(mode="json")
                reply = reply | ({"scores": [1.0]} if "scores" in reply else {"score": 1.0})
                forged.append(
                    entry.model_copy(
                        update={"reply": seal(identity(liar), "beacon.reply", reply, now_ms=int(clock() * 1000))}
                    )
                )
            out = bundle.model_copy(update={"entries": forged})
            return seal(
                identity(liar), "gateway.bundle", out.model_dump(mode="json"), now_ms=int(clock() * 1000)
            ).to_bytes()

        net.transports[liar].set_handler(GATEWAY_PROTOCOL, inflate)
        replies = await fanout.collect([TARGET], beacon(me), top_l=4, deadline_s=2.0)
    assert all(v.shard != shard or v.agent_id == identity(liar).agent_id for v in replies)
    assert fanout.stats.rejected["bad_signature"] >= 1


def forward_from(net: Net, me: int, shard: int, env: Envelope, **changes: object) -> bytes:
    body = (
        GatewayForward(
            shard=shard,
            shards=SHARDS,
            requirements=[encode_vector(TARGET)],
            top_l=4,
            deadline_ms=env.body["deadline_ms"],
            beacon=env,
        ).model_dump(mode="json")
        | changes
    )
    return seal(identity(me), "gateway.forward", body, now_ms=int(clock() * 1000)).to_bytes()


async def test_gateway_refuses_another_shards_forward(autojump_clock) -> None:
    """A forward for shard s reaching a member of another shard is refused (NotGateway)."""
    async with network() as net:
        me = initiator(net)
        other = next(n for n in range(COUNT) if net.shard(n) != net.shard(me))
        wrong = next(s for s in range(SHARDS) if s != net.shard(other))
        with pytest.raises(NotGateway):
            await net.gateways[other].handle(identity(me).agent_id, forward_from(net, me, wrong, beacon(me)))


async def test_gateway_refuses_a_beacon_signed_by_someone_else(autojump_clock) -> None:
    """The relayed beacon must be the requester's own: relaying a third party's beacon is refused."""
    async with network() as net:
        me = initiator(net)
        other = next(n for n in range(COUNT) if net.shard(n) != net.shard(me))
        payload = forward_from(net, me, net.shard(other), beacon(other))
        with pytest.raises(BadSignature):
            await net.gateways[other].handle(identity(me).agent_id, payload)


async def test_gateway_refuses_a_forward_past_its_deadline(autojump_clock) -> None:
    """A forward that arrives after its deadline is stale, not relayed."""
    async with network() as net:
        me = initiator(net)
        other = next(n for n in range(COUNT) if net.shard(n) != net.shard(me))
        payload = forward_from(net, me, net.shard(other), beacon(me), deadline_ms=int(clock() * 1000) - 1)
        with pytest.raises(StaleMessage):
            await net.gateways[other].handle(identity(me).agent_id, payload)


async def test_member_answers_a_relayed_beacon_once(autojump_clock) -> None:
    """A beacon relayed twice to the same member is answered once (replay guard)."""
    async with network() as net:
        relay = net.gateways[1].relay
        raw = beacon(0).to_bytes()
        reply = open_envelope(relay.answer(raw), guard=ReplayGuard(), now_ms=int(clock() * 1000), kind="beacon.reply")
        assert reply.sender == identity(1).agent_id
        with pytest.raises(ReplayedMessage):
            relay.answer(raw)


async def test_fanout_scores_every_requirement_of_a_chain(autojump_clock) -> None:
    """One beacon for a chain of two requirements: every verified reply carries two scores, and the
    best agent for TARGET is found through its gateway."""
    async with network() as net:
        me = initiator(net)
        fanout = net.fanout(me)
        now_ms = int(clock() * 1000)
        other = [1.0, 0.0, 0.0, 0.0]
        env = seal(
            identity(me),
            "beacon",
            beacon_body([other, TARGET], deadline_ms=now_ms + 2000).model_dump(mode="json"),
            now_ms=now_ms,
        )
        replies = await fanout.collect([other, TARGET], env, top_l=4, deadline_s=2.0)
    assert replies and all(len(v.scores) == 2 for v in replies)
    assert max(replies, key=lambda v: v.scores[1]).agent_id == identity(net.best).agent_id


async def test_gateway_relays_only_members_above_the_floor(autojump_clock) -> None:
    """A later-wave forward carries the score to beat: the gateway relays only members that could beat it."""
    async with network() as net:
        me = initiator(net)
        gateway = next(n for n in range(COUNT) if net.shard(n) == net.shard(net.best))
        env = beacon(me)
        base = GatewayForward(
            shard=net.shard(gateway),
            shards=SHARDS,
            requirements=[encode_vector(TARGET)],
            top_l=4,
            deadline_ms=env.body["deadline_ms"],
            beacon=env,
        )
        everyone = net.gateways[gateway].members(base, now=clock())
        floored = net.gateways[gateway].members(base.model_copy(update={"floors": [0.99]}), now=clock())
    assert len(everyone) > 1 and [r.agent_id for r in floored] == [identity(net.best).agent_id]


async def test_bundle_for_another_beacon_is_rejected(autojump_clock) -> None:
    """A gateway replaying an old bundle (another nonce) gets nothing accepted from that shard."""
    async with network() as net:
        me = initiator(net)
        fanout = net.fanout(me)
        shard = net.shard(net.best)
        liar, honest = best_shards_gateway(net, fanout)

        async def stale(peer: str, payload: bytes) -> bytes:
            env = open_envelope(await honest.handle(peer, payload), guard=ReplayGuard(), now_ms=int(clock() * 1000))
            old = GatewayBundle.model_validate(env.body).model_copy(update={"nonce": "0" * 24})
            return seal(
                identity(liar), "gateway.bundle", old.model_dump(mode="json"), now_ms=int(clock() * 1000)
            ).to_bytes()

        for standby in fanout.book.summaries[shard].standby:  # no standby to rescue the shard
            net.net.kill(standby.agent_id)
        net.transports[liar].set_handler(GATEWAY_PROTOCOL, stale)
        replies = await fanout.collect([TARGET], beacon(me), top_l=4, deadline_s=2.0)
    assert all(v.shard != shard for v in replies) and fanout.stats.rejected["bad_signature"] == 1
