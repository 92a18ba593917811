"""A node's data dir, checked and locked before the node starts.

Layout (owned by one running node at a time)::

    lock             held with fcntl.flock while the node runs; holds its pid
    key              Ed25519 seed, mode 0600, a regular file of its own (protocol.identity)
    record.json      this agent's last signed record (a restart continues its Lamport clock)
    node.json        written once the node serves, removed on a clean exit
    events.jsonl     event log, rotated to events.jsonl.1 .. .K (node.eventlog)

Every problem is reported as one ``DataDirError`` line that names the file and the fix, and the
CLI exits with status 2 on it: a path that is a directory where a file belongs (or the data dir
that is a file), a dir this user cannot write, a second node on the same dir (the lock), a
corrupt or foreign ``record.json``. The key's own checks (symlink, hard link, mode, size) live
in ``Identity.load_or_create``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from symphony.errors import ConfigError, PeerError
from symphony.protocol.messages import LedgerRecord

#: The files a node keeps; each must be a regular file when it exists.
FILES = ("lock", "key", "record.json", "node.json", "events.jsonl")


class DataDirError(ConfigError):
    """The data dir cannot be used as it is; the message names the file and the fix."""


def os_problem(path: Path, exc: OSError, action: str) -> DataDirError:
    """A one-line error for ``exc`` raised while doing ``action`` on ``path``, with the usual fix."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = f"free space on the disk that holds {path.parent}"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "run the node as the user who owns it, or fix its owner and mode (chown, chmod)"
    elif exc.errno == errno.EISDIR:
        fix = "it is a directory: move it away or remove it"
    else:
        fix = "check the file and the disk"
    return DataDirError(f"cannot {action} {path} ({exc.strerror or exc}): {fix}")


@dataclass
class DataDir:
    """An opened (checked and locked) data dir; ``close`` releases the lock."""

    path: Path
    _lock_fd: int | None = None

    @classmethod
    def open(cls, path: Path) -> DataDir:
        """Create ``path`` if needed, check its files and take its lock.

        Raises:
            DataDirError: what is wrong, with the file and the fix.
        """
        if path.exists() and not path.is_dir():
            raise DataDirError(f"--data-dir {path} is a file, not a directory: pass a directory (created if missing)")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_problem(path, exc, "create the data dir") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise DataDirError(f"data dir {path} is not writable by this user: fix its owner (chown) or use another "
                               "--data-dir")
        for name in FILES:
            _check_regular(path / name)
        data_dir = cls(path)
        data_dir._lock()
        return data_dir

    def _lock(self) -> None:
        lock = self.path / "lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise os_problem(lock, exc, "open the lock file") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DataDirError(f"data dir {self.path} is in use by another symphony node (pid {holder}, {lock}): "
                               "stop that node, or give this one its own --data-dir") from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # the pid is only a hint for the message above; the flock is what excludes
        self._lock_fd = fd

    def close(self) -> None:
        """Release the lock (the OS also does when the process ends)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def saved_lamport(self, agent_id: str) -> int:
        """The Lamport time of this agent's last record (0 without one), so a restart continues it.

        Raises:
            DataDirError: ``record.json`` is unreadable, corrupt or another agent's.
        """
        path = self.path / "record.json"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise os_problem(path, exc, "read") from None
        fix = f"remove {path} to start from a fresh record (the agent ID, in key, is kept)"
        try:
            record = LedgerRecord.parse(data)
        except PeerError as exc:
            raise DataDirError(f"{path} is corrupt ({exc.reason}: {str(exc)[:120]}): {fix}") from None
        if record.agent_id != agent_id:
            raise DataDirError(f"{path} is the record of agent {record.agent_id}, not of this data dir's key "
                               f"({agent_id}): {fix}")
        return record.lamport


def _check_regular(path: Path) -> None:
    """``path`` is absent or (through any symlink) a regular file; the key's symlink is refused later,
    by ``Identity.load_or_create``."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise os_problem(path, exc, "inspect") from None
    if stat.S_ISDIR(mode):
        raise DataDirError(f"{path} is a directory, but the node keeps a file there: move it away or remove it")
    if not stat.S_ISREG(mode):
        raise DataDirError(f"{path} is not a regular file: move it away or remove it")
