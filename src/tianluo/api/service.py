"""What the API does beyond the case store: dataset facts, traces, jobs, subject views, reports.

Kept out of the routers so the CLI and tests use the same code (routers only parse,
authorise and serialise). Everything here reads datasets through DuckDB with bound
parameters; no request value is ever formatted into SQL.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tianluo.api.errors import ApiError
from tianluo.store import Dataset
from tianluo.trace import TraceIndex, TraceResult, alerted_accounts, trace

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
        return alerted_accounts(self.open(tenant, name))

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

    #: Jobs one institution may have queued or running at once; more answer 429. Uploads are
    #: refused before they are stored, so a client looping on ingest cannot fill the disk.
    MAX_PENDING = 3

    def __init__(self, store: Any) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tianluo-job")
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()

    def reserve(self, tenant: str) -> None:
        """Take one of the institution's job slots (429 when all are taken); `submit` or `release` gives it back."""
        with self._lock:
            if self._pending.get(tenant, 0) >= self.MAX_PENDING:
                raise ApiError(429, "rate_limited", f"{self.MAX_PENDING} jobs of your institution are queued or "
                                                    "running; wait for one to finish")
            self._pending[tenant] = self._pending.get(tenant, 0) + 1

    def release(self, tenant: str) -> None:
        with self._lock:
            self._pending[tenant] = max(0, self._pending.get(tenant, 0) - 1)

    def submit(self, actor: Any, kind: str, work: Callable[[Callable[[float, str], None]], dict[str, Any]]
               ) -> dict[str, Any]:
        """Queue `work` in a slot taken with `reserve(actor.tenant)`; the slot is released when it ends."""
        try:
            job = self.store.create_job(actor, kind)
        except Exception:
            self.release(actor.tenant)
            raise
        jid = job["id"]

        def progress(fraction: float, message: str) -> None:
            self.store.update_job(jid, status="running", progress=max(0.0, min(1.0, fraction)), message=message)

        def run() -> None:
            try:
                progress(0.0, "started")
                try:
                    result = work(progress)
                except Exception as exc:  # the job records every failure; the API must not die with it
                    traceback.print_exc()
                    self.store.update_job(jid, status="failed", message=f"{type(exc).__name__}: {exc}")
                    return
                self.store.update_job(jid, status="succeeded", progress=1.0, message="done", result=result)
            finally:
                self.release(actor.tenant)

        self._pool.submit(run)
        return job

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)


class Keys:
    """Where the server finds its master key and keyring, fixed when the app starts.

    Why: the environment is read once, so a later change of `$TIANLUO_MASTER_KEY` in the
    process (or a test's) cannot silently switch the keys under a running server; the key
    itself is read only when a request needs it, so a server without one still serves
    everything but ingest and reveal, which then fail with a clear message.
    """

    def __init__(self) -> None:
        from tianluo.protect.keys import KEY_ENV, KEYRING_ENV

        self.master = os.environ.get(KEY_ENV) or None
        self.keyring = os.environ.get(KEYRING_ENV) or None

    def ring(self, *, create: bool = False) -> Any:
        """The unlocked keyring (`MasterKeyError` when the key is missing or wrong)."""
        from tianluo.protect import load_key, load_keyring
        from tianluo.protect.keys import key_from

        master = load_key(None, create=False) if self.master is None else key_from(self.master)
        return load_keyring(Path(self.keyring) if self.keyring else None, master, create=create)


def ingest_work(ds_path: Path, source: Path, fmt: str, vault: Path, keys: Keys
                ) -> Callable[[Callable[[float, str], None]], dict[str, Any]]:
    """A job body that ingests `source` into the dataset at `ds_path`, PII sealed in `vault`."""

    def work(progress: Callable[[float, str], None]) -> dict[str, Any]:
        from tianluo.ingest import ingest, open_reader
        from tianluo.protect import Vault

        reader = open_reader(source, fmt)
        ring = keys.ring(create=True)
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


class Reports:
    """Cases and large-value candidates → validated regulator files, stored in the case store.

    Analysts work on tokens, so a report drafted by someone who may not reveal personal data
    is *pseudonymised* (tokens in the name and ID fields; valid XML, marked as such). The
    senior who approves it — a role allowed to reveal — regenerates it with the real values
    from the dataset's vault, under their own name and with the case as the stated reason;
    that approved file is the one filed. Every reveal is in the vault's audit log and the
    case's audit trail.
    """

    def __init__(self, workspace: Any, store: Any, datasets: Datasets, keys: Keys) -> None:
        self.workspace, self.store, self.datasets, self.keys = workspace, store, datasets, keys

    def _institution(self, tenant: str) -> Any:
        from tianluo.report import ReportError

        try:
            return self.workspace.institution(tenant).for_reports()
        except ReportError as exc:
            raise ApiError(409, "institution_not_configured", str(exc)) from exc

    def _revealer(self, user: Any, dataset: str, data: Any, reason: str) -> Callable[[str, str], str] | None:
        """A reveal callback over one batch reveal per field (one audit entry each), or None without a vault."""
        from tianluo.api.security import MATRIX
        from tianluo.protect import Vault
        from tianluo.report.model import PII_FIELDS

        if user.role not in MATRIX["reveal"]:
            return None
        path = self.workspace.vault(dataset)
        if not path.exists():
            return None
        ring = self.keys.ring()
        plain: dict[tuple[str, str], str] = {}
        actor = f"{user.tenant}/{user.username}"
        with Vault(path, ring) as vault:
            for f in PII_FIELDS:
                if f not in data.parties.columns:
                    continue
                tokens = sorted({t for t in data.parties[f].to_list() if t})
                if not tokens:
                    continue
                values = vault.reveal(f, tokens, reason=reason, actor=actor).to_pylist()
                plain.update({(f, t): v for t, v in zip(tokens, values, strict=True)})
        self.store.record_action(user, "reveal", "report_data", dataset,
                                 {"reason": reason, "values": len(plain)})
        return lambda field, token: plain.get((field, token), token)

    def _build(self, user: Any, case: dict[str, Any], fmt: str, narrative: str, report_id: str,
               reveal_ok: bool, seq: int | None = None) -> Any:
        from tianluo.report import (
            DailySequence,
            ReportError,
            SuspiciousReportInput,
            goaml_report,
            load_report_data,
            suspicious_report,
        )

        inst = self._institution(user.tenant)
        alerts = [a for a in case["alerts"] if a.get("report_kind") == "suspicious" and a.get("status") != "closed_fp"]
        if not alerts:
            raise ApiError(409, "conflict", "the case has no open suspicious alert to report")
        ds = self.datasets.open(user.tenant, case["dataset"])
        try:
            data = load_report_data(ds, alerts)
            reveal = self._revealer(user, case["dataset"], data, f"STR for case {case['case_id']}") if reveal_ok \
                else None
            report = SuspiciousReportInput(report_id=report_id, data=data, narrative=narrative)
            if fmt == "goaml":
                return goaml_report(inst, report, reveal=reveal)
            if seq is None:
                seq = DailySequence(self.workspace.root / "reports" / user.tenant).take(inst.ricd, _china_today())
            return suspicious_report(inst, report, seq=seq, reveal=reveal)
        except ReportError as exc:
            raise ApiError(409, "report_not_possible", str(exc)) from exc

    def draft(self, user: Any, case_id: str, fmt: str, narrative: str) -> dict[str, Any]:
        case = self.store.get_case(user, case_id)
        import uuid

        report_id = uuid.uuid4().hex[:16]
        rf = self._build(user, case, fmt, narrative, report_id, reveal_ok=False)
        return self.store.create_report(
            user, case_id=case_id, dataset=case["dataset"], format=fmt, file_name=rf.file_name, content=rf.content,
            valid=rf.valid, errors=rf.errors, narrative=narrative, pseudonymised=rf.pseudonymised)

    def approve(self, user: Any, report_id: str) -> dict[str, Any]:
        """Four-eyes approval (the store enforces it), then the final file with real values."""
        rep = self.store.approve_report(user, report_id)
        if rep.get("case_id") and rep.get("pseudonymised") and rep["format"] != "camlmac_hvtr":
            from tianluo.report import parse_file_name

            case = self.store.get_case(user, rep["case_id"])
            # The revealed file replaces the draft, which was never filed: same day, same number.
            parts = parse_file_name(rep["file_name"])
            same_day = parts is not None and parts["day"] == f"{_china_today():%Y%m%d}"
            rf = self._build(user, case, rep["format"], rep.get("narrative") or "", report_id, reveal_ok=True,
                             seq=int(parts["seq"]) if same_day and parts else None)
            if not rf.pseudonymised:
                rep = self.store.replace_report_content(user, report_id, file_name=rf.file_name, content=rf.content,
                                                        valid=rf.valid, errors=rf.errors, pseudonymised=False)
        return rep

    def large_value(self, user: Any, dataset: str, day: Any) -> dict[str, Any]:
        """The HVTR of a China-time day's large-value alerts (several files are zipped together)."""
        from tianluo.report import (
            DailySequence,
            ReportError,
            large_value_alerts,
            large_value_reports,
            load_report_data,
            package_zips,
            renumber,
        )

        inst = self._institution(user.tenant)
        ds = self.datasets.open(user.tenant, dataset)
        alerts = large_value_alerts(ds, day)
        if not alerts:
            raise ApiError(404, "not_found", f"no large-value candidates on {day} in {dataset}")
        try:
            data = load_report_data(ds, alerts)
            reveal = self._revealer(user, dataset, data, f"HVTR {day}")
            seqs = DailySequence(self.workspace.root / "reports" / user.tenant)
            files = large_value_reports(inst, data, first_seq=1, reveal=reveal)
            # Numbers are taken only now that the file count is known (several XMLs when large).
            files = renumber(files, seqs.take(inst.ricd, _china_today(), count=len(files)))
            if len(files) > 1:  # ZIPs of ≤ 5 MB of XML files, as the interface specification asks
                zips = package_zips(files, first_seq=1)
                files = renumber(zips, seqs.take(inst.ricd, _china_today(), count=len(zips), ext="ZIP"))
        except ReportError as exc:
            raise ApiError(409, "report_not_possible", str(exc)) from exc
        items = [self.store.create_report(
            user, case_id=None, dataset=dataset, format="camlmac_hvtr", file_name=rf.file_name, content=rf.content,
            valid=rf.valid, errors=rf.errors, narrative=f"large-value report {day}", pseudonymised=rf.pseudonymised)
            for rf in files]
        return {"items": items, "total": len(items), "page": 1, "page_size": max(1, len(items))}


def _china_today() -> dt.date:
    return dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()
