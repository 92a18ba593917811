"""The hostile-peers bench against real node processes: each row reports what really happened."""

from __future__ import annotations

import pytest

from symphony.bench.hostile import hostile_scenario, markdown

pytestmark = pytest.mark.e2e


def test_hostile_rows_show_refusals_and_honest_tasks_untouched(tmp_path) -> None:
    result = hostile_scenario(tmp_path, attacks=["garbage", "cross-site"])
    garbage, cross = result["rows"]
    assert garbage["counted"].get("offence protocol_error", 0) > 0 and garbage["serving"]
    assert cross["acted"] == 0 and sum(v for k, v in cross["counted"].items() if k.startswith("api refused")) == 5
    for row in (garbage, cross):
        assert (row["honest_status"], row["honest_chains_ok"], row["honest_answer_right"]) == ("done", 3, True)
    assert result["records_unchanged"] and result["serving"]
    assert "| garbage on every protocol |" in "\n".join(markdown(result))
