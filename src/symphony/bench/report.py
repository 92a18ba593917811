"""Reports of an accuracy run: tables in the paper's layout, paired tests, plots, per-item diffs.

Input is the run's JSONL rows (one per dataset x pool x system x seed x item, see
``bench.accuracy``). Accuracy is computed per seed and reported as mean ± sample std over seeds
(paper Tables 2, 3, 5, 6 report one number per cell; the spread is ours). ``comparisons`` pairs
every system with ``direct`` in its pool, every ablation (``symphony:cots=1``) with its base system
(``symphony``) and every pool's system with the same system in the first pool (paper Tables 3, 5,
6), on the (seed, item) pairs both answered, with McNemar's test on the discordant pairs (only one
of the two right): exact two-sided binomial while they are few (the small n a CPU-only run
affords), chi-square with continuity correction beyond. ``chain_stats`` reads Symphony's traces:
how many chains, how often they agree, whether a chain held the gold answer the vote lost, and
how the intermediate steps went (paper §3.3-3.4, the weighted vote over CoTs).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from symphony.bench.scoring import matches_gold
from symphony.errors import ConfigError
from symphony.pipeline import AnswerKind, normalize_answer
from symphony.pipeline.executor import STEP_MAX_TOKENS

#: Below this many discordant pairs McNemar's test is the exact binomial one; from it on, chi-square.
EXACT_BELOW: Final = 25
_PLAIN_NUMBER: Final = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")


@dataclass(frozen=True)
class Cell:
    """One (dataset, system) result: accuracy per seed and the costs per question."""

    n: int
    per_seed: tuple[float, ...]
    tokens: float
    calls: float
    latency_median_s: float
    latency_mean_s: float

    @property
    def items_per_hour(self) -> float:
        """Questions this system answers per hour, one at a time (the issue-16 bench-speed figure)."""
        return 3600.0 / self.latency_mean_s if self.latency_mean_s > 0 else math.inf

    @property
    def mean(self) -> float:
        return statistics.mean(self.per_seed)

    @property
    def std(self) -> float:
        return statistics.stdev(self.per_seed) if len(self.per_seed) > 1 else 0.0


def label(row: dict[str, Any], pools: set[str]) -> str:
    """How a row's system is named in reports: with its pool when a run compares pools."""
    return f"{row['system']} [{row['pool']}]" if len(pools) > 1 else str(row["system"])


def summarize(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], Cell]:
    """Cells keyed by (dataset, system label)."""
    pools = {r["pool"] for r in rows}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], label(r, pools)), []).append(r)
    cells = {}
    for key, mine in groups.items():
        seeds = sorted({r["seed"] for r in mine})
        per_seed = tuple(statistics.mean(float(r["correct"]) for r in mine if r["seed"] == s) for s in seeds)
        cells[key] = Cell(n=len(mine), per_seed=per_seed, tokens=statistics.mean(r["tokens"] for r in mine),
                          calls=statistics.mean(r["calls"] for r in mine),
                          latency_median_s=statistics.median(r["latency_s"] for r in mine),
                          latency_mean_s=statistics.mean(r["latency_s"] for r in mine))
    return cells


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (1.0 when there are none)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return float(min(1.0, 2 * tail))


def mcnemar(only_a: int, only_b: int) -> tuple[float, str]:
    """McNemar's two-sided p-value and its name: ``exact`` (binomial) below ``EXACT_BELOW``
    discordant pairs, else ``chi2`` (1 df, continuity corrected: (|b - c| - 1)^2 / (b + c))."""
    n = only_a + only_b
    if n < EXACT_BELOW:
        return mcnemar_exact(only_a, only_b), "exact"
    statistic = (abs(only_a - only_b) - 1) ** 2 / n
    return math.erfc(math.sqrt(statistic / 2)), "chi2"


@dataclass(frozen=True)
class Paired:
    """Paired outcomes of two systems on the same (seed, item) pairs."""

    both: int
    only_base: int
    only_other: int
    neither: int
    fixed: tuple[str, ...]
    broken: tuple[str, ...]

    @property
    def n(self) -> int:
        return self.both + self.only_base + self.only_other + self.neither

    @property
    def test(self) -> tuple[float, str]:
        """McNemar's p-value and which test gave it (``mcnemar``)."""
        return mcnemar(self.only_base, self.only_other)


def paired(rows: Iterable[dict[str, Any]], dataset: str, base: str, other: str) -> Paired:
    """Compare system labels ``base`` and ``other`` on ``dataset``; ``fixed`` / ``broken`` name
    the "seed/item" pairs ``other`` got right where ``base`` did not, and the reverse."""
    rows = list(rows)
    pools = {r["pool"] for r in rows}
    outcome: dict[str, dict[str, bool]] = {base: {}, other: {}}
    for r in rows:
        name = label(r, pools)
        if r["dataset"] == dataset and name in outcome:
            outcome[name][f"{r['seed']}/{r['id']}"] = bool(r["correct"])
    keys = sorted(outcome[base].keys() & outcome[other].keys())
    a, b = outcome[base], outcome[other]
    return Paired(both=sum(a[k] and b[k] for k in keys), only_base=sum(a[k] and not b[k] for k in keys),
                  only_other=sum(b[k] and not a[k] for k in keys), neither=sum(not a[k] and not b[k] for k in keys),
                  fixed=tuple(k for k in keys if b[k] and not a[k]), broken=tuple(k for k in keys if a[k] and not b[k]))


def accuracy_table(cells: dict[tuple[str, str], Cell], datasets: Sequence[str], systems: Sequence[str]) -> str:
    """Paper layout: one row per system, one column per dataset, "mean ± std (n)" per cell."""
    lines = ["| system | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    for system in systems:
        row = []
        for d in datasets:
            c = cells.get((d, system))
            row.append(f"{c.mean:.3f} ± {c.std:.3f} (n={c.n})" if c else "—")
        lines.append(f"| {system} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def cost_table(cells: dict[tuple[str, str], Cell], datasets: Sequence[str], systems: Sequence[str]) -> str:
    """Per dataset and system: accuracy per seed, tokens, model calls, median latency per question and
    questions per hour (from the mean latency: what a run of this size costs, one question at a time)."""
    lines = ["| dataset | system | n | accuracy per seed | tokens / question | calls / question | median latency (s) "
             "| questions / hour |",
             "|---|---|---|---|---|---|---|---|"]
    for d in datasets:
        for s in systems:
            if (c := cells.get((d, s))) is not None:
                lines.append(f"| {d} | {s} | {c.n} | {', '.join(f'{a:.2f}' for a in c.per_seed)} | {c.tokens:.0f} | "
                             f"{c.calls:.1f} | {c.latency_median_s:.1f} | {c.items_per_hour:.0f} |")
    return "\n".join(lines)


def _split_label(name: str) -> tuple[str, str]:
    """A report label's (system, pool); pool is "" when the run compares no pools."""
    if name.endswith("]") and " [" in name:
        system, _, pool = name[:-1].rpartition(" [")
        return system, pool
    return name, ""


def comparisons(systems: Sequence[str]) -> list[tuple[str, str]]:
    """The (base, other) label pairs worth a paired test, in report order without repeats: each
    system against ``direct`` of its pool, each ablation (``symphony:cots=1``) against its base
    (``symphony``) in its pool, and each system of a later pool against itself in the first pool."""
    parts = [_split_label(s) for s in systems]
    present = set(systems)
    first_pool = parts[0][1] if parts else ""

    def named(system: str, pool: str) -> str:
        return f"{system} [{pool}]" if pool else system

    pairs: list[tuple[str, str]] = []
    for label_, (system, pool) in zip(systems, parts, strict=True):
        base_system = system.partition(":")[0]
        for base in (named("direct", pool), named(base_system, pool), named(system, first_pool)):
            if base != label_ and base in present and (base, label_) not in pairs:
                pairs.append((base, label_))
    return pairs


def comparison_table(rows: Sequence[dict[str, Any]], datasets: Sequence[str], systems: Sequence[str]) -> str:
    """One line per dataset and ``comparisons`` pair that shares (seed, item) pairs: the paired
    counts, McNemar's p and which test (exact or chi2) gave it. Pairs with no shared item are left out."""
    lines = ["| dataset | base | system | both right | only base | only system | neither | McNemar p | test |",
             "|---|---|---|---|---|---|---|---|---|"]
    for d in datasets:
        for base, other in comparisons(systems):
            p = paired(rows, d, base, other)
            if p.n:
                value, test = p.test
                lines.append(f"| {d} | {base} | {other} | {p.both} | {p.only_base} | {p.only_other} | {p.neither} | "
                             f"{value:.3f} | {test} |")
    return "\n".join(lines)


def diff_view(rows: Sequence[dict[str, Any]], datasets: Sequence[str], systems: Sequence[str]) -> str:
    """For each ``comparisons`` pair: which seed/items the system fixed (right where the base was
    wrong) or broke, with answers."""
    answers = {(r["dataset"], r["system"], r["pool"], r["seed"], r["id"]): r for r in rows}
    pools = {r["pool"] for r in rows}
    out = []
    for d in datasets:
        for base, s in comparisons(systems):
            p = paired(rows, d, base, s)
            if not (p.fixed or p.broken):
                continue
            out.append(f"- **{d}: {s} vs {base}** fixed {len(p.fixed)}: {_pairs(p.fixed, answers, d, s, pools)}; "
                       f"broke {len(p.broken)}: {_pairs(p.broken, answers, d, s, pools)}")
    return "\n".join(out) or "(no item differs)"


def _pairs(keys: Sequence[str], answers: dict[tuple[Any, ...], dict[str, Any]], dataset: str, system: str,
           pools: set[str]) -> str:
    shown = []
    for key in keys:
        seed, _, item = key.partition("/")
        row = next((r for k, r in answers.items() if k[0] == dataset and k[3] == int(seed) and k[4] == item
                    and label(r, pools) == system), None)
        answer = "" if row is None else f" (answer {str(row['answer'])[:20]!r}, gold {str(row['gold'])[:20]!r})"
        shown.append(f"`{key}`{answer}")
    return ", ".join(shown) or "none"


@dataclass(frozen=True)
class ChainStats:
    """What Symphony's chains did on one question (one result row with a Symphony trace).

    ``chains`` counts the chains that returned an answer (``attempts``: all planner attempts,
    backups included); ``distinct`` the different answers among them; ``gold_in_chain`` whether any
    of them was right (``scoring.matches_gold``; not judged for code), ``vote_right`` whether the
    vote returned a right answer. Intermediate steps
    are those before a chain's final step (the final one is the last step of a chain that
    answered, or a step asking the question itself, ``planner.anchor_final_step``);
    ``non_numeric`` counts intermediate answers that are not one plain number once cleaned (for
    maths items, an answer the next step cannot use as a number). ``capped`` counts steps whose
    every attempt used its whole token budget (``executor.STEP_MAX_TOKENS``; rows written before
    it was raised from 256 for intermediate steps are judged against 512 too, so their count is
    low): the step's completion tokens per attempt reached the cap, which no attempt can exceed,
    so this is exact for one attempt and a lower bound else.
    ``blacklisted`` counts the pool agents some node had blacklisted when the question was asked
    (``contenders.blacklists``; 0 for rows written before it was recorded).
    """

    seed: int
    id: str
    chains: int
    attempts: int
    distinct: int
    gold_in_chain: bool | None  # None: not judged (code: a chain's tests are not run again here)
    vote_right: bool
    intermediate: int
    non_numeric: int
    steps: int
    capped: int
    blacklisted: int = 0


def _is_number(answer: str) -> bool:
    return bool(_PLAIN_NUMBER.fullmatch(normalize_answer(answer, "number")))


def chain_stats(row: dict[str, Any]) -> ChainStats | None:
    """The chain statistics of a result row, or None when it has no Symphony trace."""
    trace = row.get("trace")
    if not isinstance(trace, dict) or not isinstance(trace.get("chains"), list):
        return None
    kind: AnswerKind = trace.get("answer_kind", "number")
    question = str(trace.get("question", "")).strip()
    answered = [c for c in trace["chains"] if c.get("ok")]
    keys = {normalize_answer(c["answer"], kind) for c in answered}
    gold = str(row.get("gold", ""))
    in_chain = None if kind == "code" else any(matches_gold(c["answer"], gold, kind) for c in answered)
    intermediate = non_numeric = steps = capped = 0
    for chain in trace["chains"]:
        chain_steps = (chain.get("trace") or {}).get("steps") or []
        for n, step in enumerate(chain_steps):
            final = (chain.get("ok") and n == len(chain_steps) - 1) or str(step.get("question", "")).strip() == question
            attempts = max(1, len(step.get("attempts", [])))
            steps += 1
            capped += step.get("completion_tokens", 0) / attempts >= STEP_MAX_TOKENS
            if not final and step.get("ok"):
                intermediate += 1
                non_numeric += not _is_number(str(step.get("answer", "")))
    return ChainStats(seed=row["seed"], id=row["id"], chains=len(answered), attempts=len(trace["chains"]),
                      distinct=len(keys), gold_in_chain=in_chain, vote_right=bool(row.get("correct")),
                      intermediate=intermediate, non_numeric=non_numeric, steps=steps, capped=capped,
                      blacklisted=len({a for agents in (row.get("blacklisted") or {}).values() for a in agents}))


def chain_table(rows: Sequence[dict[str, Any]], dataset: str, system: str) -> str:
    """Per question of ``dataset`` answered by ``system`` (a label): its ``ChainStats``, then the totals."""
    pools = {r["pool"] for r in rows}
    stats = [st for r in rows if r["dataset"] == dataset and label(r, pools) == system
             if (st := chain_stats(r)) is not None]
    if not stats:
        return ""
    yes = {True: "yes", False: "no", None: "—"}
    lines = [f"{dataset} / {system}:", "",
             ("| seed/item | chains (attempts) | distinct answers | gold in a chain | vote right | "
              "non-numeric intermediate | steps at token cap | agents blacklisted |"), "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {s.seed}/{s.id} | {s.chains} ({s.attempts}) | {s.distinct} | {yes[s.gold_in_chain]} | "
              f"{yes[s.vote_right]} | {s.non_numeric}/{s.intermediate} | {s.capped}/{s.steps} | {s.blacklisted} |"
              for s in stats]
    split = sum(s.chains > 1 and s.distinct == s.chains for s in stats)
    judged = [s for s in stats if s.gold_in_chain is not None]
    oracle = (f"a chain held the gold in {sum(bool(s.gold_in_chain) for s in judged)}/{len(judged)}, the vote "
              f"returned it in {sum(bool(s.gold_in_chain) and s.vote_right for s in judged)} of those"
              if judged else "whether a chain held the gold is not judged for code")
    lines += ["", (f"All chains differ in {split}/{len(stats)} questions; {oracle}; "
                   f"{sum(s.non_numeric for s in stats)}/{sum(s.intermediate for s in stats)} intermediate answers "
                   f"non-numeric; {sum(s.capped for s in stats)}/{sum(s.steps for s in stats)} steps at the token "
                   "cap.")]
    return "\n".join(lines)


#: matplotlib is in the ``bench`` extra, not a runtime dependency: only the benches plot.
PLOTS_INSTALL: Final = "pip install 'symphony-agents[bench]'"


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (PNG files, no display); ``ConfigError`` with the pip
    command when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ConfigError(f"the benchmark plots need matplotlib, in the bench extra: {PLOTS_INSTALL}") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(cells: dict[tuple[str, str], Cell], dataset: str, systems: Sequence[str], path: Path) -> Path:
    """A bar chart of every system's accuracy on ``dataset`` with std-over-seeds error bars (PNG)."""
    plt = pyplot()
    shown = [s for s in systems if (dataset, s) in cells]
    means = [cells[(dataset, s)].mean for s in shown]
    stds = [cells[(dataset, s)].std for s in shown]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(shown) + 1), 3.5))
    ax.bar(range(len(shown)), means, yerr=stds, capsize=4, color="#4C72B0")
    ax.set_xticks(range(len(shown)), shown, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (mean ± std over seeds)")
    ax.set_title(f"{dataset}: n per system = {', '.join(str(cells[(dataset, s)].n) for s in shown)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def render(rows: Sequence[dict[str, Any]], *, datasets: Sequence[str], systems: Sequence[str], out_dir: Path,
           plots: bool = True) -> str:
    """The whole markdown report (and one PNG per dataset under ``out_dir`` when ``plots``)."""
    cells = summarize(rows)
    parts = ["## Accuracy (mean ± std over seeds)", accuracy_table(cells, datasets, systems),
             "", "## Costs per question", cost_table(cells, datasets, systems),
             "", "## Paired comparisons: with direct solving, ablations with their base, pools with the first",
             comparison_table(rows, datasets, systems),
             "", "## Per-item differences from direct solving", diff_view(rows, datasets, systems)]
    chains = [t for d in datasets for s in systems if (t := chain_table(rows, d, s))]
    if chains:
        parts += ["", "## Symphony's chains and votes", *(line for t in chains for line in ("", t))]
    if plots:
        names = [plot_accuracy(cells, d, systems, out_dir / f"accuracy-{d}.png").name
                 for d in datasets if any((d, s) in cells for s in systems)]
        parts += ["", "## Plots", *(f"![{n}]({n})" for n in names)]
    return "\n".join(parts) + "\n"


__all__ = ["EXACT_BELOW", "Cell", "ChainStats", "Paired", "accuracy_table", "chain_stats", "chain_table",
           "comparison_table", "comparisons", "cost_table", "diff_view", "label", "mcnemar", "mcnemar_exact", "paired",
           "plot_accuracy", "pyplot", "render", "summarize"]
