"""Backtesting a rule change and running it in shadow: exact alerts added and removed, labels, never queued."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest

from tests.cases_support import (  # noqa: F401 - fixtures are used by name
    Bank,
    PickTxns,
    World,
    bank_fixture,
    copy_dataset,
    db_url_fixture,
    world_fixture,
)
from tests.pg import pg_database_fixture, pg_server_fixture  # noqa: F401
from tests.test_miners import _fan_in_rows
from tests.test_miners import _input as miner_input
from tests.test_rules import Book, cst
from tianluo.detect.base import DetectInput, alert_id
from tianluo.detect.miners import FanInMiner
from tianluo.detect.profiles import load_profile
from tianluo.detect.rules import RuleDetector, RuleError, Thresholds, load_rules
from tianluo.detect.rules.backtest import RuleVersion, backtest, file_kind, rule_figures, shadow_detectors
from tianluo.detect.run import load_input, run_detection
from tianluo.store import Dataset

# --- crafted data: three accounts pass a sum straight through, 60k, 120k and 180k -------------------------


def _through(book: Book, account: str, amount: float, day: int, payees: tuple[str, str]) -> list[str]:
    """`amount` in from a stranger, 99 % of it out to two new payees within hours: the rapid in/out shape."""
    return [
        book.add("XE1-A", account, amount, cst(2024, 3, day, 10)),
        book.add(account, payees[0], round(amount * 0.495, 2), cst(2024, 3, day, 12)),
        book.add(account, payees[1], round(amount * 0.495, 2), cst(2024, 3, day, 13)),
    ]


def _crafted() -> tuple[DetectInput, dict[str, list[str]]]:
    """The book, labelled: the 60k and 180k pass-throughs are illicit, the 120k one and the rest licit."""
    book = Book()
    book.add("X39", "E2-A", 1_000, cst(2024, 2, 1))  # a month of history: first contacts after it are new
    txns = {
        "P1-A": _through(book, "P1-A", 60_000, 4, ("X1", "X2")),
        "P1-B": _through(book, "P1-B", 120_000, 6, ("X3", "X4")),
        "P2-A": _through(book, "P2-A", 180_000, 8, ("X5", "X6")),
    }
    book.add("X7", "P1-A", 800, cst(2024, 3, 9, 9))  # an unrelated everyday payment
    data = book.data()
    illicit = set(txns["P1-A"] + txns["P2-A"])
    tx = data.transactions.with_columns(label=pl.col("txn_id").is_in(list(illicit)).cast(pl.Int8))
    return DetectInput(tx, data.accounts, data.parties), txns


def _version(tmp_path: Path, **parameters: Any) -> RuleDetector:
    path = tmp_path / f"thresholds-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(json.dumps({"parameters": parameters}), encoding="utf-8")
    return RuleVersion.from_files([path]).detector()


def test_lowering_a_threshold_adds_exactly_the_alerts_now_over_the_line(tmp_path: Path) -> None:
    data, txns = _crafted()
    res = backtest(data, _version(tmp_path, rapid_min_cny=50_000), RuleDetector())
    assert res.added == [alert_id("rapid_in_out", "P1-A", txns["P1-A"])]
    assert res.removed == []
    (rapid,) = [r for r in res.rules if r.rule == "rapid_in_out"]
    assert rapid.parameters == {"rapid_min_cny": (100_000, 50_000)}
    assert (rapid.added, rapid.added_illicit, rapid.removed) == (1, 1, 0)
    assert rapid.before is not None and rapid.after is not None
    # Before: the 120k (licit) and 180k (illicit) pass-throughs; after: the 60k (illicit) one too.
    assert (rapid.before.alerts, rapid.before.true_positives, rapid.before.precision) == (2, 1, 0.5)
    assert (rapid.after.alerts, rapid.after.true_positives) == (3, 2)
    assert rapid.after.precision == pytest.approx(2 / 3)
    assert (rapid.before.recall, rapid.after.recall) == (0.5, 1.0)  # 3 of 6 illicit transactions, then 6 of 6
    assert rapid.after.alerts_per_10k == pytest.approx(3 / data.transactions.height * 10_000, abs=1e-3)
    # Every other rule raises the same alerts in both versions.
    assert all(not (r.added or r.removed) for r in res.rules if r.rule != "rapid_in_out")
    (added,) = [s for s in res.sample if s["side"].startswith("added")]
    assert (added["rule"], added["subject"], added["illicit"]) == ("rapid_in_out", "P1-A", True)
    assert added["measures"]["in_total"] == 60_000


def test_raising_a_threshold_lists_the_removed_alerts_and_the_kept_one_nearest_the_line(tmp_path: Path) -> None:
    data, txns = _crafted()
    res = backtest(data, _version(tmp_path, rapid_min_cny=150_000), RuleDetector())
    assert res.added == []
    assert res.removed == [alert_id("rapid_in_out", "P1-B", txns["P1-B"])]
    (rapid,) = [r for r in res.rules if r.rule == "rapid_in_out"]
    assert (rapid.removed, rapid.removed_illicit) == (1, 0)
    assert rapid.after is not None and (rapid.after.alerts, rapid.after.precision) == (1, 1.0)
    sides = {s["side"].split(":")[0]: s for s in res.sample if s["rule"] == "rapid_in_out"}
    assert sides["removed"]["subject"] == "P1-B" and sides["removed"]["illicit"] is False
    assert sides["kept"]["subject"] == "P2-A" and sides["kept"]["line"] == {"rapid_min_cny": 150_000}
    # Totals over every compared rule: the removed alert was the only false one of rapid_in_out.
    assert res.before.alerts - res.after.alerts == 1
    assert res.after.true_positives == res.before.true_positives


def test_the_sample_shows_the_windows_just_under_the_new_line(tmp_path: Path) -> None:
    """At ¥130k the 180k pass-through is over the line; the 120k one is just under it, the 60k one far under."""
    data, _ = _crafted()
    res = backtest(data, _version(tmp_path, rapid_min_cny=130_000), _version(tmp_path, rapid_min_cny=200_000))
    sides = {(s["side"].split(":")[0], s["subject"]) for s in res.sample if s["rule"] == "rapid_in_out"}
    assert sides == {("added", "P2-A"), ("not raised", "P1-B")}  # nothing kept: at ¥200k nothing fired
    (under,) = [s for s in res.sample if s["side"].startswith("not raised")]
    assert under["measures"]["in_total"] == 120_000 and under["illicit"] is False
    assert under["line"] == {"rapid_min_cny": 130_000}


def test_a_changed_pack_is_compared_with_the_builtin_rule_it_replaces(tmp_path: Path) -> None:
    """A pack of one edited rule: only that rule is compared, its literal threshold is the change."""
    data, txns = _crafted()
    builtin = (Path(load_rules()[0].source.split("#")[0]).parent / "suspicious.yaml").read_text(encoding="utf-8")
    start = builtin.index("  - id: rapid_in_out")
    rule = builtin[start:builtin.index("  - id:", start + 10)]
    assert "\"${rapid_min_cny}\"" in rule
    pack = tmp_path / "mine.yaml"
    pack.write_text("pack: mine\nrules:\n" + rule.replace("\"${rapid_min_cny}\"", "170000"), encoding="utf-8")
    assert file_kind(pack) == "pack"
    version = RuleVersion.from_files([pack])
    candidate = version.detector()
    from tianluo.detect.rules.backtest import baseline_for

    base = baseline_for(candidate.rules)
    assert [r.id for r in base] == ["rapid_in_out"]
    res = backtest(data, candidate, RuleDetector(base))
    assert [r.rule for r in res.rules] == ["rapid_in_out"]
    assert res.removed == [alert_id("rapid_in_out", "P1-B", txns["P1-B"])] and res.added == []


def test_stored_alerts_can_be_the_baseline(tmp_path: Path) -> None:
    data, txns = _crafted()
    stored = pl.from_arrow(RuleDetector().detect(data))
    assert isinstance(stored, pl.DataFrame)
    res = backtest(data, _version(tmp_path, rapid_min_cny=50_000), stored)
    assert res.added == [alert_id("rapid_in_out", "P1-A", txns["P1-A"])] and res.removed == []


def test_first_contacts_count_only_once_the_data_holds_enough_history() -> None:
    """In the first `new_counterparty_history_days` of a history every counterparty is new: no rapid in/out."""
    cold, warm = Book(), Book()
    warm.add("X39", "E2-A", 1_000, cst(2024, 2, 18))  # 15 days before the pass-through
    _through(cold, "P2-A", 180_000, 4, ("X5", "X6"))
    _through(warm, "P2-A", 180_000, 4, ("X5", "X6"))
    assert Thresholds.load().value("new_counterparty_history_days") == 14
    alerts = {name: pl.from_arrow(RuleDetector().detect(b.data(), only=["rapid_in_out"]))
              for name, b in (("cold", cold), ("warm", warm))}
    assert alerts["cold"].height == 0
    assert alerts["warm"]["subject_id"].to_list() == ["P2-A"]
    t = Thresholds.load({"new_counterparty_history_days": 0})
    no_wait = pl.from_arrow(RuleDetector(load_rules(thresholds=t), thresholds=t).detect(cold.data(),
                                                                                    only=["rapid_in_out"]))
    assert no_wait["subject_id"].to_list() == ["P2-A"]


def _profile(tmp_path: Path, name: str, fan_in: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps({"profile": name, "version": 1, "miners": {"fan_in": fan_in}}), encoding="utf-8")
    return path


def test_a_miner_profile_change_removes_exactly_the_fans_below_its_new_count(tmp_path: Path) -> None:
    """Six payers pay one hub: a fan-in at min_fan 5, not at 7; a seventh payer's fan survives both."""
    second = [(f"g{i}", h, f"Q{i}", hub, amount) for i, (_, h, _, hub, amount) in enumerate(_fan_in_rows("HUB2"))]
    rows = [*_fan_in_rows(), *second, ("g6", 46, "Q6", "HUB2", 10_000)]
    data = miner_input(rows)
    tx = data.transactions.with_columns(label=pl.col("txn_id").str.starts_with("f").cast(pl.Int8))
    data = DetectInput(tx, data.accounts, data.parties)
    seven = load_profile(_profile(tmp_path, "seven", {"min_fan": 7})).build()
    five = load_profile(_profile(tmp_path, "five", {"min_fan": 5})).build()
    res = backtest(data, seven, five)
    assert res.removed == [alert_id("miner_fan_in", "HUB", [f"f{i}" for i in range(6)])] and res.added == []
    (fan,) = res.rules
    assert (fan.rule, fan.removed, fan.removed_illicit) == ("miner_fan_in", 1, 1)
    assert fan.before is not None and fan.after is not None
    assert (fan.before.alerts, fan.before.true_positives, fan.after.alerts, fan.after.true_positives) == (2, 1, 1, 0)
    assert fan.parameters == {}  # a miner's parameters live in its profile, recorded in detector_version


def test_a_profile_runs_in_shadow_and_a_profile_is_no_rule_file(bank: Bank, tmp_path: Path) -> None:
    ds = copy_dataset(bank.plain, tmp_path / "ds")
    loose = _profile(tmp_path, "loose", {"min_fan": 3, "max_amount_ratio": None, "min_hub_share": 0.0})
    assert file_kind(loose) == "profile"
    with pytest.raises(RuleError, match="a miner profile, not rules"):
        RuleVersion.from_files([loose])
    detectors = shadow_detectors([loose])
    assert [(d.name, d.kind, d.shadow) for d in detectors] == [("miner_fan_in", "miner", True)]
    expected = FanInMiner(min_fan=3, max_amount_ratio=None, min_hub_share=0.0).detect(load_input(ds)).num_rows
    assert expected > 0, "the test needs fans of three on the simulated bank"
    res = run_detection(ds, detectors)
    assert res.new == {"miner_fan_in (shadow)": expected}
    assert (ds.count("alerts"), ds.count("shadow_alerts")) == (0, expected)


def test_rule_figures_without_labels_give_volume_but_no_precision() -> None:
    data, _ = _crafted()
    unlabelled = DetectInput(data.transactions.drop("label"), data.accounts, data.parties)
    figures = {f.rule: f.figures for f in rule_figures(RuleDetector(), unlabelled)}
    assert figures["rapid_in_out"].alerts == 2
    assert figures["rapid_in_out"].precision is None and figures["rapid_in_out"].recall is None


def test_a_file_that_is_neither_pack_nor_thresholds_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("something: else\n", encoding="utf-8")
    with pytest.raises(RuleError, match=r"neither a rule pack .* nor a miner profile"):
        file_kind(bad)
    unknown = tmp_path / "t.yaml"
    unknown.write_text("parameters:\n  rapid_min_cnyy: 5\n", encoding="utf-8")
    with pytest.raises(RuleError, match="rapid_min_cnyy: unknown parameter"):
        RuleVersion.from_files([unknown]).detector()


def test_thresholds_of_the_change_win_over_the_standing_ones(tmp_path: Path) -> None:
    standing, change = tmp_path / "a.yaml", tmp_path / "b.yaml"
    standing.write_text("parameters:\n  rapid_min_cny: 70000\n  fan_many: 12\n", encoding="utf-8")
    change.write_text("parameters:\n  rapid_min_cny: 90000\n", encoding="utf-8")
    det = RuleVersion.from_files([change], [standing]).detector()
    assert (det.thresholds.value("rapid_min_cny"), det.thresholds.value("fan_many")) == (90000, 12)
    assert Thresholds.load().value("rapid_min_cny") != 90000


# --- shadow mode on a real (simulated) dataset and the case store ---------------------------------------


class ShadowPick(PickTxns):
    """The same picks, run as a shadow version."""

    shadow = True


def test_shadow_alerts_are_stored_apart_and_never_queued(world: World, bank: Bank, tmp_path: Path) -> None:
    s = world.store
    ds = copy_dataset(bank.plain, tmp_path / "ds")
    world.register("bank", ds.root)
    picks = [r[0] for r in ds.connect().execute(
        "SELECT txn_id FROM transactions ORDER BY ts, txn_id LIMIT 2").fetchall()]
    shadow = run_detection(ds, [ShadowPick(picks)])
    assert shadow.new == {"test_pick (shadow)": 2}
    assert ds.count("alerts") == 0 and ds.count("shadow_alerts") == 2
    assert s.sync_alerts("bank").new_alerts == 0
    # The live version of the same finding is new (its own id), and it is the one queued.
    live = run_detection(ds, [PickTxns(picks)])
    assert sum(live.new.values()) == 2 and not live.known
    synced = s.sync_alerts("bank")
    assert synced.new_alerts == 2
    con = ds.connect()
    live_ids = {r[0] for r in con.execute("SELECT alert_id FROM alerts WHERE NOT shadow").fetchall()}
    shadow_ids = {r[0] for r in con.execute("SELECT alert_id FROM shadow_alerts WHERE shadow").fetchall()}
    assert len(live_ids) == 2 and len(shadow_ids) == 2 and not live_ids & shadow_ids
    queued = {a["alert_id"] for a in s.list_alerts(world.u["admin_a"], page_size=500)[0]}
    assert live_ids <= queued and not shadow_ids & queued


def test_alert_files_without_the_shadow_column_read_as_live(bank: Bank, tmp_path: Path) -> None:
    ds = copy_dataset(bank.plain, tmp_path / "ds")
    picks = [r[0] for r in ds.connect().execute("SELECT txn_id FROM transactions LIMIT 3").fetchall()]
    run_detection(ds, [PickTxns(picks)])
    (path,) = ds.files("alerts")
    old = pq.read_table(path)
    pq.write_table(old.drop_columns(["shadow"]), path)  # a file written before the column existed
    ds = Dataset(ds.root)
    rows = ds.connect().execute("SELECT shadow, count(*) FROM alerts GROUP BY 1").fetchall()
    assert rows == [(False, 3)]
    assert ds.count("shadow_alerts") == 0


# --- the CLI as a user runs it ------------------------------------------------------------------------------


def tianluo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "tianluo.cli", *args], capture_output=True, text=True,
                          check=False, env=env)


def _oracle_precision(alerts: list[dict[str, Any]], illicit: set[str]) -> tuple[int, int]:
    """True positives and alerts, counted in plain Python."""
    return sum(1 for a in alerts if set(a["txn_ids"]) & illicit), len(alerts)


def test_cli_backtest_list_and_shadow_run(bank: Bank, tmp_path: Path) -> None:
    ds = copy_dataset(bank.plain, tmp_path / "ds")
    before = ds.root / "_manifest.json"
    manifest = before.read_text()
    change = tmp_path / "lower.yaml"
    change.write_text("parameters:\n  rapid_min_cny: 20000\n  rapid_min_new_payee_share: 0.2\n", encoding="utf-8")
    p = tianluo("rules", "backtest", str(change), "--dataset", str(ds.root), "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    data = load_input(ds)
    old = pl.from_arrow(RuleDetector().detect(data)).filter(pl.col("detector") == "rapid_in_out")
    det = RuleVersion.from_files([change]).detector()
    new = pl.from_arrow(det.detect(data)).filter(pl.col("detector") == "rapid_in_out")
    assert new.height > old.height, "the test needs a change that finds more on the simulated bank"
    (rapid,) = [r for r in out["rules"] if r["rule"] == "rapid_in_out"]
    assert rapid["added"] == len(set(new["alert_id"]) - set(old["alert_id"]))
    assert rapid["removed"] == len(set(old["alert_id"]) - set(new["alert_id"]))
    illicit = set(data.transactions.filter(pl.col("label") == 1)["txn_id"])
    assert (rapid["after"]["true_positives"], rapid["after"]["alerts"]) == _oracle_precision(new.to_dicts(), illicit)
    assert ds.root.joinpath("_manifest.json").read_text() == manifest  # a backtest writes nothing

    listed = tianluo("rules", "list", "--dataset", str(ds.root), "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["id"]: r for r in json.loads(listed.stdout)}
    assert (rows["rapid_in_out"]["true_positives"], rows["rapid_in_out"]["alerts"]) == _oracle_precision(
        old.to_dicts(), illicit)
    table = tianluo("rules", "list", "--dataset", str(ds.root))
    assert table.returncode == 0 and "precision" in table.stdout and "alerts_per_10k" in table.stdout

    run = tianluo("detect", str(ds.root), "--only", "rule", "--shadow-pack", str(change))
    assert run.returncode == 0, run.stderr
    assert "rapid_in_out (shadow)" in run.stdout
    assert "pboc_lvtr_0501_cash (shadow)" not in run.stdout  # unchanged rules do not run again in shadow
    shadow = Dataset(ds.root).connect().execute(
        "SELECT count(*) FROM shadow_alerts WHERE detector = 'rapid_in_out'").fetchall()[0][0]
    assert shadow == new.height
    listed_shadow = tianluo("alerts", str(ds.root), "--shadow", "--detector", "rapid_in_out", "--limit", "500")
    assert listed_shadow.returncode == 0 and "Shadow alerts" in listed_shadow.stdout
    assert sum("rapid_in_out" in line for line in listed_shadow.stdout.splitlines()) == shadow
