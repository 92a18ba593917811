"""AutoGen and CrewAI plan-and-solve teams: the other frameworks the fresh-problems comparison runs (issue 16).

This module runs in the frameworks' own virtual environment (``make frameworks-venv``: AutoGen 0.7.5
and CrewAI 1.15.30 pin libraries Symphony's environment does not share), as a worker process of
``bench.frameworks``: ``python -m symphony.bench.framework_teams autogen|crewai --base-url URL
--model NAME`` reads one JSON question per line on stdin (``{"id", "question"}``) and writes one
JSON line per answer on stdout (``{"id", "answer"}`` or ``{"id", "error"}``). It imports nothing
of Symphony, so it needs only the frameworks and the standard library.

Both teams are the two-agent plan-then-solve team of the issue's table: a planner writes numbered
steps without solving, a solver follows them and states the answer; one call each, at temperature 0,
on the same OpenAI-compatible server Symphony's nodes use (the harness's token-counting proxy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

PLANNER = ("You are a planner. Break the user's problem into short numbered steps that lead to its answer. "
           "Do not carry out the steps and do not give the answer.")
SOLVER = ("You are a solver. Follow the planner's steps to solve the user's problem, computing each step "
          "carefully. End with a line 'Answer: <final answer>'.")
MAX_TOKENS = 1024  # each call's cap, as Symphony's executors cap theirs: a looping small model cannot run on

Solve = Callable[[str], Awaitable[str]]


def autogen_team(base_url: str, model: str) -> Solve:
    """AutoGen AgentChat 0.7: a planner and a solver ``AssistantAgent`` in a ``RoundRobinGroupChat``
    that stops after each has spoken once; the answer is the solver's message."""
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.conditions import MaxMessageTermination
    from autogen_agentchat.teams import RoundRobinGroupChat
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    client = OpenAIChatCompletionClient(
        model=model, base_url=base_url, api_key="none", temperature=0, max_tokens=MAX_TOKENS,
        model_info={"vision": False, "function_calling": False, "json_output": False, "family": "unknown",
                    "structured_output": False})

    async def solve(question: str) -> str:
        team = RoundRobinGroupChat(
            [AssistantAgent("planner", client, system_message=PLANNER),
             AssistantAgent("solver", client, system_message=SOLVER)],
            termination_condition=MaxMessageTermination(3))  # the task, the plan, the solution
        result = await team.run(task=question)
        return str(result.messages[-1].content)

    return solve


def crewai_team(base_url: str, model: str) -> Solve:
    """CrewAI 1.15: a planner and a solver ``Agent``, two sequential ``Task``s, the plan given to the
    solve task as its context; the answer is the crew's raw output."""
    os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")  # never a call off this machine
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    from crewai import LLM, Agent, Crew, Process, Task

    llm = LLM(model=f"openai/{model}", base_url=base_url, api_key="none", temperature=0, max_tokens=MAX_TOKENS)
    planner = Agent(role="Planner", goal="Break the problem into short numbered steps", backstory=PLANNER,
                    llm=llm, allow_delegation=False, verbose=False)
    solver = Agent(role="Solver", goal="Follow the plan and compute the final answer", backstory=SOLVER,
                   llm=llm, allow_delegation=False, verbose=False)
    plan = Task(description="Write a short numbered plan for solving this problem. Do not solve it.\n\n"
                            "Problem: {question}", expected_output="A numbered plan.", agent=planner)
    work = Task(description="Solve this problem by following the plan.\n\nProblem: {question}",
                expected_output="The worked solution, ending with a line 'Answer: <final answer>'.",
                agent=solver, context=[plan])

    async def solve(question: str) -> str:
        crew = Crew(agents=[planner, solver], tasks=[plan, work], process=Process.sequential, verbose=False)
        result = await asyncio.to_thread(crew.kickoff, inputs={"question": question})
        return str(result.raw)

    return solve


TEAMS: dict[str, Callable[[str, str], Solve]] = {"autogen": autogen_team, "crewai": crewai_team}


async def serve(solve: Solve) -> None:
    """Answer each stdin line's question in turn, one stdout line each; a failure is that line's error.
    What the frameworks print goes to stderr, so stdout carries only the replies."""
    replies, sys.stdout = sys.stdout, sys.stderr
    for line in sys.stdin:
        if not line.strip():
            continue
        ask: dict[str, Any] = json.loads(line)
        try:
            reply = {"id": ask["id"], "answer": await solve(ask["question"])}
        except Exception as exc:  # noqa: BLE001 - the harness records the failure as this question's answer
            reply = {"id": ask["id"], "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), file=replies, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("team", choices=sorted(TEAMS))
    parser.add_argument("--base-url", required=True, help="the OpenAI-compatible /v1 URL")
    parser.add_argument("--model", required=True, help="the model name the server serves")
    args = parser.parse_args()
    asyncio.run(serve(TEAMS[args.team](args.base_url, args.model)))


if __name__ == "__main__":
    main()
