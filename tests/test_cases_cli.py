"""`tianluo cases …` as an operator runs it: a subprocess per command, a real database file, exit codes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.cases_support import Bank, bank_fixture  # noqa: F401 - fixtures are used by name
from tianluo.cases import open_store


def cases(*args: str, stdin: str | None = None, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "tianluo.cases.cli", *args], capture_output=True, text=True,
                          input=stdin, check=False, env=full)


def test_set_up_sync_list_and_verify(tmp_path: Path, bank: Bank) -> None:
    db = f"sqlite:///{tmp_path / 'cases.db'}"
    p = cases("tenants", "add", "BANK_A", "--name", "甲银行", "--db", db)
    assert p.returncode == 0 and "institution BANK_A created" in p.stdout, p.stderr
    dup = cases("tenants", "add", "BANK_A", "--db", db)
    assert dup.returncode == 2 and "exists already" in dup.stderr
    p = cases("users", "add", "alice", "--role", "analyst", "--tenant", "BANK_A", "--display-name", "李娜",
              "--password-stdin", "--db", db, stdin="correct horse battery\n")
    assert p.returncode == 0 and "user alice (analyst, BANK_A) created" in p.stdout, p.stderr
    short = cases("users", "add", "bob", "--role", "senior", "--tenant", "BANK_A", "--db", db,
                  env={"TIANLUO_PASSWORD": "short"})
    assert short.returncode == 2 and "at least 10 characters" in short.stderr
    # The URL can come from the environment, as in docs/cases.md.
    env = {"TIANLUO_DB_URL": db}
    p = cases("users", "add", "bob", "--role", "senior", "--tenant", "BANK_A", env={**env, "TIANLUO_PASSWORD":
                                                                                      "another good password"})
    assert p.returncode == 0, p.stderr
    listed = cases("users", "list", env=env)
    assert re.search(r"alice\s*│\s*李娜\s*│\s*analyst\s*│\s*BANK_A", listed.stdout), listed.stdout
    assert cases("datasets", "add", "bank", str(bank.detected), "--tenant", "BANK_A", env=env).returncode == 0
    assert str(bank.detected) in cases("datasets", "list", env=env).stdout
    synced = cases("sync", "bank", env=env)
    m = re.search(r"bank: (\d+) new alert\(s\) — (\d+) case\(s\) opened", synced.stdout)
    assert synced.returncode == 0 and m, synced.stdout + synced.stderr
    assert cases("sync", "bank", env=env).stdout.startswith("bank: 0 new alert(s)")
    shown = cases("list", "--tenant", "BANK_A", env=env)
    assert shown.returncode == 0 and f"of {m.group(2)} case(s)" in shown.stdout and "new" in shown.stdout
    ok = cases("verify-audit", env=env)
    assert ok.returncode == 0 and "audit trail OK" in ok.stdout
    missing = cases("sync", "nope", env=env)
    assert missing.returncode == 2 and "no dataset 'nope'" in missing.stderr
    store = open_store(db)
    try:
        assert store.authenticate("alice", "correct horse battery") is not None
        actors = {e["actor"] for e in store.audit_entries("BANK_A")}
        assert "system" in actors
    finally:
        store.close()
