"""What the API does beyond the case store: dataset facts, traces, jobs, subject views, reports.

Kept out of the routers so the CLI and tests use the same code (routers only parse,
authorise and serialise). Everything here reads datasets through DuckDB with bound
parameters; no request value is ever formatted into SQL.
"""

from __future__ import annotations

import datetime as dt
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tianluo.api.errors import ApiError
from tianluo.store import Dataset
from tianluo.trace import TraceIndex, TraceResult, trace

MAX_TIMELINE = 2000


def _json_value(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.UTC).isoformat() if v.tzinfo else v.replace(tzinfo=dt.UTC).isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, float):
        return round(v, 2)
    return v


def _rows(con: Any, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    rel = con.execute(sql, params or [])
    cols = [d[0] for d in rel.description]
    return [{c: _json_value(v) for c, v in zip(cols, row, strict=True)} for row in rel.fetchall()]


class Datasets:
    """Open datasets by the name the case store registered them under, with a trace-index cache."""

    def __init__(self, store: Any, *, max_indexes: int = 2) -> None:
        self.store = store
        self._indexes: OrderedDict[tuple[str, int], TraceIndex] = OrderedDict()
        self._max = max_indexes
        self._lock = threading.Lock()

    def record(self, tenant: str, name: str) -> dict[str, Any]:
        for d in self.store.datasets(tenant=tenant):
            if d["name"] == name:
                return d
        raise ApiError(404, "not_found", f"no dataset {name!r} in this institution")

    def open(self, tenant: str, name: str) -> Dataset:
        path = Path(self.record(tenant, name)["path"])
        if not (path / "_manifest.json").exists():
            raise ApiError(409, "conflict", f"dataset {name!r} has no data yet (ingest first)")
        return Dataset(path)

    def summary(self, tenant: str, name: str, *, writes: bool = False) -> dict[str, Any]:
        """Row counts and the latest write of a dataset (what the dataset list shows)."""
        rec = self.record(tenant, name)
        path = Path(rec["path"])
        out: dict[str, Any] = {"name": name, "tenant": rec["tenant"], "transactions": 0, "accounts": 0,
                               "parties": 0, "alerts": 0, "quarantined": 0, "ingests": 0, "last_write": None}
        if (path / "_manifest.json").exists():
            ds = Dataset(path)
            for table in ("transactions", "accounts", "parties", "alerts"):
                out[table] = ds.count(table) if ds.files(table) else 0
            out["quarantined"] = ds.count("quarantine") if ds.files("quarantine") else 0
            out["ingests"] = len(ds.ingests)
            all_writes = ds.writes
            out["last_write"] = all_writes[-1].get("committed") if all_writes else None
            if writes:
                out["writes"] = [{k: w.get(k) for k in ("id", "kind", "committed", "counts")} for w in all_writes]
        elif writes:
            out["writes"] = []
        return out

    def index(self, tenant: str, name: str) -> TraceIndex:
        """The dataset's trace index, rebuilt only when a write changed the dataset."""
        ds = self.open(tenant, name)
        key = (str(ds.root), len(ds.writes))
        with self._lock:
            if key in self._indexes:
                self._indexes.move_to_end(key)
                return self._indexes[key]
        idx = TraceIndex.build(ds, cache=True)
        with self._lock:
            self._indexes[key] = idx
            while len(self._indexes) > self._max:
                self._indexes.popitem(last=False)
        return idx

    def trace(self, tenant: str, req: dict[str, Any], alerted: list[str] | None = None) -> TraceResult:
        """Run a trace request (validated by the router) against the tenant's dataset."""
        idx = self.index(tenant, req["dataset"])
        try:
            return trace(
                idx,
                start_account=req.get("account"),
                start_txn=req.get("txn_id"),
                direction=req.get("direction", "forward"),
                method=req.get("method", "fifo"),
                start_time=req.get("start_time"),
                end_time=req.get("end_time"),
                max_hops=req.get("max_hops", 6),
                hop_window=req.get("hop_window", "72h"),
                min_amount=req.get("min_amount", 100.0),
                alerted=alerted or (),
            )
        except KeyError as exc:
            raise ApiError(404, "not_found", f"unknown account or transaction: {exc.args[0]}") from exc
        except ValueError as exc:
            raise ApiError(400, "invalid", str(exc)) from exc

    def alerted_accounts(self, tenant: str, name: str) -> list[str]:
        """Accounts in any suspicious alert of the dataset: a trace stops there (a known case)."""
        ds = self.open(tenant, name)
        if not ds.files("alerts"):
            return []
        con = ds.connect()
        try:
            got = con.execute("SELECT DISTINCT unnest(accounts) FROM alerts WHERE report_kind = 'suspicious'"
                              ).fetchall()
        finally:
            con.close()
        return [r[0] for r in got]

    # -- views of a subject for the case workspace ------------------------------------------

    def pattern(self, tenant: str, alert: dict[str, Any]) -> dict[str, Any]:
        """The alert's evidence transactions as a small graph (nodes = accounts, edges = transactions)."""
        ds = self.open(tenant, alert["dataset"])
        con = ds.connect()
        try:
            edges = _rows(con, "SELECT txn_id, src_account AS source, dst_account AS target, amount_cny, ts, channel "
                               "FROM transactions WHERE list_contains(?, txn_id) ORDER BY ts, txn_id",
                          [list(alert.get("txn_ids") or [])])
        finally:
            con.close()
        accounts = set(alert.get("accounts") or [])
        ids: list[str] = []
        for e in edges:
            for a in (e["source"], e["target"]):
                if a not in ids:
                    ids.append(a)
        for a in sorted(accounts):
            if a not in ids:
                ids.append(a)
        subject = alert.get("subject_id")
        nodes = [{"id": a, "label": a, "alerted": a == subject or a in accounts} for a in ids]
        return {"nodes": nodes, "edges": edges}

    def subject(self, tenant: str, case: dict[str, Any]) -> dict[str, Any]:
        """The party and accounts a case is about (PII columns are tokens in the dataset)."""
        ds = self.open(tenant, case["dataset"])
        con = ds.connect()
        try:
            accounts_of_alerts = sorted({a for al in case.get("alerts", []) for a in (al.get("accounts") or [])})
            party = None
            if case["subject_type"] == "party":
                got = _rows(con, "SELECT * FROM parties WHERE party_id = ?", [case["subject_id"]])
                party = got[0] if got else None
                accounts = _rows(con, "SELECT account_id, bank, type, opened, closed FROM accounts "
                                      "WHERE party_id = ? ORDER BY account_id", [case["subject_id"]])
            else:
                accounts = _rows(con, "SELECT account_id, party_id, bank, type, opened, closed FROM accounts "
                                      "WHERE account_id = ?", [case["subject_id"]])
                pid = accounts[0].get("party_id") if accounts else None
                if pid:
                    got = _rows(con, "SELECT * FROM parties WHERE party_id = ?", [pid])
                    party = got[0] if got else None
        finally:
            con.close()
        if party:
            for k in ("ingest_id", "source_line"):
                party.pop(k, None)
        return {"party": party, "accounts": accounts, "risk_score": case.get("risk_score"),
                "alert_accounts": accounts_of_alerts}

    def subject_accounts(self, tenant: str, case: dict[str, Any]) -> list[str]:
        """Every account of the case subject (the party's accounts, or the account itself)."""
        ds = self.open(tenant, case["dataset"])
        if case["subject_type"] == "party":
            con = ds.connect()
            try:
                got = con.execute("SELECT account_id FROM accounts WHERE party_id = ?",
                                  [case["subject_id"]]).fetchall()
            finally:
                con.close()
            accts = [r[0] for r in got]
        else:
            accts = [case["subject_id"]]
        for al in case.get("alerts", []):
            if al.get("subject_type") == "account" and al.get("subject_id") not in accts:
                accts.append(al["subject_id"])
        return accts

    def timeline(self, tenant: str, case: dict[str, Any]) -> dict[str, Any]:
        """The subject's transactions (newest first, capped) and its alerts, for the case timeline."""
        accts = self.subject_accounts(tenant, case)
        flagged = sorted({t for al in case.get("alerts", []) for t in (al.get("txn_ids") or [])})
        ds = self.open(tenant, case["dataset"])
        con = ds.connect()
        try:
            tx = _rows(con, "SELECT txn_id, ts, src_account, dst_account, amount_cny, channel, "
                            "list_contains(?, txn_id) AS flagged FROM transactions "
                            "WHERE list_contains(?, src_account) OR list_contains(?, dst_account) "
                            f"ORDER BY ts DESC, txn_id LIMIT {MAX_TIMELINE}",
                       [flagged, accts, accts])
        finally:
            con.close()
        alerts = [{k: al.get(k) for k in ("alert_id", "ts_start", "ts_end", "detector", "score", "typology")}
                  for al in case.get("alerts", [])]
        return {"transactions": tx, "alerts": alerts, "accounts": accts}


class Jobs:
    """Long work (ingest, detection) on one background worker, its progress kept in the case store.

    One worker on purpose: ingest and detection each use every core, and running two at
    once only makes both slower. A job that fails records its error; the dataset's own
    staged-commit protocol guarantees a failed job leaves the dataset as it was.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tianluo-job")

    def submit(self, actor: Any, kind: str, work: Callable[[Callable[[float, str], None]], dict[str, Any]]
               ) -> dict[str, Any]:
        job = self.store.create_job(actor, kind)
        jid = job["id"]

        def progress(fraction: float, message: str) -> None:
            self.store.update_job(jid, status="running", progress=max(0.0, min(1.0, fraction)), message=message)

        def run() -> None:
            progress(0.0, "started")
            try:
                result = work(progress)
            except Exception as exc:  # the job records every failure; the API must not die with it
                traceback.print_exc()
                self.store.update_job(jid, status="failed", message=f"{type(exc).__name__}: {exc}")
                return
            self.store.update_job(jid, status="succeeded", progress=1.0, message="done", result=result)

        self._pool.submit(run)
        return job

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)


def ingest_work(ds_path: Path, source: Path, fmt: str, vault: Path
                ) -> Callable[[Callable[[float, str], None]], dict[str, Any]]:
    """A job body that ingests `source` into the dataset at `ds_path`, PII sealed in `vault`."""

    def work(progress: Callable[[float, str], None]) -> dict[str, Any]:
        from tianluo.ingest import ingest, open_reader
        from tianluo.protect import Vault, load_key, load_keyring

        reader = open_reader(source, fmt)
        ring = load_keyring(None, load_key(None, create=False), create=True)
        ds = Dataset(ds_path, create=True)
        rows = {"n": 0}

        def tick(table: str, n: int) -> None:
            rows["n"] += n
            progress(0.5, f"{table}: {rows['n']:,} rows read")

        with Vault(vault, ring) as tokenizer:
            res = ingest(reader, ds, tokenizer=tokenizer, progress=tick)
        return {"ingest_id": res.ingest_id, "skipped": res.skipped, "loaded": res.loaded,
                "quarantined": res.quarantined}

    return work


def detect_work(store: Any, name: str, ds_path: Path, actor: Any
                ) -> Callable[[Callable[[float, str], None]], dict[str, Any]]:
    """A job body that runs detection on a dataset and syncs the new alerts into the case store."""

    def work(progress: Callable[[float, str], None]) -> dict[str, Any]:
        return detect_and_sync(store, name, Dataset(ds_path), actor, progress=progress)

    return work


def detect_and_sync(store: Any, name: str, ds: Dataset, actor: Any, *, detectors: list[Any] | None = None,
                    progress: Callable[[float, str], None] | None = None) -> dict[str, Any]:
    """Detection then case-store sync: the one path the CLI, the API and the demo share."""
    from tianluo.detect.run import default_detectors, run_detection

    dets = detectors if detectors is not None else default_detectors(ds)
    done = {"n": 0}

    def tick(det: str) -> None:
        done["n"] += 1
        if progress:
            progress(0.9 * done["n"] / max(1, len(dets)), f"running {det}")

    res = run_detection(ds, dets, progress=tick)
    if progress:
        progress(0.95, "syncing alerts into cases")
    sync = store.sync_alerts(name, actor=actor)
    return {"run_id": res.run_id, "new_alerts": res.total_new, "sync": _plain(sync)}


def _plain(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return {k: getattr(obj, k) for k in obj.__dataclass_fields__}
    return obj
