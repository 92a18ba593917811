"""The accuracy run (scripted test doubles only): systems, resume after an interrupt, the report."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
import trio
from rich.console import Console

from symphony.bench.accuracy import RESULTS_FILE, RunConfig, read_rows, rescore, run, write_report
from symphony.bench.contenders import blacklists, parse_system, solve
from symphony.bench.datasets import Item
from symphony.bench.report import cost_table, mcnemar_exact, paired, summarize
from symphony.ledger import LedgerConfig
from symphony.ledger.reputation import Offence
from symphony.llm.scripted import arith_model
from symphony.node.runtime import AgentProfile, SimulatedAgent, open_simulated_agents
from symphony.transport.memory import MemoryNetwork
from tests.conftest import identity

ARITH = Item("arith-1", "What is 3 + 4 * 2?", "11")


def _config(tmp_path: Path, **kw: object) -> RunConfig:
    base: dict[str, object] = {
        "datasets": ("gsm8k",), "pool": "test", "seeds": (0, 1), "limit": 2, "out_dir": tmp_path,
        "agent_models": ("scripted:arith", "scripted:arith"),
        "systems": tuple(parse_system(s) for s in ("direct", "sc:samples=2", "orchestrator", "symphony:cots=2")),
    }
    base.update(kw)
    return RunConfig(**base)  # type: ignore[arg-type]


def test_system_specs_parse_and_reject_typos() -> None:
    """Options override defaults; unknown systems and options are refused with the reason."""
    spec = parse_system("symphony:cots=5,strategy=random")
    assert (spec.system, spec.cots, spec.strategy, spec.name) == ("symphony", 5, "random", "symphony:cots=5,strategy=random")
    with pytest.raises(ValueError, match=r"unknown system 'symphonie'"):
        parse_system("symphonie")
    with pytest.raises(ValueError, match=r"bad option 'k=3'"):
        parse_system("sc:k=3")
    with pytest.raises(ValueError, match=r"strategy must be"):
        parse_system("symphony:strategy=best")


@pytest.mark.parametrize("system", ["direct", "sc:samples=3", "orchestrator:max_steps=3"])
async def test_each_baseline_answers_with_its_call_budget(system: str) -> None:
    """direct 1 call, sc k calls and a majority, orchestrator a plan plus one call per step."""
    model = arith_model()
    result = await solve(parse_system(system), ARITH, models=[model], nodes=None)
    assert result["answer"] == "11"
    budget = {"direct": 1, "sc:samples=3": 3, "orchestrator:max_steps=3": 3}[system]
    assert result["calls"] == len(model.calls) == budget
    assert result["tokens"] > 0


async def test_orchestrator_assigns_steps_round_robin() -> None:
    """The coordinator plans; the two workers take the steps in turn."""
    coordinator, first, second = arith_model(), arith_model(), arith_model()
    from symphony.bench.orchestrator import orchestrate

    run_ = await orchestrate(ARITH.question, coordinator=coordinator, workers=[first, second], kind="number")
    assert run_.answer == "11"
    assert len(first.calls) == 1 and len(second.calls) == 1
    assert run_.calls == 3


async def test_blacklists_name_each_nodes_blacklisted_agents() -> None:
    """Node 0 blacklists agent 2 after a forgery; node 1 lists no one, so it is left out."""
    agents = [SimulatedAgent(identity(n), arith_model(), AgentProfile(name=f"a{n}")) for n in range(3)]
    async with open_simulated_agents(MemoryNetwork(rng=random.Random(0)), agents, clock=time.time,
                                     ledger_config=LedgerConfig(heartbeat_interval_s=5.0)) as nodes:
        assert blacklists(nodes) == {}
        nodes[0].defences.reputation.penalize(nodes[2].identity.agent_id, Offence.INVALID, now=time.time())
        assert blacklists(nodes) == {"0": ["2"]}


def test_an_interrupted_run_resumes_without_repeating_rows(tmp_path: Path) -> None:
    """Rows kept, a half-written line dropped, only the missing rows answered again."""
    config = _config(tmp_path)
    rows = trio.run(run, config, Console(quiet=True))
    assert len(rows) == 2 * 2 * 4  # seeds x items x systems
    path = tmp_path / RESULTS_FILE
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:5]) + "\n" + lines[5][:40])  # killed mid-write
    resumed = trio.run(run, config, Console(quiet=True))
    keys = [(r["system"], r["seed"], r["id"]) for r in resumed]
    assert len(keys) == len(set(keys)) == 16
    assert [json.loads(line) for line in lines[:5]] == resumed[:5]


def test_the_report_has_tables_significance_diffs_and_plots(tmp_path: Path) -> None:
    """Markdown tables in the paper's layout, McNemar p, per-item diffs and a PNG per dataset."""
    config = _config(tmp_path, seeds=(0,))
    rows = [
        {"dataset": "gsm8k", "pool": "test", "system": system, "seed": seed, "id": f"q{i}", "gold": "1",
         "answer": "1" if right else "2", "correct": right, "tokens": 10, "calls": 1, "latency_s": 1.0}
        for seed in (0, 1) for i in range(8)
        for system, right in (("direct", i < 2), ("symphony:cots=2", i < 7))
    ]
    config = _config(tmp_path, systems=(parse_system("direct"), parse_system("symphony:cots=2")))
    text = write_report(config, rows)
    assert "| direct | 0.250 ± 0.000 (n=16) |" in text
    assert "| symphony:cots=2 | 0.875 ± 0.000 (n=16) |" in text
    assert "| gsm8k | direct | symphony:cots=2 | 4 | 0 | 10 | 2 | 0.002 | exact |" in text
    assert "symphony:cots=2 vs direct** fixed 10" in text and "broke 0" in text and "`0/q2` (answer '1', gold '1')" in text
    png = tmp_path / "accuracy-gsm8k.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "accuracy.md").read_text() == text


def test_mcnemar_exact_p_values() -> None:
    """No discordant pairs: p = 1; 6 to 0: p = 2/64; symmetric."""
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(5, 1) == mcnemar_exact(1, 5) == pytest.approx(2 * 7 / 64)


def test_pools_are_told_apart_in_the_summary() -> None:
    """Two pools, same system: two cells, and pairing works on the labelled names."""
    rows = [{"dataset": "d", "pool": pool, "system": "symphony", "seed": 0, "id": "a", "gold": "1", "answer": "1",
             "correct": pool == "mixed", "tokens": 1, "calls": 1, "latency_s": 0.1} for pool in ("homo", "mixed")]
    cells = summarize(rows)
    assert cells[("d", "symphony [mixed]")].mean == 1.0 and cells[("d", "symphony [homo]")].mean == 0.0
    assert paired(rows, "d", "symphony [homo]", "symphony [mixed]").fixed == ("0/a",)


def test_questions_per_hour_come_from_the_mean_latency() -> None:
    """Latencies 10 s and 30 s: 20 s a question on average, 180 an hour (the median would say 20 too, so
    a third row at 60 s tells them apart: mean 33.3 s, 108 an hour); the cost table prints it."""
    rows = [{"dataset": "d", "pool": "p", "system": "direct", "seed": 0, "id": str(i), "gold": "1", "answer": "1",
             "correct": True, "tokens": 1, "calls": 1, "latency_s": s} for i, s in enumerate((10.0, 30.0, 60.0))]
    cell = summarize(rows)[("d", "direct")]
    assert cell.items_per_hour == pytest.approx(108.0)
    assert cost_table({("d", "direct"): cell}, ["d"], ["direct"]).splitlines()[-1].endswith("| 30.0 | 108 |")


def test_read_rows_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    """A new run starts from nothing."""
    assert read_rows(tmp_path / "none.jsonl") == []


def test_rescore_applies_the_current_scorer_but_keeps_code_verdicts() -> None:
    """A stored boxed working now scores right; a code row is not run again."""
    code = Item("HumanEval-0", "def f(): ...", "", kind="code")
    rows = [{"dataset": "gsm8k", "id": "arith-1", "answer": "3+4\\times2=11", "correct": False},
            {"dataset": "gsm8k", "id": "arith-1", "answer": "12", "correct": False},
            {"dataset": "humaneval", "id": "HumanEval-0", "answer": "def f(): return 1", "correct": True}]
    assert rescore(rows, {"gsm8k": [ARITH], "humaneval": [code]}) == 1
    assert [r["correct"] for r in rows] == [True, False, True]


def test_tool_systems_parse_and_count_their_calls() -> None:
    """direct-pot and symphony:tools=off are systems; a one-step chain makes no plan call, and a
    program that fell back to text is two calls."""
    from symphony.bench.contenders import symphony_calls
    from symphony.pipeline.service import ONE_STEP_NOTE

    assert parse_system("direct-pot").system == "direct-pot"
    assert parse_system("symphony:max_steps=1,tools=off").tools == "off"
    with pytest.raises(ValueError, match="tools must be one of on, off"):
        parse_system("symphony:tools=maybe")
    with pytest.raises(ValueError, match="--concurrency 1"):
        RunConfig(datasets=("gsm8k",), systems=(parse_system("symphony"), parse_system("symphony:tools=off")),
                  agent_models=("scripted:arith",), pool="p", seeds=(0,), limit=1, concurrency=2)
    one_step = {"plan": ONE_STEP_NOTE, "steps": [{"attempts": [{"tool": {"fallback": "text"}}]}]}
    planned = {"plan": "ok", "steps": [{"attempts": [{}]}, {"attempts": [{"tool": {"ok": True}}, {}]}]}
    assert symphony_calls({"chains": [{"trace": one_step}, {"trace": planned}]}) == 2 + 4
