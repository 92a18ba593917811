"""The node's data dir and event log facing faults: one-line errors naming the file and the fix,
a lock against a second node, a key that must be the dir's own, and a log that rotates and
survives a full disk."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from symphony.errors import ConfigError
from symphony.node.datadir import DataDir, DataDirError
from symphony.node.eventlog import EventLog
from symphony.protocol.identity import Identity
from tests.conftest import identity
from tests.ledger.test_store import make_record

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted for the test and unmounted after it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full; returns it (remove it to free the space)."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"x" * 4096)
        except OSError:
            pass
    return filler


@pytest.mark.parametrize("name", ["key", "record.json", "node.json", "events.jsonl", "lock"])
def test_a_directory_where_a_file_belongs_is_named_with_the_fix(tmp_path: Path, name: str) -> None:
    (tmp_path / name).mkdir()
    with pytest.raises(DataDirError, match=rf"^{tmp_path / name} is a directory, .*move it away or remove it$"):
        DataDir.open(tmp_path)


def test_a_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d").write_text("")
    with pytest.raises(DataDirError, match="is a file, not a directory"):
        DataDir.open(tmp_path / "d")


def test_a_second_opener_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    first = DataDir.open(tmp_path)
    with pytest.raises(DataDirError, match=rf"in use by another symphony node \(pid {os.getpid()},"):
        DataDir.open(tmp_path)
    first.close()
    DataDir.open(tmp_path).close()


def test_a_corrupt_or_foreign_record_is_refused_with_the_fix(tmp_path: Path) -> None:
    data = DataDir.open(tmp_path)
    (tmp_path / "record.json").write_text("{not json")
    with pytest.raises(DataDirError, match=r"record.json is corrupt \(malformed: .*\): remove .* fresh record"):
        data.saved_lamport(identity(1).agent_id)
    (tmp_path / "record.json").write_bytes(make_record(2, 5).to_bytes())
    with pytest.raises(DataDirError, match="is the record of agent .*, not of this data dir's key"):
        data.saved_lamport(identity(1).agent_id)
    assert data.saved_lamport(identity(2).agent_id) == 5


def test_a_key_that_is_a_symlink_or_hard_linked_is_refused(tmp_path: Path) -> None:
    original = tmp_path / "a" / "key"
    Identity.load_or_create(original)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "key").symlink_to(original)
    with pytest.raises(ConfigError, match=r"is a symbolic link .* each node needs a key of its own"):
        Identity.load_or_create(tmp_path / "b" / "key")
    (tmp_path / "c").mkdir()
    os.link(original, tmp_path / "c" / "key")
    with pytest.raises(ConfigError, match=r"has 2 hard links, so another data dir shares this identity"):
        Identity.load_or_create(original)


def test_the_event_log_rotates_at_its_size_and_keeps_k_files(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", max_bytes=1000, keep=2)
    for n in range(100):
        assert log.emit("tick", {"n": n, "pad": "x" * 50})
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    assert all(p.stat().st_size <= 1000 for p in tmp_path.iterdir())
    newest = [json.loads(line)["n"] for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert newest[-1] == 99 and log.rotations >= 7


@needs_root
def test_a_full_disk_loses_counted_lines_and_the_log_resumes(tiny_disk: Path) -> None:
    log = EventLog(tiny_disk / "events.jsonl")
    assert log.emit("before", {})
    filler = fill(tiny_disk)
    for _ in range(3):
        assert not log.emit("during", {"pad": "x" * 5000})
    assert not log.ok and log.lost == 3 and "No space left" in str(log.error)
    filler.unlink()
    assert log.emit("after", {}) and log.ok
    log.close()
    lines = [json.loads(line) for line in (tiny_disk / "events.jsonl").read_text().splitlines()]
    assert [line["event"] for line in lines] == ["before", "log_gap", "after"]
    assert lines[1]["lost"] == 3


def test_task_records_keep_the_last_finished_and_every_running_one(tmp_path: Path) -> None:
    from symphony.node.config import NodeConfig
    from symphony.node.daemon import Node
    from symphony.node.tasks import TaskRecord

    node = Node(NodeConfig(data_dir=tmp_path, api=None, max_task_records=2))
    try:
        for n, status in enumerate(["done", "running", "failed", "done", "running"]):
            node.task_records.add(TaskRecord(task_id=f"t{n}", status=status, question="", submitted_at=0.0))
        assert list(node.task_records) == ["t1", "t2", "t3", "t4"]  # t1 and t4 run; t2, t3 the newest finished
    finally:
        node.events.close()
        node.data.close()
