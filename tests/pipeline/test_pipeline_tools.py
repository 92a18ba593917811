"""Tool-using executors (pipeline.tools): a step answered by a program run in the real sandbox, the
fallback to text when the program fails, the style per chain slot, the tool's declaration in the
ledger, and the one-step plan that needs no planner call."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest

from symphony.capability.vector import (
    HashingTagEncoder,
    SkillScores,
    capability_vector,
    classify_task_type,
    encode_hardware,
    requirement_vector,
)
from symphony.errors import ConfigError
from symphony.ledger import GossipConfig, LedgerConfig
from symphony.llm.base import Completion
from symphony.node.runtime import AgentProfile, AgentRuntime, SimulatedAgent, open_simulated_agents
from symphony.pipeline.executor import extract_program, program_messages
from symphony.pipeline.service import AskOptions
from symphony.pipeline.tools import (
    PYTHON_TOOL,
    TOOL_TAGS,
    program_answer,
    reported_tool,
    resolve_tools,
    run_program,
    sandbox_works,
    solving_style,
)
from symphony.protocol.messages import Task
from symphony.transport.memory import LinkModel, MemoryNetwork
from tests.conftest import identity

QUESTION = "Tom has 3 boxes with 4 apples each. He eats 2 apples. How many apples are left?"
needs_sandbox = pytest.mark.skipif(not sandbox_works(), reason="this OS cannot build the code sandbox")


class Coder:
    """A test double: writes ``program`` when asked for one, else a text answer boxing ``text``."""

    supports_json_schema = True

    def __init__(self, program: str = "apples = 3 * 4\nprint(apples - 2)", text: str = "99") -> None:
        self.name, self.program, self.text = "coder", program, text
        self.prompts: list[str] = []

    async def chat(self, messages, *, max_tokens=512, temperature=0.0, seed=None, json_schema=None) -> Completion:
        system = messages[0]["content"]
        self.prompts.append("plan" if json_schema is not None else "program" if "Python program" in system else "text")
        reply = f"```python\n{self.program}\n```" if self.prompts[-1] == "program" else f"\\boxed{{{self.text}}}"
        return Completion(text=reply, prompt_tokens=40, completion_tokens=10, latency_s=0.0, model=self.name)

    async def aclose(self) -> None:
        pass


@asynccontextmanager
async def swarm(models: Sequence[Coder], tools: tuple[str, ...]) -> AsyncIterator[list[AgentRuntime]]:
    net = MemoryNetwork(link=LinkModel(latency_s=0.001), rng=random.Random(1))
    specs = [SimulatedAgent(identity(n), m, AgentProfile(name=f"n{n}", tags=("math",))) for n, m in enumerate(models)]
    async with open_simulated_agents(net, specs, clock=time.time, ledger_config=LedgerConfig(heartbeat_interval_s=1.0),
                                     gossip_config=GossipConfig(anti_entropy_interval_s=1.0),
                                     task_defaults={"tools": tools}) as nodes:
        yield nodes


def step(task_id: str = "q/c0/s0") -> Task:
    return Task(task_id=task_id, role="execute", question=QUESTION, background=QUESTION, answer_kind="number",
                deadline_ms=int(time.time() * 1000) + 60_000)


@needs_sandbox
async def test_program_step_answers_with_what_the_sandbox_printed() -> None:
    """The program's printed 10 is the answer, not the 99 the model would have boxed in text."""
    async with swarm([Coder(), Coder()], (PYTHON_TOOL,)) as nodes:
        result = await nodes[0].tasks._send(nodes[1].agent_id, step())
    assert result.ok and result.answer == "10"
    assert result.trace["tool"]["program"].endswith("print(apples - 2)") and result.trace["tool"]["output"] == "10\n"
    assert nodes[1].model.prompts == ["program"]


@needs_sandbox
async def test_failing_program_falls_back_to_a_text_answer_visibly() -> None:
    """A program that raises: the step is answered in text, the trace says why, both calls' tokens count."""
    async with swarm([Coder(), Coder(program="print(1/0)", text="10")], (PYTHON_TOOL,)) as nodes:
        result = await nodes[0].tasks._send(nodes[1].agent_id, step())
    assert result.ok and result.answer == "10"
    assert result.trace["tool"]["fallback"] == "text" and result.trace["tool"]["reason"] == "exited with 1"
    assert "ZeroDivisionError" in result.trace["tool"]["output"]
    assert (result.prompt_tokens, result.completion_tokens) == (80, 20)
    assert nodes[1].model.prompts == ["program", "text"]


async def test_node_without_tools_answers_in_text_and_declares_none() -> None:
    async with swarm([Coder(), Coder()], ()) as nodes:
        result = await nodes[0].tasks._send(nodes[1].agent_id, step())
        tags = nodes[0].ledger.records[nodes[1].agent_id].tags
    assert result.answer == "99" and "tool" not in result.trace and nodes[1].model.prompts == ["text"]
    assert TOOL_TAGS[PYTHON_TOOL] not in tags


async def test_the_tool_is_declared_in_the_ledger_record() -> None:
    async with swarm([Coder(), Coder()], (PYTHON_TOOL,)) as nodes:
        tags = nodes[0].ledger.records[nodes[1].agent_id].tags
    assert TOOL_TAGS[PYTHON_TOOL] in tags


async def test_one_step_plans_call_no_planner() -> None:
    """max_steps 1: the plan is the question itself, so the planner's model is not asked for one."""
    async with swarm([Coder(), Coder()], ()) as nodes:
        trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=2, max_steps=1, answer_kind="number"))
    assert trace["answer"] == "99"
    assert all(p == "text" for n in nodes for p in n.model.prompts)
    assert {c["trace"]["plan"] for c in trace["chains"]} == {"one step: max_steps is 1"}


def test_chain_slot_one_solves_in_text_the_others_with_programs() -> None:
    tools = (PYTHON_TOOL,)
    assert [solving_style(f"q/c{n}/s0", "number", tools) for n in range(4)] == ["program", "text", "program", "program"]
    assert solving_style("direct", "number", tools) == "program"
    assert solving_style("q/c0/s0", "option", tools) == "text"  # a letter is not what a program prints
    assert solving_style("q/c0/s0", "number", ()) == "text"


def test_program_answer_reads_the_last_printed_line() -> None:
    assert program_answer("working\n$1,250.00\n", "number", is_final=True) == "1250"
    assert program_answer("\n\n", "number", is_final=True) is None
    assert program_answer("a\n12 apples\n", "number", is_final=False) == "12 apples"


def test_extract_program_takes_the_last_python_block() -> None:
    assert extract_program("x\n```python\na = 1\n```\nthen\n```python\nprint(2)\n```") == "print(2)"
    assert extract_program("```python\nprint(3)") == "print(3)"  # cut at the budget: the sandbox reports it
    assert extract_program("print(4 * 5)") == "print(4 * 5)"
    assert extract_program("The answer is 20.") is None


def test_program_prompt_carries_the_problem_and_earlier_steps() -> None:
    system, asked, answered, user = program_messages("How many are left?", question=QUESTION,
                                                     previous=[("How many?", "12")])
    assert "print" in system["content"] and "\\boxed" not in system["content"]
    # the worked example is an earlier exchange, so the reply copies its form (a code block), not its "Step:" line
    assert [asked["role"], answered["role"]] == ["user", "assistant"]
    assert answered["content"].startswith("```python\n") and "Step:" not in answered["content"]
    assert user["content"].startswith(f"Problem: {QUESTION}") and "1. How many? -> 12" in user["content"]
    assert user["content"].endswith("Step: How many are left?")


@needs_sandbox
async def test_run_program_reports_what_went_wrong() -> None:
    assert (await run_program("no code here", "number", is_final=True)).reason == "no program in the reply"
    looping = await run_program("```python\nwhile True: pass\n```", "number", is_final=True)
    assert looping.answer is None and "timed out" in looping.reason
    silent = await run_program("```python\nx = 1\n```", "number", is_final=True)
    assert silent.answer is None and silent.reason == "printed no answer"


def test_resolve_tools_refuses_unknown_names() -> None:
    with pytest.raises(ConfigError, match="unknown tool"):
        resolve_tools(["shell"])
    assert resolve_tools([]) == ()
    assert resolve_tools(None) == ((PYTHON_TOOL,) if sandbox_works() else ())


def test_the_tool_tag_raises_an_agents_score_for_computational_steps() -> None:
    """The beacon's cosine (eq. 1) between a computational step and an agent's tag block is higher
    with the tool's tag declared: the beacon leans to agents that compute exactly."""
    encoder = HashingTagEncoder()
    hardware = encode_hardware(memory_gb=8, accelerator="cpu", tokens_per_s=10)

    def score(tags: str, step: str) -> float:
        c = capability_vector(tags=encoder.encode(tags), hardware=hardware, skills=SkillScores())
        r = requirement_vector(step, classify_task_type(step), encoder)
        return sum(a * b for a, b in zip(c, r, strict=True))

    step = "Calculate the total cost of 4 pens at $3 each."
    assert score(f"maths reasoning {TOOL_TAGS[PYTHON_TOOL]}", step) > score("maths reasoning", step)


def test_node_options_switch_the_tool_off_or_ask_for_it(tmp_path) -> None:
    """--no-tools and ``tools = []`` in the node file mean none; the default is python where the sandbox works."""
    from symphony.node.config import node_config

    base = {"data_dir": str(tmp_path), "model": "scripted:arith"}
    assert node_config({**base, "no_tools": True}).task_defaults()["tools"] == ()
    assert node_config({**base, "tools": []}).task_defaults()["tools"] == ()
    assert node_config(base).task_defaults()["tools"] == resolve_tools(None)
    with pytest.raises(ConfigError, match="unknown tool"):
        node_config({**base, "tools": ["shell"]})


def test_a_peers_tool_report_is_kept_only_in_its_known_shape() -> None:
    report = {"program": "x" * 5000, "output": "12\n", "ok": True, "reason": "ok", "fallback": 3, "evil": {"a": 1}}
    kept = reported_tool(report)
    assert kept == {"program": "x" * 1500, "output": "12\n", "ok": True, "reason": "ok"}
    assert reported_tool("not a report") == {} and reported_tool(None) == {}


@needs_sandbox
async def test_a_chains_trace_keeps_each_steps_program() -> None:
    async with swarm([Coder(), Coder()], (PYTHON_TOOL,)) as nodes:
        trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=1, max_steps=1, answer_kind="number"))
    (attempt,) = trace["chains"][0]["trace"]["steps"][0]["attempts"]
    assert trace["answer"] == "10" and attempt["tool"]["program"].endswith("print(apples - 2)")


def test_float_noise_in_a_printed_answer_is_rounded_away() -> None:
    """2.2 * 100 prints 220.00000000000003: read as 220, so it pools in the vote with an exact 220."""
    assert program_answer("220.00000000000003\n", "number", is_final=True) == "220"
    assert program_answer("0.30000000000000004\n", "number", is_final=True) == "0.3"
    assert program_answer("54.54545454545454\n", "number", is_final=True) == "54.545455"
    assert program_answer("total 12.5 dollars\n", "number", is_final=True) == "12.5"
