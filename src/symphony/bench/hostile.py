"""``symphony bench robustness --scenario hostile``: a stranger attacks real node processes (issue 14).

Three ``symphony node`` processes with the ``scripted:arith`` test-double model (so every honest
question has a known answer) form a network on 127.0.0.1. A stranger, with fresh keys and no
ledger record, then runs each attack of ``ATTACKS`` in turn; while the attack's pressure is on,
an honest client asks a question with three chains at the first node. A row per attack says what
the stranger did, what the nodes counted against it, whether the honest question kept all its
chains and its right answer, and whether every node still serves. At the end every node's view
of every record must read as before the attacks (owner-decided fields; nodes do publish whom
they suspect in their reputation field).

Each attack is an async context manager: on entry it puts its pressure on (or has done its
one-shot damage), the honest question runs inside the block, and on exit the pressure stops.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from symphony.beacon import BEACON_PROTOCOL
from symphony.errors import TransportError
from symphony.ledger import LEDGER_TOPIC
from symphony.pipeline.service import TASK_PROTOCOL
from symphony.protocol import Identity, Task, seal
from symphony.sandbox import run_python
from symphony.testing import NodeProcess, Swarm, open_swarm, wait_for
from symphony.transport import OFFENCE_REASONS
from symphony.transport.libp2p import Libp2pConfig, open_libp2p_transport
from symphony.transport.stranger import (
    GARBAGE,
    NON_UTF8_PROTOCOL_LINE,
    forged_publish,
    open_stranger,
    write_and_close,
)

MODEL = ("--model", "scripted:arith")
QUESTION, ANSWER = "What is (17 + 25) * 2?", "84"
# fields of a record that only its owner's operator decides; reputation, lamport and signature move on their own,
# and so do the capability vector and hardware block (learned skills and measured tokens/s are republished by
# the node itself after honest questions)
RECORD_FIELDS = ("name", "tags", "models", "availability", "addrs")
Effort = dict[str, Any]
Attack = Callable[[list[NodeProcess]], AbstractAsyncContextManager[Effort]]


def _counters(nodes: list[NodeProcess]) -> dict[str, int]:
    """Everything the nodes counted against peers, summed over nodes: transport offences, busy-slot
    refusals and refused requests (blacklisted, rate-limited, unknown peer...), by reason."""
    totals: dict[str, int] = {}
    for node in nodes:
        info = node.get("/v1/node")
        rows = [*((f"offence {k}", v) for k, v in info["traffic"].get("offences", {}).items()),
                ("slots busy", sum(info["traffic"].get("refused", {}).values()))]
        metrics = httpx.get(str(node.info["api"]) + "/metrics", timeout=5).text
        for family in text_string_to_metric_families(metrics):
            for sample in family.samples:
                if sample.name == "symphony_api_refused_total":
                    rows.append((f"api refused {sample.labels.get('reason')}", sample.value))
                elif (sample.name == "symphony_rejected_messages_total"
                      and sample.labels.get("reason") not in _TRANSPORT):
                    rows.append((f"refused {sample.labels.get('reason')}", sample.value))
        for key, value in rows:
            totals[key] = totals.get(key, 0) + int(value)
    return totals


# transport offences are also reported as rejected messages; count them once, as offences
_TRANSPORT = frozenset(OFFENCE_REASONS)


def _records(nodes: list[NodeProcess]) -> dict[str, dict[str, Any]]:
    """Every node's view of every record, owner-decided fields only."""
    return {f"{n.name} sees {agent}": {k: row.get(k) for k in RECORD_FIELDS}
            for n in nodes for agent, row in n.ledger().items()}


def _serving(nodes: list[NodeProcess]) -> bool:
    try:
        return all(n.proc is not None and n.proc.poll() is None and n.get("/v1/node")["agent_id"] == n.agent_id
                   for n in nodes)
    except (httpx.HTTPError, OSError):
        return False


def _honest_ask(node: NodeProcess) -> dict[str, Any]:
    response = httpx.post(str(node.info["api"]) + "/v1/tasks", timeout=120,
                          json={"question": QUESTION, "cots": 3, "adaptive": False,  # all 3 chains beside the attack
                                "wait": True, "deadline_s": 90})
    return dict(response.json())


# ---- the attacks ---------------------------------------------------------------------------------------


@asynccontextmanager
async def garbage_everywhere(nodes: list[NodeProcess]) -> AsyncIterator[Effort]:
    """Every kind of garbage (``stranger.GARBAGE``) on every protocol each node announces, a forged
    gossipsub message on each gossipsub version, a non-UTF-8 protocol negotiation line."""
    streams = 0
    async with open_stranger() as stranger:
        for node in nodes:
            peer = await stranger.dial(node.addr)
            with trio.fail_after(30):
                while TASK_PROTOCOL not in stranger.protocols_of(peer):
                    await trio.sleep(0.05)  # identify: the node's announced protocols
            for protocol in stranger.protocols_of(peer):
                for data in GARBAGE.values():
                    await write_and_close(await stranger.open(peer, protocol), data)
                    streams += 1
            for seqno, protocol in enumerate(("/meshsub/1.0.0", "/meshsub/1.1.0")):
                await write_and_close(await stranger.open(peer, protocol), forged_publish(LEDGER_TOPIC, seqno))
            await write_and_close(await stranger.open_unnegotiated(peer), NON_UTF8_PROTOCOL_LINE)
            streams += 3
    yield {"attack": "garbage on every protocol", "effort": f"{streams} hostile streams"}


@asynccontextmanager
async def task_flood(nodes: list[NodeProcess], *, count: int = 600) -> AsyncIterator[Effort]:
    """Validly signed plan and execute tasks from a fresh key (each, if served, a model call)."""
    stranger = Identity.generate()
    effort: Effort = {"attack": "signed task flood", "effort": f"{count} plan/execute tasks"}
    served = 0
    async with (open_libp2p_transport(stranger, Libp2pConfig(listen=["/ip4/127.0.0.1/tcp/0"])) as transport,
                trio.open_nursery() as nursery):
        for node in nodes:
            await transport.connect(node.addr)

        async def flood() -> None:
            nonlocal served
            for n in range(count):
                task = Task(task_id=f"flood-{n}", role="execute" if n % 2 else "plan",  # type: ignore[arg-type]
                            question="What is 6 * 7?", deadline_ms=int((time.time() + 3600) * 1000))
                body = seal(stranger, "task", task.wire(), now_ms=int(time.time() * 1000)).to_bytes()
                try:
                    await transport.request(nodes[n % len(nodes)].agent_id, TASK_PROTOCOL, body, timeout=10)
                    served += 1
                except TransportError:
                    pass

        nursery.start_soon(flood)
        yield effort
    effort["effort"] += f", {served} served"


@asynccontextmanager
async def slot_holding(nodes: list[NodeProcess], *, strangers: int = 4,
                       per_protocol: int = 70) -> AsyncIterator[Effort]:
    """Several strangers open silent streams on the task and beacon protocols of every node (more than
    a protocol's 64 slots in all) and hold them while the honest question runs."""
    opened = 0
    async with trio.open_nursery() as nursery:
        ready, release = trio.Semaphore(0), trio.Event()

        async def hold() -> None:
            nonlocal opened
            async with open_stranger() as stranger:
                for node in nodes:
                    peer = await stranger.dial(node.addr)
                    for protocol in (TASK_PROTOCOL, BEACON_PROTOCOL):
                        for _ in range(per_protocol):
                            opened += await stranger.try_open(peer, protocol) is not None
                ready.release()
                await release.wait()

        for _ in range(strangers):
            nursery.start_soon(hold)
        for _ in range(strangers):
            await ready.acquire()
        yield {"attack": "silent streams holding slots",
               "effort": f"{strangers} strangers x {per_protocol} streams x 2 protocols per node, {opened} opened"}
        release.set()


@asynccontextmanager
async def cross_site(nodes: list[NodeProcess]) -> AsyncIterator[Effort]:
    """What a web page in the owner's browser can send to the local API: a text/plain POST (a CORS
    "simple request"), a JSON POST from a foreign ``Origin``, reads after DNS rebinding."""
    node = nodes[0]
    api = str(node.info["api"])
    host = api.split("//", 1)[1]
    body = '{"name": "owned", "availability": "leaving"}'
    attempts = [
        ("POST", "/v1/node/record", {"content-type": "text/plain"}, body),
        ("POST", "/v1/node/record", {"content-type": "application/json", "origin": "http://evil.example"}, body),
        ("POST", "/v1/tasks", {"content-type": "text/plain"}, '{"question": "What is 1 + 1?"}'),
        ("GET", "/v1/node", {"host": f"evil.example:{host.rsplit(':', 1)[1]}"}, None),
        ("GET", "/v1/events", {"origin": "http://evil.example"}, None),
    ]
    statuses = []
    async with httpx.AsyncClient(timeout=5) as client:
        for method, path, headers, content in attempts:
            response = await client.request(method, api + path, headers=headers, content=content)
            statuses.append(response.status_code)
    yield {"attack": "cross-site requests to the local API",
           "effort": f"{len(attempts)} requests (text/plain POSTs, foreign Origin, rebound Host), answered "
                     f"{'/'.join(map(str, statuses))}",
           "acted": sum(200 <= s < 300 for s in statuses)}


ESCAPES = {
    "post to the node's API": (
        "import urllib.request\n"
        "req = urllib.request.Request('{api}/v1/node/record', data=b'{{\"name\": \"owned\"}}', "
        "headers={{'content-type': 'application/json'}})\n"
        "print(urllib.request.urlopen(req, timeout=3).read())\n"),
    "read the node's key": "print(open('{data_dir}/key', 'rb').read().hex())\n",
    "write into the data dir": "open('{data_dir}/planted', 'w').write('x')\n",
    "a shell command on the host": "import os\nos.system('touch {data_dir}/planted')\n",
    "fork bomb": "import os\nwhile True:\n    os.fork()\n",
}


@asynccontextmanager
async def sandbox_escapes(nodes: list[NodeProcess]) -> AsyncIterator[Effort]:
    """Generated code run in the sandbox tries to reach the node: its API, its key, its data dir."""
    node = nodes[0]
    escaped = []
    for name, template in ESCAPES.items():
        source = template.format(api=node.info["api"], data_dir=node.data_dir)
        result = await trio.to_thread.run_sync(lambda: run_python(source, timeout_s=5))
        key_leaked = (node.data_dir / "key").read_bytes().hex() in result.output
        if key_leaked or "lamport" in result.output or (node.data_dir / "planted").exists():
            escaped.append(name)  # the record itself is compared after all attacks
    yield {"attack": "sandbox escapes from generated code",
           "effort": f"{len(ESCAPES)} programs ({', '.join(ESCAPES)}), {len(escaped)} reached the node",
           "acted": len(escaped), "escaped": escaped}


ATTACKS: dict[str, Attack] = {
    "garbage": garbage_everywhere, "flood": task_flood, "slots": slot_holding,
    "cross-site": cross_site, "sandbox": sandbox_escapes,
}


# ---- the scenario ----------------------------------------------------------------------------------------


async def _run(nodes: list[NodeProcess], names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        before = await trio.to_thread.run_sync(_counters, nodes)
        async with ATTACKS[name](nodes) as effort:
            record = await trio.to_thread.run_sync(_honest_ask, nodes[0])
        after = await trio.to_thread.run_sync(_counters, nodes)
        chains = record.get("trace", {}).get("chains", []) if isinstance(record.get("trace"), dict) else []
        rows.append({**effort, "name": name,
                     "counted": {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)},
                     "honest_status": record.get("status"), "honest_answer_right": record.get("answer") == ANSWER,
                     "honest_chains_ok": sum(bool(c.get("ok")) for c in chains), "honest_chains": len(chains),
                     "serving": await trio.to_thread.run_sync(_serving, nodes)})
    return rows


def hostile_scenario(root: Path, *, attacks: list[str] | None = None) -> dict[str, Any]:
    """Run ``attacks`` (default: all of ``ATTACKS``) against three real nodes; one row per attack."""
    with open_swarm(root) as swarm:
        nodes = _start(swarm)
        wait_for(lambda: all(len([r for r in n.ledger().values() if r["available"]]) == 3 for n in nodes),
                 timeout=60, what="every node holds 3 available records")
        records = _records(nodes)
        rows = trio.run(_run, nodes, attacks or list(ATTACKS))
        unchanged = _records(nodes) == records
        alive = _serving(nodes)
    return {"scenario": "hostile", "agents": 3, "rows": rows, "records_unchanged": unchanged, "serving": alive}


def _start(swarm: Swarm) -> list[NodeProcess]:
    boot = swarm.spawn("n0", args=MODEL).wait_ready()
    rest = [swarm.spawn(f"n{i}", bootstrap=boot, args=MODEL) for i in (1, 2)]
    return [boot] + [node.wait_ready() for node in rest]


def markdown(result: dict[str, Any]) -> list[str]:
    """The table for docs/results.md."""
    lines = ["| attack | what the stranger did | counted against it (all nodes) | honest question, cots = 3 | "
             "every node serving |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        counted = ", ".join(f"{k} {v}" for k, v in sorted(r["counted"].items())) or "-"
        honest = (f"{r['honest_status']}, {r['honest_chains_ok']}/{r['honest_chains']} chains, "
                  f"{'right' if r['honest_answer_right'] else 'WRONG'} answer")
        lines.append(f"| {r['attack']} | {r['effort']} | {counted} | {honest} | {'yes' if r['serving'] else 'NO'} |")
    lines += ["", f"Records unchanged at every node after all attacks: {'yes' if result['records_unchanged'] else 'NO'}"
              f"; every node serving at the end: {'yes' if result['serving'] else 'NO'}.", ""]
    return lines
