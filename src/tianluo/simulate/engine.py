"""Run a simulation end to end: population → licit behaviour → injected crime → canonical Arrow tables.

Accounts stay integer indices until the very end, when one sort by time and a
handful of `take`s turn the columns into the canonical string columns; this is
what lets ten million rows fit in a couple of gigabytes and a few minutes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tianluo.reference.china_ids import digits_matrix, fixed_width_strings
from tianluo.schema import CHANNELS, TRANSACTIONS
from tianluo.simulate.behaviour import PURPOSES, TxnBatch, generate_licit
from tianluo.simulate.calendar import Calendar
from tianluo.simulate.population import CURRENCIES, Population, build_population
from tianluo.simulate.typologies import ALL_TYPOLOGIES, Injected, inject

#: Columns of the simulated transactions table, in canonical order (ingest derives the rest).
TRANSACTION_COLUMNS: tuple[str, ...] = (
    "txn_id", "ts", "src_account", "dst_account", "amount", "currency", "channel", "direction",
    "cross_border", "src_bank", "dst_bank", "purpose", "label", "typology", "attempt_id",
)


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. The same config (including `seed`) always gives the same data.

    `start` is a local (Beijing) date; `transactions`, when set, scales everyday activity
    so the total lands close to it; `illicit_ratio` is the share of rows that are injected
    crime; `bank` is the reporting institution, every other bank appears as a counterparty.
    """

    persons: int = 20_000
    enterprises: int = 2_000
    days: int = 90
    start: dt.date = dt.date(2024, 1, 1)
    transactions: int | None = None
    illicit_ratio: float = 0.002
    seed: int = 0
    bank: str = "TIANLUO_BANK"
    typologies: tuple[str, ...] = ALL_TYPOLOGIES
    #: Stage the eight AMLworld typologies as AMLworld's real attempts look (see `amlworld_shapes`).
    amlworld_shapes: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.persons < 100:
            problems.append(f"persons must be at least 100 (got {self.persons})")
        if self.enterprises < 20:
            problems.append(f"enterprises must be at least 20 (got {self.enterprises})")
        if self.days < 7:
            problems.append(f"days must be at least 7 (got {self.days})")
        if self.transactions is not None and self.transactions < 1:
            problems.append(f"transactions must be positive (got {self.transactions})")
        if not 0 <= self.illicit_ratio < 0.5:
            problems.append(f"illicit_ratio must be in [0, 0.5) (got {self.illicit_ratio})")
        unknown = [t for t in self.typologies if t not in ALL_TYPOLOGIES]
        if unknown:
            problems.append(f"unknown typologies {unknown}; known: {', '.join(ALL_TYPOLOGIES)}")
        if not self.bank or "-" in self.bank:
            problems.append(f"bank must be a non-empty id without '-' (got {self.bank!r})")
        if problems:
            raise ValueError("invalid simulation config: " + "; ".join(problems))

    def to_json(self) -> dict[str, object]:
        """The config as JSON-ready values (written into tianluo-source.json)."""
        return {
            "persons": self.persons, "enterprises": self.enterprises, "days": self.days,
            "start": self.start.isoformat(), "transactions": self.transactions,
            "illicit_ratio": self.illicit_ratio, "seed": self.seed, "bank": self.bank,
            "typologies": list(self.typologies), "amlworld_shapes": self.amlworld_shapes,
        }


@dataclass
class Simulated:
    """The simulated source: canonical tables plus ground truth per attempt.

    `attempts` has one row per injected scheme: attempt_id, typology, hub_account (the
    account the scheme centres on, null for bipartite/stack), accounts (all involved),
    first_ts, last_ts, transactions and amount (sum of `amount`).
    """

    transactions: pa.Table
    accounts: pa.Table
    parties: pa.Table
    config: SimConfig
    attempts: pa.Table = field(default_factory=lambda: pa.table({}))


def _ids(prefix: str, n: int, width: int) -> pa.StringArray:
    """prefix + zero-padded sequence numbers 0..n-1, built as bytes."""
    mat = np.empty((n, len(prefix) + width), dtype=np.uint8)
    mat[:, : len(prefix)] = np.frombuffer(prefix.encode(), dtype=np.uint8)
    mat[:, len(prefix) :] = digits_matrix(np.arange(n), width)
    return fixed_width_strings(mat)


def _lookup(
    values: list[str] | tuple[str, ...] | pa.Array, idx: np.ndarray, null: np.ndarray | None = None
) -> pa.Array:
    """`values[idx]` as an Arrow string column (null where `null`), without Python objects."""
    arr = values if isinstance(values, pa.Array) else pa.array(list(values), pa.string())
    return pc.take(arr, pa.array(idx, mask=null))


def _assemble(pop: Population, licit: TxnBatch, crime: Injected) -> tuple[pa.Table, pa.Table]:
    n_licit, n = len(licit), len(licit) + len(crime.rows)
    rows = TxnBatch.concat([licit, crime.rows])
    order = np.argsort(rows.ts, kind="stable")
    rows = rows.take(order)
    typology = np.concatenate([np.full(n_licit, -1, np.int8), crime.typology])[order]
    attempt = np.concatenate([np.full(n_licit, -1, np.int32), crime.attempt])[order]
    del order
    illicit = typology >= 0
    src_own, dst_own = pop.acc_own[rows.src], pop.acc_own[rows.dst]
    direction = np.where(src_own & ~dst_own, 1, 0)  # 1 "out", 0 "in" (null when both ours)
    country = pop.bank_country[pop.acc_bank]
    attempt_ids = _ids("A", len(crime.attempt_typology), 6)
    table = pa.table({
        "txn_id": _ids("T", n, 11),
        "ts": pa.array(rows.ts * 1_000_000, type=pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "src_account": pc.take(pop.account_ids, pa.array(rows.src)),
        "dst_account": pc.take(pop.account_ids, pa.array(rows.dst)),
        "amount": pa.array(rows.amount),
        "currency": _lookup(CURRENCIES, rows.currency),
        "channel": _lookup(CHANNELS, rows.channel),
        "direction": _lookup(("in", "out"), direction, src_own == dst_own),
        "cross_border": pa.array(country[rows.src] != country[rows.dst]),
        "src_bank": _lookup(pop.banks, pop.acc_bank[rows.src]),
        "dst_bank": _lookup(pop.banks, pop.acc_bank[rows.dst]),
        "purpose": _lookup(PURPOSES, rows.purpose),
        "label": pa.array(illicit.astype(np.int8)),
        "typology": _lookup(ALL_TYPOLOGIES, np.maximum(typology, 0), ~illicit),
        "attempt_id": _lookup(attempt_ids, np.maximum(attempt, 0), ~illicit),
    })
    schema = TRANSACTIONS.arrow
    table = table.cast(pa.schema([schema.field(c) for c in TRANSACTION_COLUMNS]))
    return table, _attempts_table(pop, crime, attempt_ids)


def _attempts_table(pop: Population, crime: Injected, attempt_ids: pa.StringArray) -> pa.Table:
    r = crime.rows
    k = len(crime.attempt_typology)
    first = np.full(k, np.iinfo(np.int64).max)
    last = np.full(k, np.iinfo(np.int64).min)
    np.minimum.at(first, crime.attempt, r.ts)
    np.maximum.at(last, crime.attempt, r.ts)
    accounts = []
    for a in range(k):
        m = crime.attempt == a
        accounts.append(np.unique(np.concatenate([r.src[m], r.dst[m]])))
    flat = np.concatenate(accounts) if accounts else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in accounts])]).astype(np.int32)
    return pa.table({
        "attempt_id": attempt_ids,
        "typology": _lookup(ALL_TYPOLOGIES, crime.attempt_typology),
        "hub_account": pc.take(pop.account_ids, pa.array(np.maximum(crime.attempt_hub, 0), mask=crime.attempt_hub < 0)),
        "accounts": pa.ListArray.from_arrays(pa.array(offsets), pc.take(pop.account_ids, pa.array(flat))),
        "first_ts": pa.array(first * 1_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "last_ts": pa.array(last * 1_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "transactions": pa.array(np.bincount(crime.attempt, minlength=k).astype(np.int64)),
        "amount": pa.array(np.round(np.bincount(crime.attempt, weights=r.amount, minlength=k), 2)),
    })


def simulate(config: SimConfig, progress: Callable[[str, float], None] | None = None) -> Simulated:
    """Generate a bank's population and transactions, with labelled injected crime.

    `progress(step, fraction)` is called as the work advances (fraction in [0, 1]).
    """
    report = progress or (lambda _step, _frac: None)
    seeds = np.random.SeedSequence(config.seed).spawn(3)
    cal = Calendar(config.start, config.days)
    report("population", 0.0)
    pop = build_population(config.persons, config.enterprises, config.bank, cal, np.random.default_rng(seeds[0]))
    steps = iter(np.linspace(0.15, 0.6, 20))

    def licit_step(name: str) -> None:
        report(name, float(next(steps, 0.6)))

    target = None
    if config.transactions is not None:
        target = round(config.transactions * (1 - config.illicit_ratio))
    licit = generate_licit(pop, np.random.default_rng(seeds[1]), target, licit_step)
    report("crime", 0.6)
    n_crime = round(len(licit) * config.illicit_ratio / (1 - config.illicit_ratio))
    crime = inject(pop, np.random.default_rng(seeds[2]), config.typologies, n_crime, config.amlworld_shapes)
    report("assemble", 0.7)
    transactions, attempts = _assemble(pop, licit, crime)
    report("done", 1.0)
    return Simulated(transactions=transactions, accounts=pop.accounts, parties=pop.parties, config=config,
                     attempts=attempts)
