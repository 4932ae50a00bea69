"""Model features: per-transaction raw features, rule hits as indicator columns, assembly, and words for each feature.

Every feature here is causal: the value for a transaction depends only on that
transaction and on the ones before it in (ts, txn_id) order, so the batch
history computed for training equals what an online scorer sees when the
transaction arrives, and appending later rows never changes earlier values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import polars as pl
import pyarrow as pa

from tianluo.detect.base import FeatureExtractor
from tianluo.schema import CHANNELS

#: Large-value cash report line (PBOC Order [2016] No. 3, Art. 5, CRCD 0501): ¥50,000.
LARGE_CASH_CNY = 50_000.0
#: Large-value report line for a natural person's domestic transfer (CRCD 0503): ¥500,000.
LARGE_PERSONAL_TRANSFER_CNY = 500_000.0
#: "Just under" a reporting line means within this many percent below it (¥40,000-49,999.99 for cash).
NEAR_THRESHOLD_PCT = 20.0
#: China Standard Time is UTC+8 all year (no daylight saving).
CHINA_UTC_OFFSET_S = 8 * 3600
#: Local hours that count as night: 22:00 to 05:59, when few genuine payments are made.
NIGHT_START_HOUR, NIGHT_END_HOUR = 22.0, 6.0
#: History windows of the account features: suffix → length in microseconds.
WINDOWS_US: dict[str, int] = {"24h": 24 * 3600 * 1_000_000, "7d": 7 * 24 * 3600 * 1_000_000}
#: Account types (`accounts.type`) that get an indicator column; `internal` marks the bank's own ledger accounts.
ACCOUNT_TYPES = ("personal", "corporate", "internal", "payment")
_US = 1_000_000
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class TransactionFeatures(FeatureExtractor):
    """Raw features of one transaction and the causal history of its payer and payee.

    `accounts` (the canonical accounts table) is optional: with it the account age and
    type columns are filled, without it they are null / 0, so the column set never
    changes and a model trained with them can still score where they are unknown.
    """

    name = "transaction"
    version = "1"

    def __init__(self, accounts: pl.DataFrame | None = None) -> None:
        self.accounts = accounts

    def transform(self, transactions: pl.DataFrame) -> pl.DataFrame:
        """Feature columns aligned with `transactions` (which need not be sorted)."""
        tx = transactions
        n = tx.height
        # Work in (ts, txn_id) order, the order transactions happen in; map back at the end.
        order = tx.select(pl.arg_sort_by(["ts", "txn_id"])).to_series().to_numpy()
        srt = tx[order]
        ts = srt["ts"].dt.epoch("us").to_numpy().astype(np.int64)
        local_s = ts // _US + CHINA_UTC_OFFSET_S
        hour = (local_s % 86_400) / 3600.0
        amount_cny = srt["amount_cny"].to_numpy().astype(np.float64)
        amount = srt["amount"].to_numpy().astype(np.float64)
        channel = srt["channel"]
        is_cash = (channel == "cash").fill_null(False).to_numpy()

        cols: dict[str, np.ndarray] = {
            "amount_cny_log10": np.log10(np.maximum(amount_cny, 0.01)),
            **{f"amount_round_{k}": _is_multiple(amount, k) for k in (100, 1_000, 10_000)},
            "cash_threshold_gap_pct": _gap_under(amount_cny, LARGE_CASH_CNY, is_cash),
            "transfer_threshold_gap_pct": _gap_under(amount_cny, LARGE_PERSONAL_TRANSFER_CNY, ~is_cash),
            "hour_china": hour,
            "night": ((hour >= NIGHT_START_HOUR) | (hour < NIGHT_END_HOUR)).astype(np.float64),
            # 1970-01-01 was a Thursday (weekday 3 with Monday = 0).
            "weekday_china": ((local_s // 86_400 + 3) % 7).astype(np.float64),
            **{f"channel_{c}": (channel == c).fill_null(False).to_numpy().astype(np.float64) for c in CHANNELS},
            "direction_in": _flag(srt["direction"] == "in"),
            "direction_out": _flag(srt["direction"] == "out"),
            "cross_border": _flag(srt["cross_border"]),
            "foreign_currency": _flag(srt["currency"] != "CNY"),
            "self_transfer": _flag(srt["self_transfer"]),
        }
        cols.update(_history(srt["src_account"], srt["dst_account"], ts, amount_cny))
        cols["src_out_in_ratio_24h"] = np.divide(
            cols["src_out_sum_24h"],
            cols["src_in_sum_24h"],
            out=np.full(n, np.nan),
            where=cols["src_in_sum_24h"] > 0,
        )
        cols.update(self._account_attributes(srt, ts))

        inverse = np.empty(n, dtype=np.int64)
        inverse[order] = np.arange(n)
        return pl.DataFrame({k: v[inverse] for k, v in cols.items()}).fill_nan(None)

    def _account_attributes(self, srt: pl.DataFrame, ts: np.ndarray) -> dict[str, np.ndarray]:
        """Each side's account age in days (from local midnight of `opened`) and account type, from `accounts`.

        Age is NaN where unknown; the type columns are all 0 for an account the table
        does not describe (typically another bank's).
        """
        known = self.accounts if self.accounts is not None else pl.DataFrame(schema={"account_id": pl.String})
        lookup = known.select(
            "account_id",
            opened_day=pl.col("opened").cast(pl.Int64) if "opened" in known.columns else pl.lit(None, pl.Int64),
            type=pl.col("type") if "type" in known.columns else pl.lit(None, pl.String),
        ).unique("account_id", keep="last")
        out = {}
        for side in ("src", "dst"):
            attrs = srt.select(account_id=pl.col(f"{side}_account")).join(
                lookup, on="account_id", how="left", maintain_order="left"
            )
            opened_us = attrs["opened_day"].to_numpy().astype(np.float64) * 86_400 * _US - CHINA_UTC_OFFSET_S * _US
            out[f"{side}_account_age_days"] = (ts - opened_us) / (86_400 * _US)
            for kind in ACCOUNT_TYPES:
                out[f"{side}_account_{kind}"] = _flag((attrs["type"] == kind).fill_null(False))
        return out


def _flag(s: pl.Series) -> np.ndarray:
    return s.cast(pl.Float64).to_numpy()


def _is_multiple(amount: np.ndarray, k: int) -> np.ndarray:
    """1.0 where the amount (in its own currency: round-ness is the payer's choice) is a multiple of k."""
    return (np.abs(amount - np.round(amount / k) * k) < 0.005).astype(np.float64)


def _gap_under(amount: np.ndarray, line: float, applies: np.ndarray) -> np.ndarray:
    """How far under a reporting line the amount is, in % of the line, when it is just under (within
    `NEAR_THRESHOLD_PCT`); NaN otherwise, so the column says "kept under the line" and nothing else.
    """
    gap = (line - amount) / line * 100.0
    return np.where(applies & (amount < line) & (gap <= NEAR_THRESHOLD_PCT), gap, np.nan)


def _history(src: pl.Series, dst: pl.Series, ts: np.ndarray, amount: np.ndarray) -> dict[str, np.ndarray]:
    """Counts and sums of each side's past flows in every window, and time since each side's previous transaction.

    Rows are in (ts, txn_id) order, so a row's position `seq` orders it against every
    other row. An account's events are keyed `account * n + seq`, which sorts them by
    account then time; a window query is then two binary searches, and a window sum is
    a difference of per-account prefix sums (per account, so appending rows for other
    accounts cannot change a single bit of them). Windows include the transaction
    itself and everything before it, never anything after.
    """
    n = len(ts)
    codes = pl.concat([src, dst]).cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    src_c, dst_c = codes[:n], codes[n:]
    seq = np.arange(n, dtype=np.int64)
    streams = {"out": _Stream(src_c, seq, amount, n), "in": _Stream(dst_c, seq, amount, n)}
    # First row strictly inside each window (ts' > ts - width).
    lo_seq = {w: np.searchsorted(ts, ts - width, side="right").astype(np.int64) for w, width in WINDOWS_US.items()}
    # The payer's own inflow matters for pass-through (in, then straight out), a same-day pattern.
    queries = (
        ("src", src_c, "out", ("24h", "7d")),
        ("dst", dst_c, "in", ("24h", "7d")),
        ("src", src_c, "in", ("24h",)),
    )
    out: dict[str, np.ndarray] = {}
    for side, acc, flow, windows in queries:
        for w in windows:
            count, total = streams[flow].window(acc, lo_seq[w], seq)
            out[f"{side}_{flow}_count_{w}"] = count
            out[f"{side}_{flow}_sum_{w}"] = total
    # Any-role activity: one event per (account, transaction), a self-transfer counted once.
    any_keys = np.unique(np.concatenate([src_c * n + seq, dst_c * n + seq]))
    for side, acc in (("src", src_c), ("dst", dst_c)):
        pos = np.searchsorted(any_keys, acc * n + seq, side="left")
        prev = np.maximum(pos - 1, 0)
        has_prev = (pos > 0) & (any_keys[prev] // n == acc)
        prev_ts = ts[any_keys[prev] % n]
        out[f"{side}_secs_since_prev"] = np.where(has_prev, (ts - prev_ts) / _US, np.nan)
    return out


class _Stream:
    """One flow direction's events (account, seq, amount), sorted by account then time, with per-account prefix sums."""

    def __init__(self, acc: np.ndarray, seq: np.ndarray, amount: np.ndarray, n: int) -> None:
        self.n = n
        key = acc * n + seq
        order = np.argsort(key, kind="stable")
        self.key = key[order]
        self.acc = acc[order]
        self.prefix = (
            pl.DataFrame({"a": self.acc, "x": amount[order]})
            .select(pl.col("x").cum_sum().over("a"))
            .to_series()
            .to_numpy()
        )

    def window(self, acc: np.ndarray, lo_seq: np.ndarray, hi_seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Count and sum of `acc`'s events with lo_seq ≤ seq ≤ hi_seq."""
        hi = np.searchsorted(self.key, acc * self.n + hi_seq, side="right")
        lo = np.searchsorted(self.key, acc * self.n + lo_seq, side="left")
        count = hi - lo
        last = np.maximum(hi - 1, 0)
        before = np.maximum(lo - 1, 0)
        head = np.where((lo > 0) & (self.acc[before] == acc), self.prefix[before], 0.0)
        total = np.where(count > 0, self.prefix[last] - head, 0.0)
        return count.astype(np.float64), np.round(total, 2)  # to the fen: prefix differences leave float dust


# --- rule hits as features --------------------------------------------------------------------------------------


def rule_indicators(
    alerts: pa.Table | pl.DataFrame,
    transactions: pl.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    causal: bool = True,
) -> pl.DataFrame:
    """`rule_<detector>` (and `miner_<detector>`) = 1.0 for each transaction that is evidence of such an alert.

    With `causal` (the default) a transaction is marked only when the alert could already
    be raised at its time (its ts is the alert's `ts_end`): a structuring alert marks the
    deposit that completed the pattern, not the earlier ones, which were scored before
    anyone could know. That is what an online scorer sees, so training uses the same.
    `columns` fixes the output columns (a detector with no alert here still gets a column
    of zeros), so training and scoring frames line up.
    """
    al = alerts if isinstance(alerts, pl.DataFrame) else pl.DataFrame(pl.from_arrow(alerts))
    slug = pl.col("detector").str.to_lowercase().str.replace_all(r"[^a-z0-9]+", "_").str.strip_chars("_")
    al = al.filter(pl.col("kind").is_in(["rule", "miner"])).select(
        column=pl.concat_str([pl.col("kind"), pl.lit("_"), slug]),
        txn_id=pl.col("txn_ids"),
        ts_end=pl.col("ts_end"),
    )
    hits = al.explode("txn_id").join(transactions.select("txn_id", "ts"), on="txn_id", how="inner")
    if causal:
        hits = hits.filter(pl.col("ts") >= pl.col("ts_end"))
    names = list(columns) if columns is not None else sorted(al["column"].unique().to_list())
    ids = transactions["txn_id"]
    return pl.DataFrame(
        {c: ids.is_in(hits.filter(pl.col("column") == c)["txn_id"].unique().implode()).cast(pl.Float64) for c in names},
        schema={c: pl.Float64 for c in names},
    )


class RuleFeatures(FeatureExtractor):
    """Alerts of rules and miners, already raised on the same transactions, as indicator columns for a model.

    `fit` learns which detector columns exist (`columns_`), so a detector that is silent
    on the data being scored still yields its column of zeros.
    """

    name = "rule_hits"
    version = "1"

    def __init__(self, alerts: pa.Table | pl.DataFrame, *, causal: bool = True) -> None:
        self.alerts = alerts
        self.causal = causal

    def fit(self, transactions: pl.DataFrame) -> RuleFeatures:
        self.columns_ = rule_indicators(self.alerts, transactions.head(0), causal=self.causal).columns
        return self

    def transform(self, transactions: pl.DataFrame) -> pl.DataFrame:
        columns = getattr(self, "columns_", None)
        return rule_indicators(self.alerts, transactions, columns=columns, causal=self.causal)


def assemble_features(transactions: pl.DataFrame, extractors: Sequence[FeatureExtractor]) -> pl.DataFrame:
    """All extractors' columns side by side, one row per transaction, in the input's order.

    Extractors are independent (graph features, raw features, rule hits), so the model
    sees their union; a clash of column names or a misaligned output is a bug in an
    extractor and raises with its name.
    """
    if not extractors:
        raise ValueError("no feature extractors given; pass at least TransactionFeatures()")
    frames = []
    seen: dict[str, str] = {}
    for ex in extractors:
        out = ex.transform(transactions)
        if out.height != transactions.height:
            raise ValueError(
                f"feature extractor {ex.name!r} returned {out.height} rows for {transactions.height} transactions"
            )
        for c in out.columns:
            if c in seen:
                raise ValueError(f"feature column {c!r} comes from both {seen[c]!r} and {ex.name!r}; rename one")
            seen[c] = ex.name
        frames.append(out)
    return pl.concat(frames, how="horizontal")


# --- features in words ------------------------------------------------------------------------------------------


def _money(x: float) -> str:
    return f"¥{x:,.0f}" if abs(x - round(x)) < 0.005 else f"¥{x:,.2f}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} seconds"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 2 * 86_400:
        return f"{seconds / 3600:.1f} hours"
    if seconds < 2 * 365 * 86_400:
        return f"{seconds / 86_400:,.0f} days"
    return f"{seconds / (365.25 * 86_400):.0f} years"


def _clock(hour: float) -> str:
    minutes = int(hour * 60 + 1e-6) % (24 * 60)  # truncate like a clock; the epsilon absorbs float error
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _count(n: float, word: str) -> str:
    return f"{n:,.0f} {word}" + ("" if n == 1 else "s")


def _window(label: str) -> str:
    """ "24h" → "24 h", "7d" → "7 days", "1d" → "1 day"."""
    n, unit = int(label[:-1]), label[-1]
    if unit in "smh":
        return f"{n} {unit}"
    return _count(n, {"d": "day", "w": "week"}[unit])


_PARTY = {"src": "payer", "dst": "payee"}
_VERB = {"out": "sent", "in": "received"}
_GRAPH_STAT = {
    "amount_sum": "total",
    "amount_mean": "average payment",
    "amount_std": "spread (standard deviation) of payments",
    "amount_min": "smallest payment",
    "amount_max": "largest payment",
}
_SHARE_WORDS = {
    ("new", "out"): "went to payees it had not paid before (first contacts)",
    ("new", "in"): "came from payers that had not paid it before (first contacts)",
    ("night", "out"): "were made at night (local time)",
    ("night", "in"): "were made at night (local time)",
    ("back", "out"): "went back to accounts that had paid it",
    ("back", "in"): "came back from accounts it had paid",
}
_FLAGS: dict[str, tuple[str, str]] = {
    "night": ("made at night (22:00-06:00 China time)", "made in the daytime (06:00-22:00 China time)"),
    "cross_border": ("cross-border payment", "domestic payment"),
    "foreign_currency": ("paid in a foreign currency", "paid in CNY"),
    "self_transfer": ("payer and payee are the same account", "payer and payee are different accounts"),
    "direction_in": ("money coming in from outside the bank", "not an inflow from outside the bank"),
    "direction_out": ("money leaving the bank", "not an outflow to another bank"),
}


def _threshold_gap(m: re.Match[str], v: float | None, row: Mapping[str, float | None]) -> str:
    line, what = (LARGE_CASH_CNY, "cash") if m.group(1) == "cash" else (LARGE_PERSONAL_TRANSFER_CNY, "transfer")
    if v is None:
        return f"amount is not just under the {_money(line)} {what} reporting threshold"
    log_amount = row.get("amount_cny_log10")
    amount = 10.0**log_amount if _known(log_amount) else line * (1 - v / 100)
    return f"amount {_money(amount)} is {v:.1f}% under the {_money(line)} {what} threshold"


def _hour(v: float) -> str:
    night = v >= NIGHT_START_HOUR or v < NIGHT_END_HOUR
    return f"{'night-time' if night else 'daytime'} ({_clock(v)} China time)"


def _history_words(m: re.Match[str], v: float | None) -> str:
    side, flow, what, window = m.groups()
    amount = _count(v or 0.0, "payment") if what == "count" else _money(v or 0.0)
    return f"{_PARTY[side]} {_VERB[flow]} {amount} in the {_window(window)} up to this transaction"


def _span(window: str, ahead: bool = False) -> str:
    """The stretch of time a window column covers: up to the transaction (causal) or from it on (settled)."""
    return f"in the {_window(window)} {'from this transaction on' if ahead else 'up to this transaction'}"


def _graph_words(m: re.Match[str], v: float | None, ahead: bool = False) -> str:
    stat, flow, side, window = m.groups()
    who, span = _PARTY[side], _span(window, ahead)
    if stat == "fan":
        direction = "paid" if flow == "out" else "received from"
        return f"{who} {direction} {_count(v or 0.0, 'distinct account')} {span}"
    if stat == "deg":
        return f"{who} {_VERB[flow]} {_count(v or 0.0, 'payment')} {span}"
    if v is None:
        return f"{who} {_VERB[flow]} nothing {span}"
    return f"{_GRAPH_STAT[stat]} the {who} {_VERB[flow]} {span}: {_money(v)}"


_Template = Callable[[re.Match[str], float | None, Mapping[str, float | None]], str]

#: Settled mode's look-ahead columns (`ahead_*`, graph_features): the same quantities over the horizon from the
#: transaction on, so an investigator reads what happened after it, never a column name.
_AHEAD_TEMPLATES: list[tuple[re.Pattern[str], _Template]] = [
    (
        re.compile(r"ahead_(fan|deg|amount_(?:sum|mean|std|min|max))_(out|in)_(src|dst)_(\d+[smhdw])"),
        lambda m, v, r: _graph_words(m, v, ahead=True),
    ),
    (
        re.compile(r"ahead_(round|night)_share_(out|in)_(src|dst)_(\d+[smhdw])"),
        lambda m, v, r: (
            f"{(v or 0.0):.0%} of what the {_PARTY[m.group(3)]} {_VERB[m.group(2)]} {_span(m.group(4), True)} "
            + ("were round amounts" if m.group(1) == "round" else _SHARE_WORDS["night", m.group(2)])
        ),
    ),
    (
        re.compile(r"ahead_through_(src|dst)_(\d+[smhdw])"),
        lambda m, v, r: (
            f"{_PARTY[m.group(1)]} paid out {v:.0%} of what it received {_span(m.group(2), True)}"
            if v is not None
            else f"{_PARTY[m.group(1)]} received nothing {_span(m.group(2), True)}"
        ),
    ),
    (
        re.compile(r"ahead_fan_ratio_(src|dst)_(\d+[smhdw])"),
        lambda m, v, r: (
            f"{_PARTY[m.group(1)]} was paid by {v:.1f}x as many accounts as it paid {_span(m.group(2), True)}"
            if v is not None
            else f"{_PARTY[m.group(1)]} paid no one {_span(m.group(2), True)}"
        ),
    ),
    (
        re.compile(r"ahead_repeat_(out|in)_(src|dst)_(\d+[smhdw])"),
        lambda m, v, r: (
            f"{_PARTY[m.group(2)]} {'paid each payee' if m.group(1) == 'out' else 'was paid by each payer'} "
            f"{v or 0.0:.1f} times on average {_span(m.group(3), True)}"
        ),
    ),
    (
        re.compile(r"ahead_pair_back_deg_(\d+[smhdw])"),
        lambda m, v, r: (
            f"payee paid this payer back {_count(v, 'time')} in the {_window(m.group(1))} after it"
            if v
            else f"payee did not pay this payer back in the {_window(m.group(1))} after it"
        ),
    ),
    (
        re.compile(r"ahead_amount_to_back_(\d+[smhdw])"),
        lambda m, v, r: (
            f"amount is {v:.1%} of what the payee paid back to this payer in the {_window(m.group(1))} after it"
            if v is not None
            else f"nothing came back from the payee to this payer in the {_window(m.group(1))} after it"
        ),
    ),
    (
        re.compile(r"ahead_pair_deg_(\d+[smhdw])"),
        lambda m, v, r: (
            f"no other payment from this payer to this payee {_span(m.group(1), True)}"
            if (v or 0.0) <= 1
            else f"payer paid this payee {_count(v or 0.0, 'time')} {_span(m.group(1), True)}"
        ),
    ),
    (
        re.compile(r"ahead_amount_to_mean_(out|in)_(src|dst)_(\d+[smhdw])"),
        lambda m, v, r: (
            f"amount is {v:.1f}x the {_PARTY[m.group(2)]}'s average "
            f"{'outgoing' if m.group(1) == 'out' else 'incoming'} payment {_span(m.group(3), True)}"
            if v is not None
            else f"no {'outgoing' if m.group(1) == 'out' else 'incoming'} payments of the {_PARTY[m.group(2)]} "
            f"{_span(m.group(3), True)}"
        ),
    ),
    (
        re.compile(r"ahead_paid_on_dst_(\d+[smhdw])"),
        lambda m, v, r: (
            f"{_span(m.group(1), True)} the payee paid out {v:.0%} of this amount"
            if v is not None
            else "amount is zero"
        ),
    ),
    (
        re.compile(r"ahead_scatter_gather_width_(\d+[smhdw])"),
        lambda m, v, r: (
            f"widest scatter-gather pattern it is part of {_span(m.group(1), True)} "
            f"runs through {_count(v or 0.0, 'intermediary account')}"
        ),
    ),
    (
        re.compile(r"ahead_scatter_gather_(\d+[smhdw])"),
        lambda m, v, r: f"part of {_count(v or 0.0, 'scatter-gather pattern')} {_span(m.group(1), True)}",
    ),
    (
        re.compile(r"ahead_temporal_cycles_(\d+[smhdw])"),
        lambda m, v, r: (
            f"opens {_count(v or 0.0, 'payment cycle')} that {'brings' if (v or 0.0) == 1 else 'bring'} the money "
            f"back to the payer within {_window(m.group(1))}"
        ),
    ),
    (
        re.compile(r"ahead_lc_cycles_(\d+[smhdw])"),
        lambda m, v, r: (
            f"opens {_count(v or 0.0, 'payment cycle')} back to the payer, in any order of time, "
            f"within {_window(m.group(1))}"
        ),
    ),
]

#: (pattern, template): the first pattern that matches a feature name renders it. A template
#: gets the match, the value (None when unknown) and the whole row (to quote a sibling value).
#: Words for `history_features.HistoryFeatures` (lifetime relationship history).
_HISTORY_TEMPLATES: list[tuple[re.Pattern[str], _Template]] = [
    (
        re.compile(r"hist_pair_(back_)?prior_txns"),
        lambda m, v, r: (
            ("payee" if m.group(1) else "payer")
            + (" had never paid the " + ("payer" if m.group(1) else "payee") + " before" if not v
               else f" had paid the {'payer' if m.group(1) else 'payee'} {_count(v, 'time')} before")
        ),
    ),
    (
        re.compile(r"hist_(out|in)_txns_(src|dst)"),
        lambda m, v, r: f"{_PARTY[m.group(2)]} {_VERB[m.group(1)]} {_count(v or 0.0, 'payment')} so far",
    ),
    (
        re.compile(r"hist_(out|in)_counterparties_(src|dst)"),
        lambda m, v, r: (
            f"{_PARTY[m.group(2)]} has {_VERB[m.group(1)]} money "
            + ("to " if m.group(1) == "out" else "from ")
            + _count(v or 0.0, "different " + ("payee" if m.group(1) == "out" else "payer"))
            + " so far"
        ),
    ),
    (
        re.compile(r"hist_(out|in)_new_share_(src|dst)"),
        lambda m, v, r: (
            f"{(v or 0.0):.0%} of the {_PARTY[m.group(2)]}'s "
            + ("payments " if m.group(1) == "out" else "receipts ")
            + ("went to a payee it had never paid before" if m.group(1) == "out"
               else "came from a payer that had never paid it before")
        ),
    ),
    (
        re.compile(r"hist_new_(out|in)_gap_days_(src|dst)"),
        lambda m, v, r: (
            f"{_duration(v * 86_400)} since the {_PARTY[m.group(2)]} last "
            + ("paid someone new" if m.group(1) == "out" else "received from someone new")
            if v is not None
            else f"the {_PARTY[m.group(2)]} had no earlier new "
            + ("payee" if m.group(1) == "out" else "payer")
        ),
    ),
    (
        re.compile(r"hist_new_(out|in)_gap_change_(src|dst)"),
        lambda m, v, r: (
            f"new {'payees' if m.group(1) == 'out' else 'payers'} of the {_PARTY[m.group(2)]} arrive at a "
            + ("steady rhythm" if v < 0.2 else "changing rhythm")
            + f" (interval changed by {v:.0%})"
            if v is not None
            else f"no rhythm of new {'payees' if m.group(1) == 'out' else 'payers'} yet"
        ),
    ),
    (
        re.compile(r"hist_age_days_(src|dst)"),
        lambda m, v, r: f"{_PARTY[m.group(1)]} first seen {_duration((v or 0.0) * 86_400)} before",
    ),
]


def _instance_words(m: re.Match[str], v: float | None, r: Mapping[str, float | None]) -> str:
    kind = "typology" if m.group(1) == "total" else m.group(1).replace("_", "-")
    found = " the miners had found by the time it was scored"
    return f"leg of {_count(v, kind + ' pattern')}{found}" if v else f"leg of no {kind} pattern{found}"


#: Words for `miner_features.MinerFeatures` (typology-miner instances the transaction is a leg of); before
#: the `(rule|miner)_` indicator template below, which would otherwise claim these names.
_MINER_TEMPLATES: list[tuple[re.Pattern[str], _Template]] = [(re.compile(r"miner_instances_(\w+)"), _instance_words)]

_TEMPLATES: list[tuple[re.Pattern[str], _Template]] = [
    *_AHEAD_TEMPLATES,
    *_HISTORY_TEMPLATES,
    *_MINER_TEMPLATES,
    (
        re.compile(r"amount_cny_log10"),
        lambda m, v, r: f"amount {_money(10.0**v)}" if v is not None else "amount unknown",
    ),
    (re.compile(r"(cash|transfer)_threshold_gap_pct"), _threshold_gap),
    (
        re.compile(r"amount_round_(\d+)"),
        lambda m, v, r: (
            f"round amount (a multiple of {m.group(1)})" if v else f"amount is not a multiple of {m.group(1)}"
        ),
    ),
    (re.compile(r"hour_china"), lambda m, v, r: _hour(v) if v is not None else "time of day unknown"),
    (
        re.compile(r"weekday_china"),
        lambda m, v, r: f"made on a {_WEEKDAYS[int(v)]}" if v is not None else "day unknown",
    ),
    (re.compile(r"channel_(\w+)"), lambda m, v, r: f"channel is {m.group(1)}" if v else f"channel is not {m.group(1)}"),
    (re.compile("|".join(_FLAGS)), lambda m, v, r: _FLAGS[m.group(0)][0 if v else 1]),
    (re.compile(r"(src|dst)_(out|in)_(count|sum)_(\d+[smhdw])"), lambda m, v, r: _history_words(m, v)),
    (
        re.compile(r"src_out_in_ratio_24h"),
        lambda m, v, r: (
            f"payer paid out {v:.0%} of what it received in the previous 24 h"
            if v is not None
            else "payer received nothing in the previous 24 h"
        ),
    ),
    (
        re.compile(r"(?:(src|dst)_secs_since_prev|secs_since_prev_(src|dst))"),
        lambda m, v, r: (
            f"{_PARTY[m.group(1) or m.group(2)]}'s previous transaction was {_duration(v)} earlier"
            if v is not None
            else f"first transaction of the {_PARTY[m.group(1) or m.group(2)]}'s account in the data"
        ),
    ),
    (
        re.compile(r"secs_since_last_in_src"),
        lambda m, v, r: (
            f"payer passes money on {_duration(v)} after it last received money"
            if v is not None
            else "payer has received nothing before in the data"
        ),
    ),
    (
        re.compile(r"amount_to_last_in_src"),
        lambda m, v, r: (
            f"amount is {v:.0%} of what the payer last received" if v is not None else "payer had no earlier inflow"
        ),
    ),
    (
        re.compile(r"paid_since_last_in_src"),
        lambda m, v, r: (
            f"since it last received money the payer has paid out {v:.0%} of that amount, this payment included"
            if v is not None
            else "payer had no earlier inflow"
        ),
    ),
    (
        re.compile(r"secs_since_first_(src|dst)"),
        lambda m, v, r: f"{_PARTY[m.group(1)]} first seen {_duration(v or 0.0)} before this transaction",
    ),
    (
        re.compile(r"(src|dst)_account_age_days"),
        lambda m, v, r: (
            f"{_PARTY[m.group(1)]}'s account opened {_duration(v * 86_400)} before"
            if v is not None
            else f"{_PARTY[m.group(1)]}'s account opening date is unknown"
        ),
    ),
    (
        re.compile(r"(src|dst)_account_(\w+)"),
        lambda m, v, r: (
            f"{_PARTY[m.group(1)]} {'is' if v else 'is not'} {'an' if m.group(2)[0] in 'aeiou' else 'a'} "
            f"{m.group(2)} account"
        ),
    ),
    (
        re.compile(r"(fan|deg|amount_(?:sum|mean|std|min|max))_(out|in)_(src|dst)_(\d+[smhdw])"),
        lambda m, v, r: _graph_words(m, v),
    ),
    (
        re.compile(r"round_share_(out|in)_(src|dst)_(\d+[smhdw])"),
        lambda m, v, r: (
            f"{(v or 0.0):.0%} of what the {_PARTY[m.group(2)]} {_VERB[m.group(1)]} in the "
            f"{_window(m.group(3))} up to this transaction were round amounts"
        ),
    ),
    (
        re.compile(r"(new|night|back)_share_(out|in)_(src|dst)_(\d+[smhdw])"),
        lambda m, v, r: (
            f"{(v or 0.0):.0%} of what the {_PARTY[m.group(3)]} {_VERB[m.group(2)]} in the "
            f"{_window(m.group(4))} up to this transaction {_SHARE_WORDS[m.group(1), m.group(2)]}"
        ),
    ),
    (
        re.compile(r"through_(src|dst)_(\d+[smhdw])"),
        lambda m, v, r: (
            f"{_PARTY[m.group(1)]} paid out {v:.0%} of what it received in the {_window(m.group(2))} "
            "up to this transaction"
            if v is not None
            else f"{_PARTY[m.group(1)]} received nothing in the {_window(m.group(2))} up to this transaction"
        ),
    ),
    (
        re.compile(r"fan_ratio_(src|dst)_(\d+[smhdw])"),
        lambda m, v, r: (
            f"{_PARTY[m.group(1)]} was paid by {v:.1f}x as many accounts as it paid in the "
            f"{_window(m.group(2))} up to this transaction"
            if v is not None
            else f"{_PARTY[m.group(1)]} paid no one in the {_window(m.group(2))} up to this transaction"
        ),
    ),
    (
        re.compile(r"repeat_(out|in)_(src|dst)_(\d+[smhdw])"),
        lambda m, v, r: (
            f"{_PARTY[m.group(2)]} {'paid each payee' if m.group(1) == 'out' else 'was paid by each payer'} "
            f"{v or 0.0:.1f} times on average in the {_window(m.group(3))} up to this transaction"
        ),
    ),
    (
        re.compile(r"pair_back_deg_(\d+[smhdw])"),
        lambda m, v, r: (
            f"payee paid this payer {_count(v, 'time')} in the {_window(m.group(1))} before: money going back"
            if v
            else f"payee did not pay this payer in the {_window(m.group(1))} before"
        ),
    ),
    (
        re.compile(r"drained_max_in_src_(\d+[smhdw])"),
        lambda m, v, r: (
            f"since its largest receipt in the {_window(m.group(1))} the payer has paid out {v:.0%} of that amount, "
            "this payment included"
            if v is not None
            else f"payer received nothing in the {_window(m.group(1))} before"
        ),
    ),
    (
        re.compile(r"amount_to_back_(\d+[smhdw])"),
        lambda m, v, r: (
            f"amount is {v:.1%} of what the payee paid this payer in the {_window(m.group(1))} before"
            if v is not None
            else f"nothing came from the payee to this payer in the {_window(m.group(1))} before"
        ),
    ),
    (
        re.compile(r"pair_deg_(\d+[smhdw])"),
        lambda m, v, r: (
            f"first payment from this payer to this payee in {_window(m.group(1))}"
            if (v or 0.0) <= 1
            else f"payer paid this payee {_count(v or 0.0, 'time')} in the {_window(m.group(1))} up to this transaction"
        ),
    ),
    (
        re.compile(r"amount_to_mean_(out|in)_(src|dst)_(\d+[smhdw])"),
        lambda m, v, r: (
            f"amount is {v:.1f}x the {_PARTY[m.group(2)]}'s average {'outgoing' if m.group(1) == 'out' else 'incoming'}"
            f" payment over {_window(m.group(3))}"
            if v is not None
            else f"no earlier {'outgoing' if m.group(1) == 'out' else 'incoming'} payments of the {_PARTY[m.group(2)]}"
        ),
    ),
    (
        re.compile(r"scatter_gather_width_(\d+[smhdw])"),
        lambda m, v, r: (
            f"widest scatter-gather pattern it is part of within {_window(m.group(1))} "
            f"runs through {_count(v or 0.0, 'intermediary account')}"
        ),
    ),
    (
        re.compile(r"scatter_gather_(\d+[smhdw])"),
        lambda m, v, r: f"part of {_count(v or 0.0, 'scatter-gather pattern')} within {_window(m.group(1))}",
    ),
    (
        re.compile(r"(temporal|lc)_cycles_(\d+[smhdw])"),
        lambda m, v, r: f"closes {_count(v or 0.0, 'payment cycle')} within {_window(m.group(2))}",
    ),
    (
        re.compile(r"(rule|miner)_(.+)"),
        lambda m, v, r: f"{m.group(1)} '{m.group(2)}' {'fired on' if v else 'did not fire on'} this transaction",
    ),
]


def _known(v: float | None) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def describe_feature(name: str, row: Mapping[str, float | None]) -> str:
    """One feature of one transaction in an investigator's words, with its value.

    `row` holds the transaction's feature values by name (null / NaN = unknown), so a
    template can borrow a sibling value (the threshold gap quotes the amount). A name no
    template knows (a new extractor's column) falls back to "<name in words> is <value>",
    which is still a sentence, never a bare identifier.
    """
    raw = row.get(name)
    v = float(raw) if _known(raw) else None
    for pattern, template in _TEMPLATES:
        if m := pattern.fullmatch(name):
            return template(m, v, row)
    words = name.replace("_", " ")
    return f"{words} is {v:,.4g}" if v is not None else f"{words} is unknown"
