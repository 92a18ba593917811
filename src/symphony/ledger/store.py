"""The capability ledger's pure core: a signed, single-writer LWW map (DESIGN §3).

Theory of operation
-------------------
The ledger maps ``agent_id -> LedgerRecord``. Every record is signed by the key that
*is* its ``agent_id`` (see ``protocol.identity``), so "only the owner writes its
record" is checked on every merge, whoever relayed the record: a record signed by A
that claims to be B's simply fails verification against B's key.

Merge is last-writer-wins on the total order ``(lamport, sha256(signature))``.
For honest owners lamport alone decides (an owner never reuses a lamport); the hash
only breaks ties between two *different* records an owner signed with the same
lamport (equivocation), so that every replica still picks the same one. A total
order makes merge commutative, associative and idempotent, i.e. a state-based CRDT
(paper: LWW-register with Lamport timestamps); ``tests/ledger`` checks these laws.

Liveness is kept apart from records: owners publish tiny signed ``Heartbeat``s, and
a record counts as *available* while its owner's last heartbeat arrived within the
TTL (and it did not announce ``leaving``). Heartbeats never change the record, so
they cost a few hundred bytes instead of a full record re-gossip. A heartbeat also
carries its owner's newest lamport, telling a lagging replica to pull.

Records whose owners stay silent for ``gc_after_s`` are garbage-collected and leave
a tombstone (their lamport), so anti-entropy with a replica that has not collected
them yet cannot resurrect them; only a newer record from the owner can.

Nothing here does I/O: callers pass ``now`` (seconds, wall clock) and receive
decisions, so the same code runs in real nodes and in the 10,000-node simulator.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import operator
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from symphony.capability.vector import phi
from symphony.errors import PeerError, StaleMessage
from symphony.protocol.messages import Digest, Heartbeat, LedgerRecord

NEUTRAL_REPUTATION = 0.5


class Merge(Enum):
    """What ``Ledger.merge`` did with a record."""

    ADDED = "added"
    UPDATED = "updated"
    DUPLICATE = "duplicate"
    OLDER = "older"
    FOREIGN = "foreign"  # another shard's record on a sharded replica (``Ledger.keeps``): not stored


@dataclass(frozen=True)
class LedgerConfig:
    """Timing of liveness and garbage collection, in seconds."""

    heartbeat_interval_s: float = 60.0
    ttl_heartbeats: float = 3.0
    gc_after_s: float = 3600.0
    skew_s: float = 30.0

    def __post_init__(self) -> None:
        if self.heartbeat_interval_s <= 0 or self.ttl_heartbeats < 1:
            raise ValueError("heartbeat_interval_s must be > 0 and ttl_heartbeats >= 1")

    @property
    def ttl_s(self) -> float:
        return self.heartbeat_interval_s * self.ttl_heartbeats


@dataclass
class _Liveness:
    stored_at: float
    last_heartbeat_ms: int = -1
    last_seen: float | None = None
    suspected_at: float | None = None
    vouched: bool = False  # sharded liveness: up on its gateway's word until withdrawn or suspected


@dataclass(frozen=True)
class QueryFilter:
    """QUERY(filter) constraints; every field is optional (DESIGN §3)."""

    tags_any: frozenset[str] = frozenset()
    available_only: bool = True
    min_memory_gb: float = 0.0
    accelerator: str | None = None
    min_tokens_per_s: float = 0.0
    min_reputation: float = 0.0
    exclude: frozenset[str] = frozenset()


def record_order(record: LedgerRecord) -> tuple[int, str]:
    """The LWW total order key: lamport first, then a hash of the signature.

    Only verified records are merged, and a valid Ed25519 signature binds its content
    (deterministic signing: same content, same signature), so hashing the 64-byte
    signature orders distinct versions as well as hashing the whole record would, at a
    fraction of the cost (this runs on every merge and digest).
    """
    return record.lamport, hashlib.sha256(record.sig.encode()).hexdigest()


def match_score(record: LedgerRecord, requirement: list[float]) -> float:
    """phi(c_j, r(t)) on the record's published vector; 0 if dimensions disagree."""
    vector = record.vector
    return phi(vector, requirement) if len(vector) == len(requirement) else 0.0


def unit_vector(values: list[float]) -> list[float] | None:
    """``values`` scaled to length 1 (``math.hypot`` avoids overflow, as ``phi``'s rescaling does); None if zero."""
    norm = math.hypot(*values)
    if norm == 0.0 or not math.isfinite(norm):
        return None
    return [x / norm for x in values]


def unit_cosine(a: list[float] | None, b: list[float] | None) -> float:
    """phi of two vectors given as ``unit_vector``s: their dot product; 0 if either is zero or dims differ."""
    if a is None or b is None or len(a) != len(b):
        return 0.0
    return max(-1.0, min(1.0, float(sum(map(operator.mul, a, b)))))


class _UnitMatrix:
    """Every record's unit c_j as rows of one matrix, so QUERY scores N records with one product.

    Profiling the 10,000-agent systems bench: scoring records one by one in Python cost ~1 s per
    beacon round. Rebuilt when records are added or removed; an updated record rewrites its row."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.matrix: np.ndarray = np.zeros((0, 0))
        self.stale = True
        self.dirty: set[str] = set()

    def changed(self, agent_id: str, *, added: bool) -> None:
        if added:
            self.stale = True
        else:
            self.dirty.add(agent_id)

    def scores(self, ledger: Ledger, unit_r: list[float]) -> tuple[dict[str, int], np.ndarray]:
        dims = len(unit_r)
        if self.stale or self.matrix.shape[1] != dims:
            self.rows = {a: i for i, a in enumerate(ledger.records)}
            self.matrix = np.zeros((len(self.rows), dims))
            self.dirty = set(self.rows)
            self.stale = False
        for agent_id in self.dirty:
            unit = ledger.unit(ledger.records[agent_id])
            self.matrix[self.rows[agent_id]] = unit if unit is not None and len(unit) == dims else 0.0
        self.dirty.clear()
        return self.rows, self.matrix @ np.asarray(unit_r)


@dataclass
class Ledger:
    """One replica of the ledger. Not thread-safe; owned by one node task.

    ``keeps`` makes it a sharded replica (architecture §9): only records of agents it keeps (its own
    shard, ``ledger.shard.keeps_shard``) are stored; others are counted in ``foreign`` and never
    pulled by anti-entropy. None (the default) keeps every record.
    """

    config: LedgerConfig = field(default_factory=LedgerConfig)
    records: dict[str, LedgerRecord] = field(default_factory=dict)
    lamport: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    keeps: Callable[[str], bool] | None = None
    foreign: int = 0
    _liveness: dict[str, _Liveness] = field(default_factory=dict)
    _tombstones: dict[str, tuple[int, float]] = field(default_factory=dict)
    _units: dict[str, tuple[str, list[float] | None]] = field(default_factory=dict, repr=False)  # agent: (sig, unit c_j)
    _matrix: _UnitMatrix = field(default_factory=lambda: _UnitMatrix(), repr=False)

    # ---- merging --------------------------------------------------------------------

    def merge(self, record: LedgerRecord, *, now: float) -> Merge:
        """Merge a record whose signature was already verified (``LedgerRecord.from_wire``).

        Advances the local Lamport clock past the record's. A record issued recently
        counts as a sign of life of its owner.
        """
        self.lamport = max(self.lamport, record.lamport)
        if self.keeps is not None and not self.keeps(record.agent_id):
            self.foreign += 1
            return Merge.FOREIGN
        tomb = self._tombstones.get(record.agent_id)
        if tomb is not None and record.lamport <= tomb[0]:
            return Merge.OLDER
        current = self.records.get(record.agent_id)
        if current is not None:
            if record_order(record) == record_order(current):
                return Merge.DUPLICATE
            if record_order(record) < record_order(current):
                return Merge.OLDER
        self.records[record.agent_id] = record
        self._matrix.changed(record.agent_id, added=current is None)
        self._tombstones.pop(record.agent_id, None)
        live = self._liveness.setdefault(record.agent_id, _Liveness(stored_at=now))
        if abs(now - record.issued_at / 1000) <= self.config.ttl_s:
            live.last_seen = max(live.last_seen or now, now)
        return Merge.ADDED if current is None else Merge.UPDATED

    def merge_wire(self, data: Any, *, now: float) -> Merge | PeerError:
        """Validate, verify and merge an untrusted record; count and return any rejection."""
        try:
            record = LedgerRecord.from_wire(data)
        except PeerError as exc:
            self.rejected[exc.reason] += 1
            return exc
        return self.merge(record, now=now)

    def issue(self, record: LedgerRecord) -> LedgerRecord:
        """Give the owner's next record the next Lamport time (unsigned; sign, then merge)."""
        self.lamport += 1
        return record.model_copy(update={"lamport": self.lamport, "sig": ""})

    # ---- liveness -------------------------------------------------------------------

    def observe_heartbeat(self, heartbeat: Heartbeat, *, now: float) -> bool:
        """Record a verified heartbeat. Returns True when its owner has a newer record
        than this replica holds (the caller should pull it).

        Raises:
            StaleMessage: older than the last heartbeat of this owner, or outside the
                clock-skew window (a replay of a captured heartbeat cannot revive a node).
        """
        if abs(now - heartbeat.ts / 1000) > self.config.skew_s:
            raise StaleMessage(f"heartbeat ts {heartbeat.ts} outside the skew window")
        live = self._liveness.setdefault(heartbeat.agent_id, _Liveness(stored_at=now))
        if heartbeat.ts <= live.last_heartbeat_ms:
            raise StaleMessage(f"heartbeat ts {heartbeat.ts} is not newer than {live.last_heartbeat_ms}")
        live.last_heartbeat_ms = heartbeat.ts
        live.last_seen = now
        current = self.records.get(heartbeat.agent_id)
        return current is None or current.lamport < heartbeat.lamport

    def suspect(self, agent_id: str, *, now: float) -> None:
        """Local failure detection: our direct connection to ``agent_id`` dropped.

        Heartbeats are gossiped rarely (they cost O(N) per agent), so a crash would take a
        TTL to notice; neighbours notice the dropped connection at once instead. The agent
        counts as unavailable *here* until we hear from it again (heartbeat or reconnect).
        """
        live = self._liveness.get(agent_id)
        if live is not None:
            live.suspected_at = now

    def observe_contact(self, agent_id: str, *, now: float) -> None:
        """A direct (authenticated) connection from ``agent_id`` opened: it is alive now."""
        live = self._liveness.get(agent_id)
        if live is not None and agent_id in self.records:
            live.last_seen = now

    def is_available(self, agent_id: str, *, now: float) -> bool:
        record = self.records.get(agent_id)
        live = self._liveness.get(agent_id)
        if record is None or record.availability == "leaving" or live is None or live.last_seen is None:
            return False
        if live.suspected_at is not None and live.last_seen <= live.suspected_at:
            return False
        return live.vouched or now - live.last_seen <= self.config.ttl_s

    def vouch(self, agent_id: str, *, now: float) -> None:
        """Sharded liveness: ``agent_id``'s shard gateway says it is up. It stays available without
        heartbeats reaching this replica until the gateway withdraws it or we suspect it ourselves."""
        live = self._liveness.setdefault(agent_id, _Liveness(stored_at=now))
        live.last_seen, live.vouched = now, True

    def withdraw(self, agent_id: str, *, now: float) -> None:
        """Sharded liveness: the gateway says ``agent_id`` is down (its heartbeats stopped)."""
        live = self._liveness.get(agent_id)
        if live is not None:
            live.vouched = False
            live.suspected_at = now

    def heartbeat_fresh(self, agent_id: str, *, now: float) -> bool:
        """Whether this replica received a heartbeat of ``agent_id`` within the TTL (a gateway's test)."""
        live = self._liveness.get(agent_id)
        return live is not None and now * 1000 - live.last_heartbeat_ms <= self.config.ttl_s * 1000

    def last_seen(self, agent_id: str) -> float | None:
        live = self._liveness.get(agent_id)
        return None if live is None else live.last_seen

    def collect_garbage(self, *, now: float, keep: Iterable[str] = ()) -> list[str]:
        """Drop records whose owner was silent (or never seen) for ``gc_after_s`` since
        they were stored; tombstone them; expire tombstones after twice that."""
        protected = set(keep)
        removed = []
        for agent_id, record in list(self.records.items()):
            live = self._liveness[agent_id]
            quiet_since = live.last_seen if live.last_seen is not None else live.stored_at
            if agent_id in protected or now - quiet_since < self.config.gc_after_s or self.is_available(agent_id, now=now):
                continue
            del self.records[agent_id]
            self._matrix.changed(agent_id, added=True)
            del self._liveness[agent_id]
            self._units.pop(agent_id, None)
            self._tombstones[agent_id] = (record.lamport, now)
            removed.append(agent_id)
        for agent_id, (_, since) in list(self._tombstones.items()):
            if now - since > 2 * self.config.gc_after_s:
                del self._tombstones[agent_id]
        for agent_id, live in list(self._liveness.items()):
            if agent_id not in self.records and now - live.stored_at > self.config.ttl_s:
                del self._liveness[agent_id]  # heartbeats of an agent whose record never came
        return removed

    # ---- anti-entropy ---------------------------------------------------------------

    def digest(self) -> Digest:
        return {agent_id: record.lamport for agent_id, record in self.records.items()}

    def digest_hash(self) -> str:
        """A short fingerprint of the whole replica: equal hashes mean nothing to sync."""
        h = hashlib.sha256()
        for agent_id in sorted(self.records):
            h.update(f"{agent_id}:{record_order(self.records[agent_id])[1]}\n".encode())
        return h.hexdigest()[:32]

    def diff(self, remote: Digest) -> tuple[list[LedgerRecord], list[str]]:
        """Compare with a remote digest: (records the remote lacks or has older,
        agent IDs the remote holds newer than we do)."""
        ours_newer = [r for a, r in self.records.items() if remote.get(a, -1) < r.lamport]
        theirs_newer = [a for a, lamport in remote.items()
                        if lamport > self._known_lamport(a) and (self.keeps is None or self.keeps(a))]
        return ours_newer, theirs_newer

    def _known_lamport(self, agent_id: str) -> int:
        """The newest lamport held for ``agent_id``, counting tombstones (-1 if none)."""
        if agent_id in self.records:
            return self.records[agent_id].lamport
        tomb = self._tombstones.get(agent_id)
        return -1 if tomb is None else tomb[0]

    # ---- QUERY ----------------------------------------------------------------------

    def reputation(self, agent_id: str) -> float:
        """Mean of the scores other agents published about ``agent_id`` (neutral if none)."""
        scores = [r.reputation[agent_id] for a, r in self.records.items() if a != agent_id and agent_id in r.reputation]
        return sum(scores) / len(scores) if scores else NEUTRAL_REPUTATION

    def query(
        self,
        flt: QueryFilter = QueryFilter(),
        *,
        requirement: list[float] | None = None,
        limit: int | None = None,
        now: float,
    ) -> list[tuple[LedgerRecord, float]]:
        """QUERY(filter): matching records ranked by cosine to ``requirement`` (top-L).

        Without a requirement every match scores 0 and order is by agent ID. Ties in
        score are broken by agent ID so every replica returns the same list.
        """
        matches = [r for r in self.records.values() if self._matches(r, flt, now)]
        unit_r = unit_vector(requirement) if requirement else None
        if unit_r is None:
            scored = [(r, 0.0) for r in matches]
        else:
            rows, scores = self._matrix.scores(self, unit_r)
            scored = [(r, min(1.0, max(-1.0, float(scores[rows[r.agent_id]])))) for r in matches]
        key = lambda pair: (-pair[1], pair[0].agent_id)  # noqa: E731
        return sorted(scored, key=key) if limit is None else heapq.nsmallest(limit, scored, key=key)

    def _matches(self, record: LedgerRecord, flt: QueryFilter, now: float) -> bool:
        hw = record.hardware
        return (
            record.agent_id not in flt.exclude
            and (not flt.available_only or self.is_available(record.agent_id, now=now))
            and (not flt.tags_any or bool(flt.tags_any.intersection(record.tags)))
            and hw.memory_gb >= flt.min_memory_gb
            and (flt.accelerator is None or hw.accelerator == flt.accelerator)
            and hw.tokens_per_s >= flt.min_tokens_per_s
            and (flt.min_reputation <= 0 or self.reputation(record.agent_id) >= flt.min_reputation)
        )

    def unit(self, record: LedgerRecord) -> list[float] | None:
        """The record's c_j / |c_j|, decoded once per record version.

        Profiling the 1,000-agent systems bench showed QUERY dominated by decoding and
        re-normalizing every published vector on every beacon round (docs/results.md)."""
        cached = self._units.get(record.agent_id)
        if cached is None or cached[0] != record.sig:
            cached = (record.sig, unit_vector(record.vector))
            self._units[record.agent_id] = cached
        return cached[1]
