"""Fetch what a report needs from a dataset: the evidence transactions, accounts and parties of alerts.

The API holds a case's alerts as plain dicts (fields as in `schema.ALERTS`); it passes them
here and gets back a `ReportData` without knowing SQL or the dataset layout.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import polars as pl
import pyarrow as pa

from tianluo.report.codes import CHINA_TZ
from tianluo.report.model import ReportData, ReportError
from tianluo.schema import ALERTS
from tianluo.store import Dataset


def alerts_frame(alerts: Iterable[dict[str, Any]] | pl.DataFrame) -> pl.DataFrame:
    """Alert dicts as a frame with the ALERTS columns; ISO-8601 strings are accepted for timestamps."""
    if isinstance(alerts, pl.DataFrame):
        return alerts
    rows = []
    for a in alerts:
        row = {name: a.get(name) for name in ALERTS.names}
        for col in ("ts_start", "ts_end"):
            v = row[col]
            if isinstance(v, str):
                v = datetime.fromisoformat(v.replace("Z", "+00:00"))
            if isinstance(v, datetime) and v.tzinfo is None:
                v = v.replace(tzinfo=UTC)
            row[col] = v
        rows.append(row)
    schema = pa.schema([pa.field(f.name, f.type, nullable=True) for f in ALERTS.fields])
    df = pl.from_arrow(pa.Table.from_pylist(rows, schema=schema))
    assert isinstance(df, pl.DataFrame)
    return df


def _frame(con: Any, sql: str) -> pl.DataFrame:
    df = pl.from_arrow(con.sql(sql).to_arrow_table())
    assert isinstance(df, pl.DataFrame)
    return df


def load_report_data(ds: Dataset, alerts: Iterable[dict[str, Any]] | pl.DataFrame) -> ReportData:
    """The evidence transactions, every account they touch and the owners of those accounts.

    Raises ReportError naming the transactions an alert cites but the dataset does not hold
    (a report must not silently drop evidence).
    """
    af = alerts_frame(alerts)
    if af.height == 0:
        raise ReportError("no alerts given: a report needs at least one alert")
    txn_ids = sorted({t for ids in af["txn_ids"].to_list() if ids for t in ids})
    alert_accounts = {a for accs in af["accounts"].to_list() if accs for a in accs}
    subject_accounts = set(af.filter(pl.col("subject_type") == "account")["subject_id"].to_list())
    subject_parties = set(af.filter(pl.col("subject_type") == "party")["subject_id"].to_list())
    con = ds.connect()
    try:
        con.register("_want_txn", pa.table({"txn_id": pa.array(txn_ids, pa.string())}))
        tx = _frame(
            con, "SELECT t.* FROM transactions t JOIN _want_txn w USING (txn_id) ORDER BY t.ts, t.txn_id"
        ).unique("txn_id", keep="first", maintain_order=True)
        missing = sorted(set(txn_ids) - set(tx["txn_id"].to_list()))
        if missing:
            raise ReportError(
                f"{ds.root}: {len(missing)} evidence transaction(s) of the alerts are not in the dataset "
                f"(first: {missing[0]}); was the dataset re-ingested or the alert taken from another one?"
            )
        accounts = sorted(
            alert_accounts | subject_accounts | set(tx["src_account"].to_list()) | set(tx["dst_account"].to_list())
        )
        con.register("_want_acc", pa.table({"account_id": pa.array(accounts, pa.string())}))
        acc = _frame(con, "SELECT a.* FROM accounts a JOIN _want_acc w USING (account_id) ORDER BY account_id")
        parties = sorted(subject_parties | {p for p in acc["party_id"].to_list() if p is not None})
        con.register("_want_party", pa.table({"party_id": pa.array(parties, pa.string())}))
        par = _frame(con, "SELECT p.* FROM parties p JOIN _want_party w USING (party_id) ORDER BY party_id")
    finally:
        con.close()
    return ReportData(alerts=af, transactions=tx, accounts=acc, parties=par)


def china_day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a China calendar day, as UTC instants (how the data model stores time)."""
    start = datetime.combine(day, time(0), tzinfo=CHINA_TZ).astimezone(UTC)
    return start, start + timedelta(days=1)


def large_value_alerts(ds: Dataset, day: date) -> list[dict[str, Any]]:
    """The dataset's large-value (LVTR) alerts whose transactions happened on China day `day`."""
    start, end = china_day_bounds(day)
    con = ds.connect()
    try:
        # The bounds are instants this function made, never user text, so they are safe inline.
        df = _frame(
            con,
            "SELECT * FROM alerts WHERE report_kind = 'large_value' "
            f"AND ts_start >= TIMESTAMPTZ '{start.isoformat()}' AND ts_start < TIMESTAMPTZ '{end.isoformat()}' "
            "ORDER BY subject_id, crcd, alert_id",
        )
    finally:
        con.close()
    return df.to_dicts()


def alerts_by_id(ds: Dataset, alert_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Alerts with these ids, in the order given; ReportError names the ids that are not there."""
    con = ds.connect()
    try:
        con.register("_want_alert", pa.table({"alert_id": pa.array(list(alert_ids), pa.string())}))
        df = _frame(con, "SELECT a.* FROM alerts a JOIN _want_alert w USING (alert_id)")
    finally:
        con.close()
    found = {r["alert_id"]: r for r in df.unique("alert_id", keep="first").to_dicts()}
    missing = [a for a in alert_ids if a not in found]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ReportError(f"{ds.root}: no alert {missing[0]!r}{more}; list them with `tianluo alerts DATASET`")
    return [found[a] for a in dict.fromkeys(alert_ids)]
