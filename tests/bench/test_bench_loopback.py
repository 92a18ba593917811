"""``bench systems-libp2p`` on a tiny network: real py-libp2p processes on 127.0.0.1, bytes counted, all exit."""

import json
import os

import pytest

from symphony.bench.loopback import LoopbackConfig, executor_spread, run_loopback_bench, spread_line


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.timeout(480)  # two networks and a joiner: ~2 min alone, 3 at load 15
def test_small_real_process_run_counts_bytes_and_leaves_no_process(tmp_path) -> None:
    """4 agents in 2 processes answer one task; the counters saw its bytes; a fifth agent joins; then the
    centralized hub baseline (a coordinator process and the same 2 worker processes) answers it too;
    every process exits 0 and is reaped."""
    cfg = LoopbackConfig(
        sizes=(4,),
        per_process=2,
        tasks=1,
        concurrency=1,
        tokens_per_s=2000.0,
        beacon_rounds=2,
        converge_timeout_s=120.0,
        task_timeout_s=120.0,
        joiners=1,
    )
    run_loopback_bench(cfg, tmp_path)
    results = json.loads((tmp_path / "systems-libp2p.json").read_text())
    row, hub = results["rows"]
    assert row["n"] == 4 and row["processes"] == 2
    assert row["exit_codes"] == [0, 0, 0]  # the two workers and the joiner
    assert all(_gone(pid) for pid in row["pids"])
    assert row["failed"] == 0 and row["answers_ok"] == 1
    assert len(row["join"]["at_new_s"]) == len(row["join"]["everywhere_s"]) == 1 and row["join"]["max_s"] >= 0
    assert row["bytes_per_task"] > 0 and row["messages_per_task"] > 0
    for key in ("p50_s", "p95_s", "overhead", "breakdown_ms", "beacon_ms_p95", "cpu_s", "load_avg"):
        assert key in row
    assert row["beacon"]["candidates"] == 4 and row["beacon"]["rounds"] == 2 and row["beacon"]["replied_min"] == 4
    assert row["beacon"]["dial_ms_p50"] > 0 and row["beacon"]["dial_ms_max"] >= row["beacon"]["dial_ms_p50"]
    assert "| symphony-libp2p | 4 |" in (tmp_path / "systems-libp2p.md").read_text()
    assert hub["arch"] == "centralized-libp2p" and hub["processes"] == 3 and hub["exit_codes"] == [0, 0, 0]
    assert hub["failed"] == 0 and hub["answers_ok"] == 1 and hub["bytes_per_task"] > 0
    assert all(_gone(pid) for pid in hub["pids"])


@pytest.mark.timeout(300)
def test_a_worker_that_fails_is_reported_and_every_process_is_reaped(tmp_path) -> None:
    """Workers whose replicas cannot converge in time exit with an error: the run reports it and leaves no process."""
    cfg = LoopbackConfig(sizes=(4,), per_process=2, tasks=1, converge_timeout_s=0.001, task_timeout_s=60.0,
                         centralized=False)
    run_loopback_bench(cfg, tmp_path)
    (row,) = json.loads((tmp_path / "systems-libp2p.json").read_text())["rows"]
    assert row["failed"] == 1 and row["errors"] == ["ledger convergence: a worker exited early (see its log)"]
    assert row["exit_codes"] == [1, 1]
    assert all(_gone(pid) for pid in row["pids"])


def test_executor_spread_counts_calls_and_slot_waits_per_executor() -> None:
    """Calls and model-slot wait (wall beyond the nominal model time) per executor, busiest first:
    what showed concurrent chains piling on a few executors (issue 19)."""
    def attempt(executor: str, wall_ms: float) -> dict[str, object]:
        return {"executor": executor, "model_ms": 100.0, "model_wall_ms": wall_ms}

    traces = [{"chains": [{"trace": {"steps": [{"attempts": [attempt("b", 100.0), attempt("a", 700.0)]},
                                               {"attempts": [attempt("a", 300.0)]}]}},
                          {"trace": None}]}]
    spread = executor_spread(traces)
    assert spread["calls"] == 3 and spread["executors"] == 2
    assert spread["per_executor"] == {"a": {"calls": 2, "queue_ms": 800.0}, "b": {"calls": 1, "queue_ms": 0.0}}
    line = spread_line({"arch": "symphony-libp2p", "n": 2, "spread": spread})
    assert "3 executor calls on 2 agents (calls each, busiest first: 2, 1; mean wait per call, ms: 400, 0)" in line
