"""Terminal rendering shared by ``symphony ask``, ``status`` and ``demo``: the answer, the
weighted vote and the trace (which planner drove each chain, which executor the Beacon chose
for every sub-task, match scores, latencies)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

#: Width when the output is not a terminal: wide enough that Rich never hard-wraps a line or cuts a
#: table cell (it would otherwise wrap at 80 columns, splitting multiaddrs and peer IDs in a log).
UNWRAPPED_WIDTH = 100_000


def make_console() -> Console:
    """A console for stdout: Rich's defaults on a terminal; when piped or logged, no hard wrapping and no
    cut cells, so every address and ID that is printed can be copied whole from one line."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=UNWRAPPED_WIDTH, soft_wrap=True)


console = make_console()


def print_json(data: object) -> None:
    """``data`` as indented JSON on stdout, never wrapped or coloured (for scripts and ``jq``)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def print_error(message: object, *, label: str = "error") -> None:
    """``error: message`` in red, never hard-wrapped (scripts grep it) and never read as markup."""
    console.print(f"[red]{label}:[/red] {escape(str(message))}", highlight=False, soft_wrap=True)


def agent_label(agent_id: str, names: Mapping[str, str]) -> str:
    """``name(…last 6 of the ID)`` when the name is known, else ``…last 8``."""
    name = names.get(agent_id)
    return f"{name}(…{agent_id[-6:]})" if name else f"…{agent_id[-8:]}"


def adaptive_line(adaptive: Mapping[str, Any]) -> str:
    """The trace's ``adaptive`` record in words: ``2 of at most 3 launched (2 at once): stopped, agreed``."""
    line = f"{adaptive['launched']} of at most {adaptive['max']} launched ({adaptive['first']} at once)"
    stopped = adaptive.get("stopped") or "undecided"
    why = {"agreed": f"{adaptive['agree']} chains agreed", "passed": "a chain passed every example",
           "max_chains": "no agreement within the most chains", "deadline": "no time left for another chain",
           "off": adaptive.get("detail") or "adaptive chains off"}.get(stopped, stopped)
    return f"{line}: stopped, {why}"


def print_trace(trace: dict[str, Any], names: Mapping[str, str] = {}) -> None:
    """The vote, then each chain's planner and its steps; ``names`` maps agent IDs to names."""
    console.print(f"[bold]answer:[/bold] {escape(str(trace['answer']))}   ({trace['latency_ms'] / 1000:.1f} s, "
                  f"{trace['prompt_tokens'] + trace['completion_tokens']} tokens)")
    for degraded in trace.get("degraded", []):  # never silent: what ran worse than designed (pipeline.trace)
        chain = f" (c{degraded['chain']})" if degraded.get("chain") is not None else ""
        console.print(f"[yellow]degraded{chain}:[/yellow] {escape(degraded['kind'])}: {escape(degraded['detail'])}")
    if checks := trace.get("checks"):  # verification before the vote (pipeline.verification)
        console.print("[bold]examples passed:[/bold] " + ", ".join(
            f"{c['chain']} {'?' if c['passed'] is None else c['passed']}/{c['total']}{'' if c['voted'] else ' (not voting)'}"
            for c in checks))
    if adaptive := trace.get("adaptive"):  # adaptive chains (pipeline.adaptive): how many ran, and why no more
        console.print(f"[bold]chains:[/bold] {escape(adaptive_line(adaptive))}")
    vote = Table("answer", "weight", "chains", title="weighted vote (weight = mean Beacon score of the chain)")
    for tally in trace["vote"]:
        vote.add_row(escape(str(tally["answer"])), f"{tally['weight']:.3f}", ", ".join(tally["chains"]))
    console.print(vote)
    for chain in trace["chains"]:
        status = "ok" if chain["ok"] else f"failed: {chain['error']}"
        console.print(f"[bold]chain c{chain['index']}[/bold] planner {escape(agent_label(chain['planner'], names))} "
                      f"(score {chain['planner_score']:.3f}, weight {chain['weight']:.3f}, plan "
                      f"{escape(str(chain['trace'].get('plan', '?')))}, {chain['latency_ms'] / 1000:.1f} s) -> "
                      f"{escape(chain['answer'] or '-')} {escape(f'[{status}]')}")
        for n, step in enumerate(chain["trace"].get("steps", []), 1):
            who = ", ".join(f"{agent_label(a['executor'], names)} (score {a['score']:.2f}, "
                            f"{a['latency_ms'] / 1000:.1f} s{'' if a['ok'] else ', failed'})"
                            for a in step["attempts"])
            console.print(f"   {n}. {escape(step['question'][:90])}\n      -> {escape(step['answer'][:60] or '-')}"
                          f"  by {escape(who or 'nobody')}")
