"""Temporal-graph typology miners: the exact transactions of fan, cycle, scatter/gather, bipartite and stack schemes.

Each miner is a `Detector` (kind "miner") that emits one alert per pattern instance:
the instance's transactions and accounts, its hub or origin as the subject, a score
graded by how strongly it matches and reasons in words. All miners look only at
*candidate edges*: transactions of at least `min_amount` CNY between two different
accounts that make at most `max_pair_txns` payments of that size to each other in the
input (cash, the bank's internal accounts and declared payroll runs excluded, see
`_prepare`). That filter carries most of the precision: laundering schemes are wired
from one-off payments between accounts without a history, while everyday money
(salaries, rent, suppliers, family) flows again and again along the same pairs, and
the bulk of shop payments is too small to matter. The counts run over the whole input,
so a batch over a history sees a pair's later payments too.

Heavy lifting is vectorised in Polars (candidate edges, two-hop paths, shared-sender
pairs) and compiled with numba (`_miner_kernels`: windowed fan selection, pass-through
search, time-respecting cycle search, components); there is no Python loop over
transactions, only over emitted instances when their reasons are written.
"""

from __future__ import annotations

import datetime as dt
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa

from tianluo.detect import _miner_kernels as kern
from tianluo.detect.base import DetectInput, Detector, finish_alerts

if TYPE_CHECKING:
    from tianluo.detect.profiles import Profile

#: CAMLMAC suspected-crime code for laundering of other predicates (REGULATIONS §2.1): a
#: miner sees the shape of the money, never the predicate crime.
TOSC_LAUNDERING = "0802"

_US = 1_000_000  # microseconds per second
_EDGE_COLUMNS = ("txn_id", "ts", "src", "dst", "amount", "ccy")


def _col(frame: pl.DataFrame, name: str) -> np.ndarray:
    """A column as a writable, contiguous numpy array: one array type per kernel, so numba compiles each once."""
    return np.require(frame[name].to_numpy(), requirements=["C", "W"])


def _us(window: dt.timedelta) -> int:
    return int(window / dt.timedelta(microseconds=1))


def _ratio_range(retention: tuple[float, float] | None) -> tuple[float, float]:
    """Kernel form of a retention range: (0, inf) switches the amount check off."""
    return (0.0, np.inf) if retention is None else (float(retention[0]), float(retention[1]))


def _passed_on(
    x: pl.Expr, y: pl.Expr, ccy_x: pl.Expr, ccy_y: pl.Expr, retention: tuple[float, float] | None, fx_drift: float
) -> pl.Expr:
    """Whether onward amount y is a `retention` share of x, both in CNY.

    When the two hops are paid in different currencies the band widens by a factor
    (1 + `fx_drift`) either way: the money changed currency at the rates of whoever
    converted it, not at the reference table's (AMLworld's hops drift 5-25 % in CNY).
    """
    if retention is None:
        return pl.lit(True)
    lo, hi = retention
    drift = pl.when(ccy_x != ccy_y).then(1.0 + fx_drift).otherwise(1.0)
    return (y * drift >= lo * x) & (y <= hi * x * drift)


# --- shared preparation ---------------------------------------------------------------------------


@dataclass
class _Edges:
    """Candidate edges of one input, with what every miner needs around them.

    `frame` holds txn_id, ts (µs), src and dst (integer account codes) and amount (CNY);
    `account_ids[code]` is the account id; `activity` holds one sorted key per
    (account, second) of every input transaction of at least `min_amount` (candidate or
    not), to count how busy an account was.
    """

    frame: pl.DataFrame
    account_ids: np.ndarray
    activity: np.ndarray
    t0: int

    def busy(self, account: np.ndarray, ts_start: np.ndarray, ts_end: np.ndarray) -> np.ndarray:
        """Transactions of each account (paying or paid) between ts_start and ts_end inclusive."""
        base = account.astype(np.int64) << 32
        lo = np.searchsorted(self.activity, base + (ts_start - self.t0) // _US, side="left")
        hi = np.searchsorted(self.activity, base + (ts_end - self.t0) // _US, side="right")
        return hi - lo

    def ids(self, codes: pl.Expr) -> pl.Expr:
        return codes.map_batches(lambda s: pl.Series(self.account_ids[s.to_numpy()]), return_dtype=pl.String)


@dataclass
class _Coded:
    """The input with accounts as integer codes (`account_ids[code]` is the id), made once per input.

    `prepared` keeps the candidate edges per filter setting, since miners with the same
    `min_amount`, `max_pair_txns` and internal accounts share them.
    """

    frame: pl.DataFrame
    account_ids: np.ndarray
    enum: pl.Enum
    prepared: dict[tuple[float, int, bytes], _Edges] = field(default_factory=dict)


#: The last input coded, held by weak reference: the miners of one run share one coding of
#: the accounts (and their candidate edges), which on millions of rows costs more than any
#: single miner's search. The entry goes when the input's DataFrame does.
_LAST_CODED: dict[str, tuple[weakref.ref[pl.DataFrame], int, _Coded]] = {}


def _forget(ref: weakref.ref[pl.DataFrame]) -> None:
    entry = _LAST_CODED.get("last")
    if entry is not None and entry[0] is ref:
        del _LAST_CODED["last"]


def _code(tx: pl.DataFrame) -> _Coded:
    """Integer account codes (in sorted id order, so results never depend on row order) and flags.

    `payroll` marks a declared payroll run: purpose `salary` through the batch channel
    (`ach`), the bank's payroll product (代发工资) under a payroll agreement. Such rows
    are not candidates; a payroll that does not match its agreement is a rule's
    business. Undeclared salary-like transfers stay candidates.
    """
    cached = _LAST_CODED.get("last")
    if cached is not None and cached[0]() is tx and cached[1] == tx.height:
        return cached[2]
    purpose = pl.col("purpose") if "purpose" in tx.columns else pl.lit(None, pl.String)
    base = tx.select(
        "txn_id",
        pl.col("ts").dt.epoch("us").alias("ts"),
        "src_account",
        "dst_account",
        pl.col("amount_cny").alias("amount"),
        # Currencies as small integers: the kernels only ask whether two hops share one.
        pl.col("currency").fill_null("").rank("dense").cast(pl.Int64).alias("ccy"),
        (pl.col("channel") == "cash").fill_null(False).alias("cash"),
        ((purpose == "salary") & (pl.col("channel") == "ach")).fill_null(False).alias("payroll"),
    )
    account_ids = pl.concat([base["src_account"], base["dst_account"]]).unique().sort()
    enum = pl.Enum(account_ids)
    frame = base.select(
        "txn_id",
        "ts",
        pl.col("src_account").cast(enum).to_physical().cast(pl.Int64).alias("src"),
        pl.col("dst_account").cast(enum).to_physical().cast(pl.Int64).alias("dst"),
        "amount",
        "ccy",
        "cash",
        "payroll",
    )
    coded = _Coded(frame=frame, account_ids=account_ids.to_numpy(), enum=enum)
    _LAST_CODED["last"] = (weakref.ref(tx, _forget), tx.height, coded)
    return coded


def _prepare(data: DetectInput, min_amount: float, max_pair_txns: int) -> _Edges:
    """Count each (payer, payee) pair and keep the candidate edges.

    Pairs are counted over transactions of at least `min_amount`, so a few coffees at a
    shop do not make its owner a relation. Cash rows and the bank's own internal
    accounts (tills, loan and interest books, where `accounts.type` says so) are never
    candidates: their other side is the bank, not a counterparty, and cash placement
    is the structuring rules' business. Declared payroll runs are not candidates either
    (see `_code`).
    """
    coded = _code(data.transactions)
    internal = np.zeros(0, np.int64)
    if "type" in data.accounts.columns:
        internal = np.sort(
            data.accounts.filter(pl.col("type") == "internal")["account_id"]
            .cast(coded.enum, strict=False)
            .drop_nulls()
            .to_physical()
            .cast(pl.Int64)
            .to_numpy()
        )
    key = (float(min_amount), int(max_pair_txns), internal.tobytes())
    if key not in coded.prepared:
        coded.prepared[key] = _candidates(coded, internal, min_amount, max_pair_txns)
    return coded.prepared[key]


def _candidates(coded: _Coded, internal: np.ndarray, min_amount: float, max_pair_txns: int) -> _Edges:
    c = coded.frame
    t0 = int(c["ts"].min()) if c.height else 0
    large = c.filter(pl.col("amount") >= min_amount).with_columns(pair_txns=pl.len().over("src", "dst"))
    sec = (large["ts"].to_numpy() - t0) // _US
    activity = np.sort(np.concatenate([(large["src"].to_numpy() << 32) + sec, (large["dst"].to_numpy() << 32) + sec]))
    bank_own = pl.Series(internal).implode()
    frame = (
        large.filter(
            (pl.col("src") != pl.col("dst"))
            & (pl.col("pair_txns") <= max_pair_txns)
            & ~pl.col("cash")
            & ~pl.col("payroll")
            & ~pl.col("src").is_in(bank_own)
            & ~pl.col("dst").is_in(bank_own)
        )
        .select(_EDGE_COLUMNS)
        .sort("ts", "txn_id")
    )  # input row order never changes a result
    return _Edges(frame=frame, account_ids=coded.account_ids, activity=activity, t0=t0)


def _group_starts(keys: np.ndarray) -> np.ndarray:
    """Offsets where runs of equal keys begin in a sorted key array, plus the end."""
    cut = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    return np.concatenate([[0], cut, [len(keys)]]).astype(np.int64)


# --- words ----------------------------------------------------------------------------------------


def _yuan(x: float) -> str:
    if x >= 1e6:
        return f"¥{x / 1e6:.1f}M"
    if x >= 1e4:
        return f"¥{x / 1e3:.0f}k"
    return f"¥{x:,.0f}"


def _within(seconds: float) -> str:
    """A span in words; zero means the source recorded one time for all of it (daily stamps)."""
    if seconds <= 0:
        return "at one recorded time"
    if seconds < 2 * 3600:
        return f"within {max(1, round(seconds / 60))} minutes"
    if seconds < 2 * 86400:
        return f"within {round(seconds / 3600)} hours"
    return f"within {round(seconds / 86400)} days"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _of_note(min_amount: float) -> str:
    return f" of {_yuan(min_amount)} or more" if min_amount > 0 else ""


def _history_reason(miner: _Miner, who: str) -> str:
    """Why the pairs count as strangers, in the terms the candidate filter used."""
    payments = f"payment{_of_note(miner.min_amount)}"
    if miner.max_pair_txns == 1:
        return f"{who} had no other {payments} between them in the data (one-off counterparties)"
    return f"{who} made at most {miner.max_pair_txns} {payments}s to each other in the data (little history)"


def _share_reason(miner: _Miner, share: float, hub: str) -> str:
    return f"these payments were {_pct(share)} of {hub}'s transactions{_of_note(miner.min_amount)} in that time"


# --- scores ---------------------------------------------------------------------------------------


def _size_score(n: pl.Expr, n_min: int) -> pl.Expr:
    """0.5 at the minimum size, rising towards 1 as the instance grows."""
    return n / (n + n_min)


def _speed_score(span_us: pl.Expr, window_us: int) -> pl.Expr:
    """1 when everything happened at once, 0 when it took the whole window."""
    return (1 - span_us / max(window_us, 1)).clip(0, 1)


def _consistency_score(amount: pl.Expr) -> pl.Expr:
    """1 for identical amounts, 0 once their coefficient of variation reaches 0.5."""
    return (1 - 2 * amount.std(ddof=0) / amount.mean()).clip(0, 1)


def _retention_score(ratio: pl.Expr) -> pl.Expr:
    """1 when the money passed on in full, 0 once a fifth of it is missing (or added)."""
    return (1 - 5 * (1 - ratio).abs()).clip(0, 1)


# --- output ---------------------------------------------------------------------------------------

_ALERT_BODY_SCHEMA = {
    "subject_type": pl.String,
    "subject_id": pl.String,
    "ts_start": pl.Datetime("us", "UTC"),
    "ts_end": pl.Datetime("us", "UTC"),
    "score": pl.Float64,
    "typology": pl.String,
    "reasons": pl.List(pl.String),
    "txn_ids": pl.List(pl.String),
    "accounts": pl.List(pl.String),
    "amount_cny": pl.Float64,
    "report_kind": pl.String,
    "tosc": pl.String,
}


def _emit(miner: _Miner, members: pl.DataFrame, inst: pl.DataFrame, edges: _Edges) -> pa.Table:
    """Alerts from instance members (inst, txn_id, ts, src, dst, amount) and per-instance rows.

    `inst` carries inst, subject (account code), score and reasons; the evidence lists,
    times and totals are derived from the members here, the same way for every miner.
    """
    if inst.height == 0:
        return finish_alerts(pl.DataFrame(schema=_ALERT_BODY_SCHEMA), miner)
    evidence = (
        members.with_columns(src=edges.ids(pl.col("src")), dst=edges.ids(pl.col("dst")))
        .sort("ts", "txn_id")
        .group_by("inst")
        .agg(
            txn_ids=pl.col("txn_id"),
            accounts=pl.col("src").append(pl.col("dst")).unique().sort(),
            ts_start=pl.col("ts").min(),
            ts_end=pl.col("ts").max(),
            amount_cny=pl.col("amount").sum().round(2),
        )
    )
    body = (
        inst.join(evidence, on="inst")
        .sort("ts_start", "subject", "inst")
        .select(
            subject_type=pl.lit("account"),
            subject_id=edges.ids(pl.col("subject")),
            ts_start=pl.col("ts_start").cast(pl.Datetime("us", "UTC")),
            ts_end=pl.col("ts_end").cast(pl.Datetime("us", "UTC")),
            score=pl.col("score").round(4),
            typology=pl.lit(miner.typology),
            reasons="reasons",
            txn_ids="txn_ids",
            accounts="accounts",
            amount_cny="amount_cny",
            report_kind=pl.lit("suspicious"),
            tosc=pl.lit(TOSC_LAUNDERING),
        )
    )
    return finish_alerts(body, miner)


class _Miner(Detector):
    """What every miner shares: the candidate-edge filter, `typology` (the alerts' typology) and `kind`."""

    kind = "miner"
    typology = ""

    def __init__(self, min_amount: float, max_pair_txns: int) -> None:
        if max_pair_txns < 1:
            raise ValueError(f"{self.name}: max_pair_txns must be at least 1 (got {max_pair_txns})")
        self.min_amount = min_amount
        self.max_pair_txns = max_pair_txns

    def _edges(self, data: DetectInput) -> _Edges:
        return _prepare(data, self.min_amount, self.max_pair_txns)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


# --- fan-in and fan-out ---------------------------------------------------------------------------


class _FanMiner(_Miner):
    """Many one-off counterparties paying (fan-in) or paid by (fan-out) one hub within a window.

    Per hub the kernel searches each window for the largest set of candidate edges whose
    amounts lie within `max_amount_ratio` of each other (a scheme moves a chosen sum in
    alike parts, everyday inflows vary widely) and takes windows best first without
    reusing an edge. With `quick_min_fan`, a second pass over the edges left accepts as
    few as that many counterparties when they all fall within `quick_window`: timing,
    not size, is what makes such a fan suspicious. An instance is kept when its edges are at least `min_hub_share` of
    the hub's transactions of at least `min_amount` over the instance's span: a fan
    hidden in a busy firm's turnover or an employer's payroll is the turnover or the
    payroll (payees paid once among colleagues paid every month).
    """

    direction = "in"
    version = "1"

    def __init__(
        self,
        window: dt.timedelta = dt.timedelta(days=7),
        min_fan: int = 5,
        max_fan: int = 30,
        max_amount_ratio: float | None = 1.5,
        min_hub_share: float = 0.3,
        quick_min_fan: int | None = None,
        quick_window: dt.timedelta = dt.timedelta(hours=12),
        min_amount: float = 1_000.0,
        max_pair_txns: int = 1,
    ) -> None:
        super().__init__(min_amount, max_pair_txns)
        if quick_min_fan is not None and not 2 <= quick_min_fan <= min_fan:
            raise ValueError(f"need 2 <= quick_min_fan <= min_fan (got {quick_min_fan}, {min_fan})")
        self.window = window
        self.min_fan = min_fan
        self.max_fan = max_fan
        self.max_amount_ratio = max_amount_ratio
        self.min_hub_share = min_hub_share
        self.quick_min_fan = quick_min_fan
        self.quick_window = quick_window

    def detect(self, data: DetectInput) -> pa.Table:
        edges = self._edges(data)
        hub, other = ("dst", "src") if self.direction == "in" else ("src", "dst")
        f = edges.frame.sort(hub, "ts", "txn_id")
        window = _us(self.window)
        ratio = np.inf if self.max_amount_ratio is None else float(self.max_amount_ratio)
        label = np.full(f.height, -1, np.int64)
        passes = [(window, self.min_fan)]
        if self.quick_min_fan is not None:
            # Fewer counterparties count when they all come within a short time: AMLworld's fans often have 2-4.
            passes.append((_us(self.quick_window), self.quick_min_fan))
        for span, fewest in passes:
            kern.fan_instances(
                _group_starts(_col(f, hub)),
                _col(f, "ts"),
                _col(f, "amount"),
                _col(f, other),
                span,
                fewest,
                self.max_fan,
                ratio,
                label,
            )
        members = f.with_columns(inst=pl.Series(label)).filter(pl.col("inst") >= 0)
        inst = members.group_by("inst").agg(
            subject=pl.col(hub).first(),
            fan=pl.col(other).n_unique(),
            n=pl.len(),
            t_first=pl.col("ts").min(),
            t_last=pl.col("ts").max(),
            total=pl.col("amount").sum(),
            low=pl.col("amount").min(),
            high=pl.col("amount").max(),
            consistency=_consistency_score(pl.col("amount")),
        )
        busy = edges.busy(inst["subject"].to_numpy(), inst["t_first"].to_numpy(), inst["t_last"].to_numpy())
        inst = inst.with_columns(share=pl.col("n") / pl.Series(busy)).filter(pl.col("share") >= self.min_hub_share)
        inst = inst.with_columns(
            score=(
                _size_score(pl.col("fan"), self.min_fan)
                + pl.col("consistency")
                + _speed_score(pl.col("t_last") - pl.col("t_first"), window)
                + pl.col("share")
            )
            / 4
        )
        members = members.filter(pl.col("inst").is_in(inst["inst"].implode()))
        return _emit(self, members, inst.with_columns(reasons=self._reasons(inst, edges)), edges)

    def _reasons(self, inst: pl.DataFrame, edges: _Edges) -> pl.Series:
        out = []
        hubs = edges.account_ids[inst["subject"].to_numpy()] if inst.height else []
        for r, hub in zip(inst.iter_rows(named=True), hubs, strict=True):
            span = _within((r["t_last"] - r["t_first"]) / _US)
            if self.direction == "in":
                first = f"{r['fan']} accounts paid {hub} {span}, {_yuan(r['total'])} in total"
                who = "the payers and the hub"
            else:
                first = f"{hub} paid {r['fan']} accounts {span}, {_yuan(r['total'])} in total"
                who = "the hub and the payees"
            reasons = [first]
            if self.max_amount_ratio is not None:
                reasons.append(f"the amounts were alike: {_yuan(r['low'])} to {_yuan(r['high'])} each")
            reasons.append(_history_reason(self, who))
            reasons.append(_share_reason(self, r["share"], hub))
            out.append(reasons)
        return pl.Series("reasons", out, dtype=pl.List(pl.String))


class FanInMiner(_FanMiner):
    """Fan-in (多对一汇集): at least `min_fan` one-off payers pay one hub alike sums within `window`."""

    name = "miner_fan_in"
    typology = "fan_in"
    direction = "in"


class FanOutMiner(_FanMiner):
    """Fan-out (一对多分散): one hub pays at least `min_fan` one-off payees alike sums within `window`."""

    name = "miner_fan_out"
    typology = "fan_out"
    direction = "out"


# --- cycles ---------------------------------------------------------------------------------------


class CycleMiner(_Miner):
    """Temporal cycles (循环转账): money that leaves an account and comes back to it through 2+ others.

    The kernel runs a depth-first search from every candidate edge, following only edges
    not earlier than the previous hop (`ordered`), inside `window` of the first hop, at
    most `max_hops` long, and each hop passing on a `retention` share of what the
    previous hop carried (a ring that pays itself back keeps the sum, less fees). Each
    cycle is reported once, from its earliest edge, not once per rotation. With
    `ordered=False` the hops only have to fall inside the window (length-constrained
    cycles): for sources that stamp whole days, or that record the hops out of order,
    like AMLSim. A hop paid in another currency than the one before may drift a further
    (1 + `fx_drift`) from the retention band (AMLworld's rings change currency at
    every hop).

    Each ring is reported once: cycles that share a transaction (one ring found through
    a chord, a shorter loop inside a longer one) keep only the best-scoring one, and the
    kept cycles over the same accounts within `window` of each other (the ring turning
    again) become one alert. An alert never joins cycles without the same account set,
    so it never mixes unrelated attempts.
    """

    name = "miner_cycle"
    version = "2"
    typology = "cycle"

    def __init__(
        self,
        window: dt.timedelta = dt.timedelta(days=7),
        min_hops: int = 3,
        max_hops: int = 8,
        ordered: bool = True,
        retention: tuple[float, float] | None = (0.8, 1.02),
        fx_drift: float = 0.0,
        min_amount: float = 1_000.0,
        max_pair_txns: int = 1,
    ) -> None:
        super().__init__(min_amount, max_pair_txns)
        if not 2 <= min_hops <= max_hops:
            raise ValueError(f"{self.name}: need 2 <= min_hops <= max_hops (got {min_hops}, {max_hops})")
        self.window = window
        self.min_hops = min_hops
        self.max_hops = max_hops
        self.ordered = ordered
        self.retention = retention
        self.fx_drift = fx_drift

    def detect(self, data: DetectInput) -> pa.Table:
        edges = self._edges(data)
        f = edges.frame.sort("src", "ts", "txn_id")
        src = _col(f, "src")
        out_start = np.searchsorted(src, np.arange(len(edges.account_ids) + 1)).astype(np.int64)
        window = _us(self.window)
        lo, hi = _ratio_range(self.retention)
        cycles = kern.cycle_instances(
            src,
            _col(f, "dst"),
            _col(f, "ts"),
            _col(f, "amount"),
            _col(f, "ccy"),
            out_start,
            window,
            self.min_hops,
            self.max_hops,
            self.ordered,
            lo,
            hi,
            float(self.fx_drift),
        )
        hop = np.tile(np.arange(self.max_hops), len(cycles))
        cycle_of = np.repeat(np.arange(len(cycles)), self.max_hops)
        keep = cycles.ravel() >= 0
        members = f[cycles.ravel()[keep]].with_columns(cycle=pl.Series(cycle_of[keep]), hop=pl.Series(hop[keep]))
        found = (
            members.sort("cycle", "hop")
            .group_by("cycle", maintain_order=True)
            .agg(
                subject=pl.col("src").first(),
                hops=pl.len(),
                path=pl.col("src"),
                t_first=pl.col("ts").min(),
                t_last=pl.col("ts").max(),
                sent=pl.col("amount").first(),
                returned=pl.col("amount").last(),
            )
            .with_columns(
                score=(
                    _size_score(pl.col("hops"), self.min_hops)
                    + _retention_score(pl.col("returned") / pl.col("sent"))
                    + _speed_score(pl.col("t_last") - pl.col("t_first"), window)
                )
                / 3
            )
        )
        # One ring, one report: best-scoring cycles first, none sharing a transaction with a kept one.
        order = found.sort(["score", "hops", "t_first", "cycle"], descending=[True, True, False, False])["cycle"]
        taken = kern.disjoint_rows(cycles, np.require(order.to_numpy(), np.int64, "C"), f.height)
        found = found.filter(pl.Series(taken, dtype=pl.Boolean).gather(found["cycle"]))
        # The same accounts turning again within the window: one ring, one alert.
        found = (
            found.with_columns(ring=pl.col("path").list.sort().cast(pl.List(pl.String)).list.join(","))
            .sort("ring", "t_first", "cycle")
            .with_columns(
                turn=((pl.col("t_first") - pl.col("t_last").shift(1)).fill_null(0) > window).cum_sum().over("ring")
            )
        )
        link = (
            found.select("ring", "turn", "cycle")
            .with_columns(inst=pl.struct("ring", "turn").rank("dense").cast(pl.Int64))
            .select("cycle", "inst")
        )
        inst = (
            found.join(link, on="cycle")
            .sort("inst", "score", "cycle", descending=[False, True, False])
            .group_by("inst", maintain_order=True)
            .agg(
                pl.col("subject", "hops", "path", "sent", "returned").first(),
                t_first=pl.col("t_first").min(),
                t_last=pl.col("t_last").max(),
                score=pl.col("score").max(),
                turns=pl.len(),
            )
        )
        members = members.join(link, on="cycle").drop("cycle", "hop")
        return _emit(self, members, inst.with_columns(reasons=self._reasons(inst, edges)), edges)

    def _reasons(self, inst: pl.DataFrame, edges: _Edges) -> pl.Series:
        out = []
        for r in inst.iter_rows(named=True):
            path = edges.account_ids[np.array([*r["path"], r["subject"]])]
            origin = path[0]
            reasons = [
                f"{_yuan(r['sent'])} left {origin} and came back to it through {r['hops'] - 1} other accounts "
                f"{_within((r['t_last'] - r['t_first']) / _US)}: {' → '.join(path)}",
                f"{_yuan(r['returned'])} ({_pct(r['returned'] / r['sent'])}) of it returned",
            ]
            if r["turns"] > 1:
                reasons.append(f"the ring turned {r['turns']} times {_within((r['t_last'] - r['t_first']) / _US)}")
            if self.ordered:
                reasons.append("no hop went out before the money had come in")
            reasons.append(_history_reason(self, "each pair of neighbours on the ring"))
            out.append(reasons)
        return pl.Series("reasons", out, dtype=pl.List(pl.String))


# --- scatter-gather -------------------------------------------------------------------------------


class ScatterGatherMiner(_Miner):
    """Scatter-gather (分散-汇集): a source pays several intermediaries, each of which passes the money on to one sink.

    Two-hop paths source → intermediary → sink are found with one vectorised join: the
    onward hop follows the first within `hop_window` and carries a `retention` share of
    it (a further `fx_drift` either way when the two hops are in different currencies).
    Paths are grouped by (source, sink) into runs no longer than `window`; a run
    through at least `min_width` distinct intermediaries is an instance. Subject: the source.
    """

    name = "miner_scatter_gather"
    version = "1"
    typology = "scatter_gather"

    def __init__(
        self,
        window: dt.timedelta = dt.timedelta(days=7),
        hop_window: dt.timedelta = dt.timedelta(days=3),
        min_width: int = 3,
        max_width: int = 30,
        retention: tuple[float, float] | None = (0.8, 1.02),
        fx_drift: float = 0.0,
        min_amount: float = 1_000.0,
        max_pair_txns: int = 1,
    ) -> None:
        super().__init__(min_amount, max_pair_txns)
        self.window = window
        self.hop_window = hop_window
        self.min_width = min_width
        self.max_width = max_width
        self.retention = retention
        self.fx_drift = fx_drift

    def detect(self, data: DetectInput) -> pa.Table:
        edges = self._edges(data)
        e = edges.frame
        first = e.select(
            pl.col("txn_id").alias("txn1"),
            pl.col("src").alias("source"),
            pl.col("dst").alias("mid"),
            pl.col("ts").alias("t1"),
            pl.col("amount").alias("x"),
            pl.col("ccy").alias("cx"),
        )
        second = e.select(
            pl.col("txn_id").alias("txn2"),
            pl.col("src").alias("mid"),
            pl.col("dst").alias("sink"),
            pl.col("ts").alias("t2"),
            pl.col("amount").alias("y"),
            pl.col("ccy").alias("cy"),
        )
        paths = (
            first.join(second, on="mid")
            .filter(
                (pl.col("sink") != pl.col("source"))
                & (pl.col("t2") >= pl.col("t1"))
                & (pl.col("t2") - pl.col("t1") <= _us(self.hop_window))
                & _passed_on(pl.col("x"), pl.col("y"), pl.col("cx"), pl.col("cy"), self.retention, self.fx_drift)
            )
            # One path per intermediary and (source, sink): its earliest.
            .sort("source", "sink", "t1", "t2", "txn1", "txn2")
            .unique(["source", "sink", "mid"], keep="first", maintain_order=True)
        )
        window = _us(self.window)
        runs = paths.with_columns(
            run=((pl.col("t1") - pl.col("t1").shift(1).over("source", "sink")).fill_null(0) > window)
            .cum_sum()
            .over("source", "sink")
        )
        inst = (
            runs.group_by("source", "sink", "run")
            .agg(
                width=pl.len(),
                t_first=pl.col("t1").min(),
                t_scattered=pl.col("t1").max(),
                t_last=pl.col("t2").max(),
                sent=pl.col("x").sum(),
                passed=pl.col("y").sum(),
            )
            .filter(
                pl.col("width").is_between(self.min_width, self.max_width)
                & (pl.col("t_last") - pl.col("t_first") <= window)
            )
            .sort("source", "sink", "run")
            .with_row_index("inst")
            .with_columns(pl.col("inst").cast(pl.Int64))
        )
        inst = inst.with_columns(
            subject=pl.col("source"),
            score=(
                _size_score(pl.col("width"), self.min_width)
                + _retention_score(pl.col("passed") / pl.col("sent"))
                + _speed_score(pl.col("t_last") - pl.col("t_first"), window)
            )
            / 3,
        )
        chosen = runs.join(inst.select("source", "sink", "run", "inst"), on=["source", "sink", "run"])
        members = pl.concat(
            [
                chosen.select("inst", txn_id="txn1", ts="t1", src="source", dst="mid", amount="x"),
                chosen.select("inst", txn_id="txn2", ts="t2", src="mid", dst="sink", amount="y"),
            ]
        )
        return _emit(self, members, inst.with_columns(reasons=self._reasons(inst, edges)), edges)

    def _reasons(self, inst: pl.DataFrame, edges: _Edges) -> pl.Series:
        out = []
        for r in inst.iter_rows(named=True):
            source, sink = edges.account_ids[[r["source"], r["sink"]]]
            out.append(
                [
                    f"{source} paid {r['width']} accounts {_yuan(r['sent'])} "
                    f"{_within((r['t_scattered'] - r['t_first']) / _US)}, and each of them passed the money on to "
                    f"{sink}: {_yuan(r['passed'])} ({_pct(r['passed'] / r['sent'])}) arrived there "
                    f"{_within((r['t_last'] - r['t_first']) / _US)} of the first payment",
                    *(
                        []
                        if self.retention is None
                        else [
                            f"every intermediary passed on {_pct(self.retention[0])}-{_pct(self.retention[1])} "
                            f"of what it got within {_within(self.hop_window.total_seconds()).removeprefix('within ')}"
                        ]
                    ),
                    _history_reason(self, "each payer and payee"),
                ]
            )
        return pl.Series("reasons", out, dtype=pl.List(pl.String))


# --- gather-scatter -------------------------------------------------------------------------------


class GatherScatterMiner(_Miner):
    """Gather-scatter (汇集-分散): a hub collects from many one-off payers, then pays the sum out to many payees.

    Per hub the kernel tries every outflow as the turn: the latest inflows within
    `gather_window` before it, and the longest run of outflows within `scatter_window`
    after it whose total stays under `retention[1]` of the inflows while reaching
    `retention[0]` of them — a pass-through account keeps nothing. With `retention=None` every
    outflow in the scatter window is taken and amounts are not compared. More than
    `max_in` payers or `max_out` payees is turnover or a payroll, not a scheme. Inflows up
    to `interleave` after the turn count too: AMLworld's hubs start paying out before the
    last payer has paid. An instance is kept when its edges are at least `min_hub_share` of the hub's transactions of at
    least `min_amount` over its span.
    """

    name = "miner_gather_scatter"
    version = "1"
    typology = "gather_scatter"

    def __init__(
        self,
        gather_window: dt.timedelta = dt.timedelta(days=7),
        scatter_window: dt.timedelta = dt.timedelta(days=5),
        min_in: int = 3,
        max_in: int = 30,
        min_out: int = 3,
        max_out: int = 30,
        retention: tuple[float, float] | None = (0.8, 1.02),
        min_hub_share: float = 0.5,
        interleave: dt.timedelta | None = None,
        min_amount: float = 1_000.0,
        max_pair_txns: int = 1,
    ) -> None:
        super().__init__(min_amount, max_pair_txns)
        self.interleave = interleave
        self.gather_window = gather_window
        self.scatter_window = scatter_window
        self.min_in = min_in
        self.max_in = max_in
        self.min_out = min_out
        self.max_out = max_out
        self.retention = retention
        self.min_hub_share = min_hub_share

    def detect(self, data: DetectInput) -> pa.Table:
        edges = self._edges(data)
        e = edges.frame
        both = pl.concat(
            [
                e.with_columns(hub=pl.col("dst"), other=pl.col("src"), is_out=pl.lit(False)),
                e.with_columns(hub=pl.col("src"), other=pl.col("dst"), is_out=pl.lit(True)),
            ]
        ).sort("hub", "ts", "is_out", "txn_id")
        lo, hi = _ratio_range(self.retention)
        label = kern.gather_scatter_instances(
            _group_starts(_col(both, "hub")),
            _col(both, "ts"),
            _col(both, "amount"),
            _col(both, "is_out"),
            _us(self.gather_window),
            _us(self.scatter_window),
            _us(self.interleave) if self.interleave else 0,
            self.min_in,
            self.max_in,
            self.min_out,
            self.max_out,
            lo,
            hi,
        )
        members = both.with_columns(inst=pl.Series(label)).filter(pl.col("inst") >= 0)
        inst = members.group_by("inst").agg(
            subject=pl.col("hub").first(),
            n=pl.len(),
            n_in=(~pl.col("is_out")).sum(),
            n_out=pl.col("is_out").sum(),
            t_first=pl.col("ts").min(),
            t_turn=pl.col("ts").filter(pl.col("is_out")).min(),
            t_gathered=pl.col("ts").filter(~pl.col("is_out")).max(),
            t_last=pl.col("ts").max(),
            gathered=pl.col("amount").filter(~pl.col("is_out")).sum(),
            scattered=pl.col("amount").filter(pl.col("is_out")).sum(),
        )
        busy = edges.busy(inst["subject"].to_numpy(), inst["t_first"].to_numpy(), inst["t_last"].to_numpy())
        inst = inst.with_columns(share=pl.col("n") / pl.Series(busy)).filter(pl.col("share") >= self.min_hub_share)
        window = _us(self.gather_window) + _us(self.scatter_window)
        inst = inst.with_columns(
            score=(
                _size_score(pl.col("n"), self.min_in + self.min_out)
                + _retention_score(pl.col("scattered") / pl.col("gathered"))
                + _speed_score(pl.col("t_last") - pl.col("t_first"), window)
                + pl.col("share")
            )
            / 4
        )
        members = members.filter(pl.col("inst").is_in(inst["inst"].implode()))
        return _emit(self, members, inst.with_columns(reasons=self._reasons(inst, edges)), edges)

    def _reasons(self, inst: pl.DataFrame, edges: _Edges) -> pl.Series:
        out = []
        hubs = edges.account_ids[inst["subject"].to_numpy()] if inst.height else []
        for r, hub in zip(inst.iter_rows(named=True), hubs, strict=True):
            out.append(
                [
                    f"{r['n_in']} accounts paid {hub} {_within((r['t_gathered'] - r['t_first']) / _US)}, "
                    f"{_yuan(r['gathered'])} in total, then it paid {_yuan(r['scattered'])} "
                    f"({_pct(r['scattered'] / r['gathered'])}) to {r['n_out']} accounts "
                    f"{_within((r['t_last'] - r['t_turn']) / _US)}",
                    _history_reason(self, "the hub and its counterparties"),
                    _share_reason(self, r["share"], hub),
                ]
            )
        return pl.Series("reasons", out, dtype=pl.List(pl.String))


# --- bipartite and stack --------------------------------------------------------------------------


def _bipartite_layers(
    edges: _Edges, window: int, max_side: int, complete_blocks: bool = True
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Bipartite layers among the candidate edges, and which pairs of them stack.

    An edge s → r belongs to a layer when another sender pays both r and another
    receiver that s pays too, within `window` (a complete 2×2 block, the footprint of
    a bipartite scheme). Blocks sharing an edge form one layer, found by union-find
    over edges, so an account reused by schemes weeks apart does not glue them
    together. Accounts paying or paid by more than 4 × `max_side` candidate counterparties
    within the window around an edge (payment processors, clearing accounts) are left out
    first: they would cost a quadratic self-join and wire unrelated payers into blocks.

    With `complete_blocks=False` a layer is looser: edges are joined when they share a
    sender or a receiver within `window` (each to the account's next one), and a
    component is a layer when no account in it both pays and is paid. AMLworld's
    bipartite attempts are such partial layers, not complete blocks.

    Returns the layer edges (with `layer`, its id) and the stacked pairs (`first`,
    `second`): layers where the receivers of the first are exactly the senders of the
    second, which starts no earlier than the first.
    """
    e = edges.frame
    sec = (e["ts"].to_numpy() - edges.t0) // _US
    w = window // _US
    keep = np.ones(e.height, bool)
    for col in ("src", "dst"):
        keys = (e[col].to_numpy() << 32) + sec
        ordered = np.sort(keys)
        degree = np.searchsorted(ordered, keys + w, side="right") - np.searchsorted(ordered, keys - w, side="left")
        keep &= degree <= 4 * max_side
    e = e.filter(pl.Series(keep, dtype=pl.Boolean)).with_row_index("edge").with_columns(pl.col("edge").cast(pl.Int64))
    layers = _complete_blocks(e, window) if complete_blocks else _partial_layers(e, window)
    sides = layers.group_by("layer").agg(
        senders=pl.col("src").unique().sort().cast(pl.String).str.join(","),
        receivers=pl.col("dst").unique().sort().cast(pl.String).str.join(","),
        t_first=pl.col("ts").min(),
    )
    stacked = (
        sides.select("layer", "receivers", "t_first")
        .join(sides.select(second="layer", receivers="senders", t_second="t_first"), on="receivers")
        .filter(pl.col("t_second") >= pl.col("t_first"))
        .sort("layer", "t_second", "second")
        .unique("layer", keep="first", maintain_order=True)
        .unique("second", keep="first", maintain_order=True)
        .select(first="layer", second="second")
    )
    return layers, stacked


def _partial_layers(e: pl.DataFrame, window: int) -> pl.DataFrame:
    """Components of edges sharing a sender or a receiver within `window`, where no account both pays and is paid."""
    a, b = [], []
    for col in ("src", "dst"):
        g = e.sort(col, "ts", "edge")
        near = (g[col][1:] == g[col][:-1]) & ((g["ts"][1:] - g["ts"][:-1]) <= window)
        a.append(g["edge"][:-1].filter(near).to_numpy())
        b.append(g["edge"][1:].filter(near).to_numpy())
    label = kern.components(e.height, np.concatenate(a).astype(np.int64), np.concatenate(b).astype(np.int64))
    layers = e.with_columns(layer=pl.Series(label)).filter(pl.len().over("layer") >= 2)
    both = layers.group_by("layer").agg(
        mixed=pl.col("src").is_in(pl.col("dst").implode()).any(),
    )
    return layers.join(both.filter(~pl.col("mixed")).select("layer"), on="layer").drop("edge")


def _complete_blocks(e: pl.DataFrame, window: int) -> pl.DataFrame:
    """Layers made of complete 2×2 blocks (another sender pays both receivers), joined where blocks share an edge."""
    pairs = (
        e.select("edge", "src", "dst", "ts")
        .join(
            e.select(pl.col("edge").alias("edge2"), "src", pl.col("dst").alias("dst2"), pl.col("ts").alias("ts2")),
            on="src",
        )
        .filter((pl.col("dst") < pl.col("dst2")) & ((pl.col("ts") - pl.col("ts2")).abs() <= window))
    )
    blocks = (
        pairs.group_by("dst", "dst2")
        .agg("src", "edge", "edge2")
        .filter(pl.col("src").list.n_unique() >= 2)
        .select(members=pl.concat_list("edge", "edge2"))
        .with_row_index("block")
        .explode("members")
    )
    first = blocks.group_by("block").agg(root=pl.col("members").first())
    links = blocks.join(first, on="block")
    label = kern.components(e.height, _col(links, "members"), _col(links, "root"))
    in_block = pl.col("edge").is_in(links["members"].implode())
    return e.with_columns(layer=pl.Series(label)).filter(in_block).drop("edge")


class BipartiteMiner(_Miner):
    """Bipartite (二部图转账): several one-off senders each pay several receivers alike sums within a window.

    Layers are found as in `_bipartite_layers`; a layer with `min_senders`..`max_side`
    senders and `min_receivers`..`max_side` receivers, at least `min_density` of the
    possible sender-receiver payments present, amounts within `max_amount_ratio` of
    each other and all of it inside `window`, is an instance. With
    `complete_blocks=False` layers need not be complete blocks (`min_density` then says
    how partial they may be). Subject: the receiver that got the most. A layer whose
    receivers pass the money on as a second layer is a stack, left to `StackMiner`.
    """

    name = "miner_bipartite"
    version = "1"
    typology = "bipartite"

    def __init__(
        self,
        window: dt.timedelta = dt.timedelta(days=7),
        min_senders: int = 2,
        min_receivers: int = 2,
        max_side: int = 10,
        min_density: float = 0.8,
        max_amount_ratio: float | None = 1.5,
        complete_blocks: bool = True,
        min_amount: float = 1_000.0,
        max_pair_txns: int = 1,
    ) -> None:
        super().__init__(min_amount, max_pair_txns)
        self.complete_blocks = complete_blocks
        self.window = window
        self.min_senders = min_senders
        self.min_receivers = min_receivers
        self.max_side = max_side
        self.min_density = min_density
        self.max_amount_ratio = max_amount_ratio

    def detect(self, data: DetectInput) -> pa.Table:
        edges = self._edges(data)
        window = _us(self.window)
        layers, stacked = _bipartite_layers(edges, window, self.max_side, self.complete_blocks)
        in_stack = pl.concat([stacked["first"], stacked["second"]]).implode()
        members = layers.filter(~pl.col("layer").is_in(in_stack)).rename({"layer": "inst"})
        ratio = np.inf if self.max_amount_ratio is None else self.max_amount_ratio
        stats = (
            members.group_by("inst")
            .agg(
                n=pl.len(),
                n_send=pl.col("src").n_unique(),
                n_recv=pl.col("dst").n_unique(),
                t_first=pl.col("ts").min(),
                t_last=pl.col("ts").max(),
                total=pl.col("amount").sum(),
                low=pl.col("amount").min(),
                high=pl.col("amount").max(),
                consistency=_consistency_score(pl.col("amount")),
            )
            .with_columns(density=pl.col("n") / (pl.col("n_send") * pl.col("n_recv")))
            .filter(
                pl.col("n_send").is_between(self.min_senders, self.max_side)
                & pl.col("n_recv").is_between(self.min_receivers, self.max_side)
                & (pl.col("density") >= self.min_density)
                & (pl.col("high") <= ratio * pl.col("low"))
                & (pl.col("t_last") - pl.col("t_first") <= window)
            )
        )
        top = (
            members.group_by("inst", "dst")
            .agg(got=pl.col("amount").sum())
            .sort("inst", "got", "dst", descending=[False, True, False])
            .group_by("inst", maintain_order=True)
            .first()
            .select("inst", subject="dst")
        )
        inst = stats.join(top, on="inst").with_columns(
            score=(
                _size_score(pl.col("n"), self.min_senders * self.min_receivers)
                + pl.col("density").clip(0, 1)
                + pl.col("consistency")
                + _speed_score(pl.col("t_last") - pl.col("t_first"), window)
            )
            / 4
        )
        members = members.filter(pl.col("inst").is_in(inst["inst"].implode()))
        return _emit(self, members, inst.with_columns(reasons=self._reasons(inst)), edges)

    def _reasons(self, inst: pl.DataFrame) -> pl.Series:
        out = []
        for r in inst.iter_rows(named=True):
            out.append(
                [
                    (
                        f"{r['n_send']} accounts each paid the same {r['n_recv']} accounts "
                        if self.complete_blocks
                        else f"{r['n_send']} accounts paid {r['n_recv']} accounts, none of them both paying and paid "
                    )
                    + f"({r['n']} of {r['n_send'] * r['n_recv']} possible payments) "
                    f"{_within((r['t_last'] - r['t_first']) / _US)}, {_yuan(r['total'])} in total",
                    *(
                        []
                        if self.max_amount_ratio is None
                        else [f"the amounts were alike: {_yuan(r['low'])} to {_yuan(r['high'])} each"]
                    ),
                    _history_reason(self, "each sender and receiver"),
                ]
            )
        return pl.Series("reasons", out, dtype=pl.List(pl.String))


class StackMiner(_Miner):
    """Stack (多层二部图): senders pay a middle layer in a bipartite block, and the middles pay on in a second one.

    Pairs of stacked layers come from `_bipartite_layers` (the first layer's receivers
    are exactly the second's senders). An instance needs `min_side`..`max_side` accounts
    on each of the three sides, `min_density` in each layer, first-layer amounts within
    `max_amount_ratio`, every middle paying out only after it was last paid and
    passing on a `retention` share of what it got, all inside `window`. Subject: the
    middle account that received the most.

    With `chains=True` a stack is AMLworld's shape instead: parallel two-hop chains
    A → B → C whose middle B paid on within `hop_window` what it got (`retention`, a
    further `fx_drift` across a currency change) and is a conduit (at most
    `max_middle_edges` candidate edges around the hop), grouped where they share an
    account; `min_chains`..`max_side` chains make an instance.
    """

    name = "miner_stack"
    version = "1"
    typology = "stack"

    def __init__(
        self,
        window: dt.timedelta = dt.timedelta(days=10),
        min_side: int = 2,
        max_side: int = 10,
        min_density: float = 0.8,
        max_amount_ratio: float | None = 1.5,
        retention: tuple[float, float] | None = (0.8, 1.02),
        chains: bool = False,
        hop_window: dt.timedelta = dt.timedelta(days=3),
        min_chains: int = 2,
        fx_drift: float = 0.0,
        max_middle_edges: int = 4,
        min_amount: float = 1_000.0,
        max_pair_txns: int = 1,
    ) -> None:
        super().__init__(min_amount, max_pair_txns)
        if max_middle_edges < 2:
            raise ValueError(f"max_middle_edges must be at least 2 (got {max_middle_edges})")
        self.window = window
        self.min_side = min_side
        self.max_side = max_side
        self.min_density = min_density
        self.max_amount_ratio = max_amount_ratio
        self.retention = retention
        self.chains = chains
        self.hop_window = hop_window
        self.min_chains = min_chains
        self.fx_drift = fx_drift
        self.max_middle_edges = max_middle_edges

    def detect(self, data: DetectInput) -> pa.Table:
        if self.chains:
            return self._detect_chains(data)
        edges = self._edges(data)
        window = _us(self.window)
        layers, stacked = _bipartite_layers(edges, window, self.max_side)
        members = pl.concat(
            [
                layers.join(stacked.select(layer="first", inst="first"), on="layer").with_columns(level=pl.lit(1)),
                layers.join(stacked.select(layer="second", inst="first"), on="layer").with_columns(level=pl.lit(2)),
            ]
        ).drop("layer")
        lo, hi = _ratio_range(self.retention)
        one, two = pl.col("level") == 1, pl.col("level") == 2
        per_mid = (
            members.with_columns(mid=pl.when(one).then("dst").otherwise("src"))
            .group_by("inst", "mid")
            .agg(
                got=pl.col("amount").filter(one).sum(),
                paid=pl.col("amount").filter(two).sum(),
                t_in=pl.col("ts").filter(one).max(),
                t_out=pl.col("ts").filter(two).min(),
            )
            .with_columns(
                ok=(pl.col("t_out") >= pl.col("t_in"))
                & (pl.col("paid") >= lo * pl.col("got"))
                & (pl.col("paid") <= hi * pl.col("got"))
            )
        )
        ratio = np.inf if self.max_amount_ratio is None else self.max_amount_ratio
        stats = (
            members.group_by("inst")
            .agg(
                n=pl.len(),
                n_first=pl.col("src").filter(one).n_unique(),
                n_mid=pl.col("dst").filter(one).n_unique(),
                n_last=pl.col("dst").filter(two).n_unique(),
                n1=one.sum(),
                n2=two.sum(),
                t_first=pl.col("ts").min(),
                t_layer1=pl.col("ts").filter(one).max(),
                t_layer2=pl.col("ts").filter(two).min(),
                t_last=pl.col("ts").max(),
                sent=pl.col("amount").filter(one).sum(),
                passed=pl.col("amount").filter(two).sum(),
                low=pl.col("amount").filter(one).min(),
                high=pl.col("amount").filter(one).max(),
                consistency=_consistency_score(pl.col("amount").filter(one)),
            )
            .join(per_mid.group_by("inst").agg(mids_ok=pl.col("ok").all()), on="inst")
            .with_columns(
                density=pl.min_horizontal(
                    pl.col("n1") / (pl.col("n_first") * pl.col("n_mid")),
                    pl.col("n2") / (pl.col("n_mid") * pl.col("n_last")),
                ),
            )
            .filter(
                pl.col("mids_ok")
                & pl.col("n_first").is_between(self.min_side, self.max_side)
                & pl.col("n_mid").is_between(self.min_side, self.max_side)
                & pl.col("n_last").is_between(self.min_side, self.max_side)
                & (pl.col("density") >= self.min_density)
                & (pl.col("high") <= ratio * pl.col("low"))
                & (pl.col("t_last") - pl.col("t_first") <= window)
            )
        )
        top = (
            per_mid.sort("inst", "got", "mid", descending=[False, True, False])
            .group_by("inst", maintain_order=True)
            .first()
            .select("inst", subject="mid")
        )
        inst = stats.join(top, on="inst").with_columns(
            score=(
                _size_score(pl.col("n"), 2 * self.min_side * self.min_side)
                + pl.col("density").clip(0, 1)
                + pl.col("consistency")
                + _retention_score(pl.col("passed") / pl.col("sent"))
                + _speed_score(pl.col("t_last") - pl.col("t_first"), window)
            )
            / 5
        )
        members = members.filter(pl.col("inst").is_in(inst["inst"].implode()))
        return _emit(self, members, inst.with_columns(reasons=self._reasons(inst)), edges)

    def _detect_chains(self, data: DetectInput) -> pa.Table:
        """Parallel two-hop chains A → B → C, each B passing on what it got, grouped where they share an account.

        A group whose chains all start at one account and end at one account is a
        scatter-gather, and one whose chains all run through one middle is a
        gather-scatter: those are left to their miners.
        """
        edges = self._edges(data)
        window = _us(self.window)
        paths = _pass_through_paths(
            edges, _us(self.hop_window), self.retention, self.fx_drift, self.max_middle_edges
        ).filter(pl.col("hops") == 2)
        chain = paths.group_by("path").agg(
            a=pl.col("src").sort_by("pos").first(),
            b=pl.col("dst").sort_by("pos").first(),
            c=pl.col("dst").sort_by("pos").last(),
        )
        n_acc = len(edges.account_ids)
        label = kern.components(
            n_acc,
            np.concatenate([_col(chain, "a"), _col(chain, "b")]).astype(np.int64),
            np.concatenate([_col(chain, "b"), _col(chain, "c")]).astype(np.int64),
        )
        chain = chain.with_columns(inst=pl.Series(label[chain["a"].to_numpy()] if chain.height else [], dtype=pl.Int64))
        members = paths.join(chain.select("path", "inst"), on="path")
        one, two = pl.col("pos") == 0, pl.col("pos") == 1
        ratio = np.inf if self.max_amount_ratio is None else self.max_amount_ratio
        inst = (
            members.group_by("inst")
            .agg(
                n=pl.col("path").n_unique(),
                n_first=pl.col("src").filter(one).n_unique(),
                n_mid=pl.col("dst").filter(one).n_unique(),
                n_last=pl.col("dst").filter(two).n_unique(),
                t_first=pl.col("ts").min(),
                t_layer1=pl.col("ts").filter(one).max(),
                t_layer2=pl.col("ts").filter(two).min(),
                t_last=pl.col("ts").max(),
                sent=pl.col("amount").filter(one).sum(),
                passed=pl.col("amount").filter(two).sum(),
                low=pl.col("amount").filter(one).min(),
                high=pl.col("amount").filter(one).max(),
                a=pl.col("src").filter(one).first(),
                b=pl.col("dst").filter(one).first(),
                c=pl.col("dst").filter(two).first(),
            )
            .filter(
                pl.col("n").is_between(self.min_chains, self.max_side)
                & ~((pl.col("n") >= 2) & (pl.col("n_first") == 1) & (pl.col("n_last") == 1))
                & ~((pl.col("n") >= 2) & (pl.col("n_mid") == 1))
                & (pl.col("high") <= ratio * pl.col("low"))
                & (pl.col("t_last") - pl.col("t_first") <= window)
            )
        )
        top = (
            members.filter(one)
            .group_by("inst", "dst")
            .agg(got=pl.col("amount").sum())
            .sort("inst", "got", "dst", descending=[False, True, False])
            .group_by("inst", maintain_order=True)
            .first()
            .select("inst", subject="dst")
        )
        inst = inst.join(top, on="inst").with_columns(
            score=(
                _size_score(pl.col("n"), self.min_chains)
                + _retention_score(pl.col("passed") / pl.col("sent"))
                + _speed_score(pl.col("t_last") - pl.col("t_first"), window)
            )
            / 3
        )
        members = members.filter(pl.col("inst").is_in(inst["inst"].implode())).drop("path", "pos", "hops")
        return _emit(self, members, inst.with_columns(reasons=self._chain_reasons(inst, edges)), edges)

    def _chain_reasons(self, inst: pl.DataFrame, edges: _Edges) -> pl.Series:
        out = []
        hold = _within(self.hop_window.total_seconds()).removeprefix("within ")
        for r in inst.iter_rows(named=True):
            passed = f"{_yuan(r['passed'])} ({_pct(r['passed'] / r['sent'])})"
            if r["n"] == 1:
                a, b, c = edges.account_ids[[r["a"], r["b"], r["c"]]]
                first = [
                    f"{a} paid {b} {_yuan(r['sent'])}, and {b} paid {passed} on to {c} "
                    f"{_within((r['t_last'] - r['t_first']) / _US)}: a pass-through, as in each chain of a stack",
                ]
            else:
                first = [
                    f"{r['n']} parallel chains of two hops: {r['n_first']} accounts paid {r['n_mid']} middle "
                    f"accounts {_yuan(r['sent'])} {_within((r['t_layer1'] - r['t_first']) / _US)}",
                    f"each middle account paid what it got on to the next within {hold}: {passed} in all "
                    f"to {r['n_last']} account{'s' if r['n_last'] > 1 else ''}",
                ]
            out.append(
                [
                    *first,
                    f"every middle account had at most {self.max_middle_edges} payments with new counterparties "
                    f"within {hold} of passing the money on (a conduit, not a business)",
                    _history_reason(self, "each payer and payee"),
                ]
            )
        return pl.Series("reasons", out, dtype=pl.List(pl.String))

    def _reasons(self, inst: pl.DataFrame) -> pl.Series:
        out = []
        for r in inst.iter_rows(named=True):
            out.append(
                [
                    f"{r['n_first']} accounts paid {r['n_mid']} middle accounts {_yuan(r['sent'])} "
                    f"{_within((r['t_layer1'] - r['t_first']) / _US)}, each of them paying several",
                    f"the middle accounts then paid {_yuan(r['passed'])} ({_pct(r['passed'] / r['sent'])}) "
                    f"on to {r['n_last']} accounts {_within((r['t_last'] - r['t_layer2']) / _US)}, "
                    "each only after it was paid",
                    _history_reason(self, "each payer and payee"),
                ]
            )
        return pl.Series("reasons", out, dtype=pl.List(pl.String))


# --- pass-through chains: stacks of parallel chains, random walks -------------------------------------


def _pass_through_paths(
    edges: _Edges,
    hop_window: int,
    retention: tuple[float, float] | None,
    fx_drift: float,
    max_middle_edges: int,
) -> pl.DataFrame:
    """Chains of hops where each middle account passed on what it had just been paid.

    A hop a → b links to b → c when it follows within `hop_window`, carries a
    `retention` share (wider by `fx_drift` across a currency change) and c is not a. A
    middle with more than `max_middle_edges` candidate edges within `hop_window` of the
    hop is a business or a collection hub, not a conduit: it is not linked through
    (which also bounds the self-join). Each hop keeps at most its best successor and
    best predecessor (the closest amount, then the soonest), so chains are simple
    paths, labelled by union-find. Returns the chained edges with `path`, `pos` (hop
    number) and `hops` (path length).
    """
    e = edges.frame.with_row_index("edge").with_columns(pl.col("edge").cast(pl.Int64))
    sec = (e["ts"].to_numpy() - edges.t0) // _US
    w = hop_window // _US
    keys = np.concatenate([(e["src"].to_numpy() << 32) + sec, (e["dst"].to_numpy() << 32) + sec])
    ordered = np.sort(keys)
    mid_in = (e["dst"].to_numpy() << 32) + sec  # the payee of a hop, as the middle of the next one
    degree = np.searchsorted(ordered, mid_in + w, side="right") - np.searchsorted(ordered, mid_in - w, side="left")
    conduit = e.filter(pl.Series(degree <= max_middle_edges, dtype=pl.Boolean))
    links = (
        conduit.select(e1="edge", a="src", mid="dst", t1="ts", x="amount", cx="ccy")
        .join(e.select(e2="edge", mid="src", c="dst", t2="ts", y="amount", cy="ccy"), on="mid")
        .filter(
            (pl.col("c") != pl.col("a"))
            & (pl.col("t2") >= pl.col("t1"))
            & (pl.col("t2") - pl.col("t1") <= hop_window)
            & (pl.col("e2") != pl.col("e1"))
            & _passed_on(pl.col("x"), pl.col("y"), pl.col("cx"), pl.col("cy"), retention, fx_drift)
        )
        .with_columns(off=(pl.col("y") / pl.col("x")).log().abs(), gap=pl.col("t2") - pl.col("t1"))
        .sort("off", "gap", "e1", "e2")
        .unique("e1", keep="first", maintain_order=True)
        .unique("e2", keep="first", maintain_order=True)
    )
    label = kern.components(e.height, _col(links, "e1"), _col(links, "e2"))
    chained = pl.concat([links["e1"], links["e2"]]).unique().implode()
    return (
        e.with_columns(path=pl.Series(label))
        .filter(pl.col("edge").is_in(chained))
        .sort("path", "ts", "txn_id")
        .with_columns(pos=pl.int_range(pl.len()).over("path"), hops=pl.len().over("path"))
        .drop("edge")
    )


class RandomWalkMiner(_Miner):
    """Random walk (随机路径): money passed on hop after hop, each account paying on soon after it was paid.

    Chains come from `_pass_through_paths`: every middle paid on within `hop_window` a
    `retention` share of what it got (a further `fx_drift` either way across a currency
    change) and is a conduit, not a business. A chain of `min_hops`..`max_hops` hops that
    does not return to its origin (that is a cycle, `CycleMiner`'s) is an instance.
    Subject: the account the walk started from.
    """

    name = "miner_random_walk"
    version = "1"
    typology = "random"

    def __init__(
        self,
        hop_window: dt.timedelta = dt.timedelta(days=2),
        min_hops: int = 3,
        max_hops: int = 12,
        retention: tuple[float, float] | None = (0.8, 1.02),
        fx_drift: float = 0.0,
        max_middle_edges: int = 4,
        min_amount: float = 1_000.0,
        max_pair_txns: int = 1,
    ) -> None:
        super().__init__(min_amount, max_pair_txns)
        if not 2 <= min_hops <= max_hops:
            raise ValueError(f"need 2 <= min_hops <= max_hops (got {min_hops}, {max_hops})")
        if max_middle_edges < 2:
            raise ValueError(f"max_middle_edges must be at least 2 (got {max_middle_edges})")
        self.hop_window = hop_window
        self.min_hops = min_hops
        self.max_hops = max_hops
        self.retention = retention
        self.fx_drift = fx_drift
        self.max_middle_edges = max_middle_edges

    def detect(self, data: DetectInput) -> pa.Table:
        edges = self._edges(data)
        hop_window = _us(self.hop_window)
        paths = _pass_through_paths(edges, hop_window, self.retention, self.fx_drift, self.max_middle_edges)
        members = paths.filter(pl.col("hops").is_between(self.min_hops, self.max_hops)).rename({"path": "inst"})
        inst = (
            members.group_by("inst")
            .agg(
                subject=pl.col("src").sort_by("pos").first(),
                end=pl.col("dst").sort_by("pos").last(),
                hops=pl.len(),
                route=pl.col("src").sort_by("pos").append(pl.col("dst").sort_by("pos").last()),
                t_first=pl.col("ts").min(),
                t_last=pl.col("ts").max(),
                sent=pl.col("amount").sort_by("pos").first(),
                arrived=pl.col("amount").sort_by("pos").last(),
            )
            .filter(pl.col("subject") != pl.col("end"))
            .with_columns(
                score=(
                    _size_score(pl.col("hops"), self.min_hops)
                    + _retention_score(pl.col("arrived") / pl.col("sent"))
                    + (1 - (pl.col("t_last") - pl.col("t_first")) / (hop_window * (pl.col("hops") - 1))).clip(0, 1)
                )
                / 3
            )
        )
        members = members.filter(pl.col("inst").is_in(inst["inst"].implode()))
        return _emit(self, members, inst.with_columns(reasons=self._reasons(inst, edges)), edges)

    def _reasons(self, inst: pl.DataFrame, edges: _Edges) -> pl.Series:
        out = []
        for r in inst.iter_rows(named=True):
            route = edges.account_ids[np.array(r["route"])]
            out.append(
                [
                    f"{_yuan(r['sent'])} left {route[0]} and was passed on through {r['hops'] - 1} accounts "
                    f"{_within((r['t_last'] - r['t_first']) / _US)}: {' → '.join(route)}",
                    f"{_yuan(r['arrived'])} ({_pct(r['arrived'] / r['sent'])}) reached {route[-1]}; every account on "
                    f"the way paid on within {_within(self.hop_window.total_seconds()).removeprefix('within ')} "
                    "of being paid",
                    _history_reason(self, "each pair of neighbours on the way"),
                ]
            )
        return pl.Series("reasons", out, dtype=pl.List(pl.String))


#: Every miner class, in the order profiles run them.
MINERS: tuple[type[_Miner], ...] = (
    FanInMiner,
    FanOutMiner,
    CycleMiner,
    ScatterGatherMiner,
    GatherScatterMiner,
    BipartiteMiner,
    StackMiner,
    RandomWalkMiner,
)

#: The profile `default_miners` runs: Chinese core-banking data, the miners' own defaults.
DEFAULT_PROFILE = "core-banking"


def miner_classes() -> dict[str, type[_Miner]]:
    """Miner classes by their profile key (`name` without `miner_`: fan_in, cycle, random_walk…)."""
    return {cls.name.removeprefix("miner_"): cls for cls in MINERS}


def default_miners(profile: str | Path | Profile | None = None) -> list[Detector]:
    """The miners of a profile (a built-in name, a file, or a loaded `Profile`; default `core-banking`).

    Raises `ProfileError` (with every problem's key path) before any miner is built when
    the profile is invalid. Each miner's version records the profile (`2+amlworld@1.…`).
    """
    from tianluo.detect.profiles import Profile, load_profile

    chosen = profile if isinstance(profile, Profile) else load_profile(profile or DEFAULT_PROFILE)
    return chosen.build()
