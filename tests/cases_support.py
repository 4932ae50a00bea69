"""Shared set-up for the case-store tests: a simulated bank, its datasets, and a store on each backend.

The simulated bank is built once per session (about 4,000 transactions over 60 days with
injected crime): its first 30 days are ingested into a dataset and run through the real
detectors; the remaining days are kept as a second source for "more data arrived" tests.
Every test gets a store on SQLite and on PostgreSQL (the `db_url` fixture is
parametrised), with two institutions and a user of every role.

Import fixtures by their function names, e.g. `from tests.cases_support import
world_fixture  # noqa: F401`; pytest knows them by their short names (`world`, …).
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from argon2 import PasswordHasher
from sqlalchemy import create_engine, text

from tests.conftest import TEST_KEY
from tianluo.cases import CaseStore, User, open_store
from tianluo.cases.model import Base
from tianluo.detect import DetectInput, Detector, finish_alerts
from tianluo.detect.run import run_detection
from tianluo.ingest import ingest, open_reader
from tianluo.simulate import SimConfig, Simulated, simulate, write_source
from tianluo.store import Dataset

#: Real argon2id, with small parameters so a test can create a dozen users quickly.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "correct horse battery"
#: Monday 2024-03-04 10:00 Beijing: a working day after the simulated window.
T0 = dt.datetime(2024, 3, 4, 2, 0, tzinfo=dt.UTC)
SIM = SimConfig(persons=300, enterprises=30, days=60, transactions=4000, illicit_ratio=0.05, seed=3)
#: Where the simulated history is split: the first source ends here (UTC).
SPLIT = dt.datetime(2024, 1, 31, tzinfo=dt.UTC)
USERS = {
    "analyst_a": ("analyst", "BANK_A"),
    "analyst2_a": ("analyst", "BANK_A"),
    "senior_a": ("senior", "BANK_A"),
    "senior2_a": ("senior", "BANK_A"),
    "admin_a": ("admin", "BANK_A"),
    "auditor_a": ("auditor", "BANK_A"),
    "supervisor_a": ("supervisor", "BANK_A"),
    "analyst_b": ("analyst", "BANK_B"),
    "senior_b": ("senior", "BANK_B"),
    "admin_b": ("admin", "BANK_B"),
}


class Clock:
    """An injectable clock: starts at `T0`, moves only when a test says so."""

    def __init__(self, start: dt.datetime = T0) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


@dataclass
class Bank:
    """The simulated bank on disk: two sources and two ready datasets (copy before writing to them)."""

    first: Path  # source folder: transactions before SPLIT, all accounts and parties
    second: Path  # source folder: transactions from SPLIT on
    plain: Path  # dataset: `first` ingested, no detection run
    detected: Path  # dataset: `first` ingested and run through the default detectors


@pytest.fixture(scope="session", name="bank")
def bank_fixture(tmp_path_factory: pytest.TempPathFactory) -> Bank:
    root = tmp_path_factory.mktemp("bank")
    with pytest.MonkeyPatch.context() as mp:
        # Session scope runs before the per-test key fixture: set the same test key here.
        mp.setenv("TIANLUO_MASTER_KEY", TEST_KEY)
        mp.setenv("TIANLUO_KEYRING", str(root / "keyring.json"))
        sim = simulate(SIM)
        mid = pa.scalar(SPLIT, pa.timestamp("us", tz="UTC"))
        ts = sim.transactions.column("ts")
        before = sim.transactions.filter(pc.less(ts, mid))
        after = sim.transactions.filter(pc.greater_equal(ts, mid))
        write_source(Simulated(before, sim.accounts, sim.parties, sim.config), root / "first")
        write_source(Simulated(after, sim.accounts, sim.parties, sim.config), root / "second")
        plain = Dataset(root / "plain", create=True)
        ingest(open_reader(root / "first"), plain)
        shutil.copytree(root / "plain", root / "detected")
        run_detection(Dataset(root / "detected"))
    return Bank(root / "first", root / "second", root / "plain", root / "detected")


def copy_dataset(src: Path, dest: Path) -> Dataset:
    """A private copy of a session dataset that a test may write to."""
    shutil.copytree(src, dest)
    return Dataset(dest)


class PickTxns(Detector):
    """A detector that alerts on exactly the given transactions (subject: the paying account).

    Lets a test place alerts on chosen accounts of the real simulated data, to check the
    roll-up rules with exact expectations.
    """

    name = "test_pick"
    version = "1"

    def __init__(self, txn_ids: list[str], subject: str = "account") -> None:
        self.txn_ids = txn_ids
        self.subject = subject

    def detect(self, data: DetectInput) -> pa.Table:
        hits = data.transactions.filter(pl.col("txn_id").is_in(self.txn_ids))
        body = hits.select(
            subject_type=pl.lit(self.subject),
            subject_id="src_account" if self.subject == "account" else "txn_id",
            ts_start="ts",
            ts_end="ts",
            score=pl.lit(0.5),
            typology=pl.lit("picked"),
            reasons=pl.concat_list(pl.format("picked {}", pl.col("txn_id"))),
            txn_ids=pl.concat_list("txn_id"),
            accounts=pl.concat_list("src_account", "dst_account"),
            amount_cny="amount_cny",
            report_kind=pl.lit("suspicious"),
        )
        return finish_alerts(body, self)


@pytest.fixture(params=["sqlite", "postgresql"], name="db_url")
def db_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty case database: a SQLite file, or the module's PostgreSQL database emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cases.db'}"
    url = request.getfixturevalue("pg_database")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            names = [t.name for t in Base.metadata.sorted_tables]
            existing = set(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
                           .scalars())
            present = [n for n in names if n in existing]
            if present:
                conn.execute(text(f"TRUNCATE {', '.join(present)} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()
    return url


@dataclass
class World:
    """A store with two institutions and a user of every role; `u["senior_a"]` is a `User`."""

    store: CaseStore
    clock: Clock
    url: str
    u: dict[str, User] = field(default_factory=dict)

    def register(self, name: str, path: Path, tenant: str = "BANK_A") -> None:
        self.store.register_dataset(name, str(path), tenant)


@pytest.fixture(name="world")
def world_fixture(db_url: str) -> Iterator[World]:
    clock = Clock()
    store = open_store(db_url, clock=clock, password_hasher=FAST_HASHER)
    store.create_tenant("BANK_A", "甲银行")
    store.create_tenant("BANK_B", "乙银行")
    w = World(store, clock, db_url)
    for name, (role, tenant) in USERS.items():
        w.u[name] = store.create_user(name, PASSWORD, role, tenant)
    try:
        yield w
    finally:
        store.close()
