"""Fund-flow tracing: exact amounts on hand-built ledgers, invariants on random ones, simulated injected chains."""

from __future__ import annotations

import datetime as dt
import io
import json
from fractions import Fraction
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tianluo.ingest import ingest, open_reader
from tianluo.simulate import SimConfig, simulate, write_source
from tianluo.store import Dataset
from tianluo.trace import TraceIndex, TraceResult, trace

T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
COLUMNS = ["txn_id", "ts", "src_account", "dst_account", "amount", "channel", "cross_border", "dst_bank"]
#: Every limit off, so that a test sees attribution alone.
UNLIMITED = {"min_amount": 0, "top_k": None, "sinks": ()}


def _ledger(*rows: tuple) -> TraceIndex:
    """(txn_id, hour, src, dst, amount[, channel[, cross_border[, dst_bank]]]) rows as an index; our bank is OUR."""
    full = [(r[0], T0 + dt.timedelta(hours=r[1]), *r[2:5], *(r[5:] + ("transfer", False, "OUR")[len(r) - 5:]))
            for r in rows]
    df = pl.DataFrame(full, schema=COLUMNS, orient="row").with_columns(src_bank=pl.lit("OUR"))
    return TraceIndex.build(df)


def _traced(result: TraceResult) -> dict[str, float]:
    return dict(zip(result.edges["txn_id"], result.edges["traced"], strict=True))


def _node(result: TraceResult, account: str) -> dict:
    return result.nodes.filter(pl.col("account_id") == account).row(0, named=True)


# --- exact amounts on hand-built ledgers -----------------------------------------------------------------

#: X pays A before the traced money arrives, so A holds 400 of other money when O's 1000 lands.
SPLIT_MERGE = (
    ("x", -1, "X", "A", 400.0),
    ("o", 0, "O", "A", 1000.0),
    ("ab", 1, "A", "B", 600.0),
    ("ac", 2, "A", "C", 600.0),
    ("ae", 5, "A", "E", 300.0),
    ("bd", 3, "B", "D", 500.0),
    ("cd", 4, "C", "D", 100.0),
)


def test_fifo_spends_the_earliest_traced_money_first_through_splits_and_merges() -> None:
    res = trace(_ledger(*SPLIT_MERGE), "O", method="fifo", **UNLIMITED)
    # A forwards O's 1000 first: 600 on ab, the remaining 400 on ac; nothing is left for ae.
    assert _traced(res) == {"o": 1000.0, "ab": 600.0, "ac": 400.0, "bd": 500.0, "cd": 100.0}
    d = _node(res, "D")
    assert (d["role"], d["traced_in"], d["hop"]) == ("sink", 600.0, 3)
    assert _node(res, "A")["traced_out"] == 1000.0
    assert [(p.accounts, p.amount, p.end) for p in res.paths] == [
        (("O", "A", "B", "D"), 500.0, "held"),
        (("O", "A", "C", "D"), 100.0, "held"),
    ]
    assert res.summary["start_amount"] == 1000.0
    assert res.summary["held"] == 1000.0


def test_proportional_carries_the_traced_share_of_the_balance() -> None:
    res = trace(_ledger(*SPLIT_MERGE), "O", method="proportional", **UNLIMITED)
    f = Fraction
    # A's balance is 1400, 1000 of it traced: ab takes 600/1400 of the traced 1000, leaving 4000/7
    # traced in a balance of 800; ac takes 600/800 of that; ae (300 > the 200 left) empties the rest.
    ab = f(1000) * f(600, 1400)
    ac = (f(1000) - ab) * f(600, 800)
    ae = f(1000) - ab - ac
    bd = ab * f(500, 600)  # B's balance is the 600 from A
    cd = ac * f(100, 600)
    expected = {"o": 1000, "ab": ab, "ac": ac, "ae": ae, "bd": bd, "cd": cd}
    assert _traced(res) == pytest.approx({k: float(v) for k, v in expected.items()}, rel=1e-12)
    assert _node(res, "D")["traced_in"] == pytest.approx(float(bd + cd), rel=1e-12)


def test_a_hop_before_the_money_arrived_or_in_the_same_second_is_excluded() -> None:
    index = _ledger(("o", 2, "O", "A", 100.0), ("early", 1, "A", "B", 100.0), ("same", 2, "A", "C", 100.0),
                    ("later", 3, "A", "D", 100.0))
    for method in ("fifo", "proportional"):
        assert _traced(trace(index, "O", method=method, **UNLIMITED)) == {"o": 100.0, "later": 100.0}


def test_a_hop_after_the_hop_window_is_excluded() -> None:
    index = _ledger(("o", 0, "O", "A", 100.0), ("in", 72, "A", "B", 60.0), ("late", 73, "A", "C", 40.0))
    assert _traced(trace(index, "O", hop_window="72h", **UNLIMITED)) == {"o": 100.0, "in": 60.0}
    assert _traced(trace(index, "O", hop_window="3d", **UNLIMITED)) == {"o": 100.0, "in": 60.0}
    assert _traced(trace(index, "O", hop_window="4d", **UNLIMITED)) == {"o": 100.0, "in": 60.0, "late": 40.0}


def test_the_horizon_bounds_the_whole_trace() -> None:
    index = _ledger(("o", 0, "O", "A", 100.0), ("ab", 40, "A", "B", 100.0), ("bc", 80, "B", "C", 100.0))
    assert set(_traced(trace(index, "O", **UNLIMITED))) == {"o", "ab", "bc"}
    assert set(_traced(trace(index, "O", horizon="3d", **UNLIMITED))) == {"o", "ab"}


def test_min_amount_drops_small_hops_and_counts_their_money() -> None:
    index = _ledger(("o", 0, "O", "A", 1000.0), ("small", 1, "A", "B", 50.0), ("big", 2, "A", "C", 950.0))
    res = trace(index, "O", min_amount=100, top_k=None)
    assert _traced(res) == {"o": 1000.0, "big": 950.0}
    assert _node(res, "A")["dropped"] == 50.0
    assert res.summary["dropped"] == 50.0


def test_hop_limit_stops_the_chain() -> None:
    chain = [(f"h{i}", i, f"N{i}", f"N{i + 1}", 100.0) for i in range(5)]
    res = trace(_ledger(*chain), "N0", max_hops=2, **UNLIMITED)
    assert _traced(res) == {"h0": 100.0, "h1": 100.0}
    assert [(p.accounts, p.end) for p in res.paths] == [(("N0", "N1", "N2"), "max_hops")]
    assert res.summary["max_hops"] == 100.0


def test_top_k_keeps_the_largest_onward_hops_per_account() -> None:
    index = _ledger(("o", 0, "O", "A", 1500.0), *[(f"p{a}", 1 + a / 10, "A", f"P{a}", float(a)) for a in
                                                   (100, 500, 200, 400, 300)])
    res = trace(index, "O", top_k=2, min_amount=0)
    assert _traced(res) == {"o": 1500.0, "p500": 500.0, "p400": 400.0}
    assert _node(res, "A")["dropped"] == 600.0


def test_paths_end_at_sinks_and_do_not_go_beyond_them() -> None:
    index = _ledger(
        ("o", 0, "O", "A", 1000.0),
        ("cash", 1, "A", "OUR-CASH", 100.0, "cash"),
        ("abroad", 2, "A", "F", 200.0, "wire", True, "HSBC"),
        ("ext", 3, "A", "E", 300.0, "transfer", False, "ICBC"),
        ("bad", 4, "A", "G", 400.0),
        ("onward", 5, "G", "H", 400.0),
    )
    res = trace(index, "O", alerted={"G"})
    assert sorted((p.end, p.accounts[-1], p.amount) for p in res.paths) == [
        ("alerted", "G", 400.0), ("cash", "OUR-CASH", 100.0), ("cross_border", "F", 200.0),
        ("other_bank", "E", 300.0),
    ]
    assert "onward" not in _traced(res)
    assert res.summary["sinks"] == {"cash": 100.0, "cross_border": 200.0, "other_bank": 300.0, "alerted": 400.0}
    assert _node(res, "G")["flags"] == ["alerted"]
    # Narrowed sinks: the trace goes on through the alerted account and the other bank.
    assert {"onward", "ext"} <= set(_traced(trace(index, "O", alerted={"G"}, sinks=("cash",))))


def test_backward_from_a_transaction_finds_where_the_money_came_from() -> None:
    index = _ledger(*SPLIT_MERGE)
    fifo = trace(index, start_txn="bd", direction="backward", method="fifo", **UNLIMITED)
    # B's 500 came from ab; ab's 600 from A's latest inflows first: O's 1000 (the mirror of FIFO).
    assert _traced(fifo) == {"bd": 500.0, "ab": 500.0, "o": 500.0}
    assert [(p.accounts, p.end) for p in fifo.paths] == [(("O", "A", "B", "D"), "unexplained")]
    prop = trace(index, start_txn="bd", direction="backward", method="proportional", **UNLIMITED)
    # ab is 600/1400 of A's balance at that moment: 1000 parts O, 400 parts X.
    assert _traced(prop) == pytest.approx({"bd": 500.0, "ab": 500.0, "o": 500 * 1000 / 1400, "x": 500 * 400 / 1400})
    assert _node(prop, "D")["role"] == "origin"
    assert {r["account_id"]: r["role"] for r in prop.nodes.iter_rows(named=True) if r["role"] == "source"} == {
        "O": "source", "X": "source"}


def test_fifo_backward_over_the_whole_ledger_need_not_retrace_a_forward_trace() -> None:
    """Under FIFO, traced money leaves first; seen backward, the latest inflow funded the payment."""
    index = _ledger(("o", 1, "O", "A", 100.0), ("x", 2, "X", "A", 100.0), ("j", 3, "A", "S", 100.0))
    assert _traced(trace(index, "O", **UNLIMITED)) == {"o": 100.0, "j": 100.0}
    assert _traced(trace(index, start_txn="j", direction="backward", **UNLIMITED)) == {"j": 100.0, "x": 100.0}


def test_start_time_range_selects_the_start_transactions() -> None:
    index = _ledger(("a", 0, "O", "A", 100.0), ("b", 24, "O", "B", 200.0), ("c", 48, "O", "C", 300.0))
    res = trace(index, "O", start_time=T0 + dt.timedelta(hours=12), end_time=(T0 + dt.timedelta(hours=48)).isoformat())
    assert _traced(res) == {"b": 200.0, "c": 300.0}
    assert set(_traced(trace(index, "O", top_k=1))) == {"c"}


def test_json_and_csv_exports() -> None:
    res = trace(_ledger(*SPLIT_MERGE), "O", method="fifo", **UNLIMITED)
    doc = json.loads(res.to_json())
    assert set(doc) == {"params", "summary", "nodes", "edges", "paths"}
    assert doc["params"]["method"] == "fifo"
    edge = next(e for e in doc["edges"] if e["txn_id"] == "ac")
    assert (edge["traced"], edge["amount"], edge["hop"]) == (400.0, 600.0, 2)
    assert edge["ts"] == "2024-03-01T02:00:00.000000+00:00"
    assert doc["paths"][0]["txn_ids"] == ["o", "ab", "bd"]
    csv = pl.read_csv(io.StringIO(res.edges_csv()))
    assert csv.columns == ["txn_id", "ts", "src_account", "dst_account", "amount", "traced", "hop", "channel", "sink"]
    assert csv.height == 5
    assert dict(zip(csv["txn_id"], csv["traced"], strict=True)) == _traced(res)


def test_bad_requests_say_what_is_wrong() -> None:
    index = _ledger(*SPLIT_MERGE)
    with pytest.raises(ValueError, match="exactly one"):
        trace(index, "O", start_txn="o")
    with pytest.raises(KeyError, match="NOPE"):
        trace(index, "NOPE")
    with pytest.raises(KeyError, match="zzz"):
        trace(index, start_txn="zzz")
    with pytest.raises(ValueError, match="method"):
        trace(index, "O", method="lifo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sink"):
        trace(index, "O", sinks=("casino",))


def test_saved_index_loads_memory_mapped_and_traces_the_same(tmp_path: Path) -> None:
    index = _ledger(*SPLIT_MERGE)
    index.save(tmp_path / "idx")
    loaded = TraceIndex.load(tmp_path / "idx")
    for method in ("fifo", "proportional"):
        assert trace(loaded, "O", method=method).to_dict() == trace(index, "O", method=method).to_dict()


# --- invariants on random ledgers -----------------------------------------------------------------------


@st.composite
def ledgers(draw: st.DrawFn, origin_pays_only: bool = False) -> TraceIndex:
    """Up to 40 transactions among up to 8 accounts within 60 hours; account a0 always pays something."""
    n = draw(st.integers(2, 8))
    rows = []
    for i in range(draw(st.integers(1, 40))):
        src = draw(st.integers(0, n - 1))
        dst = draw(st.integers(1 if origin_pays_only else 0, n - 1))
        if src != dst:
            rows.append((f"t{i:02d}", draw(st.integers(0, 60)), f"a{src}", f"a{dst}",
                         float(draw(st.integers(1, 1000)))))
    rows.append(("t99", draw(st.integers(0, 60)), "a0", "a1", float(draw(st.integers(1, 1000)))))
    return _ledger(*rows)


LIMITS = st.fixed_dictionaries({
    "method": st.sampled_from(["fifo", "proportional"]),
    "direction": st.sampled_from(["forward", "backward"]),
    "max_hops": st.integers(1, 6),
    "hop_window": st.sampled_from(["1h", "5h", "24h", "3d"]),
    "horizon": st.sampled_from([None, "12h", "2d"]),
    "min_amount": st.sampled_from([0, 10, 200]),
    "top_k": st.sampled_from([None, 1, 2, 3]),
})
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOL = 1e-6


@PROPERTY
@given(index=ledgers(), limits=LIMITS, from_txn=st.booleans())
def test_traced_money_is_conserved_and_moves_forward_in_time(index: TraceIndex, limits: dict, from_txn: bool) -> None:
    start = {"start_txn": "t99"} if from_txn else {"start_account": "a0"}
    res = trace(index, **start, **limits, sinks=())
    forward = limits["direction"] == "forward"
    window = {"1h": 3600, "5h": 5 * 3600, "24h": 86400, "3d": 3 * 86400}[limits["hop_window"]]
    for e in res.edges.iter_rows(named=True):
        assert 0 < e["traced"] <= e["amount"] * (1 + TOL)
        assert e["traced"] >= limits["min_amount"] * (1 - TOL) or e["hop"] == 1
        assert 1 <= e["hop"] <= limits["max_hops"]
    # Every traced transaction past hop 1 follows a traced arrival: strictly later, within the window.
    arrivals = res.edges.select(joint="dst_account" if forward else "src_account", t_arrival="ts")
    later = res.edges.filter(pl.col("hop") > 1).with_row_index("row").join(
        arrivals, left_on="src_account" if forward else "dst_account", right_on="joint")
    gap = (pl.col("ts") - pl.col("t_arrival")).dt.total_seconds() * (1 if forward else -1)
    explained = later.filter((gap > 0) & (gap <= window))["row"].n_unique()
    assert explained == res.edges.filter(pl.col("hop") > 1).height
    start_amount = res.edges.filter(pl.col("hop") == 1)["traced"].sum()
    for n in res.nodes.iter_rows(named=True):
        # An account never passes on more traced money than reached it (the origin: plus what it started with).
        received, passed = (n["traced_in"], n["traced_out"]) if forward else (n["traced_out"], n["traced_in"])
        own = start_amount if n["role"] == "origin" else 0.0
        assert passed + n["dropped"] <= (received + own) * (1 + TOL) + TOL
    assert res.summary["held" if forward else "unexplained"] >= 0
    for p in res.paths:
        assert 0 < p.amount <= p.end_traced * (1 + TOL)
        gaps = [(b - a).total_seconds() for a, b in zip(p.timestamps, p.timestamps[1:], strict=False)]
        assert all(0 < g <= window for g in gaps), gaps
        hops = res.edges.filter(pl.col("txn_id").is_in(list(p.txn_ids)))
        assert hops.height == len(p.txn_ids)
        payers = dict(zip(hops["txn_id"], hops["src_account"], strict=True))
        payees = dict(zip(hops["txn_id"], hops["dst_account"], strict=True))
        assert [payers[t] for t in p.txn_ids] == list(p.accounts[:-1])
        assert [payees[t] for t in p.txn_ids] == list(p.accounts[1:])


@PROPERTY
@given(index=ledgers(origin_pays_only=True), window=st.sampled_from(["2h", "10h", "30h"]),
       max_hops=st.integers(1, 6))
def test_proportional_backward_from_a_sink_returns_its_amount_to_the_origin(
    index: TraceIndex, window: str, max_hops: int
) -> None:
    """Proportional shares are fixed by the ledger, so both directions split money identically on every path."""
    limits = {"method": "proportional", "hop_window": window, "max_hops": max_hops, **UNLIMITED}
    fwd = trace(index, "a0", **limits)
    for e in fwd.edges.iter_rows(named=True):
        back = trace(index, start_txn=e["txn_id"], direction="backward", **limits)
        returned = back.edges.filter(pl.col("src_account") == "a0")["traced"].sum()
        assert returned == pytest.approx(e["traced"], rel=1e-6, abs=1e-6)


@PROPERTY
@given(index=ledgers(origin_pays_only=True), window=st.sampled_from(["2h", "10h", "30h"]),
       max_hops=st.integers(1, 6))
def test_fifo_backward_over_the_traced_flow_returns_the_sink_amount_to_the_origin(
    index: TraceIndex, window: str, max_hops: int
) -> None:
    """FIFO depends on what is traced, so the backward trace runs over the forward trace's own flows."""
    limits = {"method": "fifo", "hop_window": window, **UNLIMITED}
    fwd = trace(index, "a0", max_hops=max_hops, **limits)
    flow = TraceIndex.build(fwd.edges.select("txn_id", "ts", "src_account", "dst_account", amount="traced"))
    for e in fwd.edges.iter_rows(named=True):
        back = trace(flow, start_txn=e["txn_id"], direction="backward", max_hops=64, **limits)
        returned = back.edges.filter(pl.col("src_account") == "a0")["traced"].sum()
        assert returned == pytest.approx(e["traced"], rel=1e-6, abs=1e-6)
        assert "a0" in set(back.nodes["account_id"])


# --- the simulator's injected chains --------------------------------------------------------------------

#: The brief's small set with 3 % crime, so that each chain typology has ten attempts (at the default 0.2 %
#: this seed injects no cycle at all).
SIM = SimConfig(persons=3000, enterprises=300, days=60, transactions=150_000, seed=7, illicit_ratio=0.03)
CHAINS = ("cycle", "scatter_gather", "stack", "random")


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[TraceIndex, pl.DataFrame, pl.DataFrame]:
    sim = simulate(SIM)
    work = tmp_path_factory.mktemp("trace-sim")
    write_source(sim, work / "source")
    ingest(open_reader(work / "source"), Dataset(work / "ds", create=True))
    index = TraceIndex.build(Dataset(work / "ds"))
    attempts = pl.from_arrow(sim.attempts).filter(pl.col("typology").is_in(CHAINS))
    return index, pl.from_arrow(sim.transactions), attempts


def _downstream(rows: pl.DataFrame, max_hops: int = 6, window: dt.timedelta = dt.timedelta(hours=72)) -> set[str]:
    """Accounts the attempt's own rows reach from its first payer by time-respecting hops within the limits."""
    rows = rows.sort("ts", "txn_id")
    first = rows["src_account"][0]
    arrivals: list[tuple[str, dt.datetime | None, int]] = [(first, None, 0)]  # (account, when, hops)
    for r in rows.iter_rows(named=True):
        for account, when, hops in list(arrivals):
            if (account == r["src_account"] and hops < max_hops
                    and (when is None or when < r["ts"] <= when + window)):
                arrivals.append((r["dst_account"], r["ts"], hops + 1))
    return {a for a, _, _ in arrivals}


def _reach(index: TraceIndex, tx: pl.DataFrame, attempts: pl.DataFrame, **limits: object) -> tuple[float, float]:
    """(share of attempts whose every reachable account the trace finds, share of those accounts found)."""
    complete, found, total = 0, 0, 0
    for a in attempts.iter_rows(named=True):
        rows = tx.filter(pl.col("attempt_id") == a["attempt_id"])
        want = _downstream(rows)
        res = trace(index, rows.sort("ts")["src_account"][0], start_time=a["first_ts"], end_time=a["last_ts"],
                    **limits)
        got = want & set(res.nodes["account_id"])
        complete += got == want
        found += len(got)
        total += len(want)
    return complete / attempts.height, found / total


def test_the_dataset_index_holds_every_simulated_transaction_in_cny(simulated: tuple) -> None:
    index, tx, _ = simulated
    direct = TraceIndex.build(tx)
    assert index.institution == direct.institution == SIM.bank
    assert index.txn_id.equals(direct.txn_id)
    assert (index.amount == direct.amount).all()
    assert index.n_edges == tx.filter(pl.col("src_account") != pl.col("dst_account")).height


@pytest.mark.parametrize("method", ["fifo", "proportional"])
def test_forward_traces_reach_the_injected_chains(simulated: tuple, method: str) -> None:
    """Measured on this seed: FIFO 36/40 attempts complete (98.3 % of accounts), proportional 35/40 (97.7 %).

    Misses are attribution, not search: under FIFO an unrelated payment leaves first with the traced
    money; under proportional a busy account's share falls under ¥100 or out of its top 10. With those
    two limits off, proportional (which gives every later payment in the window a share) finds all of them.
    """
    index, tx, attempts = simulated
    assert attempts.group_by("typology").len()["len"].to_list() == [10] * 4
    complete, accounts = _reach(index, tx, attempts, method=method)
    print(f"{method}: {complete:.1%} of attempts complete, {accounts:.1%} of their accounts reached")
    assert complete >= 0.8 and accounts >= 0.95, (complete, accounts)
    if method == "proportional":
        complete, accounts = _reach(index, tx, attempts, method=method, min_amount=0, top_k=None)
        print(f"{method}, no amount or fan-out limit: {complete:.1%} complete, {accounts:.1%} reached")
        assert complete >= 0.95, complete
