import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from symphony.beacon import Candidate, LinUCBConfig, LinUCBStrategy, linucb_reward, select


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Gauss-Jordan elimination: the reference the strategy's Sherman-Morrison updates must match."""
    n = len(b)
    m = [[*row, b[i]] for i, row in enumerate(a)]
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[piv] = m[piv], m[col]
        for r in range(n):
            if r != col:
                f = m[r][col] / m[col][col]
                m[r] = [x - f * y for x, y in zip(m[r], m[col], strict=True)]
    return [m[i][n] / m[i][i] for i in range(n)]


def test_arm_with_higher_rewards_is_chosen() -> None:
    """After repeated outcomes, the agent that kept succeeding ranks first despite a lower score."""
    s = LinUCBStrategy(LinUCBConfig(alpha=0.5))
    good, bad = Candidate("good", 0.4), Candidate("bad", 0.6)
    for _ in range(30):
        s.update("good", s.context(good), 1.0)
        s.update("bad", s.context(bad), 0.0)
    assert select([bad, good], strategy=s).primaries[0].agent_id == "good"


def test_untried_agent_is_explored_before_a_mediocre_one() -> None:
    """An agent never tried carries the full exploration bonus."""
    s = LinUCBStrategy()
    known, new = Candidate("known", 0.5), Candidate("new", 0.5)
    for _ in range(50):
        s.update("known", s.context(known), 0.3)
    assert s.order([known, new])[0].agent_id == "new"


def test_untrained_equal_arms_fall_back_to_score_order() -> None:
    """With no feedback yet, equal UCBs are ordered by the paper's rank key."""
    s = LinUCBStrategy(LinUCBConfig(alpha=0.0))
    assert [c.agent_id for c in s.order([Candidate("b", 0.5), Candidate("a", 0.5)])] == ["a", "b"]


def test_shared_model_learns_that_latency_hurts() -> None:
    """One shared model trained on fast successes and slow failures prefers an unseen fast agent."""
    s = LinUCBStrategy(LinUCBConfig(alpha=0.1, shared=True))
    for i in range(40):
        fast, slow = Candidate(f"f{i}", 0.5, 0, 100.0), Candidate(f"s{i}", 0.5, 0, 8_000.0)
        s.update(fast.agent_id, s.context(fast), 1.0)
        s.update(slow.agent_id, s.context(slow), 0.0)
    ranked = s.order([Candidate("new-slow", 0.5, 0, 8_000.0), Candidate("new-fast", 0.5, 0, 100.0)])
    assert ranked[0].agent_id == "new-fast"


@given(st.lists(st.tuples(st.floats(-1, 1), st.integers(0, 20), st.floats(0, 1e4), st.floats(-1, 1)), max_size=8))
def test_ucb_matches_the_closed_form(history: list[tuple[float, int, float, float]]) -> None:
    """p = theta.x + alpha*sqrt(x^T A^-1 x) with A = I + sum x x^T, b = sum r x, solved directly."""
    s = LinUCBStrategy(LinUCBConfig(alpha=0.7))
    a = [[1.0 if i == j else 0.0 for j in range(6)] for i in range(6)]
    b = [0.0] * 6
    for score, q, lat, r in history:
        x = s.context(Candidate("a", score, q, lat))
        s.update("a", x, r)
        a = [[a[i][j] + x[i] * x[j] for j in range(6)] for i in range(6)]
        b = [bi + r * xi for bi, xi in zip(b, x, strict=True)]
    probe = Candidate("a", 0.3, 2, 500.0)
    x = s.context(probe)
    theta, a_inv_x = _solve(a, b), _solve(a, list(x))
    expected = sum(t * v for t, v in zip(theta, x, strict=True)) + 0.7 * math.sqrt(
        sum(v * w for v, w in zip(x, a_inv_x, strict=True))
    )
    assert s.ucb(probe) == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_context_features_are_normalised_as_documented() -> None:
    """match=(s+1)/2, load=q/(q+4), latency=l/(l+2000), reputation, available in [0, 1]."""
    s = LinUCBStrategy()
    x = s.context(Candidate("a", 0.5, queue_length=4, expected_latency_ms=2_000.0, reputation=0.8, available=False))
    assert x == (1.0, 0.75, 0.5, 0.5, 0.8, 0.0)


def test_update_rejects_a_context_of_the_wrong_size() -> None:
    """A context vector must have the six documented features."""
    with pytest.raises(ValueError, match=r"^context must be 6 finite floats and reward finite$"):
        LinUCBStrategy().update("a", (1.0, 0.5), 1.0)


def test_reward_is_success_minus_weighted_latency() -> None:
    """r = success - lam * l/(l + scale): at l = scale a success earns 1 - lam/2."""
    assert linucb_reward(success=True, latency_ms=2_000.0, lam=0.5) == pytest.approx(0.75)
    assert linucb_reward(success=False, latency_ms=0.0) == 0.0


def test_invalid_config_is_rejected() -> None:
    """A non-positive ridge cannot make A invertible."""
    with pytest.raises(ValueError, match=r"^invalid LinUCB config"):
        LinUCBConfig(ridge=0.0)
