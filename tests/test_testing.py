"""``symphony.testing.EventTail``: the one reader of a node's events.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

from symphony.testing import EventTail


def _append(path: Path, data: str) -> None:
    with path.open("a") as f:
        f.write(data)


def test_tail_returns_a_line_only_once_it_is_complete(tmp_path: Path) -> None:
    """A half-written line is held back until its newline arrives, then returned once."""
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    assert tail.read() == []  # no file yet
    _append(path, json.dumps({"event": "a"}) + "\n" + '{"event": ')
    assert tail.read() == [{"event": "a"}]
    _append(path, '"b"}\n')
    assert tail.read() == [{"event": "b"}]
    assert tail.read() == []


def test_tail_skip_existing_starts_after_the_complete_lines(tmp_path: Path) -> None:
    """``skip_existing`` ignores the lines already written, but not the end of a line being written."""
    path = tmp_path / "events.jsonl"
    _append(path, '{"event": "old"}\n{"event": "ne')
    tail = EventTail(path, skip_existing=True)
    _append(path, 'w"}\n')
    assert tail.read() == [{"event": "new"}]
    assert EventTail(path).read() == [{"event": "old"}, {"event": "new"}]
