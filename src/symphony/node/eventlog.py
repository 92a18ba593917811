"""Structured event log: one JSON object per line in the node's data dir."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any


class EventLog:
    """Append-only JSON-lines log. Each line: ``{"ts": ..., "event": ..., **fields}``."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] = path.open("a", encoding="utf-8", buffering=1)

    def emit(self, event: str, fields: dict[str, Any]) -> None:
        line = json.dumps({"ts": round(time.time(), 3), "event": event, **fields}, default=str)
        self._file.write(line + "\n")

    def close(self) -> None:
        self._file.close()
