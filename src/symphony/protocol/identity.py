"""Agent identities: Ed25519 key pairs whose public half *is* the agent ID.

The agent ID is the libp2p peer ID of the key (DESIGN §2: agent ID = peer ID): the
identity multihash of the protobuf-encoded Ed25519 public key, in base58btc
("12D3KooW..."). Because an Ed25519 key fits in an identity multihash, anyone can
recover the public key from the ID alone, so a signed record or message is verifiable
with nothing but its claimed author. This module does that without importing libp2p,
so the pure layers never depend on the network engine.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import stat
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import base58
from nacl.exceptions import BadSignatureError as _NaclBadSignature
from nacl.signing import SigningKey, VerifyKey

from symphony.errors import BadSignature, ConfigError, MalformedMessage

# protobuf PublicKey{Type: Ed25519 (1), Data: <32 bytes>} then multihash(identity, len 36)
_PROTOBUF_ED25519_PREFIX = b"\x08\x01\x12\x20"
_MULTIHASH_IDENTITY_PREFIX = b"\x00\x24"
_ID_PREFIX = _MULTIHASH_IDENTITY_PREFIX + _PROTOBUF_ED25519_PREFIX
MAX_AGENT_ID_LEN = 64


def agent_id_from_public_key(public_key: bytes) -> str:
    """Return the libp2p peer ID string for a raw 32-byte Ed25519 public key."""
    if len(public_key) != 32:
        raise ValueError(f"Ed25519 public key must be 32 bytes, not {len(public_key)}")
    return base58.b58encode(_ID_PREFIX + public_key).decode("ascii")


def public_key_from_agent_id(agent_id: str) -> bytes:
    """Recover the raw Ed25519 public key embedded in an agent ID.

    Raises:
        MalformedMessage: the ID is not an Ed25519 identity-multihash peer ID.
    """
    if not agent_id or len(agent_id) > MAX_AGENT_ID_LEN:
        raise MalformedMessage(f"agent id has bad length: {agent_id[:80]!r}")
    try:
        raw = base58.b58decode(agent_id)
    except ValueError as exc:
        raise MalformedMessage(f"agent id is not base58: {agent_id!r}") from exc
    if len(raw) != len(_ID_PREFIX) + 32 or not raw.startswith(_ID_PREFIX):
        raise MalformedMessage(f"agent id is not an Ed25519 peer id: {agent_id!r}")
    return raw[len(_ID_PREFIX) :]


@functools.lru_cache(maxsize=65_536)
def _verify_key(agent_id: str) -> VerifyKey:
    """Decoded once per peer: base58 and key set-up showed in beacon-round profiles (docs/results.md)."""
    return VerifyKey(public_key_from_agent_id(agent_id))


VERIFIED_CACHE_SIZE = 4096


class _VerifiedCache:
    """A bounded LRU of signatures that verified: (signer, signature, sha256(data)).

    Only successes are stored, so a forged signature costs a full check every time and is
    never remembered; a hit still needs the very same bytes, since their digest is part of
    the key. Its use is a message verified more than once in one process: a broadcast
    beacon (DESIGN §4, BEACONSELECT) that several co-hosted agents each open, or a ledger
    record seen again through gossip. Separate nodes each verify once regardless.
    """

    def __init__(self, capacity: int = VERIFIED_CACHE_SIZE) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, bytes, bytes], None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def hit(self, key: tuple[str, bytes, bytes]) -> bool:
        """Whether ``key`` verified before; a hit becomes the most recent entry."""
        if key not in self._seen:
            return False
        self._seen.move_to_end(key)
        return True

    def add(self, key: tuple[str, bytes, bytes]) -> None:
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)


_verified = _VerifiedCache()


def verify(agent_id: str, data: bytes, signature: bytes) -> None:
    """Check that ``signature`` over ``data`` was made by ``agent_id``'s key.

    A signature that verified before over the same bytes (by digest) is not checked again
    (``_VerifiedCache``); failures are never cached.

    Raises:
        BadSignature: it was not.
        MalformedMessage: ``agent_id`` is not a valid Ed25519 peer ID.
    """
    cache_key = (agent_id, bytes(signature), hashlib.sha256(data).digest())
    if _verified.hit(cache_key):
        return
    key = _verify_key(agent_id)
    try:
        key.verify(data, signature)
    except (_NaclBadSignature, ValueError) as exc:
        raise BadSignature(f"signature does not verify for {agent_id}") from exc
    _verified.add(cache_key)


@dataclass(frozen=True)
class Identity:
    """A private Ed25519 key and the agent ID it defines."""

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise ValueError(f"Ed25519 seed must be 32 bytes, not {len(self.seed)}")

    @classmethod
    def generate(cls) -> Identity:
        return cls(bytes(SigningKey.generate()))

    @cached_property
    def public_key(self) -> bytes:
        return bytes(SigningKey(self.seed).verify_key)

    @cached_property
    def agent_id(self) -> str:
        """Derived once: base58 encoding is slow enough to show in gossip profiles."""
        return agent_id_from_public_key(self.public_key)

    @cached_property
    def _signing_key(self) -> SigningKey:
        return SigningKey(self.seed)

    def sign(self, data: bytes) -> bytes:
        return self._signing_key.sign(data).signature

    @classmethod
    def load_or_create(cls, path: Path) -> Identity:
        """Load the key at ``path``, or create it with file mode 0600.

        A restarted node thus keeps its agent ID. The key must be this data dir's own: a key
        file that is a symbolic link or has other hard links (another data dir, hence another
        node, would share the identity), that is readable by other users, or that is not a
        32-byte regular file is refused with the fix rather than silently used.

        Raises:
            ConfigError: one line naming the file and the fix.
        """
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return cls._create(path)
        except OSError as exc:
            raise _key_problem(path, exc) from None
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            _check_key_file(path, info)
            try:
                seed = f.read(64)
            except OSError as exc:
                raise _key_problem(path, exc) from None
        if len(seed) != 32:
            raise ConfigError(f"key file {path} is corrupt ({len(seed)} bytes, expected 32): restore it from a "
                              "backup, or remove it to start this node with a new identity")
        return cls(seed)

    @classmethod
    def _create(cls, path: Path) -> Identity:
        identity = cls.generate()
        fix = "check that the data dir is writable and its disk has space"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot create key file {path} ({exc.strerror or exc}): {fix}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(identity.seed)
        except OSError as exc:
            path.unlink(missing_ok=True)  # a partial key would read as corrupt at the next start
            raise ConfigError(f"cannot write key file {path} ({exc.strerror or exc}): {fix}") from None
        return identity


_NOT_OWN = "each node needs a key of its own (remove {path} to start this node with a new identity)"


def _key_problem(path: Path, exc: OSError) -> ConfigError:
    if exc.errno == errno.ELOOP:
        return ConfigError(f"key file {path} is a symbolic link (to {os.readlink(path)!r}): {_NOT_OWN.format(path=path)}"
                           "; if this data dir is its only user, move the real file here instead")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ConfigError(f"cannot read key file {path} (permission denied): run the node as the user who owns it")
    if exc.errno == errno.EISDIR:
        return ConfigError(f"key file {path} is a directory: move it away or remove it")
    return ConfigError(f"cannot read key file {path} ({exc.strerror or exc})")


def _check_key_file(path: Path, info: os.stat_result) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"key file {path} is a directory: move it away or remove it")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"key file {path} is not a regular file: move it away or remove it")
    if info.st_nlink > 1:
        raise ConfigError(f"key file {path} has {info.st_nlink} hard links, so another data dir shares this "
                          f"identity: {_NOT_OWN.format(path=path)}")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise ConfigError(f"key file {path} has mode {mode:o}; run `chmod 600 {path}` (it must not be "
                          "readable by other users)")
