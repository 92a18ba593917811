"""The chained attack of issue 14 against a real ``symphony node``: generated code that reads the node's
data dir and key, and POSTs to the node's own local API to rewrite its signed record. In the jail it
does neither: the record, and the node, stay as they were."""

from __future__ import annotations

from pathlib import Path

import pytest

from symphony.testing import open_swarm
from tests.sandbox.conftest import Jail

pytestmark = pytest.mark.e2e


def test_generated_code_cannot_reach_the_local_node(jail: Jail, tmp_path: Path) -> None:
    """Reading the data dir (node.json, the key) and POSTing ``/v1/node/record`` both fail; the node's
    name and lamport clock are unchanged and it still serves."""
    with open_swarm(tmp_path) as swarm:
        node = swarm.spawn("victim").wait_ready()
        before = node.get("/v1/node")
        api = str(node.info["api"])
        result = jail(f"""
import os, urllib.request
for name in sorted(os.listdir({str(node.data_dir)!r})) if os.path.isdir({str(node.data_dir)!r}) else []:
    print("READ", name, open(os.path.join({str(node.data_dir)!r}, name), "rb").read()[:64])
print("data dir visible:", os.path.isdir({str(node.data_dir)!r}))
request = urllib.request.Request({api + "/v1/node/record"!r}, data=b'{{"name": "pwned"}}',
                                 headers={{"Content-Type": "application/json"}}, method="POST")
try:
    print("POSTED", urllib.request.urlopen(request, timeout=3).read())
except OSError as exc:
    print("post failed:", exc)
""")
        assert "data dir visible: False" in result.output and "READ" not in result.output, result.output
        assert "post failed:" in result.output and "POSTED" not in result.output
        after = node.get("/v1/node")
        assert after["name"] == before["name"] != "pwned"
        assert node.ledger()[node.agent_id]["name"] == before["name"]
