"""The ledger benchmark's memory-engine part at N=20: exact byte accounting and its outputs."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from symphony.bench.ledger import EPOCH, MB, LedgerBenchConfig, run_ledger_bench
from symphony.bench.ledger.figures import _dist
from symphony.ledger import LedgerConfig
from symphony.protocol.messages import Heartbeat
from tests.conftest import identity

N = 20
CONFIG = LedgerBenchConfig(updates=3, sim_window_heartbeats=3.0, sim_heartbeat_floods=4, sim_budget_s=600.0)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("bench")
    results = run_ledger_bench(
        real_sizes=[], sim_sizes=[N], out_dir=out, seed=3, console=Console(file=io.StringIO(), width=200), config=CONFIG
    )
    return results, out


def row(results: dict[str, Any], setup: str) -> dict[str, Any]:
    (match,) = [r for r in results["rows"] if r["setup"] == setup and r["n"] == N]
    assert not match["errors"] and not match["skipped"], (match["errors"], match["skipped"])
    return match


def heartbeat_size() -> int:
    """Every heartbeat of the quiet window: lamport 1, a 13-digit ts, a 52-char peer ID."""
    heartbeat = Heartbeat(agent_id=identity(0).agent_id, lamport=1, ts=int(EPOCH * 1000))
    return len(heartbeat.signed_by(identity(0)).to_bytes())


def test_full_setup_heartbeat_bytes_are_size_times_sends(bench) -> None:
    """Over the quiet window the heartbeat channel's bytes are exactly one heartbeat's size per send."""
    totals = row(bench[0], "full")["upkeep"]["window_totals"]
    assert totals["bytes_sent"]["heartbeats"] == heartbeat_size() * totals["messages_sent"]["heartbeats"]
    assert totals["bytes_sent"]["records"] == 0


def test_full_setup_every_heartbeat_reaches_every_node(bench) -> None:
    """Each node beats at least once per 1.1 intervals, and each beat is sent to all N - 1 others at least once."""
    full = row(bench[0], "full")
    beats = math.floor(full["upkeep"]["window_s"] / (1.1 * LedgerConfig().heartbeat_interval_s)) - 1
    assert full["upkeep"]["window_totals"]["messages_sent"]["heartbeats"] >= N * (N - 1) * beats


def test_full_setup_upkeep_is_window_bytes_per_agent_hour(bench) -> None:
    upkeep = row(bench[0], "full")["upkeep"]
    for channel in ("records", "heartbeats", "sync"):
        expected = upkeep["window_totals"]["bytes_sent"][channel] * 3600 / upkeep["window_s"] / N / MB
        assert upkeep["per_agent_hour_mb"][channel]["sent"] == pytest.approx(expected, rel=1e-12)
    assert upkeep["wire_mb"] == pytest.approx(sum(d["sent"] for d in upkeep["per_agent_hour_mb"].values()))


def test_overlay_heartbeat_floods_are_size_times_transmissions(bench) -> None:
    """A single heartbeat flood costs its size per transmission and reaches all N - 1 other nodes."""
    overlay = row(bench[0], "overlay")
    floods = overlay["upkeep"]["heartbeat_floods"]
    assert len(floods) == CONFIG.sim_heartbeat_floods
    for flood in floods:
        assert flood["heartbeat_bytes"] == heartbeat_size()
        assert flood["bytes_sent"] == flood["heartbeat_bytes"] * flood["messages_sent"]
        assert flood["reached"] == N - 1 and flood["messages_sent"] >= N - 1
    mean = sum(f["bytes_sent"] for f in floods) / len(floods)
    per_hour = 3600 / LedgerConfig().heartbeat_interval_s
    assert overlay["upkeep"]["per_agent_hour_mb"]["heartbeats"]["sent"] == pytest.approx(mean * per_hour / MB)


def test_updates_reach_every_node_by_push(bench) -> None:
    for setup in ("full", "overlay"):
        result = row(bench[0], setup)
        assert result["propagation"]["missed"] == 0
        assert result["rounds"]["samples"] == CONFIG.updates
    assert row(bench[0], "full")["propagation"]["push_share"] == 1.0


def test_joiner_catches_up_and_crash_is_detected_by_every_node(bench) -> None:
    """Everyone saw the victim available before the kill and unavailable at most a TTL after."""
    cfg = LedgerConfig()
    for setup in ("full", "overlay"):
        result = row(bench[0], setup)
        assert result["join"]["complete"] and result["join"]["missing"] == 0
        failure = result["failure"]
        assert failure["unavailable_before_kill"] == 0 and failure["undetected"] == 0
        assert failure["detection_s"]["samples"] == failure["nodes"]
        assert failure["detection_s"]["max"] <= cfg.ttl_s + 1.0


def test_json_and_markdown_are_written_with_expected_keys(bench) -> None:
    results, out = bench
    data = json.loads((out / "ledger.json").read_text())
    assert {"benchmark", "version", "seed", "config", "targets", "rows", "checks", "notes", "runtime_s"} <= set(data)
    assert [(r["setup"], r["n"]) for r in data["rows"]] == [("full", N), ("overlay", N)]
    for r in data["rows"]:
        assert {"propagation", "rounds", "join", "failure", "upkeep", "settings", "cpu"} <= set(r)
        assert {"wire_mb", "per_agent_hour_mb", "production", "kind"} <= set(r["upkeep"])
    assert {c["target"].split(" (")[0] for c in data["checks"]} >= {
        "<= 2 log2 N gossip rounds",
        "<= 0.1 MB per agent per hour",
    }
    markdown = (out / "ledger.md").read_text()
    assert "| engine/set-up | N | update→all p50 / p95 (s) |" in markdown
    assert "| memory/full | 20 |" in markdown and "| memory/overlay | 20 |" in markdown
    assert "REDUCED set-up" in markdown
    assert data == json.loads(json.dumps(results, default=str))


def test_dist_interpolates_percentiles() -> None:
    assert _dist(range(1, 101)) == {"p50": 50.5, "p95": 95.05, "min": 1.0, "max": 100.0, "samples": 100}
    assert _dist([])["p50"] is None


def test_config_rejects_zero_updates() -> None:
    with pytest.raises(ValueError, match=r"^updates must be >= 1, not 0$"):
        LedgerBenchConfig(updates=0)
