import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from symphony.pipeline import Answer, Ballot, Exclusion, chain_weight, weighted_vote

ballot_lists = st.lists(
    st.tuples(st.sampled_from(["1000", "1,000", "7", "0.5", "\\frac{1}{2}", "", None]),
              st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0, -0.2])),
    max_size=8,
).map(lambda xs: [Ballot(f"chain-{i}", a, w) for i, (a, w) in enumerate(xs)])  # fmt: skip


def test_paper_worked_example() -> None:
    """CoT A -> No (1.0), B -> No (0.9), C -> Yes (0.92): No wins with 1.9 against 0.92."""
    result = weighted_vote([Ballot("A", "No", 1.0), Ballot("B", "No", 0.9), Ballot("C", "Yes", 0.92)], "yes_no")
    assert result.answer == "No" and result.supporting_chains == ("A", "B")
    assert [(t.key, t.weight) for t in result.tallies] == [("no", pytest.approx(1.9)), ("yes", 0.92)]


def test_weight_beats_head_count() -> None:
    """One confident chain outweighs two weak ones (weights, not votes, decide)."""
    result = weighted_vote([Ballot("a", "7", 0.3), Ballot("b", "7", 0.3), Ballot("c", "9", 0.9)], "number")
    assert result.answer == "9"


def test_equivalent_answers_pool_their_weights() -> None:
    """'1,000', '1000' and '\\$1000' are one answer with the summed weight."""
    result = weighted_vote(
        [Ballot("a", "1,000", 0.4), Ballot("b", "1000", 0.4), Ballot("c", "\\$1000", 0.4), Ballot("d", "7", 0.9)],
        "number",
    )
    assert result.winner is not None and result.winner.key == "1000" and result.winner.count == 3


def test_tie_on_weight_goes_to_more_chains() -> None:
    """Equal totals: the answer backed by more chains wins."""
    result = weighted_vote([Ballot("a", "1", 0.4), Ballot("b", "1", 0.4), Ballot("c", "2", 0.8)], "number")
    assert result.answer == "1"


def test_tie_on_weight_and_count_goes_to_the_strongest_chain() -> None:
    """Equal totals and counts: the answer with the single heaviest chain wins."""
    result = weighted_vote(
        [Ballot("a", "1", 0.5), Ballot("b", "1", 0.5), Ballot("c", "2", 0.9), Ballot("d", "2", 0.1)], "number"
    )
    assert result.answer == "2"


def test_full_tie_goes_to_the_smaller_normalised_answer() -> None:
    """Nothing else separates them: the lexicographically smaller key wins, on every node."""
    result = weighted_vote([Ballot("a", "yes", 0.5), Ballot("b", "no", 0.5)], "yes_no")
    assert result.answer == "no"


@given(ballot_lists, st.randoms(use_true_random=False))
def test_vote_ignores_chain_order(ballots: list[Ballot], rnd: random.Random) -> None:
    """Any permutation of the same ballots gives the identical result."""
    shuffled = list(ballots)
    rnd.shuffle(shuffled)
    assert weighted_vote(shuffled, "number") == weighted_vote(ballots, "number")


def _within_one(a: Answer, b: Answer) -> bool:
    return abs(int(a.key) - int(b.key)) <= 1  # not transitive: 1~2 and 2~3, but not 1~3


@given(st.lists(st.tuples(st.sampled_from("1234"), st.sampled_from([0.1, 0.5, 0.9])), max_size=8),
       st.randoms(use_true_random=False))  # fmt: skip
def test_grouping_ignores_chain_order_under_intransitive_equivalence(
    pairs: list[tuple[str, float]], rnd: random.Random
) -> None:
    """Even when 'equivalent' is not transitive, pooling does not depend on arrival order."""
    ballots = [Ballot(f"c{i}", a, w) for i, (a, w) in enumerate(pairs)]
    shuffled = list(ballots)
    rnd.shuffle(shuffled)
    assert weighted_vote(shuffled, "number", equivalent=_within_one) == weighted_vote(
        ballots, "number", equivalent=_within_one
    )


def test_empty_and_absurd_answers_are_excluded_and_reported() -> None:
    """Blank and over-long answers do not vote, and say why."""
    result = weighted_vote(
        [Ballot("a", "", 1.0), Ballot("b", None, 1.0), Ballot("c", "9" * 1_001, 1.0), Ballot("d", "3", 0.1)],
        "number",
    )
    assert result.answer == "3"
    assert result.excluded == (Exclusion("a", "empty"), Exclusion("b", "empty"), Exclusion("c", "too_long"))


def test_long_code_answers_still_vote() -> None:
    """The 1,000-character cap does not apply to code."""
    code = "def f():\n" + "    x = 1\n" * 200
    assert weighted_vote([Ballot("a", code, 0.5)], "code").winner is not None


def test_no_valid_ballot_gives_no_winner() -> None:
    """All chains failed: winner None, nothing supports it."""
    result = weighted_vote([Ballot("a", "  ", 1.0)], "text")
    assert result.winner is None and result.answer is None and result.supporting_chains == ()


def test_negative_weight_counts_as_zero() -> None:
    """A chain with a negative mean score cannot vote against its own answer."""
    result = weighted_vote([Ballot("a", "4", -0.5), Ballot("b", "4", 0.2), Ballot("c", "5", 0.1)], "number")
    assert result.tallies[0].weight == 0.2 and result.answer == "4"


def test_repeated_chain_id_is_rejected() -> None:
    """Each chain votes once."""
    with pytest.raises(ValueError, match=r"^each chain may cast one ballot; chain ids repeat$"):
        weighted_vote([Ballot("a", "1", 0.5), Ballot("a", "2", 0.5)], "number")


def test_chain_weight_is_the_mean_beacon_score() -> None:
    """w_i is the average of the chain's selection scores (eq. 2); an empty chain weighs 0."""
    assert chain_weight([0.9, 0.8, 1.0]) == pytest.approx(0.9)
    assert chain_weight([]) == 0.0


def test_winner_spelling_comes_from_its_heaviest_chain() -> None:
    """The reported answer is the pooled group's most trusted spelling."""
    result = weighted_vote([Ballot("a", "1,000", 0.2), Ballot("b", "1000", 0.7)], "number")
    assert result.answer == "1000"


def test_number_spellings_of_one_value_pool_their_weight() -> None:
    """18.0, $18 and a still-boxed 18 are one vote (issue 16: normalise before the vote), which beats
    a single heavier 20."""
    vote = weighted_vote([Ballot("a", "18.0", 0.3), Ballot("b", "$18", 0.3), Ballot("c", "\\boxed{18}", 0.3),
                          Ballot("d", "20", 0.8)], "number")
    assert vote.winner is not None and vote.winner.count == 3 and vote.winner.key == "18"
