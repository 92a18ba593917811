"""Node configuration, checked when built so errors name the fix."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from symphony.errors import ConfigError
from symphony.protocol.messages import Hardware

DEFAULT_API = "127.0.0.1:8470"


def parse_host_port(text: str) -> tuple[str, int]:
    """Parse ``HOST:PORT`` for the HTTP API (port 0 picks a free one)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--api must look like 127.0.0.1:8470, not {text!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise ConfigError(f"--api host must be an IP address such as 127.0.0.1, not {host!r}") from exc
    return host, int(port)


def _check_multiaddr(addr: str, *, option: str, needs_peer: bool) -> None:
    parts = addr.split("/")
    if not addr.startswith("/") or len(parts) < 5:
        raise ConfigError(f"{option} {addr!r} is not a multiaddr such as /ip4/127.0.0.1/tcp/4001")
    if needs_peer and "/p2p/" not in addr:
        raise ConfigError(
            f"{option} {addr!r} lacks the peer ID: use the full address a node prints, ending in /p2p/12D3KooW..."
        )


@dataclass(frozen=True)
class NodeConfig:
    """Everything ``symphony node`` needs; the CLI and tests build one of these."""

    data_dir: Path
    name: str = "agent"
    listen: list[str] = field(default_factory=lambda: ["/ip4/127.0.0.1/tcp/0"])
    bootstrap: list[str] = field(default_factory=list)
    api: str | None = DEFAULT_API
    tags: list[str] = field(default_factory=list)
    model: str | None = None
    hardware: Hardware = field(default_factory=Hardware)
    heartbeat_interval_s: float = 60.0
    ttl_heartbeats: float = 3.0
    anti_entropy_interval_s: float = 30.0
    target_degree: int = 6

    def __post_init__(self) -> None:
        for addr in self.listen:
            _check_multiaddr(addr, option="--listen", needs_peer=False)
        for addr in self.bootstrap:
            _check_multiaddr(addr, option="--bootstrap", needs_peer=True)
        if self.api is not None:
            parse_host_port(self.api)
        if not 0 < len(self.name) <= 64:
            raise ConfigError(f"--name must be 1 to 64 characters, not {self.name!r}")
        if self.heartbeat_interval_s <= 0:
            raise ConfigError(f"--heartbeat must be > 0 seconds, not {self.heartbeat_interval_s}")
