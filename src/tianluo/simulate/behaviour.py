"""Licit behaviour: the everyday money flows that crime has to hide in.

Each behaviour is generated for all actors at once as numpy arrays (who pays,
whom, when, how much), never row by row. Scheduled flows (salaries on the
employer's pay day, loan instalments, quarterly interest) have fixed counts;
discretionary flows (shopping, bills, transfers to friends, cash, supplier
payments, cross-border trade) have a natural rate per actor and day that is
scaled to hit a requested number of transactions. Amounts are log-normal per
purpose around realistic CNY magnitudes, with the roundings people actually use
(ATM withdrawals in hundreds, 520 and 1314 yuan transfers to loved ones).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

from tianluo.schema import CHANNELS
from tianluo.simulate.calendar import DAY_S, choose, local_times
from tianluo.simulate.population import CNY_PER_UNIT, Population

#: Purposes of generated transactions; typologies disguise themselves with the same words.
PURPOSES: tuple[str, ...] = (
    "salary", "merchant", "refund", "bill", "p2p", "cash_deposit", "cash_withdrawal", "supplier",
    "cross_border", "loan_repayment", "interest", "investment", "redemption",
)
PURPOSE = {p: i for i, p in enumerate(PURPOSES)}
CHANNEL = {c: i for i, c in enumerate(CHANNELS)}

#: Natural intensity of each discretionary behaviour: events per actor per day. Actors are
#: active own-bank persons unless the name says otherwise.
RATES: dict[str, float] = {
    "merchant": 0.40, "bill": 0.10, "p2p": 0.18, "cash_deposit": 0.02, "cash_withdrawal": 0.04,
    "investment": 0.02, "redemption": 0.012, "business_cash": 0.30, "supplier": 0.8,
    "trade": 0.3, "remittance": 0.03,
}
#: Transfer amounts with a meaning (520 "I love you", 1314 "for life", 666/888 luck).
_LUCKY_AMOUNTS = np.array([52.0, 66.0, 88.0, 99.0, 168.0, 188.0, 200.0, 520.0, 666.0, 888.0, 1314.0, 1888.0])


@dataclass
class TxnBatch:
    """Transactions as columns; accounts are indices into `Population.account_ids`.

    `ts` is UTC epoch seconds; `channel`, `purpose`, `currency` index `CHANNELS`,
    `PURPOSES` and `population.CURRENCIES`.
    """

    src: np.ndarray
    dst: np.ndarray
    ts: np.ndarray
    amount: np.ndarray
    channel: np.ndarray
    purpose: np.ndarray
    currency: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, idx: np.ndarray) -> TxnBatch:
        """Rows at `idx` (integer positions or a boolean mask), in that order."""
        return TxnBatch(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @staticmethod
    def concat(batches: list[TxnBatch]) -> TxnBatch:
        return TxnBatch(**{f.name: np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(TxnBatch)})


def make_batch(
    src: np.ndarray, dst: np.ndarray, ts: np.ndarray, amount: np.ndarray,
    channel: int | np.ndarray, purpose: int | np.ndarray, currency: int | np.ndarray = 0,
) -> TxnBatch:
    """A batch from arrays, broadcasting scalar channel / purpose / currency codes."""
    n = len(ts)

    def codes(v: int | np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, dtype=np.uint8), (n,)).copy()

    return TxnBatch(
        src=np.asarray(src, dtype=np.int32), dst=np.asarray(dst, dtype=np.int32),
        ts=np.asarray(ts, dtype=np.int64), amount=np.maximum(np.round(np.asarray(amount, dtype=np.float64), 2), 0.01),
        channel=codes(channel), purpose=codes(purpose), currency=codes(currency),
    )


def lognormal(rng: np.random.Generator, median: float, sigma: float, n: int) -> np.ndarray:
    """Log-normal amounts around `median` (sigma of the log): money amounts are multiplicative."""
    return median * np.exp(sigma * rng.standard_normal(n))


def _hundreds(x: np.ndarray, lo: float = 100.0) -> np.ndarray:
    return np.maximum(np.round(x, -2), lo)


class Behaviour:
    """Generates the licit transactions of one population."""

    def __init__(self, pop: Population, rng: np.random.Generator):
        self.pop = pop
        self.rng = rng
        self.cal = pop.cal
        n_p = pop.n_own_persons
        self.own_person_cum = np.cumsum(pop.person_weight[:n_p])
        self.ext_person_cum = np.cumsum(pop.person_weight[n_p : pop.n_persons])
        self.merchant_cum = np.cumsum(pop.merchant_weight)
        self.own_merchant_cum = np.cumsum(pop.merchant_weight[: pop.n_own_ents])
        self.biller_cum = np.cumsum(pop.biller_weight)
        self.own_ent_cum = np.cumsum(pop.ent_weight[: pop.n_own_ents])
        self.investors = np.flatnonzero(pop.investor)
        self.traders = np.flatnonzero(pop.trade_partner >= 0)
        self.tied = np.flatnonzero(pop.foreign_tie >= 0)
        self.cash_biz = np.flatnonzero(pop.cash_business)

    # --- helpers --------------------------------------------------------------------------------

    def _days(self, n: int, workday: float, restday: float) -> np.ndarray:
        return choose(self.rng, self.cal.day_weights(workday, restday), n)

    def _own_people(self, n: int) -> np.ndarray:
        """Own-bank persons drawn by activity (dormant customers have weight 0)."""
        return choose(self.rng, self.own_person_cum, n)

    def _accounts_of(self, persons: np.ndarray) -> np.ndarray:
        """Account used by each person: the primary one, or for 30 % of uses a second account."""
        acc = persons.copy()
        own = persons < self.pop.n_own_persons
        sec = np.full(len(persons), -1)
        sec[own] = self.pop.secondary[persons[own]]
        use = (sec >= 0) & (self.rng.random(len(persons)) < 0.3)
        acc[use] = sec[use]
        return acc

    def _swap(self, src: np.ndarray, dst: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray]:
        flip = self.rng.random(len(src)) < p
        return np.where(flip, dst, src), np.where(flip, src, dst)

    # --- scheduled flows -------------------------------------------------------------------------

    def salaries(self) -> TxnBatch:
        """Monthly pay: each employer pays all its staff on its pay day (earlier if a holiday)."""
        pop, rng = self.pop, self.rng
        staff = np.flatnonzero(pop.employer >= 0)
        emp = pop.employer[staff] - pop.ent0
        out = []
        for payday in np.unique(pop.payday):
            sel = staff[pop.payday[emp] == payday]
            for day in self.cal.month_days(int(payday)):
                pay_day = self.cal.previous_workday(day)
                e = pop.employer[sel] - pop.ent0
                ts = (self.cal.t0 + pay_day * DAY_S + pop.pay_hour[e] * 3600 + rng.integers(0, 1800, len(sel)))
                amount = pop.salary[sel] * (1 + 0.03 * rng.standard_normal(len(sel)))
                out.append(make_batch(pop.employer[sel], sel, ts, amount, CHANNEL["ach"], PURPOSE["salary"]))
        return TxnBatch.concat(out) if out else _empty()

    def loan_repayments(self) -> TxnBatch:
        """Monthly instalments debited overnight on each loan's due day."""
        pop, rng = self.pop, self.rng
        payers = np.concatenate([np.flatnonzero(pop.loan_amount > 0),
                                 pop.ent0 + np.flatnonzero(pop.ent_loan_amount > 0)])
        amounts = np.concatenate([pop.loan_amount[pop.loan_amount > 0], pop.ent_loan_amount[pop.ent_loan_amount > 0]])
        due = np.concatenate([pop.loan_day[pop.loan_amount > 0], pop.ent_loan_day[pop.ent_loan_amount > 0]])
        out = []
        for dom in np.unique(due):
            sel = due == dom
            for day in self.cal.month_days(int(dom)):
                ts = local_times(rng, self.cal, np.full(int(sel.sum()), day), "batch")
                out.append(make_batch(payers[sel], np.full(len(ts), pop.loan_account), ts, amounts[sel],
                                      CHANNEL["transfer"], PURPOSE["loan_repayment"]))
        return TxnBatch.concat(out) if out else _empty()

    def interest(self) -> TxnBatch:
        """Demand-deposit interest, posted to every active customer on the 21st of each quarter's last month."""
        pop, rng = self.pop, self.rng
        persons = np.flatnonzero(pop.person_weight[: pop.n_own_persons] > 0)
        ents = pop.ent0 + np.arange(pop.n_own_ents)
        out = []
        for day in range(self.cal.days):
            d = self.cal.date(day)
            if d.day == 21 and d.month in (3, 6, 9, 12):
                dst = np.concatenate([persons, ents])
                amount = np.concatenate([lognormal(rng, 6, 1.5, len(persons)), lognormal(rng, 300, 1.5, len(ents))])
                ts = local_times(rng, self.cal, np.full(len(dst), day), "batch")
                out.append(make_batch(np.full(len(dst), pop.interest_account), dst, ts, amount,
                                      CHANNEL["transfer"], PURPOSE["interest"]))
        return TxnBatch.concat(out) if out else _empty()

    # --- discretionary flows ----------------------------------------------------------------------

    def natural_counts(self) -> dict[str, float]:
        """Expected rows of each discretionary behaviour at its natural rate over the window."""
        pop, days = self.pop, self.cal.days
        active = float((pop.person_weight[: pop.n_own_persons] > 0).sum())
        return {
            "merchant": RATES["merchant"] * active * days * 1.02,  # plus ~2 % refunds
            "bill": RATES["bill"] * active * days,
            "p2p": RATES["p2p"] * active * days,
            "cash": (RATES["cash_deposit"] + RATES["cash_withdrawal"]) * active * days
            + RATES["business_cash"] * len(self.cash_biz) * days,
            "investment": (RATES["investment"] + RATES["redemption"]) * len(self.investors) * days,
            "supplier": RATES["supplier"] * pop.n_own_ents * days,
            "cross_border": RATES["trade"] * len(self.traders) * days + RATES["remittance"] * len(self.tied) * days,
        }

    def discretionary(self, counts: dict[str, int], progress: Callable[[str], None]) -> list[TxnBatch]:
        """Generate `counts[name]` rows of each discretionary behaviour (see `natural_counts`)."""
        makers = {
            "merchant": self.merchant, "bill": self.bills, "p2p": self.p2p, "cash": self.cash,
            "investment": self.investment, "supplier": self.supplier, "cross_border": self.cross_border,
        }
        out = []
        for name, make in makers.items():
            progress(name)
            if counts.get(name, 0) > 0:
                out.append(make(counts[name]))
        return out

    def merchant(self, n: int) -> TxnBatch:
        """Card and QR payments to shops and restaurants, and the occasional refund."""
        pop, rng = self.pop, self.rng
        n = round(n / 1.02)
        n_ext = n * 15 // 100  # other banks' cardholders shopping at our merchants
        payer = np.concatenate([self._accounts_of(self._own_people(n - n_ext)),
                                pop.n_own_persons + choose(rng, self.ext_person_cum, n_ext)])
        shop = pop.ent0 + np.concatenate([choose(rng, self.merchant_cum, n - n_ext),
                                          choose(rng, self.own_merchant_cum, n_ext)])
        ts = local_times(rng, self.cal, self._days(n, 1.0, 1.35), "retail")
        amount = lognormal(rng, 60, 1.0, n)
        channel = np.where(rng.random(n) < 0.4, CHANNEL["card"], CHANNEL["mobile"])
        pay = make_batch(payer, shop, ts, amount, channel, PURPOSE["merchant"])
        r = np.flatnonzero(rng.random(n) < 0.02)
        r_ts = ts[r] + rng.integers(3600, 10 * DAY_S, len(r))
        keep = r_ts < self.cal.t_end
        r, r_ts = r[keep], r_ts[keep]
        r_amount = np.where(rng.random(len(r)) < 0.7, pay.amount[r], pay.amount[r] * rng.uniform(0.2, 0.9, len(r)))
        refund = make_batch(shop[r], payer[r], r_ts, r_amount, channel[r], PURPOSE["refund"])
        return TxnBatch.concat([pay, refund])

    def bills(self, n: int) -> TxnBatch:
        """Utility and phone bills: auto-debits overnight, or paid in an app during the day."""
        rng = self.rng
        payer = self._accounts_of(self._own_people(n))
        biller = self.pop.ent0 + choose(rng, self.biller_cum, n)
        auto = rng.random(n) < 0.3
        days = self._days(n, 1.0, 0.8)
        ts = np.where(auto, local_times(rng, self.cal, days, "batch"), local_times(rng, self.cal, days, "personal"))
        channel = np.where(auto, CHANNEL["ach"], CHANNEL["mobile"])
        return make_batch(payer, biller, ts, lognormal(rng, 150, 0.7, n), channel, PURPOSE["bill"])

    def p2p(self, n: int) -> TxnBatch:
        """Transfers between people, mostly within each person's small circle of regular contacts."""
        pop, rng = self.pop, self.rng
        person = self._own_people(n)
        slot = choose(rng, np.cumsum([0.3, 0.2, 0.15, 0.1, 0.08, 0.07, 0.05, 0.05]), n)
        contact = pop.contacts[person, slot]
        src, dst = self._swap(person, contact, 0.5)
        src, dst = self._accounts_of(src), self._accounts_of(dst)
        base = lognormal(rng, 300, 1.2, n)
        u = rng.random(n)
        amount = np.select(
            [u < 0.05, u < 0.40, u < 0.70],
            [_LUCKY_AMOUNTS[rng.integers(0, len(_LUCKY_AMOUNTS), n)], _hundreds(base), np.maximum(np.round(base), 1)],
            base,
        )
        ts = local_times(rng, self.cal, self._days(n, 1.0, 1.2), "personal")
        channel = np.where(rng.random(n) < 0.65, CHANNEL["mobile"], CHANNEL["transfer"])
        return make_batch(src, dst, ts, amount, channel, PURPOSE["p2p"])

    def cash(self, n: int) -> TxnBatch:
        """Cash at the counter and ATMs (persons), and shops banking their takings.

        The bank's branch cash account is the other side, so cash keeps both ends of a row.
        Some shops' takings land in the 45,000-49,999 band or above the ¥50,000 large-cash
        reporting line, so a structuring detector meets honest near-threshold deposits too.
        """
        pop, rng = self.pop, self.rng
        active = max(1.0, float((pop.person_weight[: pop.n_own_persons] > 0).sum()))
        w = {"dep": RATES["cash_deposit"], "wd": RATES["cash_withdrawal"],
             "biz": RATES["business_cash"] * len(self.cash_biz) / active}
        total = sum(w.values())
        n_dep = int(n * w["dep"] / total)
        n_biz = int(n * w["biz"] / total) if len(self.cash_biz) else 0
        n_wd = n - n_dep - n_biz
        branches = pop.branch_accounts

        def branch(person: np.ndarray) -> np.ndarray:
            home = pop.person_branch[person]
            return np.where(rng.random(len(person)) < 0.85, home, branches[rng.integers(0, len(branches), len(person))])

        dep_p = self._own_people(n_dep)
        dep = make_batch(branch(dep_p), self._accounts_of(dep_p),
                         local_times(rng, self.cal, self._days(n_dep, 1.0, 0.3), "branch"),
                         _hundreds(lognormal(rng, 3000, 1.0, n_dep)), CHANNEL["cash"], PURPOSE["cash_deposit"])
        wd_p = self._own_people(n_wd)
        atm = rng.random(n_wd) < 0.65
        days = self._days(n_wd, 1.0, 0.6)
        wd_ts = np.where(atm, local_times(rng, self.cal, days, "atm"), local_times(rng, self.cal, days, "branch"))
        wd_amount = np.where(atm, np.clip(_hundreds(lognormal(rng, 800, 0.7, n_wd)), 100, 20_000),
                             _hundreds(lognormal(rng, 5000, 1.0, n_wd)))
        wd = make_batch(self._accounts_of(wd_p), branch(wd_p), wd_ts, wd_amount, CHANNEL["cash"],
                        PURPOSE["cash_withdrawal"])
        shop = self.cash_biz[rng.integers(0, max(1, len(self.cash_biz)), n_biz)] if n_biz else np.zeros(0, np.int64)
        biz = make_batch(pop.ent_branch[shop], pop.ent0 + shop,
                         local_times(rng, self.cal, self._days(n_biz, 1.0, 0.5), "branch"),
                         _hundreds(lognormal(rng, 15_000, 0.8, n_biz)), CHANNEL["cash"], PURPOSE["cash_deposit"])
        return TxnBatch.concat([dep, wd, biz])

    def investment(self, n: int) -> TxnBatch:
        """Wealth-management purchases (round thousands) and redemptions, on working days."""
        pop, rng = self.pop, self.rng
        if len(self.investors) == 0:
            return _empty()
        who = self.investors[rng.integers(0, len(self.investors), n)]
        buy = rng.random(n) < RATES["investment"] / (RATES["investment"] + RATES["redemption"])
        wmp = np.full(n, pop.wmp_account)
        src, dst = np.where(buy, who, wmp), np.where(buy, wmp, who)
        amount = np.where(buy, np.maximum(np.round(lognormal(rng, 50_000, 0.8, n), -3), 1000),
                          lognormal(rng, 52_000, 0.8, n))
        ts = local_times(rng, self.cal, self._days(n, 1.0, 0.1), "business")
        purpose = np.where(buy, PURPOSE["investment"], PURPOSE["redemption"])
        return make_batch(src, dst, ts, amount, CHANNEL["transfer"], purpose)

    def supplier(self, n: int) -> TxnBatch:
        """Business-to-business payments between regular trading partners, on working days."""
        pop, rng = self.pop, self.rng
        payer = choose(rng, self.own_ent_cum, n)
        slot = choose(rng, np.cumsum([0.3, 0.25, 0.15, 0.12, 0.1, 0.08]), n)
        src, dst = self._swap(pop.ent0 + payer, pop.suppliers[payer, slot], 0.4)
        amount = lognormal(rng, 30_000, 1.3, n) * np.where(pop.ent_individual[payer], 0.1, 1.0)
        u = rng.random(n)
        channel = np.select([amount >= 1_000_000, u < 0.04, u < 0.10],
                            [CHANNEL["wire"], CHANNEL["cheque"], CHANNEL["ach"]], CHANNEL["transfer"])
        ts = local_times(rng, self.cal, self._days(n, 1.0, 0.03), "business")
        return make_batch(src, dst, ts, amount, channel, PURPOSE["supplier"])

    def cross_border(self, n: int) -> TxnBatch:
        """Trade settlement of importers/exporters and personal remittances, in foreign currency."""
        pop, rng = self.pop, self.rng
        trade_w = RATES["trade"] * len(self.traders)
        remit_w = RATES["remittance"] * len(self.tied)
        if trade_w + remit_w == 0:
            return _empty()
        n_trade = round(n * trade_w / (trade_w + remit_w))
        firm = self.traders[rng.integers(0, len(self.traders), n_trade)] if n_trade else np.zeros(0, np.int64)
        n_remit = n - n_trade
        person = self.tied[rng.integers(0, len(self.tied), n_remit)] if n_remit else np.zeros(0, np.int64)
        local = np.concatenate([pop.ent0 + firm, person])
        foreign = np.concatenate([pop.trade_partner[firm], pop.foreign_tie[person]])
        outward = rng.random(n) < np.where(np.arange(n) < n_trade, 0.55, 0.6)
        cny = np.where(np.arange(n) < n_trade, lognormal(rng, 200_000, 1.1, n),
                       np.where(outward, lognormal(rng, 30_000, 0.8, n), lognormal(rng, 10_000, 0.9, n)))
        currency = pop.acc_currency[foreign]
        src, dst = np.where(outward, local, foreign), np.where(outward, foreign, local)
        ts = local_times(rng, self.cal, self._days(n, 1.0, 0.02), "business")
        amount = cny / CNY_PER_UNIT[currency]
        return make_batch(src, dst, ts, amount, CHANNEL["wire"], PURPOSE["cross_border"], currency)


def _empty() -> TxnBatch:
    return make_batch(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), 0, 0)


def active_rows(pop: Population, batch: TxnBatch) -> np.ndarray:
    """Mask of rows whose two accounts are open and in licit use at the row's time."""
    ts = batch.ts
    return ((ts >= pop.licit_from[batch.src]) & (ts < pop.licit_until[batch.src])
            & (ts >= pop.licit_from[batch.dst]) & (ts < pop.licit_until[batch.dst]))


def generate_licit(
    pop: Population, rng: np.random.Generator, target: int | None, progress: Callable[[str], None]
) -> TxnBatch:
    """All licit transactions, about `target` rows if given (else the natural volume).

    Scheduled flows keep their natural counts and discretionary ones are scaled to fill the
    rest; rows that fall outside an account's open period are dropped and, when a target is
    set, replaced by one top-up round, so the total lands within a fraction of a per cent.
    """
    b = Behaviour(pop, rng)
    progress("salaries")
    fixed = TxnBatch.concat([b.salaries(), b.loan_repayments(), b.interest()])
    natural = b.natural_counts()
    total_natural = sum(natural.values())
    scale = 1.0
    if target is not None:
        if target < len(fixed):
            fixed = fixed.take(np.sort(rng.choice(len(fixed), target, replace=False)))
            scale = 0.0
        else:
            scale = (target - len(fixed)) / total_natural
    counts = {k: round(v * scale) for k, v in natural.items()}
    parts = [fixed, *b.discretionary(counts, progress)]
    licit = TxnBatch.concat(parts)
    licit = licit.take(active_rows(pop, licit))
    if target is not None and len(licit) < target and scale > 0:
        kept_variable = len(licit) - int(active_rows(pop, fixed).sum())
        more = (target - len(licit)) / max(1, kept_variable)
        extra = TxnBatch.concat(b.discretionary({k: round(v * more) for k, v in counts.items()}, progress))
        licit = TxnBatch.concat([licit, extra.take(active_rows(pop, extra))])
    return licit
