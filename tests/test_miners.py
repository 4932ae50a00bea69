"""Typology miners: exact instances on hand-built graphs, the simulator's injected schemes, AMLSim's SAR alerts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from tests.conftest import shared
from tianluo.detect import DetectInput
from tianluo.detect.miners import (
    MINERS,
    BipartiteMiner,
    CycleMiner,
    FanInMiner,
    FanOutMiner,
    GatherScatterMiner,
    ScatterGatherMiner,
    StackMiner,
    default_miners,
)
from tianluo.detect.profiles import load_profile
from tianluo.ingest import ingest, open_reader
from tianluo.reference.currency import FxTable
from tianluo.schema import ALERTS, TRANSACTIONS
from tianluo.simulate import SimConfig, simulate
from tianluo.store import Dataset

T0 = dt.datetime(2024, 3, 1, 1, 0, tzinfo=dt.UTC)
EMPTY = pl.DataFrame()


def _input(rows: list[tuple], accounts: pl.DataFrame = EMPTY) -> DetectInput:
    """Canonical transactions from (txn_id, hours after T0, payer, payee, CNY[, channel, purpose]) tuples."""
    full = [(*r, "transfer", None)[:7] for r in rows]
    df = pl.DataFrame(
        {
            "txn_id": [r[0] for r in full],
            "ts": [T0 + dt.timedelta(hours=r[1]) for r in full],
            "src_account": [r[2] for r in full],
            "dst_account": [r[3] for r in full],
            "amount": [float(r[4]) for r in full],
            "currency": ["CNY"] * len(full),
            "amount_cny": [float(r[4]) for r in full],
            "channel": [r[5] for r in full],
            "purpose": [r[6] for r in full],
            "self_transfer": [r[2] == r[3] for r in full],
        },
        schema_overrides={"purpose": pl.String},
    )
    canonical = pl.from_arrow(TRANSACTIONS.arrow.empty_table())
    tx = pl.concat([canonical, df], how="diagonal_relaxed").select(TRANSACTIONS.names).sort("ts", "txn_id")
    return DetectInput(tx, accounts, EMPTY)


def _alerts(miner: object, data: DetectInput) -> pl.DataFrame:
    return pl.from_arrow(miner.detect(data))


def _fan_in_rows(hub: str = "HUB", hours: tuple[float, ...] = (0, 5, 20, 30, 40, 47)) -> list[tuple]:
    amounts = (10_000, 10_500, 9_800, 10_200, 9_900, 10_100)
    return [(f"f{i}", h, f"P{i}", hub, a) for i, (h, a) in enumerate(zip(hours, amounts, strict=True))]


# --- hand-built graphs: each typology, exact instance, and what is not one --------------------------


def test_fan_in_is_the_exact_alike_payments() -> None:
    rows = [*_fan_in_rows(), ("big", 10, "P9", "HUB", 60_000)]  # out of the amount band: not part of it
    a = _alerts(FanInMiner(), _input(rows))
    assert a.height == 1
    r = a.row(0, named=True)
    assert r["txn_ids"] == ["f0", "f1", "f2", "f3", "f4", "f5"]
    assert r["accounts"] == ["HUB", "P0", "P1", "P2", "P3", "P4", "P5"]
    assert (r["subject_type"], r["subject_id"], r["typology"]) == ("account", "HUB", "fan_in")
    assert (r["detector"], r["kind"], r["tosc"], r["report_kind"]) == ("miner_fan_in", "miner", "0802", "suspicious")
    assert r["amount_cny"] == 60_500.0
    assert (r["ts_start"], r["ts_end"]) == (T0, T0 + dt.timedelta(hours=47))
    assert r["reasons"] == [
        "6 accounts paid HUB within 47 hours, ¥60k in total",
        "the amounts were alike: ¥9,800 to ¥10k each",
        "the payers and the hub had no other payment of ¥1,000 or more between them in the data "
        "(one-off counterparties)",
        "these payments were 86% of HUB's transactions of ¥1,000 or more in that time",
    ]
    assert 0.5 < r["score"] <= 1.0


def test_fan_in_spread_over_more_than_the_window_is_not_found() -> None:
    spread = _input(_fan_in_rows(hours=(0, 48, 96, 144, 192, 240)))  # never 5 within 7 days
    assert _alerts(FanInMiner(), spread).height == 0
    assert _alerts(FanInMiner(window=dt.timedelta(days=10)), spread)["txn_ids"].to_list() == [
        ["f0", "f1", "f2", "f3", "f4", "f5"]
    ]


def test_fan_out_is_found_but_payroll_and_regular_salaries_are_not() -> None:
    fan = [(f"o{i}", i * 3, "HUB", f"Q{i}", 20_000 + 300 * i) for i in range(5)]
    assert _alerts(FanOutMiner(), _input(fan))["txn_ids"].to_list() == [["o0", "o1", "o2", "o3", "o4"]]
    # An employer paying the same eight staff every month: repeat pairs, never candidates.
    monthly = [
        (f"s{m}-{i}", m * 720 + i * 0.1, "EMPLOYER", f"E{i}", 8_000 + 50 * i) for m in range(3) for i in range(8)
    ]
    assert _alerts(FanOutMiner(), _input(monthly)).height == 0
    # Eight new staff paid once, declared as payroll through the batch channel: the bank's payroll product.
    payroll = [(f"n{i}", i * 0.1, "EMPLOYER", f"N{i}", 8_000 + 50 * i, "ach", "salary") for i in range(8)]
    assert _alerts(FanOutMiner(), _input(payroll)).height == 0
    # The same payments as ordinary transfers are a fan-out: the payroll exemption is that narrow.
    undeclared = [r[:5] for r in payroll]
    assert _alerts(FanOutMiner(), _input(undeclared)).height == 1


def test_shop_takings_are_not_a_fan_in() -> None:
    small = [(f"c{i}", i * 0.2, f"C{i}", "SHOP", 55 + i % 10) for i in range(50)]  # card payments, under ¥1,000
    # Six new customers buy a ¥2,000 item in the hours twenty regulars (who also came last month) do too.
    new = [(f"n{i}", 30 + i, f"N{i}", "SHOP", 2_000 + 20 * i) for i in range(6)]
    regular = [
        (f"r{m}-{i}", 30.1 + 0.25 * i - m * 720, f"R{i}", "SHOP", 2_000 + 30 * i) for m in range(2) for i in range(20)
    ]
    assert _alerts(FanInMiner(), _input(small + new + regular)).height == 0
    # Without the regulars the six one-off buyers are the shop's whole day: then it is a fan-in.
    assert _alerts(FanInMiner(), _input(small + new)).height == 1


def _ring(hours: tuple[float, ...], amounts: tuple[float, ...] = (100_000, 99_000, 98_000, 97_000)) -> list[tuple]:
    nodes = ["A", "B", "C", "D", "A"][: len(hours) + 1]
    nodes[-1] = "A"
    return [(f"c{i}", h, nodes[i], nodes[i + 1], amounts[i]) for i, h in enumerate(hours)]


def test_time_respecting_cycle_is_found_once() -> None:
    a = _alerts(CycleMiner(), _input(_ring((0, 1, 2, 3))))
    assert a["txn_ids"].to_list() == [["c0", "c1", "c2", "c3"]]
    r = a.row(0, named=True)
    assert (r["subject_id"], r["typology"], r["accounts"]) == ("A", "cycle", ["A", "B", "C", "D"])
    assert r["reasons"][:2] == [
        "¥100k left A and came back to it through 3 other accounts within 3 hours: A → B → C → D → A",
        "¥97k (97%) of it returned",
    ]
    # Every hop at one instant (daily stamps): one instance, not one per rotation.
    assert _alerts(CycleMiner(), _input(_ring((0, 0, 0, 0))))["txn_ids"].to_list() == [["c0", "c1", "c2", "c3"]]


def test_cycle_out_of_time_order_is_not_a_cycle() -> None:
    shuffled = _input(_ring((0, 2, 1), (100_000, 99_000, 98_000)))  # C pays A before B paid C
    assert _alerts(CycleMiner(), shuffled).height == 0
    assert _alerts(CycleMiner(ordered=False), shuffled)["txn_ids"].to_list() == [["c0", "c2", "c1"]]


def test_cycle_needs_the_money_to_come_back_within_the_window() -> None:
    growing = _input(_ring((0, 1, 2, 3), (10_000, 50_000, 100_000, 400_000)))
    assert _alerts(CycleMiner(), growing).height == 0
    assert _alerts(CycleMiner(retention=None), growing).height == 1
    slow = _input(_ring((0, 80, 160, 240)))  # ten days round
    assert _alerts(CycleMiner(), slow).height == 0
    assert _alerts(CycleMiner(window=dt.timedelta(days=11)), slow).height == 1


def _scatter_gather_rows(width: int) -> list[tuple]:
    out = [(f"s{i}", i, "SRC", f"M{i}", 20_000 + 100 * i) for i in range(width)]
    back = [(f"g{i}", 10 + i, f"M{i}", "SINK", round(0.98 * (20_000 + 100 * i), 2)) for i in range(width)]
    return out + back


def test_scatter_gather_is_every_path_through_the_intermediaries() -> None:
    a = _alerts(ScatterGatherMiner(), _input(_scatter_gather_rows(4)))
    assert a.height == 1
    r = a.row(0, named=True)
    assert r["txn_ids"] == ["s0", "s1", "s2", "s3", "g0", "g1", "g2", "g3"]
    assert (r["subject_id"], r["typology"]) == ("SRC", "scatter_gather")
    assert r["reasons"][0] == (
        "SRC paid 4 accounts ¥81k within 3 hours, and each of them passed the money on to SINK: "
        "¥79k (98%) arrived there within 13 hours of the first payment"
    )
    assert _alerts(ScatterGatherMiner(), _input(_scatter_gather_rows(2))).height == 0


def _gather_scatter_rows(out_amounts: tuple[float, ...]) -> list[tuple]:
    gather = [(f"i{i}", h, f"P{i}", "HUB", 25_000) for i, h in enumerate((0, 5, 10, 20))]
    scatter = [(f"x{i}", h, "HUB", f"Q{i}", a) for i, (h, a) in enumerate(zip((24, 26, 30), out_amounts, strict=True))]
    return gather + scatter


def test_gather_scatter_passes_the_money_through() -> None:
    a = _alerts(GatherScatterMiner(), _input(_gather_scatter_rows((40_000, 30_000, 28_000))))
    assert a["txn_ids"].to_list() == [["i0", "i1", "i2", "i3", "x0", "x1", "x2"]]
    assert a["reasons"][0][0] == (
        "4 accounts paid HUB within 20 hours, ¥100k in total, then it paid ¥98k (98%) to 3 accounts within 6 hours"
    )
    # A hub that keeps most of what it gathered is not passing money through.
    assert _alerts(GatherScatterMiner(), _input(_gather_scatter_rows((10_000, 10_000, 10_000)))).height == 0


def _bipartite_rows(prefix: str, senders: list[str], receivers: list[str], hour: float, amount: float) -> list[tuple]:
    return [
        (f"{prefix}{i}{j}", hour + i + 0.1 * j, s, r, amount + 100 * (i + j))
        for i, s in enumerate(senders)
        for j, r in enumerate(receivers)
    ]


def test_bipartite_is_the_complete_block() -> None:
    rows = _bipartite_rows("b", ["X0", "X1", "X2"], ["R0", "R1"], 0, 30_000)
    a = _alerts(BipartiteMiner(), _input(rows))
    assert a.height == 1
    r = a.row(0, named=True)
    assert sorted(r["txn_ids"]) == sorted(t[0] for t in rows)
    assert (r["subject_id"], r["accounts"]) == ("R1", ["R0", "R1", "X0", "X1", "X2"])
    assert r["reasons"][0] == (
        "3 accounts each paid the same 2 accounts (6 of 6 possible payments) within 2 hours, ¥181k in total"
    )
    assert _alerts(StackMiner(), _input(rows)).height == 0


def test_stack_is_two_layers_passed_on_after_arrival_and_not_two_bipartites() -> None:
    first = _bipartite_rows("a", ["A0", "A1"], ["B0", "B1"], 0, 30_000)
    paid = {"B0": 30_000 + 30_100, "B1": 30_100 + 30_200}
    second = [
        (f"c{i}{j}", 10 + i + 0.1 * j, b, c, round(0.49 * paid[b], 2))
        for i, b in enumerate(["B0", "B1"])
        for j, c in enumerate(["C0", "C1"])
    ]
    a = _alerts(StackMiner(), _input(first + second))
    assert a.height == 1
    r = a.row(0, named=True)
    assert sorted(r["txn_ids"]) == sorted(t[0] for t in first + second)
    assert (r["subject_id"], r["typology"]) == ("B1", "stack")
    assert _alerts(BipartiteMiner(), _input(first + second)).height == 0
    # Middles that pay out before they are paid do not pass the money on: two unrelated blocks.
    early = [(t, h - 20, *rest) for t, h, *rest in second]
    assert _alerts(StackMiner(), _input(first + early)).height == 0
    assert _alerts(BipartiteMiner(), _input(first + early)).height == 2


def test_alerts_are_schema_exact_deterministic_and_independent_of_row_order() -> None:
    rows = (
        _fan_in_rows()
        + _ring((100, 101, 102, 103))
        + _scatter_gather_rows(3)
        + _bipartite_rows("b", ["X0", "X1"], ["R0", "R1"], 200, 50_000)
    )
    data = _input(rows)
    shuffled = DetectInput(data.transactions.sample(fraction=1.0, shuffle=True, seed=3), EMPTY, EMPTY)
    expected = pa.schema([pa.field(f.name, f.type, nullable=True) for f in ALERTS.fields])
    for miner in default_miners():
        first = miner.detect(data)
        assert first.schema == expected
        assert first.equals(miner.detect(data))
        assert sorted(pl.from_arrow(first)["alert_id"]) == sorted(pl.from_arrow(miner.detect(shuffled))["alert_id"])
    assert {m.typology for m in default_miners()} == {
        "fan_in",
        "fan_out",
        "cycle",
        "scatter_gather",
        "gather_scatter",
        "bipartite",
        "stack",
    }


def test_empty_input_gives_empty_alerts() -> None:
    data = _input([])
    for miner in default_miners():
        assert miner.detect(data).num_rows == 0


def test_internal_and_cash_accounts_are_not_hubs() -> None:
    rows = _fan_in_rows(hub="BANK-TILL")
    internal = pl.DataFrame({"account_id": ["BANK-TILL"], "type": ["internal"]})
    assert _alerts(FanInMiner(), _input(rows)).height == 1
    assert _alerts(FanInMiner(), _input(rows, accounts=internal)).height == 0
    assert _alerts(FanInMiner(), _input([(*r, "cash") for r in rows])).height == 0


# --- the simulator's injected schemes -----------------------------------------------------------------


def _simulated(config: SimConfig) -> DetectInput:
    sim = simulate(config)
    tx = pl.from_arrow(sim.transactions)
    tx = tx.with_columns(
        amount_cny=FxTable.load().to_cny(tx["amount"], tx["currency"], tx["ts"]),
        self_transfer=pl.col("src_account") == pl.col("dst_account"),
    ).sort("ts", "txn_id")
    return DetectInput(tx, pl.from_arrow(sim.accounts), pl.from_arrow(sim.parties))


BRIEF_CONFIG = SimConfig(persons=3000, enterprises=300, days=60, transactions=150_000, seed=5)


@pytest.fixture(scope="module")
def brief_sim() -> DetectInput:
    return _simulated(BRIEF_CONFIG)


@pytest.fixture(scope="module")
def dense_sim() -> DetectInput:
    """The same population with 3 % crime: about nine attempts per typology instead of one."""
    return _simulated(
        SimConfig(persons=3000, enterprises=300, days=60, transactions=150_000, seed=5, illicit_ratio=0.03)
    )


def _measure(alerts: pa.Table, tx: pl.DataFrame, typology: str) -> tuple[int, int, float]:
    """(attempts of `typology` whose every transaction is in one instance, attempts, share of instances on crime)."""
    evidence = pl.from_arrow(alerts).select("alert_id", txn_id="txn_ids").explode("txn_id")
    truth = tx.filter(pl.col("attempt_id").is_not_null()).select("txn_id", "attempt_id", "typology")
    attempts = truth.filter(pl.col("typology") == typology)
    size = attempts.group_by("attempt_id").len("size")
    covered = (
        attempts.join(evidence, on="txn_id")
        .group_by("attempt_id", "alert_id")
        .len()
        .join(size, on="attempt_id")
        .filter(pl.col("len") == pl.col("size"))["attempt_id"]
        .n_unique()
    )
    on_crime = (
        evidence.join(truth, on="txn_id", how="left").group_by("alert_id").agg(pl.col("attempt_id").is_not_null().any())
    )
    precision = float(on_crime["attempt_id"].mean()) if on_crime.height else 1.0
    return covered, size.height, precision


def test_brief_config_every_injected_attempt_is_found(brief_sim: DetectInput) -> None:
    """At 0.2 % crime the brief's config holds one attempt of each typology, none of scatter-gather."""
    found = {m.typology: _measure(m.detect(brief_sim), brief_sim.transactions, m.typology) for m in default_miners()}
    assert {t: (c, n) for t, (c, n, _) in found.items()} == {
        "fan_in": (1, 1),
        "fan_out": (1, 1),
        "cycle": (1, 1),
        "scatter_gather": (0, 0),
        "gather_scatter": (1, 1),
        "bipartite": (1, 1),
        "stack": (1, 1),
    }
    assert all(p == 1.0 for _, _, p in found.values())


#: Attempt recall floors on the dense simulation (measured on seed 5: every attempt of every typology
#: found, 9/9 or 8/8; one fan-in instance of 77 not on crime). Misses on other seeds are structural:
#: the simulator wires a scheme through a pair that already trades (not one-off), splits a payment
#: below ¥1,000, pays the last part out later than the window, or runs it from an account whose
#: other large payments outnumber the scheme's. Over seeds 5, 7, 11 and 13 and the 1M and 5M
#: benchmark sets the lowest recall was 9/11 (gather-scatter, seed 11), the lowest precision 0.93.
RECALL_FLOOR = 0.8
PRECISION_FLOOR = 0.9


@pytest.mark.parametrize("miner_cls", MINERS[:7], ids=lambda c: c.typology)
def test_dense_simulation_recall_and_precision(dense_sim: DetectInput, miner_cls: type) -> None:
    miner = miner_cls()
    covered, attempts, precision = _measure(miner.detect(dense_sim), dense_sim.transactions, miner.typology)
    assert attempts >= 8
    assert covered / attempts >= RECALL_FLOOR, f"{miner.typology}: {covered}/{attempts}"
    assert precision >= PRECISION_FLOOR


# --- AMLSim: SAR transactions per typology, on both shared sets ----------------------------------------


def _amlsim(tmp_path_factory: pytest.TempPathFactory, name: str) -> DetectInput:
    root = Path(tmp_path_factory.mktemp(name))
    ingest(open_reader(shared(name)), Dataset(root, create=True))
    ds = Dataset(root)
    tx = pl.from_arrow(ds.read("transactions")).sort("ts", "txn_id")
    return DetectInput(tx, pl.from_arrow(ds.read("accounts")), EMPTY)


@pytest.fixture(scope="module")
def amlsim_sample(tmp_path_factory: pytest.TempPathFactory) -> DetectInput:
    return _amlsim(tmp_path_factory, "amlsim-sample")


@pytest.fixture(scope="module")
def amlsim_typologies(tmp_path_factory: pytest.TempPathFactory) -> DetectInput:
    return _amlsim(tmp_path_factory, "amlsim-typologies")


def daily_profile() -> list[object]:
    """The built-in `amlsim` profile: whole-day stamps, schemes spread over months, hops out of order, small sums."""
    return load_profile("amlsim").build()


def _sar_recall(miners: list, data: DetectInput) -> dict[str, tuple[int, int, int, int]]:
    """Per typology present: (SAR transactions in an instance, SAR transactions, instances, instances with SAR)."""
    tx = data.transactions
    out = {}
    for miner in miners:
        sar = tx.filter(pl.col("typology") == miner.typology)["txn_id"]
        if sar.len() == 0:
            continue
        a = pl.from_arrow(miner.detect(data))
        hit = a["txn_ids"].explode().is_in(sar.implode()).sum() if a.height else 0
        on_sar = a.filter(
            pl.col("txn_ids")
            .list.eval(pl.element().is_in(tx.filter(pl.col("label") == 1)["txn_id"].implode()))
            .list.any()
        ).height
        out[miner.typology] = (int(hit), sar.len(), a.height, on_sar)
    return out


def test_amlsim_with_default_parameters(amlsim_sample: DetectInput, amlsim_typologies: DetectInput) -> None:
    """Defaults expect intraday stamps and schemes of days; AMLSim spreads fans over months, so they stay quiet."""
    assert _sar_recall(default_miners(), amlsim_sample) == {
        "fan_in": (0, 20, 0, 0),
        "fan_out": (0, 17, 0, 0),
        "cycle": (0, 28, 0, 0),
    }
    assert _sar_recall(default_miners(), amlsim_typologies) == {
        "fan_in": (0, 4, 0, 0),
        "fan_out": (0, 4, 1, 1),
        "cycle": (0, 5, 0, 0),
        "scatter_gather": (0, 10, 0, 0),
        "gather_scatter": (8, 10, 1, 1),
    }


def test_amlsim_with_daily_profile(amlsim_sample: DetectInput, amlsim_typologies: DetectInput) -> None:
    """Misses are SAR payments along pairs that also trade normally (not one-off) and one cycle AMLSim left open."""
    assert _sar_recall(daily_profile(), amlsim_sample) == {
        "fan_in": (11, 20, 2, 2),
        "fan_out": (7, 17, 1, 1),
        "cycle": (6, 28, 1, 1),
    }
    assert _sar_recall(daily_profile(), amlsim_typologies) == {
        "fan_in": (4, 4, 4, 3),
        "fan_out": (4, 4, 3, 3),
        "cycle": (0, 5, 0, 0),
        "scatter_gather": (8, 10, 1, 1),
        "gather_scatter": (10, 10, 1, 1),
    }
