"""Graph features: exact values on hand-built graphs, causality, batch = online, a brute-force oracle, Snap ML."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tianluo.detect.graph_features import GraphFeatures, OnlineGraphState, parse_window, window_label

T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
US = 1_000_000


def frame(rows: list[tuple[str, str, float, float]]) -> pl.DataFrame:
    """Canonical-enough transactions from (src, dst, seconds after T0, amount) tuples."""
    return pl.DataFrame(
        {
            "ts": [T0 + dt.timedelta(seconds=s) for _, _, s, _ in rows],
            "src_account": [r[0] for r in rows],
            "dst_account": [r[1] for r in rows],
            "amount_cny": [float(r[3]) for r in rows],
        },
        schema={
            "ts": pl.Datetime("us", "UTC"),
            "src_account": pl.String,
            "dst_account": pl.String,
            "amount_cny": pl.Float64,
        },
    )


def row(df: pl.DataFrame, i: int) -> dict[str, float]:
    return df.row(i, named=True)


# --- brute-force oracle: the documented definitions, written as directly as possible ------------


def _simple_paths(adj: dict[int, list[tuple[int, int]]], v: int, u: int, max_hops: int, temporal: bool) -> int:
    """Distinct account sequences v → … → u (simple) with at most max_hops edges, from (neighbour, edge) lists."""
    found = 0

    def walk(x: int, seen: set[int], hops: int, last: int) -> None:
        nonlocal found
        for y in sorted({y for y, _ in adj.get(x, [])}):
            edges = [e for z, e in adj[x] if z == y and (not temporal or e > last)]
            if not edges or y in seen:
                continue
            if y == u:
                found += 1
            elif hops + 1 < max_hops:
                walk(y, seen | {y}, hops + 1, min(edges))

    walk(v, {v}, 0, -1)
    return found


def oracle(src, dst, ts, amt, windows, sg, tc, lc, tc_len, lc_len, night=lambda t: False):
    """Every feature of every edge by brute force (windows in seconds, ts in seconds)."""
    n = len(src)
    out = []
    # first contact: no earlier payment along the same pair within the longest window
    new = [not any(src[k] == src[j] and dst[k] == dst[j] and ts[k] > ts[j] - max(windows) for k in range(j))
           for j in range(n)]
    # money back: the payee paid the payer within the longest window before
    back = [src[j] != dst[j] and any(src[k] == dst[j] and dst[k] == src[j] and ts[k] > ts[j] - max(windows)
                                      for k in range(j)) for j in range(n)]
    for i in range(n):
        t, u, v = ts[i], src[i], dst[i]
        f: list[float] = []
        ratios: list[float] = []

        def div(a: float, b: float) -> float:
            return a / b if b else np.nan

        for w in windows:
            win = [j for j in range(i + 1) if ts[j] > t - w]
            outs = {x: [j for j in win if src[j] == x] for x in (u, v)}
            ins = {x: [j for j in win if dst[j] == x] for x in (u, v)}
            payees = {x: {dst[j] for j in outs[x]} for x in (u, v)}
            payers = {x: {src[j] for j in ins[x]} for x in (u, v)}
            ratios += [div(sum(amt[j] for j in outs[x]), sum(amt[j] for j in ins[x])) for x in (u, v)]  # through
            ratios += [div(len(payers[x]), len(payees[x])) for x in (u, v)]  # fan ratio
            ratios += [div(len(outs[u]), len(payees[u])), div(len(ins[v]), len(payers[v]))]  # repeats
            for acct, side in (("src", "out"), ("src", "in"), ("dst", "in"), ("dst", "out")):
                x = u if acct == "src" else v
                es = [j for j in win if (src[j] if side == "out" else dst[j]) == x]
                other = {dst[j] if side == "out" else src[j] for j in es}
                a = np.array([amt[j] for j in es])
                if len(es):
                    f += [len(other), len(es), a.sum(), a.mean(), a.std(), a.min(), a.max()]
                else:
                    f += [0, 0, 0.0, np.nan, np.nan, np.nan, np.nan]
            out_u = [j for j in win if src[j] == u]
            in_v = [j for j in win if dst[j] == v]
            f += [np.mean([amt[j] % 100 == 0 for j in out_u]), np.mean([amt[j] % 100 == 0 for j in in_v])]
            f.append(sum(1 for j in win if src[j] == u and dst[j] == v))
            f.append(sum(1 for j in win if src[j] == v and dst[j] == u) if u != v else 0)
            f += [np.mean([new[j] for j in out_u]), np.mean([new[j] for j in in_v])]
            f += [np.mean([night(ts[j]) for j in out_u]), np.mean([night(ts[j]) for j in in_v])]
            f += [np.mean([back[j] for j in out_u]), np.mean([back[j] for j in in_v])]
            came = [amt[j] for j in win if src[j] == v and dst[j] == u and j < i] if u != v else []
            f.append(amt[i] / sum(came) if came else np.nan)
            # the payer's largest receipt in the window (ties: the latest), and what it paid out since
            got = [j for j in win if dst[j] == u]
            top = max(got, key=lambda j: (amt[j], j)) if got else None
            f.append(div(sum(amt[j] for j in range(top + 1, i + 1) if src[j] == u), amt[top])
                     if top is not None else np.nan)
        prev_u = [ts[j] for j in range(i) if u in (src[j], dst[j])]
        prev_v = [ts[j] for j in range(i) if v in (src[j], dst[j])]
        first_u = min([*prev_u, t])
        first_v = min([*prev_v, t])
        f += [t - prev_u[-1] if prev_u else np.nan, t - prev_v[-1] if prev_v else np.nan, t - first_u, t - first_v]
        mean_out = f[(len(windows) - 1) * 40 + 3]
        mean_in = f[(len(windows) - 1) * 40 + 17]
        f += [amt[i] / mean_out, amt[i] / mean_in]
        last_in = [j for j in range(i) if dst[j] == u]
        f += [t - ts[last_in[-1]], amt[i] / amt[last_in[-1]]] if last_in else [np.nan, np.nan]
        # paid out since that last receipt (this payment included), over it
        f.append(sum(amt[j] for j in range(last_in[-1] + 1, i + 1) if src[j] == u) / amt[last_in[-1]]
                 if last_in else np.nan)
        # scatter-gather: (s, d) pairs joined by >= 2 intermediaries, edge i among their edges
        e_sg = [j for j in range(i + 1) if ts[j] > t - sg and src[j] != dst[j]]
        pairs = {(src[j], dst[j]) for j in e_sg}
        count = widest = 0
        if u != v:
            nodes = {x for p in pairs for x in p}
            for s_, d_ in itertools.product(nodes, nodes):
                if s_ == d_:
                    continue
                mids = {m for m in nodes if m not in (s_, d_) and (s_, m) in pairs and (m, d_) in pairs}
                if len(mids) >= 2 and ((s_ == u and v in mids) or (d_ == v and u in mids)):
                    count += 1
                    widest = max(widest, len(mids))
        f += [count, widest]
        for w, length, temporal in ((tc, tc_len, True), (lc, lc_len, False)):
            adj: dict[int, list[tuple[int, int]]] = {}
            for j in range(i):
                if ts[j] > t - w and src[j] != dst[j]:
                    adj.setdefault(src[j], []).append((dst[j], j))
            f.append(0 if u == v else _simple_paths(adj, v, u, length - 1, temporal))
        out.append(f + ratios)
    return np.array(out, np.float64)


def assert_same(a: np.ndarray, b: np.ndarray, names: list[str]) -> None:
    close = np.isclose(a, b, rtol=1e-9, atol=1e-6, equal_nan=True)
    if not close.all():
        i, j = np.argwhere(~close)[0]
        raise AssertionError(f"row {i} column {names[j]}: {a[i, j]} != {b[i, j]}")


# --- hand-built graphs with exact expectations --------------------------------------------------


def test_fan_in_of_five_counts_distinct_payers_and_amounts():
    rows = [(f"p{k}", "hub", 60 * k, 100 * (k + 1)) for k in range(5)] + [("p0", "hub", 400, 50)]
    out = GraphFeatures(windows=("1d",)).transform(frame(rows))
    last = row(out, 5)
    assert [row(out, k)["fan_in_dst_1d"] for k in range(6)] == [1, 2, 3, 4, 5, 5]
    assert last["deg_in_dst_1d"] == 6
    assert last["amount_sum_in_dst_1d"] == 1550
    assert last["amount_min_in_dst_1d"] == 50
    assert last["amount_max_in_dst_1d"] == 500
    assert last["amount_mean_in_dst_1d"] == pytest.approx(1550 / 6)
    assert last["amount_std_in_dst_1d"] == pytest.approx(np.std([100, 200, 300, 400, 500, 50]))
    assert last["fan_out_src_1d"] == 1 and last["deg_out_src_1d"] == 2  # p0 paid the hub twice
    assert last["pair_deg_1d"] == 2 and out["pair_deg_1d"].to_list()[:5] == [1] * 5  # new pairs read 1
    assert last["secs_since_prev_src"] == 400 and last["secs_since_first_dst"] == 400
    assert last["round_share_in_dst_1d"] == pytest.approx(5 / 6)  # 50 is not a multiple of 100
    assert last["new_share_in_dst_1d"] == pytest.approx(5 / 6)  # p0's second payment is not a first contact
    assert np.isnan(row(out, 0)["secs_since_prev_src"])
    assert np.isnan(last["amount_mean_in_src_1d"]) and last["deg_in_src_1d"] == 0  # nobody paid p0


def test_window_is_half_open_at_the_boundary():
    # a → b at 0 s, 86,400 s (exactly one day later) and 86,401 s
    out = GraphFeatures(windows=("1d",)).transform(
        frame([("a", "b", 0, 1), ("a", "b", 86_400, 2), ("a", "c", 86_401, 3)])
    )
    assert row(out, 1)["deg_out_src_1d"] == 1  # the edge at t - 1d has left (t - w, t]
    assert row(out, 1)["amount_min_out_src_1d"] == 2
    assert row(out, 2)["deg_out_src_1d"] == 2 and row(out, 2)["fan_out_src_1d"] == 2
    inside = GraphFeatures(windows=(86_401,)).transform(frame([("a", "b", 0, 1), ("a", "b", 86_400, 2)]))
    assert row(inside, 1)["deg_out_src_86401s"] == 2


def test_first_contacts_and_night_payments_as_shares():
    day = 86_400
    # 2024-01-01 00:00 UTC is 08:00 in China; + 15 h = 23:00 (night), + 23 h = 07:00 (day).
    t0 = 1_704_067_200
    rows = [("p1", "card", t0 + 15 * 3600, 100), ("p2", "card", t0 + 16 * 3600, 100),
            ("p1", "card", t0 + 23 * 3600, 100), ("p1", "card", t0 + 9 * day, 100)]
    df = pl.DataFrame({"ts": [dt.datetime.fromtimestamp(r[2], dt.UTC) for r in rows],
                       "src_account": [r[0] for r in rows], "dst_account": [r[1] for r in rows],
                       "amount_cny": [float(r[3]) for r in rows]})
    out = GraphFeatures(windows=("1d", "7d")).transform(df)
    assert out["new_share_in_dst_7d"].to_list() == pytest.approx([1, 1, 2 / 3, 1])  # p1 came back after > 7 d
    assert out["night_share_in_dst_1d"].to_list() == pytest.approx([1, 1, 2 / 3, 0])
    assert out["new_share_out_src_1d"].to_list() == pytest.approx([1, 1, 1 / 2, 1])
    assert out["pair_back_deg_7d"].to_list() == [0, 0, 0, 0]
    back = GraphFeatures(windows=("1d",)).transform(df.vstack(df.head(1).with_columns(
        src_account=pl.lit("card"), dst_account=pl.lit("p1"), ts=pl.col("ts") + dt.timedelta(hours=20))))
    assert back["pair_back_deg_1d"].to_list() == [0, 0, 0, 0, 2]  # p1 paid card twice in the day before
    assert back["back_share_out_src_1d"].to_list() == [0, 0, 0, 0, 1]
    assert back["amount_to_back_1d"].to_list()[4] == 100 / 200 and back["amount_to_back_1d"].is_nan().sum() == 4
    assert back["back_share_in_dst_1d"].to_list() == [0, 0, 0, 0, 1]  # the only inflow of p1, paid back
    # Another zone and night: 23:00 China is 15:00 UTC, 07:00 China 23:00 UTC.
    utc = GraphFeatures(windows=("1d",), utc_offset_hours=0, night_hours=(21, 5)).transform(df)
    assert utc["night_share_out_src_1d"].to_list() == pytest.approx([0, 0, 1 / 2, 1])
    with pytest.raises(ValueError, match="night_hours"):
        GraphFeatures(night_hours=(6, 6)).transform(df)


def test_ratios_describe_a_pass_through_account():
    # Three payers pay the mule 100 each; it forwards 290 to one upstream account; a fourth pays it again.
    out = GraphFeatures(windows=("1d",)).transform(frame(
        [("p1", "mule", 0, 100), ("p2", "mule", 60, 100), ("p3", "mule", 120, 100), ("mule", "up", 600, 290),
         ("p1", "mule", 700, 100)]))
    fwd, last = row(out, 3), row(out, 4)
    assert fwd["through_src_1d"] == pytest.approx(290 / 300)  # paid on almost all it received
    assert fwd["fan_ratio_src_1d"] == 3.0 and fwd["repeat_out_src_1d"] == 1.0
    assert fwd["through_dst_1d"] == 0.0 and np.isnan(fwd["fan_ratio_dst_1d"])  # "up" received, paid no one
    assert row(out, 0)["through_dst_1d"] == 0.0 and np.isnan(row(out, 0)["through_src_1d"])
    assert last["repeat_in_dst_1d"] == pytest.approx(4 / 3) and last["through_dst_1d"] == pytest.approx(290 / 400)
    assert fwd["paid_since_last_in_src"] == pytest.approx(290 / 100)  # three receipts of 100, forwarded at once
    drain = GraphFeatures(windows=("1d",)).transform(frame(
        [("big", "hub", 0, 1000), ("hub", "x", 60, 400), ("hub", "y", 120, 590), ("z", "hub", 180, 10),
         ("hub", "x", 240, 5)]))
    assert drain["paid_since_last_in_src"].to_list()[1:3] == pytest.approx([0.4, 0.99])  # 快进快出: 99 % gone
    assert drain["paid_since_last_in_src"].to_list()[4] == pytest.approx(0.5)  # a new receipt starts again
    assert np.isnan(drain["paid_since_last_in_src"].to_list()[0])  # "big" never received anything
    # ... whereas the largest receipt in the window keeps counting through the small one: 995 of 1000 paid on
    drained = drain["drained_max_in_src_1d"].to_list()
    assert drained[1:3] == pytest.approx([0.4, 0.99]) and drained[4] == pytest.approx(0.995)
    assert np.isnan(drained[0]) and np.isnan(drained[3])  # "big" and "z" never received anything
    late = GraphFeatures(windows=("1d",)).transform(frame(
        [("big", "hub", 0, 1000), ("hub", "x", 60, 400), ("z", "hub", 90_000, 10), ("hub", "x", 90_060, 5)]))
    assert late["drained_max_in_src_1d"].to_list()[3] == pytest.approx(0.5)  # the 1000 left the window


def test_three_cycle_is_closed_by_its_last_edge_only():
    rows = [("a", "b", 0, 1000), ("b", "c", 10, 990), ("c", "a", 20, 980)]
    out = GraphFeatures(windows=("1d",)).transform(frame(rows))
    assert out["temporal_cycles_7d"].to_list() == [0, 0, 1]
    assert out["lc_cycles_7d"].to_list() == [0, 0, 1]
    # The same accounts out of time order: still a cycle, no longer a temporal one.
    shuffled = [("b", "c", 0, 1), ("a", "b", 10, 1), ("c", "a", 20, 1)]
    out = GraphFeatures(windows=("1d",)).transform(frame(shuffled))
    assert out["temporal_cycles_7d"].to_list() == [0, 0, 0]
    assert out["lc_cycles_7d"].to_list() == [0, 0, 1]


def test_cycle_window_and_length_limits():
    ring = [(f"n{k}", f"n{(k + 1) % 5}", 3600 * k, 1) for k in range(5)]  # 5 accounts, 4 h span
    assert GraphFeatures(temporal_cycles="1d").transform(frame(ring))["temporal_cycles_1d"][-1] == 1
    assert GraphFeatures(temporal_cycles="4h").transform(frame(ring))["temporal_cycles_4h"][-1] == 0
    assert GraphFeatures(temporal_cycle_max_len=4).transform(frame(ring))["temporal_cycles_7d"][-1] == 0
    assert GraphFeatures(lc_cycle_max_len=5).transform(frame(ring))["lc_cycles_7d"][-1] == 1
    assert GraphFeatures(lc_cycle_max_len=4).transform(frame(ring))["lc_cycles_7d"][-1] == 0


def test_parallel_edges_do_not_multiply_cycles_but_paths_do():
    rows = [("a", "b", 0, 1), ("a", "b", 5, 1), ("a", "c", 6, 1), ("b", "d", 7, 1), ("c", "d", 8, 1), ("d", "a", 9, 1)]
    out = GraphFeatures().transform(frame(rows))
    assert out["temporal_cycles_7d"][-1] == 2  # a→b→d→a and a→c→d→a, whichever a→b edge is used
    assert out["lc_cycles_7d"][-1] == 2


def test_scatter_gather_with_three_intermediaries():
    rows = [("src", f"m{k}", 10 * k, 5000) for k in range(3)] + [
        (f"m{k}", "sink", 100 + 10 * k, 4900) for k in range(3)
    ]
    out = GraphFeatures().transform(frame(rows))
    assert out["scatter_gather_7d"].to_list() == [0, 0, 0, 0, 1, 1]
    assert out["scatter_gather_width_7d"].to_list() == [0, 0, 0, 0, 2, 3]
    # A repeated scatter edge takes part in the (src, sink) instance, now three wide.
    more = GraphFeatures().transform(frame([*rows, ("src", "m1", 200, 10)]))
    assert row(more, 6)["scatter_gather_7d"] == 1 and row(more, 6)["scatter_gather_width_7d"] == 3


def test_same_timestamp_ties_follow_row_order():
    rows = [("a", "b", 0, 1), ("b", "a", 0, 1)]
    out = GraphFeatures().transform(frame(rows))
    assert out["temporal_cycles_7d"].to_list() == [0, 1]  # the earlier row counts as past
    assert out["deg_out_src_7d"].to_list() == [1, 1]


def test_unsorted_input_keeps_row_order_and_matches_sorted():
    rows = [("a", "b", 30, 1), ("b", "c", 10, 2), ("c", "a", 20, 3), ("a", "c", 5, 4)]
    df = frame(rows)
    gf = GraphFeatures()
    got = gf.transform(df)
    order = np.argsort([r[2] for r in rows], kind="stable")
    want = gf.transform(df[order])
    assert_same(got.to_numpy()[order], want.to_numpy(), gf.feature_names)


def test_windows_parse_and_label():
    assert parse_window("7d") == 7 * 86400 and parse_window(dt.timedelta(hours=12)) == 43200
    assert window_label(86400) == "1d" and window_label(43200) == "12h" and window_label(90) == "90s"
    with pytest.raises(ValueError, match="unit"):
        parse_window("7 days")
    with pytest.raises(ValueError, match="lack column"):
        GraphFeatures().transform(pl.DataFrame({"ts": [T0]}))


# --- properties ---------------------------------------------------------------------------------

edges = st.lists(
    st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 40), st.sampled_from([100.0, 250.0, 1000.0, 3.5])),
    min_size=1,
    max_size=45,
)
SMALL = GraphFeatures(
    windows=(7, 20), scatter_gather=15, temporal_cycles=25, lc_cycles=12, temporal_cycle_max_len=5, lc_cycle_max_len=4
)


def _arrays(rows):
    rows = sorted(rows, key=lambda r: r[2])
    src = np.array([r[0] for r in rows], np.int64)
    dst = np.array([r[1] for r in rows], np.int64)
    ts = np.array([r[2] for r in rows], np.int64)
    amt = np.array([r[3] for r in rows], np.float64)
    return src, dst, ts, amt


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edges)
def test_batch_equals_one_at_a_time(rows):
    src, dst, ts, amt = _arrays(rows)
    batch = SMALL.compute(src, dst, ts * US, amt, 7)
    state = OnlineGraphState(SMALL, capacity=4)  # tiny buffers: compaction and list growth happen often
    online = np.vstack(
        [state.update(f"acct{s}", f"acct{d}", int(t) * US, a) for s, d, t, a in zip(src, dst, ts, amt, strict=False)]
    )
    np.testing.assert_array_equal(batch, online)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edges)
def test_matches_brute_force_definitions(rows):
    src, dst, ts, amt = _arrays(rows)
    got = SMALL.compute(src, dst, ts * US, amt, 7)
    want = oracle(list(src), list(dst), list(ts), list(amt), (7, 20), 15, 25, 12, 5, 4)
    assert_same(got, want, SMALL.feature_names)


@settings(max_examples=25, deadline=None)
@given(edges, edges)
def test_appending_future_transactions_never_changes_the_past(rows, later):
    src, dst, ts, amt = _arrays(rows)
    tail = [(s, d, int(ts[-1]) + t, a) for s, d, t, a in later]
    s2, d2, t2, a2 = _arrays(list(zip(src, dst, ts, amt, strict=False)) + tail)
    before = SMALL.compute(src, dst, ts * US, amt, 7)
    after = SMALL.compute(s2, d2, t2 * US, a2, 7)
    np.testing.assert_array_equal(after[: len(src)], before)


# --- IBM Snap ML's GraphFeaturePreprocessor -----------------------------------------------------

BINS = list(range(2, 40))
EPOCH = 1_700_000_000  # Snap ML treats a timestamp of 0 as "no time"; real data never has it


def _snap(rows, fan_w, pattern_w, lc_len, stream=True, stats_w=10**7):
    """Snap ML features of (src, dst, seconds, amount) rows, one `transform` per row (its causal mode)."""
    snapml = pytest.importorskip("snapml")
    gfp = snapml.GraphFeaturePreprocessor()
    params = gfp.get_params().copy()
    params.update({
        "num_threads": 1, "time_window": stats_w, "vertex_stats": True, "vertex_stats_cols": [4],
        "vertex_stats_feats": [0, 1, 3, 4, 5, 6, 8],
        "fan": True, "fan_tw": fan_w, "fan_bins": BINS, "degree": True, "degree_tw": fan_w, "degree_bins": BINS,
        # Snap ML's pattern windows are closed, [t - tw, t]; ours are (t - w, t]: the same for whole seconds.
        "scatter-gather": True, "scatter-gather_tw": pattern_w - 1, "scatter-gather_bins": BINS,
        "temp-cycle": True, "temp-cycle_tw": pattern_w - 1, "temp-cycle_bins": BINS,
        "lc-cycle": True, "lc-cycle_tw": pattern_w - 1, "lc-cycle_len": lc_len, "lc-cycle_bins": BINS,
    })
    gfp.set_params(params)
    x = np.array([[k, s, d, EPOCH + t, a] for k, (s, d, t, a) in enumerate(rows)], np.float64)
    out = np.vstack([gfp.transform(x[k: k + 1]) for k in range(len(x))]) if stream else gfp.transform(x)
    return out[:, 5:]


def _value(hist):
    """A Snap ML size histogram as (number of patterns, largest size)."""
    sizes = np.array(BINS)
    return hist.sum(1), np.array([sizes[np.nonzero(h)[0][-1]] if h.any() else 0 for h in hist])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.integers(0, 6), st.integers(1, 6), st.sampled_from([100.0, 250.0, 3.5])),
             min_size=2, max_size=40),
    st.integers(2, 30), st.integers(2, 40), st.integers(2, 6), st.randoms(use_true_random=False),
)
def test_agrees_with_snapml_where_definitions_coincide(pairs, fan_w, pattern_w, lc_len, rnd):
    """Fan, degree, vertex statistics, scatter-gather and both cycle kinds equal Snap ML's causal mode.

    Conditions, each a documented difference: no self-loops (Snap ML's pattern features
    drop them, its vertex statistics keep them, Tianluo keeps them everywhere); distinct
    timestamps (Snap ML's cycle search skips edges with the closing edge's timestamp,
    Tianluo takes same-timestamp rows that come earlier); fan and degree compared from
    size 2 (Snap ML records no pattern of size 1); vertex statistics with nothing evicted
    (Snap ML forgets old edges one call late).
    """
    ts = sorted(rnd.sample(range(100), len(pairs)))
    rows = [(s, (s + d) % 7, t, a) for (s, d, a), t in zip(pairs, ts, strict=True)]  # d ≥ 1: no self-loops
    src, dst, t_arr, amt = (np.array(c) for c in zip(*rows, strict=True))
    gf = GraphFeatures(windows=(fan_w, 10**7), scatter_gather=pattern_w, temporal_cycles=pattern_w,
                       lc_cycles=pattern_w, temporal_cycle_max_len=12, lc_cycle_max_len=lc_len)
    ours = dict(zip(gf.feature_names, gf.compute(src, dst, (EPOCH + t_arr) * US, amt, 7).T, strict=True))
    theirs = _snap(rows, fan_w, pattern_w, lc_len)
    nb = len(BINS)
    fw, pw, long_w = window_label(fan_w), window_label(pattern_w), window_label(10**7)
    for k, name in enumerate([f"fan_in_dst_{fw}", f"fan_out_src_{fw}", f"deg_in_dst_{fw}", f"deg_out_src_{fw}"]):
        count, size = _value(theirs[:, k * nb: (k + 1) * nb])  # a one-hot histogram of the size
        np.testing.assert_array_equal(count, ours[name] >= 2, err_msg=name)
        np.testing.assert_array_equal(size, np.where(ours[name] >= 2, ours[name], 0), err_msg=name)
    sg_count, sg_width = _value(theirs[:, 4 * nb: 5 * nb])
    np.testing.assert_array_equal(sg_count, ours[f"scatter_gather_{pw}"])
    np.testing.assert_array_equal(sg_width, ours[f"scatter_gather_width_{pw}"])
    np.testing.assert_array_equal(theirs[:, 5 * nb: 6 * nb].sum(1), ours[f"temporal_cycles_{pw}"])
    np.testing.assert_array_equal(theirs[:, 6 * nb: 7 * nb].sum(1), ours[f"lc_cycles_{pw}"])
    stats = theirs[:, 7 * nb:]  # per (src out, src in, dst out, dst in): fan, deg, mean, sum, min, max, var
    for b, (acct, side) in enumerate((("src", "out"), ("src", "in"), ("dst", "out"), ("dst", "in"))):
        def col(stat, acct=acct, side=side):
            return np.nan_to_num(ours[f"{stat}_{side}_{acct}_{long_w}"])

        want = np.column_stack([col("fan"), col("deg"), col("amount_mean"), col("amount_sum"), col("amount_min"),
                                col("amount_max"), col("amount_std") ** 2])
        np.testing.assert_allclose(stats[:, 7 * b: 7 * (b + 1)], want, rtol=1e-9, atol=1e-6, err_msg=f"{acct} {side}")


def test_snapml_differences_are_as_documented():
    """Where Snap ML and Tianluo part ways, on purpose; docs/bench_graph_features.md explains each."""
    nb = len(BINS)
    tc = slice(5 * nb, 6 * nb)  # Snap ML's temporal-cycle histogram
    cycle = [(0, 1, 10, 1.0), (1, 2, 20, 1.0), (2, 0, 30, 1.0)]
    # 1. Batch mode credits a pattern to all its edges, earlier ones included: it sees the future.
    assert _snap(cycle, 100, 100, 3, stream=False)[:, tc].sum(1).tolist() == [1, 1, 1]
    assert _snap(cycle, 100, 100, 3)[:, tc].sum(1).tolist() == [0, 0, 1]
    # 2. Batch-mode vertex statistics cover the whole batch: the first payment already counts the second.
    fan_out = [(0, 1, 10, 1.0), (0, 2, 20, 1.0)]
    deg_out_src = 7 * nb + 1
    assert _snap(fan_out, 100, 100, 3, stream=False)[:, deg_out_src].tolist() == [2, 2]
    assert _snap(fan_out, 100, 100, 3)[:, deg_out_src].tolist() == [1, 2]
    # ... and ignore `time_window` altogether: payments 1,000 s apart, a window of 100 s, and every row of the
    # batch counts all five (one at a time, the window applies, one call late). This, not ties or
    # patterns, is what Snap ML's batch features carry on AMLSim (docs/graph-features.md, "The AMLSim gap").
    spread = [(0, k + 1, t, 1.0) for k, t in enumerate((0, 10, 500, 1000, 1010))]
    assert _snap(spread, 100, 101, 3, stream=False, stats_w=100)[:, deg_out_src].tolist() == [5] * 5
    assert _snap(spread, 100, 101, 3, stats_w=100)[:, deg_out_src].tolist() == [1, 2, 3, 2, 2]
    # 3. Edges with the closing edge's timestamp never complete a Snap ML cycle; earlier rows do in Tianluo.
    tie = [(0, 1, 10, 1.0), (1, 0, 10, 1.0)]
    assert _snap(tie, 100, 100, 3)[:, tc].sum(1).tolist() == [0, 0]
    src, dst, t, a = (np.array(c) for c in zip(*tie, strict=True))
    gf = GraphFeatures()
    got = gf.compute(src, dst, (EPOCH + t) * US, a, 2)[:, gf.feature_names.index("temporal_cycles_7d")]
    assert got.tolist() == [0, 1]


def test_pruning_budget_never_changes_cycle_counts():
    """The backward pruning search may be cut short at any budget; counts must not move.

    A graph with hubs, where a small budget stops the search early: an earlier kernel then
    used cut-short "latest departure" bounds as if exact and dropped real temporal cycles.
    """
    rng = np.random.default_rng(7)
    n = 2500
    hubs = np.array([0, 1, 2])
    src = np.where(rng.random(n) < 0.2, rng.choice(hubs, n), rng.integers(0, 150, n))
    dst = np.where(rng.random(n) < 0.2, rng.choice(hubs, n), rng.integers(0, 150, n))
    ts = np.sort(rng.integers(0, 7 * 86_400, n))
    rows = [(f"a{s}", f"a{d}", float(t), 100.0) for s, d, t in zip(src, dst, ts, strict=True) if s != d]
    df = frame(rows)
    cols = ["temporal_cycles_7d", "lc_cycles_7d"]

    def counts(budget: int) -> np.ndarray:
        gf = GraphFeatures(windows=("1d",), temporal_cycle_max_len=6, lc_cycle_max_len=4, search_budget=budget)
        return gf.transform(df).select(cols).to_numpy()

    full = counts(10**9)
    assert full[:, 0].sum() > 0 and full[:, 1].sum() > 0
    for budget in (0, 3, 50):
        assert_same(full, counts(budget), cols)
