"""Reports of an accuracy run: tables in the paper's layout, paired tests, plots, per-item diffs.

Input is the run's JSONL rows (one per dataset x pool x system x seed x item, see
``bench.accuracy``). Accuracy is computed per seed and reported as mean ± sample std over seeds
(paper Tables 2, 3, 5, 6 report one number per cell; the spread is ours). Systems are compared to
``direct`` on the (seed, item) pairs both answered with McNemar's exact test: a two-sided binomial
test on the discordant pairs (only one of the two right), which needs no normality and suits the
small n a CPU-only run affords.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Cell:
    """One (dataset, system) result: accuracy per seed and the costs per question."""

    n: int
    per_seed: tuple[float, ...]
    tokens: float
    calls: float
    latency_median_s: float

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
                          latency_median_s=statistics.median(r["latency_s"] for r in mine))
    return cells


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (1.0 when there are none)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return float(min(1.0, 2 * tail))


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
    def p_value(self) -> float:
        return mcnemar_exact(self.only_base, self.only_other)


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
    """Per dataset and system: accuracy per seed, tokens, model calls and median latency per question."""
    lines = ["| dataset | system | n | accuracy per seed | tokens / question | calls / question | median latency (s) |",
             "|---|---|---|---|---|---|---|"]
    for d in datasets:
        for s in systems:
            if (c := cells.get((d, s))) is not None:
                lines.append(f"| {d} | {s} | {c.n} | {', '.join(f'{a:.2f}' for a in c.per_seed)} | {c.tokens:.0f} | "
                             f"{c.calls:.1f} | {c.latency_median_s:.1f} |")
    return "\n".join(lines)


def significance_table(rows: Sequence[dict[str, Any]], datasets: Sequence[str], systems: Sequence[str],
                       base: str = "direct") -> str:
    """Each system against ``base`` per dataset: paired counts and McNemar's exact p."""
    lines = [f"| dataset | system | both right | only {base} | only system | neither | McNemar exact p |",
             "|---|---|---|---|---|---|---|"]
    for d in datasets:
        for s in systems:
            if s == base:
                continue
            p = paired(rows, d, base, s)
            if p.both + p.only_base + p.only_other + p.neither:
                lines.append(f"| {d} | {s} | {p.both} | {p.only_base} | {p.only_other} | {p.neither} | "
                             f"{p.p_value:.3f} |")
    return "\n".join(lines)


def diff_view(rows: Sequence[dict[str, Any]], datasets: Sequence[str], systems: Sequence[str],
              base: str = "direct") -> str:
    """Which seed/items each system fixed (right where ``base`` was wrong) or broke, with answers."""
    answers = {(r["dataset"], r["system"], r["pool"], r["seed"], r["id"]): r for r in rows}
    pools = {r["pool"] for r in rows}
    out = []
    for d in datasets:
        for s in systems:
            if s == base:
                continue
            p = paired(rows, d, base, s)
            if not (p.fixed or p.broken):
                continue
            out.append(f"- **{d} / {s}** fixed {len(p.fixed)}: {_pairs(p.fixed, answers, d, s, pools)}; "
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


def plot_accuracy(cells: dict[tuple[str, str], Cell], dataset: str, systems: Sequence[str], path: Path) -> Path:
    """A bar chart of every system's accuracy on ``dataset`` with std-over-seeds error bars (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
             "", "## Paired comparison with direct solving (McNemar exact test)",
             significance_table(rows, datasets, systems),
             "", "## Per-item differences from direct solving", diff_view(rows, datasets, systems)]
    if plots:
        names = [plot_accuracy(cells, d, systems, out_dir / f"accuracy-{d}.png").name
                 for d in datasets if any((d, s) in cells for s in systems)]
        parts += ["", "## Plots", *(f"![{n}]({n})" for n in names)]
    return "\n".join(parts) + "\n"


__all__ = ["Cell", "Paired", "accuracy_table", "cost_table", "diff_view", "label", "mcnemar_exact", "paired",
           "plot_accuracy", "render", "significance_table", "summarize"]
