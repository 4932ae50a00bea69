"""Run one trace: resolve the start, call the compiled expansion, and shape its records into a TraceResult."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from typing import Any, Literal

import numpy as np
import polars as pl

from tianluo.detect.graph_features import Window, parse_window
from tianluo.trace import _kernels as k
from tianluo.trace.index import TraceIndex
from tianluo.trace.result import END_REASONS, SINK_REASONS, TracePath, TraceResult

Direction = Literal["forward", "backward"]
Method = Literal["fifo", "proportional"]
METHODS: tuple[str, ...] = ("fifo", "proportional")
DIRECTIONS: tuple[str, ...] = ("forward", "backward")
#: Sink kinds that end a path unless the caller narrows them.
DEFAULT_SINKS: tuple[str, ...] = SINK_REASONS
_SINK_BITS = {"cash": k.S_CASH, "cross_border": k.S_CROSS_BORDER, "other_bank": k.S_OTHER_BANK, "alerted": 0}
#: Attribution below a millionth of a yuan is not computed (it would only add rounding noise).
_EPS = 1e-6
_US = 1_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NO_HOP = np.iinfo(np.int64).max
_TS = pl.Datetime("us", "UTC")
NODE_SCHEMA = {"account_id": pl.String, "role": pl.String, "bank": pl.String, "traced_in": pl.Float64,
               "traced_out": pl.Float64, "dropped": pl.Float64, "hop": pl.Int64, "first_ts": _TS, "last_ts": _TS,
               "flags": pl.List(pl.String)}
EDGE_SCHEMA = {"txn_id": pl.String, "ts": _TS, "src_account": pl.String, "dst_account": pl.String,
               "amount": pl.Float64, "traced": pl.Float64, "hop": pl.Int64, "channel": pl.String, "sink": pl.String}


def trace(
    index: TraceIndex,
    start_account: str | None = None,
    start_txn: str | None = None,
    *,
    direction: Direction = "forward",
    method: Method = "fifo",
    start_time: dt.datetime | str | None = None,
    end_time: dt.datetime | str | None = None,
    max_hops: int = 6,
    hop_window: Window = "72h",
    horizon: Window | None = None,
    min_amount: float = 100.0,
    top_k: int | None = 10,
    sinks: Collection[str] = DEFAULT_SINKS,
    alerted: Iterable[str] = (),
    max_paths: int = 20,
) -> TraceResult:
    """Follow money from an account (optionally within a time range) or from one transaction.

    Forward answers "where did it go", backward "where did it come from". Each hop happens
    strictly after the previous one and within `hop_window` of it; `horizon` bounds the
    whole trace (from the start transaction each traced amount began with). A hop is kept
    when it carries at least `min_amount` traced CNY, and an account passes money on through
    at most `top_k` transactions per hop (the largest traced ones); money through the
    others is counted as `dropped`. Paths end at `sinks` (cash, cross_border, other_bank,
    alerted — the accounts in `alerted`) or where a limit stops them. See docs/trace.md for
    how `method` attributes amounts and which invariants hold.
    """
    if (start_account is None) == (start_txn is None):
        raise ValueError("give exactly one of start_account or start_txn")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r}: use one of {', '.join(DIRECTIONS)}")
    if method not in METHODS:
        raise ValueError(f"method {method!r}: use one of {', '.join(METHODS)}")
    unknown = sorted(set(sinks) - set(_SINK_BITS))
    if unknown:
        raise ValueError(f"unknown sink kind(s) {unknown}; known: {', '.join(_SINK_BITS)}")
    if max_hops < 1:
        raise ValueError(f"max_hops must be at least 1 (got {max_hops})")
    if min_amount < 0:
        raise ValueError(f"min_amount must not be negative (got {min_amount})")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1, or None for no limit (got {top_k})")
    forward = direction == "forward"
    window_us = parse_window(hop_window) * _US
    horizon_us = -1 if horizon is None else parse_window(horizon) * _US
    alerted_ids = set(alerted)

    if start_txn is not None:
        starts = np.array([index.edge(start_txn)], np.int64)
        e0 = int(starts[0])
        origin = int(index.src[e0] if forward else index.dst[e0])
    else:
        origin = index.account(start_account)
        ptr, edges, times = (index.out_ptr, index.out_edge, index.out_t) if forward else \
            (index.in_ptr, index.in_edge, index.in_t)
        lo, hi = int(ptr[origin]), int(ptr[origin + 1])
        if start_time is not None:
            lo += int(np.searchsorted(times[lo:hi], _micros(start_time), side="left"))
        if end_time is not None:
            hi = lo + int(np.searchsorted(times[lo:hi], _micros(end_time), side="right"))
        cand = np.asarray(edges[lo:hi], np.int64)
        cand = cand[index.amount[cand] >= min_amount]
        order = np.argsort(-index.amount[cand], kind="stable")
        starts = cand[order[:top_k] if top_k is not None else order]

    sink_bits = sum(_SINK_BITS[s] for s in set(sinks))
    stop_alerted = "alerted" in sinks and bool(alerted_ids)
    alerted_mask = index.account_mask(alerted_ids) if stop_alerted else np.zeros(0, np.bool_)
    with index.scratch() as used:
        ri, rf, drop_acct, drop_amt = k.propagate(
            forward, method == "fifo", index.src, index.dst, index.t, index.amount, index.flags,
            index.out_ptr, index.out_edge, index.out_t, index.out_r, index.out_pos,
            index.in_ptr, index.in_edge, index.in_t, index.k0, used,
            np.sort(starts), sink_bits, alerted_mask, max_hops, window_us, horizon_us, float(min_amount),
            top_k or 0, _EPS,
        )
    params = {
        "start_account": start_account, "start_txn": start_txn, "direction": direction, "method": method,
        "start_time": _iso(start_time), "end_time": _iso(end_time), "max_hops": max_hops,
        "hop_window_s": window_us // _US, "horizon_s": None if horizon is None else horizon_us // _US,
        "min_amount": min_amount, "top_k": top_k, "sinks": sorted(sinks), "institution": index.institution,
    }
    return _result(index, params, forward, origin, alerted_ids, max_paths, ri, rf, drop_acct, drop_amt)


def _micros(value: dt.datetime | str) -> int:
    """Microseconds since the epoch, exactly (a float timestamp can be a microsecond off)."""
    ts = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return (ts - _EPOCH) // dt.timedelta(microseconds=1)


def _iso(value: dt.datetime | str | None) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else value.isoformat()


def _end_name(code: int, forward: bool) -> str:
    """A backward trace that finds no earlier inflow has not found where the money came from, not held it."""
    name = END_REASONS[code]
    return "unexplained" if name == "held" and not forward else name


def _times(us: np.ndarray, missing: np.ndarray | None = None) -> pl.Series:
    """Microseconds as a UTC datetime column, null where `missing` is set."""
    out = pl.Series(np.asarray(us, np.int64)).cast(_TS)
    return out if missing is None else out.scatter(np.flatnonzero(missing), None)


def _result(
    index: TraceIndex, params: dict[str, Any], forward: bool, origin: int, alerted: set[str], max_paths: int,
    ri: np.ndarray, rf: np.ndarray, drop_acct: np.ndarray, drop_amt: np.ndarray,
) -> TraceResult:
    """Aggregate the kernel's records per transaction and per account, and rank the paths by traced amount."""
    eids, inv = np.unique(ri[:, k.RI_EDGE], return_inverse=True)
    traced = np.bincount(inv, weights=rf[:, k.RF_TRACED], minlength=len(eids))
    hop = np.full(len(eids), _NO_HOP)
    np.minimum.at(hop, inv, ri[:, k.RI_HOP])
    nodes = _nodes(index, forward, origin, alerted, eids, traced, hop, ri, drop_acct, drop_amt)
    return TraceResult(
        params=params,
        nodes=nodes,
        edges=_edges(index, eids, inv, traced, hop, ri),
        paths=_paths(index, forward, max_paths, ri, rf),
        summary=_summary(forward, ri, rf, drop_amt, n_accounts=nodes.height, n_edges=len(eids)),
    )


def _edges(index: TraceIndex, eids: np.ndarray, inv: np.ndarray, traced: np.ndarray, hop: np.ndarray,
           ri: np.ndarray) -> pl.DataFrame:
    """One row per traced transaction: all its traced money, the lowest hop that reached it, its sink kind."""
    end = ri[:, k.RI_END]
    sink = np.zeros(len(eids), np.int8)
    np.maximum.at(sink, inv, np.where(end <= k.END_ALERTED, end, 0).astype(np.int8))
    sink_names = np.array([None, *(END_REASONS[c] for c in sorted(END_REASONS))], dtype=object)
    names = index.account_id.take(np.concatenate([index.src[eids], index.dst[eids]])).to_pylist()
    return pl.DataFrame({
        "txn_id": index.txn_id.take(eids).to_pylist(),
        "ts": _times(index.t[eids]),
        "src_account": names[: len(eids)],
        "dst_account": names[len(eids):],
        "amount": index.amount[eids],
        "traced": traced,
        "hop": hop,
        "channel": np.array(index.channels, dtype=object)[index.channel[eids]].tolist(),
        "sink": sink_names[sink].tolist(),
    }, schema=EDGE_SCHEMA).sort("hop", "ts", "txn_id")


def _nodes(
    index: TraceIndex, forward: bool, origin: int, alerted: set[str], eids: np.ndarray, traced: np.ndarray,
    hop: np.ndarray, ri: np.ndarray, drop_acct: np.ndarray, drop_amt: np.ndarray,
) -> pl.DataFrame:
    """One row per account the trace touches, with its traced money in and out and why paths end there."""
    e_src, e_dst, e_t = index.src[eids], index.dst[eids], index.t[eids]
    acc = np.unique(np.concatenate([[origin], e_src, e_dst]).astype(np.int64))
    pos_src, pos_dst = np.searchsorted(acc, e_src), np.searchsorted(acc, e_dst)
    n = len(acc)
    traced_in = np.bincount(pos_dst, weights=traced, minlength=n)
    traced_out = np.bincount(pos_src, weights=traced, minlength=n)
    node_hop = np.full(n, _NO_HOP)
    np.minimum.at(node_hop, pos_dst if forward else pos_src, hop)
    node_hop[np.searchsorted(acc, origin)] = 0
    first = np.full(n, _NO_HOP)
    last = np.full(n, np.iinfo(np.int64).min)
    for p in (pos_src, pos_dst):
        np.minimum.at(first, p, e_t)
        np.maximum.at(last, p, e_t)
    untouched = first == _NO_HOP
    ids = index.account_id.take(acc).to_pylist()
    flags: list[set[str]] = [{"alerted"} if a in alerted else set() for a in ids]
    ends = np.flatnonzero(ri[:, k.RI_END] > 0)
    far = (index.dst if forward else index.src)[ri[ends, k.RI_EDGE]]
    for a, code in zip(np.searchsorted(acc, far), ri[ends, k.RI_END], strict=True):
        flags[a].add(_end_name(int(code), forward))
    passed = traced_out if forward else traced_in
    role = np.where(acc == origin, "origin", np.where(passed > 0, "intermediary", "sink" if forward else "source"))
    return pl.DataFrame({
        "account_id": ids,
        "role": role.tolist(),
        "bank": np.array([*index.banks, None], dtype=object)[index.account_bank[acc]].tolist(),
        "traced_in": traced_in,
        "traced_out": traced_out,
        "dropped": np.bincount(np.searchsorted(acc, drop_acct), weights=drop_amt, minlength=n),
        "hop": node_hop,
        "first_ts": _times(np.where(untouched, 0, first), untouched),
        "last_ts": _times(np.where(untouched, 0, last), untouched),
        "flags": [sorted(f) for f in flags],
    }, schema=NODE_SCHEMA).sort("hop", "account_id")


def _paths(index: TraceIndex, forward: bool, max_paths: int, ri: np.ndarray, rf: np.ndarray) -> list[TracePath]:
    """The `max_paths` path ends with the most route money, each walked back along its dominant predecessors."""
    ends = np.flatnonzero(ri[:, k.RI_END] > 0)
    paths = []
    for r in ends[np.argsort(-rf[ends, k.RF_PATH], kind="stable")][:max_paths]:
        chain = [int(r)]
        while ri[chain[-1], k.RI_PRED] >= 0:
            chain.append(int(ri[chain[-1], k.RI_PRED]))
        if forward:
            chain.reverse()  # money order: the start transaction first
        route = ri[chain, k.RI_EDGE]
        accounts = index.account_id.take(np.concatenate([index.src[route[:1]], index.dst[route]])).to_pylist()
        paths.append(TracePath(
            accounts=tuple(accounts),
            txn_ids=tuple(index.txn_id.take(route).to_pylist()),
            timestamps=tuple(_times(index.t[route]).to_list()),
            amount=float(rf[r, k.RF_PATH]),
            end_traced=float(rf[r, k.RF_TRACED]),
            end=_end_name(int(ri[r, k.RI_END]), forward),
        ))
    return paths


def _summary(
    forward: bool, ri: np.ndarray, rf: np.ndarray, drop_amt: np.ndarray, n_accounts: int, n_edges: int
) -> dict[str, Any]:
    """Where the start money ended up: sinks, the hop limit, unshown transactions, and the rest."""
    traced, end = rf[:, k.RF_TRACED], ri[:, k.RI_END]
    start = float(traced[ri[:, k.RI_HOP] == 1].sum())
    by_end = {name: float(traced[end == code].sum()) for code, name in END_REASONS.items()
              if name not in ("held", "pruned")}
    dropped = float(drop_amt.sum())
    return {
        "start_amount": round(start, 2),
        "sinks": {s: round(by_end[s], 2) for s in SINK_REASONS},
        "max_hops": round(by_end["max_hops"], 2),
        "dropped": round(dropped, 2),
        # The rest stayed in an account (forward) or has no earlier inflow within the limits (backward).
        "held" if forward else "unexplained": round(max(0.0, start - sum(by_end.values()) - dropped), 2),
        "accounts": n_accounts,
        "transactions": n_edges,
        "records": len(ri),
    }
