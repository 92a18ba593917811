"""The A2A agent card, read by the official ``a2a-sdk`` client (``A2ACardResolver``) from the API of a
fake node (``NodeApi`` only, through ``httpx.ASGITransport``), and checked field by field against the
SDK's own ``AgentCard`` schema (strict: a misspelt field fails)."""

from __future__ import annotations

import httpx
from a2a.client.card_resolver import A2ACardResolver
from a2a.types.a2a_pb2 import AgentCard
from google.protobuf.json_format import ParseDict

from symphony.api.a2a import CARD_PATH
from symphony.api.app import create_app
from symphony.node.snapshots import LedgerEntry
from symphony.protocol.messages import LedgerRecord
from tests.api.test_fake_node import BASE, FakeNode
from tests.conftest import identity

TOKEN = "a-token-of-more-than-sixteen-chars"


def entry(n: int, tags: list[str], *, available: bool = True) -> LedgerEntry:
    record = LedgerRecord(agent_id=identity(n).agent_id, lamport=1, issued_at=0, name=f"n{n}", tags=tags)
    return LedgerEntry(record=record, available=available)


class LedgerNode(FakeNode):
    """A fake node that declares skills, in a ledger with one other available agent and one gone."""

    agent_id = identity(1).agent_id

    def ledger_entries(self) -> list[LedgerEntry]:
        return [entry(1, ["math", "planner", "executor", "Unit Conversion"]), entry(2, ["logic", "executor"]),
                entry(3, ["poetry"], available=False)]

    def ledger_entry(self, agent_id: str) -> LedgerEntry | None:
        return next((e for e in self.ledger_entries() if e.record.agent_id == agent_id), None)


def client(token: str | None) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(LedgerNode(), token=token)),
                             base_url=BASE)


async def test_the_card_follows_the_sdk_schema_and_lists_the_declared_skills() -> None:
    async with client(None) as http:
        raw = (await http.get(CARD_PATH)).json()
        card = await A2ACardResolver(http, BASE).get_agent_card()
    ParseDict(raw, AgentCard())  # strict: every field name is one of the SDK's
    assert card.name == "Symphony node fake" and card.version
    assert [s.id for s in card.skills] == ["ask", "skill-math", "skill-unit-conversion"]
    assert list(card.skills[0].tags) == ["Unit Conversion", "logic", "math"], "available agents' skills, no roles"
    assert [i.url for i in card.supported_interfaces] == [f"{BASE}/v1/tasks", f"{BASE}/v1/chat/completions"]
    assert not {i.protocol_binding for i in card.supported_interfaces} & {"JSONRPC", "HTTP+JSON", "GRPC"}
    assert not card.capabilities.streaming and "text/plain" in card.default_input_modes
    assert not card.security_schemes and not card.security_requirements


async def test_with_a_token_the_card_is_public_and_declares_the_bearer_scheme() -> None:
    async with client(TOKEN) as http:
        card = await A2ACardResolver(http, BASE).get_agent_card()
        refused = await http.get("/v1/node")
    assert refused.status_code == 401, "the rest of the API still needs the token"
    assert card.security_schemes["bearer"].http_auth_security_scheme.scheme == "Bearer"
    assert list(card.security_requirements[0].schemes) == ["bearer"]


async def test_the_card_is_behind_the_host_check() -> None:
    async with client(None) as http:
        response = await http.get(CARD_PATH, headers={"Host": "evil.example"})
    assert response.status_code == 421
