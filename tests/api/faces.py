"""The two-node set-up the Ollama and Anthropic face tests share: ``arith`` (scripted test double, API behind a
token) and ``empty`` (no model: nobody can plan). Import ``swarm`` into a test module to use the fixture there
(module scope: one pair of nodes per module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from symphony.testing import NodeProcess, Swarm, open_swarm


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    with open_swarm(tmp_path_factory.mktemp("faces")) as swarm:
        swarm.spawn("arith", args=("--model", "scripted:arith", "--api-auth", "token"))
        swarm.spawn("empty")
        for node in swarm.nodes:
            node.wait_ready()
        yield swarm


def node(swarm: Swarm, name: str) -> NodeProcess:
    return next(n for n in swarm.nodes if n.name == name)


def token(target: NodeProcess) -> str:
    return (target.data_dir / "api-token").read_text().strip()
