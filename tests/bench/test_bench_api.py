"""The API overhead benchmark runs end to end at a tiny size and prints its table."""

from __future__ import annotations

from symphony.bench.api import run, table


async def test_api_bench_smoke() -> None:
    results = await run(n=2, stalled=1)
    assert {name: len(values) for name, values in results.items()} == {
        "rest": 2, "openai": 2, "openai-stream": 2, "rest, stalled": 2}
    assert "| openai-stream | 2 |" in table(results)
