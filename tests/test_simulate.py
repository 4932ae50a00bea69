"""The simulator's promises, checked on the rows it generates.

Every typology is verified against the structure its description claims, so a
detector scored on simulated labels is scored against what is really there.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tianluo.reference import china_ids
from tianluo.schema import ACCOUNTS, CHANNELS, PARTIES, TRANSACTIONS
from tianluo.simulate import (
    ALL_TYPOLOGIES,
    CASH_REPORT_THRESHOLD_CNY,
    TRANSACTION_COLUMNS,
    TYPOLOGIES,
    SimConfig,
    Simulated,
    simulate,
    write_source,
)

CONFIG = SimConfig(persons=3000, enterprises=300, days=60, illicit_ratio=0.03, seed=11)
NIGHT_HOURS = {21, 22, 23, 0, 1, 2, 3, 4, 5}


@pytest.fixture(scope="module")
def sim() -> Simulated:
    return simulate(CONFIG)


@pytest.fixture(scope="module")
def tx(sim: Simulated) -> pd.DataFrame:
    df = sim.transactions.to_pandas()
    df["local"] = df["ts"].dt.tz_convert("Asia/Shanghai")
    df["sec"] = (df["ts"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return df


@pytest.fixture(scope="module")
def attempts(sim: Simulated, tx: pd.DataFrame) -> dict[str, list[tuple[pd.DataFrame, str | None]]]:
    """Per typology: (rows of the attempt sorted by time, hub account) for every attempt."""
    hubs = dict(zip(sim.attempts["attempt_id"].to_pylist(), sim.attempts["hub_account"].to_pylist(), strict=True))
    out: dict[str, list[tuple[pd.DataFrame, str | None]]] = {t: [] for t in ALL_TYPOLOGIES}
    for attempt_id, rows in tx[tx["label"] == 1].groupby("attempt_id"):
        out[rows["typology"].iloc[0]].append((rows.sort_values("ts", kind="stable"), hubs[attempt_id]))
    return out


def _each(attempts: dict, typology: str) -> list[tuple[pd.DataFrame, str | None]]:
    found = attempts[typology]
    assert found, f"no {typology} attempt was generated"
    return found


# --- tables --------------------------------------------------------------------------------------


def test_transactions_have_the_canonical_columns_and_no_derived_ones(sim: Simulated) -> None:
    schema = sim.transactions.schema
    assert schema.names == list(TRANSACTION_COLUMNS)
    for name in schema.names:
        assert schema.field(name).type == TRANSACTIONS.field(name).type, name
        assert not TRANSACTIONS.field(name).derived
    assert set(sim.accounts.schema.names) == {f.name for f in ACCOUNTS.fields if not f.derived}
    assert set(sim.parties.schema.names) == {f.name for f in PARTIES.fields if not f.derived}


def test_transaction_values_are_canonical(tx: pd.DataFrame, sim: Simulated) -> None:
    assert tx["txn_id"].is_unique
    assert (tx["amount"] > 0).all()
    assert np.allclose(tx["amount"], tx["amount"].round(2), rtol=0, atol=1e-9)
    assert set(tx["channel"]) <= set(CHANNELS)
    assert set(tx["direction"].dropna()) <= {"in", "out"}
    assert (tx["currency"] == "CNY").mean() > 0.99
    foreign = tx[tx["currency"] != "CNY"]
    assert len(foreign) > 0 and foreign["cross_border"].all() and set(foreign["currency"]) <= {"USD", "HKD", "EUR"}
    assert set(tx["purpose"]) >= {"salary", "merchant", "bill", "supplier", "cash_deposit", "cash_withdrawal",
                                  "p2p", "cross_border", "loan_repayment"}


def test_every_row_touches_the_reporting_bank_and_direction_says_which_side(tx: pd.DataFrame) -> None:
    src_own, dst_own = tx["src_bank"] == CONFIG.bank, tx["dst_bank"] == CONFIG.bank
    assert (src_own | dst_own).all()
    assert (tx.loc[src_own & dst_own, "direction"].isna()).all()
    assert (tx.loc[src_own & ~dst_own, "direction"] == "out").all()
    assert (tx.loc[~src_own & dst_own, "direction"] == "in").all()


def test_accounts_and_parties_are_consistent_and_ids_valid(sim: Simulated, tx: pd.DataFrame) -> None:
    acc = sim.accounts.to_pandas()
    par = sim.parties.to_pandas()
    assert acc["account_id"].is_unique and par["party_id"].is_unique
    assert set(tx["src_account"]) | set(tx["dst_account"]) <= set(acc["account_id"])
    assert set(acc["party_id"]) <= set(par["party_id"])
    banks = dict(zip(acc["account_id"], acc["bank"], strict=True))
    assert (tx["src_account"].map(banks) == tx["src_bank"]).all()
    assert set(acc["type"]) == {"personal", "corporate", "internal"}
    assert (acc["bank"] != CONFIG.bank).sum() > 0  # counterparties at other banks have rows too
    assert acc["closed"].notna().sum() > 0 and acc["closed"].isna().mean() > 0.9

    persons = par[par["kind"] == "person"]
    assert china_ids.valid_resident_ids(persons["id_number"].tolist()).all()
    assert china_ids.valid_mobiles(persons["phone"].tolist()).all()
    assert set(persons["gender"]) == {"F", "M"}
    # The ID number encodes the gender and the birth year the party row states.
    ids = persons["id_number"]
    assert all(china_ids.resident_id_gender(i) == g for i, g in zip(ids, persons["gender"], strict=True))
    assert all(int(i[6:10]) == y for i, y in zip(ids, persons["birth_year"], strict=True))
    assert persons["uscc"].isna().all() and persons["industry"].isna().all()
    assert persons["name"].str.fullmatch(r"[\u4e00-\u9fff]{2,4}").all()

    firms = par[par["kind"] == "enterprise"]
    domestic = firms[firms["region"].str.fullmatch(r"\d{6}")]
    assert china_ids.valid_usccs(domestic["uscc"].tolist()).all()
    assert (domestic["uscc"].str[2:8] == domestic["region"]).all()
    assert firms["id_number"].isna().all()
    assert domestic["industry"].str.fullmatch(r"[A-T] \S+").all()
    assert (domestic["registered_capital"] > 0).all() and domestic["founded"].notna().all()
    assert (domestic["founded"] < CONFIG.start).all()
    assert domestic["address"].str.match(r"[\u4e00-\u9fff]+(省|市|自治区)").all()

    cards = acc.loc[acc["type"] == "personal", "account_id"]
    assert all(china_ids.is_valid_bank_card(a) for a in cards)
    assert cards[acc["bank"] == CONFIG.bank].str.startswith("6222").all()


def test_timestamps_are_to_the_second_spread_over_the_day_and_sorted(tx: pd.DataFrame) -> None:
    us = tx["ts"].astype("int64")
    assert (us % 1_000_000 == 0).all()
    assert us.is_monotonic_increasing
    local = tx["local"]
    assert (local.dt.normalize() == local).mean() < 0.001  # not all midnight
    assert local.dt.second.nunique() == 60 and local.dt.minute.nunique() == 60
    start = pd.Timestamp(CONFIG.start, tz="Asia/Shanghai")
    assert local.min() >= start and local.max() < start + pd.Timedelta(days=CONFIG.days)
    # Daytime dominates: people sleep.
    hour = local.dt.hour
    assert hour.between(9, 21).mean() > 0.7 and hour.between(2, 5).mean() < 0.1


def test_licit_rhythm_salary_paydays_and_business_days(tx: pd.DataFrame) -> None:
    salary = tx[(tx["purpose"] == "salary") & (tx["label"] == 0)]
    # Each employer pays all its staff on one day a month (earlier when that day is a holiday).
    salary = salary.assign(day=salary["local"].dt.normalize())
    dates = salary.groupby("src_account")["day"].unique()
    gaps = [np.diff(np.sort(d)).min() for d in dates if len(d) > 1]
    assert gaps and min(gaps) >= pd.Timedelta(days=20)
    assert not salary.duplicated(["src_account", "dst_account", "day"]).any()
    supplier = tx[(tx["purpose"] == "supplier") & (tx["label"] == 0)]
    assert (supplier["local"].dt.day_of_week < 5).mean() > 0.9
    atm = tx[(tx["purpose"] == "cash_withdrawal") & (tx["label"] == 0)]
    assert (atm["amount"] % 100 == 0).all()


# --- determinism and parameters ------------------------------------------------------------------


def test_same_seed_gives_identical_output_and_another_seed_does_not() -> None:
    cfg = SimConfig(persons=400, enterprises=40, days=14, illicit_ratio=0.02, seed=5)
    a, b = simulate(cfg), simulate(cfg)
    assert a.transactions.equals(b.transactions)
    assert a.accounts.equals(b.accounts) and a.parties.equals(b.parties) and a.attempts.equals(b.attempts)
    c = simulate(SimConfig(persons=400, enterprises=40, days=14, illicit_ratio=0.02, seed=6))
    assert not a.transactions.equals(c.transactions)


def test_illicit_ratio_is_respected() -> None:
    for ratio in (0.01, 0.05):
        s = simulate(SimConfig(persons=3000, enterprises=300, days=30, illicit_ratio=ratio, seed=3))
        label = s.transactions["label"].to_numpy()
        assert label.mean() == pytest.approx(ratio, rel=0.2)


def test_no_crime_when_ratio_is_zero() -> None:
    s = simulate(SimConfig(persons=300, enterprises=30, days=14, illicit_ratio=0.0))
    assert s.transactions["label"].to_numpy().sum() == 0 and s.attempts.num_rows == 0


def test_transactions_target_scales_volume() -> None:
    s = simulate(SimConfig(persons=1000, enterprises=100, days=30, transactions=60_000, illicit_ratio=0.01))
    assert s.transactions.num_rows == pytest.approx(60_000, rel=0.02)


def test_typology_subset_and_config_errors() -> None:
    s = simulate(SimConfig(persons=500, enterprises=50, days=30, illicit_ratio=0.05,
                           typologies=("cycle", "structuring")))
    assert set(s.transactions["typology"].drop_null().to_pylist()) == {"cycle", "structuring"}
    with pytest.raises(ValueError, match="unknown typologies"):
        SimConfig(typologies=("smurfing",))
    with pytest.raises(ValueError, match="illicit_ratio"):
        SimConfig(illicit_ratio=0.9)


# --- ground truth --------------------------------------------------------------------------------


def test_labels_typologies_and_attempt_ids_agree(tx: pd.DataFrame, sim: Simulated) -> None:
    illicit = tx["label"] == 1
    assert tx.loc[illicit, ["typology", "attempt_id"]].notna().all().all()
    assert tx.loc[~illicit, ["typology", "attempt_id"]].isna().all().all()
    assert set(tx["label"].unique()) == {0, 1}
    assert tx.loc[illicit, "attempt_id"].str.fullmatch(r"A\d{6}").all()
    assert (tx[illicit].groupby("attempt_id")["typology"].nunique() == 1).all()
    assert set(tx.loc[illicit, "typology"]) == set(ALL_TYPOLOGIES)
    att = sim.attempts.to_pandas().set_index("attempt_id")
    counts = tx[illicit].groupby("attempt_id").size()
    assert (att.loc[counts.index, "transactions"] == counts).all()
    assert set(TYPOLOGIES) == set(ALL_TYPOLOGIES) and all(t.description and t.zh for t in TYPOLOGIES.values())


def test_fan_in_and_fan_out(attempts: dict) -> None:
    for rows, hub in _each(attempts, "fan_in"):
        assert rows["dst_account"].nunique() == 1 and rows["dst_account"].iloc[0] == hub
        assert rows["src_account"].nunique() == len(rows) >= 5
    for rows, hub in _each(attempts, "fan_out"):
        assert rows["src_account"].nunique() == 1 and rows["src_account"].iloc[0] == hub
        assert rows["dst_account"].nunique() == len(rows) >= 5


def _is_chain(rows: pd.DataFrame) -> bool:
    src, dst = rows["src_account"].to_numpy(), rows["dst_account"].to_numpy()
    return bool((dst[:-1] == src[1:]).all() and rows["ts"].is_monotonic_increasing and rows["ts"].is_unique)


def test_cycle_is_a_time_ordered_chain_back_to_its_start(attempts: dict) -> None:
    for rows, hub in _each(attempts, "cycle"):
        assert len(rows) >= 3 and _is_chain(rows)
        assert rows["dst_account"].iloc[-1] == rows["src_account"].iloc[0] == hub
        assert rows["src_account"].nunique() == len(rows)
        assert (rows["amount"].diff().dropna() < 0).all()  # fees come off at every hop


def test_random_is_a_time_ordered_walk(attempts: dict) -> None:
    for rows, hub in _each(attempts, "random"):
        assert len(rows) >= 4 and _is_chain(rows) and rows["src_account"].iloc[0] == hub


def test_scatter_gather_intermediaries_pay_the_sink_after_being_paid(attempts: dict) -> None:
    for rows, source in _each(attempts, "scatter_gather"):
        out = rows[rows["src_account"] == source]
        mids = set(out["dst_account"])
        back = rows[rows["src_account"] != source]
        assert len(mids) >= 3 and len(out) == len(mids) == len(back)
        assert back["dst_account"].nunique() == 1 and set(back["src_account"]) == mids
        paid = out.set_index("dst_account")["sec"]
        assert (back["sec"].to_numpy() > paid.loc[back["src_account"]].to_numpy()).all()


def test_gather_scatter_pays_out_after_the_last_inflow(attempts: dict) -> None:
    for rows, hub in _each(attempts, "gather_scatter"):
        ins, outs = rows[rows["dst_account"] == hub], rows[rows["src_account"] == hub]
        assert len(ins) + len(outs) == len(rows) and len(ins) >= 3 and len(outs) >= 3
        assert ins["ts"].max() < outs["ts"].min()
        assert outs["amount"].sum() == pytest.approx(ins["amount"].sum(), rel=0.03)


def test_bipartite_each_sender_pays_each_receiver_once(attempts: dict) -> None:
    for rows, _ in _each(attempts, "bipartite"):
        senders, receivers = set(rows["src_account"]), set(rows["dst_account"])
        assert not senders & receivers and len(senders) >= 2 and len(receivers) >= 2
        pairs = set(zip(rows["src_account"], rows["dst_account"], strict=True))
        assert len(rows) == len(pairs) == len(senders) * len(receivers)


def test_stack_layers_are_complete_and_the_second_follows_the_first(attempts: dict) -> None:
    for rows, _ in _each(attempts, "stack"):
        middle = set(rows["src_account"]) & set(rows["dst_account"])
        layer1, layer2 = rows[rows["dst_account"].isin(middle)], rows[rows["src_account"].isin(middle)]
        first, last = set(layer1["src_account"]), set(layer2["dst_account"])
        assert len(layer1) + len(layer2) == len(rows)
        assert len(layer1) == len(first) * len(middle) and len(layer2) == len(middle) * len(last)
        assert layer1["ts"].max() < layer2["ts"].min()
        for m in middle:  # each middle account passes on what it got, less fees
            got = layer1.loc[layer1["dst_account"] == m, "amount"].sum()
            assert layer2.loc[layer2["src_account"] == m, "amount"].sum() == pytest.approx(got, rel=0.03)


def test_structuring_deposits_cash_just_under_the_threshold(attempts: dict) -> None:
    for rows, person in _each(attempts, "structuring"):
        assert (rows["dst_account"] == person).all() and len(rows) >= 3
        assert (rows["channel"] == "cash").all() and (rows["purpose"] == "cash_deposit").all()
        assert rows["amount"].between(0.9 * CASH_REPORT_THRESHOLD_CNY, CASH_REPORT_THRESHOLD_CNY,
                                      inclusive="left").all()
        assert rows["src_account"].str.contains("-CASH-").all() and rows["src_account"].nunique() >= 2
        assert rows["local"].dt.date.nunique() == len(rows)  # one deposit a day


def test_rapid_in_out_sends_the_inflow_on_within_hours(attempts: dict) -> None:
    for rows, hub in _each(attempts, "rapid_in_out"):
        ins, outs = rows[rows["dst_account"] == hub], rows[rows["src_account"] == hub]
        assert len(ins) + len(outs) == len(rows) and len(outs) >= 2
        assert outs["ts"].min() > ins["ts"].max()
        window = outs["ts"] <= ins["ts"].min() + pd.Timedelta(hours=24)
        assert window.all()
        assert outs["amount"].sum() == pytest.approx(ins["amount"].sum(), rel=0.02)
        assert ins["amount"].sum() >= 200_000


def test_dispersed_in_concentrated_out_and_the_reverse(attempts: dict) -> None:
    for rows, hub in _each(attempts, "dispersed_in_concentrated_out"):
        ins, outs = rows[rows["dst_account"] == hub], rows[rows["src_account"] == hub]
        assert ins["src_account"].nunique() >= 10 and outs["dst_account"].nunique() <= 2
        assert outs["ts"].min() > ins["ts"].max()
        assert outs["amount"].sum() == pytest.approx(ins["amount"].sum(), rel=0.02)
    for rows, hub in _each(attempts, "concentrated_in_dispersed_out"):
        ins, outs = rows[rows["dst_account"] == hub], rows[rows["src_account"] == hub]
        assert ins["src_account"].nunique() <= 2 and outs["dst_account"].nunique() >= 10
        assert outs["ts"].min() > ins["ts"].max()
        assert outs["amount"].sum() == pytest.approx(ins["amount"].sum(), rel=0.02)


def test_dormant_account_is_silent_until_crime_wakes_it(attempts: dict, tx: pd.DataFrame, sim: Simulated) -> None:
    opened = dict(zip(sim.accounts["account_id"].to_pylist(), sim.accounts["opened"].to_pylist(), strict=True))
    start = pd.Timestamp(CONFIG.start, tz="Asia/Shanghai")
    for rows, acct in _each(attempts, "dormant_reactivation"):
        first = rows["ts"].min()
        touching = tx[(tx["src_account"] == acct) | (tx["dst_account"] == acct)]
        assert (touching["ts"] >= first).all() and (touching["label"] == 1).all()
        assert rows["local"].min() >= start + pd.Timedelta(days=CONFIG.days // 2)
        assert opened[acct] <= CONFIG.start - dt.timedelta(days=2 * 365)
        assert rows.loc[rows["dst_account"] == acct, "amount"].sum() >= 100_000


def test_mule_paofen_forwards_many_small_night_payments_within_minutes(attempts: dict) -> None:
    for rows, mule in _each(attempts, "mule_paofen"):
        ins, outs = rows[rows["dst_account"] == mule], rows[rows["src_account"] == mule]
        assert ins["src_account"].nunique() >= 15 and outs["dst_account"].nunique() <= 3
        assert ins["amount"].max() <= 5000
        assert ins["local"].dt.hour.isin(NIGHT_HOURS).mean() >= 0.6
        t_out, a_out = outs["sec"].to_numpy(), outs["amount"].to_numpy()
        for t, a in zip(ins["sec"].to_numpy(), ins["amount"].to_numpy(), strict=True):
            dt_s = t_out - t
            assert ((dt_s > 0) & (dt_s <= 900) & (a_out >= 0.97 * a - 0.01) & (a_out <= a)).any()


def test_illegal_fundraising_takes_round_deposits_and_pays_interest_back(attempts: dict, sim: Simulated) -> None:
    kind = dict(zip(sim.accounts["account_id"].to_pylist(), sim.accounts["type"].to_pylist(), strict=True))
    for rows, firm in _each(attempts, "illegal_fundraising"):
        assert kind[firm] == "corporate"
        deposits, payouts = rows[rows["dst_account"] == firm], rows[rows["src_account"] == firm]
        assert len(deposits) + len(payouts) == len(rows)
        assert deposits["src_account"].nunique() == len(deposits) >= 20
        assert (deposits["src_account"].map(kind) == "personal").all()
        assert (deposits["amount"] % 10_000 == 0).all() and (deposits["purpose"] == "investment").all()
        assert (payouts["purpose"] == "interest").all()
        dep = deposits.set_index("src_account")
        assert set(payouts["dst_account"]) == set(dep.index)  # every investor is paid at least once
        assert (payouts["sec"].to_numpy() > dep.loc[payouts["dst_account"], "sec"].to_numpy()).all()
        rate = payouts["amount"].to_numpy() / dep.loc[payouts["dst_account"], "amount"].to_numpy()
        assert np.ptp(rate) < 1e-4  # one promised rate per scheme


def test_gambling_deposits_are_round_nightly_pooled_and_paid_out(attempts: dict) -> None:
    for rows, master in _each(attempts, "gambling"):
        sweeps = rows[rows["dst_account"] == master]
        collectors = set(sweeps["src_account"])
        deposits = rows[rows["dst_account"].isin(collectors)]
        payouts = rows[rows["src_account"] == master]
        assert len(sweeps) + len(deposits) + len(payouts) == len(rows)
        assert 2 <= len(collectors) <= 4 and deposits["src_account"].nunique() >= 10
        assert (deposits["amount"] % 100 == 0).all() and (payouts["amount"] % 100 == 0).all()
        assert deposits["local"].dt.hour.isin(NIGHT_HOURS).mean() >= 0.6
        assert sweeps["amount"].sum() == pytest.approx(deposits["amount"].sum(), abs=0.01)
        for c in collectors:  # a collector never sweeps more than it has received so far
            flow = rows[(rows["dst_account"] == c) | (rows["src_account"] == c)]
            balance = np.where(flow["dst_account"] == c, flow["amount"], -flow["amount"]).cumsum()
            assert balance.min() >= -0.01
        assert payouts["ts"].min() > sweeps["ts"].min()
        assert set(payouts["dst_account"]) <= set(deposits["src_account"])


# --- writing -------------------------------------------------------------------------------------


def test_write_source_parquet_round_trips(tmp_path, sim: Simulated) -> None:
    paths = write_source(sim, tmp_path, "parquet")
    assert [p.name for p in paths] == ["transactions.parquet", "accounts.parquet", "parties.parquet",
                                       "tianluo-source.json"]
    assert pq.read_table(tmp_path / "transactions.parquet").equals(sim.transactions)
    assert pq.read_table(tmp_path / "parties.parquet").equals(sim.parties)
    meta = json.loads((tmp_path / "tianluo-source.json").read_text())
    assert meta["format"] == "tianluo" and meta["generator"] == "tianluo.simulate"
    assert meta["rows"]["transactions"] == sim.transactions.num_rows
    assert meta["config"]["seed"] == CONFIG.seed and meta["config"]["start"] == "2024-01-01"


def test_write_source_csv_layout(tmp_path) -> None:
    small = simulate(SimConfig(persons=300, enterprises=30, days=14, illicit_ratio=0.05, seed=2))
    write_source(small, tmp_path, "csv")
    with (tmp_path / "transactions.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == small.transactions.num_rows
    assert list(rows[0]) == list(TRANSACTION_COLUMNS)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r["ts"]) for r in rows)
    assert {r["label"] for r in rows} == {"0", "1"}
    assert all(r["typology"] == "" and r["attempt_id"] == "" for r in rows if r["label"] == "0")
    first = small.transactions.slice(0, 1).to_pylist()[0]
    assert rows[0]["ts"] == first["ts"].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert rows[0]["src_account"] == first["src_account"]
    parties = (tmp_path / "parties.csv").read_text(encoding="utf-8")
    assert small.parties["name"][0].as_py() in parties
    assert pa.csv.read_csv(tmp_path / "accounts.csv").num_rows == small.accounts.num_rows
    with pytest.raises(ValueError, match="format"):
        write_source(small, tmp_path, "xlsx")
