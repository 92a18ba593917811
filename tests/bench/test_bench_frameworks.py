"""The fresh-problems comparison's parts (``bench.frameworks``, ``bench.framework_teams``): the
token-counting proxy against a real HTTP upstream on 127.0.0.1 (a stub model server: the proxy is
the unit under test), usage parsing, the teams' worker protocol and the report's framework table."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from symphony.bench import framework_teams
from symphony.bench.frameworks import (
    FrameworksConfig,
    TokenMeter,
    failure_line,
    framework_table,
    load_problems,
    reported_usage,
    symphony_options,
)
from symphony.testing import wait_for


def test_usage_is_read_from_a_json_body_or_the_stream_chunk_that_has_it() -> None:
    assert reported_usage(b'{"usage": {"prompt_tokens": 7, "completion_tokens": 3}}') == {
        "prompt_tokens": 7, "completion_tokens": 3}
    stream = (b'data: {"choices": [{"delta": {"content": "4"}}], "usage": null}\n\n'
              b'data: {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1}}\n\ndata: [DONE]\n\n')
    assert reported_usage(stream) == {"prompt_tokens": 5, "completion_tokens": 1}
    assert reported_usage(b'data: {"choices": []}\n\ndata: [DONE]\n\n') is None
    assert reported_usage(b"<html>bad gateway</html>") is None


def test_symphony_systems_carry_their_options_as_the_request_extension() -> None:
    assert symphony_options("symphony") == {}
    assert symphony_options("symphony:max_steps=1,cots=5,strategy=random") == {
        "max_steps": 1, "cots": 5, "strategy": "random"}


def test_config_rejects_unknown_systems_and_models() -> None:
    with pytest.raises(ValueError, match="unknown system"):
        FrameworksConfig(systems=("direct", "langgraph"))
    with pytest.raises(ValueError, match="unknown model"):
        FrameworksConfig(model="gpt-4")


def test_held_out_problems_come_from_a_jsonl_file(tmp_path: Path) -> None:
    path = tmp_path / "fresh.jsonl"
    path.write_text('{"id": "p1", "question": "2 + 2?", "answer": 4}\n\n'
                    '{"id": 2, "question": "3 * 3?", "answer": "9"}\n')
    config = FrameworksConfig(problems=path)
    assert [(i.id, i.question, i.gold, i.kind) for i in load_problems(config)] == [
        ("p1", "2 + 2?", "4", "number"), ("2", "3 * 3?", "9", "number")]
    assert config.dataset_name == "fresh"


class _Upstream(BaseHTTPRequestHandler):
    """A stand-in model server: ``GET /v1/models`` lists a model, ``/v1/ok`` answers with usage,
    ``/v1/fail`` with HTTP 500,
    ``/v1/held`` only once the test sets ``release`` (after its caller has hung up)."""

    release = threading.Event()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = b'{"data": [{"id": "stub"}]}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/v1/fail":
            self.send_response(500)
            self.end_headers()
            return
        if self.path == "/v1/held":
            self.release.wait(timeout=30)
        body = json.dumps({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 4}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        _Upstream.release.set()
        server.shutdown()
        server.server_close()


def test_meter_charges_each_tag_what_the_server_reports_including_failures_and_abandoned_calls(
        upstream: str) -> None:
    _Upstream.release.clear()
    with TokenMeter(upstream) as meter:
        ok = httpx.post(meter.url("alpha") + "/ok", json={})
        assert ok.status_code == 200 and ok.json()["usage"]["prompt_tokens"] == 10  # passed through untouched
        httpx.post(meter.url("alpha") + "/ok", json={})
        assert httpx.get(meter.url("alpha") + "/models").json()["data"][0]["id"] == "stub"  # a probe, not a call
        assert httpx.post(meter.url("alpha") + "/fail", json={}).status_code == 500
        with pytest.raises(httpx.ReadTimeout):  # the caller gives up, as Symphony abandons a late step
            httpx.post(meter.url("beta") + "/held", json={}, timeout=0.5)
        wait_for(lambda: meter.snapshot("beta").in_flight == 1, timeout=10, what="the held call in flight")
        _Upstream.release.set()  # the server finishes the abandoned generation all the same
        meter.settle("beta", timeout=10)
        alpha, beta = meter.snapshot("alpha"), meter.snapshot("beta")
    assert (alpha.calls, alpha.failed, alpha.tokens) == (3, 1, 28)
    assert (beta.calls, beta.failed, beta.tokens, beta.in_flight) == (1, 0, 14, 0)


def test_team_worker_answers_one_line_per_question_and_keeps_stdout_for_replies(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A question the team fails on is that line's error, not the worker's end; whatever a framework
    prints goes to stderr, so the harness reads only replies."""
    questions = [{"id": "a", "question": "2 + 2?"}, {"id": "b", "question": "boom"}, {"id": "c", "question": "1 + 1?"}]
    stdin = io.StringIO("".join(json.dumps(q) + "\n" for q in questions))
    stdout, stderr = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdin", stdin)
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(sys, "stderr", stderr)

    async def solve(question: str) -> str:
        print("framework chatter")
        if question == "boom":
            raise RuntimeError("the model server hung up")
        return {"2 + 2?": "Answer: 4", "1 + 1?": "Answer: 2"}[question]

    asyncio.run(framework_teams.serve(solve))
    replies = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert replies == [{"id": "a", "answer": "Answer: 4"},
                       {"id": "b", "error": "RuntimeError: the model server hung up"},
                       {"id": "c", "answer": "Answer: 2"}]
    assert stderr.getvalue().count("framework chatter") == 3


def test_framework_table_pairs_symphony_with_each_team_and_prices_it_in_their_tokens() -> None:
    def row(system: str, item: str, correct: bool, tokens: int) -> dict[str, object]:
        return {"dataset": "fresh", "pool": "p", "system": system, "seed": 0, "id": item, "correct": correct,
                "tokens": tokens}

    rows = [row("autogen", "1", True, 600), row("autogen", "2", False, 600), row("autogen", "3", False, 600),
            row("crewai", "1", True, 800), row("crewai", "2", True, 800), row("crewai", "3", False, 800),
            row("symphony", "1", True, 1500), row("symphony", "2", True, 1200), row("symphony", "3", True, 900)]
    table = framework_table(rows, "fresh", ("direct", "autogen", "crewai", "symphony"))
    lines = table.splitlines()[2:]
    assert len(lines) == 2
    # vs autogen: both right on 1, Symphony alone on 2 and 3; 1,200 mean tokens = 2x autogen's 600
    assert lines[0].startswith("| symphony | autogen | 1 | 0 | 2 | 0 |") and lines[0].endswith("| 2.00x |")
    assert lines[1].startswith("| symphony | crewai | 2 | 0 | 1 | 0 |") and lines[1].endswith("| 1.50x |")


def test_symphony_options_are_checked_as_the_endpoint_checks_them_before_any_model_loads() -> None:
    FrameworksConfig(systems=("symphony:max_steps=1,cots=5",))
    with pytest.raises(ValueError, match="symphony:cotz=5"):
        FrameworksConfig(systems=("symphony:cotz=5",))
    with pytest.raises(ValueError, match="symphony:cots=99"):
        FrameworksConfig(systems=("symphony:cots=99",))


def test_failure_line_shows_missing_usage_and_symphony_usage_against_the_count() -> None:
    def row(tokens: int, reported: int | None = None, **counts: int) -> dict[str, object]:
        base = {"failed_calls": 0, "unmetered_calls": 0, "error": None, "tokens": tokens, **counts}
        return base if reported is None else {**base, "reported_tokens": reported}

    team = failure_line("autogen", [row(700, unmetered_calls=1), row(800, failed_calls=2)])
    assert team == "- autogen: 2 failed server calls, 1 calls without a usage, 0 problems without an answer"
    mine = failure_line("symphony", [row(1000, 1000), row(1200, 1300), row(5629, 1103)])
    assert mine.endswith("; reported usage equal to the count on 1 of 3, above it on 1, below on 1 (1103 vs 5629)")
