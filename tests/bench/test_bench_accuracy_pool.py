"""Agent pools of the accuracy run: each agent declares its own model's skills, so the beacon can
tell a strong model from a weak one in a heterogeneous pool (paper Table 3, eq. 1)."""

from __future__ import annotations

import random

import pytest
import trio

from symphony.beacon.ranking import CosineStrategy
from symphony.bench.accuracy import DEFAULT_TAGS, MODEL_TAGS, agent_profile, pool_agents
from symphony.capability.vector import HashingTagEncoder, classify_task_type, requirement_vector
from symphony.ledger import GossipConfig, LedgerConfig
from symphony.llm.scripted import ScriptedModel
from symphony.node.runtime import open_simulated_agents
from symphony.pipeline.service import EXECUTOR_TAG
from symphony.transport.memory import LinkModel, MemoryNetwork

EPOCH = 1_700_000_000.0
MIXED = ("llama:qwen2.5-coder-0.5b", "llama:qwen2.5-coder-0.5b", "llama:smollm2-135m")
#: Maths sub-tasks written for this test (not benchmark items), in the forms planners produce.
MATHS_STEPS = (
    "How many pencils does Maria buy in total?",
    "What is the cost of 5 notebooks at $2 each?",
    "How much money does Leo have left after spending $12?",
    "Calculate 15% of 80.",
    "How many minutes are in 3 hours?",
    "What is 48 divided by 6?",
    "If a train travels 60 miles per hour for 2 hours, how far does it go?",
)


def clock() -> float:
    return EPOCH + trio.current_time()


def test_profiles_follow_the_model_and_unknown_models_keep_the_default() -> None:
    """The weak model declares no maths; an unprofiled spec gets the old generic tags."""
    strong, weak = agent_profile(MIXED[0], 0), agent_profile(MIXED[2], 2)
    assert any("arithmetic" in t for t in strong.tags) and not any("arithmetic" in t for t in weak.tags)
    assert agent_profile("openai:http://localhost:8080/v1#m", 3).tags == DEFAULT_TAGS
    assert set(MODEL_TAGS) >= set(MIXED)
    assert all(len(tags) + 2 <= 32 and max(map(len, tags)) <= 64 for tags in MODEL_TAGS.values())  # record limits


async def test_the_beacon_prefers_the_stronger_model_for_maths_steps(autojump_clock: object) -> None:
    """In the mixed pool, every maths step's beacon (asked from the weak agent itself) ranks a
    Qwen agent first and the SmolLM agent last."""
    models = [ScriptedModel([], name=spec) for spec in MIXED]
    net = MemoryNetwork(link=LinkModel(latency_s=0.001), rng=random.Random(0))
    encoder = HashingTagEncoder()
    async with open_simulated_agents(net, pool_agents(0, MIXED, models), clock=clock,
                                     ledger_config=LedgerConfig(heartbeat_interval_s=1.0),
                                     gossip_config=GossipConfig(anti_entropy_interval_s=1.0)) as nodes:
        weak = nodes[2].agent_id
        for step in MATHS_STEPS:
            outcome = await nodes[2].selector.select(
                list(requirement_vector(step, classify_task_type(step), encoder)), task_type=classify_task_type(step),
                m=1, top_l=3, strategy=CosineStrategy(), tags_any=frozenset({EXECUTOR_TAG}))
            ranked = [c.agent_id for c in outcome.selection.ordered]
            assert len(ranked) == 3, step
            assert ranked[0] != weak and ranked[-1] == weak, step


def test_pool_agents_need_one_model_per_spec() -> None:
    """A pool spec and its models must pair up one to one."""
    with pytest.raises(ValueError):
        pool_agents(0, MIXED, [ScriptedModel([], name="x")])
