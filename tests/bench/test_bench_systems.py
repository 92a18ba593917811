"""The systems report: ratios against both baselines and the by-kind byte lines."""

from __future__ import annotations

from symphony.bench.systems import SystemsResults, markdown


def _row(arch: str, kb: float, p50: float) -> dict[str, object]:
    return {"arch": arch, "n": 100, "tasks": 6, "failed": 0, "p50_s": p50, "p95_s": p50, "tasks_per_min": 10.0,
            "overhead": 0.01, "breakdown_ms": dict.fromkeys(("model", "queue", "query", "beacon", "transfer", "vote",
                                                              "other"), 1.0),
            "bytes_per_task": int(kb * 1000), "messages_per_task": 10.0,
            "by_kind": {"task": {"bytes": int(kb * 1000), "messages": 10.0, "bytes_per_message": int(kb * 100)}}}


def test_markdown_reports_both_baselines_against_symphony_and_bytes_by_kind() -> None:
    rows = [_row("symphony", 40.0, 17.0), _row("centralized", 60.0, 17.0), _row("groupchat", 800.0, 34.0)]
    text = markdown(SystemsResults(config={}, rows=rows))
    assert "- N = 100: relay hub / Symphony bytes per task = 1.5x, P50 = 1.0x" in text
    assert "- N = 100: GroupChat / Symphony bytes per task = 20.0x, P50 = 2.0x" in text
    assert "- groupchat N = 100, bytes per task by kind: task 800.0 kB (10 x 80000 B)" in text
