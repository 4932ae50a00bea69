"""Lifetime history features against a plain re-count over the past, causality to the bit, order independence."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tianluo.detect.history_features import COLUMNS, HistoryFeatures


def _random_transactions(n: int, accounts: int, seed: int) -> pl.DataFrame:
    """Few accounts and coarse timestamps, so pairs repeat and many rows share an instant."""
    rng = np.random.default_rng(seed)
    src = rng.integers(0, accounts, n)
    dst = rng.integers(0, accounts, n)
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    ts = [t0 + dt.timedelta(hours=int(h)) for h in np.sort(rng.integers(0, 24 * 40, n))]
    return pl.DataFrame(
        {
            "txn_id": [f"t{i:05d}" for i in range(n)],
            "ts": ts,
            "src_account": [f"A{a}" for a in src],
            "dst_account": [f"A{a}" for a in dst],
            "amount_cny": rng.uniform(10, 1000, n),
        }
    )


def _oracle(tx: pl.DataFrame) -> dict[str, list[float | None]]:
    """Each row's columns by re-reading the rows before it (in (ts, txn_id) order) one by one."""
    rows = tx.sort(["ts", "txn_id"]).to_dicts()
    out: dict[str, list[float | None]] = {c: [] for c in COLUMNS}
    for i, r in enumerate(rows):
        past, upto = rows[:i], rows[: i + 1]
        u, v, t = r["src_account"], r["dst_account"], r["ts"]
        days = lambda a, b: (a - b).total_seconds() / 86_400  # noqa: E731

        def new_times(acc: str, role: str, upto: list[dict] = upto) -> list[dt.datetime]:
            seen: set[tuple[str, str]] = set()
            times = []
            for q in upto:
                key = (q["src_account"], q["dst_account"])
                if key not in seen:
                    seen.add(key)
                    if q[role] == acc:
                        times.append(q["ts"])
            return times

        out["hist_pair_prior_txns"].append(sum(q["src_account"] == u and q["dst_account"] == v for q in past))
        out["hist_pair_back_prior_txns"].append(
            0 if u == v else sum(q["src_account"] == v and q["dst_account"] == u for q in past)
        )
        sent = [q for q in upto if q["src_account"] == u]
        got = [q for q in upto if q["dst_account"] == v]
        out["hist_out_txns_src"].append(len(sent))
        out["hist_out_counterparties_src"].append(len({q["dst_account"] for q in sent}))
        out["hist_out_new_share_src"].append(len({q["dst_account"] for q in sent}) / len(sent))
        out["hist_in_txns_dst"].append(len(got))
        out["hist_in_counterparties_dst"].append(len({q["src_account"] for q in got}))
        out["hist_in_new_share_dst"].append(len({q["src_account"] for q in got}) / len(got))
        out["hist_in_counterparties_src"].append(len({q["src_account"] for q in past if q["dst_account"] == u}))
        out["hist_out_counterparties_dst"].append(len({q["dst_account"] for q in past if q["src_account"] == v}))
        first = out["hist_pair_prior_txns"][-1] == 0
        for role, acc, name in (("dst_account", v, "in"), ("src_account", u, "out")):
            side = "dst" if role == "dst_account" else "src"
            times = new_times(acc, role)  # this account's first contacts up to and including row i
            before = times[:-1] if first else times
            gap = days(t, before[-1]) if before else None
            out[f"hist_new_{name}_gap_days_{side}"].append(gap)
            if first and len(before) >= 2:
                prev = days(before[-1], before[-2])
                out[f"hist_new_{name}_gap_change_{side}"].append(abs(gap - prev) / (gap + 1.0))
            else:
                out[f"hist_new_{name}_gap_change_{side}"].append(None)
        for side, acc in (("src", u), ("dst", v)):
            seen = [q["ts"] for q in upto if acc in (q["src_account"], q["dst_account"])]
            out[f"hist_age_days_{side}"].append(days(t, min(seen)))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_history_features_match_a_recount_of_the_past(seed: int) -> None:
    tx = _random_transactions(300, 12, seed)
    got = HistoryFeatures().transform(tx.sort(["ts", "txn_id"]))
    want = _oracle(tx)
    for c in COLUMNS:
        expected = pl.Series(c, want[c], dtype=pl.Float64)
        assert_frame_equal(got.select(c), expected.to_frame(), check_exact=False, rel_tol=1e-9), c


def test_history_features_are_causal_and_order_free() -> None:
    tx = _random_transactions(2_000, 40, 7).sort(["ts", "txn_id"])
    fx = HistoryFeatures()
    full = fx.transform(tx)
    assert full.columns == list(COLUMNS) == fx.feature_names
    # Appending later transactions changes nothing about earlier ones, to the bit.
    assert_frame_equal(full.head(1_500), fx.transform(tx.head(1_500)))
    # Rows come back aligned with the input whatever its order.
    perm = np.random.default_rng(0).permutation(tx.height)
    assert_frame_equal(fx.transform(tx[perm]), full[perm])


def test_a_slow_fan_in_of_strangers_stands_out() -> None:
    """A hub paid by a new stranger every 52 days (AMLSim's slow fan-in) vs a customer paying its landlord monthly."""
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    rows = []
    for k in range(6):
        rows.append((f"h{k}", t0 + dt.timedelta(days=52 * k), f"stranger{k}", "HUB"))
        rows.append((f"r{k}", t0 + dt.timedelta(days=30 * k, hours=1), "TENANT", "LANDLORD"))
    tx = pl.DataFrame(
        {
            "txn_id": [r[0] for r in rows],
            "ts": [r[1] for r in rows],
            "src_account": [r[2] for r in rows],
            "dst_account": [r[3] for r in rows],
            "amount_cny": [500.0] * len(rows),
        }
    )
    f = HistoryFeatures().transform(tx).with_columns(txn_id=tx["txn_id"])
    hub = f.filter(pl.col("txn_id") == "h5").row(0, named=True)
    rent = f.filter(pl.col("txn_id") == "r5").row(0, named=True)
    assert hub["hist_in_new_share_dst"] == 1.0 and hub["hist_in_counterparties_dst"] == 6
    assert hub["hist_new_in_gap_days_dst"] == 52 and hub["hist_new_in_gap_change_dst"] == 0.0
    assert rent["hist_pair_prior_txns"] == 5 and rent["hist_in_new_share_dst"] == pytest.approx(1 / 6)
    assert rent["hist_new_in_gap_change_dst"] is None  # not a first contact
