"""Compiled inner loops of the typology miners: windowed fan selection, pass-through search, cycle DFS, components.

Every kernel works on integer-coded, pre-sorted numpy arrays prepared by
`tianluo.detect.miners`; they return per-edge instance labels or flat arrays, never
Python objects, so the miners stay vectorised around them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Cap on DFS expansions from one start edge: a dense knot of one-off payments (a cash desk
#: or a payment processor that slipped through the filters) must not stall the whole run.
CYCLE_EXPANSION_BUDGET = 200_000


@njit(cache=True)
def _free(used: np.ndarray, i: int, j: int) -> np.ndarray:
    """Indices in [i, j) that no instance has taken yet."""
    idx = np.empty(j - i, np.int64)
    n = 0
    for k in range(i, j):
        if used[k] < 0:
            idx[n] = k
            n += 1
    return idx[:n]


@njit(cache=True)
def _best_band(idx: np.ndarray, amount: np.ndarray, max_ratio: float) -> np.ndarray:
    """The largest subset of `idx` whose amounts lie within a factor `max_ratio` of each other.

    Returns the chosen indices; ties go to the tightest band. Counterparties are counted
    distinct by the caller, since one payer may appear twice when pairs may repeat.
    """
    a = amount[idx]
    order = np.argsort(a, kind="mergesort")
    best_p, best_q, best_r = 0, -1, np.inf
    p = 0
    for q in range(len(order)):
        while a[order[q]] > max_ratio * a[order[p]]:
            p += 1
        size, ratio = q - p + 1, a[order[q]] / a[order[p]]
        if size > best_q - best_p + 1 or (size == best_q - best_p + 1 and ratio < best_r):
            best_p, best_q, best_r = p, q, ratio
    return idx[order[best_p : best_q + 1]]


@njit(cache=True)
def _n_distinct(values: np.ndarray) -> int:
    if len(values) == 0:
        return 0
    s = np.sort(values)
    return 1 + int(np.sum(s[1:] != s[:-1]))


@njit(cache=True)
def fan_instances(
    starts: np.ndarray,
    ts: np.ndarray,
    amount: np.ndarray,
    counterparty: np.ndarray,
    window: int,
    min_fan: int,
    max_fan: int,
    max_ratio: float,
    used: np.ndarray,
) -> np.ndarray:
    """Label edges (sorted by hub, then time; hub groups begin at `starts`) with fan instance ids, -1 for none.

    `used` holds the labels of an earlier pass (-1 where free) and is updated in place:
    a second pass with a shorter window and fewer counterparties (quick fans) only
    takes what the first left, and numbers its instances after the first's.

    For every start edge the window [t, t + window] of the hub's edges is searched for its
    largest amount-consistent subset; windows are then taken best first (most distinct
    counterparties), each re-searched among the edges no earlier instance took, so every
    edge belongs to at most one instance. Subsets wider than `max_fan` are collections
    (a shop's till, a payroll run), not fans, and are skipped; a window holding more than
    four times `max_fan` candidate edges belongs to a clearing or collection account and
    is not searched at all, which also keeps the cost linear in the edges.
    """
    n_inst = int(used.max()) + 1 if len(used) else 0
    busy = 4 * max_fan
    for g in range(len(starts) - 1):
        lo, hi = starts[g], starts[g + 1]
        if hi - lo < min_fan:
            continue
        end = lo + np.searchsorted(ts[lo:hi], ts[lo:hi] + window, side="right")
        size = np.zeros(hi - lo, np.int64)
        for i in range(lo, hi):
            if min_fan <= end[i - lo] - i <= busy:
                band = _best_band(_free(used, i, end[i - lo]), amount, max_ratio)
                size[i - lo] = _n_distinct(counterparty[band])
        for k in np.argsort(-size, kind="mergesort"):
            if size[k] < min_fan:
                break
            idx = _free(used, lo + k, end[k])
            if len(idx) < min_fan:
                continue
            band = _best_band(idx, amount, max_ratio)
            fan = _n_distinct(counterparty[band])
            if min_fan <= fan <= max_fan:
                used[band] = n_inst
                n_inst += 1
    return used


@njit(cache=True)
def _gather_scatter_at(
    k: int,
    lo: int,
    ts: np.ndarray,
    amount: np.ndarray,
    is_out: np.ndarray,
    used: np.ndarray,
    gather_window: int,
    scatter_window: int,
    interleave: int,
    min_in: int,
    max_in: int,
    min_out: int,
    max_out: int,
    ratio_lo: float,
    ratio_hi: float,
) -> tuple[int, int, int, int]:
    """Best gather-then-scatter around the outflow at index k: (size, first inflow, outflows taken, last inflow).

    Inflows are the hub's free inflows in [t_k - gather_window, t_k], taken as a suffix
    (the latest ones), plus every free inflow up to `interleave` after t_k (a hub that
    starts paying out before the last payer has paid, as AMLworld's do); outflows the
    longest run of free outflows from k on, within `scatter_window`, whose sum stays
    under `ratio_hi` times the inflow sum, provided it reaches `ratio_lo` times it. With
    `ratio_lo` = 0 every outflow in the window is taken. More than `max_in` payers or
    `max_out` payees is a business's turnover or a payroll run, not a scheme: such
    candidates are dropped, not trimmed to size. Only the 4 × (max_in + max_out) edges
    either side of k are looked at, which bounds the cost on clearing accounts.
    """
    t = ts[k]
    n = len(ts)
    busy = 4 * (max_in + max_out)
    outs = np.empty(min(n - k, max_out + 1), np.int64)
    n_out = 0
    total_in, count_in, last_in = 0.0, 0, -1
    for j in range(k, min(n, k + busy)):
        if ts[j] - t > scatter_window and ts[j] - t > interleave:
            break
        if used[j] >= 0:
            continue
        if is_out[j]:
            if ts[j] - t <= scatter_window and n_out <= max_out:
                outs[n_out] = j
                n_out += 1
        elif ts[j] - t <= interleave:
            total_in += amount[j]
            count_in += 1
            last_in = j
    if n_out < min_out or count_in > max_in:
        return 0, -1, 0, -1
    cum = np.cumsum(amount[outs[:n_out]])
    best, best_first, best_take = 0, -1, 0
    # i == k stands for "no inflow before the turn" (only interleaved ones); then the earlier ones, latest first.
    for i in range(k, max(lo, k - busy) - 1, -1):
        if i < k:
            if t - ts[i] > gather_window:
                break
            if is_out[i] or used[i] >= 0:
                continue
            total_in += amount[i]
            count_in += 1
            if count_in > max_in:
                break
        if count_in < min_in:
            continue
        if ratio_lo <= 0.0:
            take = n_out
        else:
            take = int(np.searchsorted(cum, ratio_hi * total_in, side="right"))
            if take < min_out or cum[take - 1] < ratio_lo * total_in:
                continue
        if take > max_out:
            continue
        if count_in + take > best:
            best, best_first, best_take = count_in + take, i, take
    return best, best_first, best_take, last_in


@njit(cache=True)
def gather_scatter_instances(
    starts: np.ndarray,
    ts: np.ndarray,
    amount: np.ndarray,
    is_out: np.ndarray,
    gather_window: int,
    scatter_window: int,
    interleave: int,
    min_in: int,
    max_in: int,
    min_out: int,
    max_out: int,
    ratio_lo: float,
    ratio_hi: float,
) -> np.ndarray:
    """Label a hub's edges (sorted by hub, time, inflows first) with gather-scatter instance ids, -1 for none.

    Candidates are tried at every outflow, best (most edges) first, and re-searched among
    free edges, so an edge belongs to at most one instance.
    """
    n = len(ts)
    used = np.full(n, -1, np.int64)
    n_inst = 0
    for g in range(len(starts) - 1):
        lo, hi = starts[g], starts[g + 1]
        if hi - lo < min_in + min_out:
            continue
        size = np.zeros(hi - lo, np.int64)
        args = (gather_window, scatter_window, interleave, min_in, max_in, min_out, max_out, ratio_lo, ratio_hi)
        for k in range(lo, hi):
            if is_out[k]:
                size[k - lo] = _gather_scatter_at(k, lo, ts[:hi], amount, is_out, used, *args)[0]
        for kk in np.argsort(-size, kind="mergesort"):
            if size[kk] == 0:
                break
            k = lo + kk
            got, first, take, last_in = _gather_scatter_at(k, lo, ts[:hi], amount, is_out, used, *args)
            if got == 0:
                continue
            for i in range(first, k):
                if not is_out[i] and used[i] < 0:
                    used[i] = n_inst
            for i in range(k + 1, last_in + 1):
                if not is_out[i] and used[i] < 0:
                    used[i] = n_inst
            taken = 0
            j = k
            while taken < take:
                if is_out[j] and used[j] < 0:
                    used[j] = n_inst
                    taken += 1
                j += 1
            n_inst += 1
    return used


@njit(cache=True)
def _first_from(ts: np.ndarray, lo: int, hi: int, t: int) -> int:
    """First index in [lo, hi) of a time-sorted run whose time is not before t (binary search)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if ts[mid] < t:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _cycles_from(
    e0: int,
    src: np.ndarray,
    dst: np.ndarray,
    ts: np.ndarray,
    amount: np.ndarray,
    ccy: np.ndarray,
    out_start: np.ndarray,
    window: int,
    min_hops: int,
    max_hops: int,
    ordered: bool,
    ratio_lo: float,
    ratio_hi: float,
    fx_drift: float,
    out: np.ndarray,
    write: bool,
) -> int:
    """Depth-first search for the cycles whose canonical first edge is e0; returns how many.

    Edges are sorted by (src, ts) and e0 indexes that order, which also breaks ties in time.
    Ordered search follows edges not earlier than the previous hop; a cycle whose hops all
    share one instant is kept only from its lowest edge, so each cycle is reported once,
    not once per rotation. Unordered search keeps every edge inside [t0, t0 + window] and
    after e0 in (time, index) order, which makes e0 the cycle's unique earliest edge.
    A hop paid in another currency than the previous one may drift a further factor
    (1 + `fx_drift`) either way: the amounts are compared in CNY, and the rates the
    money really changed at are not the reference table's.
    With `write`, the cycles' edge indices fill the rows of `out` (padded with -1).
    """
    origin, t0 = src[e0], ts[e0]
    path = np.empty(max_hops, np.int64)
    nodes = np.empty(max_hops + 1, np.int64)
    cursor = np.empty(max_hops, np.int64)
    path[0], nodes[0], nodes[1] = e0, origin, dst[e0]
    depth = 1
    cursor[0] = _first_from(ts, out_start[dst[e0]], out_start[dst[e0] + 1], t0)
    found = 0
    budget = CYCLE_EXPANSION_BUDGET
    while depth > 0 and budget > 0:
        u = nodes[depth]
        prev = path[depth - 1]
        c = cursor[depth - 1]
        if c >= out_start[u + 1] or depth >= max_hops:
            depth -= 1
            continue
        cursor[depth - 1] = c + 1
        budget -= 1
        t = ts[c]
        if t - t0 > window:
            cursor[depth - 1] = out_start[u + 1]  # edges are time-sorted per account: none later fits
            continue
        if not ordered and t == t0 and c <= e0:
            continue  # unordered: e0 must stay the cycle's earliest edge in (time, index) order
        if ratio_lo > 0.0:
            r = amount[c] / amount[prev]
            drift = 1.0 + fx_drift if ccy[c] != ccy[prev] else 1.0
            if r * drift < ratio_lo or r > ratio_hi * drift:
                continue
        v = dst[c]
        if v == origin:
            if depth + 1 < min_hops:
                continue
            if ordered and t == t0:
                # Every hop shares one instant: keep the rotation that starts at the lowest edge.
                lowest = c > e0
                for h in range(1, depth):
                    lowest = lowest and path[h] > e0
                if not lowest:
                    continue
            if write:
                for h in range(depth):
                    out[found, h] = path[h]
                out[found, depth] = c
            found += 1
            continue
        seen = False
        for h in range(depth + 1):
            if nodes[h] == v:
                seen = True
                break
        if seen:
            continue
        path[depth] = c
        nodes[depth + 1] = v
        # Skip the out-edges of v that happened before they could follow.
        cursor[depth] = _first_from(ts, out_start[v], out_start[v + 1], t if ordered else t0)
        depth += 1
    return found


@njit(cache=True)
def cycle_instances(
    src: np.ndarray,
    dst: np.ndarray,
    ts: np.ndarray,
    amount: np.ndarray,
    ccy: np.ndarray,
    out_start: np.ndarray,
    window: int,
    min_hops: int,
    max_hops: int,
    ordered: bool,
    ratio_lo: float,
    ratio_hi: float,
    fx_drift: float,
) -> np.ndarray:
    """Every hop-bounded cycle within `window`, once each, as rows of edge indices (padded with -1).

    Edges must be sorted by (src, ts) with `out_start` the CSR offsets per account. Two
    passes over the start edges, count then fill at prefix-summed offsets, size the
    output exactly; the search is cheap next to the candidate-edge preparation (0.07 s
    for the 200,000 candidate edges of 5 million simulated transactions), so it runs
    on one thread.
    """
    n = len(src)
    # One argument tuple for both passes, so the count and the fill can never search differently.
    search = (src, dst, ts, amount, ccy, out_start, window, min_hops, max_hops, ordered, ratio_lo, ratio_hi, fx_drift)
    counts = np.zeros(n, np.int64)
    dummy = np.empty((0, max_hops), np.int64)
    for e in range(n):
        counts[e] = _cycles_from(e, *search, dummy, False)
    offsets = np.zeros(n + 1, np.int64)
    offsets[1:] = np.cumsum(counts)
    out = np.full((offsets[n], max_hops), -1, np.int64)
    for e in range(n):
        if counts[e] > 0:
            _cycles_from(e, *search, out[offsets[e] : offsets[e + 1]], True)
    return out


@njit(cache=True)
def disjoint_rows(rows: np.ndarray, order: np.ndarray, n_edges: int) -> np.ndarray:
    """Rows (edge indices padded with -1) taken greedily in `order` when they share no edge with a taken one.

    One ring found from several start edges, or with a chord that makes a shorter loop
    inside it, is reported once: as its best-scoring cycle (the caller's order).
    """
    taken = np.zeros(n_edges, np.bool_)
    keep = np.zeros(len(rows), np.bool_)
    for r in order:
        free = True
        for e in rows[r]:
            if e >= 0 and taken[e]:
                free = False
                break
        if free:
            keep[r] = True
            for e in rows[r]:
                if e >= 0:
                    taken[e] = True
    return keep


@njit(cache=True, inline="always")
def _root(parent: np.ndarray, x: int) -> int:
    """Root of x's set, halving the path on the way (each visited node skips to its grandparent)."""
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@njit(cache=True)
def components(n_nodes: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected-component label (the smallest node id in it) of every node, by union-find over edges a-b."""
    parent = np.arange(n_nodes)
    for k in range(len(a)):
        x, y = _root(parent, a[k]), _root(parent, b[k])
        if x < y:
            parent[y] = x
        elif y < x:
            parent[x] = y
    for v in range(n_nodes):
        r = v
        while parent[r] != r:
            r = parent[r]
        parent[v] = r
    return parent
