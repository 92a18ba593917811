"""API overhead benchmark: ``python -m symphony.bench.api [--n N] [--stalled K]``.

What it answers: how much the OpenAI-compatible layer adds to a question over the plain REST
call, and whether event-stream clients that never read slow the node down (they must not:
``node.bus`` cuts them off instead).

Theory of operation
-------------------
One ``Node`` runs in this process (libp2p transport, hypercorn API on 127.0.0.1, the
``scripted:arith`` test double, so model time is ~0 and the numbers are protocol + HTTP
cost, not a model's). An ``httpx`` client in the same trio loop asks ``n`` rounds; each round
sends the same question three ways, interleaved in rotating order so drift on a shared
machine hits all three alike: ``POST /v1/tasks`` with ``wait``, ``POST /v1/chat/completions``, and the same with
``stream`` (time to the ``[DONE]`` line). Then ``stalled`` raw TCP clients open
``GET /v1/events`` and never read, and ``n`` more REST rounds run. Latency is client-side
wall time; the table gives medians, p95 and the ratio of medians to the REST baseline of the
same phase.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import trio

from symphony.api.server import node_with_api
from symphony.node import NodeConfig
from symphony.node.daemon import Node

QUESTION = "What is (17 + 25) * 2?"


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def _timed(call: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


def _stall(api: str) -> socket.socket:
    """A client that subscribes to the event stream and never reads a byte."""
    host, port = api.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET /v1/events HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())  # a foreign Host is refused
    return sock


async def run(n: int, stalled: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="symphony-bench-api-") as data_dir:
        config = NodeConfig(data_dir=Path(data_dir), api="127.0.0.1:0", model="scripted:arith")
        return await _run(node_with_api(config), n, stalled)


async def _run(node: Node, n: int, stalled: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"rest": [], "openai": [], "openai-stream": [], "rest, stalled": []}
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        assert node.api_url is not None
        body = {"model": "symphony", "messages": [{"role": "user", "content": QUESTION}], "symphony": {"cots": 1}}
        async with httpx.AsyncClient(base_url=node.api_url, timeout=60) as http:
            async def rest() -> None:
                (await http.post("/v1/tasks", json={"question": QUESTION, "cots": 1, "wait": True})).raise_for_status()

            async def chat() -> None:
                (await http.post("/v1/chat/completions", json=body)).raise_for_status()

            async def stream() -> None:
                async with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
                    async for line in response.aiter_lines():
                        if line == "data: [DONE]":
                            return

            for _ in range(3):  # warm-up
                await rest()
                await chat()
            variants = [("rest", rest), ("openai", chat), ("openai-stream", stream)]
            for i in range(n):
                for name, call in variants[i % 3:] + variants[:i % 3]:  # rotate: no variant always goes first
                    results[name].append(await _timed(call))
            sockets = [_stall(node.api_url) for _ in range(stalled)]
            for _ in range(n):
                results["rest, stalled"].append(await _timed(rest))
            print(f"stalled subscribers: {stalled} opened, {node.bus.subscribers} still attached, "
                  f"{node.bus.disconnected} cut off by the bus")
            for sock in sockets:
                sock.close()
        node.stop()
    return results


def table(results: dict[str, list[float]]) -> str:
    base = {"rest": statistics.median(results["rest"])}
    lines = ["| variant | n | median (ms) | p95 (ms) | median / REST |", "|---|---|---|---|---|"]
    for name, values in results.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {len(values)} | {median:.1f} | {_p95(values):.1f} | {median / base['rest']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="rounds per variant")
    parser.add_argument("--stalled", type=int, default=8, help="event-stream clients that never read")
    args = parser.parse_args()
    print(table(trio.run(run, args.n, args.stalled)))


if __name__ == "__main__":
    main()
