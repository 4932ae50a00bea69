"""The CLI as a user runs it: a subprocess per command, real files, exit codes and printed results."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, shared
from tianluo import schema


def tianluo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "tianluo.cli", *args], capture_output=True, text=True, check=False, env=env
    )


def test_ingest_info_quality_quarantine(tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    data = ROOT / "tests" / "data" / "mapped"
    p = tianluo(
        "ingest",
        str(data / "core_banking_gb18030.csv"),
        "--mapping",
        str(data / "core_banking.toml"),
        "-d",
        str(ds),
        "--report-json",
        str(tmp_path / "r.json"),
    )
    assert p.returncode == 0, p.stderr
    assert "transactions │    9 │      5 │           4" in p.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["loaded"] == {"transactions": 5} and report["quarantined"] == {"transactions": 4}
    q = tianluo("quarantine", str(ds))
    assert q.returncode == 0 and "借贷标志 'X' is neither debit ['借', 'D']" in q.stdout
    again = tianluo(
        "ingest", str(data / "core_banking_gb18030.csv"), "--mapping", str(data / "core_banking.toml"), "-d", str(ds)
    )
    assert again.returncode == 0 and "already ingested" in again.stdout
    info = tianluo("info", str(ds))
    assert info.returncode == 0 and re.search(r"transactions\s*│\s*5\s*│", info.stdout), info.stdout
    qual = tianluo("quality", str(ds), "--json")
    assert json.loads(qual.stdout)["read"] == {"transactions": 9}


def test_amlworld_detected_and_errors_are_clear(tmp_path: Path) -> None:
    src = shared("amlworld-format") / "HI-Small_Trans.sample.csv"
    p = tianluo("ingest", str(src), "-d", str(tmp_path / "ds"))
    assert p.returncode == 0, p.stderr
    assert "transactions │ 1,000 │  1,000 │           0" in p.stdout
    bad = tianluo("ingest", str(tmp_path / "nope.csv"), "-d", str(tmp_path / "ds2"))
    assert bad.returncode == 2
    assert "no such file or folder" in bad.stderr
    assert not (tmp_path / "ds2").exists()
    notds = tianluo("info", str(tmp_path))
    assert notds.returncode == 2 and "is not a Tianluo dataset" in notds.stderr


def test_data_model_doc_is_generated_from_the_schema() -> None:
    doc = (ROOT / "docs" / "data-model.md").read_text()
    assert doc == schema.markdown() + "\n", "regenerate: tianluo schema --markdown > docs/data-model.md"


def test_simulate_detect_rerun_alerts(tmp_path: Path) -> None:
    """The main job end to end: simulate → ingest → detect (rules + miners); a re-run adds nothing."""
    ds = tmp_path / "ds"
    sim = tianluo(
        "simulate",
        "--out",
        str(tmp_path / "src"),
        "--transactions",
        "60000",
        "--persons",
        "2000",
        "--enterprises",
        "200",
        "--days",
        "45",
        "--illicit-ratio",
        "0.02",
        "--seed",
        "4",
        "--dataset",
        str(ds),
    )
    assert sim.returncode == 0, sim.stderr
    first = tianluo("detect", str(ds), "--only", "rule,miner")
    assert first.returncode == 0, first.stderr
    n_new = int(re.search(r"([\d,]+) new alert\(s\)", first.stdout).group(1).replace(",", ""))
    assert n_new > 0
    again = tianluo("detect", str(ds), "--only", "rule,miner")
    assert again.returncode == 0 and "0 new alert(s)" in again.stdout
    listed = tianluo("alerts", str(ds), "--limit", "5")
    assert listed.returncode == 0 and "score" in listed.stdout
    bad = tianluo("detect", str(ds), "--only", "magic")
    assert bad.returncode == 2 and "unknown kind" in bad.stderr
    # Follow the money from an alerted account: paths printed, the graph and the CSV written.
    import duckdb

    con = duckdb.connect(str(ds / "catalog.duckdb"), read_only=True)
    account = con.execute("SELECT accounts[1] FROM alerts WHERE typology IS NOT NULL "
                          "ORDER BY score DESC, alert_id LIMIT 1").fetchall()[0][0]
    con.close()
    out = tmp_path / "trace.json"
    t = tianluo("trace", str(ds), "--account", account, "--max-hops", "4", "--min-amount", "0",
                "--json", str(out), "--csv", str(tmp_path / "trace.csv"))
    assert t.returncode == 0, t.stderr
    assert "forward trace from" in t.stdout and "Paths" in t.stdout
    graph = json.loads(out.read_text())
    assert graph["edges"] and all(e["traced"] <= e["amount"] + 1e-6 for e in graph["edges"])
    assert max(e["hop"] for e in graph["edges"]) <= 4
    assert len((tmp_path / "trace.csv").read_text().strip().splitlines()) == len(graph["edges"]) + 1
    first = graph["edges"][0]["txn_id"]
    back = tianluo("trace", str(ds), "--txn", first, "--direction", "backward", "--method", "proportional")
    assert back.returncode == 0 and "backward trace from" in back.stdout, back.stderr
    both = tianluo("trace", str(ds), "--account", account, "--txn", first)
    assert both.returncode == 2 and "exactly one" in both.stderr
    top = tianluo("trace", str(ds), "--alert", "top", "--paths", "3")
    assert top.returncode == 0 and "(alert top," in top.stdout, top.stderr


def test_train_with_chosen_graph_windows(tmp_path: Path) -> None:
    """`tianluo train --graph-windows` trains with those windows, saves them, and evaluation rebuilds them."""
    ds = tmp_path / "ds"
    sim = tianluo("simulate", "--out", str(tmp_path / "src"), "--transactions", "20000", "--persons", "1000",
                  "--enterprises", "100", "--days", "30", "--illicit-ratio", "0.03", "--seed", "5",
                  "--dataset", str(ds))
    assert sim.returncode == 0, sim.stderr
    bad = tianluo("train", str(ds), "--graph-windows", "7x")
    assert bad.returncode == 2 and "'7x'" in bad.stderr and "--graph-windows" in bad.stderr
    none = tianluo("train", str(ds), "--graph-windows", " , ")
    assert none.returncode == 2 and "at least one window" in none.stderr
    t = tianluo("train", str(ds), "--name", "short", "--graph-windows", "1d,7d")
    assert t.returncode == 0, t.stderr
    meta = json.loads((ds / "models" / "short" / "1" / "meta.json").read_text())
    graph = [e for e in meta["extractors"] if e["name"] == "graph_features"]
    assert graph and graph[0]["params"]["windows"] == ["1d", "7d"]
    assert not any(f.endswith("_30d") for f in meta["feature_names"])
    assert any(f == "drained_max_in_src_7d" for f in meta["feature_names"])
    # The default is settled (T+1): the graph features look one day ahead, and the model says so.
    assert graph[0]["params"]["horizon"] == "1d" and "settled, horizon 1d" in t.stdout
    assert any(f.startswith("ahead_") for f in meta["feature_names"])
    assert meta["members"] == 3 and len(meta["calibration"]) == 2
    ev = tianluo("evaluate", str(ds), "--name", "short", "--json")
    assert ev.returncode == 0, ev.stderr
    figures = json.loads(ev.stdout)
    assert figures["rows"] > 0 and set(figures["intervals"]) == {"precision", "recall", "f1", "pr_auc"}
    text = tianluo("evaluate", str(ds), "--name", "short")
    assert text.returncode == 0 and "95% bootstrap interval" in text.stdout, text.stderr
    # A horizon that is not a duration, or longer than the data, is refused before anything is saved.
    bad_h = tianluo("train", str(ds), "--name", "h", "--horizon", "5x")
    assert bad_h.returncode == 2 and "--horizon" in bad_h.stderr
    long_h = tianluo("train", str(ds), "--name", "h", "--horizon", "60d", "--graph-windows", "1d")
    assert long_h.returncode == 2 and "longer than the data" in long_h.stderr, long_h.stderr
    assert not (ds / "models" / "h").exists()
    budget = tianluo("train", str(ds), "--name", "h", "--alerts-per-10k", "0")
    assert budget.returncode == 2 and "--alerts-per-10k" in budget.stderr
    miners = tianluo("train", str(ds), "--name", "h", "--miner-features", "no-such-profile")
    assert miners.returncode == 2 and "--miner-features" in miners.stderr and "no-such-profile" in miners.stderr
    # detect runs the settled model only on transactions whose day has passed, and says how many wait.
    det = tianluo("detect", str(ds), "--only", "model")
    assert det.returncode == 0, det.stderr
    assert "model_short: settled (T+1)" in det.stdout and "wait for a later run" in det.stdout
