"""Measured hardware and privacy noise on running agents (issue 17): detection, the tokens/s EMA and
its bounded republication, and the published (noised, coarsened) vs private vector."""

from __future__ import annotations

import math
import os
import random
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from symphony.capability.vector import (
    HARDWARE,
    SKILLS,
    TAGS,
    HashingTagEncoder,
    coarse_figure,
    phi,
    privacy_noise,
    requirement_vector,
)
from symphony.ledger import GossipConfig
from symphony.node import hardware
from symphony.node.config import node_config
from symphony.node.hardware import ThroughputMeter, coarsen_hardware, detect_hardware
from symphony.node.runtime import AgentProfile, AgentRuntime
from symphony.protocol.identity import Identity
from symphony.protocol.messages import Hardware, decode_vector
from symphony.transport.base import Transport
from symphony.transport.memory import MemoryNetwork
from tests.conftest import identity

EPOCH = 1_700_000_000.0
SIGMA = 0.1
EXACT = Hardware(memory_gb=24.0, accelerator="NVIDIA GeForce RTX 4090", tokens_per_s=0.0)


def clock() -> float:
    return EPOCH + trio.current_time()


# ---- detection ------------------------------------------------------------------------------


def test_detection_returns_this_machines_cores_and_memory() -> None:
    found = detect_hardware()
    assert found.cores == os.cpu_count()
    assert found.memory_gb > 0
    assert found.memory_source in ("gpu", "ram")
    if found.memory_source == "ram":
        assert found.accelerator in ("cpu", "apple")


def test_an_nvidia_gpu_gives_its_name_and_total_gpu_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware.shutil, "which", lambda name: "/usr/bin/nvidia-smi")

    def smi(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        out = "NVIDIA H100 80GB HBM3, 81559\nNVIDIA H100 80GB HBM3, 81559\nbroken, [N/A]\n"
        return subprocess.CompletedProcess(args, 0, stdout=out)

    found = detect_hardware(run=smi)
    assert (found.accelerator, found.memory_source, found.memory_gb) == ("NVIDIA H100 80GB HBM3", "gpu", 159.3)


def test_a_failing_nvidia_smi_falls_back_to_ram(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware.shutil, "which", lambda name: "/usr/bin/nvidia-smi")

    def smi(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(args, 10)

    assert detect_hardware(run=smi).memory_source == "ram"


def test_declared_hardware_wins_and_the_rest_is_detected(tmp_path: Path) -> None:
    declared = node_config({"data_dir": str(tmp_path), "memory_gb": 4.0, "accelerator": "metal"}).hardware
    assert (declared.memory_gb, declared.accelerator) == (4.0, "metal")
    detected = node_config({"data_dir": str(tmp_path)}).hardware
    assert detected.memory_gb == detect_hardware().memory_gb > 0
    assert declared.cores == detected.cores == os.cpu_count(), "cores are always detected and published"


def test_privacy_sigma_is_checked(tmp_path: Path) -> None:
    from symphony.errors import ConfigError

    assert node_config({"data_dir": str(tmp_path), "privacy_sigma": 0.2}).privacy_sigma == 0.2
    with pytest.raises(ConfigError, match="privacy-sigma"):
        node_config({"data_dir": str(tmp_path), "privacy_sigma": -1.0})


# ---- tokens/s -------------------------------------------------------------------------------


def test_throughput_ema_moves_and_is_due_only_past_the_threshold() -> None:
    meter = ThroughputMeter(alpha=0.8, threshold=0.25, min_interval_s=0)
    assert not meter.moved()
    meter.observe(100, 2.0)  # 50 tok/s: the first figure is due at once
    assert meter.tokens_per_s == 50.0 and meter.moved()
    meter.published = 50.0
    meter.observe(60, 1.0)  # EMA 52: 4 % off, not due
    assert meter.tokens_per_s == pytest.approx(52.0) and not meter.moved()
    meter.observe(0, 1.0)  # a call without output says nothing
    assert meter.tokens_per_s == pytest.approx(52.0)
    for _ in range(3):
        meter.observe(100, 1.0)
    assert meter.tokens_per_s > 1.25 * 50 and meter.moved()


async def test_throughput_publications_are_rate_bounded(autojump_clock: trio.testing.MockClock) -> None:
    meter = ThroughputMeter(alpha=0.0, min_interval_s=60, clock=trio.current_time)
    meter.observe(10, 1.0)
    assert await meter.next_publication() == 10.0
    first = trio.current_time()
    meter.observe(40, 1.0)  # 4x: due, but not before a minute has passed
    assert await meter.next_publication() == 40.0
    assert trio.current_time() - first >= 60


# ---- published vs private -------------------------------------------------------------------


def _block_norm(v: list[float] | tuple[float, ...], block: slice) -> float:
    return math.sqrt(math.fsum(x * x for x in v[block]))


def test_privacy_noise_has_the_configured_scale_per_block_and_is_fixed_by_the_seed() -> None:
    rng = random.Random(5)
    vec = tuple(rng.uniform(-1, 1) for _ in range(224))
    noisy = privacy_noise(vec, 0.2, b"seed")
    assert noisy == privacy_noise(vec, 0.2, b"seed") != privacy_noise(vec, 0.2, b"other")
    noise = [a - b for a, b in zip(noisy, vec, strict=True)]
    for block in (TAGS, HARDWARE, SKILLS):
        assert _block_norm(noise, block) == pytest.approx(0.2 * _block_norm(vec, block), rel=0.3)
    assert privacy_noise(vec, 0.0, b"seed") == vec


def test_coarsening_rounds_down_to_powers_of_two_and_keeps_the_accelerator_kind() -> None:
    assert [coarse_figure(x) for x in (0, 0.5, 1, 24, 80, 1000)] == [0, 0, 1, 16, 64, 512]
    exact = Hardware(memory_gb=24, accelerator="NVIDIA GeForce RTX 4090", tokens_per_s=37.5, cores=12)
    assert coarsen_hardware(exact) == Hardware(memory_gb=16, accelerator="nvidia", tokens_per_s=32, cores=8)


@asynccontextmanager
async def _pair(meter: ThroughputMeter) -> AsyncIterator[tuple[AgentRuntime, AgentRuntime]]:
    """An observer, and an agent publishing with sigma = SIGMA and a tokens/s meter, converged."""
    net = MemoryNetwork(rng=random.Random(3))
    profiles = [AgentProfile(name="observer"), AgentProfile(name="private", tags=("apples", "boxes"), hardware=EXACT)]
    runtimes: list[AgentRuntime] = []
    async with trio.open_nursery() as nursery:
        for n, profile in enumerate(profiles):
            transport = await nursery.start(_serve, net, identity(n))
            runtime = AgentRuntime(
                transport=transport, identity=identity(n), profile=profile, model=None, clock=clock,
                rng=random.Random(n), gossip_config=GossipConfig(anti_entropy_interval_s=1.0),
                bootstrap=runtimes[0].transport.listen_addrs() if runtimes else [],
                privacy_sigma=SIGMA if n else 0.0, throughput=meter if n else None,
            )
            await nursery.start(runtime.run)
            runtimes.append(runtime)
        with trio.fail_after(30):
            while len(runtimes[0].ledger.records) < 2:
                await trio.sleep(0.1)
        yield runtimes[0], runtimes[1]
        nursery.cancel_scope.cancel()


async def _serve(net: MemoryNetwork, who: Identity, *, task_status: trio.TaskStatus[Transport]) -> None:
    async with net.open_node(who) as transport:
        task_status.started(transport)
        await trio.sleep_forever()


async def test_the_published_vector_is_noised_and_coarsened_while_beacons_use_the_private_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The agent publishes with sigma = 0.1 and a tokens/s meter; the observer watches its record and beacons it."""
    meter = ThroughputMeter(alpha=0.0, min_interval_s=60, clock=trio.current_time)
    async with _pair(meter) as (observer, agent):
        seen = observer.ledger.records[agent.agent_id]
        published = decode_vector(seen.capability)
        assert seen.hardware == Hardware(memory_gb=16, accelerator="nvidia", tokens_per_s=0)
        noise = [p - x for p, x in zip(published, agent.vector, strict=True)]
        for block in (TAGS, SKILLS):  # float16 on the wire: a few thousandths of slack
            assert _block_norm(noise, block) == pytest.approx(SIGMA * _block_norm(agent.vector, block), rel=0.35)

        r = requirement_vector("How many apples are in the boxes?", "arithmetic", HashingTagEncoder())
        outcome = await observer.selector.select(r)
        (candidate,) = [c for c in outcome.selection.primaries + outcome.selection.backups
                        if c.agent_id == agent.agent_id]
        assert candidate.score == pytest.approx(phi(agent.vector, r), abs=2e-3)
        assert abs(phi(published, r) - phi(agent.vector, r)) > 2e-3

        meter.observe(75, 1.0)  # 75 tok/s measured: republished, coarsened to 64
        with trio.fail_after(120):
            while observer.ledger.records[agent.agent_id].hardware.tokens_per_s != 64:
                await trio.sleep(0.5)
        assert agent.profile.hardware.tokens_per_s == 75.0  # the exact figure stays private
        # the same content gives the same noise (a restart, the next heartbeat), a new content a new draw
        on_the_wire = decode_vector(observer.ledger.records[agent.agent_id].capability)
        assert on_the_wire == pytest.approx(agent.published_vector(), abs=2e-3)
        assert agent.published_vector() == agent.published_vector()
        assert on_the_wire != pytest.approx(published, abs=2e-3)
