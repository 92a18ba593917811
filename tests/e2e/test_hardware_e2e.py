"""Measured hardware and privacy coarsening on a real ``symphony node`` process (issue 17): the
hardware is detected at start, coarsened in the published record with --privacy-sigma, and the
tokens/s measured from the node's own model calls reaches its record in ``/v1/ledger``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from symphony.node.hardware import detect_hardware
from symphony.testing import open_swarm, wait_for

pytestmark = pytest.mark.e2e


def test_a_node_publishes_detected_coarsened_hardware_and_its_measured_tokens_per_s(tmp_path: Path) -> None:
    with open_swarm(tmp_path) as swarm:
        node = swarm.spawn("private", args=("--model", "scripted:arith", "--privacy-sigma", "0.1")).wait_ready()
        hw = node.get(f"/v1/ledger/{node.agent_id}")["hardware"]
        ram = detect_hardware().memory_gb
        assert 0 < hw["memory_gb"] <= ram < 2 * hw["memory_gb"]  # detected RAM, down to a power of two
        assert hw.get("tokens_per_s", 0) == 0  # nothing measured yet
        cores = detect_hardware().cores
        assert 0 < hw["cores"] <= cores < 2 * hw["cores"]  # detected cores, down to a power of two
        assert node.post("/v1/tasks", {"question": "What is (17 + 25) * 2?", "cots": 1}).status_code == 202

        def measured() -> float | None:
            tokens_per_s = node.get(f"/v1/ledger/{node.agent_id}")["hardware"].get("tokens_per_s", 0)
            return tokens_per_s or None

        tokens_per_s = wait_for(measured, timeout=60, what="the measured tokens/s in the node's record")
        assert tokens_per_s == 2 ** round(math.log2(tokens_per_s))  # coarsened
