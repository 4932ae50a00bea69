"""Datasets and the alert queue: sync new alerts from a dataset, roll them up into cases, work the queue.

`sync_alerts` is where alerts enter the case store. It copies every alert of the dataset
it has not seen (alert ids are deterministic, so re-running detection adds nothing),
resolves each alert's subject to a party (an account through `accounts.party_id`, a
transaction through its paying account), and then:

- a suspicious alert whose (detector, subject) is under an active suppression is stored
  as `suppressed` — a false positive closed earlier does not come back until `until`;
- every other suspicious alert joins the one active case of its subject (party when
  known, else account) in that dataset, or opens a new case when there is none;
- large-value alerts stay in the queue (`open`, no case) with their reporting deadline:
  they feed the day's large-value report, they are not suspicions.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy import Select, and_, func, insert, or_, select
from sqlalchemy.orm import Session

from tianluo.cases._base import SYSTEM, StoreBase, User, is_system, page_bounds, require_role, tenant_of
from tianluo.cases.errors import CaseError, Conflict, Invalid, NotAllowed, NotFound
from tianluo.cases.model import AlertRow, CaseRow, DatasetRow, SuppressionRow, Tenant, UserRow
from tianluo.cases.sla import REPORT_WORKDAYS, TRIAGE_WORKDAYS, deadline, sla_state
from tianluo.cases.workflow import ACTIVE, CASE_WORKERS
from tianluo.reference.workdays import BEIJING
from tianluo.store import Dataset, DatasetError

ALERT_STATES = ("open", "in_case", "closed_fp", "suppressed")
ALERT_SORTS = {
    "-score": (AlertRow.score.desc(), AlertRow.pk),
    "score": (AlertRow.score.asc(), AlertRow.pk),
    "-ts_end": (AlertRow.ts_end.desc(), AlertRow.pk),
    "ts_end": (AlertRow.ts_end.asc(), AlertRow.pk),
    "-amount_cny": (AlertRow.amount_cny.desc().nulls_last(), AlertRow.pk),
    "amount_cny": (AlertRow.amount_cny.asc().nulls_last(), AlertRow.pk),
}
#: Case states in which a report exists: their alerts can no longer be closed one by one.
REPORT_STAGE = frozenset({"report_drafted", "approved", "filed"})
MIN_REASON = 5
MAX_SUPPRESS_DAYS = 3650
_CHUNK = 500


@dataclass
class SyncResult:
    """What one `sync_alerts` did."""

    dataset: str
    new_alerts: int = 0
    suppressed: int = 0
    large_value: int = 0
    cases_opened: int = 0
    cases_updated: int = 0
    case_ids: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"{self.dataset}: {self.new_alerts:,} new alert(s) — {self.cases_opened:,} case(s) opened, "
                f"{self.cases_updated:,} updated, {self.suppressed:,} suppressed, "
                f"{self.large_value:,} large-value in the queue")


def chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def check_reason(reason: str | None, what: str) -> str:
    text = (reason or "").strip()
    if len(text) < MIN_REASON:
        raise Invalid(f"{what} needs a reason of at least {MIN_REASON} characters")
    return text


def case_subject(alert: dict[str, Any]) -> tuple[str, str]:
    """The subject a case is about: the party when known, else the account, else the alert's own subject."""
    if alert.get("party_id"):
        return "party", alert["party_id"]
    if alert.get("account_id"):
        return "account", alert["account_id"]
    return alert["subject_type"], alert["subject_id"]


def read_new_alerts(ds: Dataset, known: set[str]) -> list[dict[str, Any]]:
    """Alerts of the dataset not in `known`, each with its resolved `party_id`, `account_id` and `region`."""
    if not ds.files("alerts"):
        return []
    con = ds.connect()
    try:
        con.register("_known", pa.table({"alert_id": pa.array(sorted(known), pa.string())}))
        sql = """
            WITH a AS (SELECT * FROM alerts WHERE alert_id NOT IN (SELECT alert_id FROM _known)),
            t AS (SELECT txn_id, src_account FROM transactions
                  WHERE txn_id IN (SELECT subject_id FROM a WHERE subject_type = 'transaction')),
            r AS (
                SELECT a.*,
                    CASE a.subject_type WHEN 'account' THEN a.subject_id WHEN 'transaction' THEN t.src_account
                    END AS account_id,
                    CASE a.subject_type WHEN 'party' THEN a.subject_id WHEN 'account' THEN acc.party_id
                        ELSE tacc.party_id END AS party_id
                FROM a
                LEFT JOIN accounts acc ON a.subject_type = 'account' AND acc.account_id = a.subject_id
                LEFT JOIN t ON a.subject_type = 'transaction' AND t.txn_id = a.subject_id
                LEFT JOIN accounts tacc ON tacc.account_id = t.src_account
            )
            SELECT r.*, p.region FROM r LEFT JOIN parties p ON p.party_id = r.party_id
            ORDER BY r.ts_end, r.alert_id
        """
        return con.sql(sql).to_arrow_table().to_pylist()
    finally:
        con.close()


def evidence_amounts(ds: Dataset, txns_by_case: dict[int, set[str]]) -> dict[int, float]:
    """CNY of the distinct evidence transactions of each case (overlapping alerts count a payment once)."""
    pairs = [(cid, t) for cid, ts in txns_by_case.items() for t in ts]
    if not pairs:
        return {}
    con = ds.connect()
    try:
        con.register("_pairs", pa.table({"case_id": pa.array([p[0] for p in pairs], pa.int64()),
                                         "txn_id": pa.array([p[1] for p in pairs], pa.string())}))
        got = con.execute("SELECT p.case_id, sum(t.amount_cny) FROM _pairs p JOIN transactions t USING (txn_id) "
                          "GROUP BY p.case_id").fetchall()
    finally:
        con.close()
    return {int(c): float(v or 0.0) for c, v in got}


class QueueMixin(StoreBase):
    """Datasets, alert sync and roll-up, and the alert queue."""

    # -- datasets --------------------------------------------------------------------------

    def register_dataset(self, name: str, path: str | Path, tenant: str, *, actor: User = SYSTEM
                         ) -> dict[str, Any]:
        """Register a dataset folder under a tenant (operator or that tenant's admin)."""
        from tianluo.cases._base import require_tenant_admin

        name = (name or "").strip()
        if not name or len(name) > 200 or "/" in name:
            raise Invalid(f"dataset name {name!r}: 1–200 characters, no '/'")
        require_tenant_admin(actor, tenant, "register datasets")
        with self._write() as s:
            if s.get(Tenant, tenant) is None:
                raise NotFound(f"no tenant {tenant!r}; create it first")
            if s.execute(select(DatasetRow).where(DatasetRow.name == name)).scalar_one_or_none() is not None:
                raise Conflict(f"a dataset named {name!r} is registered already")
            row = DatasetRow(name=name, tenant=tenant, path=str(Path(path).resolve()), created_at=self.now())
            s.add(row)
            s.flush()
            self._audit(s, actor, "dataset.register", "dataset", name, {"path": row.path}, tenant=tenant)
            return _dataset_dict(row)

    def datasets(self, tenant: User | str | None = None) -> list[dict[str, Any]]:
        """Registered datasets ({name, tenant, path, created_at, last_synced_at}), of one tenant if given."""
        q = select(DatasetRow).order_by(DatasetRow.name)
        if tenant is not None:
            q = q.where(DatasetRow.tenant == tenant_of(tenant))
        with self._read() as s:
            return [_dataset_dict(r) for r in s.execute(q).scalars().all()]

    def get_dataset(self, tenant: User | str, name: str) -> dict[str, Any]:
        """One dataset of the tenant (another tenant's is not found)."""
        with self._read() as s:
            return _dataset_dict(self._dataset(s, tenant_of(tenant), name))

    def _dataset(self, s: Session, tenant: str | None, name: str) -> DatasetRow:
        row = s.execute(select(DatasetRow).where(DatasetRow.name == name)).scalar_one_or_none()
        if row is None or (tenant is not None and row.tenant != tenant):
            raise NotFound(f"no dataset {name!r}")
        return row

    # -- sync ------------------------------------------------------------------------------

    def sync_alerts(self, dataset_name: str, actor: User = SYSTEM) -> SyncResult:
        """Bring the dataset's new alerts into the store: suppress, roll up into cases, queue large-value ones."""
        with self._read() as s:
            ds_row = self._dataset(s, None if is_system(actor) else actor.tenant, dataset_name)
            if not is_system(actor) and actor.role != "admin":
                raise NotAllowed(f"role {actor.role!r} may not sync alerts (admin or the operator)")
            known = set(s.execute(select(AlertRow.alert_id).where(AlertRow.dataset_id == ds_row.id)).scalars())
        try:
            ds = Dataset(ds_row.path)
            rows = read_new_alerts(ds, known)
        except DatasetError as exc:
            raise Conflict(f"dataset {dataset_name!r}: {exc}") from exc
        result = SyncResult(dataset=dataset_name)
        with self._write() as s:
            ds_row = s.get(DatasetRow, ds_row.id)
            assert ds_row is not None
            known = set(s.execute(select(AlertRow.alert_id).where(AlertRow.dataset_id == ds_row.id)).scalars())
            fresh = [r for r in rows if r["alert_id"] not in known]
            now = self.now()
            ds_row.last_synced_at = now
            touched = self._ingest_alerts(s, ds_row, fresh, now, result, actor)
            if touched:
                self._refresh_cases(s, ds, touched, now)
            self._audit(s, actor, "dataset.sync", "dataset", dataset_name,
                        {"new_alerts": result.new_alerts, "large_value": result.large_value,
                         "cases_opened": result.cases_opened, "cases_updated": result.cases_updated,
                         "suppressed": result.suppressed}, tenant=ds_row.tenant)
        return result

    def _ingest_alerts(self, s: Session, ds_row: DatasetRow, fresh: list[dict[str, Any]], now: dt.datetime,
                       result: SyncResult, actor: User) -> list[int]:
        """Insert `fresh` alert rows; returns the ids of cases that gained alerts."""
        supp: dict[tuple[str, str, str], SuppressionRow] = {}
        for sup in s.execute(select(SuppressionRow).where(
                SuppressionRow.dataset_id == ds_row.id, SuppressionRow.until > now,
                SuppressionRow.lifted_at.is_(None))).scalars():
            key = (sup.detector, sup.subject_type, sup.subject_id)
            if key not in supp or sup.until > supp[key].until:
                supp[key] = sup
        active = {(c.subject_type, c.subject_id): c for c in s.execute(select(CaseRow).where(
            CaseRow.dataset_id == ds_row.id, CaseRow.status.in_(ACTIVE))).scalars()}
        values: list[dict[str, Any]] = []
        suppressed_ids: list[str] = []
        by_case: dict[int, list[str]] = defaultdict(list)
        opened: set[int] = set()
        for a in fresh:
            v = {
                "dataset_id": ds_row.id, "tenant": ds_row.tenant, "alert_id": a["alert_id"],
                "detector": a["detector"], "detector_version": a["detector_version"], "kind": a["kind"],
                "subject_type": a["subject_type"], "subject_id": a["subject_id"], "party_id": a.get("party_id"),
                "region": a.get("region"), "ts_start": a["ts_start"], "ts_end": a["ts_end"],
                "score": float(a["score"]), "typology": a.get("typology"), "reasons": list(a.get("reasons") or []),
                "txn_ids": list(a.get("txn_ids") or []), "accounts": list(a.get("accounts") or []),
                "amount_cny": a.get("amount_cny"), "report_kind": a["report_kind"], "crcd": a.get("crcd"),
                "tosc": a.get("tosc"), "goaml_indicator": a.get("goaml_indicator"), "run_id": a["run_id"],
                "status": "open", "assignee": None, "case_id": None, "created_at": now, "due_at": None,
                "closed_at": None, "closed_reason": None, "closed_by": None, "suppressed_until": None,
                "suppression_id": None,
            }
            if a["report_kind"] == "large_value":
                v["due_at"] = deadline(a["ts_end"], REPORT_WORKDAYS)
                result.large_value += 1
            elif (sup := supp.get((a["detector"], a["subject_type"], a["subject_id"]))) is not None:
                v.update(status="suppressed", suppressed_until=sup.until, suppression_id=sup.id,
                         closed_reason=f"suppressed until {sup.until.astimezone(BEIJING):%Y-%m-%d}: {sup.reason}")
                suppressed_ids.append(a["alert_id"])
                result.suppressed += 1
            else:
                key = case_subject(a)
                case = active.get(key)
                if case is None:
                    case = CaseRow(tenant=ds_row.tenant, dataset_id=ds_row.id, subject_type=key[0],
                                   subject_id=key[1], party_id=a.get("party_id"), region=a.get("region"),
                                   title=f"{key[0]} {key[1]}", status="new", assignee=None, risk_score=0.0,
                                   alert_count=0, amount_cny=0.0, created_at=now, updated_at=now,
                                   due_at=deadline(now, TRIAGE_WORKDAYS), sla_kind="triage")
                    s.add(case)
                    s.flush()
                    active[key] = case
                    opened.add(case.id)
                v.update(status="in_case", case_id=case.id, assignee=case.assignee)
                by_case[case.id].append(a["alert_id"])
            values.append(v)
        for part in chunks(values):
            s.execute(insert(AlertRow), list(part))
        result.new_alerts = len(values)
        result.cases_opened = len(opened)
        result.cases_updated = len(set(by_case) - opened)
        result.case_ids = sorted(by_case)
        for cid, ids in sorted(by_case.items()):
            case = s.get(CaseRow, cid)
            assert case is not None
            if cid in opened:
                self._audit(s, actor, "case.open", "case", cid,
                            {"dataset": ds_row.name, "subject_type": case.subject_type, "subject_id": case.subject_id,
                             "alert_ids": ids}, tenant=ds_row.tenant, case_id=cid)
            else:
                case.updated_at = now
                self._audit(s, actor, "case.alerts_added", "case", cid, {"alert_ids": ids}, tenant=ds_row.tenant,
                            case_id=cid)
        if suppressed_ids:
            self._audit(s, actor, "alerts.suppressed", "dataset", ds_row.name,
                        {"alert_ids": suppressed_ids}, tenant=ds_row.tenant)
        return sorted(by_case)

    def _refresh_cases(self, s: Session, ds: Dataset, case_ids: list[int], now: dt.datetime) -> None:
        """Recompute risk score (noisy-OR of each detector's best score), counts, amount and title."""
        per: dict[int, dict[str, Any]] = {cid: {"best": {}, "n": 0, "txns": set(), "typ": defaultdict(int)}
                                          for cid in case_ids}
        for part in chunks(case_ids):
            q = select(AlertRow.case_id, AlertRow.detector, AlertRow.score, AlertRow.txn_ids, AlertRow.typology,
                       AlertRow.amount_cny).where(AlertRow.case_id.in_(part))
            for cid, det, score, txns, typ, _amt in s.execute(q):
                p = per[cid]
                p["best"][det] = max(p["best"].get(det, 0.0), float(score))
                p["n"] += 1
                p["txns"].update(txns or [])
                p["typ"][typ or det] += 1
        amounts = evidence_amounts(ds, {cid: p["txns"] for cid, p in per.items()})
        for cid, p in per.items():
            case = s.get(CaseRow, cid)
            assert case is not None
            miss = 1.0
            for score in p["best"].values():
                miss *= 1.0 - min(1.0, max(0.0, score))
            case.risk_score = round(1.0 - miss, 6)
            case.alert_count = p["n"]
            case.amount_cny = round(amounts.get(cid, 0.0), 2)
            typs = sorted(p["typ"], key=lambda t: (-p["typ"][t], t))
            label = ", ".join(typs[:3]) + (f" +{len(typs) - 3}" if len(typs) > 3 else "")
            case.title = f"{label} — {case.subject_type} {case.subject_id}"[:400]

    # -- the queue -------------------------------------------------------------------------

    def list_alerts(
        self,
        tenant: User | str,
        *,
        dataset: str | None = None,
        status: str | list[str] | tuple[str, ...] | None = None,
        typology: str | None = None,
        detector: str | None = None,
        kind: str | None = None,
        report_kind: str | None = None,
        min_score: float | None = None,
        max_score: float | None = None,
        date_from: dt.date | dt.datetime | None = None,
        date_to: dt.date | dt.datetime | None = None,
        min_amount: float | None = None,
        max_amount: float | None = None,
        assignee: str | None = None,
        q: str | None = None,
        case_id: int | str | None = None,
        sort: str = "-score",
        page: int = 1,
        page_size: int = 50,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of the tenant's alert queue and the total matching; filters as in docs/api.md.

        Dates are Beijing calendar days on `ts_end` (both ends inclusive); `assignee` is a
        user name, `"me"` (needs a User as `tenant`) or `"none"`; `q` matches a substring of
        the subject id or party id; `status` is one state or several (the "active" queue is
        open + in_case, paged and sorted together).
        """
        t = tenant_of(tenant)
        if sort not in ALERT_SORTS:
            raise Invalid(f"sort {sort!r}: use one of {', '.join(ALERT_SORTS)}")
        statuses = [status] if isinstance(status, str) else list(status or [])
        for st in statuses:
            if st not in ALERT_STATES:
                raise Invalid(f"alert status {st!r}: use one of {', '.join(ALERT_STATES)}")
        offset, limit = page_bounds(page, page_size)
        conds: list[Any] = [AlertRow.tenant == t]
        if dataset is not None:
            conds.append(DatasetRow.name == dataset)
        if statuses:
            conds.append(AlertRow.status.in_(statuses))
        for col, value in ((AlertRow.typology, typology), (AlertRow.detector, detector),
                           (AlertRow.kind, kind), (AlertRow.report_kind, report_kind)):
            if value is not None:
                conds.append(col == value)
        if min_score is not None:
            conds.append(AlertRow.score >= min_score)
        if max_score is not None:
            conds.append(AlertRow.score <= max_score)
        if min_amount is not None:
            conds.append(AlertRow.amount_cny >= min_amount)
        if max_amount is not None:
            conds.append(AlertRow.amount_cny <= max_amount)
        if date_from is not None:
            conds.append(AlertRow.ts_end >= _day_start(date_from))
        if date_to is not None:
            conds.append(AlertRow.ts_end < _day_end(date_to))
        if assignee is not None:
            if assignee == "me":
                if not isinstance(tenant, User):
                    raise Invalid('assignee "me" needs the user, not only the tenant')
                assignee = tenant.username
            conds.append(AlertRow.assignee.is_(None) if assignee == "none" else AlertRow.assignee == assignee)
        if q:
            conds.append(or_(AlertRow.subject_id.contains(q, autoescape=True),
                             AlertRow.party_id.contains(q, autoescape=True)))
        if case_id is not None:
            conds.append(AlertRow.case_id == _int_or_none(case_id))
        base: Select[Any] = select(AlertRow, DatasetRow.name).join(DatasetRow, DatasetRow.id == AlertRow.dataset_id)
        now = self.now()
        with self._read() as s:
            total = s.execute(select(func.count()).select_from(AlertRow).join(
                DatasetRow, DatasetRow.id == AlertRow.dataset_id).where(and_(*conds))).scalar_one()
            rows = s.execute(base.where(and_(*conds)).order_by(*ALERT_SORTS[sort]).offset(offset).limit(limit)).all()
            return [alert_dict(a, name, now) for a, name in rows], int(total)

    def get_alert(self, tenant: User | str, alert_id: str, *, dataset: str | None = None) -> dict[str, Any]:
        """One alert of the tenant by its id (give `dataset` when the same id exists in two datasets)."""
        t = tenant_of(tenant)
        q = select(AlertRow, DatasetRow.name).join(DatasetRow, DatasetRow.id == AlertRow.dataset_id).where(
            AlertRow.tenant == t, AlertRow.alert_id == str(alert_id))
        if dataset is not None:
            q = q.where(DatasetRow.name == dataset)
        with self._read() as s:
            rows = s.execute(q).all()
        if not rows:
            raise NotFound(f"no alert {alert_id!r}")
        if len(rows) > 1:
            raise Invalid(f"alert {alert_id!r} is in datasets {sorted(n for _, n in rows)}; say which")
        a, name = rows[0]
        return alert_dict(a, name, self.now())

    def _tenant_alerts(self, s: Session, tenant: str, alert_ids: Sequence[str]) -> list[AlertRow]:
        out: list[AlertRow] = []
        ids = sorted({str(i) for i in alert_ids})
        for part in chunks(ids):
            out += s.execute(select(AlertRow).where(AlertRow.tenant == tenant, AlertRow.alert_id.in_(part))
                             .order_by(AlertRow.pk)).scalars().all()
        return out

    def _check_assignee(self, s: Session, actor: User, tenant: str, assignee: str | None) -> None:
        if assignee is None:
            return
        if actor.role == "analyst" and assignee != actor.username:
            raise NotAllowed("analysts assign work to themselves only (a senior assigns to others)")
        row = s.get(UserRow, assignee)
        if row is None or row.tenant != tenant or row.disabled or row.role not in CASE_WORKERS:
            raise Invalid(f"{assignee!r} is not an active analyst or senior of {tenant}")

    def assign_alerts(self, actor: User, alert_ids: Sequence[str], assignee: str | None) -> int:
        """Assign alerts (and the cases they are in) to a user, or unassign with None; returns how many.

        Ids of other tenants (or unknown ids) are skipped, as not found.
        """
        require_role(actor, CASE_WORKERS, "assign alerts")
        t = tenant_of(actor)
        with self._write() as s:
            self._check_assignee(s, actor, t, assignee)
            rows = self._tenant_alerts(s, t, alert_ids)
            if not rows:
                return 0
            case_ids = sorted({a.case_id for a in rows if a.case_id is not None})
            for a in rows:
                a.assignee = assignee
            now = self.now()
            for cid in case_ids:
                case = s.get(CaseRow, cid)
                if case is not None and case.assignee != assignee:
                    case.assignee, case.updated_at = assignee, now
            self._audit(s, actor, "alerts.assign", "alert", rows[0].alert_id if len(rows) == 1 else f"{len(rows)}",
                        {"alert_ids": [a.alert_id for a in rows], "assignee": assignee, "case_ids": case_ids},
                        tenant=t)
            return len(rows)

    def close_alerts_false_positive(self, actor: User, alert_ids: Sequence[str], reason: str,
                                    suppress_days: int = 90) -> int:
        """Close open or in-case alerts as false positives and suppress the same facts for `suppress_days`.

        Returns how many were closed; alerts already closed or suppressed, and ids of other
        tenants, are skipped. Large-value alerts are reportable facts, not suspicions, and
        alerts of a case that already has a report cannot be closed one by one (Conflict).
        """
        require_role(actor, CASE_WORKERS, "close alerts")
        text = check_reason(reason, "closing alerts as false positives")
        if not 0 <= int(suppress_days) <= MAX_SUPPRESS_DAYS:
            raise Invalid(f"suppress_days must be between 0 and {MAX_SUPPRESS_DAYS}")
        t = tenant_of(actor)
        with self._write() as s:
            rows = [a for a in self._tenant_alerts(s, t, alert_ids) if a.status in ("open", "in_case")]
            if not rows:
                return 0
            lv = [a.alert_id for a in rows if a.report_kind == "large_value"]
            if lv:
                raise Conflict(f"large-value alerts are reportable facts, not suspicions, and cannot be closed as "
                               f"false positives: {', '.join(lv[:5])}")
            for a in rows:
                if a.case_id is not None:
                    case = s.get(CaseRow, a.case_id)
                    if case is not None and case.status in REPORT_STAGE:
                        raise Conflict(f"alert {a.alert_id} belongs to case {case.id}, which has a report "
                                       f"({case.status}); reject the report or work the case instead")
            now = self.now()
            sup_ids = self._close_fp(s, actor, rows, text, int(suppress_days), now, case_id=None)
            self._audit(s, actor, "alerts.close_fp", "alert", rows[0].alert_id if len(rows) == 1 else f"{len(rows)}",
                        {"alert_ids": [a.alert_id for a in rows], "reason": text, "suppress_days": int(suppress_days),
                         "suppression_ids": sup_ids}, tenant=t)
            return len(rows)

    def _close_fp(self, s: Session, actor: User, rows: list[AlertRow], reason: str, suppress_days: int,
                  now: dt.datetime, *, case_id: int | None) -> list[int]:
        """Mark alerts closed_fp and record one suppression per (dataset, detector, subject)."""
        until = now + dt.timedelta(days=suppress_days) if suppress_days else None
        made: dict[tuple[int, str, str, str], SuppressionRow] = {}
        for a in rows:
            a.status, a.closed_at, a.closed_by, a.closed_reason = "closed_fp", now, actor.username, reason
            a.suppressed_until = until
            if until is None:
                continue
            key = (a.dataset_id, a.detector, a.subject_type, a.subject_id)
            if key not in made:
                made[key] = SuppressionRow(tenant=a.tenant, dataset_id=a.dataset_id, detector=a.detector,
                                           subject_type=a.subject_type, subject_id=a.subject_id, until=until,
                                           reason=reason, actor=actor.username, created_at=now,
                                           source_alert=a.alert_id, case_id=case_id if case_id else a.case_id)
                s.add(made[key])
        s.flush()
        return [sup.id for sup in made.values()]

    def list_suppressions(self, tenant: User | str, *, dataset: str | None = None, active_only: bool = True
                          ) -> list[dict[str, Any]]:
        """The tenant's suppressions (who, why, until when); only the ones still in force by default."""
        t = tenant_of(tenant)
        q = select(SuppressionRow, DatasetRow.name).join(DatasetRow, DatasetRow.id == SuppressionRow.dataset_id
                                                         ).where(SuppressionRow.tenant == t)
        if dataset is not None:
            q = q.where(DatasetRow.name == dataset)
        if active_only:
            q = q.where(SuppressionRow.until > self.now(), SuppressionRow.lifted_at.is_(None))
        with self._read() as s:
            return [{"id": r.id, "dataset": name, "detector": r.detector, "subject_type": r.subject_type,
                     "subject_id": r.subject_id, "until": r.until, "reason": r.reason, "actor": r.actor,
                     "created_at": r.created_at, "source_alert": r.source_alert, "case_id": r.case_id,
                     "lifted_at": r.lifted_at, "lifted_by": r.lifted_by}
                    for r, name in s.execute(q.order_by(SuppressionRow.id)).all()]


def _day_start(d: dt.date | dt.datetime) -> dt.datetime:
    if isinstance(d, dt.datetime):
        return d if d.tzinfo else d.replace(tzinfo=dt.UTC)
    return dt.datetime.combine(d, dt.time(), BEIJING).astimezone(dt.UTC)


def _day_end(d: dt.date | dt.datetime) -> dt.datetime:
    if isinstance(d, dt.datetime):
        return (d if d.tzinfo else d.replace(tzinfo=dt.UTC)) + dt.timedelta(microseconds=1)
    return dt.datetime.combine(d + dt.timedelta(days=1), dt.time(), BEIJING).astimezone(dt.UTC)


def _int_or_none(value: int | str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _dataset_dict(r: DatasetRow) -> dict[str, Any]:
    return {"name": r.name, "tenant": r.tenant, "path": r.path, "created_at": r.created_at,
            "last_synced_at": r.last_synced_at}


def alert_dict(a: AlertRow, dataset: str, now: dt.datetime) -> dict[str, Any]:
    """An alert as the API shows it (docs/api.md field names)."""
    return {
        "alert_id": a.alert_id, "dataset": dataset, "detector": a.detector, "detector_version": a.detector_version,
        "kind": a.kind, "subject_type": a.subject_type, "subject_id": a.subject_id, "party_id": a.party_id,
        "region": a.region, "ts_start": a.ts_start, "ts_end": a.ts_end, "score": a.score, "typology": a.typology,
        "reasons": list(a.reasons or []), "txn_ids": list(a.txn_ids or []), "accounts": list(a.accounts or []),
        "amount_cny": a.amount_cny, "report_kind": a.report_kind, "crcd": a.crcd, "tosc": a.tosc,
        "goaml_indicator": a.goaml_indicator, "run_id": a.run_id, "status": a.status, "assignee": a.assignee,
        "case_id": a.case_id, "created_at": a.created_at, "closed_at": a.closed_at, "closed_reason": a.closed_reason,
        "closed_by": a.closed_by, "suppressed_until": a.suppressed_until, "due_at": a.due_at,
        "sla_state": sla_state(a.due_at, now) if a.report_kind == "large_value" and a.status == "open" else None,
    }


__all__ = ["ALERT_STATES", "CaseError", "QueueMixin", "SyncResult"]
