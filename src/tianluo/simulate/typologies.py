"""Injected crime with ground truth: AMLworld's eight laundering patterns and China's typical schemes.

Each typology is a function that stages one attempt (one scheme run by one
group) on the simulated population and returns its transactions; `inject`
calls them round-robin until the requested share of illicit rows is reached.
The structure each typology claims (who pays whom, in which order, within
which time) holds exactly on the generated rows, so detectors can be scored on
it and tests can assert it.

Rules every attempt follows:

- at least one side of every row is an account of the reporting bank (a bank
  only sees its own customers' transactions), so the "core" of a scheme (hubs,
  intermediaries, chain members) banks with us while leaves may be elsewhere;
- chains are time-ordered: each hop strictly after the money arrived;
- accounts are used only while open; dormant accounts are woken only by crime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tianluo.simulate.behaviour import CHANNEL, PURPOSE, TxnBatch, make_batch
from tianluo.simulate.calendar import DAY_S, UTC_OFFSET_S, Calendar, local_times
from tianluo.simulate.population import ENTERPRISE, PERSON, Population

#: The cash amount from which Chinese banks must file a large-value transaction report
#: (大额交易报告, PBOC Order [2016] No. 3): ¥50,000 in cash per day.
CASH_REPORT_THRESHOLD_CNY = 50_000.0


@dataclass(frozen=True)
class Typology:
    """A crime pattern: its id, Chinese name and what its attempts look like."""

    name: str
    zh: str
    description: str


TYPOLOGIES: dict[str, Typology] = {t.name: t for t in (
    Typology("fan_in", "多对一汇集", "Many accounts (5-15) each pay one hub account within days (AMLworld fan-in)."),
    Typology("fan_out", "一对多分散", "One hub account pays many accounts (5-15) within days (AMLworld fan-out)."),
    Typology("cycle", "循环转账", "A time-ordered chain of 3-8 own-bank accounts whose last hop returns the money, "
             "less small fees, to the first account (AMLworld cycle)."),
    Typology("scatter_gather", "分散-汇集", "A source pays 3-10 intermediaries, each of which later pays one sink "
             "(AMLworld scatter-gather)."),
    Typology("gather_scatter", "汇集-分散", "Many sources pay a hub, which, after the last inflow, pays the total out "
             "to many destinations (AMLworld gather-scatter)."),
    Typology("bipartite", "二部图转账", "Each of 2-5 senders pays each of 2-5 own-bank receivers "
             "(AMLworld bipartite)."),
    Typology("stack", "多层二部图", "Two stacked bipartite layers: senders pay a middle layer, which pays on to "
             "receivers only after it has been paid (AMLworld stack)."),
    Typology("random", "随机路径", "A random, time-ordered walk of 4-10 hops between own-bank accounts, which may "
             "revisit an account (AMLworld random)."),
    Typology("structuring", "拆分现金存款", "One person deposits cash 3-8 times just under the ¥50,000 reporting "
             "line (¥45,000-49,999.99) on different days at two or more branches."),
    Typology("rapid_in_out", "快进快出", "A large inflow (¥200k-5M) leaves the account again within hours, in 2-6 "
             "outflows totalling 98-100 % of it."),
    Typology("dispersed_in_concentrated_out", "分散转入集中转出", "10-30 payers pay one account over days; it then "
             "pays ≈ the whole sum to one or two accounts."),
    Typology("concentrated_in_dispersed_out", "集中转入分散转出", "One or two large inflows are paid out, ≈ in "
             "full, to 10-30 accounts over the following days."),
    Typology("dormant_reactivation", "休眠账户异常激活", "An account unused for years and with no activity in the "
             "window suddenly receives and sends large sums in the second half of the window."),
    Typology("mule_paofen", "跑分洗钱", "A mule account (often newly opened) receives 15-60 small payments from "
             "different people, mostly at night, and forwards each within minutes, less a commission, to 1-3 "
             "upstream accounts."),
    Typology("illegal_fundraising", "非法集资", "An enterprise takes round-sum 'investments' (¥10k-200k) from 20-80 "
             "individuals, mostly elderly, and pays them monthly 'interest' of 1.5-3 %, Ponzi style."),
    Typology("gambling", "赌博资金", "Players pay round amounts, mostly at night, into 2-4 collector cards that are "
             "swept each night to one master account, which pays winnings back to some players."),
)}

#: Every typology the simulator can inject, in the order `inject` cycles through them.
ALL_TYPOLOGIES: tuple[str, ...] = tuple(TYPOLOGIES)


@dataclass
class Attempt:
    """One staged scheme: its rows and the account it centres on (-1 when it has none)."""

    rows: TxnBatch
    hub: int


class Stage:
    """What typologies draw on: pools of eligible accounts, the clock and amounts."""

    def __init__(self, pop: Population, rng: np.random.Generator):
        self.pop, self.rng, self.cal = pop, rng, pop.cal
        cal: Calendar = pop.cal
        idx = np.arange(len(pop.acc_kind))
        own, person, firm = pop.acc_own, pop.acc_kind == PERSON, pop.acc_kind == ENTERPRISE
        # Only accounts open (and in use) for the whole window carry crime, except where a
        # typology wants a fresh or a dormant one.
        whole = (pop.licit_from <= cal.t0) & (pop.licit_until >= cal.t_end)
        domestic = pop.bank_country[pop.acc_bank] == pop.bank_country[0]
        elderly = np.zeros(len(idx), dtype=bool)
        elderly[: pop.n_persons] = pop.person_birth_year <= cal.start.year - 60
        fresh = (pop.licit_from > cal.t0) & (pop.licit_from < cal.t_end - 3 * DAY_S) & (idx < pop.n_own_persons)
        own_ent = idx[own & whole & firm]
        self.pools = {
            "own_person": idx[own & whole & person],
            "own_ent": own_ent,
            "ext_person": idx[~own & person],
            "ext_ent": idx[~own & firm & domestic],
            "elderly": idx[elderly & (whole | ~own)],
            "new_person": idx[fresh],
            # Investment-consulting, tech-service, finance and property firms front most schemes.
            "fundraiser": own_ent[np.isin(pop.ent_letter[own_ent - pop.ent0], ("L", "M", "J", "K"))],
        }
        self.dormant = list(pop.dormant)
        self.window_days = cal.days

    # --- accounts ---------------------------------------------------------------------------------

    def pick(self, pools: dict[str, float], k: int, exclude: set[int] | None = None) -> np.ndarray:
        """`k` distinct accounts, each from a pool drawn with the given weights, none in `exclude`."""
        names = [p for p in pools if len(self.pools[p])]
        w = np.array([pools[p] for p in names], dtype=np.float64)
        taken = set(exclude or ())
        out: list[int] = []
        for _ in range(100 * k + 100):
            if len(out) == k:
                return np.array(out, dtype=np.int64)
            pool = self.pools[names[int(self.rng.choice(len(names), p=w / w.sum()))]]
            a = int(pool[self.rng.integers(0, len(pool))])
            if a not in taken:
                taken.add(a)
                out.append(a)
        raise ValueError(f"population too small to find {k} distinct accounts in {names}; simulate more persons")

    def core(self, k: int, exclude: set[int] | None = None, ent_share: float = 0.35) -> np.ndarray:
        """Own-bank accounts that can carry a scheme's core (hubs, intermediaries, chain members)."""
        return self.pick({"own_person": 1 - ent_share, "own_ent": ent_share}, k, exclude)

    def leaves(self, k: int, exclude: set[int] | None = None) -> np.ndarray:
        """Accounts at the edge of a scheme, ours or other banks', persons or firms."""
        return self.pick({"own_person": 0.4, "ext_person": 0.35, "own_ent": 0.1, "ext_ent": 0.15}, k, exclude)

    # --- time ---------------------------------------------------------------------------------------

    def int_between(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def span(self, lo: int, hi: int) -> int:
        """A span of days for an attempt, shrunk to a third of short windows."""
        return max(1, min(self.int_between(lo, hi), self.window_days // 3))

    def start_day(self, span_days: int, earliest: int = 0) -> int:
        return self.int_between(earliest, max(earliest, self.window_days - span_days - 1))

    def times(self, first_day: int, span_days: int, n: int, hours: str = "personal") -> np.ndarray:
        """`n` sorted event times on days [first_day, first_day + span_days), hour by profile."""
        days = first_day + self.rng.integers(0, span_days, n)
        return np.sort(local_times(self.rng, self.cal, days, hours))

    def gaps(self, n: int, mean_s: float, min_s: int = 120) -> np.ndarray:
        return (self.rng.exponential(mean_s, n) + min_s).astype(np.int64)

    # --- amounts ------------------------------------------------------------------------------------

    def base(self, lo: float, hi: float) -> float:
        """A log-uniform amount: schemes run from petty to very large."""
        return float(np.exp(self.rng.uniform(np.log(lo), np.log(hi))))

    def jitter(self, base: float, n: int, spread: float = 0.15) -> np.ndarray:
        return base * self.rng.uniform(1 - spread, 1 + spread, n)

    def split(self, total: float, n: int) -> np.ndarray:
        """`total` in `n` uneven parts that add up (to the cent) to it."""
        parts = np.round(total * self.rng.dirichlet(np.full(n, 3.0)), 2)
        parts[-1] = round(total - parts[:-1].sum(), 2)
        return parts

    # --- rows ---------------------------------------------------------------------------------------

    def rows(self, src: np.ndarray, dst: np.ndarray, ts: np.ndarray, amount: np.ndarray,
             channel: np.ndarray | None = None, purpose: np.ndarray | None = None,
             currency: np.ndarray | None = None) -> TxnBatch:
        """A batch whose channel and purpose, unless given, look like licit ones of its size and sides.

        `amount` is in `currency` (indexes of `population.CURRENCIES`, CNY when not given).
        """
        src, dst, amount = np.asarray(src), np.asarray(dst), np.round(np.asarray(amount, dtype=np.float64), 2)
        n = len(src)
        if channel is None:
            channel = np.select([amount >= 1_000_000, (amount < 50_000) & (self.rng.random(n) < 0.4)],
                                [CHANNEL["wire"], CHANNEL["mobile"]], CHANNEL["transfer"])
        if purpose is None:
            ks, kd = self.pop.acc_kind[src], self.pop.acc_kind[dst]
            # Payments between firms and people pass as shopping and refunds when small and
            # as payment for goods or services (货款) when large.
            purpose = np.select(
                [(ks == PERSON) & (kd == PERSON), amount >= 5000, ks == PERSON],
                [PURPOSE["p2p"], PURPOSE["supplier"], PURPOSE["merchant"]],
                PURPOSE["refund"],
            )
        return make_batch(src, dst, ts, amount, channel, purpose, 0 if currency is None else currency)

    def fit_window(self, batch: TxnBatch) -> TxnBatch:
        """Pull an attempt that runs past the window back inside it, keeping its order.

        It moves back by whole days first (hours of day stay realistic) and is squeezed
        towards its start only if it is longer than the room left.
        """
        t_last = self.cal.t_end - 1
        over = int(batch.ts.max()) - t_last
        if over <= 0:
            return batch
        room = int(batch.ts.min()) - self.cal.t0
        shift = min((over + DAY_S - 1) // DAY_S * DAY_S, room // DAY_S * DAY_S)
        ts = batch.ts - shift
        if ts.max() > t_last:
            first = ts.min()
            ts = first + ((ts - first) * ((t_last - first) / (ts.max() - first))).astype(np.int64)
        batch.ts = ts
        return batch


# --- AMLworld patterns ---------------------------------------------------------------------------


def fan_in(s: Stage) -> Attempt:
    hub = s.core(1)
    k = s.int_between(5, 15)
    src = s.leaves(k, {int(hub[0])})
    span = s.span(1, 7)
    ts = s.times(s.start_day(span), span, k)
    return Attempt(s.rows(src, np.repeat(hub, k), ts, s.jitter(s.base(3_000, 80_000), k)), int(hub[0]))


def fan_out(s: Stage) -> Attempt:
    hub = s.core(1)
    k = s.int_between(5, 15)
    dst = s.leaves(k, {int(hub[0])})
    span = s.span(1, 7)
    ts = s.times(s.start_day(span), span, k)
    return Attempt(s.rows(np.repeat(hub, k), dst, ts, s.jitter(s.base(3_000, 80_000), k)), int(hub[0]))


def _chain_times(s: Stage, hops: int, mean_gap_s: float) -> np.ndarray:
    t0 = local_times(s.rng, s.cal, np.array([s.start_day(max(1, hops // 2))]), "business")[0]
    return t0 + np.concatenate([[0], np.cumsum(s.gaps(hops - 1, mean_gap_s, 300))])


def _decaying(s: Stage, base: float, hops: int) -> np.ndarray:
    """Amounts along a chain: each hop keeps 97-99.5 % of the previous (fees, commissions)."""
    return base * np.cumprod(np.concatenate([[1.0], s.rng.uniform(0.97, 0.995, hops - 1)]))


def cycle(s: Stage) -> Attempt:
    length = s.int_between(3, 8)
    nodes = s.core(length)
    ts = _chain_times(s, length, 8 * 3600)
    return Attempt(s.rows(nodes, np.roll(nodes, -1), ts, _decaying(s, s.base(10_000, 500_000), length)), int(nodes[0]))


def scatter_gather(s: Stage) -> Attempt:
    m = s.int_between(3, 10)
    mid = s.core(m)
    ends = s.leaves(2, set(mid.tolist()))
    source, sink = ends[0], ends[1]
    span = s.span(1, 4)
    t1 = s.times(s.start_day(span + 3), span, m)
    t2 = t1 + s.gaps(m, 12 * 3600, 600)
    x = s.jitter(s.base(5_000, 200_000), m)
    y = x * s.rng.uniform(0.97, 0.995, m)
    rows = s.rows(np.concatenate([np.full(m, source), mid]), np.concatenate([mid, np.full(m, sink)]),
                  np.concatenate([t1, t2]), np.concatenate([x, y]))
    return Attempt(rows, int(source))


def gather_scatter(s: Stage) -> Attempt:
    hub = s.core(1)
    m, k = s.int_between(3, 10), s.int_between(3, 10)
    src = s.leaves(m, {int(hub[0])})
    dst = s.leaves(k, {int(hub[0]), *src.tolist()})
    span = s.span(1, 5)
    t_in = s.times(s.start_day(span + 3), span, m)
    t_out = t_in[-1] + np.sort(s.gaps(k, 18 * 3600, 600))
    x = s.jitter(s.base(5_000, 150_000), m)
    y = s.split(float(np.round(x, 2).sum()) * s.rng.uniform(0.97, 0.995), k)
    rows = s.rows(np.concatenate([src, np.repeat(hub, k)]), np.concatenate([np.repeat(hub, m), dst]),
                  np.concatenate([t_in, t_out]), np.concatenate([x, y]))
    return Attempt(rows, int(hub[0]))


def bipartite(s: Stage) -> Attempt:
    a, b = s.int_between(2, 5), s.int_between(2, 5)
    receivers = s.core(b)
    senders = s.leaves(a, set(receivers.tolist()))
    src, dst = np.repeat(senders, b), np.tile(receivers, a)
    span = s.span(1, 6)
    ts = s.rng.permutation(s.times(s.start_day(span), span, a * b))
    return Attempt(s.rows(src, dst, ts, s.jitter(s.base(5_000, 100_000), a * b)), -1)


def stack(s: Stage) -> Attempt:
    a, b, c = s.int_between(2, 4), s.int_between(2, 4), s.int_between(2, 4)
    middle = s.core(b)
    first = s.leaves(a, set(middle.tolist()))
    last = s.leaves(c, set(middle.tolist()) | set(first.tolist()))
    span = s.span(1, 4)
    t1 = s.rng.permutation(s.times(s.start_day(2 * span + 2), span, a * b))
    x = s.jitter(s.base(5_000, 100_000), a * b)
    t2 = t1.max() + np.sort(s.gaps(b * c, 12 * 3600, 600))
    received = np.round(x, 2).reshape(a, b).sum(axis=0)  # per middle account
    y = np.concatenate([s.split(r * s.rng.uniform(0.97, 0.995), c) for r in received])
    rows = s.rows(np.concatenate([np.repeat(first, b), np.repeat(middle, c)]),
                  np.concatenate([np.tile(middle, a), np.tile(last, b)]),
                  np.concatenate([t1, s.rng.permutation(t2)]), np.concatenate([x, y]))
    return Attempt(rows, -1)


def random_walk(s: Stage) -> Attempt:
    hops = s.int_between(4, 10)
    path = [int(s.core(1)[0])]
    for _ in range(hops):
        if len(path) > 2 and s.rng.random() < 0.2:
            # Revisit an earlier account (not the current or the previous one).
            path.append(path[int(s.rng.integers(0, len(path) - 2))])
        else:
            path.append(int(s.core(1, set(path))[0]))
    nodes = np.array(path)
    ts = _chain_times(s, hops, 10 * 3600)
    return Attempt(s.rows(nodes[:-1], nodes[1:], ts, _decaying(s, s.base(5_000, 300_000), hops)), int(nodes[0]))


# --- China's typical schemes --------------------------------------------------------------------


def structuring(s: Stage) -> Attempt:
    person = s.pick({"own_person": 1.0}, 1)[0]
    pop = s.pop
    k = s.int_between(3, 8)
    span = s.span(k, k + 7)
    days = s.start_day(span) + np.sort(s.rng.choice(span, min(k, span), replace=False))
    k = len(days)
    home = pop.person_branch[pop.acc_party[person]]  # the owner's branch, also for a second card
    province = pop.branch_province[pop.branch_accounts == home][0]
    near = pop.branch_accounts[(pop.branch_province == province) & (pop.branch_accounts != home)]
    others = near if len(near) else pop.branch_accounts[pop.branch_accounts != home]
    # At least one visit to the home branch and one elsewhere, the rest either.
    branches = np.where(s.rng.random(k) < 0.4, home, others[s.rng.integers(0, len(others), k)])
    branches[:2] = home, others[s.rng.integers(0, len(others))]
    branches = s.rng.permutation(branches)
    u = s.rng.uniform(0.9 * CASH_REPORT_THRESHOLD_CNY, CASH_REPORT_THRESHOLD_CNY - 0.01, k)
    amount = np.where(s.rng.random(k) < 0.7, np.floor(u / 100) * 100, np.floor(u * 100) / 100)
    ts = local_times(s.rng, s.cal, days, "branch")
    rows = s.rows(branches, np.full(k, person), ts, amount,
                  np.full(k, CHANNEL["cash"]), np.full(k, PURPOSE["cash_deposit"]))
    return Attempt(rows, int(person))


def rapid_in_out(s: Stage) -> Attempt:
    hub = s.core(1, ent_share=0.5)
    n_in, n_out = s.int_between(1, 3), s.int_between(2, 6)
    src = s.pick({"own_ent": 0.3, "ext_ent": 0.5, "ext_person": 0.2}, n_in, {int(hub[0])})
    dst = s.leaves(n_out, {int(hub[0]), *src.tolist()})
    t_first = local_times(s.rng, s.cal, np.array([s.start_day(2)]), "business")[0]
    t_in = t_first + np.sort(s.rng.integers(0, 2 * 3600, n_in))
    t_in[0] = t_first
    # Out again within hours: every outflow lands within 20 h of the first inflow.
    t_out = t_in.max() + np.sort(s.rng.integers(600, 6 * 3600, n_out))
    x = s.split(s.base(200_000, 5_000_000), n_in)
    y = s.split(float(x.sum()) * s.rng.uniform(0.98, 1.0), n_out)
    rows = s.rows(np.concatenate([src, np.repeat(hub, n_out)]), np.concatenate([np.repeat(hub, n_in), dst]),
                  np.concatenate([t_in, t_out]), np.concatenate([x, y]))
    return Attempt(rows, int(hub[0]))


def dispersed_in_concentrated_out(s: Stage) -> Attempt:
    hub = s.core(1)
    n_in, n_out = s.int_between(10, 30), s.int_between(1, 2)
    src = s.leaves(n_in, {int(hub[0])})
    dst = s.leaves(n_out, {int(hub[0]), *src.tolist()})
    span = s.span(2, 10)
    t_in = s.times(s.start_day(span + 2), span, n_in)
    t_out = t_in[-1] + np.sort(s.rng.integers(3600, 2 * DAY_S, n_out))
    x = np.exp(s.rng.uniform(np.log(2_000), np.log(50_000), n_in))
    y = s.split(float(np.round(x, 2).sum()) * s.rng.uniform(0.98, 1.0), n_out)
    rows = s.rows(np.concatenate([src, np.repeat(hub, n_out)]), np.concatenate([np.repeat(hub, n_in), dst]),
                  np.concatenate([t_in, t_out]), np.concatenate([x, y]))
    return Attempt(rows, int(hub[0]))


def concentrated_in_dispersed_out(s: Stage) -> Attempt:
    hub = s.core(1)
    n_in, n_out = s.int_between(1, 2), s.int_between(10, 30)
    src = s.pick({"own_ent": 0.4, "ext_ent": 0.4, "ext_person": 0.2}, n_in, {int(hub[0])})
    dst = s.leaves(n_out, {int(hub[0]), *src.tolist()})
    span = s.span(1, 5)
    first = s.start_day(span + 2)
    t_in = np.sort(local_times(s.rng, s.cal, np.full(n_in, first), "business"))
    t_out = t_in[-1] + np.sort(s.rng.integers(600, span * DAY_S, n_out))
    x = s.split(s.base(100_000, 3_000_000), n_in)
    y = s.split(float(x.sum()) * s.rng.uniform(0.98, 1.0), n_out)
    rows = s.rows(np.concatenate([src, np.repeat(hub, n_out)]), np.concatenate([np.repeat(hub, n_in), dst]),
                  np.concatenate([t_in, t_out]), np.concatenate([x, y]))
    return Attempt(rows, int(hub[0]))


def dormant_reactivation(s: Stage) -> Attempt | None:
    if not s.dormant:
        return None
    acct = s.dormant.pop(int(s.rng.integers(0, len(s.dormant))))
    n_in, n_out = s.int_between(1, 3), s.int_between(2, 5)
    src = s.pick({"own_ent": 0.4, "ext_ent": 0.4, "ext_person": 0.2}, n_in, {acct})
    dst = s.leaves(n_out, {acct, *src.tolist()})
    day = s.int_between(s.window_days // 2, max(s.window_days // 2, s.window_days - 4))
    t_in = np.sort(local_times(s.rng, s.cal, np.full(n_in, day), "business"))
    t_out = t_in[-1] + np.sort(s.rng.integers(1800, 3 * DAY_S, n_out))
    x = s.split(s.base(100_000, 3_000_000), n_in)
    y = s.split(float(x.sum()) * s.rng.uniform(0.97, 1.0), n_out)
    rows = s.rows(np.concatenate([src, np.full(n_out, acct)]), np.concatenate([np.full(n_in, acct), dst]),
                  np.concatenate([t_in, t_out]), np.concatenate([x, y]))
    return Attempt(rows, acct)


def mule_paofen(s: Stage) -> Attempt:
    pop = s.pop
    new = s.pools["new_person"]
    if len(new) and s.rng.random() < 0.6:
        mule = int(new[s.rng.integers(0, len(new))])
        opened_day = int((pop.licit_from[mule] - s.cal.t0) // DAY_S)
        earliest = min(opened_day + s.int_between(2, 20), s.window_days - 2)
    else:
        mule, earliest = int(s.core(1, ent_share=0.0)[0]), 0
    k = s.int_between(15, 60)
    victims = s.pick({"ext_person": 0.7, "own_person": 0.3}, k, {mule})
    upstream = s.pick({"ext_person": 0.6, "ext_ent": 0.2, "own_person": 0.2}, s.int_between(1, 3),
                      {mule, *victims.tolist()})
    span = max(1, min(s.span(2, 7), s.window_days - earliest - 1))
    t_in = s.times(s.start_day(span, earliest), span, k, "night")
    t_fwd = t_in + s.rng.integers(60, 900, k)
    x = np.exp(s.rng.uniform(np.log(100), np.log(5_000), k))
    x = np.where(s.rng.random(k) < 0.5, np.round(x), np.round(x, 2))
    fwd = np.round(x * (1 - s.rng.uniform(0.005, 0.03, k)), 2)
    in_purpose = np.where(s.rng.random(k) < 0.5, PURPOSE["merchant"], PURPOSE["p2p"])
    in_channel = np.where(s.rng.random(k) < 0.7, CHANNEL["mobile"], CHANNEL["transfer"])
    rows = s.rows(np.concatenate([victims, np.full(k, mule)]),
                  np.concatenate([np.full(k, mule), upstream[s.rng.integers(0, len(upstream), k)]]),
                  np.concatenate([t_in, t_fwd]), np.concatenate([x, fwd]),
                  np.concatenate([in_channel, np.full(k, CHANNEL["transfer"])]),
                  np.concatenate([in_purpose, np.full(k, PURPOSE["p2p"])]))
    return Attempt(rows, mule)


def illegal_fundraising(s: Stage) -> Attempt:
    pool = "fundraiser" if len(s.pools["fundraiser"]) else "own_ent"
    firm = int(s.pick({pool: 1.0}, 1)[0])
    k = s.int_between(20, 80)
    investors = s.pick({"elderly": 0.65, "own_person": 0.2, "ext_person": 0.15}, k, {firm})
    interval = min(30, max(2, s.window_days // 3))
    span = max(1, min(20, int(s.window_days * 0.4)))
    first = s.start_day(span + interval)
    t_dep = s.times(first, span, k, "business")
    deposit = s.rng.choice([10_000, 20_000, 30_000, 50_000, 100_000, 200_000], k,
                           p=[0.3, 0.2, 0.1, 0.25, 0.1, 0.05]).astype(np.float64)
    rate = s.rng.uniform(0.015, 0.03) * interval / 30  # "monthly interest", pro rata
    src, dst, ts, amt = [investors], [np.full(k, firm)], [t_dep], [deposit]
    cycle_n = 1
    while True:
        t_pay = t_dep + cycle_n * interval * DAY_S
        due = t_pay < s.cal.t_end
        if not due.any():
            break
        src.append(np.full(int(due.sum()), firm))
        dst.append(investors[due])
        ts.append(t_pay[due])
        amt.append(np.round(deposit[due] * rate, 2))
        cycle_n += 1
    n_dep = k
    purposes = np.concatenate([np.full(n_dep, PURPOSE["investment"]),
                               np.full(sum(len(a) for a in amt[1:]), PURPOSE["interest"])])
    rows = s.rows(np.concatenate(src), np.concatenate(dst), np.concatenate(ts), np.concatenate(amt),
                  np.full(len(purposes), CHANNEL["transfer"]), purposes)
    return Attempt(rows, firm)


def gambling(s: Stage) -> Attempt:
    new = s.pools["new_person"]
    n_col = s.int_between(2, 4)
    collectors = s.core(n_col, ent_share=0.0)
    master = int(s.core(1, set(collectors.tolist()))[0])
    players = s.pick({"own_person": 0.5, "ext_person": 0.5}, s.int_between(20, 60),
                     {master, *collectors.tolist()})
    earliest = 0
    if len(new) and s.rng.random() < 0.4:
        # One collector card is freshly opened for the purpose (卡农).
        fresh = int(new[s.rng.integers(0, len(new))])
        if fresh not in {master, *players.tolist()}:
            collectors[0] = fresh
            earliest = min(int((s.pop.licit_from[fresh] - s.cal.t0) // DAY_S) + 1, s.window_days - 2)
    span = max(1, min(s.span(3, 10), s.window_days - earliest - 1))
    # Every player stakes at least once; keen ones come back.
    who = np.concatenate([players, players[s.rng.integers(0, len(players), len(players) * s.int_between(0, 2))]])
    n_dep = len(who)
    col = collectors[s.rng.integers(0, n_col, n_dep)]
    t_dep = s.times(s.start_day(span, earliest), span, n_dep, "night")
    stakes = np.array([100, 200, 300, 500, 1000, 2000, 3000, 5000, 10_000, 20_000], dtype=np.float64)
    dep = stakes[s.rng.choice(len(stakes), n_dep, p=[0.1, 0.15, 0.1, 0.2, 0.2, 0.1, 0.05, 0.05, 0.03, 0.02])]
    # Each collector is swept once per gambling night (noon to noon, Beijing time).
    night = (t_dep + UTC_OFFSET_S - 12 * 3600) // DAY_S
    sweep_src, sweep_ts, sweep_amt = [], [], []
    for c in collectors:
        for n_id in np.unique(night[col == c]):
            m = (col == c) & (night == n_id)
            sweep_src.append(c)
            sweep_ts.append(t_dep[m].max() + s.rng.integers(600, 2 * 3600))
            sweep_amt.append(dep[m].sum())
    first_sweep = min(sweep_ts)
    played = np.unique(who)
    winners = played[s.rng.random(len(played)) < 0.3]
    t_win = first_sweep + s.rng.integers(3600, 2 * DAY_S, len(winners))
    winners, t_win = winners[t_win < s.cal.t_end], t_win[t_win < s.cal.t_end]
    win = np.round(stakes[s.rng.integers(3, 9, len(winners))] * s.rng.uniform(0.5, 3.0, len(winners)), -2)
    rows = s.rows(np.concatenate([who, sweep_src, np.full(len(winners), master)]),
                  np.concatenate([col, np.full(len(sweep_src), master), winners]),
                  np.concatenate([t_dep, sweep_ts, t_win]).astype(np.int64),
                  np.concatenate([dep, sweep_amt, np.maximum(win, 100)]))
    return Attempt(rows, master)


_STAGERS: dict[str, Callable[[Stage], Attempt | None]] = {
    "fan_in": fan_in, "fan_out": fan_out, "cycle": cycle, "scatter_gather": scatter_gather,
    "gather_scatter": gather_scatter, "bipartite": bipartite, "stack": stack, "random": random_walk,
    "structuring": structuring, "rapid_in_out": rapid_in_out,
    "dispersed_in_concentrated_out": dispersed_in_concentrated_out,
    "concentrated_in_dispersed_out": concentrated_in_dispersed_out,
    "dormant_reactivation": dormant_reactivation, "mule_paofen": mule_paofen,
    "illegal_fundraising": illegal_fundraising, "gambling": gambling,
}


@dataclass
class Injected:
    """All illicit rows, with the typology (index into `ALL_TYPOLOGIES`) and attempt of each row."""

    rows: TxnBatch
    typology: np.ndarray
    attempt: np.ndarray
    attempt_typology: np.ndarray
    attempt_hub: np.ndarray


def inject(
    pop: Population, rng: np.random.Generator, typologies: tuple[str, ...], target_rows: int,
    amlworld_shapes: bool = False,
) -> Injected:
    """Stage attempts in rounds over `typologies` until at least `target_rows` illicit rows exist.

    With `amlworld_shapes` the eight AMLworld typologies are staged as IBM AMLworld's real
    attempts look (`amlworld_shapes.STAGERS`: currency changes per hop, partial bipartite
    layers, stacks of chains, interleaved gather-scatter) instead of the textbook shapes.

    Each round stages one attempt of every typology, in a shuffled order (rather than a row
    budget per typology): every requested typology is present as soon as the budget allows
    one attempt each, a small budget is not spent on the first few only, and the overshoot
    is at most one attempt.
    """
    from tianluo.simulate.amlworld_shapes import STAGERS as AMLWORLD_STAGERS

    stagers = {**_STAGERS, **AMLWORLD_STAGERS} if amlworld_shapes else _STAGERS
    stage = Stage(pop, rng)
    batches: list[TxnBatch] = []
    typ, att, att_typ, hubs = [], [], [], []
    total, misses = 0, 0
    round_order: list[str] = []
    while total < target_rows and typologies and misses < len(typologies):
        if not round_order:
            round_order = [typologies[j] for j in rng.permutation(len(typologies))]
        name = round_order.pop()
        attempt = stagers[name](stage)
        if attempt is None:  # e.g. no dormant account left
            misses += 1
            continue
        misses = 0
        rows = stage.fit_window(attempt.rows)
        batches.append(rows)
        typ.append(np.full(len(rows), ALL_TYPOLOGIES.index(name), dtype=np.int8))
        att.append(np.full(len(rows), len(att_typ), dtype=np.int32))
        att_typ.append(ALL_TYPOLOGIES.index(name))
        hubs.append(attempt.hub)
        total += len(rows)
    if not batches:
        empty = make_batch(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), 0, 0)
        return Injected(empty, np.zeros(0, np.int8), np.zeros(0, np.int32), np.zeros(0, np.int8), np.zeros(0, np.int64))
    return Injected(TxnBatch.concat(batches), np.concatenate(typ), np.concatenate(att),
                    np.array(att_typ, dtype=np.int8), np.array(hubs, dtype=np.int64))
