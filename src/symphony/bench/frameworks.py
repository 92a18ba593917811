"""The fresh-problems comparison of issue 16: Symphony against AutoGen and CrewAI plan-and-solve teams
and one direct call, every system on the same model server behind one token-counting proxy.

Set-up, as the issue's table: llama-cpp-python's own OpenAI-compatible server (``python -m
llama_cpp.server``, started here on a free loopback port) serving a packaged model; in front of it a
``TokenMeter``, a reverse proxy that counts each system's calls, failed calls and tokens (the
``usage`` the server reports) under its own URL prefix, so a system's cost is what it made the
server do, not what it says it spent. The systems, each asked every problem in turn:

- ``direct``: one chat completion at temperature 0 with the problem as the user message;
- ``autogen`` / ``crewai``: ``bench.framework_teams``'s two-agent plan-then-solve teams, run by the
  frameworks' own Python (``make frameworks-venv``) as worker processes;
- ``symphony`` / ``symphony:KEY=VALUE,...``: ``agents`` real ``symphony node`` processes with
  ``--model openai:<proxy>``, asked through node 0's OpenAI endpoint, with its defaults or with the
  ``symphony`` extension's options (``max_steps=1,cots=5``).

Problems: a packaged dataset range (``--offset``/``--limit``) or a JSONL file of ``{"id",
"question", "answer"}`` (held-out problems). Rows go to ``frameworks.jsonl`` (the run resumes from
it) in the accuracy bench's format, and the report adds Symphony against each framework, paired
(McNemar) and by tokens.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final, Self

import httpx
from pydantic import ValidationError
from rich.console import Console

from symphony.api.app import AskRequest
from symphony.bench import framework_teams
from symphony.bench.accuracy import drop_partial_line, read_rows
from symphony.bench.datasets import Item, load_dataset
from symphony.bench.report import paired, render
from symphony.bench.scoring import score
from symphony.llm.llama_backend import PACKAGED_MODELS, ensure_model_file
from symphony.pipeline import extract_answer
from symphony.testing import NodeProcess, Swarm, llama_server, open_swarm, wait_for

RESULTS_FILE: Final = "frameworks.jsonl"
TEAMS: Final = tuple(framework_teams.TEAMS)  # "autogen", "crewai"
ANSWER_TIMEOUT_S: Final = 1800.0  # one problem, any system: a stuck system fails its row, not the run
_HOP_BY_HOP: Final = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Meter:
    """One caller's counts at the model server."""

    calls: int = 0
    failed: int = 0  # HTTP status >= 400, or no response
    unmetered: int = 0  # answered without a ``usage`` the proxy could read
    prompt_tokens: int = 0
    completion_tokens: int = 0
    in_flight: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def reported_usage(body: bytes) -> dict[str, int] | None:
    """The ``usage`` of a chat-completion response: a JSON body's, or the last event-stream chunk's that has one."""
    candidates = [body] if body.lstrip().startswith(b"{") else [
        line[5:] for line in body.splitlines() if line.startswith(b"data:") and line[5:].strip() != b"[DONE]"]
    for raw in reversed(candidates):
        try:
            usage = json.loads(raw).get("usage")
        except (ValueError, AttributeError):
            continue
        if isinstance(usage, dict):
            return {k: int(usage.get(k) or 0) for k in ("prompt_tokens", "completion_tokens")}
    return None


class TokenMeter:
    """A reverse proxy on 127.0.0.1: ``/<tag>/v1/...`` goes to ``upstream``'s ``/v1/...``, and the
    response's ``usage`` is added to ``tag``'s ``Meter``. A caller that hangs up (an abandoned call)
    is still charged: the server finishes the generation and the proxy reads its usage."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.meters: dict[str, Meter] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True

    def url(self, tag: str) -> str:
        """The OpenAI base URL (``.../v1``) whose calls are counted as ``tag``'s."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/{tag}/v1"

    def snapshot(self, tag: str) -> Meter:
        with self.lock:
            m = self.meters.setdefault(tag, Meter())
            return Meter(m.calls, m.failed, m.unmetered, m.prompt_tokens, m.completion_tokens, m.in_flight)

    def _record(self, tag: str, status: int | None, body: bytes, *, model_call: bool) -> None:
        """Count a finished request; only ``model_call``s (POSTs) are calls: a GET lists models, it spends nothing."""
        usage = reported_usage(body) if status is not None and status < 400 else None
        with self.lock:
            m = self.meters.setdefault(tag, Meter())
            m.in_flight -= 1
            if not model_call:
                return
            m.calls += 1
            if status is None or status >= 400:
                m.failed += 1
            elif usage is None:
                m.unmetered += 1
            else:
                m.prompt_tokens += usage["prompt_tokens"]
                m.completion_tokens += usage["completion_tokens"]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        meter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the connection closes after each response: no framing to rewrite

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the meters are the record."""

            def _forward(self) -> None:
                tag, _, rest = self.path.lstrip("/").partition("/")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                with meter.lock:
                    meter.meters.setdefault(tag, Meter()).in_flight += 1
                status: int | None = None
                seen = bytearray()
                try:
                    with httpx.Client(timeout=None) as client, client.stream(
                            self.command, f"{meter.upstream}/{rest}", content=body, headers=headers) as response:
                        status = response.status_code
                        self.send_response(status)
                        for key, value in response.headers.items():
                            if key.lower() not in _HOP_BY_HOP and key.lower() != "content-encoding":
                                self.send_header(key, value)
                        self.end_headers()
                        for chunk in response.iter_bytes():
                            seen += chunk
                            try:
                                self.wfile.write(chunk)
                            except OSError:
                                pass  # the caller hung up; keep reading: the server still spends the tokens
                except httpx.HTTPError:
                    if status is None:
                        self.send_error(502, "model server unreachable")
                finally:
                    meter._record(tag, status, bytes(seen), model_call=self.command == "POST")

            do_GET = do_POST = _forward

        return Handler

    def settle(self, tag: str, timeout: float) -> None:
        """Wait until ``tag`` has no call in flight (an abandoned one finishing), so its counts are final."""
        wait_for(lambda: self.snapshot(tag).in_flight == 0, timeout=timeout, what=f"{tag}'s calls to finish",
                 interval=0.2)

    def __enter__(self) -> Self:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class FrameworksConfig:
    """What one comparison runs, on which problems and model, and where it writes."""

    systems: tuple[str, ...] = ("direct", "autogen", "crewai", "symphony")
    dataset: str = "gsm8k"
    offset: int = 0
    limit: int = 20
    problems: Path | None = None  # a JSONL file of {"id", "question", "answer"}: replaces dataset/offset/limit
    model: str = "qwen2.5-coder-0.5b"
    agents: int = 3
    server_threads: int = 2
    frameworks_python: Path = Path(".venv-frameworks/bin/python")
    out_dir: Path = Path("bench-results/frameworks")

    def __post_init__(self) -> None:
        for s in self.systems:
            if s.partition(":")[0] not in ("direct", "symphony", *TEAMS):
                raise ValueError(f"unknown system {s!r}; expected direct, autogen, crewai or symphony[:k=v,...]")
            try:  # checked as the node will check them (the options of POST /v1/tasks), before any model loads
                AskRequest.model_validate({"question": "?", **symphony_options(s)})
            except ValidationError as exc:
                raise ValueError(f"system {s!r}: {exc.errors()[0]['msg']} ({exc.errors()[0]['loc']})") from None
        if self.model not in PACKAGED_MODELS:
            raise ValueError(f"unknown model {self.model!r}; expected one of {sorted(PACKAGED_MODELS)}")

    @property
    def pool(self) -> str:
        return f"{self.model}@llama-server"

    @property
    def dataset_name(self) -> str:
        return self.problems.stem if self.problems else self.dataset


def load_problems(config: FrameworksConfig) -> list[Item]:
    """The problems: the JSONL file's (number answers), else the dataset's ``offset``/``limit`` range."""
    if config.problems is None:
        return load_dataset(config.dataset)[config.offset: config.offset + config.limit]
    rows = [json.loads(line) for line in config.problems.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Item(id=str(r["id"]), question=str(r["question"]), gold=str(r["answer"])) for r in rows]


def symphony_options(system: str) -> dict[str, Any]:
    """The ``symphony`` extension of a ``symphony:k=v,...`` system (numbers as ints); {} for the defaults."""
    options: dict[str, Any] = {}
    for part in filter(None, system.partition(":")[2].split(",")):
        key, _, value = part.partition("=")
        options[key] = int(value) if value.isdigit() else value
    return options


class Contestants:
    """The running systems: the meter, the teams' worker processes and the Symphony swarm."""

    def __init__(self, config: FrameworksConfig, meter: TokenMeter, stack: ExitStack) -> None:
        self.config = config
        self.meter = meter
        self.workers: dict[str, subprocess.Popen[str]] = {}
        self.node: NodeProcess | None = None
        self.stack = stack

    def start_team(self, team: str) -> subprocess.Popen[str]:
        python = self.config.frameworks_python
        if not python.exists():
            raise FileNotFoundError(f"{python} is missing: `make frameworks-venv` installs AutoGen and CrewAI")
        src = Path(__file__).resolve().parents[2]
        log = self.stack.enter_context((self.config.out_dir / f"{team}.log").open("a"))
        proc = subprocess.Popen(
            [str(python), "-m", "symphony.bench.framework_teams", team, "--base-url", self.meter.url(team),
             "--model", self.config.model], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
            env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}, start_new_session=True)
        self.stack.callback(proc.kill)
        return proc

    def start_swarm(self) -> NodeProcess:
        swarm: Swarm = self.stack.enter_context(open_swarm(self.config.out_dir / "nodes"))
        spec = f"openai:{self.meter.url('symphony')}#{self.config.model}"
        boot = swarm.spawn("n0", args=("--model", spec)).wait_ready()
        rest = [swarm.spawn(f"n{i}", bootstrap=boot, args=("--model", spec)) for i in range(1, self.config.agents)]
        agents = {boot.agent_id, *(n.wait_ready().agent_id for n in rest)}
        wait_for(lambda: agents <= {a for a, r in boot.ledger().items() if "planner" in r["tags"]},
                 timeout=60, what="every model node in the ledger as a planner")
        return boot

    def ask(self, system: str, item: Item) -> tuple[str, dict[str, Any]]:
        """``system``'s final text for ``item`` and what else its reply says (reported usage, degradation)."""
        name = system.partition(":")[0]
        if name == "direct":
            return self._ask_direct(item), {}
        if name in TEAMS:
            return self._ask_team(name, item), {}
        return self._ask_symphony(symphony_options(system), item)

    def _ask_direct(self, item: Item) -> str:
        response = httpx.post(f"{self.meter.url('direct')}/chat/completions", timeout=ANSWER_TIMEOUT_S, json={
            "model": self.config.model, "temperature": 0, "max_tokens": 1024,
            "messages": [{"role": "user", "content": item.question}]})
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"])

    def _ask_team(self, team: str, item: Item) -> str:
        if team not in self.workers:
            self.workers[team] = self.start_team(team)
        worker = self.workers[team]
        assert worker.stdin is not None and worker.stdout is not None
        worker.stdin.write(json.dumps({"id": item.id, "question": item.question}) + "\n")
        worker.stdin.flush()
        reply = json.loads(worker.stdout.readline() or '{"error": "the worker exited (see its log)"}')
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return str(reply["answer"])

    def _ask_symphony(self, options: dict[str, Any], item: Item) -> tuple[str, dict[str, Any]]:
        self.node = self.node or self.start_swarm()
        body: dict[str, Any] = {"model": "symphony", "messages": [{"role": "user", "content": item.question}]}
        if options:
            body["symphony"] = options
        response = httpx.post(str(self.node.info["api"]) + "/v1/chat/completions", json=body,
                              headers=self.node.api_headers(), timeout=ANSWER_TIMEOUT_S)
        failure = response.json().get("error", {}) if response.is_error else {}
        if "usage" in failure.get("symphony", {}):  # the network failed: no answer, but what it spent
            return "", {"reported_tokens": failure["symphony"]["usage"]["total_tokens"],
                        "error": str(failure.get("message", ""))[:500]}
        response.raise_for_status()
        data = response.json()
        extension = data.get("symphony", {})
        return str(data["choices"][0]["message"]["content"]), {
            "reported_tokens": data["usage"]["total_tokens"], "degraded": extension.get("degraded", []),
            "chains": len(extension.get("trace", {}).get("chains", []))}


def answer_row(contestants: Contestants, system: str, item: Item, dataset: str, pool: str) -> dict[str, Any]:
    """One system's row for one problem: the answer, whether it is right, and the metered cost."""
    tag = system.partition(":")[0]
    before = contestants.meter.snapshot(tag)
    start = time.monotonic()
    try:
        text, extra = contestants.ask(system, item)
        error = None
    except (httpx.HTTPError, RuntimeError, KeyError, ValueError) as exc:
        text, extra, error = "", {}, f"{type(exc).__name__}: {exc}"[:500]
    latency = time.monotonic() - start
    contestants.meter.settle(tag, timeout=ANSWER_TIMEOUT_S)
    after = contestants.meter.snapshot(tag)
    answer = extract_answer(text, item.kind, letters=item.letters) if text else None
    return {"dataset": dataset, "pool": pool, "system": system, "seed": 0, "id": item.id, "gold": item.gold,
            "correct": score(item, answer), "answer": answer, "text": text[-2000:], "error": error,
            "tokens": after.tokens - before.tokens, "calls": after.calls - before.calls,
            "failed_calls": after.failed - before.failed, "unmetered_calls": after.unmetered - before.unmetered,
            "latency_s": latency, **extra}


def run(config: FrameworksConfig, console: Console) -> list[dict[str, Any]]:
    """Answer what ``frameworks.jsonl`` lacks, every system on a problem in turn; returns all rows."""
    config.out_dir.mkdir(parents=True, exist_ok=True)
    path = config.out_dir / RESULTS_FILE
    drop_partial_line(path)
    done = {(r["system"], r["id"]) for r in read_rows(path)}
    items = load_problems(config)
    todo = [(item, s) for item in items for s in config.systems if (s, item.id) not in done]
    console.print(f"{len(done)} rows already in {path}; {len(todo)} to answer")
    if not todo:
        return read_rows(path)
    model_file = ensure_model_file(PACKAGED_MODELS[config.model])
    with ExitStack() as stack:
        url = stack.enter_context(llama_server(model_file, log=config.out_dir / "server.log",
                                               threads=config.server_threads, alias=config.model))
        meter = stack.enter_context(TokenMeter(url.removesuffix("/v1")))
        contestants = Contestants(config, meter, stack)
        for item, system in todo:
            row = answer_row(contestants, system, item, config.dataset_name, config.pool)
            with path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            console.print(f"{item.id} {system:28s} {'✓' if row['correct'] else '✗'} answer={row['answer']!r} "
                          f"gold={item.gold!r} {row['latency_s']:.0f}s {row['tokens']} tok {row['calls']} calls"
                          + (f" ERROR {row['error']}" if row["error"] else ""), markup=False)
    return read_rows(path)


def framework_table(rows: list[dict[str, Any]], dataset: str, systems: tuple[str, ...]) -> str:
    """Each Symphony system against each framework team: paired counts, McNemar p, and its tokens per
    problem as a multiple of the team's (the issue's bar: the best team's accuracy at <= 3x its tokens)."""
    if not any(s in TEAMS for s in systems):
        return "(no framework team in this run)"
    tokens = {s: [r["tokens"] for r in rows if r["system"] == s] for s in systems}
    mean = {s: sum(t) / len(t) for s, t in tokens.items() if t}
    header = ("| Symphony system | framework | both right | only framework | only Symphony | neither | McNemar p "
              "| tokens vs framework |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for mine in (s for s in systems if s.startswith("symphony")):
        for team in (s for s in systems if s in TEAMS):
            p = paired(rows, dataset, team, mine)
            if p.n and mean.get(team):
                ratio = mean[mine] / mean[team]
                lines.append(f"| {mine} | {team} | {p.both} | {p.only_base} | {p.only_other} | {p.neither} | "
                             f"{p.test[0]:.3f} | {ratio:.2f}x |")
    return "\n".join(lines)


def failure_line(system: str, rows: list[dict[str, Any]]) -> str:
    """What went wrong for ``system``: failed server calls, calls without a readable usage (their tokens are
    missing from its count), problems without an answer and, for Symphony, how often the usage its
    replies reported differed from what the server counted."""
    line = (f"- {system}: {sum(r['failed_calls'] for r in rows)} failed server calls, "
            f"{sum(r['unmetered_calls'] for r in rows)} calls without a usage, "
            f"{sum(1 for r in rows if r['error'])} problems without an answer")
    reported = [(r["reported_tokens"], r["tokens"]) for r in rows if "reported_tokens" in r]
    if reported:
        under = [f"{mine} vs {counted}" for mine, counted in reported if mine < counted]
        line += (f"; reported usage equal to the count on {sum(m == c for m, c in reported)} of {len(reported)}, "
                 f"above it on {sum(m > c for m, c in reported)}, below on {len(under)}"
                 + (f" ({', '.join(under)})" if under else ""))
    return line


def run_frameworks_bench(config: FrameworksConfig, *, report_only: bool = False,
                         console: Console | None = None) -> str:
    """Run (unless ``report_only``) and write ``frameworks.md``: the accuracy bench's tables plus
    Symphony against each framework, and the calls each system's server saw fail. Returns the report."""
    console = console or Console()
    rows = read_rows(config.out_dir / RESULTS_FILE) if report_only else run(config, console)
    ids = {item.id for item in load_problems(config)}
    rows = [r for r in rows if r["id"] in ids and r["system"] in config.systems]
    dataset = config.dataset_name
    failures = "\n".join(failure_line(s, [r for r in rows if r["system"] == s]) for s in config.systems)
    answered = len({r["id"] for r in rows})
    text = "\n".join([
        f"# Fresh-problems comparison: {dataset}, {answered} of {len(ids)} problems answered, {config.pool}", "",
        render(rows, datasets=[dataset], systems=list(config.systems), out_dir=config.out_dir, plots=False),
        "## Symphony against the frameworks", framework_table(rows, dataset, config.systems), "",
        "## Failures", failures, ""])
    (config.out_dir / "frameworks.md").write_text(text, encoding="utf-8")
    console.print(text, markup=False, soft_wrap=True)
    return text


__all__ = ["FrameworksConfig", "Meter", "TokenMeter", "failure_line", "framework_table", "load_problems",
           "reported_usage", "run", "run_frameworks_bench", "symphony_options"]
