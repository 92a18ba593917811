"""Serving the API: a node's HTTP front (``HttpApi``, hypercorn on trio) and ``node_with_api``, the one
assembly of a node and its API that ``symphony node``, the tests and the benches run."""

from __future__ import annotations

import socket

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from symphony.api.app import create_app
from symphony.api.guard import node_api_token
from symphony.api.node_api import NodeApi
from symphony.errors import ConfigError
from symphony.node.config import NodeConfig, parse_host_port
from symphony.node.daemon import Node


def node_with_api(config: NodeConfig) -> Node:
    """A node that serves its HTTP API at ``config.api`` (none when it is None).

    Raises ``ConfigError`` for what stops a start: a locked data dir, a taken port, an unsafe token file."""
    return Node(config, front=None if config.api is None else HttpApi.bind)


def bind_api_socket(address: str) -> socket.socket:
    """A socket bound at ``address`` (``HOST:PORT``); ``ConfigError`` with the fix when it cannot be."""
    host, port = parse_host_port(address)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot serve the API on {host}:{port} ({exc.strerror}); pick a free port with --api {host}:0 "
            "or turn the API off with --api none"
        ) from exc
    return sock


class HttpApi:
    """A node's HTTP API (``node.daemon.Front``): its socket is bound when the node is made, so "port in
    use" is a clear, early error; hypercorn serves it in the node's nursery once the node runs."""

    def __init__(self, sock: socket.socket, *, token: str | None) -> None:
        self._socket: socket.socket | None = sock
        self.token = token

    @classmethod
    def bind(cls, config: NodeConfig) -> HttpApi:
        """The API of a node configured by ``config``: bound at ``config.api``, with the token its
        ``--api-auth`` requires (made on first use). ``ConfigError`` if either cannot be had."""
        if config.api is None:
            raise ConfigError("this node is configured without an API (--api none)")
        sock = bind_api_socket(config.api)
        try:
            return cls(sock, token=node_api_token(config.data_dir, config.api, config.api_auth))
        except ConfigError:
            sock.close()
            raise

    async def serve(self, node: NodeApi, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve ``node``'s API until cancelled; ``task_status`` gets the URL once it listens."""
        if self._socket is None:
            raise ConfigError("this API was already served (its socket went to hypercorn)")
        app = create_app(node, token=self.token)
        config = HypercornConfig()
        config.bind = [f"fd://{self._socket.detach()}"]  # hypercorn now owns (and will close) the fd
        self._socket = None
        config.accesslog = None
        config.errorlog = None
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(serve, app, config)
            task_status.started(binds[0])

    def close(self) -> None:
        """Close the socket if it was never served."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
