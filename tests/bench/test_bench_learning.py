"""``symphony bench learning``: the noisy stand-in and a tiny run of every system (virtual time)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from symphony.bench.learning import SYSTEMS, LearningConfig, NoisyModel, run_learning_bench

STEP = [{"role": "user", "content": "Problem: What is 2 + 3 * 4?\nStep: Compute 2 + 3 * 4."}]


async def test_noisy_model_is_wrong_at_its_error_rate_on_steps_only() -> None:
    right, wrong = NoisyModel(0.0, random.Random(0)), NoisyModel(1.0, random.Random(0))
    assert "\\boxed{14}" in (await right.chat(STEP)).text
    assert "\\boxed{14}" not in (await wrong.chat(STEP)).text and "\\boxed{" in (await wrong.chat(STEP)).text
    plan = [{"role": "user", "content": "Problem: What is 2 + 3 * 4?"}]
    assert (await wrong.chat(plan)).text == (await right.chat(plan)).text, "plans are never corrupted"


def test_a_tiny_run_writes_every_system(tmp_path: Path) -> None:
    result = run_learning_bench(LearningConfig(error_rates=(0.0, 1.0, 1.0), tasks=4, seeds=(0,)), tmp_path)
    assert list(result["systems"]) == list(SYSTEMS)
    saved = json.loads((tmp_path / "learning.json").read_text())
    assert saved["systems"] == result["systems"]
    assert "| linucb |" in (tmp_path / "learning.md").read_text()
    for parts in result["systems"].values():
        assert 0.0 <= parts["all"]["accuracy"] <= 1.0 and 0.0 <= parts["all"]["to_best"] <= 1.0
