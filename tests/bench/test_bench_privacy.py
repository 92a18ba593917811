"""``symphony bench privacy``: selection quality falls with the privacy noise, and is exact without it."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from symphony.bench.privacy import PrivacyConfig, run_privacy_bench


def test_noise_costs_selection_quality_and_none_costs_nothing(tmp_path: Path) -> None:
    cfg = PrivacyConfig(sigmas=(0.0, 1.0), agents=60, rounds=40, seeds=1)
    results = run_privacy_bench(cfg, tmp_path, Console(file=None, quiet=True))
    exact, noisy = results["rows"]
    assert (exact["best_found"], exact["shortfall"], exact["capped"]) == (1.0, 0.0, 0.0)
    assert noisy["best_found"] < 1.0 and noisy["shortfall"] > 0 and noisy["capped"] > 0
    assert json.loads((tmp_path / "privacy.json").read_text())["rows"] == results["rows"]
    assert "| 1 |" in (tmp_path / "privacy.md").read_text()
