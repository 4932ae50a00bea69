"""AMLworld-faithful attempts: the eight AMLworld typologies staged as IBM AMLworld's real HI-Small attempts look.

The default stagers (`typologies.py`) draw the textbook shapes: complete bipartite
blocks, fans of 5-15 alike sums, chains in one currency. The real attempts in
`../shared/data/amlworld-format/` differ, and detectors tuned on the textbook miss
them: hops change currency (so amounts in CNY drift 5-25 % per hop, the money being
converted at whoever converted it's rate), fans have 3-16 counterparties with amounts
over two orders of magnitude and span days, a gather-scatter hub starts paying out
before its last payer has paid (sums unrelated to what came in), a bipartite attempt
is a partial layer, a stack is several two-hop chains side by side sharing no account,
and a random walk is a short pass-through chain. `SimConfig(amlworld_shapes=True)`
stages these instead, so miners and their profiles can be measured on them.
"""

from __future__ import annotations

import numpy as np

from tianluo.simulate.calendar import DAY_S
from tianluo.simulate.population import CNY_PER_UNIT
from tianluo.simulate.typologies import Attempt, Stage, _chain_times

HOUR_S = 3600
#: Spread of the rate a hop is converted at around the reference rate, both ways.
FX_NOISE = 0.12


def _currencies(s: Stage, n: int) -> np.ndarray:
    """A currency per row: CNY half the time, else USD, HKD or EUR (the population's currencies)."""
    return np.where(s.rng.random(n) < 0.5, 0, s.rng.integers(1, len(CNY_PER_UNIT), n)).astype(np.int64)


def _paid(s: Stage, cny: np.ndarray, currency: np.ndarray) -> np.ndarray:
    """Amounts in each row's currency for CNY values, converted at a noisy rate when not CNY."""
    noise = np.where(currency == 0, 1.0, s.rng.uniform(1 - FX_NOISE, 1 + FX_NOISE, len(cny)))
    return cny * noise / CNY_PER_UNIT[currency]


def _passed(s: Stage, cny: np.ndarray, currency: np.ndarray) -> np.ndarray:
    """Amounts along a chain: a hop in the previous hop's currency keeps its rate (no conversion
    happened), a hop in another currency is converted at a fresh noisy rate."""
    fresh = np.concatenate([[True], currency[1:] != currency[:-1]])
    noise = np.where(currency == 0, 1.0, s.rng.uniform(1 - FX_NOISE, 1 + FX_NOISE, len(cny)))
    # Carry the last conversion's noise forward over hops that changed nothing.
    last = np.maximum.accumulate(np.where(fresh, np.arange(len(cny)), 0))
    return cny * noise[last] / CNY_PER_UNIT[currency]


def _two_hops(s: Stage, cny: np.ndarray, kept: np.ndarray, cur1: np.ndarray, cur2: np.ndarray) -> np.ndarray:
    """Both hops of parallel two-hop chains (first hops, then onward hops) in their currencies.

    The onward hop carries `kept` of the CNY value; it is converted afresh only where it
    changes currency, else it keeps the first hop's rate.
    """
    n = len(cny)
    noise1 = np.where(cur1 == 0, 1.0, s.rng.uniform(1 - FX_NOISE, 1 + FX_NOISE, n))
    noise2 = np.where(cur2 == cur1, noise1, np.where(cur2 == 0, 1.0, s.rng.uniform(1 - FX_NOISE, 1 + FX_NOISE, n)))
    return np.concatenate([cny * noise1 / CNY_PER_UNIT[cur1], cny * kept * noise2 / CNY_PER_UNIT[cur2]])


def _chain_currencies(s: Stage, hops: int) -> np.ndarray:
    """Per hop currency, changing at most hops (as in AMLworld's rings, where nearly every hop changes)."""
    cur = _currencies(s, hops)
    same = s.rng.random(hops) < 0.2
    cur[1:][same[1:]] = cur[:-1][same[1:]]
    return cur


def _dispersed(s: Stage, k: int) -> np.ndarray:
    """`k` fan legs in CNY, spread over two orders of magnitude around a log-uniform base."""
    return s.base(5_000, 120_000) * np.exp(s.rng.uniform(-2.0, 2.0, k))


def fan_in(s: Stage) -> Attempt:
    hub = s.core(1)
    k = s.int_between(3, 16)
    src = s.leaves(k, {int(hub[0])})
    span = s.span(1, 5)
    ts = s.times(s.start_day(span), span, k)
    cur = _currencies(s, k)
    return Attempt(s.rows(src, np.repeat(hub, k), ts, _paid(s, _dispersed(s, k), cur), currency=cur), int(hub[0]))


def fan_out(s: Stage) -> Attempt:
    hub = s.core(1)
    k = s.int_between(3, 16)
    dst = s.leaves(k, {int(hub[0])})
    span = s.span(1, 5)
    ts = s.times(s.start_day(span), span, k)
    cur = _currencies(s, k)
    return Attempt(s.rows(np.repeat(hub, k), dst, ts, _paid(s, _dispersed(s, k), cur), currency=cur), int(hub[0]))


def _carried(s: Stage, base: float, hops: int) -> np.ndarray:
    """CNY value along a chain: each hop keeps 97-100 % of the previous one (fees)."""
    return base * np.cumprod(np.concatenate([[1.0], s.rng.uniform(0.97, 1.0, hops - 1)]))


def cycle(s: Stage) -> Attempt:
    length = s.int_between(3, 10)
    nodes = s.core(length)
    ts = _chain_times(s, length, 10 * HOUR_S)
    cur = _chain_currencies(s, length)
    amount = _passed(s, _carried(s, s.base(10_000, 500_000), length), cur)
    return Attempt(s.rows(nodes, np.roll(nodes, -1), ts, amount, currency=cur), int(nodes[0]))


def scatter_gather(s: Stage) -> Attempt:
    m = s.int_between(3, 8)
    mid = s.core(m)
    ends = s.leaves(2, set(mid.tolist()))
    source, sink = ends[0], ends[1]
    span = s.span(1, 3)
    t1 = s.times(s.start_day(span + 4), span, m)
    t2 = t1 + s.gaps(m, 36 * HOUR_S, HOUR_S)
    x = _dispersed(s, m)
    cur1 = _currencies(s, m)
    cur2 = np.full(m, _currencies(s, 1)[0])  # the sink is paid in its one currency
    amount = _two_hops(s, x, s.rng.uniform(0.97, 1.0, m), cur1, cur2)
    rows = s.rows(np.concatenate([np.full(m, source), mid]), np.concatenate([mid, np.full(m, sink)]),
                  np.concatenate([t1, t2]), amount, currency=np.concatenate([cur1, cur2]))
    return Attempt(rows, int(source))


def gather_scatter(s: Stage) -> Attempt:
    hub = s.core(1)
    m, k = s.int_between(3, 10), s.int_between(3, 6)
    src = s.leaves(m, {int(hub[0])})
    dst = s.leaves(k, {int(hub[0]), *src.tolist()})
    span = s.span(1, 2)
    t_in = s.times(s.start_day(span + 4), span, m)
    # The hub starts paying out once a third of its payers have paid, and goes on for days.
    t_turn = t_in[max(0, m // 3 - 1)] + s.gaps(1, 2 * HOUR_S, 600)[0]
    t_out = t_turn + np.sort(np.concatenate([[0], s.gaps(k - 1, 30 * HOUR_S, 600)]))
    cur_in, cur_out = _currencies(s, m), _currencies(s, k)
    x = _paid(s, _dispersed(s, m), cur_in)
    y = _paid(s, _dispersed(s, k), cur_out)  # AMLworld's hubs pay out sums unrelated to what came in
    rows = s.rows(np.concatenate([src, np.repeat(hub, k)]), np.concatenate([np.repeat(hub, m), dst]),
                  np.concatenate([t_in, t_out]), np.concatenate([x, y]), currency=np.concatenate([cur_in, cur_out]))
    return Attempt(rows, int(hub[0]))


def bipartite(s: Stage) -> Attempt:
    """A partial layer: every sender pays one to three of the receivers, every receiver is paid at least once."""
    a, b = s.int_between(2, 5), s.int_between(2, 5)
    receivers = s.core(b)
    senders = s.leaves(a, set(receivers.tolist()))
    pairs = {(i, i % b) for i in range(a)} | {(j % a, j) for j in range(b)}
    for i in range(a):
        for j in s.rng.choice(b, s.int_between(1, min(3, b)), replace=False):
            pairs.add((i, int(j)))
    sel = sorted(pairs)
    src = senders[[i for i, _ in sel]]
    dst = receivers[[j for _, j in sel]]
    span = s.span(1, 2)
    ts = s.times(s.start_day(span), span, len(sel))
    cur = _currencies(s, len(sel))
    return Attempt(s.rows(src, dst, ts, _paid(s, _dispersed(s, len(sel)), cur), currency=cur), -1)


def stack(s: Stage) -> Attempt:
    """Two to five chains A → B → C side by side, sharing no account, each B paying on within 3 days."""
    c = s.int_between(2, 5)
    middle = s.core(c)
    first = s.leaves(c, set(middle.tolist()))
    last = s.leaves(c, set(middle.tolist()) | set(first.tolist()))
    span = s.span(1, 2)
    t1 = s.times(s.start_day(span + 4), span, c)
    t2 = t1 + s.gaps(c, 30 * HOUR_S, HOUR_S).clip(max=3 * DAY_S - HOUR_S)
    x = s.base(3_000, 150_000) * np.exp(s.rng.uniform(-1.0, 1.0, c))
    cur1 = _currencies(s, c)
    cur2 = np.where(s.rng.random(c) < 0.7, cur1, _currencies(s, c))
    amount = _two_hops(s, x, s.rng.uniform(0.98, 1.03, c), cur1, cur2)
    rows = s.rows(np.concatenate([first, middle]), np.concatenate([middle, last]), np.concatenate([t1, t2]),
                  amount, currency=np.concatenate([cur1, cur2]))
    return Attempt(rows, -1)


def random_walk(s: Stage) -> Attempt:
    """A short walk of 3-6 hops through distinct accounts, each paying on within two days."""
    hops = s.int_between(3, 6)
    nodes = s.core(hops + 1)
    ts = _chain_times(s, hops, 18 * HOUR_S)
    ts = ts[0] + np.concatenate([[0], np.cumsum(np.diff(ts).clip(max=2 * DAY_S))])
    cur = _chain_currencies(s, hops)
    amount = _passed(s, _carried(s, s.base(5_000, 300_000), hops), cur)
    return Attempt(s.rows(nodes[:-1], nodes[1:], ts, amount, currency=cur), int(nodes[0]))


#: The AMLworld-faithful stagers, by typology; `inject` uses them when `amlworld_shapes` is set.
STAGERS = {
    "fan_in": fan_in,
    "fan_out": fan_out,
    "cycle": cycle,
    "scatter_gather": scatter_gather,
    "gather_scatter": gather_scatter,
    "bipartite": bipartite,
    "stack": stack,
    "random": random_walk,
}
