"""The maths scorer reads the value a boxed working states, and only that value."""

from __future__ import annotations

import pytest

from symphony.bench.datasets import Item
from symphony.bench.scoring import matches_gold, score, stated_value


@pytest.mark.parametrize(("answer", "gold", "right"), [
    ("6\\times8=48", "48", True),  # a boxed working: its result is the answer
    ("x=48", "48", True),
    ("2000/250=8", "8", True),
    ("8\\text{servings}", "8", True),  # unit glued to the number
    ("48=6\\times8", "48", True),  # the right-hand side is the working; math-verify evaluates it
    ("48-6=42", "48", False),  # the left side's 48 is not what the answer states
    ("6\\times8=47", "48", False),
    ("x=", "48", False),
    ("1,000", "48", False),
])
def test_a_maths_answer_is_judged_by_the_value_it_states(answer: str, gold: str, right: bool) -> None:
    """Right-hand side of the last "=", with \\text{} units dropped."""
    assert score(Item("i", "q", gold), answer) is right


def test_stated_value_only_applies_to_numbers() -> None:
    """A text answer holding "=" is compared as text, not by its right-hand side."""
    assert stated_value("a = b \\text{ cm}") == "b"
    assert not matches_gold("x = paris", "paris", "text")
    assert matches_gold("paris", "Paris", "text")
