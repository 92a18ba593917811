"""``symphony bench privacy``: what privacy noise on published vectors costs in selection quality.

Paper §privacy / DESIGN §2: a node may publish its capability vector noised (``--privacy-sigma``)
and its hardware coarsened, while it scores beacons with its exact private vector. The noise acts
twice in BEACONSELECT: (1) the ledger QUERY ranks candidates by the *published* vectors, so the best
agent may miss the top-L invited; (2) the selector caps a reply's claim at phi(published, r) +
``claim_tolerance``, so an honest noised agent whose published score fell more than that below its
true one is ranked by the noisy published score.

This bench runs exactly that code (``Ledger.query`` over signed records, ``BeaconConfig``'s cap,
``beacon.ranking.select``) over synthetic agents, without a network: per round a sub-task's
requirement r, the true best agent (highest phi(private c_j, r) over all agents), and whether the
selection found it. Reported per sigma, over several seeds: % of rounds where the best agent is
chosen, the mean score shortfall phi(best) - phi(chosen), and the share of replies capped.
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from symphony.beacon import BeaconConfig, Candidate, select
from symphony.capability import (
    TASK_TYPES,
    HashingTagEncoder,
    SkillScores,
    capability_vector,
    encode_hardware,
    requirement_vector,
)
from symphony.ledger import Ledger, LedgerConfig
from symphony.ledger.store import unit_cosine, unit_vector
from symphony.node import coarsen_hardware, noised
from symphony.protocol import Hardware, Identity, LedgerRecord, encode_vector

SIGMAS = (0.0, 0.05, 0.1, 0.2, 0.5)
WORDS = ("math", "arithmetic", "algebra", "finance", "statistics", "geometry", "code", "python", "logic", "units",
         "retail", "physics", "chemistry", "history", "law", "medicine", "translation", "french", "sql", "biology")
TYPES = ("arithmetic", "algebra", "geometry", "code", "logic", "finance", "physics", "law", "medicine", "translation")
EPOCH = 1_700_000_000.0
__all__ = ["PrivacyConfig", "markdown", "run_privacy_bench"]

LONG_TTL = LedgerConfig(heartbeat_interval_s=24 * 3600.0)  # no gossip runs: records must stay available


@dataclass(frozen=True)
class PrivacyConfig:
    sigmas: tuple[float, ...] = SIGMAS
    agents: int = 200
    rounds: int = 300
    seeds: int = 3
    top_l: int = BeaconConfig().top_l
    claim_tolerance: float = BeaconConfig().claim_tolerance


@dataclass(frozen=True)
class _Agent:
    identity: Identity
    private: list[float]
    coarse: list[float]  # the vector of the coarsened hardware, before noise


def _agents(n: int, seed: int, encoder: HashingTagEncoder) -> list[_Agent]:
    """Agents differing in declared skills, hardware and skill EMAs, as a heterogeneous swarm."""
    rng = random.Random(seed)
    agents = []
    for i in range(n):
        identity = Identity(hashlib.sha256(f"privacy/{seed}/{i}".encode()).digest())
        tags = encoder.encode(" ".join(rng.sample(WORDS, rng.randint(2, 4))))
        skills = SkillScores(tuple(rng.uniform(0.2, 0.9) for _ in TASK_TYPES))
        hw = Hardware(memory_gb=rng.choice((6, 8, 12, 16, 24, 48, 80)),
                      accelerator=rng.choice(("cpu", "RTX 4090", "H100", "metal")), tokens_per_s=rng.uniform(5, 150))
        vectors = [capability_vector(tags=tags, skills=skills, hardware=encode_hardware(
            memory_gb=h.memory_gb, accelerator=h.accelerator, tokens_per_s=h.tokens_per_s))
            for h in (hw, coarsen_hardware(hw))]
        agents.append(_Agent(identity, list(vectors[0]), list(vectors[1])))
    return agents


def _ledger(agents: list[_Agent], sigma: float) -> Ledger:
    """Every agent's signed record with its published vector (noised and coarsened when sigma > 0)."""
    ledger = Ledger(LONG_TTL)
    for a in agents:
        vector = noised(a.identity, exact=a.private, coarse=a.coarse, sigma=sigma) if sigma else a.private
        record = LedgerRecord(agent_id=a.identity.agent_id, lamport=1, issued_at=int(EPOCH * 1000),
                              capability=encode_vector(vector)).signed_by(a.identity)
        ledger.merge(record, now=EPOCH)
    return ledger


def _requirements(rounds: int, seed: int, encoder: HashingTagEncoder) -> list[list[float]]:
    rng = random.Random(seed + 1)
    return [list(requirement_vector(" ".join(rng.sample(WORDS, rng.randint(1, 3))), rng.choice(TYPES), encoder))
            for _ in range(rounds)]


def _run_sigma(agents: list[_Agent], requirements: list[list[float]], sigma: float,
               cfg: PrivacyConfig) -> dict[str, float]:
    """One seed at one sigma: BEACONSELECT's choice vs the true best, every round."""
    ledger = _ledger(agents, sigma)
    private = {a.identity.agent_id: np.asarray(unit_vector(a.private)) for a in agents}
    ids = list(private)
    matrix = np.stack([private[i] for i in ids])
    hits, shortfall, capped, replies = 0, [], 0, 0
    for r in requirements:
        unit_r = unit_vector(r)
        truth = matrix @ np.asarray(unit_r)
        best = float(truth.max())
        candidates = []
        for record, _ in ledger.query(requirement=r, limit=cfg.top_l, now=EPOCH):
            claim = float(private[record.agent_id] @ np.asarray(unit_r))
            published = unit_cosine(ledger.unit(record), unit_r)
            if claim > published + cfg.claim_tolerance:  # BeaconSelector._candidate caps it
                claim, capped = published, capped + 1
            replies += 1
            candidates.append(Candidate(agent_id=record.agent_id, score=claim))
        (chosen,) = select(candidates).primaries
        true_chosen = float(truth[ids.index(chosen.agent_id)])
        hits += true_chosen >= best - 1e-9
        shortfall.append(best - true_chosen)
    return {"best_found": hits / len(requirements), "shortfall": statistics.fmean(shortfall),
            "capped": capped / replies}


def run_privacy_bench(cfg: PrivacyConfig, out: Path, console: Console | None = None) -> dict[str, Any]:
    """Every sigma on the same agents and sub-tasks per seed; writes privacy.json and privacy.md."""
    console = console or Console()
    encoder = HashingTagEncoder()
    per_sigma: dict[float, list[dict[str, float]]] = {s: [] for s in cfg.sigmas}
    for seed in range(cfg.seeds):
        agents, requirements = _agents(cfg.agents, seed, encoder), _requirements(cfg.rounds, seed, encoder)
        for sigma in cfg.sigmas:
            per_sigma[sigma].append(_run_sigma(agents, requirements, sigma, cfg))
    rows = [_summary(sigma, runs) for sigma, runs in per_sigma.items()]
    results = {"config": cfg.__dict__ | {"sigmas": list(cfg.sigmas)}, "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "privacy.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    (out / "privacy.md").write_text(text)
    console.print(text)
    return results


def _summary(sigma: float, runs: list[dict[str, float]]) -> dict[str, float]:
    """Mean over seeds, with the spread (population stdev) of the best-found share."""
    mean = {k: statistics.fmean(run[k] for run in runs) for k in runs[0]}
    return {"sigma": sigma, **mean, "best_found_sd": statistics.pstdev(run["best_found"] for run in runs)}


def markdown(results: dict[str, Any]) -> str:
    cfg = results["config"]
    lines = [f"Privacy noise vs selection quality: {cfg['agents']} agents, {cfg['rounds']} rounds x {cfg['seeds']} "
             f"seeds, top-L {cfg['top_l']}, claim tolerance {cfg['claim_tolerance']}", "",
             "| sigma | best agent chosen | mean score shortfall | replies capped |", "|---|---|---|---|"]
    for row in results["rows"]:
        lines.append(f"| {row['sigma']:g} | {100 * row['best_found']:.1f} % (sd {100 * row['best_found_sd']:.1f}) "
                     f"| {row['shortfall']:.4f} | {100 * row['capped']:.1f} % |")
    return "\n".join(lines) + "\n"
