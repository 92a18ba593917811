"""Loaders, extractors and scorers on real packaged items (fetched once into the cache dir)."""

from __future__ import annotations

import re

import pytest

from symphony.bench.datasets import (
    BBH_TASKS,
    _bbh_item,
    bbh_sources,
    load_aime,
    load_bbh,
    load_champ,
    load_dataset,
    load_gsm8k,
    load_humaneval,
    load_jee,
    load_medmcqa,
)
from symphony.bench.scoring import score
from symphony.pipeline.executor import parse_step_answer


def _quiet(_: str) -> None:
    pass


def test_gsm8k_has_the_100_packaged_questions_with_gold_numbers() -> None:
    """The first packaged GSM8K question is the remora one, gold 10."""
    items = load_gsm8k(log=_quiet)
    assert len(items) == 100
    assert items[0].question.startswith("Benny saw a 10-foot shark") and items[0].gold == "10"
    assert all(re.fullmatch(r"-?\d+(\.\d+)?", i.gold) and i.kind == "number" for i in items)


def test_bbh_samples_up_to_6_of_each_task_with_a_fixed_seed() -> None:
    """Same seed, same sample; another seed, another sample; 26 task types, 6 each where the pool allows."""
    first, again, other = load_bbh(log=_quiet), load_bbh(log=_quiet), load_bbh(seed=1, log=_quiet)
    pools = bbh_sources(_quiet)
    assert [i.id for i in first] == [i.id for i in again]
    assert [i.id for i in first] != [i.id for i in other]
    assert {i.meta["task"] for i in first} == set(BBH_TASKS) and len(BBH_TASKS) == 26
    per_task = {t: sum(i.meta["task"] == t for i in first) for t in BBH_TASKS}
    assert per_task == {t: min(6, len(pools[t][1])) for t in BBH_TASKS}
    assert sum(n == 6 for n in per_task.values()) == 8 and min(per_task.values()) == 3
    assert len(first) == 8 * 6 + 18 * 3


def test_bbh_items_carry_their_source_question_and_gold() -> None:
    """Each item's question is its task's description then the pooled question; its gold is the source's."""
    pools = bbh_sources(_quiet)
    for item in load_bbh(log=_quiet):
        description, pool = pools[item.meta["task"]]
        question, gold = pool[int(item.id.rsplit("-", 1)[1])]
        assert item.question == f"{description}\n\n{question}"
        expected = {"option": gold.strip("()"), "yes_no": gold.casefold()}.get(item.kind, gold)
        assert item.gold == expected


def test_bbh_options_are_rendered_like_bbh_and_gold_is_one_of_them() -> None:
    """Options listed as "(A) text" after "Options:"; letters run A.. in order; the gold letter is listed."""
    options = [i for i in load_bbh(log=_quiet) if i.kind == "option"]
    assert len(options) > 50
    for item in options:
        assert "\nOptions:\n(A) " in item.question
        assert item.letters == "ABCDEFGHIJKLMNOPQR"[: len(item.letters)] and len(item.letters) >= 2
        assert re.search(rf"^\({item.gold}\) \S", item.question, re.MULTILINE)
    assert len({i.gold for i in options}) >= 4


def test_bbh_pools_hold_only_their_tasks_items() -> None:
    """BBH reuses three-object exemplars for five and seven objects; the pools keep each question once,
    and deduction or tracking questions list as many options as their task has objects."""
    pools = bbh_sources(_quiet)
    questions = [q for _, pool in pools.values() for q, _ in pool]
    assert len(questions) == len(set(questions))
    for task, count in (("three", 3), ("five", 5), ("seven", 7)):
        for family in ("logical_deduction", "tracking_shuffled_objects"):
            for question, _ in pools.get(f"{family}_{task}_objects", ("", []))[1]:
                assert len(re.findall(r"^\([A-G]\) ", question, re.MULTILINE)) == count


def test_bbh_gold_outside_the_options_is_refused() -> None:
    """A source whose gold letter is not among the listed options is an error, not a silent item."""
    with pytest.raises(ValueError, match=r"gold \(C\) is not one of its options 'AB'"):
        _bbh_item("snarks", 0, "Which statement is sarcastic?\nOptions:\n(A) x\n(B) y", "(C)", "Sarcasm.")


def test_humaneval_has_164_problems_and_the_canonical_solutions_pass() -> None:
    """pass@1 scoring runs the tests in the sandbox: canonical passes, a wrong body fails."""
    items = load_humaneval(log=_quiet)
    assert len(items) == 164
    assert all(i.kind == "code" and i.meta["entry_point"] in i.meta["prompt"] for i in items)
    for item in items[:3]:
        assert score(item, item.gold)
        assert not score(item, "    return None\n")


def test_humaneval_completion_that_redefines_the_function_is_scored() -> None:
    """A model writing the whole function (with the prompt's signature) is run as such."""
    item = load_humaneval(log=_quiet)[0]
    whole = f"def {item.meta['entry_point']}(numbers, threshold):\n{item.gold}"
    assert score(item, whole)


def test_medmcqa_has_300_items_with_lettered_options() -> None:
    """"a) ..." options become "(A) ..."; gold is the ideal's letter."""
    items = load_medmcqa(log=_quiet)
    assert len(items) == 300
    assert "Options:\n(A) Hyperplasia\n(B) Hyperophy\n(C) Atrophy" in items[0].question
    assert items[0].gold == "C" and items[0].letters == "ABCD"


def test_competition_maths_stand_ins_load() -> None:
    """AIME 15 integers, JEE single-answer options, CHAMP numeric answers only."""
    aime, jee, champ = load_aime(log=_quiet), load_jee(log=_quiet), load_champ(log=_quiet)
    assert len(aime) == 15 and aime[1].gold == "79"
    assert len(jee) > 300 and jee[0].gold == "B" and jee[0].kind == "option"
    assert len(champ) == 85 and champ[0].gold == "239"


def test_unknown_dataset_is_refused() -> None:
    """A typo names the known datasets."""
    with pytest.raises(ValueError, match=r"unknown dataset 'gsm9k'"):
        load_dataset("gsm9k")


@pytest.mark.parametrize(
    ("dataset", "index", "output", "right"),
    [
        ("gsm8k", 0, "2 remoras of 6 inches are 12 inches, 10 feet = 120 inches, 12/120 = 10%. \\boxed{10\\%}", True),
        ("gsm8k", 0, "The answer is 12.", False),
        ("medmcqa", 0, "Atrophy follows obstruction. The answer is (C).", True),
        ("medmcqa", 0, "\\boxed{B}", False),
        ("aime", 1, "So m + n = 79. \\boxed{079}", True),
        ("champ", 0, "\\boxed{239}", True),
    ],
)
def test_model_outputs_are_extracted_and_scored(dataset: str, index: int, output: str, right: bool) -> None:
    """Executor extraction then the dataset's scorer, on realistic outputs."""
    item = load_dataset(dataset, log=_quiet)[index]
    answer = parse_step_answer(output, kind=item.kind).answer
    assert score(item, answer) is right


def test_text_and_counting_bbh_items_are_scored() -> None:
    """Word sorting compares normalised text; object counting compares numbers."""
    items = load_bbh(log=_quiet)
    words = next(i for i in items if i.meta["task"] == "word_sorting")
    assert score(words, words.gold.upper() + ".")
    assert not score(words, " ".join(reversed(words.gold.split())))
    count = next(i for i in items if i.meta["task"] == "object_counting")
    assert count.kind == "number" and score(count, count.gold) and not score(count, str(int(count.gold) + 1))


def test_no_answer_scores_wrong() -> None:
    """None or blank is wrong for every kind."""
    item = load_gsm8k(log=_quiet)[0]
    assert not score(item, None) and not score(item, "  ")
