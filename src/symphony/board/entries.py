"""The shared task board's entries: claims, heartbeats, artifacts and gaps, each signed by its author.

Entries are self-certifying like ledger records (``protocol.messages``): the author's agent ID is
its Ed25519 public key and ``sig`` covers every other field, so whoever relays an entry, a replica
checks it against the author it names, and an entry signed by A that claims to be B's fails.
Every entry names its ``board`` (one board per task), so an entry cannot be replayed onto another
task's board. Times are integer milliseconds, on the author's clock (the board tolerates skew only
in the sense that a lying clock hurts its own author: see ``crdt``).
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any, Final, Literal

from pydantic import Field, StringConstraints

from symphony.errors import MalformedMessage
from symphony.protocol import PROTOCOL_VERSION, AgentId, parse_json

# The ledger's signed-model base: signing bytes, ``signed_by`` and ``verify`` exactly as records use
# them. It is private to ``protocol.messages``; a public alias there would be the tidier home.
from symphony.protocol.messages import _Signed

MAX_ENTRY_BYTES = 4 * 1024
MAX_MS = 2**53
BoardId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
SUBTASK_ID: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
SubtaskId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=rf"^{SUBTASK_ID.pattern}$")]
Millis = Annotated[int, Field(ge=0, lt=MAX_MS)]
MAX_NEED_CHARS = 1_000  # a gap's ``need`` is the spec of the sub-task it adds; the entry stays under 4 KiB


class Claim(_Signed):
    """``claimant`` works on ``subtask`` from ``lease_start_ms``; the lease lasts ``lease_ms`` past its last heartbeat.

    ``hedge`` marks a backup claim on a straggler (hedged re-execution): it does not compete for the
    sub-task, it only makes the hedger's artifact a claimant's artifact.
    """

    _domain = "board/claim"

    v: int = PROTOCOL_VERSION
    kind: Literal["claim"] = "claim"
    board: BoardId
    subtask: SubtaskId
    claimant: AgentId
    lease_start_ms: Millis
    lease_ms: int = Field(ge=1, le=3_600_000)
    attempt: int = Field(default=1, ge=1, le=1000)
    hedge: bool = False

    @property
    def author(self) -> str:
        return self.claimant


class Beat(_Signed):
    """A lease renewal: "``agent`` still works on ``subtask`` at ``ts_ms``"; ``released``: "it stopped then"."""

    _domain = "board/beat"

    v: int = PROTOCOL_VERSION
    kind: Literal["beat"] = "beat"
    board: BoardId
    subtask: SubtaskId
    agent: AgentId
    ts_ms: Millis
    released: bool = False

    @property
    def author(self) -> str:
        return self.agent


class Artifact(_Signed):
    """A sub-task's result, by digest: the content travels separately and is checked against ``digest``."""

    _domain = "board/artifact"

    v: int = PROTOCOL_VERSION
    kind: Literal["artifact"] = "artifact"
    board: BoardId
    subtask: SubtaskId
    producer: AgentId
    digest: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    ts_ms: Millis

    @property
    def author(self) -> str:
        return self.producer


class Gap(_Signed):
    """A capability gap: a new sub-task ``subtask`` that ``blocks`` an existing one, for others to claim.

    ``need`` says what is missing; it is the new sub-task's spec. A *fix gap* (``fix_id(blocks)``) is
    posted by an agent that could not do ``blocks`` itself: its sub-task is ``blocks`` done again by
    another agent, and ``blocks`` then takes that result (``service``).
    """

    _domain = "board/gap"

    v: int = PROTOCOL_VERSION
    kind: Literal["gap"] = "gap"
    board: BoardId
    subtask: SubtaskId
    poster: AgentId
    need: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NEED_CHARS)]
    blocks: SubtaskId
    depends_on: list[SubtaskId] = Field(default_factory=list, max_length=16)
    ts_ms: Millis

    @property
    def author(self) -> str:
        return self.poster


Entry = Claim | Beat | Artifact | Gap
_KINDS: dict[str, type[Claim] | type[Beat] | type[Artifact] | type[Gap]] = {
    "claim": Claim, "beat": Beat, "artifact": Artifact, "gap": Gap}


def fix_id(subtask: str) -> str:
    """The sub-task of the fix gap for ``subtask``: one per sub-task, so an agent can post at most one."""
    return f"{subtask[:60]}.fix"


def entry_key(entry: Entry) -> str:
    """An entry's identity in the board's set: the hash of its signature (deterministic Ed25519 signing
    gives one signature per content, so equal entries share a key and distinct ones do not)."""
    return hashlib.sha256(entry.sig.encode()).hexdigest()


def parse_entry(data: Any) -> Entry:
    """Validate an untrusted entry (a JSON object) and check its signature.

    Raises:
        MalformedMessage: not an object, unknown ``kind``, or a field out of range.
        BadSignature: ``sig`` was not made by the author the entry names.
        WrongVersion: another protocol version.
    """
    kind = data.get("kind") if isinstance(data, dict) else None
    model = _KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise MalformedMessage(f"board entry kind {kind!r} is not one of {sorted(_KINDS)}")
    return model.from_wire(data)


def decode_entry(raw: bytes) -> Entry:
    """``parse_entry`` of wire bytes, size-capped at ``MAX_ENTRY_BYTES``."""
    return parse_entry(parse_json(raw, limit=MAX_ENTRY_BYTES))


__all__ = ["MAX_ENTRY_BYTES", "MAX_NEED_CHARS", "Artifact", "Beat", "Claim", "Entry", "Gap", "decode_entry", "entry_key",
           "fix_id", "parse_entry"]
