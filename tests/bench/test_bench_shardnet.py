"""The sharded-ledger bench on a small network: state shrinks, and the uncapped fan-out finds the best."""

from __future__ import annotations

from symphony.bench.shardnet import ShardNetConfig, markdown, run_shardnet


def test_small_sharded_network_holds_less_and_finds_the_best() -> None:
    """At N=40 (L=7): a node holds its shard's records plus 6 summaries, the foreign records are
    dropped and counted, and the uncapped gateway beacon finds the same best agent as the flood."""
    (row,) = run_shardnet(ShardNetConfig(sizes=(40,), beacons=4, caps=(0,)))
    sample = row["sharded_samples"][0]
    assert row["shards"] == 7 and sample["summaries"] == 6
    assert sample["records"] + sample["foreign_dropped"] == 40 and sample["records"] < 40
    assert row["modes"]["flooded"]["best_found"] == 4
    assert row["modes"]["cap0"]["best_found"] == 4 and row["modes"]["cap0"]["gateways_asked_max"] <= 6
    assert "sharded, no cap" in markdown([row])
