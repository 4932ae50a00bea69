"""Compile checked rules to vectorised Polars execution over the leg view, and build that view once per run.

Every aggregate is a window expression: over a calendar-day group it is a grouped
aggregate broadcast back to the legs (`x.filter(w).sum().over(group)`), over a
rolling window a sorted `rolling_*_by("ts")` per subject, and a rolling count of
distinct counterparties a compiled (numba) two-pointer kernel. A rule's `when`
is then an ordinary column expression, so evaluating a rule is a handful of
passes over the legs, never a Python loop over rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numba
import numpy as np
import polars as pl

from tianluo.detect.rules.language import Call, ColumnRef, Const, MeasureRef, Node, Rule, Thresholds
from tianluo.reference.currency import FxTable

_US_PER_DAY = 86_400 * 1_000_000
_US_PER_MINUTE = 60 * 1_000_000

#: Transaction columns the leg view cannot be built without (the others are optional).
_REQUIRED = ("txn_id", "ts", "src_account", "dst_account", "amount", "currency", "amount_cny", "channel")


# --- the leg view ---------------------------------------------------------------------------------------


def _col_or_null(frame: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Expr:
    return pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype)


def build_legs(
    transactions: pl.DataFrame,
    accounts: pl.DataFrame,
    parties: pl.DataFrame,
    thresholds: Thresholds,
    fx: FxTable,
) -> pl.DataFrame:
    """One row per transaction per own-customer side, with every column of `LEG_COLUMNS`.

    The side(s) come from `direction`: `out` means only the payer banks here, `in` only the
    payee, null both (or, for sources without the notion, every account is treated as a
    customer). Accounts of an internal type (`${internal_account_types}`: the bank's own cash
    and GL accounts) are never subjects, and same-account transfers are dropped because they
    move no money.
    """
    missing = [c for c in _REQUIRED if c not in transactions.columns]
    if missing:
        raise ValueError(
            f"transactions lack column(s) {', '.join(missing)}; ingest derives amount_cny, or add it with "
            "FxTable.to_cny(amount, currency, ts)"
        )
    tz = thresholds.value("timezone")
    tx = transactions
    n = tx.height
    usd_per_million = fx.to_cny(
        pl.Series("a", np.full(n, 1_000_000.0)), pl.Series("c", ["USD"] * n, dtype=pl.String), tx["ts"]
    )
    base = tx.select(
        pl.col("txn_id").cast(pl.String),
        pl.col("ts"),
        pl.col("src_account").cast(pl.String),
        pl.col("dst_account").cast(pl.String),
        pl.col("amount").cast(pl.Float64),
        pl.col("currency").cast(pl.String),
        pl.col("amount_cny").cast(pl.Float64),
        pl.col("channel").cast(pl.String),
        _col_or_null(tx, "purpose", pl.String).alias("purpose"),
        _col_or_null(tx, "direction", pl.String).alias("_dir"),
        _col_or_null(tx, "cross_border", pl.Boolean).fill_null(False).alias("cross_border"),
        _col_or_null(tx, "src_bank", pl.String).alias("src_bank"),
        _col_or_null(tx, "dst_bank", pl.String).alias("dst_bank"),
        (usd_per_million / 1_000_000.0).alias("_cny_per_usd"),
    ).filter(pl.col("src_account") != pl.col("dst_account"))
    local = pl.col("ts").dt.convert_time_zone(tz)
    base = base.with_columns(
        is_cny=pl.col("currency") == "CNY",
        amount_usd=pl.when(pl.col("currency") == "USD")
        .then(pl.col("amount"))
        .otherwise((pl.col("amount_cny") / pl.col("_cny_per_usd")).round(2, mode="half_away_from_zero")),
        hour=local.dt.hour().cast(pl.Int32),
        weekday=local.dt.weekday().cast(pl.Int32),
        local_day=local.dt.date(),
    )
    side = ("src_account", "dst_account", "src_bank", "dst_bank")
    out_legs = base.filter(pl.col("_dir").is_null() | (pl.col("_dir") == "out")).with_columns(
        direction=pl.lit("out"), account=pl.col(side[0]), counterparty=pl.col(side[1]),
        bank=pl.col(side[2]), counterparty_bank=pl.col(side[3]),
    )
    in_legs = base.filter(pl.col("_dir").is_null() | (pl.col("_dir") == "in")).with_columns(
        direction=pl.lit("in"), account=pl.col(side[1]), counterparty=pl.col(side[0]),
        bank=pl.col(side[3]), counterparty_bank=pl.col(side[2]),
    )
    legs = pl.concat([out_legs, in_legs]).drop(*side, "_dir", "_cny_per_usd")

    acc = _accounts(accounts)
    par = _parties(parties)
    kind_from_type = (
        pl.when(pl.col("account_type") == "personal").then(pl.lit("person"))
        .when(pl.col("account_type") == "corporate").then(pl.lit("enterprise"))
    )
    own = acc.join(par, on="party", how="left").with_columns(
        party_kind=pl.coalesce(pl.col("kind"), kind_from_type)
    ).drop("kind", "birth_year")
    other = acc.join(par, on="party", how="left").select(
        pl.col("account").alias("counterparty"),
        pl.col("party").alias("counterparty_party"),
        pl.coalesce(pl.col("kind"), kind_from_type).alias("counterparty_kind"),
        pl.col("region").alias("counterparty_region"),
        pl.col("birth_year").alias("_cp_birth_year"),
    )
    internal = list(thresholds.value("internal_account_types"))
    legs = (
        legs.join(own, on="account", how="left")
        .join(other, on="counterparty", how="left")
        .filter(pl.col("account_type").is_null() | ~pl.col("account_type").is_in(internal))
        .sort("account", "ts", "txn_id")
    )
    # Integer keys, so that every later sort and segment scan works on numbers, not strings. Legs stay
    # sorted by (account, ts, txn_id): per-account "previous / latest inflow" values are then global
    # shifts and fills that are only kept where they come from the same account.
    legs = legs.with_columns(
        __account_key=pl.col("account").rle_id(),
        __party_key=pl.concat_str(pl.col("party").is_null().cast(pl.String), pl.coalesce("party", "account"))
        .rank("dense")
        .cast(pl.UInt32),
    )
    same_account = pl.col("__account_key") == pl.col("__account_key").shift(1)
    data_start = legs["ts"].min() if legs.height else None
    opened = pl.col("opened").cast(pl.Datetime("us")).dt.replace_time_zone(tz).dt.convert_time_zone("UTC")
    since = pl.max_horizontal(pl.lit(data_start), opened) if data_start is not None else opened
    previous = pl.coalesce(pl.when(same_account).then(pl.col("ts").shift(1)), since)
    is_in, is_out = pl.col("direction") == "in", pl.col("direction") == "out"

    def latest_inflow(value: str) -> pl.Expr:
        """`value` of the latest inflow of the same account at or before each leg (null if none)."""
        filled = pl.when(is_in).then(pl.col(value)).forward_fill()
        owner = pl.when(is_in).then(pl.col("__account_key")).forward_fill()
        return pl.when(owner == pl.col("__account_key")).then(filled)

    pair = ["__account_key", "counterparty"]
    legs = legs.with_columns(
        gap_days=(pl.col("ts") - previous).dt.total_microseconds() / _US_PER_DAY,
        account_age_days=(pl.col("ts") - opened).dt.total_microseconds() / _US_PER_DAY,
        history_days=((pl.col("ts") - pl.lit(data_start)).dt.total_microseconds() / _US_PER_DAY
                      if data_start is not None else pl.lit(None, pl.Float64)),
        minutes_since_in=pl.when(is_out).then(
            (pl.col("ts") - latest_inflow("ts")).dt.total_microseconds() / _US_PER_MINUTE
        ),
        last_in_amount_cny=pl.when(is_out).then(latest_inflow("amount_cny")),
        returns_to_payer=is_out
        & (pl.when(is_in).then(pl.col("ts")).min().over(pair) < pl.col("ts")).fill_null(False),
        # Sorted by time within the account, the pair's first leg is its first occurrence.
        new_counterparty=pl.struct(pair).is_first_distinct(),
        counterparty_age=(pl.col("ts").dt.convert_time_zone(tz).dt.year() - pl.col("_cp_birth_year")).cast(
            pl.Float64
        ),
    ).drop("opened", "_cp_birth_year")
    return legs


def _accounts(accounts: pl.DataFrame) -> pl.DataFrame:
    if "account_id" not in accounts.columns:
        accounts = pl.DataFrame(schema={"account_id": pl.String})
    return accounts.select(
        pl.col("account_id").cast(pl.String).alias("account"),
        _col_or_null(accounts, "party_id", pl.String).alias("party"),
        _col_or_null(accounts, "type", pl.String).alias("account_type"),
        _col_or_null(accounts, "opened", pl.Date).alias("opened"),
    ).unique("account", keep="last")


def _parties(parties: pl.DataFrame) -> pl.DataFrame:
    if "party_id" not in parties.columns:
        parties = pl.DataFrame(schema={"party_id": pl.String})
    return parties.select(
        pl.col("party_id").cast(pl.String).alias("party"),
        _col_or_null(parties, "kind", pl.String).alias("kind"),
        _col_or_null(parties, "region", pl.String).alias("region"),
        _col_or_null(parties, "birth_year", pl.Int32).alias("birth_year"),
    ).unique("party", keep="last")


# --- rolling distinct count -----------------------------------------------------------------------------


@numba.njit(cache=True)
def _rolling_distinct(bounds: np.ndarray, ts: np.ndarray, codes: np.ndarray, mask: np.ndarray,
                      window: int, n_codes: int) -> np.ndarray:  # pragma: no cover - compiled
    """Distinct `codes` among masked rows with ts in (ts_i − window, ts_i], per segment of sorted rows.

    Two pointers per segment and one counter per code: O(rows), whatever the window holds.
    """
    out = np.zeros(len(ts), np.int64)
    counts = np.zeros(n_codes, np.int64)
    for k in range(len(bounds) - 1):
        start, end = bounds[k], bounds[k + 1]
        left, right, distinct = start, start, 0
        for i in range(start, end):
            while right < end and ts[right] <= ts[i]:
                if mask[right]:
                    c = codes[right]
                    if counts[c] == 0:
                        distinct += 1
                    counts[c] += 1
                right += 1
            while ts[left] <= ts[i] - window:
                if mask[left]:
                    c = codes[left]
                    counts[c] -= 1
                    if counts[c] == 0:
                        distinct -= 1
                left += 1
            out[i] = distinct
        for j in range(left, right):
            if mask[j]:
                counts[codes[j]] -= 1
    return out


# --- compiling expressions ------------------------------------------------------------------------------


@dataclass
class _Aggregate:
    column: str
    fn: str
    of: pl.Expr | None
    where: pl.Expr


@dataclass
class _Compiler:
    """Turns typed nodes into Polars expressions, collecting the aggregates they need."""

    aggregates: list[_Aggregate] = field(default_factory=list)
    _seen: dict[str, str] = field(default_factory=dict)

    def expr(self, node: Node) -> pl.Expr:
        if isinstance(node, Const):
            return pl.lit(node.value, pl.Float64 if node.type == "number" else None)
        if isinstance(node, ColumnRef):
            return pl.col(node.name)
        if isinstance(node, MeasureRef):
            return pl.col(_measure_column(node.name))
        assert isinstance(node, Call)
        return self.call(node)

    def call(self, node: Call) -> pl.Expr:
        fn, args = node.fn, node.args
        if fn in ("sum", "count", "mean", "max", "min", "distinct"):
            return self.aggregate(node)
        a = [self.expr(x) if x is not None and x.type != "list" else None for x in args]
        if fn == "and":
            return pl.all_horizontal(a)
        if fn == "or":
            return pl.any_horizontal(a)
        if fn == "not":
            return ~a[0]
        simple = {
            "gt": lambda: a[0] > a[1], "ge": lambda: a[0] >= a[1], "lt": lambda: a[0] < a[1],
            "le": lambda: a[0] <= a[1], "eq": lambda: a[0] == a[1], "ne": lambda: a[0] != a[1],
            "between": lambda: (a[0] >= a[1]) & (a[0] < a[2]), "sub": lambda: a[0] - a[1],
            "abs": lambda: a[0].abs(), "coalesce": lambda: pl.coalesce(a[0], a[1]),
            "is_null": lambda: a[0].is_null(),
            "div": lambda: pl.when(a[1] != 0).then(a[0] / a[1]).otherwise(pl.lit(None, pl.Float64)),
        }
        if fn in simple:
            return simple[fn]()
        if fn in ("add", "mul"):
            out = a[0]
            for x in a[1:]:
                out = out + x if fn == "add" else out * x
            return out
        if fn == "is_in":
            values = list(_const(args[1]))
            return a[0].is_in(values) if values else pl.lit(False)
        if fn == "starts_with":
            prefixes = list(_const(args[1]))
            if not prefixes:
                return pl.lit(False)
            return pl.any_horizontal([a[0].str.starts_with(p) for p in prefixes])
        if fn == "round_amount":
            unit = float(_const(args[1]))
            return (a[0] > 0) & ((a[0] / unit).round(0) * unit - a[0]).abs().lt(0.005)
        if fn == "time_of_day":
            start, end = float(_const(args[0])), float(_const(args[1]))
            hour = pl.col("hour")
            return (hour >= start) & (hour < end) if start <= end else (hour >= start) | (hour < end)
        raise AssertionError(f"function {fn} has no compiler")  # the language and the compiler disagree

    def aggregate(self, node: Call) -> pl.Expr:
        key = f"{node.fn}:{_shape(node)}"
        if key in self._seen:
            return pl.col(self._seen[key])
        if node.fn == "count":
            of, where_node = None, node.args[0]
        else:
            assert node.args[0] is not None
            of, where_node = self.expr(node.args[0]), node.args[1]
        # A column-length "true", not a literal, so rolling kernels see one value per leg.
        where = self.expr(where_node).fill_null(False) if where_node is not None else pl.col("txn_id").is_not_null()
        column = f"__a{len(self.aggregates)}"
        self.aggregates.append(_Aggregate(column, node.fn, of, where))
        self._seen[key] = column
        return pl.col(column)


def _const(node: Node | None) -> Any:
    assert isinstance(node, Const)
    return node.value


def _shape(node: Node | None) -> str:
    """A node's structure without its file path, so identical aggregates are computed once."""
    if node is None:
        return "_"
    if isinstance(node, Const):
        return repr(node.value)
    if isinstance(node, ColumnRef | MeasureRef):
        return node.name
    assert isinstance(node, Call)
    return f"{node.fn}(" + ",".join(_shape(a) for a in node.args) + ")"


def _measure_column(name: str) -> str:
    return f"__m_{name}"


# --- running a rule -------------------------------------------------------------------------------------


@dataclass
class Plan:
    """A rule compiled against the leg view: filters, aggregates, measures and the firing condition."""

    rule: Rule
    scope: pl.Expr | None
    aggregates: list[_Aggregate]
    measures: list[tuple[str, pl.Expr]]
    when: pl.Expr
    evidence: pl.Expr | None

    @classmethod
    def compile(cls, rule: Rule) -> Plan:
        """Compile every expression of a rule once; `run` then only evaluates."""
        c = _Compiler()
        scope = c.expr(rule.legs).fill_null(False) if rule.legs is not None else None
        measures = [(name, c.expr(node)) for name, node in rule.measures]
        when = c.expr(rule.when).fill_null(False)
        evidence = c.expr(rule.evidence).fill_null(False) if rule.evidence is not None else None
        return cls(rule, scope, c.aggregates, measures, when, evidence)

    def run(self, legs: pl.DataFrame) -> pl.DataFrame:
        """Alert bodies (one row per alert) with the values the reason templates need.

        Columns: subject_type, subject_id, ts_start, ts_end, txn_ids, accounts, amount_cny,
        txn_count, day, the rule's `by` columns, and one `__m_<name>` column per measure.
        """
        rule = self.rule
        kind = rule.window.kind
        df = legs.filter(self.scope) if self.scope is not None else legs
        if rule.subject == "party":
            df = df.with_columns(
                __subject=pl.coalesce("party", "account"),
                __subject_type=pl.when(pl.col("party").is_null()).then(pl.lit("account")).otherwise(pl.lit("party")),
                __subject_key=pl.col("__party_key"),
            )
        else:
            df = df.with_columns(
                __subject=pl.col("account"), __subject_type=pl.lit("account"), __subject_key=pl.col("__account_key")
            )
        part = ["__subject_key", *(["local_day"] if kind == "day" else []), *rule.by]
        if kind == "txn":
            df = df.with_row_index("__row")
        else:
            # The legs come sorted by (account, ts, txn_id); an account rule without extra keys keeps that
            # order, the others re-sort stably on integer keys (ties keep the deterministic leg order).
            if part != ["__subject_key"] or rule.subject != "account":
                df = df.sort(*part, "ts", maintain_order=True)
            df = df.with_columns(__seg=pl.struct(part).rle_id())
        df = self._aggregates(df, kind)
        for name, expr in self.measures:
            df = df.with_columns(expr.alias(_measure_column(name)))
        df = df.with_columns(__fire=self.when)
        if kind == "rolling":
            return self._episodes(df)
        ev = pl.col("__fire") & (self.evidence if self.evidence is not None else pl.lit(True))
        group = "__row" if kind == "txn" else "__seg"
        return _bodies(df.filter(ev), group, rule.by, [_measure_column(n) for n, _ in self.measures], None)

    def _aggregates(self, df: pl.DataFrame, kind: str) -> pl.DataFrame:
        if not self.aggregates:
            return df
        exprs = []
        window = self.rule.window
        for agg in self.aggregates:
            if agg.fn == "distinct" and kind == "rolling":
                continue
            exprs.append(_aggregate_expr(agg, kind, window.text).alias(agg.column))
        df = df.with_columns(exprs) if exprs else df
        for agg in self.aggregates:
            if agg.fn == "distinct" and kind == "rolling":
                assert window.size is not None and agg.of is not None
                df = df.with_columns(_rolling_distinct_column(df, agg, window.size).alias(agg.column))
        return df

    def _episodes(self, df: pl.DataFrame) -> pl.DataFrame:
        """Rolling windows: the legs covered by a firing window, merged into episodes per subject.

        A leg is covered when a firing anchor at or after it (or at the same instant) lies less
        than one window later. Covered legs less than one window apart belong to the same
        episode, one alert each; the reason's numbers are those of the episode's last firing
        window. Rows are sorted by segment then time, so "the next anchor of the same segment"
        is a global fill checked against the segment key, with no per-group pass.
        """
        size = self.rule.window.size
        assert size is not None
        seg, ts, fire = pl.col("__seg"), pl.col("ts"), pl.col("__fire")
        next_ts, next_seg = (pl.when(fire).then(c).backward_fill() for c in (ts, seg))
        prev_ts, prev_seg = (pl.when(fire).then(c).forward_fill() for c in (ts, seg))
        covered = ((next_seg == seg) & ((next_ts - ts) < size)) | ((prev_seg == seg) & (prev_ts == ts))
        df = df.filter(covered.fill_null(False))
        new_episode = (seg != seg.shift(1)) | ((ts - ts.shift(1)) >= size)
        df = df.with_columns(__episode=new_episode.fill_null(True).cum_sum())
        measures = [_measure_column(n) for n, _ in self.measures]
        at_anchor = df.filter(fire).group_by("__episode").agg(pl.col(m).last() for m in measures)
        ev = self.evidence if self.evidence is not None else pl.lit(True)
        return _bodies(df.filter(ev), "__episode", self.rule.by, [], at_anchor)


def _aggregate_expr(agg: _Aggregate, kind: str, period: str) -> pl.Expr:
    of, where = agg.of, agg.where
    if kind == "txn":
        if agg.fn == "sum":
            return pl.when(where).then(of).otherwise(0.0)
        if agg.fn == "count":
            return where.cast(pl.Float64)
        if agg.fn == "distinct":
            assert of is not None
            return (where & of.is_not_null()).cast(pl.Float64)
        return pl.when(where).then(of).cast(pl.Float64)
    if kind in ("day", "all"):
        if agg.fn == "count":
            return where.sum().over("__seg").cast(pl.Float64)
        assert of is not None
        picked = of.filter(where)
        reduce = {
            "sum": lambda: picked.sum().round(2, mode="half_away_from_zero"),
            "mean": lambda: picked.mean(),
            "max": lambda: picked.max(),
            "min": lambda: picked.min(),
            "distinct": lambda: picked.drop_nulls().n_unique(),
        }[agg.fn]()
        return reduce.over("__seg").cast(pl.Float64)
    # rolling, (t - period, t] per subject; distinct is handled by the kernel.
    count = where.cast(pl.Float64).rolling_sum_by("ts", period).over("__seg")
    if agg.fn == "count":
        return count
    assert of is not None
    total = pl.when(where).then(of).otherwise(0.0).rolling_sum_by("ts", period).over("__seg")
    if agg.fn == "sum":
        return total.round(2, mode="half_away_from_zero")
    if agg.fn == "mean":
        return pl.when(count > 0).then(total / count)
    picked = pl.when(where).then(of)
    if agg.fn == "max":
        return picked.rolling_max_by("ts", period).over("__seg")
    return picked.rolling_min_by("ts", period).over("__seg")


def _rolling_distinct_column(df: pl.DataFrame, agg: _Aggregate, size: timedelta) -> pl.Series:
    assert agg.of is not None
    cols = df.select(
        agg.of.rank("dense").cast(pl.Int64).fill_null(0).alias("code"),
        (agg.where & agg.of.is_not_null()).fill_null(False).alias("mask"),
        pl.col("ts").dt.epoch("us").alias("t"),
        pl.col("__seg"),
    )
    seg = cols["__seg"].to_numpy()
    bounds = np.flatnonzero(np.diff(seg, prepend=-1, append=-2)).astype(np.int64)
    codes = cols["code"].to_numpy()
    out = _rolling_distinct(
        bounds, cols["t"].to_numpy(), codes, cols["mask"].to_numpy(),
        int(size.total_seconds() * 1_000_000), int(codes.max(initial=0)) + 1,
    )
    return pl.Series(out.astype(np.float64))


def _bodies(
    ev: pl.DataFrame, group: str, by: tuple[str, ...], measures: list[str], at_anchor: pl.DataFrame | None
) -> pl.DataFrame:
    """Collapse evidence legs into one row per alert: subject, time span, txn ids, accounts, totals."""
    first = pl.col("txn_id").is_first_distinct()  # a transaction can be two legs of one party
    out = ev.group_by(group, maintain_order=True).agg(
        pl.col("__subject_type").first().alias("subject_type"),
        pl.col("__subject").first().alias("subject_id"),
        pl.col("ts").min().alias("ts_start"),
        pl.col("ts").max().alias("ts_end"),
        pl.col("txn_id").unique().sort().alias("txn_ids"),
        pl.col("account").append(pl.col("counterparty")).drop_nulls().unique().sort().alias("accounts"),
        pl.col("amount_cny").filter(first).sum().round(2).alias("amount_cny"),
        pl.col("txn_id").n_unique().alias("txn_count"),
        pl.col("local_day").last().alias("day"),
        *[pl.col(c).first() for c in by],
        *[pl.col(m).first() for m in measures],
    )
    if at_anchor is not None:
        out = out.join(at_anchor, on=group, how="left")
    return out.drop(group)
