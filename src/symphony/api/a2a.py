"""The node's A2A agent card at ``GET /.well-known/agent-card.json``, so A2A clients can discover it.

The card follows A2A 1.0 as the official ``a2a-sdk`` (1.3) models it (``a2a.types.AgentCard``, read
with ``a2a.client.card_resolver.parse_agent_card``): name, description, version, supportedInterfaces,
capabilities, securitySchemes/securityRequirements, default input/output modes and skills.

- **Skills**: one ``ask`` skill (the whole network answers; its tags are every available agent's
  declared skills) and one skill per skill this node declares (``--skills``); the role tags
  ``planner``/``executor`` are how the pipeline finds agents, not skills, and are left out.
- **Interfaces**: the node does not (yet) speak A2A's own JSONRPC / HTTP+JSON / GRPC bindings, so
  the card claims none of them: it names the two ways the node does take a question, under their own
  binding names (``SYMPHONY+JSON`` at ``/v1/tasks``, ``OPENAI+JSON`` at ``/v1/chat/completions``). An
  A2A client therefore finds no binding it speaks and says so, instead of posting to a wrong endpoint.
  ``capabilities.streaming`` is false for the same reason (A2A streaming is ``SendStreamingMessage``).
- **Security**: when the API requires its bearer token, the card declares the ``bearer`` scheme and
  requires it. The card itself is public (``api.guard.PUBLIC_PATHS``): discovery comes before
  credentials (that is how a client learns it needs the token), and it shows nothing the node does
  not already gossip to the whole network in its signed ledger record (name, skills). The Host and
  Origin checks still apply.
- **URL**: the interfaces use the address the request came in on (which the guard checked), so a
  node bound to ``0.0.0.0`` hands out the address its client reached, not ``0.0.0.0``.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from symphony import __version__
from symphony.api.node_api import NodeApi
from symphony.pipeline.service import EXECUTOR_TAG, PLANNER_TAG

CARD_PATH = "/.well-known/agent-card.json"
A2A_PROTOCOL_VERSION = "1.0"
ROLE_TAGS = frozenset({PLANNER_TAG, EXECUTOR_TAG})
ASK_EXAMPLES = ["What is (17 + 25) * 2?", "Is 221 a prime number?"]


def _skill_id(tag: str) -> str:
    """A stable, URL-safe ID for a declared skill (tags are free text)."""
    return "skill-" + (re.sub(r"[^0-9a-z]+", "-", tag.lower()).strip("-") or "unnamed")


def _declared(tags: list[str]) -> list[str]:
    """``tags`` without the role tags and duplicates, in order."""
    return list(dict.fromkeys(tag for tag in tags if tag not in ROLE_TAGS))


def skills(node: NodeApi) -> list[dict[str, Any]]:
    """The card's skills: ``ask`` (tagged with the network's available skills), then this node's own."""
    network = sorted({tag for entry in node.ledger_entries() if entry.available
                      for tag in _declared(entry.record.tags)})
    own = node.ledger_entry(node.agent_id)
    ask = {"id": "ask", "name": "Ask the network",
           "description": "A question answered by the Symphony network: planners split it into sub-tasks, "
                          "executors chosen by capability answer them, and the chains' answers are voted on.",
           "tags": network or ["question-answering"], "examples": ASK_EXAMPLES}
    return [ask, *({"id": _skill_id(tag), "name": tag, "tags": [tag],
                    "description": f"Questions about {tag}: this node declares it, and the network asks it first "
                                   f"for sub-tasks that match."}
                   for tag in _declared(own.record.tags if own else []))]


def agent_card(node: NodeApi, base_url: str, *, token_required: bool) -> dict[str, Any]:
    """The A2A agent card of ``node``, whose API is reached at ``base_url`` (no trailing slash)."""
    name = node.status().name
    card: dict[str, Any] = {
        "name": f"Symphony node {name}",
        "description": "A node of a decentralized network of small language-model agents: ask it a question and "
                       "the network plans, answers in several chains of thought and votes.",
        "version": __version__,
        "supportedInterfaces": [
            {"url": f"{base_url}/v1/tasks", "protocolBinding": "SYMPHONY+JSON",
             "protocolVersion": A2A_PROTOCOL_VERSION},
            {"url": f"{base_url}/v1/chat/completions", "protocolBinding": "OPENAI+JSON",
             "protocolVersion": A2A_PROTOCOL_VERSION},
        ],
        "capabilities": {"streaming": False, "pushNotifications": False, "extendedAgentCard": False},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "skills": skills(node),
    }
    if token_required:
        card["securitySchemes"] = {"bearer": {"httpAuthSecurityScheme": {
            "scheme": "Bearer",
            "description": "The node's API token: the file api-token in its data dir (mode 0600)."}}}
        card["securityRequirements"] = [{"schemes": {"bearer": {"list": []}}}]
    return card


def a2a_routes(node: NodeApi, *, token_required: bool) -> list[Route]:
    """``GET /.well-known/agent-card.json``."""
    async def get_card(request: Request) -> JSONResponse:
        base_url = str(request.base_url).rstrip("/")
        return JSONResponse(agent_card(node, base_url, token_required=token_required))

    return [Route(CARD_PATH, get_card)]
