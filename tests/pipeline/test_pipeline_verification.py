"""Verification before the vote (pipeline.verification): the examples a code question states, the
check program run in the real sandbox, the report it prints, and a question whose chains disagree
decided by the check instead of by the larger bloc."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from symphony.ledger import GossipConfig, LedgerConfig
from symphony.llm.base import Completion
from symphony.node.runtime import AgentProfile, SimulatedAgent, open_simulated_agents
from symphony.pipeline.service import AskOptions
from symphony.pipeline.tools import examples_passed, sandbox_works
from symphony.pipeline.verification import Example, examples_in, passed_count, survivors
from symphony.transport.memory import LinkModel, MemoryNetwork
from tests.conftest import identity

needs_sandbox = pytest.mark.skipif(not sandbox_works(), reason="this OS cannot build the code sandbox")

QUESTION = '''Complete this Python function.

```python
from typing import List


def second_largest(xs: List[int]) -> int:
    """Return the second largest distinct value.
    >>> second_largest([1, 5, 3])
    3
    >>> second_largest([7, 7, 2])
    2
    """
```'''
RIGHT = "def second_largest(xs):\n    return sorted(set(xs))[-2]\n"
WRONG = "def second_largest(xs):\n    return sorted(xs)[-2]\n"  # fails the second example: repeats count


def test_doctest_examples_are_read_and_the_signature_is_not_one():
    assert examples_in(QUESTION) == (Example("second_largest([1, 5, 3])", "3"), Example("second_largest([7, 7, 2])", "2"))


def test_stated_relations_are_read_in_their_common_spellings():
    question = ('def f(s, n):\n    """Examples:\n    f("a(b)", 2) == \'ab\'\n    for f("x", 1) => 3\n'
                '    f([1, 2], 0) ➞ [2, 1]\n    f(x) is described here in words\n    """')
    assert examples_in(question) == (Example('f("a(b)", 2)', "'ab'"), Example('f("x", 1)', "3"),
                                     Example("f([1, 2], 0)", "[2, 1]"))


def test_a_question_without_a_function_states_no_examples():
    assert examples_in("What is 2 + 3? f(2) == 5") == ()


async def run(code: str, question: str = QUESTION) -> int | None:
    return await examples_passed(code, question, examples_in(question))


@needs_sandbox
async def test_the_check_counts_the_examples_each_code_passes():
    assert await run(RIGHT) == 2
    assert await run(WRONG) == 1
    assert await run("def second_largest(xs):\n    raise ValueError\n") == 0
    assert await run("this is not python") is None  # the whole program fails: no report


@needs_sandbox
async def test_an_example_that_is_no_python_fails_alone_and_words_compare_as_printed():
    question = 'def hi(n):\n    """\n    hi(2) => hi hi\n    hi(1) == "hi"\n    hi(0) => )(\n    """'
    assert await run("def hi(n):\n    return ' '.join(['hi'] * n)\n", question) == 2


def test_a_report_must_carry_the_nonce_and_the_total():
    assert passed_count("noise\nn0 2 3\n", "n0", 3) == 2
    assert passed_count("n0 2 3", "other", 3) is None
    assert passed_count("n0 2 4", "n0", 3) is None
    assert passed_count("n0 4 3", "n0", 3) is None
    assert passed_count("n0 two 3", "n0", 3) is None
    assert passed_count("", "n0", 3) is None


@given(st.dictionaries(st.sampled_from(["c0", "c1", "c2", "c3"]), st.none() | st.integers(0, 5), min_size=1))
def test_survivors_are_the_chains_with_the_most_passes(passed):
    kept = survivors(passed)
    best = max(p or 0 for p in passed.values())
    assert kept and kept <= set(passed)
    assert kept == (set(passed) if best == 0 else {c for c, p in passed.items() if (p or 0) == best})


class Bloc:
    """A test double shared by a pool's agents: the first two calls (in any chain) write ``WRONG``,
    then ``RIGHT``: two chains agree on a wrong function, one writes the right one."""

    supports_json_schema = True

    def __init__(self, replies: Sequence[str]) -> None:
        self.name, self.replies = "bloc", list(replies)

    async def chat(self, messages, *, max_tokens=512, temperature=0.0, seed=None, json_schema=None) -> Completion:
        code = self.replies.pop(0) if self.replies else RIGHT
        return Completion(text=f"```python\n{code}```", prompt_tokens=40, completion_tokens=10, latency_s=0.0,
                          model=self.name)

    async def aclose(self) -> None:
        pass


async def ask_with(model: Bloc, options: AskOptions) -> dict:
    """``options``' question on three agents sharing ``model``."""
    net = MemoryNetwork(link=LinkModel(latency_s=0.001), rng=random.Random(1))
    specs = [SimulatedAgent(identity(n), model, AgentProfile(name=f"n{n}", tags=("python code",))) for n in range(3)]
    async with open_simulated_agents(net, specs, clock=time.time, ledger_config=LedgerConfig(heartbeat_interval_s=1.0),
                                     gossip_config=GossipConfig(anti_entropy_interval_s=1.0)) as nodes:
        return await nodes[0].tasks.ask(QUESTION, options)


async def ask(*, verify: bool) -> dict:
    return await ask_with(Bloc([WRONG, WRONG, RIGHT]), AskOptions(cots=3, max_steps=1, answer_kind="code",
                                                                  verify=verify))


@needs_sandbox
async def test_the_check_outweighs_a_wrong_bloc():
    trace = await ask(verify=True)
    assert "set(xs)" in trace["answer"]
    checks = {c["passed"]: c for c in trace["checks"]}
    assert sorted(c["passed"] for c in trace["checks"]) == [1, 1, 2]
    assert checks[2]["voted"] and checks[2]["total"] == 2
    assert sum(c["voted"] for c in trace["checks"]) == 1


@needs_sandbox
async def test_without_the_check_the_bloc_wins_and_nothing_was_checked():
    trace = await ask(verify=False)
    assert "set(xs)" not in trace["answer"]
    assert trace["checks"] == []


@needs_sandbox
async def test_symphony_ask_prints_which_chains_passed_the_examples():
    from symphony.cli import render

    trace = await ask(verify=True)
    with render.console.capture() as captured:
        render.print_trace(trace)
    line = next(line for line in captured.get().splitlines() if line.startswith("examples passed:"))
    assert line.count("/2") == 3 and line.count("(not voting)") == 2
