"""Numba kernels behind `tianluo.trace`: balances for proportional attribution and the hop-by-hop expansion.

Edges are integer ids in time order (ties in input order). For account `a` its out-edges
are `out_edge[out_ptr[a]:out_ptr[a + 1]]` and its in-edges `in_edge[in_ptr[a]:in_ptr[a + 1]]`,
both in time order; `out_t`/`in_t` hold their times at the same positions. An account's
ledger puts, at equal timestamps, outflows before inflows: money that arrives at second
`t` can only leave after `t`, the same strict order the trace follows.

The expansion works on "time" `tau`: the transaction time going forward and its negation
going backward, so one FIFO routine serves both directions (a backward trace is a forward
trace on the time-reversed ledger). Proportional attribution is not symmetric in time and
has one routine per direction.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Edge flag bits.
F_CASH, F_CROSS_BORDER, F_SRC_OTHER, F_DST_OTHER = 1, 2, 4, 8
#: Sink bits a query passes: which kinds of edge end a path.
S_CASH, S_CROSS_BORDER, S_OTHER_BANK = 1, 2, 4
#: Why a traced record ends a path (0: it passed money on).
END_CASH, END_CROSS_BORDER, END_OTHER_BANK, END_ALERTED, END_MAX_HOPS, END_HELD, END_PRUNED = range(1, 8)
_NO_ORIGIN = np.iinfo(np.int64).max


@njit(cache=True)
def balances(
    out_ptr: np.ndarray, out_edge: np.ndarray, in_ptr: np.ndarray, in_edge: np.ndarray,
    t: np.ndarray, amount: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Replay every account's ledger once: the share each outflow takes of the balance, and where inflows land.

    The balance starts at zero (an opening balance is unknown) and never goes negative:
    an outflow larger than the balance empties it, the excess being money the data does
    not show. Returns `out_r[pos]` = z / max(B, z) for the outflow at out-position `pos`
    (z its amount, B the balance just before it) and `k0[e]` = out-position of the first
    outflow of `dst[e]` after inflow `e`.
    """
    n_acc = out_ptr.shape[0] - 1
    out_r = np.empty(out_edge.shape[0], np.float64)
    k0 = np.empty(t.shape[0], np.int64)
    for a in range(n_acc):
        o, o_end = out_ptr[a], out_ptr[a + 1]
        i, i_end = in_ptr[a], in_ptr[a + 1]
        bal = 0.0
        while o < o_end or i < i_end:
            if o < o_end and (i == i_end or t[out_edge[o]] <= t[in_edge[i]]):
                z = amount[out_edge[o]]
                if z >= bal:
                    out_r[o] = 1.0
                    bal = 0.0
                else:
                    out_r[o] = z / bal
                    bal -= z
                o += 1
            else:
                k0[in_edge[i]] = o
                bal += amount[in_edge[i]]
                i += 1
    return out_r, k0


@njit(cache=True)
def _grow(a: np.ndarray, n: int) -> np.ndarray:
    """`a` with room for at least `n` rows (doubling), contents kept."""
    if n <= a.shape[0]:
        return a
    b = np.empty((max(n, 2 * a.shape[0]), *a.shape[1:]), a.dtype)
    b[: a.shape[0]] = a
    return b


@njit(cache=True)
def _sink(e: int, far: int, forward: bool, flags: np.ndarray, sink_bits: int, alerted: np.ndarray) -> int:
    """Why edge `e` (reaching account `far`) ends a path, or 0 when the trace goes on through it."""
    f = flags[e]
    if f & F_CASH and sink_bits & S_CASH:
        return END_CASH
    if f & F_CROSS_BORDER and sink_bits & S_CROSS_BORDER:
        return END_CROSS_BORDER
    other = F_DST_OTHER if forward else F_SRC_OTHER
    if f & other and sink_bits & S_OTHER_BANK:
        return END_OTHER_BANK
    if alerted.shape[0] and alerted[far]:
        return END_ALERTED
    return 0


# Columns of the record table (one row per traced edge and hop): integers `ri`, floats `rf`.
RI_EDGE, RI_HOP, RI_PRED, RI_ORIGIN, RI_END, RI_ANY = range(6)
RF_TRACED, RF_PATH, RF_FWD = range(3)
# Columns of the candidate table of one account and hop: floats `cf`, integers `ci`.
CF_TRACED, CF_BEST = range(2)
CI_BEST_REC, CI_ORIGIN = range(2)


@njit(cache=True)
def _credit(
    cf: np.ndarray, ci: np.ndarray, qi: np.ndarray, qc: np.ndarray, n_q: int, m: int, rec: int, c: float,
    origin: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Record that record `rec`'s money puts `c` on candidate `m`; remember the pair for the end-of-path test."""
    cf[m, CF_TRACED] += c
    if c > cf[m, CF_BEST]:
        cf[m, CF_BEST] = c
        ci[m, CI_BEST_REC] = rec
    ci[m, CI_ORIGIN] = min(ci[m, CI_ORIGIN], origin)
    qi = _grow(qi, n_q + 1)
    qc = _grow(qc, n_q + 1)
    qi[n_q, 0], qi[n_q, 1], qc[n_q] = rec, m, c
    return qi, qc, n_q + 1


@njit(cache=True)
def _split_fifo(
    forward: bool, recs: np.ndarray, taus: np.ndarray, deadline: np.ndarray, left: np.ndarray, ri: np.ndarray,
    c_edge: np.ndarray, c_t: np.ndarray, c_lo: int, c_hi: int, amount: np.ndarray, used: np.ndarray, window: int,
    cf: np.ndarray, ci: np.ndarray, qi: np.ndarray, qc: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, int]:
    """FIFO: each candidate, in tau order, takes from the earliest eligible parcel with money left first."""
    sign = 1 if forward else -1
    n_p = recs.shape[0]
    n_q = 0
    arrived = 0  # parcels [0, arrived) came before the current candidate
    first = 0  # parcels before `first` are spent or past their window for good
    for m in range(c_hi - c_lo):
        pos = c_lo + m if forward else c_hi - 1 - m
        e = c_edge[pos]
        tau = sign * c_t[pos]
        room = amount[e] - used[e]
        if room <= 0.0:
            continue
        while arrived < n_p and taus[arrived] < tau:
            arrived += 1
        while first < arrived and (left[first] <= 0.0 or taus[first] + window < tau):
            first += 1
        for i in range(first, arrived):
            if left[i] <= 0.0 or deadline[i] < tau:
                continue
            take = min(left[i], room)
            left[i] -= take
            room -= take
            qi, qc, n_q = _credit(cf, ci, qi, qc, n_q, m, recs[i], take, ri[recs[i], RI_ORIGIN])
            if room <= 0.0:
                break
    return qi, qc, n_q


@njit(cache=True)
def _split_proportional_forward(
    a: int, recs: np.ndarray, deadline: np.ndarray, ri: np.ndarray, rf: np.ndarray, out_ptr: np.ndarray,
    out_t: np.ndarray, out_r: np.ndarray, k0: np.ndarray, c_lo: int, eps: float,
    cf: np.ndarray, ci: np.ndarray, qi: np.ndarray, qc: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Proportional, forward: parcel x gives outflow j the amount x · Π(1 − r_k) · r_j, k the outflows between."""
    n_q = 0
    for i in range(recs.shape[0]):
        rec = recs[i]
        x = rf[rec, RF_TRACED]
        survive = 1.0
        pos = k0[ri[rec, RI_EDGE]]  # the account's first outflow after this parcel arrived
        while pos < out_ptr[a + 1] and out_t[pos] <= deadline[i]:
            c = x * survive * out_r[pos]
            if c > 0.0:
                qi, qc, n_q = _credit(cf, ci, qi, qc, n_q, pos - c_lo, rec, c, ri[rec, RI_ORIGIN])
            survive *= 1.0 - out_r[pos]
            if x * survive < eps:  # everything later together is worth less than eps
                break
            pos += 1
    return qi, qc, n_q


@njit(cache=True)
def _split_proportional_backward(
    a: int, recs: np.ndarray, deadline: np.ndarray, ri: np.ndarray, rf: np.ndarray, t: np.ndarray,
    amount: np.ndarray, out_ptr: np.ndarray, out_r: np.ndarray, out_pos: np.ndarray, k0: np.ndarray,
    in_ptr: np.ndarray, in_edge: np.ndarray, in_t: np.ndarray, c_hi: int,
    cf: np.ndarray, ci: np.ndarray, qi: np.ndarray, qc: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Proportional, backward: outflow j (traced w) owes inflow i the amount w · z_i · Π(1 − r_k) / max(B_j, z_j)."""
    n_q = 0
    base = in_ptr[a]
    for i in range(recs.shape[0]):
        rec = recs[i]
        j = ri[rec, RI_EDGE]
        q = out_pos[j]
        coef = rf[rec, RF_TRACED] * out_r[q] / amount[j]  # r_j / z_j = 1 / max(B_j, z_j)
        survive = 1.0
        k = q - 1
        pos = base + np.searchsorted(in_t[base:in_ptr[a + 1]], t[j], side="left") - 1  # last inflow before j
        while pos >= base and -in_t[pos] <= deadline[i]:
            ei = in_edge[pos]
            while k >= k0[ei] and k >= out_ptr[a]:
                survive *= 1.0 - out_r[k]
                k -= 1
            if survive <= 0.0:  # an outflow emptied the account in between: nothing earlier is left
                break
            c = coef * survive * amount[ei]
            if c > 0.0:
                qi, qc, n_q = _credit(cf, ci, qi, qc, n_q, c_hi - 1 - pos, rec, c, ri[rec, RI_ORIGIN])
            pos -= 1
    return qi, qc, n_q


@njit(cache=True)
def _add_record(
    ri: np.ndarray, rf: np.ndarray, n_rec: int, e: int, hop: int, pred: int, origin: int, traced: float,
    path: float, end: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    ri = _grow(ri, n_rec + 1)
    rf = _grow(rf, n_rec + 1)
    ri[n_rec, RI_EDGE], ri[n_rec, RI_HOP], ri[n_rec, RI_PRED] = e, hop, pred
    ri[n_rec, RI_ORIGIN], ri[n_rec, RI_END], ri[n_rec, RI_ANY] = origin, end, 0
    rf[n_rec, RF_TRACED], rf[n_rec, RF_PATH], rf[n_rec, RF_FWD] = traced, path, 0.0
    return ri, rf, n_rec + 1


@njit(cache=True)
def _push(a: np.ndarray, n: int, value: float) -> tuple[np.ndarray, int]:
    a = _grow(a, n + 1)
    a[n] = value
    return a, n + 1


@njit(cache=True)
def propagate(
    forward: bool, fifo: bool,
    src: np.ndarray, dst: np.ndarray, t: np.ndarray, amount: np.ndarray, flags: np.ndarray,
    out_ptr: np.ndarray, out_edge: np.ndarray, out_t: np.ndarray, out_r: np.ndarray, out_pos: np.ndarray,
    in_ptr: np.ndarray, in_edge: np.ndarray, in_t: np.ndarray, k0: np.ndarray,
    used: np.ndarray, start_edges: np.ndarray, sink_bits: int, alerted: np.ndarray,
    max_hops: int, window: int, horizon: int, min_amount: float, top_k: int, eps: float,
) -> tuple:
    """Time-respecting expansion from `start_edges` (hop 1, fully traced), one hop per round.

    `used[e]` (zero on entry, zero again on return) is how much of edge `e` is already
    traced, so no edge ever carries more traced money than it moved. `horizon < 0` means
    none; `top_k <= 0` means no fan-out limit. Returns the record table (one row per
    traced edge and hop: edge, hop, dominant predecessor, origin tau, end reason; traced,
    path amount) and the money that went through candidates not kept (account, amount).
    """
    sign = 1 if forward else -1
    c_ptr, c_edge, c_t = (out_ptr, out_edge, out_t) if forward else (in_ptr, in_edge, in_t)
    ri = np.empty((64, 6), np.int64)
    rf = np.empty((64, 3), np.float64)
    n_rec = 0
    drop_acct = np.empty(64, np.int64)
    drop_amt = np.empty(64, np.float64)
    n_drop = 0
    touched = np.empty(64, np.int64)
    n_touch = 0
    frontier = np.empty(64, np.int64)
    n_front = 0

    for s in range(start_edges.shape[0]):
        e = start_edges[s]
        if used[e] > 0.0:
            continue
        used[e] = amount[e]
        touched, n_touch = _push(touched, n_touch, e)
        end = _sink(e, dst[e] if forward else src[e], forward, flags, sink_bits, alerted)
        if end == 0 and max_hops == 1:
            end = END_MAX_HOPS
        ri, rf, n_rec = _add_record(ri, rf, n_rec, e, 1, -1, sign * t[e], amount[e], amount[e], end)
        if end == 0:
            frontier, n_front = _push(frontier, n_front, n_rec - 1)

    cf = np.empty((64, 2), np.float64)
    ci = np.empty((64, 2), np.int64)
    kept = np.empty(64, np.bool_)
    qi = np.empty((64, 2), np.int64)
    qc = np.empty(64, np.float64)
    for hop in range(2, max_hops + 1):
        if n_front == 0:
            break
        # Parcels: the records of the last hop, grouped by the account they reached, in tau order.
        front = frontier[:n_front].copy()
        n_front = 0
        accts = np.empty(front.shape[0], np.int64)
        taus = np.empty(front.shape[0], np.int64)
        for f in range(front.shape[0]):
            e = ri[front[f], RI_EDGE]
            accts[f] = dst[e] if forward else src[e]
            taus[f] = sign * t[e]
        order = np.argsort(taus, kind="mergesort")
        order = order[np.argsort(accts[order], kind="mergesort")]
        front, accts, taus = front[order], accts[order], taus[order]
        g0 = 0
        while g0 < front.shape[0]:
            a = accts[g0]
            g1 = g0
            while g1 < front.shape[0] and accts[g1] == a:
                g1 += 1
            recs, p_tau = front[g0:g1], taus[g0:g1]
            deadline = p_tau + window
            left = np.empty(g1 - g0, np.float64)
            for i in range(g1 - g0):
                if horizon >= 0:
                    deadline[i] = min(deadline[i], ri[recs[i], RI_ORIGIN] + horizon)
                left[i] = rf[recs[i], RF_TRACED]
            # Candidates: this account's edges with tau in (first arrival, last deadline], in tau order.
            base, end = c_ptr[a], c_ptr[a + 1]
            if forward:
                c_lo = base + np.searchsorted(c_t[base:end], p_tau[0], side="right")
                c_hi = base + np.searchsorted(c_t[base:end], deadline.max(), side="right")
            else:
                c_lo = base + np.searchsorted(c_t[base:end], -deadline.max(), side="left")
                c_hi = base + np.searchsorted(c_t[base:end], -p_tau[0], side="left")
            n_c = c_hi - c_lo
            g0 = g1
            if n_c <= 0:
                continue
            cf = _grow(cf, n_c)
            ci = _grow(ci, n_c)
            kept = _grow(kept, n_c)
            cf[:n_c] = 0.0
            ci[:n_c, CI_BEST_REC] = -1
            ci[:n_c, CI_ORIGIN] = _NO_ORIGIN
            if fifo:
                qi, qc, n_q = _split_fifo(forward, recs, p_tau, deadline, left, ri, c_edge, c_t, c_lo, c_hi, amount,
                                          used, window, cf, ci, qi, qc)
            elif forward:
                qi, qc, n_q = _split_proportional_forward(a, recs, deadline, ri, rf, out_ptr, out_t, out_r, k0, c_lo,
                                                          eps, cf, ci, qi, qc)
            else:
                qi, qc, n_q = _split_proportional_backward(a, recs, deadline, ri, rf, t, amount, out_ptr, out_r,
                                                           out_pos, k0, in_ptr, in_edge, in_t, c_hi, cf, ci, qi, qc)

            # Keep the top_k candidates by traced amount among those of at least min_amount.
            n_ok = 0
            for m in range(n_c):
                e = c_edge[c_lo + m if forward else c_hi - 1 - m]
                cf[m, CF_TRACED] = min(cf[m, CF_TRACED], amount[e] - used[e])  # rounding in proportional sums
                kept[m] = cf[m, CF_TRACED] >= max(min_amount, eps)
                n_ok += kept[m]
            if 0 < top_k < n_ok:
                rank = np.argsort(-cf[:n_c, CF_TRACED], kind="mergesort")
                for r in range(n_c):
                    kept[rank[r]] = r < top_k
            for m in range(n_c):
                traced = cf[m, CF_TRACED]
                if traced <= 0.0:
                    continue
                e = c_edge[c_lo + m if forward else c_hi - 1 - m]
                if used[e] == 0.0:
                    touched, n_touch = _push(touched, n_touch, e)
                used[e] += traced
                if not kept[m]:
                    drop_amt, _ = _push(drop_amt, n_drop, traced)
                    drop_acct, n_drop = _push(drop_acct, n_drop, a)
                    continue
                pred = ci[m, CI_BEST_REC]
                path = cf[m, CF_BEST] * rf[pred, RF_PATH] / rf[pred, RF_TRACED]
                end = _sink(e, dst[e] if forward else src[e], forward, flags, sink_bits, alerted)
                if end == 0 and hop == max_hops:
                    end = END_MAX_HOPS
                ri, rf, n_rec = _add_record(ri, rf, n_rec, e, hop, pred, ci[m, CI_ORIGIN], traced, path, end)
                if end == 0:
                    frontier, n_front = _push(frontier, n_front, n_rec - 1)
            for q in range(n_q):
                ri[qi[q, 0], RI_ANY] = 1
                if kept[qi[q, 1]]:
                    rf[qi[q, 0], RF_FWD] += qc[q]

    # A record that passed nothing on ends its path: the money stayed, or went on only in slivers.
    for r in range(n_rec):
        if ri[r, RI_END] == 0 and rf[r, RF_FWD] <= 0.0:
            ri[r, RI_END] = END_PRUNED if ri[r, RI_ANY] else END_HELD
    for i in range(n_touch):
        used[touched[i]] = 0.0
    return ri[:n_rec], rf[:n_rec], drop_acct[:n_drop], drop_amt[:n_drop]
