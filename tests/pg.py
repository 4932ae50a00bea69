"""PostgreSQL for tests: a real server from scripts/deps/postgres.sh and a fresh database per test module.

`pg_server` runs the script once per session (it installs, initialises and starts the
server if needed, and prints the URL). When the script fails the PostgreSQL tests are
skipped with its error — except under CI (`CI=true`), where a missing database must
fail the build instead of quietly testing less. `TIANLUO_TEST_PG_URL` points the tests
at an existing server instead (a database whose role may CREATE DATABASE).

Import the fixtures by their function names (`from tests.pg import pg_server_fixture,
pg_database_fixture`); pytest knows them as `pg_server` and `pg_database`.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from typing import NoReturn

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "deps" / "postgres.sh"


def _unavailable(message: str) -> NoReturn:
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session", name="pg_server")
def pg_server_fixture() -> str:
    """URL of the server's `tianluo` database (used to create and drop test databases)."""
    given = os.environ.get("TIANLUO_TEST_PG_URL")
    if given:
        return given
    try:
        p = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"PostgreSQL is not available: {SCRIPT} could not run: {exc}")
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        _unavailable(f"PostgreSQL is not available: {SCRIPT} exited {p.returncode}:\n{p.stderr.strip()[-3000:]}")
    return lines[-1]


@pytest.fixture(scope="module", name="pg_database")
def pg_database_fixture(pg_server: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database created for this test module and dropped after it; yields its URL."""
    module = re.sub(r"[^a-z0-9_]", "_", request.module.__name__.rsplit(".", 1)[-1].lower())[:30]
    name = f"t_{module}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
