"""Structured event log: one JSON object per line in the node's data dir, bounded, never fatal.

Settings (``NodeConfig`` / ``symphony node`` flags / TOML keys):

- ``event_log_max_mb`` (default 64): when ``events.jsonl`` would grow past this size it is
  rotated: it becomes ``events.jsonl.1``, older files shift to ``.2`` ... ``.K`` and the oldest
  is deleted, so the log takes at most (K + 1) x the size on disk.
- ``event_log_keep`` (K, default 3): rotated files kept; 0 keeps none.

A write that fails (disk full, quota, I/O error) never reaches the caller: the partial line is
cut off again (``ftruncate`` back to the last whole line), the line is counted in ``lost``, and
``error`` says why. Later lines try again, so the log resumes by itself once space is freed,
first with a ``log_gap`` line that says how many lines are missing. ``ok`` is whether the last
write succeeded; the node refuses new questions while it is not (they could not be recorded).

Written with ``os.write`` on an ``O_APPEND`` descriptor rather than ``logging``'s
``RotatingFileHandler``: that handler buffers text and reports a failed write by printing a
traceback to stderr, with no way to undo a torn line or count what was lost.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from symphony.errors import ConfigError

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_KEEP = 3


class EventLog:
    """Append-only JSON-lines log. Each line: ``{"ts": ..., "event": ..., **fields}``."""

    def __init__(self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP,
                 clock: Callable[[], float] = time.time) -> None:
        if max_bytes < 1 or keep < 0:
            raise ValueError(f"max_bytes must be >= 1 and keep >= 0, not {max_bytes!r}, {keep!r}")
        self.path = path
        self._clock = clock
        self.max_bytes = max_bytes
        self.keep = keep
        self.lost = 0
        self.rotations = 0
        self.rotation_failures = 0
        self.error: str | None = None
        self._gap = 0  # lines lost since the last line written
        self._torn = False  # a failed write could not be cut off: start the next one on a new line
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    @property
    def ok(self) -> bool:
        """Whether the last write reached the file."""
        return self.error is None

    def emit(self, event: str, fields: dict[str, Any]) -> bool:
        """Append one event; returns whether it was written (a failure is counted, never raised)."""
        ts = round(self._clock(), 3)
        line = json.dumps({"ts": ts, "event": event, **fields}, default=str) + "\n"
        if self._size + len(line) > self.max_bytes and self._size:
            self._rotate()
        data = line.encode()
        if self._gap:
            gap = {"ts": ts, "event": "log_gap", "lost": self._gap, "error": self.error}
            data = (json.dumps(gap) + "\n").encode() + data
        if self._torn:
            data = b"\n" + data
        return self._write(data)

    def stats(self) -> dict[str, Any]:
        """For ``/v1/node`` and the metrics: lines lost, the last error, rotations, current size."""
        return {"path": str(self.path), "ok": self.ok, "lost_lines": self.lost, "error": self.error,
                "rotations": self.rotations, "rotation_failures": self.rotation_failures, "bytes": self._size}

    def close(self) -> None:
        os.close(self._fd)

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot open the event log {self.path} ({exc.strerror or exc}): it must be a "
                              "regular file that this user can write (fix or remove it)") from None

    def _write(self, data: bytes) -> bool:
        try:
            written = os.write(self._fd, data)
        except OSError as exc:
            return self._lost(exc.strerror or str(exc))
        if written != len(data):  # the disk filled up in the middle of the line: cut it off again
            return self._lost(f"{os.strerror(errno.ENOSPC)} (short write)")
        self._size += written
        self._gap = 0
        self._torn = False
        self.error = None
        return True

    def _lost(self, error: str) -> bool:
        """Count a line that could not be written, and cut off whatever part of it was."""
        self.lost += 1
        self._gap += 1
        self.error = error
        try:
            os.ftruncate(self._fd, self._size)
            self._size = os.fstat(self._fd).st_size
        except OSError:
            self._torn = True
        return False

    def _rotate(self) -> None:
        """events.jsonl -> .1 -> .2 ... -> .keep (the oldest dropped); a failure keeps the current file."""
        try:
            for n in range(self.keep, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                if n == self.keep:
                    older.unlink(missing_ok=True)
                newer = self.path.with_name(f"{self.path.name}.{n - 1}") if n > 1 else self.path
                if newer.exists():
                    newer.replace(older)
            if not self.keep:
                self.path.unlink(missing_ok=True)
            fd = self._open()
        except (OSError, ConfigError):
            self.rotation_failures += 1  # the current file grows on; the next line tries again
            return
        os.close(self._fd)
        self._fd = fd
        self._size = 0
        self._torn = False
        self.rotations += 1
