"""Model alerts carry the typology-miner instance their transaction belongs to."""

from __future__ import annotations

import polars as pl

from tianluo.detect.run import link_instances


def _alerts(rows: list[tuple[str, str, list[str], str | None, float, bool]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "alert_id": [r[0] for r in rows],
            "kind": [r[1] for r in rows],
            "txn_ids": [r[2] for r in rows],
            "typology": [r[3] for r in rows],
            "score": [r[4] for r in rows],
            "reasons": [["model reason"] for _ in rows],
            "shadow": [r[5] for r in rows],
        },
        schema_overrides={"typology": pl.String},
    )


def test_model_alert_takes_the_strongest_instance_of_its_transaction() -> None:
    alerts = _alerts(
        [
            ("m1", "model", ["t2"], None, 0.9, False),  # leg of two instances: the stronger one is named
            ("m2", "model", ["t9"], None, 0.8, False),  # in no instance: unchanged
            ("f1", "miner", ["t1", "t2", "t3"], "fan_in", 0.6, False),
            ("c1", "miner", ["t2", "t4"], "cycle", 0.7, False),
            ("s1", "miner", ["t9"], "stack", 0.99, True),  # shadow instances are not linked to
            ("r1", "rule", ["t9"], "large_value", 1.0, False),  # nor are rules
        ]
    )
    out = link_instances(alerts)
    assert out["alert_id"].to_list() == alerts["alert_id"].to_list()
    m1 = out.row(0, named=True)
    assert m1["typology"] == "cycle"
    assert m1["reasons"] == ["model reason", "part of a cycle pattern the typology miners found (alert c1)"]
    m2 = out.row(1, named=True)
    assert m2["typology"] is None and m2["reasons"] == ["model reason"]
    # Miner and rule alerts are untouched.
    assert out.slice(2).equals(alerts.slice(2))


def test_nothing_to_link() -> None:
    only_models = _alerts([("m1", "model", ["t1"], None, 0.9, False)])
    assert link_instances(only_models).equals(only_models)
    assert link_instances(only_models.clear()).height == 0
