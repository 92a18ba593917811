import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from symphony.capability import (
    HARDWARE,
    SKILLS,
    TAGS,
    TASK_TYPES,
    VECTOR_DIMS,
    HashingTagEncoder,
    SkillScores,
    accelerator_kind,
    add_privacy_noise,
    capability_vector,
    classify_task_type,
    encode_hardware,
    phi,
    requirement_vector,
    task_type_index,
)
from symphony.protocol.messages import decode_vector, encode_vector

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
vectors = st.integers(1, 12).flatmap(lambda n: st.tuples(st.lists(finite, min_size=n, max_size=n),
                                                         st.lists(finite, min_size=n, max_size=n)))  # fmt: skip
ENC = HashingTagEncoder()


def _norm(v: tuple[float, ...]) -> float:
    return math.sqrt(math.fsum(x * x for x in v))


def _agent(card: str, *, skills: SkillScores | None = None, memory_gb: float = 16.0) -> tuple[float, ...]:
    hw = encode_hardware(memory_gb=memory_gb, accelerator="cuda", tokens_per_s=30)
    return capability_vector(tags=ENC.encode(card), hardware=hw, skills=skills or SkillScores())


# ---- phi ------------------------------------------------------------------------------------


@given(vectors)
def test_phi_is_symmetric(ab: tuple[list[float], list[float]]) -> None:
    """phi(a, b) equals phi(b, a) exactly."""
    a, b = ab
    assert phi(a, b) == phi(b, a)


@given(vectors)
def test_phi_lies_in_unit_interval(ab: tuple[list[float], list[float]]) -> None:
    """phi is a cosine: always within [-1, 1]."""
    assert -1.0 <= phi(*ab) <= 1.0


@given(st.lists(finite, min_size=1, max_size=16).filter(lambda v: any(v)))
def test_phi_of_a_vector_with_itself_is_one(v: list[float]) -> None:
    """A nonzero vector matches itself perfectly."""
    assert phi(v, v) == 1.0


def test_phi_survives_tiny_magnitudes() -> None:
    """Entries near the float minimum neither underflow to 0 nor divide by zero."""
    assert phi([1e-300, 2e-300], [2e-300, 4e-300]) == pytest.approx(1.0)


def test_phi_of_opposite_vectors_is_minus_one() -> None:
    """Opposite directions give -1."""
    assert phi([1.0, -2.0, 3.0], [-1.0, 2.0, -3.0]) == pytest.approx(-1.0)


def test_phi_with_a_zero_vector_is_zero() -> None:
    """An all-zero vector matches nothing (no division by zero)."""
    assert phi([0.0, 0.0], [1.0, 2.0]) == 0.0


def test_phi_rejects_vectors_of_different_length() -> None:
    """Vectors from different spaces are a caller bug."""
    with pytest.raises(ValueError, match=r"^vectors differ in length: 2 != 3$"):
        phi([1.0, 0.0], [1.0, 0.0, 0.0])


# ---- layout ---------------------------------------------------------------------------------


def test_capability_vector_has_224_dims_and_weighted_unit_blocks() -> None:
    """c_j is 128 + 64 + 32 dims; tag and skill blocks have norm 1, hardware 0.5."""
    c = _agent("python code")
    assert len(c) == VECTOR_DIMS == 224
    assert (_norm(c[TAGS]), _norm(c[HARDWARE]), _norm(c[SKILLS])) == pytest.approx((1.0, 0.5, 1.0))


def test_capability_vector_survives_the_float16_wire() -> None:
    """The vector fits the wire cap and keeps its direction through float16 encoding."""
    c = _agent("medical question answering, diagnosis")
    assert phi(decode_vector(encode_vector(list(c))), c) > 0.9999


def test_requirement_vector_has_zero_hardware_and_one_hot_skill() -> None:
    """r(t): hardware block zero, skill block one-hot on the task type."""
    r = requirement_vector("Compute 17 * 23", "arithmetic", ENC)
    skill = r[SKILLS]
    assert not any(r[HARDWARE])
    assert skill[task_type_index("arithmetic")] == 1.0 and sum(skill) == 1.0


def test_matching_agent_outscores_unrelated_agent() -> None:
    """An agent whose card and skills match the sub-task gets the higher phi."""
    r = requirement_vector("write a python function to sort a list", "code", ENC)
    coder = _agent("python code generation, write functions", skills=SkillScores().update("code", True))
    doctor = _agent("medicine clinical diagnosis", skills=SkillScores().update("medicine", True))
    assert phi(coder, r) > phi(doctor, r)


def test_skill_success_raises_the_match_score() -> None:
    """Of two agents with the same card, the one with code successes matches a code task better."""
    r = requirement_vector("implement binary search", "code", ENC)
    plain = _agent("assistant")
    proven = _agent("assistant", skills=SkillScores().update("code", True).update("code", True))
    assert phi(proven, r) > phi(plain, r)


def test_hardware_does_not_change_the_match_score() -> None:
    """Two agents differing only in hardware score the same against a requirement."""
    r = requirement_vector("solve the equation", "algebra", ENC)
    assert phi(_agent("math", memory_gb=8), r) == pytest.approx(phi(_agent("math", memory_gb=256), r))


# ---- hardware -------------------------------------------------------------------------------


def test_memory_thermometer_counts_half_octaves() -> None:
    """16 GB sets memory dims 0..8 (2**(k/2) <= 16) and no others."""
    hw = encode_hardware(memory_gb=16, accelerator="cpu", tokens_per_s=0)
    assert hw[:24] == (1.0,) * 9 + (0.0,) * 15


def test_throughput_thermometer_counts_half_octaves() -> None:
    """20 tok/s sets throughput dims 0..8 (2**(8/2) = 16 <= 20 < 2**(9/2))."""
    hw = encode_hardware(memory_gb=0, accelerator="cpu", tokens_per_s=20)
    assert hw[40:] == (1.0,) * 9 + (0.0,) * 15


def test_accelerator_is_one_hot() -> None:
    """Exactly one accelerator slot is set, the kind's own."""
    hw = encode_hardware(memory_gb=0, accelerator="mps", tokens_per_s=0)
    assert hw[24:36] == tuple(1.0 if i == 3 else 0.0 for i in range(12))


def test_cores_thermometer_counts_octaves() -> None:
    """12 cores set the 2, 4 and 8 core dims, not 16; unsaid cores (0) set none."""
    assert encode_hardware(memory_gb=0, accelerator="cpu", tokens_per_s=0, cores=12)[36:40] == (1.0, 1.0, 1.0, 0.0)
    assert encode_hardware(memory_gb=0, accelerator="cpu", tokens_per_s=0)[36:40] == (0.0,) * 4


@pytest.mark.parametrize(
    ("name", "kind"),
    [("cuda", "nvidia"), ("RTX 4090", "nvidia"), ("rtx4090", "nvidia"), ("NVIDIA H100 80GB", "nvidia"),
     ("rocm", "amd"), ("MI300X", "amd"), ("Apple M2 Max", "apple"), ("mps", "apple"), ("", "cpu"),
     ("CPU", "cpu"), ("tpu v4", "tpu"), ("quantum-thing", "other")],
)  # fmt: skip
def test_accelerator_kind_maps_common_names(name: str, kind: str) -> None:
    """Free-form accelerator names map to their kind."""
    assert accelerator_kind(name) == kind


def test_negative_hardware_figure_is_rejected() -> None:
    """A negative memory size is a caller bug."""
    with pytest.raises(ValueError, match=r"^hardware figure must be finite and >= 0, not -1$"):
        encode_hardware(memory_gb=-1, accelerator="cpu", tokens_per_s=0)


# ---- skills ---------------------------------------------------------------------------------


@given(st.sampled_from(TASK_TYPES), st.floats(0, 1), st.booleans())
def test_skill_update_is_the_exact_ema(task: str, start: float, success: bool) -> None:
    """update sets score to 0.9 * score + 0.1 * outcome, exactly, and touches no other slot."""
    i = task_type_index(task)
    before = SkillScores(tuple(start if j == i else 0.25 for j in range(32)))
    after = before.update(task, success)
    assert after.values[i] == 0.9 * start + (1 - 0.9) * float(success)
    assert all(a == 0.25 for j, a in enumerate(after.values) if j != i)


def test_skill_update_returns_a_new_object() -> None:
    """SkillScores is a value: update leaves the original untouched."""
    s = SkillScores()
    s.update("logic", True)
    assert s.score("logic") == 0.5


def test_alpha_weighs_history() -> None:
    """One success from the 0.5 prior moves the score a tenth of the way, to 0.55."""
    assert SkillScores().update("algebra", True).score("algebra") == pytest.approx(0.55)


def test_unknown_task_type_goes_to_other() -> None:
    """A task type we do not know (e.g. from a peer) updates the 'other' slot."""
    assert SkillScores().update("underwater basket weaving", False).score("other") == pytest.approx(0.45)


def test_skill_scores_need_32_values() -> None:
    """A skill block of the wrong size is rejected."""
    with pytest.raises(ValueError, match=r"^SkillScores needs 32 values, not 3$"):
        SkillScores((0.5, 0.5, 0.5))


def test_task_types_are_32_distinct_names_ending_in_other() -> None:
    """The documented skill slot list fills the 32-dim block."""
    assert len(set(TASK_TYPES)) == 32 and TASK_TYPES[-1] == "other"


# ---- privacy noise --------------------------------------------------------------------------


def test_zero_sigma_publishes_the_exact_vector() -> None:
    """sigma = 0 adds nothing."""
    v = _agent("x")
    assert add_privacy_noise(v, 0.0, random.Random(1)) == v


def test_noise_is_reproducible_from_the_rng() -> None:
    """The same seed gives the same published vector (the rng is the only randomness)."""
    v = _agent("x")
    assert add_privacy_noise(v, 0.1, random.Random(7)) == add_privacy_noise(v, 0.1, random.Random(7))


def test_noise_has_the_requested_spread() -> None:
    """The added noise has standard deviation close to sigma."""
    v = (0.0,) * 10_000
    noisy = add_privacy_noise(v, 0.2, random.Random(3))
    assert math.sqrt(math.fsum(x * x for x in noisy) / len(noisy)) == pytest.approx(0.2, rel=0.05)


def test_negative_sigma_is_rejected() -> None:
    """A negative sigma is a configuration bug."""
    with pytest.raises(ValueError, match=r"^sigma must be finite and >= 0, not -0.1$"):
        add_privacy_noise((1.0,), -0.1, random.Random(0))


# ---- task classification --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "task"),
    [
        ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
         "How many clips did Natalia sell altogether in April and May?", "word_problem"),
        ("Write a Python function that returns the n-th Fibonacci number.", "code"),
        ("A 45-year-old patient presents with fever and a rash. What is the most likely diagnosis?", "medicine"),
        ("Today is 04/19/1969. What is the date 24 hours later in MM/DD/YYYY?", "temporal"),
        ("Fidel lies. Jerry says Fidel tells the truth. Does Jerry tell the truth?", "logic"),
        ("Solve for x: 3x + 5 = 20", "algebra"),
        ("What is the probability of rolling two sixes with a pair of dice?", "probability"),
        ("Hello there", "other"),
    ],
)  # fmt: skip
def test_classify_task_type_on_benchmark_style_questions(text: str, task: str) -> None:
    """The keyword heuristic names the obvious task type of typical questions."""
    assert classify_task_type(text) == task
