"""A node's fault-knob defaults: from flags or its TOML file to its TaskService, refused when unusable."""

from __future__ import annotations

from pathlib import Path

import pytest

from symphony.errors import ConfigError
from symphony.node.config import load_node_file, node_config


def test_file_keys_become_the_task_service_defaults(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('data_dir = "d"\nredundancy = 2\nhop_timeout = "45"\nreplans = 0\ndisclosure = "minimal"\n')
    config = node_config(load_node_file(path))
    assert config.task_defaults() == {"redundancy": 2, "hop_timeout": 45.0, "replans": 0, "disclosure": "minimal",
                                      "tools": ()}  # no model, no tools


def test_defaults_are_adaptive_hops_one_replan_no_redundancy_full_disclosure(tmp_path: Path) -> None:
    config = node_config({"data_dir": str(tmp_path)})
    assert config.task_defaults() == {"redundancy": 1, "hop_timeout": "adaptive", "replans": 1, "disclosure": "full",
                                      "tools": ()}  # no model, no tools


@pytest.mark.parametrize(("key", "value", "message"), [
    ("redundancy", 3, r"--redundancy must be 1 or 2"),
    ("replans", 9, r"--replans must be 0 to 3"),
    ("disclosure", "secret", r"--disclosure must be full or minimal"),
    ("hop_timeout", "soon", r"--hop-timeout must be adaptive, off or seconds"),
    ("hop_timeout", "0", r"--hop-timeout must be adaptive, off or seconds"),
])
def test_unusable_knobs_are_refused(tmp_path: Path, key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        node_config({"data_dir": str(tmp_path), key: value})


def test_learning_republish_interval_from_the_file_or_flag_within_bounds(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('data_dir = "d"\nlearn_republish_s = 2\n')
    assert node_config(load_node_file(path)).learn_republish_s == 2.0
    assert node_config({"data_dir": str(tmp_path)}).learn_republish_s == 10.0
    for bad in (0.5, 7200):
        with pytest.raises(ConfigError, match=r"--learn-republish-s must be 1.0 to 3600.0 seconds"):
            node_config({"data_dir": str(tmp_path), "learn_republish_s": bad})


def test_warm_peers_from_the_file_or_flag_within_bounds(tmp_path: Path) -> None:
    """``--warm-peers``: 16 unless given, 0 turns the warm-up off, beyond 64 (or below 0) is refused."""
    path = tmp_path / "node.toml"
    path.write_text('data_dir = "d"\nwarm_peers = 0\n')
    assert node_config(load_node_file(path)).warm_peers == 0
    assert node_config({"data_dir": str(tmp_path)}).warm_peers == 16
    for bad in (-1, 65):
        with pytest.raises(ConfigError, match=r"--warm-peers must be 0 \(off\) to 64"):
            node_config({"data_dir": str(tmp_path), "warm_peers": bad})
    path.write_text('data_dir = "d"\nwarm_peers = 100\n')
    with pytest.raises(ConfigError, match=r"key 'warm_peers': must be 0 \(off\) to 64"):
        load_node_file(path)


def test_node_help_lists_the_learning_interval() -> None:
    from typer.testing import CliRunner

    from symphony.cli.main import app

    result = CliRunner().invoke(app, ["node", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--learn-republish-s" in result.output


@pytest.mark.parametrize("value", ["0", "5000", "soon"])
def test_ask_refuses_the_hop_timeouts_a_node_refuses_before_asking_one(value: str) -> None:
    """``symphony ask --hop-timeout`` goes through the node's parser: out of range is refused here (exit 2),
    not sent (port 9 on 127.0.0.1 has no node: asking it would exit 1 with "no node API")."""
    from typer.testing import CliRunner

    from symphony.cli.main import app

    result = CliRunner().invoke(app, ["ask", "q", "--api", "http://127.0.0.1:9", "--hop-timeout", value],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert "--hop-timeout must be adaptive, off or seconds in (0, 3600]" in result.output
