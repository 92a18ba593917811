"""Report pieces on hand-built result rows: which pairs are compared, McNemar's p, chain statistics.

Every expected number here is computed in the test from the rows it builds (binomial sums,
chi-square by its formula, counts of the steps written below), not read back from the code.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from symphony.bench.report import (
    EXACT_BELOW,
    chain_stats,
    chain_table,
    comparison_table,
    comparisons,
    mcnemar,
    paired,
    render,
)
from symphony.pipeline.executor import STEP_MAX_TOKENS

QUESTION = "Ann has 3 bags of 4 apples and eats 2. How many apples are left?"


def _row(system: str, item: str, correct: bool, *, pool: str = "p", seed: int = 0, **extra: Any) -> dict[str, Any]:
    return {"dataset": "gsm8k", "pool": pool, "system": system, "seed": seed, "id": item, "gold": "10",
            "answer": "10" if correct else "7", "correct": correct, "tokens": 1, "calls": 1, "latency_s": 1.0,
            **extra}


def test_comparisons_pair_ablations_with_their_base_and_pools_with_the_first() -> None:
    """direct in the same pool, the base system of an ablation, the same system in the first pool."""
    systems = ["direct [homo]", "symphony [homo]", "symphony:cots=1 [homo]", "direct [mixed]", "symphony [mixed]",
               "symphony:strategy=random [mixed]"]
    assert comparisons(systems) == [
        ("direct [homo]", "symphony [homo]"),
        ("direct [homo]", "symphony:cots=1 [homo]"),
        ("symphony [homo]", "symphony:cots=1 [homo]"),
        ("direct [homo]", "direct [mixed]"),
        ("direct [mixed]", "symphony [mixed]"),
        ("symphony [homo]", "symphony [mixed]"),
        ("direct [mixed]", "symphony:strategy=random [mixed]"),
        ("symphony [mixed]", "symphony:strategy=random [mixed]"),
    ]
    assert comparisons(["direct", "sc:samples=3"]) == [("direct", "sc:samples=3")]  # no plain "sc" run: no ablation pair


def test_mcnemar_is_exact_for_few_discordant_pairs_and_chi_square_beyond() -> None:
    """Exact: 2 * P(X <= 1) for X ~ Bin(6, 1/2); chi-square with continuity correction from EXACT_BELOW on."""
    p, test = mcnemar(1, 5)
    assert test == "exact" and p == pytest.approx(2 * (1 + 6) / 2**6)
    b, c = 5, EXACT_BELOW - 5 + 10  # 30 discordant pairs
    x2 = (abs(b - c) - 1) ** 2 / (b + c)
    p, test = mcnemar(b, c)
    assert test == "chi2" and p == pytest.approx(math.erfc(math.sqrt(x2 / 2)))
    assert 0 < p < 0.01  # 5 vs 25 is a clear difference
    assert mcnemar(0, 0) == (1.0, "exact")


def test_comparison_table_counts_pairs_and_drops_empty_rows() -> None:
    """symphony:cots=1 vs symphony on 4 shared items; the mixed pool shares no item with homo's symphony: no row."""
    outcomes = {"symphony": [True, True, False, False], "symphony:cots=1": [True, False, True, True]}
    rows = [_row(s, f"q{i}", ok, pool="homo") for s, oks in outcomes.items() for i, ok in enumerate(oks)]
    rows.append(_row("symphony", "other", True, pool="mixed"))
    table = comparison_table(rows, ["gsm8k"], ["symphony [homo]", "symphony:cots=1 [homo]", "symphony [mixed]"])
    # both right: q0; only base: q1; only ablation: q2, q3; neither: none. Exact p = 2 * P(X <= 1 | n=3) = 2 * 4/8.
    assert "| gsm8k | symphony [homo] | symphony:cots=1 [homo] | 1 | 1 | 2 | 0 | 1.000 | exact |" in table
    assert "symphony [mixed]" not in table
    assert paired(rows, "gsm8k", "symphony [homo]", "symphony [mixed]").n == 0


def _step(question: str, answer: str, tokens: int, *, ok: bool = True, attempts: int = 1) -> dict[str, Any]:
    return {"question": question, "answer": answer, "ok": ok, "completion_tokens": tokens,
            "attempts": [{"executor": "x"}] * attempts}


def _chain(index: int, answer: str, steps: list[dict[str, Any]], *, ok: bool = True) -> dict[str, Any]:
    return {"index": index, "ok": ok, "answer": answer if ok else "", "trace": {"steps": steps}}


def _symphony_row(correct: bool) -> dict[str, Any]:
    chains = [
        _chain(0, "10", [_step("How many apples in 3 bags?", "12", 80), _step(QUESTION, "10", 120)]),
        _chain(1, "7", [_step("How many apples in 3 bags?", "\\[ 3 + 4 =", STEP_MAX_TOKENS),
                        _step(QUESTION, "7", STEP_MAX_TOKENS)]),
        _chain(2, "", [_step("Apples per bag?", "four", 2 * STEP_MAX_TOKENS, attempts=2),
                       _step("How many eaten?", "", 2 * STEP_MAX_TOKENS - 1, ok=False, attempts=2)], ok=False),
        _chain(2, "7", [_step("What is 3 * 4 - 2?", "7", 300)]),  # the backup planner's one-step chain
    ]
    trace = {"question": QUESTION, "answer_kind": "number", "answer": "10" if correct else "7", "chains": chains}
    return {**_row("symphony", "q1", correct, trace=trace), "blacklisted": {"0": ["2"], "1": ["0", "2"]}}


def test_chain_stats_count_chains_answers_gold_and_steps() -> None:
    """Counted by hand from the trace above."""
    stats = chain_stats(_symphony_row(correct=False))
    assert stats is not None
    assert (stats.chains, stats.attempts, stats.distinct) == (3, 4, 2)  # answers 10, 7, 7
    assert stats.gold_in_chain and not stats.vote_right
    # intermediate answers that came back: "12", "\[ 3 + 4 =", "four"; the failed step gave none
    assert (stats.intermediate, stats.non_numeric) == (3, 2)
    # at the cap: chain 1's step and final (each its whole budget), chain 2's first step (2 x the budget over
    # 2 attempts); not chain 2's second (one short), not the backup's one final step (300 of 512)
    assert (stats.steps, stats.capped) == (7, 3)
    assert stats.blacklisted == 2, "agents 0 and 2, each counted once"
    assert chain_stats(_row("direct", "q1", True, trace={"raw": "..."})) is None


def test_chain_table_lists_each_question_and_the_totals() -> None:
    """One line per question, then the totals the trace analysis quotes."""
    rows = [_symphony_row(correct=False), {**_symphony_row(correct=True), "id": "q2"}, _row("direct", "q1", True)]
    table = chain_table(rows, "gsm8k", "symphony")
    assert "| 0/q1 | 3 (4) | 2 | yes | no | 2/3 | 3/7 | 2 |" in table
    assert "| 0/q2 | 3 (4) | 2 | yes | yes | 2/3 | 3/7 | 2 |" in table
    assert ("All chains differ in 0/2 questions; a chain held the gold in 2/2, the vote returned it in 1 of those; "
            "4/6 intermediate answers non-numeric; 6/14 steps at the token cap.") in table
    assert chain_table(rows, "gsm8k", "direct") == ""


def test_code_chains_are_not_judged_for_the_gold() -> None:
    """A code question's gold is the canonical solution, which no chain repeats word for word: the table says
    "not judged" rather than "no chain held it"."""
    row = _symphony_row(correct=True)
    row["trace"] = {**row["trace"], "answer_kind": "code"}
    stats = chain_stats(row)
    assert stats is not None and stats.gold_in_chain is None
    table = chain_table([row], "gsm8k", "symphony")
    assert "| 0/q1 | 3 (4) | 2 | — | yes |" in table
    assert "whether a chain held the gold is not judged for code" in table and "held the gold in" not in table


def test_render_shows_the_comparisons_and_the_chain_section(tmp_path: Path) -> None:
    """The whole report carries both new sections; a run without Symphony traces has no chain section."""
    rows = [_symphony_row(correct=False), _row("direct", "q1", True)]
    text = render(rows, datasets=["gsm8k"], systems=["direct", "symphony"], out_dir=tmp_path, plots=False)
    assert "| gsm8k | direct | symphony | 0 | 1 | 0 | 0 | 1.000 | exact |" in text
    assert "## Symphony's chains and votes" in text and "| 0/q1 | 3 (4) |" in text
    plain = render(rows[1:], datasets=["gsm8k"], systems=["direct"], out_dir=tmp_path, plots=False)
    assert "chains and votes" not in plain
