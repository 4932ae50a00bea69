"""Miner-instance features: a re-count from the miners' own alerts, both modes' time filter, row order, columns, spec.

What is checked about time is the filter: a row never counts an instance whose `ts_end` is
after its own ts (causal) or after ts + H (settled). That the miners' *choice* of instances
can depend on later rows (pair counts, merging) is a documented caveat of the extractor,
not something these tests claim away.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tianluo.detect.base import DetectInput
from tianluo.detect.features import describe_feature
from tianluo.detect.graph_features import parse_window
from tianluo.detect.miner_features import MinerFeatures
from tianluo.detect.miners import default_miners
from tianluo.detect.model import build_extractors, extractor_spec
from tianluo.detect.profiles import ProfileError
from tianluo.reference.currency import FxTable
from tianluo.schema import TRANSACTIONS
from tianluo.simulate import SimConfig, simulate

T0 = dt.datetime(2024, 3, 1, 1, 0, tzinfo=dt.UTC)
CORE = ["fan_in", "fan_out", "cycle", "scatter_gather", "gather_scatter", "bipartite", "stack"]


def _tx(rows: list[tuple[str, float, str, str, float]]) -> pl.DataFrame:
    """Canonical transactions from (txn_id, hours after T0, payer, payee, CNY) tuples, in the order given."""
    df = pl.DataFrame(
        {
            "txn_id": [r[0] for r in rows],
            "ts": [T0 + dt.timedelta(hours=r[1]) for r in rows],
            "src_account": [r[2] for r in rows],
            "dst_account": [r[3] for r in rows],
            "amount": [float(r[4]) for r in rows],
            "currency": ["CNY"] * len(rows),
            "amount_cny": [float(r[4]) for r in rows],
            "channel": ["transfer"] * len(rows),
            "self_transfer": [r[2] == r[3] for r in rows],
        }
    )
    canonical = pl.from_arrow(TRANSACTIONS.arrow.empty_table())
    return pl.concat([canonical, df], how="diagonal_relaxed").select(TRANSACTIONS.names)


def _crafted() -> pl.DataFrame:
    """A fan-in (six payers, hours 0-47, ends at 47), a four-hop ring (hours 0-3) and two ordinary payments."""
    hours = (0, 5, 20, 30, 40, 47)
    amounts = (10_000, 10_500, 9_800, 10_200, 9_900, 10_100)
    fan = [(f"f{i}", h, f"P{i}", "HUB", a) for i, (h, a) in enumerate(zip(hours, amounts, strict=True))]
    nodes = ["A", "B", "C", "D", "A"]
    ring = [(f"c{i}", i, nodes[i], nodes[i + 1], 100_000 - 1_000 * i) for i in range(4)]
    plain = [("x0", 2, "X", "Y", 5_000), ("x1", 60, "Y", "Z", 7_000)]
    return _tx([*fan, *ring, *plain])


def _by_id(tx: pl.DataFrame, feats: pl.DataFrame, col: str) -> dict[str, float]:
    return dict(zip(tx["txn_id"].to_list(), feats[col].to_list(), strict=True))


@pytest.fixture(scope="module")
def bank() -> tuple[pl.DataFrame, pl.DataFrame]:
    """A small simulated bank (about 20k rows, 1 % injected schemes), transactions and accounts."""
    sim = simulate(SimConfig(persons=1000, enterprises=100, days=30, transactions=20_000, illicit_ratio=0.01, seed=3))
    tx = pl.from_arrow(sim.transactions)
    tx = tx.with_columns(
        amount_cny=FxTable.load().to_cny(tx["amount"], tx["currency"], tx["ts"]),
        self_transfer=pl.col("src_account") == pl.col("dst_account"),
    ).sort("ts", "txn_id")
    return tx, pl.from_arrow(sim.accounts)


@pytest.fixture(scope="module")
def features(bank: tuple[pl.DataFrame, pl.DataFrame]) -> Callable[[str | None, str | None], pl.DataFrame]:
    """`MinerFeatures(profile, horizon, accounts).transform` of the bank, each computed once for the module."""
    tx, accounts = bank
    return functools.cache(lambda profile, horizon: MinerFeatures(profile, horizon, accounts).transform(tx))


@pytest.fixture(scope="module")
def alerts(bank: tuple[pl.DataFrame, pl.DataFrame]) -> Callable[[str | None], dict[str, pl.DataFrame]]:
    """The miners' own alerts on the bank per profile, by miner key, each computed once for the module."""
    tx, accounts = bank
    data = DetectInput(tx, accounts, pl.DataFrame())
    return functools.cache(
        lambda profile: {m.name.removeprefix("miner_"): pl.from_arrow(m.detect(data)) for m in default_miners(profile)}
    )


def _recount(tx: pl.DataFrame, found: dict[str, pl.DataFrame], horizon_s: float) -> pl.DataFrame:
    """The oracle: for each miner alert and each of its transactions, add one if ts_end <= ts + H (plain loops)."""
    ts = dict(zip(tx["txn_id"].to_list(), tx["ts"].to_list(), strict=True))
    counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for key, miner_alerts in found.items():
        for alert in miner_alerts.iter_rows(named=True):
            for t in set(alert["txn_ids"]):
                if t in ts and alert["ts_end"] <= ts[t] + dt.timedelta(seconds=horizon_s):
                    counts[t][key] += 1
    cols = {f"miner_instances_{k}": [counts[t][k] for t in tx["txn_id"].to_list()] for k in found}
    out = pl.DataFrame(cols, schema={c: pl.Float64 for c in cols})
    return out.with_columns(miner_instances_total=pl.sum_horizontal(list(cols)))


def _miner_alerts(tx: pl.DataFrame, accounts: pl.DataFrame, profile: str | None) -> dict[str, pl.DataFrame]:
    data = DetectInput(tx.sort("ts", "txn_id"), accounts, pl.DataFrame())
    return {m.name.removeprefix("miner_"): pl.from_arrow(m.detect(data)) for m in default_miners(profile)}


def test_crafted_counts_in_both_modes() -> None:
    tx = _crafted()
    causal = MinerFeatures().transform(tx)
    assert causal.columns == [f"miner_instances_{k}" for k in [*CORE, "total"]]
    fan, ring = _by_id(tx, causal, "miner_instances_fan_in"), _by_id(tx, causal, "miner_instances_cycle")
    # Causal: only the leg that completes each pattern knows of it.
    assert fan == {**dict.fromkeys(fan, 0.0), "f5": 1.0}
    assert ring == {**dict.fromkeys(ring, 0.0), "c3": 1.0}
    assert causal["miner_instances_total"].sum() == 2.0
    # Settled, one day: the fan ends at hour 47, so the legs from hour 23 on count it; the ring (3 h) all count.
    settled = MinerFeatures(horizon="1d").transform(tx)
    fan = _by_id(tx, settled, "miner_instances_fan_in")
    assert {t for t, v in fan.items() if v} == {"f3", "f4", "f5"}
    assert {t for t, v in _by_id(tx, settled, "miner_instances_cycle").items() if v} == {"c0", "c1", "c2", "c3"}
    # Two days cover the whole fan; the ordinary payments are never legs.
    wide = _by_id(tx, MinerFeatures(horizon="2d").transform(tx), "miner_instances_total")
    assert {t for t, v in wide.items() if v} == {"f0", "f1", "f2", "f3", "f4", "f5", "c0", "c1", "c2", "c3"}
    assert_frame_equal(causal, _recount(tx, _miner_alerts(tx, pl.DataFrame(), None), 0))
    # Another profile, other miners (AMLSim's daily profile: unordered cycles, no amount bands), same counting.
    daily = MinerFeatures("amlsim", "1d").transform(tx)
    assert_frame_equal(daily, _recount(tx, _miner_alerts(tx, pl.DataFrame(), "amlsim"), 86_400))
    assert daily["miner_instances_total"].sum() > 0


@pytest.mark.parametrize(("profile", "horizon"), [(None, None), (None, "1d"), (None, "7d")])
def test_counts_equal_a_recount_from_the_miners_alerts(
    bank: tuple[pl.DataFrame, pl.DataFrame],
    features: Callable[[str | None, str | None], pl.DataFrame],
    alerts: Callable[[str | None], dict[str, pl.DataFrame]],
    profile: str | None,
    horizon: str | None,
) -> None:
    tx, _ = bank
    got = features(profile, horizon)
    assert_frame_equal(got, _recount(tx, alerts(profile), 0 if horizon is None else parse_window(horizon)))
    assert got["miner_instances_total"].gt(0).sum() > 0  # not vacuous: the bank's schemes are found


def test_causal_never_counts_an_instance_ending_later_and_settled_counts_within_h(
    bank: tuple[pl.DataFrame, pl.DataFrame],
    features: Callable[[str | None, str | None], pl.DataFrame],
    alerts: Callable[[str | None], dict[str, pl.DataFrame]],
) -> None:
    tx, _ = bank
    causal = features(None, None)["miner_instances_total"].to_numpy()
    day = features(None, "1d")["miner_instances_total"].to_numpy()
    ever = _recount(tx, alerts(None), 10**9)["miner_instances_total"].to_numpy()  # every instance, no time limit
    assert (causal <= day).all() and (day <= ever).all()
    # Legs before the last one: causal leaves them out, the settled day takes some in.
    assert (causal < day).any() and (day < ever).any()
    # Directly: a counted row is at or after the end of an instance it is a leg of (within 1 day when settled).
    earliest_end = (
        pl.concat([a.select("txn_ids", "ts_end") for a in alerts(None).values()])
        .explode("txn_ids")
        .group_by(txn_id="txn_ids")
        .agg(earliest_end=pl.col("ts_end").min())
    )
    counted = tx.select("txn_id", "ts").with_columns(causal=causal, day=day).join(earliest_end, on="txn_id", how="left")
    assert counted.filter((pl.col("causal") > 0) & ~(pl.col("earliest_end") <= pl.col("ts"))).height == 0
    assert (
        counted.filter((pl.col("day") > 0) & ~(pl.col("earliest_end") <= pl.col("ts") + pl.duration(days=1))).height
        == 0
    )
    # And every row that ends an instance counts it.
    assert counted.filter((pl.col("earliest_end") == pl.col("ts")) & (pl.col("causal") == 0)).height == 0


def test_rows_follow_the_input_order(
    bank: tuple[pl.DataFrame, pl.DataFrame], features: Callable[[str | None, str | None], pl.DataFrame]
) -> None:
    tx, accounts = bank
    base = features(None, "1d")
    perm = np.random.default_rng(0).permutation(tx.height)
    shuffled = MinerFeatures(None, "1d", accounts).transform(tx[perm])
    assert_frame_equal(shuffled, base[perm])


def test_column_set_is_fixed_by_the_profile() -> None:
    names = [f"miner_instances_{k}" for k in [*CORE, "total"]]
    empty = MinerFeatures().transform(_crafted().head(0))
    assert empty.columns == names and empty.height == 0
    assert all(d == pl.Float64 for d in empty.dtypes)
    quiet = MinerFeatures().transform(_crafted().filter(pl.col("txn_id").str.starts_with("x")))
    assert quiet.columns == names and quiet.to_numpy().sum() == 0
    amlsim = MinerFeatures("amlsim").transform(_crafted().head(0))
    assert amlsim.columns == [
        f"miner_instances_{k}" for k in ("fan_in", "fan_out", "cycle", "scatter_gather", "gather_scatter", "total")
    ]
    assert MinerFeatures("amlsim").feature_names == amlsim.columns


def test_spec_round_trip_rebuilds_the_same_extractor() -> None:
    tx = _crafted()
    ex = MinerFeatures("core-banking", "1d", accounts=pl.DataFrame({"account_id": ["HUB"], "type": ["internal"]}))
    spec = extractor_spec(ex)
    assert spec["params"] == {"profile": "core-banking", "horizon": "1d"}
    assert spec["unsaved"] == []
    accounts = pl.DataFrame({"account_id": ["A"], "type": ["personal"]})
    (rebuilt,) = build_extractors([spec], accounts=accounts)
    assert isinstance(rebuilt, MinerFeatures)
    assert (rebuilt.profile, rebuilt.horizon) == ("core-banking", "1d")
    assert rebuilt.accounts is accounts  # scoring supplies the accounts of the data it scores
    assert_frame_equal(rebuilt.transform(tx), MinerFeatures("core-banking", "1d").transform(tx))
    # The accounts matter: a bank's own internal account is never a fan's hub.
    assert ex.transform(tx)["miner_instances_fan_in"].sum() == 0


def test_bad_profile_or_horizon_is_refused_when_built() -> None:
    with pytest.raises(ProfileError):
        MinerFeatures("no-such-profile")
    with pytest.raises(ValueError, match="whole number and a unit"):
        MinerFeatures(horizon="one day")


def test_columns_have_words() -> None:
    assert describe_feature("miner_instances_fan_out", {"miner_instances_fan_out": 2.0}) == (
        "leg of 2 fan-out patterns the miners had found by the time it was scored"
    )
    assert describe_feature("miner_instances_total", {"miner_instances_total": 0.0}) == (
        "leg of no typology pattern the miners had found by the time it was scored"
    )
