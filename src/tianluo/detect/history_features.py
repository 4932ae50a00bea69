"""Lifetime counterparty history: how new a payment's relationship is, against everything each account did before.

The windowed graph features (1, 7, 30 days) see bursts; they are blind to schemes that
run slowly. AMLSim's fan-ins on data nobody here wrote pay one hub from a *new* payer
every 50-90 days; a mule recruited for one transfer pays a stranger once and never again.
What gives both away is lifetime novelty: a hub whose receipts nearly all come from
payers it has never seen before, a payer whose every payment goes to someone new, new
contacts arriving at a steady rhythm. Ordinary customers pay the same landlord, shop and
family again and again, so over months their share of first contacts falls towards zero.

Every column is causal, like the other extractors: a row sees the rows before it in
(ts, txn_id) order and itself, never a later one, so appending later transactions cannot
change an earlier row's features (tested), and an online scorer keeping per-account counts
and the set of pairs seen would compute the same numbers. Vectorised (Polars window
expressions and sorted searches), no Python loop over rows.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from tianluo.detect.base import FeatureExtractor

_DAY = 86_400.0

#: Output columns, in order (see `HistoryFeatures`).
COLUMNS: tuple[str, ...] = (
    "hist_pair_prior_txns",
    "hist_pair_back_prior_txns",
    "hist_out_txns_src",
    "hist_out_counterparties_src",
    "hist_out_new_share_src",
    "hist_in_txns_dst",
    "hist_in_counterparties_dst",
    "hist_in_new_share_dst",
    "hist_in_counterparties_src",
    "hist_out_counterparties_dst",
    "hist_new_in_gap_days_dst",
    "hist_new_in_gap_change_dst",
    "hist_new_out_gap_days_src",
    "hist_new_out_gap_change_src",
    "hist_age_days_src",
    "hist_age_days_dst",
)


class HistoryFeatures(FeatureExtractor):
    """Per transaction u → v, the lifetime relationship history of the pair, the payer and the payee.

    - `hist_pair_prior_txns`, `hist_pair_back_prior_txns`: earlier payments u → v and v → u
      (0 and 0 = first contact between strangers);
    - `hist_out_txns_src`, `hist_out_counterparties_src`: u's payments so far and the distinct
      payees among them; `hist_out_new_share_src` = their ratio, the share of u's payments that
      went to someone new (1.0 for a payer that never repeats a payee);
    - `hist_in_txns_dst`, `hist_in_counterparties_dst`, `hist_in_new_share_dst`: the same for v's
      receipts (a collection hub fed by ever-new payers keeps a share near 1);
    - `hist_in_counterparties_src`, `hist_out_counterparties_dst`: the other role of each side
      (distinct payers of u, distinct payees of v before this row), which tells a pass-through
      account from an end customer;
    - `hist_new_in_gap_days_dst`: days since v's previous first-contact receipt (null if none);
      `hist_new_in_gap_change_dst`: on a first-contact receipt, how far that gap moved from the
      gap before it, relative (0 = clockwork regularity; null when not a first contact or
      fewer than three first contacts); `hist_new_out_gap_*_src` the same for u's payments;
    - `hist_age_days_src`, `hist_age_days_dst`: days since the account first appeared in the data.
    """

    name = "history"
    version = "1"

    @property
    def feature_names(self) -> list[str]:
        return list(COLUMNS)

    def transform(self, transactions: pl.DataFrame) -> pl.DataFrame:
        """Feature columns aligned with `transactions` (which need not be sorted)."""
        n = transactions.height
        if n == 0:
            return pl.DataFrame({c: pl.Series([], dtype=pl.Float64) for c in COLUMNS})
        order = transactions.select(pl.arg_sort_by(["ts", "txn_id"])).to_series().to_numpy()
        srt = transactions[order]
        ids = pl.concat([srt["src_account"], srt["dst_account"]]).cast(pl.String)
        codes = ids.cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
        src, dst = codes[:n], codes[n:]
        ts = srt["ts"].dt.epoch("us").to_numpy().astype(np.float64) / 1e6
        cols = _history(src, dst, ts)
        inverse = np.empty(n, dtype=np.int64)
        inverse[order] = np.arange(n)
        # NaN marks "no such earlier event": null, as the other extractors say unknown.
        return pl.DataFrame({c: pl.Series(c, cols[c][inverse], dtype=pl.Float64, nan_to_null=True) for c in COLUMNS})


def _history(src: np.ndarray, dst: np.ndarray, ts: np.ndarray) -> dict[str, np.ndarray]:
    """The columns for rows already in time order (account codes, seconds)."""
    n = len(src)
    d = pl.DataFrame({"i": np.arange(n), "u": src, "v": dst, "t": ts})
    d = d.with_columns(
        pair_prior=pl.int_range(pl.len()).over("u", "v"),
        lo=pl.min_horizontal("u", "v"),
        hi=pl.max_horizontal("u", "v"),
        fwd=(pl.col("u") <= pl.col("v")).cast(pl.Int64),
    )
    # Earlier payments in the other direction: within the unordered pair, count the earlier rows
    # of the opposite orientation (a self-transfer has no opposite direction: 0).
    d = d.with_columns(
        before_fwd=(pl.col("fwd").cum_sum() - pl.col("fwd")).over("lo", "hi"),
        before_all=pl.int_range(pl.len()).over("lo", "hi"),
    ).with_columns(
        back_prior=pl.when(pl.col("u") == pl.col("v"))
        .then(0)
        .when(pl.col("fwd") == 1)
        .then(pl.col("before_all") - pl.col("before_fwd"))
        .otherwise(pl.col("before_fwd")),
        first=(pl.col("pair_prior") == 0).cast(pl.Int64),
    )
    d = d.with_columns(
        out_txns=pl.int_range(1, pl.len() + 1).over("u"),
        out_cp=pl.col("first").cum_sum().over("u"),
        in_txns=pl.int_range(1, pl.len() + 1).over("v"),
        in_cp=pl.col("first").cum_sum().over("v"),
    )
    first = d["first"].to_numpy().astype(bool)
    i = np.arange(n)
    # Cross-role counts: distinct payers of u / payees of v among the rows strictly before this one.
    in_cp_src = _count_before(dst[first], i[first], src, i)
    out_cp_dst = _count_before(src[first], i[first], dst, i)
    new_in_gap, new_in_change = _new_contact_rhythm(dst, ts, first)
    new_out_gap, new_out_change = _new_contact_rhythm(src, ts, first)
    # First appearance of each account in either role.
    both = np.concatenate([src, dst])
    first_seen = np.full(int(both.max()) + 1, np.inf)
    np.minimum.at(first_seen, both, np.concatenate([ts, ts]))
    out_txns = d["out_txns"].to_numpy().astype(np.float64)
    in_txns = d["in_txns"].to_numpy().astype(np.float64)
    out_cp = d["out_cp"].to_numpy().astype(np.float64)
    in_cp = d["in_cp"].to_numpy().astype(np.float64)
    return {
        "hist_pair_prior_txns": d["pair_prior"].to_numpy().astype(np.float64),
        "hist_pair_back_prior_txns": d["back_prior"].to_numpy().astype(np.float64),
        "hist_out_txns_src": out_txns,
        "hist_out_counterparties_src": out_cp,
        "hist_out_new_share_src": out_cp / out_txns,
        "hist_in_txns_dst": in_txns,
        "hist_in_counterparties_dst": in_cp,
        "hist_in_new_share_dst": in_cp / in_txns,
        "hist_in_counterparties_src": in_cp_src,
        "hist_out_counterparties_dst": out_cp_dst,
        "hist_new_in_gap_days_dst": new_in_gap,
        "hist_new_in_gap_change_dst": new_in_change,
        "hist_new_out_gap_days_src": new_out_gap,
        "hist_new_out_gap_change_src": new_out_change,
        "hist_age_days_src": (ts - first_seen[src]) / _DAY,
        "hist_age_days_dst": (ts - first_seen[dst]) / _DAY,
    }


def _count_before(event_acc: np.ndarray, event_pos: np.ndarray, acc: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """For each (acc, pos), the number of events of that account at positions < pos (two sorted searches)."""
    scale = np.int64(len(pos) + 1)
    keys = np.sort(event_acc.astype(np.int64) * scale + event_pos)
    q = acc.astype(np.int64) * scale
    return (np.searchsorted(keys, q + pos, side="left") - np.searchsorted(keys, q, side="left")).astype(np.float64)


def _new_contact_rhythm(acc: np.ndarray, ts: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Days since the account's previous first contact (in this role), and, on a first contact, the gap's change.

    The change is |gap − previous gap| / (gap + 1 day): 0 when new counterparties arrive like
    clockwork, near 1 or above when irregular. The day in the denominator keeps same-day
    bursts (gap 0) from dividing by zero and from looking perfectly regular.
    """
    n = len(acc)
    i = np.arange(n)
    ev_acc, ev_pos, ev_ts = acc[first], i[first], ts[first]
    # Events are already in time order; the previous event of the same account before each row.
    order = np.lexsort((ev_pos, ev_acc))
    ev_acc, ev_pos, ev_ts = ev_acc[order], ev_pos[order], ev_ts[order]
    scale = np.int64(n + 1)
    keys = ev_acc.astype(np.int64) * scale + ev_pos
    q = acc.astype(np.int64) * scale
    start = np.searchsorted(keys, q, side="left")
    before = np.searchsorted(keys, q + i, side="left")  # events of this account strictly before row i
    has_prev = before > start
    gap = np.full(n, np.nan)
    gap[has_prev] = (ts[has_prev] - ev_ts[before[has_prev] - 1]) / _DAY
    change = np.full(n, np.nan)
    # On a first-contact row: previous gap = between the two events before this one.
    ok = first & (before - start >= 2)
    prev_gap = (ev_ts[before[ok] - 1] - ev_ts[before[ok] - 2]) / _DAY
    change[ok] = np.abs(gap[ok] - prev_gap) / (gap[ok] + 1.0)
    return gap, change
