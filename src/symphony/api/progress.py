"""One question's progress in words, from the node's bus events (``GET /v1/events``): the lines the
OpenAI endpoint streams as ``reasoning_content`` and ``symphony ask`` prints while the network works.

An initiator sees its own events: the planners it asked (``task_started``), each chain as it
returns (``chain_finished``, whose trace holds the plan and every step) and the vote. When it is a
planner itself it also sees its chain's plan and steps live (``plan_made``, ``step_assigned``,
``step_finished``); a remote planner's steps arrive with its chain.
"""

from __future__ import annotations

import re
from typing import Any

#: A chain's part of its task ID (``pipeline.initiator``): ``c{slot}``, or ``r{n}/c{slot}`` for a
#: planner's n-th further chain of the question (adaptive chains, or more chains than planners).
_CHAIN_SUFFIX = re.compile(r"(?:r(\d+)/)?c(\d+)")


def _short(agent_id: Any) -> str:
    text = str(agent_id)
    return text if len(text) <= 12 else f"{text[:6]}…{text[-4:]}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _chain_name(suffix: str) -> str:
    """A chain's task-ID suffix in words, named as the trace names it (``cli.render``): ``c3`` is
    "chain c3", ``r1/c3`` "chain c3 (its planner's 2nd)"; anything else is shown as it is."""
    match = _CHAIN_SUFFIX.fullmatch(suffix)
    if match is None:
        return suffix
    repeat, slot = match.groups()
    return f"chain c{slot}" + (f" (its planner's {_ordinal(int(repeat) + 1)})" if repeat else "")


def _chain_lines(chain: dict[str, Any]) -> str:
    slot = f"chain c{chain.get('index', '?')}"
    if not chain.get("ok"):
        return f"{slot}: planner {_short(chain.get('planner'))} failed: {str(chain.get('error', ''))[:200]}\n"
    steps = (chain.get("trace") or {}).get("steps", [])
    done = "".join(f"  {i + 1}. {str(s.get('question', ''))[:200]} → {str(s.get('answer', ''))[:200]}\n"
                   for i, s in enumerate(steps))
    return f"{slot}: planner {_short(chain.get('planner'))} answered {str(chain.get('answer', ''))[:200]!r}\n{done}"


def progress_line(event: dict[str, Any], task_id: str) -> str | None:
    """A line (ending in a newline) for a bus event of question ``task_id``; None for any other event."""
    data = event.get("data") or {}
    task = str(data.get("task", ""))
    if task != task_id and not task.startswith(task_id + "/"):
        return None
    slot = _chain_name(task[len(task_id) + 1:]) if task != task_id else None
    kind = event.get("type")
    if kind == "task_started":
        return f"Asked {len(data.get('planners', []))} planner(s) to plan chains of thought.\n"
    if kind == "plan_made":
        steps = "".join(f"  {i + 1}. {str(s)[:200]}\n" for i, s in enumerate(data.get("steps", [])))
        return f"{slot}: plan made ({data.get('plan')}):\n{steps}"
    if kind == "step_assigned":
        return f"{slot}: step {int(data.get('step', 0)) + 1} → executor {_short(data.get('executor'))}\n"
    if kind == "step_finished":
        verdict = (f"answered {str(data.get('answer', ''))[:200]!r}" if data.get("ok")
                   else f"failed ({str(data.get('error', ''))[:120]}), trying a backup")
        return f"{slot}: step {int(data.get('step', 0)) + 1} {verdict}\n"
    if kind == "chain_finished":
        return _chain_lines(data.get("chain") or {})
    if kind == "chain_launched":  # adaptive chains (pipeline.adaptive): the chains so far settled nothing
        planner = _short(data.get("planner"))
        return f"The chains so far do not settle it: chain c{data.get('chain')} → planner {planner}\n"
    if kind == "task_finished":
        return f"Vote: {str(data.get('answer', ''))[:200]!r}.\n"
    if kind == "task_failed":
        return "No chain returned a usable answer.\n"
    return None
