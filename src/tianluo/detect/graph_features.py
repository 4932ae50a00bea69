"""Per-transaction temporal-graph features, computed causally in batch and one transaction at a time online.

Every transaction gets features of the payer (`src`) and payee (`dst`) accounts over
sliding windows (distinct counterparties, transaction counts, amount statistics, shares
of round amounts, of first contacts, of night-time payments and of money paid back,
payments back along the pair, time since previous and first activity, and scale-free ratios of
these: flow-through, fan-in over fan-out, payments per counterparty) and counts of the graph
patterns it takes part in (scatter-gather, time-respecting cycles and length-bounded
cycles). Only the past is used: transactions are processed in time order, ties in the
order the rows arrive, and a transaction sees every transaction before it in that
order plus itself. A window of length `w` at time `t` is the half-open interval
`(t - w, t]`. `GraphFeatures.transform` (a whole history, compiled kernels, patterns in
parallel) and `OnlineGraphState.update` (one transaction, incremental state) run the
same kernels, so a backtest and a real-time score agree to the last bit.

Settled mode (`GraphFeatures(horizon="1d")`, T+1 batch monitoring) keeps every causal
column and adds `ahead_*` columns over the horizon after each transaction, [t, t + H):
the rest of a payer's fan, the money leaving the payee after it arrived, payments back,
cycles the payment opens. They come from the same kernels run over the time-reversed
stream; `SettledGraphState` scores a stream the same way, releasing each transaction once
its horizon has passed.

The families mirror IBM Snap ML's `GraphFeaturePreprocessor` (fan, degree, vertex
statistics, scatter-gather, temporal cycles, length-constrained cycles) so the two can
be compared like for like; `docs/graph-features.md` lists every column and where
the definitions differ.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numba
import numpy as np
import polars as pl

from tianluo.detect import _graph_kernels as kernels
from tianluo.detect.base import FeatureExtractor
from tianluo.detect.features import CHINA_UTC_OFFSET_S, NIGHT_END_HOUR, NIGHT_START_HOUR

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_US = 1_000_000

Window = str | int | dt.timedelta


def parse_window(window: Window) -> int:
    """A window as whole seconds: "90s", "30m", "24h", "7d", "2w", an int (seconds) or a timedelta."""
    if isinstance(window, dt.timedelta):
        secs = window.total_seconds()
    elif isinstance(window, int):
        secs = window
    else:
        m = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", str(window))
        if not m:
            raise ValueError(f"window {window!r}: write a whole number and a unit s, m, h, d or w (e.g. '7d')")
        secs = int(m.group(1)) * _UNITS[m.group(2)]
    if secs <= 0 or secs != int(secs):
        raise ValueError(f"window {window!r} must be a positive whole number of seconds")
    return int(secs)


def window_label(seconds: int) -> str:
    """The shortest exact label of a window: 86400 → "1d", 43200 → "12h", 90 → "90s"."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


#: Ratios of two columns of the same window (version 4): (name, numerator, denominator), each
#: `<name>_<window>`, NaN when the denominator is 0. Counts and sums grow with a scheme's age and
#: size; ratios do not, so a model that learnt a scheme from its first weeks still knows its later
#: weeks and schemes of other sizes (a fundraiser's second round of "interest", a bigger mule
#: ring). Flow-through is what a pass-through account shows (mule, rapid in-and-out, collector
#: cards swept nightly); fan ratios tell a gatherer from a scatterer; repeats tell one payment
#: each to many strangers from regular dealings with a few.
RATIOS: tuple[tuple[str, str, str], ...] = (
    ("through_src", "amount_sum_out_src", "amount_sum_in_src"),
    ("through_dst", "amount_sum_out_dst", "amount_sum_in_dst"),
    ("fan_ratio_src", "fan_in_src", "fan_out_src"),
    ("fan_ratio_dst", "fan_in_dst", "fan_out_dst"),
    ("repeat_out_src", "deg_out_src", "fan_out_src"),
    ("repeat_in_dst", "deg_in_dst", "fan_in_dst"),
)


@dataclass(frozen=True)
class _Plan:
    """The resolved configuration the kernels run with (windows in microseconds)."""

    windows_us: np.ndarray
    sg_us: int  # 0 = family off
    tc_us: int
    lc_us: int
    tc_len: int
    lc_len: int
    budget: int
    round_cents: int
    offset_s: int
    night: tuple[int, int]
    names: tuple[str, ...]
    col_sg: int
    col_tc: int
    col_lc: int
    ratios: np.ndarray  # (k, 3) columns: ratio, numerator, denominator

    @property
    def lookback_us(self) -> int:
        """The longest look-back of any feature: older edges can be forgotten."""
        return int(max(int(self.windows_us.max()), self.sg_us, self.tc_us, self.lc_us))


class GraphFeatures(FeatureExtractor):
    """Temporal-graph features per transaction, causal or settled (see the module docstring and the feature list).

    Parameters
    ----------
    windows: windows of the per-account families (fan, degree, amount statistics, shares),
        ``("1d", "7d", "30d")`` by default: a day and a week for bursts, a month (the usual
        review period) for schemes that take weeks to show their shape, such as deposits
        paid back as "interest". The longest also scales ``amount_to_mean_*`` and decides
        first contacts and money back.
    scatter_gather, temporal_cycles, lc_cycles: window of each pattern family, or None to
        switch it off.
    temporal_cycle_max_len, lc_cycle_max_len: most accounts on a counted cycle.
    amount_column: the amount the statistics use (CNY by default, so currencies mix).
    round_unit: an amount is "round" when it is a whole multiple of this (in `amount_column`).
    utc_offset_hours, night_hours: local time of the accounts (China by default) and the
        night as [start, end) local hours, for the ``night_share_*`` columns; by default the
        night (22:00-06:00 China time) the transaction features and reason codes use.
    horizon: None (causal, the default: the real-time path) or the settled look-ahead H
        ("1d", seconds, a timedelta): each row also gets `ahead_*` columns over [t, t + H),
        this transaction and the later rows of its own instant included. `transform` refuses
        a horizon longer than the data's time span. Stored as given so that a saved model's
        spec rebuilds the same columns; the version becomes "<causal>+settled<n>".
    search_budget: how many edges the backward pruning search of one cycle query may read.
        Pruning only skips dead ends, so the budget trades pruning work against
        enumeration work on dense graphs; it never changes a count. On the simulated bank
        `bank300k` (8,600 accounts, 300,000 payments) a deep backward search runs through
        hub accounts' in-lists and costs more than the dead ends it saves: 200 edges made
        the two cycle families 1.6x and 2.5x faster there than 20,000, and about as fast
        on the 500k simulated set and AMLSim (docs/graph-features.md).
    """

    name = "graph_features"
    # 2: pair_deg_W; 3: 30-day window, pair_back_deg_W, amount_to_back_W, new/night/back shares;
    # 4: RATIOS (flow-through, fan ratios, repeats per window), paid_since_last_in_src; 5: drained_max_in_src_W
    version = "5"

    def __init__(
        self,
        windows: Sequence[Window] = ("1d", "7d", "30d"),
        scatter_gather: Window | None = "7d",
        temporal_cycles: Window | None = "7d",
        lc_cycles: Window | None = "7d",
        temporal_cycle_max_len: int = 10,
        lc_cycle_max_len: int = 6,
        amount_column: str = "amount_cny",
        round_unit: float = 100.0,
        search_budget: int = 200,
        utc_offset_hours: float = CHINA_UTC_OFFSET_S / 3600,
        night_hours: tuple[int, int] = (NIGHT_START_HOUR, NIGHT_END_HOUR),
        horizon: Window | None = None,
    ) -> None:
        self.windows = tuple(windows)
        self.scatter_gather = scatter_gather
        self.temporal_cycles = temporal_cycles
        self.lc_cycles = lc_cycles
        self.temporal_cycle_max_len = temporal_cycle_max_len
        self.lc_cycle_max_len = lc_cycle_max_len
        self.amount_column = amount_column
        self.round_unit = round_unit
        self.search_budget = search_budget
        self.utc_offset_hours = utc_offset_hours
        self.night_hours = night_hours
        # Kept as given (a plain "1d"), so a saved model's spec rebuilds the same extractor.
        self.horizon = horizon
        if horizon is not None:
            # Settled columns have their own revision: causal models keep version "5".
            self.version = f"{GraphFeatures.version}+settled{SETTLED_VERSION}"

    # -- configuration ---------------------------------------------------------------------------

    def _plan(self) -> _Plan:
        if not self.windows:
            raise ValueError("GraphFeatures needs at least one window")
        wins = sorted({parse_window(w) for w in self.windows})
        for name, n in (("temporal_cycle_max_len", self.temporal_cycle_max_len),
                        ("lc_cycle_max_len", self.lc_cycle_max_len)):
            if not 2 <= n <= 64:
                raise ValueError(f"{name} must be between 2 and 64 (got {n})")
        cents = round(self.round_unit * 100)
        if cents <= 0:
            raise ValueError(f"round_unit must be positive (got {self.round_unit})")
        offset_s = round(float(self.utc_offset_hours) * 3600)
        if not -14 * 3600 <= offset_s <= 14 * 3600 or offset_s % 900:
            raise ValueError(f"utc_offset_hours must be a whole quarter hour within ±14 (got {self.utc_offset_hours})")
        night = tuple(int(h) for h in self.night_hours)
        if len(night) != 2 or not all(0 <= h < 24 for h in night) or night[0] == night[1]:
            raise ValueError(f"night_hours must be two different hours 0-23, (start, end) (got {self.night_hours})")
        names: list[str] = []
        for w in wins:
            lab = window_label(w)
            for acct, side in kernels.ROLES:
                names += [f"{stat}_{side}_{acct}_{lab}" for stat in kernels.STATS]
            names += [f"round_share_out_src_{lab}", f"round_share_in_dst_{lab}"]
            names += [f"pair_deg_{lab}", f"pair_back_deg_{lab}"]
            names += [f"{share}_{lab}" for share in kernels.SHARES]
            names += [f"amount_to_back_{lab}", f"drained_max_in_src_{lab}"]
        longest = window_label(wins[-1])
        names += ["secs_since_prev_src", "secs_since_prev_dst", "secs_since_first_src", "secs_since_first_dst",
                  f"amount_to_mean_out_src_{longest}", f"amount_to_mean_in_dst_{longest}",
                  "secs_since_last_in_src", "amount_to_last_in_src", "paid_since_last_in_src"]
        sg = parse_window(self.scatter_gather) if self.scatter_gather is not None else 0
        tc = parse_window(self.temporal_cycles) if self.temporal_cycles is not None else 0
        lc = parse_window(self.lc_cycles) if self.lc_cycles is not None else 0
        col_sg = col_tc = col_lc = -1
        if sg:
            col_sg = len(names)
            names += [f"scatter_gather_{window_label(sg)}", f"scatter_gather_width_{window_label(sg)}"]
        if tc:
            col_tc = len(names)
            names.append(f"temporal_cycles_{window_label(tc)}")
        if lc:
            col_lc = len(names)
            names.append(f"lc_cycles_{window_label(lc)}")
        ratios = []
        for w in wins:
            lab = window_label(w)
            for ratio, num, den in RATIOS:
                ratios.append((len(names), names.index(f"{num}_{lab}"), names.index(f"{den}_{lab}")))
                names.append(f"{ratio}_{lab}")
        return _Plan(
            windows_us=np.array(wins, np.int64) * _US, sg_us=sg * _US, tc_us=tc * _US, lc_us=lc * _US,
            tc_len=int(self.temporal_cycle_max_len), lc_len=int(self.lc_cycle_max_len),
            budget=int(self.search_budget), round_cents=int(cents), offset_s=offset_s,
            night=(night[0], night[1]), names=tuple(names),
            col_sg=col_sg, col_tc=col_tc, col_lc=col_lc, ratios=np.array(ratios, np.int64).reshape(-1, 3),
        )

    def _settled(self) -> _Settled | None:
        """The look-ahead pass of settled mode, or None in causal mode."""
        if self.horizon is None:
            return None
        h = parse_window(self.horizon)
        lab = window_label(h)
        # The time-reversed pass runs the causal kernels with one window, the horizon, and every
        # pattern family that is on also over the horizon.
        rev = GraphFeatures(
            windows=(h,), scatter_gather=h if self.scatter_gather is not None else None,
            temporal_cycles=h if self.temporal_cycles is not None else None,
            lc_cycles=h if self.lc_cycles is not None else None,
            temporal_cycle_max_len=self.temporal_cycle_max_len, lc_cycle_max_len=self.lc_cycle_max_len,
            round_unit=self.round_unit, search_budget=self.search_budget, utc_offset_hours=self.utc_offset_hours,
            night_hours=self.night_hours,
        )._plan()
        # The reversed pass also reverses every payment (payee → payer), so its payer is our payee
        # and its outflows our inflows: swap both back when naming.
        swap = {"src": "dst", "dst": "src", "out": "in", "in": "out"}
        names: list[str] = []
        take: list[tuple[int, int]] = []

        def mirror(name: str, rev_name: str) -> None:
            take.append((len(names), rev.names.index(rev_name)))
            names.append(name)

        for acct, side in kernels.ROLES:
            for stat in kernels.STATS:
                mirror(f"ahead_{stat}_{side}_{acct}_{lab}", f"{stat}_{swap[side]}_{swap[acct]}_{lab}")
        mirror(f"ahead_round_share_out_src_{lab}", f"round_share_in_dst_{lab}")
        mirror(f"ahead_round_share_in_dst_{lab}", f"round_share_out_src_{lab}")
        mirror(f"ahead_pair_deg_{lab}", f"pair_deg_{lab}")
        mirror(f"ahead_pair_back_deg_{lab}", f"pair_back_deg_{lab}")
        mirror(f"ahead_night_share_out_src_{lab}", f"night_share_in_dst_{lab}")
        mirror(f"ahead_night_share_in_dst_{lab}", f"night_share_out_src_{lab}")
        mirror(f"ahead_amount_to_back_{lab}", f"amount_to_back_{lab}")
        to_mean = len(names)
        names += [f"ahead_amount_to_mean_out_src_{lab}", f"ahead_amount_to_mean_in_dst_{lab}",
                  f"ahead_paid_on_dst_{lab}"]
        for col in (rev.col_sg, rev.col_tc, rev.col_lc):
            if col >= 0:
                for rev_name in rev.names[col: col + (2 if col == rev.col_sg else 1)]:
                    mirror(f"ahead_{rev_name}", rev_name)
        ratios = []
        for ratio, num, den in RATIOS:
            ratios.append((len(names), names.index(f"ahead_{num}_{lab}"), names.index(f"ahead_{den}_{lab}")))
            names.append(f"ahead_{ratio}_{lab}")
        return _Settled(
            ahead_us=h * _US, rev=rev, names=tuple(names), take=np.array(take, np.int64), to_mean=to_mean,
            ratios=np.array(ratios, np.int64).reshape(-1, 3),
        )

    @property
    def feature_names(self) -> list[str]:
        """Output columns, in order: the causal ones, then in settled mode the `ahead_*` ones."""
        settled = self._settled()
        return list(self._plan().names) + (list(settled.names) if settled else [])

    # -- batch -----------------------------------------------------------------------------------

    def transform(self, transactions: pl.DataFrame) -> pl.DataFrame:
        """Features of every transaction from the history in `transactions` alone (one row each, same order)."""
        need = ["ts", "src_account", "dst_account", self.amount_column]
        missing = [c for c in need if c not in transactions.columns]
        if missing:
            raise ValueError(f"{self.name}: transactions lack column(s) {missing}; expected canonical transactions")
        df = transactions.select(
            pl.col("ts").dt.epoch("us").alias("ts"),
            pl.col("src_account").cast(pl.String),
            pl.col("dst_account").cast(pl.String),
            pl.col(self.amount_column).cast(pl.Float64).alias("amount"),
        )
        if df.null_count().sum_horizontal().item():
            raise ValueError(f"{self.name}: ts, src_account, dst_account and {self.amount_column} must not be null")
        ts = df["ts"].to_numpy()
        settled = self._settled()
        if settled is not None and ts.shape[0] and settled.ahead_us > int(ts.max()) - int(ts.min()):
            span = dt.timedelta(microseconds=int(ts.max()) - int(ts.min()))
            raise ValueError(
                f"{self.name}: horizon {self.horizon!r} is longer than the data, which spans {span} "
                f"({ts.shape[0]:,} transactions): no transaction would have its whole horizon; "
                "choose a shorter horizon or score more history"
            )
        order = None if bool(np.all(ts[1:] >= ts[:-1])) else np.argsort(ts, kind="stable")
        if order is not None:
            df = df[order]
        accounts = pl.concat([df["src_account"], df["dst_account"]]).unique(maintain_order=True)
        enum = pl.Enum(accounts)
        src = df["src_account"].cast(enum).to_physical().cast(pl.Int64).to_numpy()
        dst = df["dst_account"].cast(enum).to_physical().cast(pl.Int64).to_numpy()
        feats = self.compute(src, dst, df["ts"].to_numpy(), df["amount"].to_numpy(), len(accounts))
        if order is not None:
            back = np.empty_like(order)
            back[order] = np.arange(order.shape[0])
            feats = feats[back]
        return pl.from_numpy(feats, schema=self.feature_names, orient="row")

    def settled_mask(self, transactions: pl.DataFrame) -> np.ndarray:
        """Which rows are final: their whole horizon lies inside `transactions` (something at or after ts + H).

        A settled batch holds rows whose look-ahead the data cuts short (its last H); their
        `ahead_*` columns can still grow as later data arrives, so a T+1 run scores them in
        the next run rather than now. All True in causal mode. Same row order as the input.
        """
        ts = transactions["ts"].dt.epoch("us").to_numpy()
        settled = self._settled()
        if settled is None or ts.shape[0] == 0:
            return np.ones(ts.shape[0], bool)
        return ts + settled.ahead_us <= ts.max()

    def compute(
        self, src: np.ndarray, dst: np.ndarray, ts_us: np.ndarray, amount: np.ndarray, n_accounts: int
    ) -> np.ndarray:
        """The feature matrix of integer-encoded edges already in processing order (ts non-decreasing).

        `src`/`dst` are account ids in [0, n_accounts), `ts_us` UTC microseconds. This is
        `transform` without the string encoding, for callers that already hold ids.
        """
        plan = self._plan()
        src = np.ascontiguousarray(src, np.int64)
        dst = np.ascontiguousarray(dst, np.int64)
        ts_us = np.ascontiguousarray(ts_us, np.int64)
        amount = np.ascontiguousarray(amount, np.float64)
        n = src.shape[0]
        if not (dst.shape[0] == ts_us.shape[0] == amount.shape[0] == n):
            raise ValueError("src, dst, ts_us and amount must have the same length")
        if n and np.any(ts_us[1:] < ts_us[:-1]):
            raise ValueError("compute() needs edges in time order; transform() sorts for you")
        out = _run(plan, src, dst, ts_us, amount, _edge_flags(plan, ts_us, amount), n_accounts)
        settled = self._settled()
        if settled is None:
            return out
        return np.hstack([out, _ahead(settled, src, dst, ts_us, amount, n_accounts, n)])

    # -- online ----------------------------------------------------------------------------------

    def online(self) -> OnlineGraphState:
        """An empty incremental state that scores transactions one at a time with these settings (causal mode)."""
        return OnlineGraphState(self)

    def settled_online(self) -> SettledGraphState:
        """An empty settled scorer: buffers transactions and releases each once its horizon has passed."""
        return SettledGraphState(self)


def _run(
    plan: _Plan, src: np.ndarray, dst: np.ndarray, ts_us: np.ndarray, amount: np.ndarray, flags: np.ndarray,
    n_accounts: int, first: int = 0,
) -> np.ndarray:
    """The causal kernels over edges in processing order: one feature row per edge (patterns from row `first` on)."""
    n = src.shape[0]
    n_win = plan.windows_us.shape[0]
    # Column-major, so that each feature is one contiguous column for Polars and Arrow.
    out = np.empty((n, len(plan.names)), np.float64, order="F")
    if n == 0:
        return out
    keys, pair = np.unique(src * np.int64(n_accounts) + dst, return_inverse=True)
    pair = pair.astype(np.int64).reshape(-1)
    pair_src = keys // n_accounts
    k_start = np.searchsorted(pair_src, np.arange(n_accounts)).astype(np.int64)
    k_stop = np.searchsorted(pair_src, np.arange(n_accounts), side="right").astype(np.int64)
    g = kernels.Lists(
        src, dst, *kernels.build_lists(src, n_accounts), *kernels.build_lists(dst, n_accounts),
        k_start, k_stop, (keys % n_accounts).astype(np.int64), np.arange(keys.shape[0], dtype=np.int64),
        *kernels.build_lists(pair, keys.shape[0]),
    )
    kernels.count_batch(
        out, g, ts_us, amount, pair, flags, np.zeros(n), plan.windows_us,
        np.zeros(n_win, np.int64), np.zeros((n_win, n_accounts, kernels.N_INT_FIELDS), np.int64),
        np.zeros((n_win, n_accounts, kernels.N_FLOAT_FIELDS), np.float64),
        np.full((kernels.N_TIME_FIELDS, n_accounts), kernels.NO_TS, np.int64),
        np.zeros((kernels.N_IN_FIELDS, n_accounts)),
        np.zeros((n_win, keys.shape[0]), np.int64),
    )
    if (plan.col_sg >= 0 or plan.col_tc >= 0 or plan.col_lc >= 0) and first < n:

        def starts(w_us: int) -> np.ndarray:
            return np.searchsorted(ts_us, ts_us - w_us, side="right").astype(np.int64)

        # Many more chunks than threads, handed out one at a time: query cost is uneven.
        n_chunks = min(n - first, 8 * numba.get_num_threads())
        previous = numba.set_parallel_chunksize(1)
        try:
            kernels.pattern_batch(
                out, plan.col_sg, plan.col_tc, plan.col_lc, starts(plan.sg_us), starts(plan.tc_us),
                starts(plan.lc_us), plan.tc_len, plan.lc_len, plan.budget, g, n_accounts, n_chunks, first,
            )
        finally:
            numba.set_parallel_chunksize(previous)
    _fill_ratios(out, plan.ratios)
    return out


#: Revision of the settled (`ahead_*`) columns; a settled extractor's version is "<causal>+settled<this>".
SETTLED_VERSION = "1"


@dataclass(frozen=True)
class _Settled:
    """How settled mode computes its look-ahead columns from a time-reversed causal pass."""

    ahead_us: int  # the horizon H
    rev: _Plan  # the causal configuration the reversed pass runs with (one window: H)
    names: tuple[str, ...]
    take: np.ndarray  # (k, 2): ahead column, the reversed pass's column it copies
    to_mean: int  # ahead_amount_to_mean_out_src_H; ahead_amount_to_mean_in_dst_H, ahead_paid_on_dst_H follow it
    ratios: np.ndarray  # (k, 3) as _Plan.ratios, over the ahead columns


def _ahead(
    settled: _Settled, src: np.ndarray, dst: np.ndarray, ts_us: np.ndarray, amount: np.ndarray, n_accounts: int,
    rows: int,
) -> np.ndarray:
    """The `ahead_*` columns of the first `rows` edges (in processing order), each over [t, t + H) from it on.

    Row i sees the edges i.. (so rows of its own instant that come later, while the causal
    columns see the earlier ones) with ts < ts_i + H. Those are exactly the edges the
    causal kernels see when the stream is run backwards in time with every payment
    reversed (order by (-ts, -position), payee → payer): a window (t' - H, t'] at t' = -t
    is [t, t + H), and reversing the payments keeps money flowing forward along a path,
    so a time-respecting cycle of the reversed pass is one this payment opens and that
    returns to its payer within H. Counts, shares, extremes and patterns of that pass
    depend only on the edges inside each window; its sliding sums would not (rounding
    residue of evicted edges), so sums, means and deviations are recomputed from per-block
    running sums (`kernels.block_sums`). That makes each row a function of its window
    alone: a batch over years and a buffered stream give the same bits.
    """
    rev = settled.rev
    n = src.shape[0]
    out = np.empty((rows, len(settled.names)), np.float64, order="F")
    if rows == 0:
        return out
    r = slice(None, None, -1)
    flags = _edge_flags(rev, ts_us, amount)[r].copy()  # night and round hours of the real timestamps
    back = _run(rev, np.ascontiguousarray(dst[r]), np.ascontiguousarray(src[r]), np.ascontiguousarray(-ts_us[r]),
                np.ascontiguousarray(amount[r]), flags, n_accounts, first=n - rows)
    back = back[r][:rows]
    out[:, settled.take[:, 0]] = back[:, settled.take[:, 1]]
    h = settled.ahead_us
    end = np.searchsorted(ts_us, ts_us[:rows] + h, side="left").astype(np.int64)
    lists = {"out": kernels.build_lists(src, n_accounts), "in": kernels.build_lists(dst, n_accounts)}
    blocks = {side: kernels.block_sums(ts_us, amount, h, *lst) for side, lst in lists.items()}
    who = {"src": src[:rows], "dst": dst[:rows]}
    stat_sum = kernels.STATS.index("amount_sum")
    for b, (acct, side) in enumerate(kernels.ROLES):
        col = b * len(kernels.STATS) + stat_sum
        kernels.ahead_sums(out, col, who[acct], ts_us, end, h, *lists[side], *blocks[side])
    # This amount against the average of the payer's payments / the payee's receipts over the horizon.
    a = amount[:rows]
    mean_out = out[:, kernels.ROLES.index(("src", "out")) * len(kernels.STATS) + stat_sum + 1]
    mean_in = out[:, kernels.ROLES.index(("dst", "in")) * len(kernels.STATS) + stat_sum + 1]
    paid_on = out[:, kernels.ROLES.index(("dst", "out")) * len(kernels.STATS) + stat_sum]
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, settled.to_mean] = np.where(mean_out > 0.0, a / mean_out, np.nan)
        out[:, settled.to_mean + 1] = np.where(mean_in > 0.0, a / mean_in, np.nan)
        # What the payee pays out over the horizon against this payment: 快进快出 passes it on
        # within hours (about 1), however much else the payee receives meanwhile.
        out[:, settled.to_mean + 2] = np.where(a > 0.0, paid_on / a, np.nan)
    _fill_ratios(out, settled.ratios)
    return out


def _fill_ratios(out: np.ndarray, ratios: np.ndarray) -> None:
    """Write the `RATIOS` columns of `out` (rows = transactions) from the columns they divide."""
    for col, num, den in ratios:
        d = out[:, den]
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, col] = np.where(d > 0, out[:, num] / d, np.nan)


def _is_night(plan: _Plan, ts_us: np.ndarray | int) -> np.ndarray | bool:
    hour = ((ts_us // _US + plan.offset_s) // 3600) % 24
    start, end = plan.night
    return (hour >= start) | (hour < end) if start > end else (hour >= start) & (hour < end)


def _edge_flags(plan: _Plan, ts_us: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """The round and night kernels.FLAG_* bits of every edge; `OnlineGraphState.update` sets the same one by one.

    The kernels add the bits that depend on the graph (first contact, money back) as
    each edge arrives.
    """
    # In floats: an int64 cast overflows above 9.2e16 cents, where update()'s Python integers do not.
    cents = np.rint(np.asarray(amount, np.float64) * 100.0)
    flags = np.where(np.fmod(cents, plan.round_cents) == 0, kernels.FLAG_ROUND, 0).astype(np.int64)
    flags[_is_night(plan, ts_us)] |= kernels.FLAG_NIGHT
    return flags


def _to_us(ts: dt.datetime | np.datetime64 | int) -> int:
    if isinstance(ts, dt.datetime):
        if ts.tzinfo is None:
            raise ValueError(f"timestamp {ts!r} has no time zone; canonical timestamps are UTC")
        delta = ts - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return (delta.days * 86400 + delta.seconds) * _US + delta.microseconds
    if isinstance(ts, np.datetime64):
        return int(ts.astype("datetime64[us]").astype(np.int64))
    return int(ts)


class OnlineGraphState:
    """Window state for scoring transactions one at a time, exactly as `GraphFeatures.transform` would.

    `update` integer-encodes the accounts (the mapping is kept in `accounts`), records the
    transaction, and returns its feature vector (columns `feature_names`). Transactions
    must arrive in time order. Edges older than every window, and account pairs with no
    edge left, are dropped whenever the edge buffer fills, so memory follows the traffic
    of the longest window plus one integer per account ever seen.
    """

    def __init__(self, extractor: GraphFeatures, capacity: int = 1 << 12) -> None:
        if extractor.horizon is not None:
            raise ValueError(
                f"{extractor.name} has a horizon ({extractor.horizon!r}): its rows can only be scored once the horizon "
                "has passed; use extractor.settled_online() (SettledGraphState)"
            )
        self._plan = extractor._plan()
        self.feature_names: list[str] = list(self._plan.names)
        #: account id → integer id used inside the kernels
        self.accounts: dict[str, int] = {}
        self._pairs: dict[int, int] = {}  # (src << 32) | dst → pair id
        self._pair_src = np.zeros(64, np.int64)
        self._pair_dst = np.zeros(64, np.int64)
        n_win = self._plan.windows_us.shape[0]
        self._n = 0
        self._last_ts = kernels.NO_TS
        self._e_src = np.zeros(capacity, np.int64)
        self._e_dst = np.zeros(capacity, np.int64)
        self._e_ts = np.zeros(capacity, np.int64)
        self._e_amt = np.zeros(capacity, np.float64)
        self._e_pair = np.zeros(capacity, np.int64)
        self._e_flags = np.zeros(capacity, np.int64)
        self._e_cum = np.zeros(capacity, np.float64)
        self._ev = np.zeros(n_win, np.int64)
        self._vi = np.zeros((n_win, 64, kernels.N_INT_FIELDS), np.int64)
        self._vf = np.zeros((n_win, 64, kernels.N_FLOAT_FIELDS), np.float64)
        self._vt = np.full((kernels.N_TIME_FIELDS, 64), kernels.NO_TS, np.int64)
        self._v_in_amt = np.zeros((kernels.N_IN_FIELDS, 64))
        self._pc = np.zeros((n_win, 64), np.int64)
        self._scr = np.zeros((kernels.N_SCRATCH, 64), np.int64)
        self._ticks = np.zeros(1, np.int64)
        self._tops = np.zeros(4, np.int64)
        self._relist()

    def _account(self, account: str) -> int:
        ix = self.accounts.get(account)
        if ix is None:
            ix = len(self.accounts)
            self.accounts[account] = ix
            if ix >= self._vt.shape[1]:
                self._grow_accounts(2 * self._vt.shape[1])
        return ix

    def _grow_accounts(self, cap: int) -> None:
        def widen(a: np.ndarray, fill: int | float, axis: int = -1) -> np.ndarray:
            shape = list(a.shape)
            shape[axis] = cap - shape[axis]
            return np.concatenate([a, np.full(shape, fill, a.dtype)], axis=axis)

        self._vi = widen(self._vi, 0, axis=1)
        self._vf = widen(self._vf, 0.0, axis=1)
        self._vt = widen(self._vt, kernels.NO_TS)
        self._v_in_amt = widen(self._v_in_amt, 0.0)
        self._scr = widen(self._scr, 0)
        for seg in ("_o_seg", "_n_seg", "_k_seg"):
            setattr(self, seg, widen(getattr(self, seg), 0))  # new accounts: empty lists, moved on first append

    def _pair(self, u: int, v: int) -> int:
        key = (u << 32) | v
        ix = self._pairs.get(key)
        if ix is None:
            ix = len(self._pairs)
            self._pairs[key] = ix
            if ix >= self._pc.shape[1]:
                cap = 2 * self._pc.shape[1]
                pc = np.zeros((self._pc.shape[0], cap), np.int64)
                pc[:, : self._pc.shape[1]] = self._pc
                self._pc = pc
                self._pair_src = np.resize(self._pair_src, cap)
                self._pair_dst = np.resize(self._pair_dst, cap)
                self._p_seg = np.concatenate([self._p_seg, np.zeros((3, cap - self._p_seg.shape[1]), np.int64)], 1)
            self._pair_src[ix] = u
            self._pair_dst[ix] = v
        return ix

    def _compact(self) -> None:
        """Forget edges older than every window and pairs left without edges; grow the buffer if still full."""
        keep = kernels.online_compact(
            self._e_src, self._e_dst, self._e_ts, self._e_amt, self._e_pair, self._e_flags, self._e_cum, self._n,
            self._last_ts - self._plan.lookback_us, self._ev, self._vi,
        )
        self._n -= keep
        n = self._n
        live = np.unique(self._e_pair[:n])
        remap = np.full(len(self._pairs), -1, np.int64)
        remap[live] = np.arange(live.shape[0])
        self._e_pair[:n] = remap[self._e_pair[:n]]
        cap = self._pc.shape[1]
        self._pc = np.concatenate([self._pc[:, live], np.zeros((self._pc.shape[0], cap - live.shape[0]), np.int64)], 1)
        self._pair_src = np.resize(self._pair_src[live], cap)
        self._pair_dst = np.resize(self._pair_dst[live], cap)
        keys = (self._pair_src[: live.shape[0]] << 32) | self._pair_dst[: live.shape[0]]
        self._pairs = dict(zip(keys.tolist(), range(live.shape[0]), strict=True))
        if n >= self._e_src.shape[0] // 2:
            size = 2 * self._e_src.shape[0]
            for name in ("_e_src", "_e_dst", "_e_ts", "_e_amt", "_e_pair", "_e_flags", "_e_cum"):
                a = getattr(self, name)
                b = np.zeros(size, a.dtype)
                b[: a.shape[0]] = a
                setattr(self, name, b)
        self._relist()

    def _relist(self) -> None:
        """Rebuild every list from the stored edges and known pairs, each with room to double."""
        slack = self._e_src.shape[0]
        n_acc = self._vt.shape[1]
        n_pairs = len(self._pairs)
        self._o_seg, self._o_pool, self._tops[0] = kernels.online_relist(self._e_src, self._n, n_acc, slack)
        self._n_seg, self._n_pool, self._tops[1] = kernels.online_relist(self._e_dst, self._n, n_acc, slack)
        self._k_seg, self._k_dst, self._k_pid, self._tops[2] = kernels.online_pair_index(
            self._pair_src[:n_pairs], self._pair_dst[:n_pairs], n_acc, slack
        )
        p_seg, self._p_pool, self._tops[3] = kernels.online_relist(self._e_pair, self._n, n_pairs, slack)
        self._p_seg = np.zeros((3, self._pc.shape[1]), np.int64)
        self._p_seg[:, :n_pairs] = p_seg

    def update(self, src: str, dst: str, ts: dt.datetime | np.datetime64 | int, amount: float) -> np.ndarray:
        """Record one transaction and return its features (`ts` aware datetime or UTC microseconds)."""
        t = _to_us(ts)
        if t < self._last_ts:
            raise ValueError(f"transaction at {t} µs arrived after one at {self._last_ts} µs; feed in time order")
        if self._n == self._e_src.shape[0]:
            self._compact()
        u = self._account(str(src))
        v = self._account(str(dst))
        i = self._n
        self._e_src[i] = u
        self._e_dst[i] = v
        self._e_ts[i] = t
        self._e_amt[i] = amount
        self._e_pair[i] = self._pair(u, v)
        self._e_flags[i] = (  # _edge_flags, one edge at a time
            (kernels.FLAG_ROUND if round(float(amount) * 100.0) % self._plan.round_cents == 0 else 0)
            | (kernels.FLAG_NIGHT if _is_night(self._plan, t) else 0)
        )
        out = np.empty(len(self.feature_names), np.float64)
        plan = self._plan
        while not kernels.online_step(
            i, out, self._e_src, self._e_dst, self._e_ts, self._e_amt, self._e_pair, self._e_flags, self._e_cum,
            plan.windows_us, self._ev, self._vi, self._vf, self._vt, self._v_in_amt, self._pc,
            self._o_seg, self._o_pool, self._n_seg, self._n_pool, self._k_seg, self._k_dst, self._k_pid,
            self._p_seg, self._p_pool, self._tops,
            plan.col_sg, plan.col_tc, plan.col_lc, plan.sg_us, plan.tc_us, plan.lc_us, plan.tc_len, plan.lc_len,
            plan.budget, self._scr, self._ticks,
        ):
            self._relist()  # edge i is not in the lists yet: rebuilding from [0, i) is exact
        _fill_ratios(out.reshape(1, -1), plan.ratios)
        self._n = i + 1
        self._last_ts = t
        return out


class Released(NamedTuple):
    """Transactions a settled scorer has finished with: their arrival positions and feature rows."""

    #: 0-based arrival position of each released transaction (the n-th `update` / row of `extend`)
    index: np.ndarray
    #: one row per released transaction, columns `feature_names`, equal to `GraphFeatures.transform`'s row
    features: np.ndarray


class SettledGraphState:
    """Settled (T+1) scoring of a stream: `GraphFeatures(horizon=H)` one chunk at a time, exactly as in batch.

    Each transaction gets its causal columns on arrival (an `OnlineGraphState`) and waits
    in a buffer; once a transaction at or after ts + H has arrived (the watermark, the
    latest timestamp seen, has reached ts + H), nothing that arrives later can fall in its
    look-ahead window [ts, ts + H), and it is released with its `ahead_*` columns computed
    over the buffered halo. `flush()` releases the rest at the end of a stream; their
    windows are cut at the last transaction, as in a batch over the same data. Rows come
    out in arrival order, equal bit for bit to the batch rows (the look-ahead columns are
    a function of each window alone, see `_ahead`).

    Each release re-reads the halo (the buffered transactions up to H after the released
    ones), so its cost follows the traffic of H plus the released rows: feed chunks (a
    minute, an hour of transactions) rather than single transactions when H is long.
    Memory: the causal state plus the transactions of the last H.
    """

    def __init__(self, extractor: GraphFeatures) -> None:
        settled = extractor._settled()
        if settled is None:
            raise ValueError(f"{extractor.name} has no horizon: score causally with extractor.online()")
        self._settled_cfg = settled
        self._plan = extractor._plan()
        causal = copy.copy(extractor)
        causal.horizon = None
        self._causal = OnlineGraphState(causal)
        self.feature_names: list[str] = list(self._plan.names) + list(settled.names)
        self._n_causal = len(self._plan.names)
        self._seen = 0  # transactions received
        self._done = 0  # transactions released (the buffer holds arrivals _done..)
        self._src = np.zeros(0, np.int64)
        self._dst = np.zeros(0, np.int64)
        self._ts = np.zeros(0, np.int64)
        self._amt = np.zeros(0, np.float64)
        self._feat = np.zeros((0, self._n_causal), np.float64)
        self._size = 0

    @property
    def watermark(self) -> int | None:
        """The latest timestamp seen (UTC microseconds), None before the first transaction."""
        return None if self._seen == 0 else int(self._causal._last_ts)

    @property
    def pending(self) -> int:
        """Transactions received and not yet released."""
        return self._seen - self._done

    def update(self, src: str, dst: str, ts: dt.datetime | np.datetime64 | int, amount: float) -> Released:
        """Record one transaction; release every buffered one whose horizon has now passed."""
        return self.extend([src], [dst], [ts], [amount])

    def extend(
        self, src: Sequence[str], dst: Sequence[str], ts: Sequence[dt.datetime | np.datetime64 | int],
        amount: Sequence[float],
    ) -> Released:
        """Record a chunk of transactions in time order; release every buffered one whose horizon has passed."""
        if not len(src) == len(dst) == len(ts) == len(amount):
            raise ValueError("src, dst, ts and amount must have the same length")
        self._reserve(self._size + len(src))
        for j in range(len(src)):  # the causal state takes one transaction at a time, as in real-time scoring
            n = self._size
            # update() refuses a transaction out of time order before changing anything: the ones
            # before it stay recorded and the state stays usable.
            self._feat[n] = self._causal.update(src[j], dst[j], ts[j], amount[j])
            self._src[n] = self._causal.accounts[str(src[j])]
            self._dst[n] = self._causal.accounts[str(dst[j])]
            self._ts[n] = self._causal._last_ts
            self._amt[n] = amount[j]
            self._size += 1
            self._seen += 1
        if self._size == 0:
            return self._release(0)
        ready = int(np.searchsorted(self._ts[: self._size], self._ts[self._size - 1] - self._settled_cfg.ahead_us,
                                    side="right"))
        return self._release(ready)

    def flush(self) -> Released:
        """Release every buffered transaction (end of the stream): their windows stop at the last one seen."""
        return self._release(self._size)

    def _reserve(self, need: int) -> None:
        cap = self._ts.shape[0]
        if need <= cap:
            return
        cap = max(need, 2 * cap, 64)
        for name in ("_src", "_dst", "_ts", "_amt", "_feat"):
            a = getattr(self, name)
            b = np.zeros((cap, *a.shape[1:]), a.dtype)
            b[: a.shape[0]] = a
            setattr(self, name, b)

    def _release(self, rows: int) -> Released:
        """Score and drop the first `rows` buffered transactions (all with their whole horizon in the buffer)."""
        start = self._done
        if rows == 0:
            return Released(np.zeros(0, np.int64), np.zeros((0, len(self.feature_names))))
        settled = self._settled_cfg
        ts = self._ts[: self._size]
        halo = int(np.searchsorted(ts, ts[rows - 1] + settled.ahead_us, side="left"))
        # Accounts renumbered over the halo: kernel arrays are sized by the accounts they touch.
        ids, inv = np.unique(np.concatenate([self._src[:halo], self._dst[:halo]]), return_inverse=True)
        inv = inv.astype(np.int64).reshape(-1)
        ahead = _ahead(settled, inv[:halo], inv[halo:], ts[:halo], self._amt[:halo], ids.shape[0], rows)
        features = np.hstack([self._feat[:rows], ahead])
        keep = self._size - rows
        for name in ("_src", "_dst", "_ts", "_amt", "_feat"):
            a = getattr(self, name)
            a[:keep] = a[rows: self._size].copy()
        self._size = keep
        self._done += rows
        return Released(np.arange(start, start + rows, dtype=np.int64), features)
