"""The reach settings of a node's config file: relay limits, reachability, mDNS (issue 20)."""

from __future__ import annotations

from pathlib import Path

import pytest

from symphony.errors import ConfigError
from symphony.node.config import load_node_file, node_config
from symphony.node.daemon import relay_limits
from symphony.transport.reach import RelayServiceLimits


def _config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(f'data_dir = "d"\n{text}\n')
    return path


def test_relay_limit_keys_reach_the_relay(tmp_path: Path) -> None:
    """Each ``relay_*`` key sets its limit; the ones left out keep the transport's defaults."""
    text = "relay_service = true\nrelay_max_reservations = 8\nrelay-circuit-mb = 2\nrelay_circuit_seconds = 120"
    config = node_config(load_node_file(_config_file(tmp_path, text)))
    limits = relay_limits(config)
    assert (limits.max_reservations, limits.circuit_bytes, limits.circuit_seconds) == (8, 2 * 1024 * 1024, 120)
    assert limits.max_circuits == RelayServiceLimits().max_circuits
    assert relay_limits(node_config({"data_dir": str(tmp_path)})) == RelayServiceLimits()


def test_reach_keys_default_to_ask_and_stay_quiet(tmp_path: Path) -> None:
    config = node_config({"data_dir": str(tmp_path)})
    assert (config.reachability, config.mdns) == ("auto", False)
    config = node_config(load_node_file(_config_file(tmp_path, 'reachability = "private"\nmdns = true')))
    assert (config.reachability, config.mdns) == ("private", True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("relay_max_circuits = 0", r"key 'relay_max_circuits': must be >= 1, not 0"),
        ("relay_circuit_mb = 1.5", r"key 'relay_circuit_mb': must be a whole number"),
        ('reachability = "publc"', r"key 'reachability': 'publc' is not one of auto, public, private; did you mean"),
        ('mdns = "yes"', r"key 'mdns': must be true or false"),
    ],
)
def test_bad_reach_keys_are_errors_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_node_file(_config_file(tmp_path, text))
