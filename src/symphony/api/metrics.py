"""``GET /metrics``: the node's registry (``node.metrics``) in the Prometheus text format, and the
API's own series in it: HTTP error responses by status (``symphony_api_errors``) beside the
guard's refusals (``api.guard``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what generate_latest writes


def render(registry: CollectorRegistry) -> bytes:
    """Every series of ``registry`` in the Prometheus text format (``CONTENT_TYPE``)."""
    return generate_latest(registry)


def count_http_errors(app: ASGIApp, registry: CollectorRegistry) -> ASGIApp:
    """Wrap an ASGI app so every response with status >= 400 is counted by status in ``registry``."""
    errors = Counter("symphony_api_errors", "HTTP requests the API answered with an error, by status", ["status"],
                     registry=registry)

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                errors.labels(status=str(message["status"])).inc()
            await send(message)

        await app(scope, receive, watch)

    return counted
