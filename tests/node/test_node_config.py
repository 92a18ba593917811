"""Node configuration from a TOML file and flags: merge order and errors that name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from symphony.errors import ConfigError
from symphony.node.config import default_data_dir, load_node_file, node_config, probe_model_server


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_file_keys_become_a_node_config(tmp_path: Path) -> None:
    """Every key maps to its flag; lists take one string or a list; data_dir is relative to the file."""
    path = write(tmp_path, 'data_dir = "a"\nname = "alice"\nlisten = "/ip4/127.0.0.1/tcp/0"\n'
                           'skills = ["math, logic", "units"]\nmodel = "scripted:arith"\nmemory-gb = 4\n'
                           'heartbeat = 5\nanti_entropy = 10.5\napi = "none"\n')
    config = node_config(load_node_file(path))
    assert config.data_dir == tmp_path / "a"
    assert (config.name, config.listen, config.tags) == ("alice", ["/ip4/127.0.0.1/tcp/0"], ["math", "logic", "units"])
    assert (config.model, config.hardware.memory_gb, config.api) == ("scripted:arith", 4.0, None)
    assert (config.heartbeat_interval_s, config.anti_entropy_interval_s) == (5.0, 10.5)


def test_flags_override_the_file(tmp_path: Path) -> None:
    values = load_node_file(write(tmp_path, 'data_dir = "a"\nname = "from-file"\nskills = "math"\n'))
    values.update({"name": "from-flag"})
    config = node_config(values)
    assert (config.name, config.tags) == ("from-flag", ["math"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('modle = "scripted:arith"', r"unknown key 'modle'; did you mean 'model'\?"),
        ("skills = 3", r"key 'skills': must be a string or a list of strings"),
        ('heartbeat = "fast"', r"key 'heartbeat': must be a number"),
        ("heartbeat = 0", r"key 'heartbeat': must be > 0 seconds"),
        ("heartbeat = true", r"key 'heartbeat': must be a number"),
        ('bootstrap = "/ip4/127.0.0.1/tcp/4001"', r"key 'bootstrap': .*lacks the peer ID: use the full address"),
        ('listen = ["127.0.0.1:4001"]', r"key 'listen': .*is not a multiaddr such as /ip4/127.0.0.1/tcp/4001"),
        ('api = "local_host!:8470"', r"key 'api': --api host must be an IP address or a host name"),
        ('roles = "planer"', r"^.*node.toml: key 'roles': 'planer' is not one of planner, executor; did you mean 'planner'\?$"),
        ('api_auth = "tokn"', r"key 'api_auth': 'tokn' is not one of auto, token; did you mean 'token'\?$"),
        ('name = ""', r"key 'name': must be 1 to 64 characters"),
        ("name = ", r"is not valid TOML"),
        ("shards = 1", r"key 'shards': must be 0 \(off\) or 2 to 65536"),
        ("shards = 2.5", r"key 'shards': must be a whole number"),
    ],
)
def test_bad_file_is_an_error_naming_key_and_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_node_file(write(tmp_path, text + "\n"))


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_node_file(tmp_path / "nope.toml")


def test_data_dir_defaults_to_the_xdg_data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$XDG_DATA_HOME/symphony/node, else ~/.local/share/symphony/node."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert node_config({"name": "x"}).data_dir == tmp_path / "xdg" / "symphony" / "node"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".local" / "share" / "symphony" / "node"


def test_api_host_names_are_resolved(tmp_path: Path) -> None:
    """``localhost:8473`` is accepted and becomes the address the API binds (from /etc/hosts, no DNS)."""
    assert node_config({"data_dir": str(tmp_path), "api": "localhost:8473"}).api == "127.0.0.1:8473"
    assert node_config({"data_dir": str(tmp_path), "api": "[::1]:0"}).api == "[::1]:0"


def test_bad_hardware_value_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--memory-gb"):
        node_config({"data_dir": str(tmp_path), "memory_gb": -1.0})


def test_probe_ignores_specs_that_are_not_servers() -> None:
    """Only openai: specs name a server; the others are checked when the model is built."""
    for spec in (None, "scripted:arith", "llama:qwen2.5-coder-0.5b"):
        probe_model_server(spec)


def test_roles_are_checked(tmp_path: Path) -> None:
    """A node may offer one role or both, and only with a model."""
    base = {"data_dir": str(tmp_path), "model": "scripted:arith"}
    assert node_config({**base, "roles": ["planner"]}).roles == ("planner",)
    assert node_config(base).roles is None
    with pytest.raises(ConfigError, match=r"^--roles: 'judge' is not one of planner, executor$"):
        node_config({**base, "roles": ["judge"]})
    with pytest.raises(ConfigError, match=r"^--roles: 'executer' is not one of planner, executor; did you mean 'executor'\?$"):
        node_config({**base, "roles": ["planner, executer"]})
    with pytest.raises(ConfigError, match="--roles needs a --model"):
        node_config({"data_dir": str(tmp_path), "roles": ["executor"]})


def test_shards_key_turns_on_sharded_mode(tmp_path: Path) -> None:
    """``shards = L`` (or --shards) reaches the node's config; 0, the default, is off."""
    assert node_config(load_node_file(write(tmp_path, 'data_dir = "a"\nshards = 4\n'))).shards == 4
    assert node_config({"data_dir": "a"}).shards == 0
    with pytest.raises(ConfigError, match="--shards must be 0"):
        node_config({"data_dir": "a", "shards": -3})
