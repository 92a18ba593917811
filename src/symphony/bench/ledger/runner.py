"""``run_ledger_bench``: runs every size on both engines, then writes ``ledger.json`` and ``ledger.md``."""

from __future__ import annotations

import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console

from symphony import __version__
from symphony.bench.ledger.config import (
    MB,
    PAPER_UPKEEP_MB,
    PRODUCTION,
    TARGET_PROPAGATION_N,
    TARGET_PROPAGATION_S,
    TARGET_ROUNDS_PER_LOG2N,
    TARGET_UPKEEP_MB,
    LedgerBenchConfig,
)
from symphony.bench.ledger.cpu import _cpu_costs, _cpu_row
from symphony.bench.ledger.figures import _row
from symphony.bench.ledger.memory_full import _sim_full
from symphony.bench.ledger.memory_overlay import _sim_overlay
from symphony.bench.ledger.processes import _run_real
from symphony.bench.ledger.progress import _Progress
from symphony.bench.ledger.report import _checks, _markdown, _notes, _print
from symphony.bench.virtual import run_virtual


def _code_version() -> str | None:
    """``git describe`` of the checkout this module runs from, if it is one."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _peak_rss_mb() -> float:
    scale = 1024 if sys.platform != "darwin" else 1
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / MB


def _run_sims(sizes: list[int], cfg: LedgerBenchConfig, seed: int, say: _Progress, rows: list[dict[str, Any]]) -> None:
    costs = _cpu_costs()
    sync_reference: dict[str, Any] | None = None
    full_rate: tuple[int, float] | None = None
    for n in sorted(sizes):
        if n <= cfg.sim_full_max:
            say(f"[bold]memory engine N={n}, full set-up[/bold] (budget {cfg.sim_budget_s:.0f} s)")
            row = _guarded(n, "full", say, partial(run_virtual, _sim_full, n, cfg, seed, say))
            row["cpu"] = _cpu_row(n, costs)
            rows.append(row)
            if row.get("upkeep"):
                sync_reference = {
                    "per_agent_hour_mb": row["upkeep"]["per_agent_hour_mb"],
                    "source": f"measured in the full set-up at N={n} (N-independent in steady state)",
                }
            if row.get("wall_per_virtual_s"):
                full_rate = (n, row["wall_per_virtual_s"])
        if sync_reference is None:
            ref_n = min(10, cfg.sim_full_max, n)
            say(f"  sync reference: full set-up upkeep at N={ref_n}")
            ref = run_virtual(_sim_full, max(ref_n, 2), cfg, seed, say, upkeep_only=True)
            sync_reference = {
                "per_agent_hour_mb": ref["upkeep"]["per_agent_hour_mb"],
                "source": f"measured in a full set-up at N={ref_n} (N-independent in steady state)",
            }
        say(f"[bold]memory engine N={n}, overlay set-up[/bold] (budget {cfg.sim_budget_s:.0f} s)")
        row = _guarded(n, "overlay", say, partial(run_virtual, _sim_overlay, n, cfg, seed, say, sync_reference, costs))
        if n > cfg.sim_full_max:
            reason = f"full set-up not run (N > sim_full_max={cfg.sim_full_max})"
            if full_rate is not None:
                virtual = (
                    (cfg.sim_warmup_heartbeats + cfg.sim_window_heartbeats) * PRODUCTION.heartbeat_interval_s
                    + 2 * PRODUCTION.ttl_s
                    + cfg.updates * 2
                )
                hours = full_rate[1] * (n / full_rate[0]) ** 2 * virtual / 3600
                reason += (
                    f": at N={full_rate[0]} it took {full_rate[1]:.2f} s wall per virtual s; heartbeat checks "
                    f"and digest hashing grow as N^2, so about {hours:.1f} h here"
                )
            row["notes"].append(reason)
        rows.append(row)
        say(f"  peak RSS so far {_peak_rss_mb():.0f} MB")


def _guarded(n: int, setup: str, say: _Progress, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one size; an unexpected error becomes the row's error instead of ending the benchmark."""
    start = time.monotonic()
    try:
        row = fn()
    except Exception as exc:  # noqa: BLE001 - the rest of the benchmark is still worth having; the row says what broke
        say(f"  [red]memory N={n} {setup} crashed[/red]: {exc!r}"[:400])
        row = _row("memory", n, setup)
        row["errors"].append(f"crashed: {exc!r}"[:600])
    row["wall_s"] = time.monotonic() - start
    return row


def run_ledger_bench(
    *,
    real_sizes: list[int],
    sim_sizes: list[int],
    out_dir: Path,
    seed: int = 0,
    console: Console,
    config: LedgerBenchConfig | None = None,
) -> dict[str, Any]:
    """Run the ledger benchmark; print tables; write ``out_dir/ledger.json`` and ``ledger.md``.

    Args:
        real_sizes: node-process counts (``symphony bench ledger``: 5, 10, 20; ``[]`` skips processes).
        sim_sizes: memory-engine sizes (``symphony bench ledger``: 100, 1000, 10000; ``[]`` skips the simulator).
        out_dir: created if missing.
        seed: seeds every random choice of the benchmark (trio's scheduling stays free).
        config: knobs (``LedgerBenchConfig()`` if None).

    Returns:
        The results written to ``ledger.json``: ``rows`` (one per engine, set-up and N),
        ``checks`` (targets), ``notes``, ``config`` and run metadata.
    """
    cfg = config or LedgerBenchConfig()
    say = _Progress(console)
    started = time.monotonic()
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {
        "benchmark": "ledger",
        "version": __version__,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_start": os.getloadavg()[0],
        },
        "code": _code_version(),
        "config": asdict(cfg),
        "targets": {
            "propagation_s": TARGET_PROPAGATION_S,
            "propagation_n": TARGET_PROPAGATION_N,
            "rounds_per_log2n": TARGET_ROUNDS_PER_LOG2N,
            "upkeep_mb_per_agent_hour": TARGET_UPKEEP_MB,
            "paper_upkeep_mb_per_agent_hour": PAPER_UPKEEP_MB,
        },
        "rows": rows,
    }
    if real_sizes:
        with tempfile.TemporaryDirectory(prefix="symphony-bench-ledger-") as root:
            for n in sorted(real_sizes):
                rows.append(_run_real(n, cfg, Path(root), rng, say))
    if sim_sizes:
        _run_sims(list(sim_sizes), cfg, seed, say, rows)
    results["runtime_s"] = time.monotonic() - started
    results["peak_rss_mb"] = _peak_rss_mb()
    results["machine"]["load_average_end"] = os.getloadavg()[0]
    results["checks"] = _checks(rows)
    results["notes"] = _notes(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ledger.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out_dir / "ledger.md").write_text(_markdown(results))
    _print(console, results)
    console.print(f"wrote {out_dir / 'ledger.json'} and {out_dir / 'ledger.md'} in {results['runtime_s']:.0f} s")
    return results
