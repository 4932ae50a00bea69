"""Detection runs: alerts are committed atomically and a re-run adds no duplicates."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa

from tests.conftest import shared
from tianluo.detect import DetectInput, Detector, finish_alerts
from tianluo.detect.run import run_detection
from tianluo.ingest import ingest, open_reader
from tianluo.store import Dataset


class BigCash(Detector):
    """A deliberately simple detector: every transaction of at least `floor` CNY."""

    name = "test_big_amount"

    def __init__(self, floor: float, version: str = "1") -> None:
        self.floor = floor
        self.version = version

    def detect(self, data: DetectInput) -> pa.Table:
        hits = data.transactions.filter(pl.col("amount_cny") >= self.floor)
        body = hits.select(
            subject_type=pl.lit("account"),
            subject_id="src_account",
            ts_start="ts",
            ts_end="ts",
            score=pl.lit(1.0),
            reasons=pl.concat_list(pl.format("amount ¥{} ≥ ¥{}", pl.col("amount_cny"), pl.lit(self.floor))),
            txn_ids=pl.concat_list("txn_id"),
            accounts=pl.concat_list("src_account", "dst_account"),
            amount_cny="amount_cny",
            report_kind=pl.lit("suspicious"),
        )
        return finish_alerts(body, self)


def test_rerun_adds_no_duplicates_and_new_version_keeps_ids(tmp_path: Path) -> None:
    ds = Dataset(tmp_path / "ds", create=True)
    ingest(open_reader(shared("amlsim-typologies")), ds)
    n_big = ds.connect().execute("SELECT count(*) FROM transactions WHERE amount_cny >= 6700").fetchall()[0][0]
    assert n_big > 0
    first = run_detection(ds, [BigCash(6700)])
    assert first.new == {"test_big_amount": n_big}
    assert ds.count("alerts") == n_big
    again = run_detection(ds, [BigCash(6700, version="2")])
    assert again.new == {} and again.known == {"test_big_amount": n_big}
    assert ds.count("alerts") == n_big
    # A lower threshold finds more: only the additional alerts are added.
    n_more = ds.connect().execute("SELECT count(*) FROM transactions WHERE amount_cny >= 6500").fetchall()[0][0]
    more = run_detection(ds, [BigCash(6500)])
    assert more.new == {"test_big_amount": n_more - n_big}
    alerts = ds.read("alerts")
    assert alerts.num_rows == n_more
    assert len(set(alerts.column("alert_id").to_pylist())) == n_more
    assert set(alerts.column("detector_version").to_pylist()) == {"1"}
    assert [w["kind"] for w in ds.writes] == ["ingest", "detect", "detect"]
