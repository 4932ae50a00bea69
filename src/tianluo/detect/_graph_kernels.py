"""Numba kernels behind `graph_features`: sliding-window account counters and temporal-graph pattern counts.

Everything here works on integer-encoded edges in processing order (edge index = position
in time order, ties in input order) and on lists sorted by edge index, kept in a `Lists`
tuple: for account `x` its out-edges are `o_pool[o_start[x]:o_stop[x]]` and its in-edges
`n_pool[n_start[x]:n_stop[x]]`; for account `a` its distinct payees, sorted, are
`k_dst[k_start[a]:k_stop[a]]` with pair ids `k_pid[...]`; the edges of pair `p` are
`p_pool[p_start[p]:p_stop[p]]`. The batch path builds these once for the whole history
and bounds every lookup by the current edge index; the online path appends to them edge
by edge. Both call the same step and query functions, which is what makes batch and
online features identical.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit, prange

Lists = namedtuple(
    "Lists",
    ["e_src", "e_dst", "o_start", "o_stop", "o_pool", "n_start", "n_stop", "n_pool",
     "k_start", "k_stop", "k_dst", "k_pid", "p_start", "p_stop", "p_pool"],
)

# --- per-window integer counters: vi[window, account, field] -----------------------------------
CNT_OUT, CNT_IN, FAN_OUT, FAN_IN, RND_OUT, RND_IN, MAXE_OUT, MINE_OUT, MAXE_IN, MINE_IN = range(10)
#: counters of FLAG_NEW, FLAG_NIGHT and FLAG_BACK edges, in that order, from FLAGS_OUT / FLAGS_IN
FLAGS_OUT, FLAGS_IN = 10, 13
N_INT_FIELDS = 16
# --- per-edge flag bits (e_flags): counted per account side like the amounts ---------------------
#: a whole multiple of the round unit (set by the caller)
FLAG_ROUND = 1
#: the first payment along its pair (payer → payee) in the longest window (set by count_step)
FLAG_NEW = 2
#: made at night in the configured local time (set by the caller)
FLAG_NIGHT = 4
#: the payee paid the payer in the longest window before this payment (set by count_step)
FLAG_BACK = 8
# --- per-window float accumulators: vf[window, account, field] (value, compensation pairs) -----
SUM_OUT, SUMC_OUT, SQ_OUT, SQC_OUT, SUM_IN, SUMC_IN, SQ_IN, SQC_IN, MAX_OUT, MIN_OUT, MAX_IN, MIN_IN = range(12)
N_FLOAT_FIELDS = 12
# --- per-account times: vt[field, account] ------------------------------------------------------
FIRST_TS, LAST_TS, LAST_IN_TS = range(3)
N_TIME_FIELDS = 3
# --- per-account amounts: v_in_amt[field, account]: the last inflow, payments made since it, and --
# --- every payment ever made (e_cum[e] keeps the payee's CUM_OUT as edge e arrived) ---------------
LAST_IN_AMT, PAID_SINCE_IN, CUM_OUT = range(3)
N_IN_FIELDS = 3
NO_TS = np.iinfo(np.int64).min

#: Columns per window: for each (account, side) in ROLES the stats in STATS, then two round-amount shares,
#: the payments along this transaction's pair (src → dst) and back (dst → src), the payer's outflows /
#: payee's inflows that were first contacts (FLAG_NEW), made at night (FLAG_NIGHT) or paid back (FLAG_BACK),
#: as shares, this amount against the payments back, and how much of its largest receipt the payer has
#: paid out since.
ROLES = (("src", "out"), ("src", "in"), ("dst", "in"), ("dst", "out"))
STATS = ("fan", "deg", "amount_sum", "amount_mean", "amount_std", "amount_min", "amount_max")
SHARES = ("new_share_out_src", "new_share_in_dst", "night_share_out_src", "night_share_in_dst",
          "back_share_out_src", "back_share_in_dst")
WINDOW_COLS = len(ROLES) * len(STATS) + 6 + len(SHARES)

# --- per-query scratch rows: scr[row, account] --------------------------------------------------
S_BSET, S_DIST, S_LD, S_FRONT, S_SEEN, S_PATH, S_MARK = range(7)
N_SCRATCH = 7


# ================================================================================================
# Lists
# ================================================================================================


@njit(cache=True)
def build_lists(keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counting sort of edge indices by key (account or pair): (start, stop, pool), each list in edge order."""
    start = np.zeros(n_keys, np.int64)
    for e in range(keys.shape[0]):
        start[keys[e]] += 1
    total = 0
    for k in range(n_keys):
        c = start[k]
        start[k] = total
        total += c
    stop = start.copy()
    pool = np.empty(keys.shape[0], np.int64)
    for e in range(keys.shape[0]):
        k = keys[e]
        pool[stop[k]] = e
        stop[k] += 1
    return start, stop, pool


@njit(cache=True, inline="always")
def _lower(pool, lo, hi, key):
    """First position p in [lo, hi) with pool[p] >= key (pool is sorted there)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if pool[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, inline="always")
def _span(start, stop, pool, x, e_lo, e_hi):
    """Positions [p_lo, p_hi) of list x's edges with e_lo <= edge index < e_hi."""
    lo = _lower(pool, start[x], stop[x], e_lo)
    hi = _lower(pool, lo, stop[x], e_hi)
    return lo, hi


@njit(cache=True, inline="always")
def _pair_id(g, a, b):
    """Pair id of a → b, or -1 if a never paid b."""
    p = _lower(g.k_dst, g.k_start[a], g.k_stop[a], b)
    if p < g.k_stop[a] and g.k_dst[p] == b:
        return g.k_pid[p]
    return -1


@njit(cache=True, inline="always")
def _has(g, a, b, ws, i):
    """Whether a paid b with an edge in [ws, i)."""
    pid = _pair_id(g, a, b)
    if pid < 0:
        return False
    p = _lower(g.p_pool, g.p_start[pid], g.p_stop[pid], ws)
    return p < g.p_stop[pid] and g.p_pool[p] < i


@njit(cache=True)
def _grow(a, need):
    """`a` with room for at least `need` items (doubling), contents kept."""
    if need <= a.shape[0]:
        return a
    b = np.empty(max(need, 2 * a.shape[0]), a.dtype)
    b[: a.shape[0]] = a
    return b


# ================================================================================================
# Sliding-window counters (sequential: one step per edge, the same step in batch and online)
# ================================================================================================


@njit(cache=True, inline="always")
def _kadd(vf, f, k, x, a):
    """Compensated (Neumaier) add of `a` into vf[f] with its error term in vf[f + 1].

    Sliding sums add and later subtract every amount; plain float sums would keep the
    rounding residue of large evicted amounts forever and corrupt small later windows.
    """
    s = vf[k, x, f]
    t = s + a
    if abs(s) >= abs(a):
        vf[k, x, f + 1] += (s - t) + a
    else:
        vf[k, x, f + 1] += (a - t) + s
    vf[k, x, f] = t


@njit(cache=True, inline="always")
def _side_add(vi, vf, k, x, e, a, flags, cnt, sm, sq, rf, ff, maxe, mine, mx, mn):
    if vi[k, x, cnt] == 0:
        vf[k, x, sm] = 0.0
        vf[k, x, sm + 1] = 0.0
        vf[k, x, sq] = 0.0
        vf[k, x, sq + 1] = 0.0
        vf[k, x, mx] = a
        vi[k, x, maxe] = e
        vf[k, x, mn] = a
        vi[k, x, mine] = e
    else:
        # Ties go to the newest edge, which stays in the window longest.
        if vi[k, x, maxe] >= 0 and a >= vf[k, x, mx]:
            vf[k, x, mx] = a
            vi[k, x, maxe] = e
        if vi[k, x, mine] >= 0 and a <= vf[k, x, mn]:
            vf[k, x, mn] = a
            vi[k, x, mine] = e
    vi[k, x, cnt] += 1
    vi[k, x, rf] += flags & FLAG_ROUND
    for b in range(3):
        vi[k, x, ff + b] += (flags >> (b + 1)) & 1
    _kadd(vf, sm, k, x, a)
    _kadd(vf, sq, k, x, a * a)


@njit(cache=True, inline="always")
def _side_remove(vi, vf, k, x, e, a, flags, cnt, sm, sq, rf, ff, maxe, mine):
    vi[k, x, cnt] -= 1
    vi[k, x, rf] -= flags & FLAG_ROUND
    for b in range(3):
        vi[k, x, ff + b] -= (flags >> (b + 1)) & 1
    if vi[k, x, cnt] == 0:
        vf[k, x, sm] = 0.0
        vf[k, x, sm + 1] = 0.0
        vf[k, x, sq] = 0.0
        vf[k, x, sq + 1] = 0.0
    else:
        _kadd(vf, sm, k, x, -a)
        _kadd(vf, sq, k, x, -a * a)
    # The extreme left the window: mark it stale, rescan only if someone asks.
    if vi[k, x, maxe] == e:
        vi[k, x, maxe] = -1
    if vi[k, x, mine] == e:
        vi[k, x, mine] = -1


@njit(cache=True)
def _rescan(vi, vf, k, x, n, e_amt, stop, pool, maxe, mine, mx, mn):
    """Recompute a stale window min/max of account x from its n in-window edges, the last n of its list."""
    lo = stop[x] - n
    hi = stop[x]
    best_hi = -np.inf
    best_lo = np.inf
    arg_hi = -1
    arg_lo = -1
    for p in range(lo, hi):
        e = pool[p]
        a = e_amt[e]
        if a >= best_hi:
            best_hi = a
            arg_hi = e
        if a <= best_lo:
            best_lo = a
            arg_lo = e
    vf[k, x, mx] = best_hi
    vi[k, x, maxe] = arg_hi
    vf[k, x, mn] = best_lo
    vi[k, x, mine] = arg_lo


@njit(cache=True, inline="always")
def _emit_side(out, col, vi, vf, k, x, cnt, fan, sm, sq, maxe, mine, mx, mn, e_amt, stop, pool):
    """Write fan, deg, sum, mean, std, min, max of one account side into out[col:col + 7]."""
    n = vi[k, x, cnt]
    out[col] = vi[k, x, fan]
    out[col + 1] = n
    if n == 0:
        out[col + 2] = 0.0
        for j in range(3, 7):
            out[col + j] = np.nan
        return
    s = vf[k, x, sm] + vf[k, x, sm + 1]
    s2 = vf[k, x, sq] + vf[k, x, sq + 1]
    mean = s / n
    var = s2 / n - mean * mean
    out[col + 2] = s
    out[col + 3] = mean
    out[col + 4] = np.sqrt(var) if var > 0.0 else 0.0
    if vi[k, x, maxe] < 0 or vi[k, x, mine] < 0:
        _rescan(vi, vf, k, x, n, e_amt, stop, pool, maxe, mine, mx, mn)
    out[col + 5] = vf[k, x, mn]
    out[col + 6] = vf[k, x, mx]


@njit(cache=True, inline="always")
def _pair_sum(g, e_amt, q, lo, hi):
    """Total amount of pair q's edges with index in [lo, hi), added in edge order."""
    p_lo, p_hi = _span(g.p_start, g.p_stop, g.p_pool, q, lo, hi)
    total = 0.0
    for p in range(p_lo, p_hi):
        total += e_amt[g.p_pool[p]]
    return total


@njit(cache=True)
def count_step(i, out, g, e_ts, e_amt, e_pair, e_flags, e_cum, wins, ev, vi, vf, vt, v_in_amt, pc):
    """Slide every window to edge i, add it, and write its account features into `out`.

    `ev[k]` is the oldest edge still inside window k; edges leave when ts <= t - window,
    so a window is the half-open interval (t - window, t] and includes edge i itself.
    The account lists in `g` must end at edge i (edges after it not yet listed), so an
    account's in-window edges are the last `count` entries of its list.
    """
    t = e_ts[i]
    u = g.e_src[i]
    v = g.e_dst[i]
    a = e_amt[i]
    p = e_pair[i]
    back = _pair_id(g, v, u) if u != v else -1
    n_win = wins.shape[0]
    for k in range(n_win):
        j = ev[k]
        while j < i and e_ts[j] <= t - wins[k]:
            s = g.e_src[j]
            d = g.e_dst[j]
            _side_remove(vi, vf, k, s, j, e_amt[j], e_flags[j], CNT_OUT, SUM_OUT, SQ_OUT, RND_OUT, FLAGS_OUT,
                         MAXE_OUT, MINE_OUT)
            _side_remove(vi, vf, k, d, j, e_amt[j], e_flags[j], CNT_IN, SUM_IN, SQ_IN, RND_IN, FLAGS_IN, MAXE_IN,
                         MINE_IN)
            q = e_pair[j]
            pc[k, q] -= 1
            if pc[k, q] == 0:
                vi[k, s, FAN_OUT] -= 1
                vi[k, d, FAN_IN] -= 1
            j += 1
        ev[k] = j
    # Windows are in increasing length: the last one decides first contact and money back.
    last_k = n_win - 1
    r = e_flags[i] & (FLAG_ROUND | FLAG_NIGHT)
    if pc[last_k, p] == 0:
        r |= FLAG_NEW
    if back >= 0 and pc[last_k, back] > 0:
        r |= FLAG_BACK
    e_flags[i] = r  # eviction reads it back when the edge leaves
    # Running outflow totals: what an account paid between two of its edges is a difference of two.
    v_in_amt[CUM_OUT, u] += a
    e_cum[i] = v_in_amt[CUM_OUT, v]
    for k in range(n_win):
        _side_add(vi, vf, k, u, i, a, r, CNT_OUT, SUM_OUT, SQ_OUT, RND_OUT, FLAGS_OUT, MAXE_OUT, MINE_OUT, MAX_OUT,
                  MIN_OUT)
        _side_add(vi, vf, k, v, i, a, r, CNT_IN, SUM_IN, SQ_IN, RND_IN, FLAGS_IN, MAXE_IN, MINE_IN, MAX_IN, MIN_IN)
        pc[k, p] += 1
        if pc[k, p] == 1:
            vi[k, u, FAN_OUT] += 1
            vi[k, v, FAN_IN] += 1
        base = k * WINDOW_COLS
        # ROLES order: src-out, src-in, dst-in, dst-out.
        _emit_side(out, base, vi, vf, k, u, CNT_OUT, FAN_OUT, SUM_OUT, SQ_OUT, MAXE_OUT, MINE_OUT, MAX_OUT, MIN_OUT,
                   e_amt, g.o_stop, g.o_pool)
        _emit_side(out, base + 7, vi, vf, k, u, CNT_IN, FAN_IN, SUM_IN, SQ_IN, MAXE_IN, MINE_IN, MAX_IN, MIN_IN,
                   e_amt, g.n_stop, g.n_pool)
        _emit_side(out, base + 14, vi, vf, k, v, CNT_IN, FAN_IN, SUM_IN, SQ_IN, MAXE_IN, MINE_IN, MAX_IN, MIN_IN,
                   e_amt, g.n_stop, g.n_pool)
        _emit_side(out, base + 21, vi, vf, k, v, CNT_OUT, FAN_OUT, SUM_OUT, SQ_OUT, MAXE_OUT, MINE_OUT, MAX_OUT,
                   MIN_OUT, e_amt, g.o_stop, g.o_pool)
        out[base + 28] = vi[k, u, RND_OUT] / vi[k, u, CNT_OUT]
        out[base + 29] = vi[k, v, RND_IN] / vi[k, v, CNT_IN]
        # 1 = a pair with no other payment in the window: schemes are wired from new relationships.
        out[base + 30] = pc[k, p]
        # Money going back the way it came: interest on deposits, round trips, loan-backs.
        out[base + 31] = pc[k, back] if back >= 0 else 0
        # ... and how this payment compares with it: interest is a small fraction, a refund about 1.
        out[base + 38] = a / _pair_sum(g, e_amt, back, ev[k], i) if out[base + 31] > 0 else np.nan
        # Collector and mule cards: most payers are strangers, and they pay at night.
        for b in range(3):
            out[base + 32 + 2 * b] = vi[k, u, FLAGS_OUT + b] / vi[k, u, CNT_OUT]
            out[base + 33 + 2 * b] = vi[k, v, FLAGS_IN + b] / vi[k, v, CNT_IN]
        # Concentrated in, dispersed out: the share of the payer's largest receipt in the window paid
        # out since it (this payment included). A busy account's last receipt is usually a small one,
        # so "since the last receipt" resets all day; the largest one stands out until it leaves the
        # window. _emit_side above left MAXE_IN valid (rescanned if the old maximum had left).
        if vi[k, u, CNT_IN] > 0:
            m = vi[k, u, MAXE_IN]
            out[base + 39] = (v_in_amt[CUM_OUT, u] - e_cum[m]) / e_amt[m] if e_amt[m] > 0.0 else np.nan
        else:
            out[base + 39] = np.nan
    c = n_win * WINDOW_COLS
    last = (n_win - 1) * WINDOW_COLS
    out[c] = (t - vt[LAST_TS, u]) / 1e6 if vt[LAST_TS, u] != NO_TS else np.nan
    out[c + 1] = (t - vt[LAST_TS, v]) / 1e6 if vt[LAST_TS, v] != NO_TS else np.nan
    if vt[FIRST_TS, u] == NO_TS:
        vt[FIRST_TS, u] = t
    if vt[FIRST_TS, v] == NO_TS:
        vt[FIRST_TS, v] = t
    out[c + 2] = (t - vt[FIRST_TS, u]) / 1e6
    out[c + 3] = (t - vt[FIRST_TS, v]) / 1e6
    out[c + 4] = a / out[last + 3] if out[last + 3] > 0.0 else np.nan
    out[c + 5] = a / out[last + 17] if out[last + 17] > 0.0 else np.nan
    # Pass-through: how soon, and how much of it, the payer sends on what it last received, and how
    # much of that it has paid out since (this payment included): 快进快出 drains it within hours.
    v_in_amt[PAID_SINCE_IN, u] += a
    received = v_in_amt[LAST_IN_AMT, u]  # 0 until the payer first receives money
    out[c + 6] = (t - vt[LAST_IN_TS, u]) / 1e6 if vt[LAST_IN_TS, u] != NO_TS else np.nan
    out[c + 7] = a / received if received > 0.0 else np.nan
    out[c + 8] = v_in_amt[PAID_SINCE_IN, u] / received if received > 0.0 else np.nan
    vt[LAST_TS, u] = t
    vt[LAST_TS, v] = t
    vt[LAST_IN_TS, v] = t
    v_in_amt[LAST_IN_AMT, v] = a
    v_in_amt[PAID_SINCE_IN, v] = 0.0


@njit(cache=True)
def count_batch(out, g, e_ts, e_amt, e_pair, e_flags, e_cum, wins, ev, vi, vf, vt, v_in_amt, pc):
    """`count_step` over every edge in order (rows of `out` are edges).

    The whole-history lists are revealed edge by edge (their ends advance with i), which
    is exactly what the online lists hold at each step.
    """
    o_end = g.o_start.copy()
    n_end = g.n_start.copy()
    seen = Lists(g.e_src, g.e_dst, g.o_start, o_end, g.o_pool, g.n_start, n_end, g.n_pool,
                 g.k_start, g.k_stop, g.k_dst, g.k_pid, g.p_start, g.p_stop, g.p_pool)
    for i in range(g.e_src.shape[0]):
        o_end[g.e_src[i]] += 1
        n_end[g.e_dst[i]] += 1
        count_step(i, out[i], seen, e_ts, e_amt, e_pair, e_flags, e_cum, wins, ev, vi, vf, vt, v_in_amt, pc)


# ================================================================================================
# Pattern queries (read-only on the lists; batch runs them in parallel over edges)
# ================================================================================================


@njit(cache=True, inline="always")
def _tick(ticks):
    ticks[0] += 1
    return ticks[0]


@njit(cache=True)
def scatter_gather(i, ws, g, scr, ticks):
    """(instances, widest) of scatter-gather patterns that edge i (u→v) takes part in, edges [ws, i] only.

    An instance is a (source, sink) pair joined by at least two distinct intermediaries
    (source → m → sink, source ≠ sink, no self-loops), in any time order inside the window;
    edge i is either a gather edge (u an intermediary, v the sink) or a scatter edge
    (u the source, v an intermediary). Width counts the intermediaries. Each width is an
    intersection of a payee set and a payer set, walked from the smaller side with
    pair lookups into the other, so hub accounts with thousands of counterparties cost
    only as much as the small side.
    """
    u = g.e_src[i]
    v = g.e_dst[i]
    if u == v:
        return 0, 0
    count = 0
    widest = 0
    seen = scr[S_SEEN]
    mark = scr[S_MARK]
    n_v_lo, n_v_hi = _span(g.n_start, g.n_stop, g.n_pool, v, ws, i)  # payers of v
    o_u_lo, o_u_hi = _span(g.o_start, g.o_stop, g.o_pool, u, ws, i)  # payees of u

    # gather role: sink v, intermediary u; each source s is one of u's payers
    lo, hi = _span(g.n_start, g.n_stop, g.n_pool, u, ws, i)
    t_src = _tick(ticks)
    for p in range(lo, hi):
        s = g.e_src[g.n_pool[p]]
        if s in (u, v) or mark[s] == t_src:
            continue
        mark[s] = t_src
        a, b = _span(g.o_start, g.o_stop, g.o_pool, s, ws, i)
        tm = _tick(ticks)
        w = 0
        if b - a <= n_v_hi - n_v_lo + 1:
            for q in range(a, b):  # payees m of s that pay v (u does, through edge i)
                m = g.e_dst[g.o_pool[q]]
                if m in (s, v) or seen[m] == tm:
                    continue
                seen[m] = tm
                if m == u or _has(g, m, v, ws, i):
                    w += 1
        else:
            for q in range(n_v_lo - 1, n_v_hi):  # payers m of v (and u) that s pays
                m = u if q < n_v_lo else g.e_src[g.n_pool[q]]
                if m in (s, v) or seen[m] == tm:
                    continue
                seen[m] = tm
                if m == u or _has(g, s, m, ws, i):
                    w += 1
        if w >= 2:
            count += 1
            widest = max(widest, w)

    # scatter role: source u, intermediary v; each sink d is one of v's payees
    lo, hi = _span(g.o_start, g.o_stop, g.o_pool, v, ws, i)
    t_snk = _tick(ticks)
    for p in range(lo, hi):
        d = g.e_dst[g.o_pool[p]]
        if d in (u, v) or mark[d] == t_snk:
            continue
        mark[d] = t_snk
        a, b = _span(g.n_start, g.n_stop, g.n_pool, d, ws, i)
        tm = _tick(ticks)
        w = 0
        if o_u_hi - o_u_lo + 1 <= b - a:
            for q in range(o_u_lo - 1, o_u_hi):  # payees m of u (and v) that pay d
                m = v if q < o_u_lo else g.e_dst[g.o_pool[q]]
                if m in (u, d) or seen[m] == tm:
                    continue
                seen[m] = tm
                if m == v or _has(g, m, d, ws, i):
                    w += 1
        else:
            for q in range(a, b):  # payers m of d that u pays (v through edge i)
                m = g.e_src[g.n_pool[q]]
                if m in (u, d) or seen[m] == tm:
                    continue
                seen[m] = tm
                if m == v or _has(g, u, m, ws, i):
                    w += 1
        if w >= 2:
            count += 1
            widest = max(widest, w)
    return count, widest


@njit(cache=True)
def cycles(i, ws, max_len, temporal, budget, g, scr, ticks):
    """Number of distinct simple cycles of 2..max_len accounts that edge i (u→v) closes, from edges [ws, i).

    A cycle is counted once per account sequence v → … → u → v (parallel edges do not
    multiply it). With `temporal`, the path must also be time-respecting: some choice of
    its edges has strictly increasing edge index, all before i, so money can flow along it
    and come back with edge i. The search is a depth-first enumeration from v, pruned by a
    backward search from u (hop distance and, for temporal cycles, the latest moment at
    which each account can still reach u); `budget` only limits how far that pruning
    search looks, never the result. A search cut short by the budget knows each account's
    latest departure only over paths of at most `levels` hops, so that bound prunes only
    where no longer path could still fit.
    """
    u = g.e_src[i]
    v = g.e_dst[i]
    if u == v or max_len < 2:
        return 0
    bset = scr[S_BSET]
    dist = scr[S_DIST]
    ld = scr[S_LD]
    front_mark = scr[S_FRONT]
    seen = scr[S_SEEN]
    path = scr[S_PATH]
    qt = _tick(ticks)

    # --- backward: accounts that reach u within `levels` hops (before i), their distance and latest departure
    bset[u] = qt
    dist[u] = 0
    ld[u] = i
    front = np.empty(16, np.int64)
    front[0] = u
    n_front = 1
    nxt = np.empty(16, np.int64)
    levels = 0
    work = 0
    while levels < max_len - 2 and n_front > 0:
        # Cost of the next level; stop refining when it would exceed the budget.
        cost = 0
        for f in range(n_front):
            x = front[f]
            lo, hi = _span(g.n_start, g.n_stop, g.n_pool, x, ws, ld[x] if temporal else i)
            cost += hi - lo
        if work + cost > budget:
            break
        work += cost
        levels += 1
        ft = _tick(ticks)
        n_next = 0
        for f in range(n_front):
            x = front[f]
            lo, hi = _span(g.n_start, g.n_stop, g.n_pool, x, ws, ld[x] if temporal else i)
            for p in range(lo, hi):
                e = g.n_pool[p]
                y = g.e_src[e]
                if y in (u, x):
                    continue
                improved = False
                if bset[y] != qt:
                    bset[y] = qt
                    dist[y] = levels
                    ld[y] = e
                    improved = True
                elif temporal and e > ld[y]:
                    ld[y] = e
                    improved = True
                # v starts every path: it is never an inner account, so never expand through it.
                if improved and y != v and front_mark[y] != ft:
                    front_mark[y] = ft
                    nxt = _grow(nxt, n_next + 1)
                    nxt[n_next] = y
                    n_next += 1
        front, nxt = nxt, front
        n_front = n_next

    exact = n_front == 0
    # --- forward: enumerate simple paths v → … → u, one frame per account on the path ---------------
    hops_max = max_len - 1
    fx = np.empty(max_len + 1, np.int64)
    fa = np.empty(max_len + 1, np.int64)
    fb = np.empty(max_len + 1, np.int64)
    fe = np.empty(max_len + 1, np.int64)
    fc = np.empty(max_len + 1, np.int64)
    cy = np.empty(64, np.int64)
    ce = np.empty(64, np.int64)
    top = 0
    count = 0
    depth = 0
    fx[0] = v
    fa[0] = ws - 1
    path[v] = qt
    expand = True
    while depth >= 0:
        if expand:
            # children of fx[depth] at depth + 1 hops from v
            x = fx[depth]
            fb[depth] = top
            j = depth + 1
            if j <= hops_max:
                e_lo = fa[depth] + 1 if temporal else ws
                lo, hi = _span(g.o_start, g.o_stop, g.o_pool, x, e_lo, i)
                st = _tick(ticks)
                for p in range(lo, hi):
                    e = g.o_pool[p]
                    y = g.e_dst[e]
                    if y == x or seen[y] == st:
                        continue
                    seen[y] = st  # first occurrence is the earliest edge to y
                    if y == u:
                        count += 1
                        continue
                    if path[y] == qt or j == hops_max:
                        continue
                    if bset[y] == qt:
                        # ld[y] is exact for paths of at most `levels` hops, or for any length once the search ran dry.
                        if j + dist[y] > hops_max or (temporal and e >= ld[y] and (exact or hops_max - j <= levels)):
                            continue
                    elif j + levels + 1 > hops_max:
                        continue
                    cy = _grow(cy, top + 1)
                    ce = _grow(ce, top + 1)
                    cy[top] = y
                    ce[top] = e
                    top += 1
            fe[depth] = top
            fc[depth] = fb[depth]
            expand = False
        if fc[depth] < fe[depth]:
            c = fc[depth]
            fc[depth] += 1
            depth += 1
            fx[depth] = cy[c]
            fa[depth] = ce[c]
            path[cy[c]] = qt
            expand = True
        else:
            path[fx[depth]] = 0
            top = fb[depth]
            depth -= 1
    return count


@njit(cache=True)
def pattern_one(i, out, col_sg, col_tc, col_lc, ws_sg, ws_tc, ws_lc, tc_len, lc_len, budget, g, scr, ticks):
    """Write edge i's pattern features (a column index < 0 switches that family off)."""
    if col_sg >= 0:
        c, w = scatter_gather(i, ws_sg, g, scr, ticks)
        out[col_sg] = c
        out[col_sg + 1] = w
    if col_tc >= 0:
        out[col_tc] = cycles(i, ws_tc, tc_len, True, budget, g, scr, ticks)
    if col_lc >= 0:
        out[col_lc] = cycles(i, ws_lc, lc_len, False, budget, g, scr, ticks)


@njit(cache=True, parallel=True)
def pattern_batch(out, col_sg, col_tc, col_lc, ws_sg, ws_tc, ws_lc, tc_len, lc_len, budget, g, n_accounts, n_chunks,
                  first):
    """`pattern_one` for edges first.., chunks in parallel: each query reads only edges before its own.

    `first` > 0 skips queries nobody will read (the settled scorer's halo rows, which are
    scored again once their own horizon has passed).
    """
    n = g.e_src.shape[0] - first
    for c in prange(n_chunks):
        scr = np.zeros((N_SCRATCH, n_accounts), np.int64)
        ticks = np.zeros(1, np.int64)
        for i in range(first + c * n // n_chunks, first + (c + 1) * n // n_chunks):
            pattern_one(i, out[i], col_sg, col_tc, col_lc, ws_sg[i], ws_tc[i], ws_lc[i], tc_len, lc_len, budget,
                        g, scr, ticks)


# ================================================================================================
# Settled mode: window sums that do not depend on where a pass started
# ================================================================================================


@njit(cache=True)
def block_sums(e_ts, e_amt, block_us, start, stop, pool):
    """Running sums of amounts and squared amounts along each list, restarted at every time block.

    Returns (pre, suf), each (2, len(pool)): at list position p, the sum over the list's
    edges in p's block (ts // block_us) up to and including p (`pre`), and from p to the
    block's last one (`suf`); row 0 amounts, row 1 squares. A look-ahead window
    [t, t + block) spans at most two blocks, so its sum is one `suf` plus one `pre`: the
    same floating-point operations on the same edges whether the history is one batch or a
    buffered stream. A sliding sum would also carry the rounding residue of every edge it
    ever evicted, which differs between the two.
    """
    m = pool.shape[0]
    pre = np.empty((2, m))
    suf = np.empty((2, m))
    for x in range(start.shape[0]):
        lo = start[x]
        hi = stop[x]
        for p in range(lo, hi):
            a = e_amt[pool[p]]
            if p > lo and e_ts[pool[p - 1]] // block_us == e_ts[pool[p]] // block_us:
                pre[0, p] = pre[0, p - 1] + a
                pre[1, p] = pre[1, p - 1] + a * a
            else:
                pre[0, p] = a
                pre[1, p] = a * a
        for p in range(hi - 1, lo - 1, -1):
            a = e_amt[pool[p]]
            if p < hi - 1 and e_ts[pool[p + 1]] // block_us == e_ts[pool[p]] // block_us:
                suf[0, p] = a + suf[0, p + 1]
                suf[1, p] = a * a + suf[1, p + 1]
            else:
                suf[0, p] = a
                suf[1, p] = a * a
    return pre, suf


@njit(cache=True)
def ahead_sums(out, col, who, e_ts, e_end, block_us, start, stop, pool, pre, suf):
    """Sum, mean and population std of who[i]'s list edges with index in [i, e_end[i]) into out[i, col:col + 3].

    Rows are edges in processing order; e_end[i] is the first edge at or after
    e_ts[i] + block_us, so the window is the look-ahead [t, t + block_us) from edge i on.
    NaN mean and std when the window is empty (as in `_emit_side`).
    """
    for i in range(out.shape[0]):
        x = who[i]
        lo, hi = _span(start, stop, pool, x, i, e_end[i])
        n = hi - lo
        if n == 0:
            out[i, col] = 0.0
            out[i, col + 1] = np.nan
            out[i, col + 2] = np.nan
            continue
        edge = (e_ts[i] // block_us + 1) * block_us  # where the next block starts
        a = lo
        b = hi
        while a < b:
            mid = (a + b) >> 1
            if e_ts[pool[mid]] < edge:
                a = mid + 1
            else:
                b = mid
        s = 0.0
        q = 0.0
        if a > lo:  # the rest of this block: all of it lies before t + block_us
            s = suf[0, lo]
            q = suf[1, lo]
        if hi > a:  # the start of the next block
            s += pre[0, hi - 1]
            q += pre[1, hi - 1]
        mean = s / n
        var = q / n - mean * mean
        out[i, col] = s
        out[i, col + 1] = mean
        out[i, col + 2] = np.sqrt(var) if var > 0.0 else 0.0


# ================================================================================================
# Online state: the same step and queries over growable lists
# ================================================================================================


@njit(cache=True, inline="always")
def _needs(seg, pool_len, top, x):
    """Pool room that appending to list x may take (0 if its segment has space)."""
    size = seg[1, x] - seg[0, x]
    return max(4, 2 * size) if size == seg[2, x] and top + max(4, 2 * size) > pool_len else 0


@njit(cache=True)
def _make_room(seg, pools, tops, side, x):
    """Move list x (seg rows: start, stop, capacity) to the pool's end with twice the room, if it is full."""
    start = seg[0, x]
    size = seg[1, x] - start
    if size < seg[2, x]:
        return
    cap = max(4, 2 * size)
    top = tops[side]
    for pool in pools:
        pool[top: top + size] = pool[start: start + size]
    seg[0, x] = top
    seg[1, x] = top + size
    seg[2, x] = cap
    tops[side] = top + cap


@njit(cache=True)
def online_step(i, out, e_src, e_dst, e_ts, e_amt, e_pair, e_flags, e_cum, wins, ev, vi, vf, vt, v_in_amt, pc,
                o_seg, o_pool, n_seg, n_pool, k_seg, k_dst, k_pid, p_seg, p_pool, tops,
                col_sg, col_tc, col_lc, sg_w, tc_w, lc_w, tc_len, lc_len, budget, scr, ticks):
    """Score edge i (already written at index i) and add it to the state.

    Returns False, having changed nothing, when a list pool is out of room; the caller
    rebuilds the lists with more room and calls again.
    """
    u = e_src[i]
    v = e_dst[i]
    pid = e_pair[i]
    g = Lists(e_src, e_dst, o_seg[0], o_seg[1], o_pool, n_seg[0], n_seg[1], n_pool,
              k_seg[0], k_seg[1], k_dst, k_pid, p_seg[0], p_seg[1], p_pool)
    new_pair = _pair_id(g, u, v) < 0
    if (_needs(o_seg, o_pool.shape[0], tops[0], u) + _needs(n_seg, n_pool.shape[0], tops[1], v)
            + _needs(p_seg, p_pool.shape[0], tops[3], pid)
            + (_needs(k_seg, k_dst.shape[0], tops[2], u) if new_pair else 0)):
        return False
    _make_room(o_seg, (o_pool,), tops, 0, u)
    o_pool[o_seg[1, u]] = i
    o_seg[1, u] += 1
    _make_room(n_seg, (n_pool,), tops, 1, v)
    n_pool[n_seg[1, v]] = i
    n_seg[1, v] += 1
    _make_room(p_seg, (p_pool,), tops, 3, pid)
    p_pool[p_seg[1, pid]] = i
    p_seg[1, pid] += 1
    if new_pair:
        _make_room(k_seg, (k_dst, k_pid), tops, 2, u)
        at = _lower(k_dst, k_seg[0, u], k_seg[1, u], v)
        end = k_seg[1, u]
        k_dst[at + 1: end + 1] = k_dst[at:end].copy()
        k_pid[at + 1: end + 1] = k_pid[at:end].copy()
        k_dst[at] = v
        k_pid[at] = pid
        k_seg[1, u] += 1
    count_step(i, out, g, e_ts, e_amt, e_pair, e_flags, e_cum, wins, ev, vi, vf, vt, v_in_amt, pc)
    t = e_ts[i]
    n = i + 1
    pattern_one(i, out, col_sg, col_tc, col_lc, _window_start(e_ts, n, t - sg_w), _window_start(e_ts, n, t - tc_w),
                _window_start(e_ts, n, t - lc_w), tc_len, lc_len, budget, g, scr, ticks)
    return True


@njit(cache=True)
def _window_start(e_ts, n, oldest):
    """First edge index j < n with e_ts[j] > oldest."""
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) >> 1
        if e_ts[mid] <= oldest:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def online_compact(e_src, e_dst, e_ts, e_amt, e_pair, e_flags, e_cum, n, oldest_ts, ev, vi):
    """Drop the edges with ts <= oldest_ts (outside every window) and renumber the rest; returns how many."""
    keep = _window_start(e_ts, n, oldest_ts)
    if keep == 0:
        return 0
    m = n - keep
    e_src[:m] = e_src[keep:n]
    e_dst[:m] = e_dst[keep:n]
    e_ts[:m] = e_ts[keep:n]
    e_amt[:m] = e_amt[keep:n]
    e_pair[:m] = e_pair[keep:n]
    e_flags[:m] = e_flags[keep:n]
    e_cum[:m] = e_cum[keep:n]
    for k in range(ev.shape[0]):
        ev[k] -= keep
    for k in range(vi.shape[0]):
        for x in range(vi.shape[1]):
            for f in (MAXE_OUT, MINE_OUT, MAXE_IN, MINE_IN):
                if vi[k, x, f] >= keep:
                    vi[k, x, f] -= keep
                else:
                    vi[k, x, f] = -1
    return keep


@njit(cache=True)
def online_relist(keys, n, n_keys, slack):
    """Lists of edges [0, n) grouped by key, each with room to double: (seg[start, stop, capacity], pool, top)."""
    seg = np.zeros((3, n_keys), np.int64)
    for e in range(n):
        seg[1, keys[e]] += 1
    top = 0
    for x in range(n_keys):
        size = seg[1, x]
        seg[0, x] = top
        seg[1, x] = top
        seg[2, x] = max(4, 2 * size)
        top += seg[2, x]
    pool = np.zeros(top + slack, np.int64)
    for e in range(n):
        x = keys[e]
        pool[seg[1, x]] = e
        seg[1, x] += 1
    return seg, pool, top


@njit(cache=True)
def online_pair_index(pair_src, pair_dst, n_accounts, slack):
    """Per-account sorted payee lists of the known pairs: (seg, k_dst, k_pid, top)."""
    order = np.argsort(pair_src * np.int64(n_accounts) + pair_dst)
    seg, pos, top = online_relist(pair_src[order], order.shape[0], n_accounts, slack)
    k_dst = np.zeros(pos.shape[0], np.int64)
    k_pid = np.zeros(pos.shape[0], np.int64)
    for x in range(n_accounts):
        for p in range(seg[0, x], seg[1, x]):
            k_pid[p] = order[pos[p]]
            k_dst[p] = pair_dst[k_pid[p]]
    return seg, k_dst, k_pid, top
