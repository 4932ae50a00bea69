"""Dashboard aggregates for a tenant, and the supervisor's read-only view across tenants.

Counting happens in the database where the SQL is the same on SQLite and PostgreSQL
(GROUP BY on plain columns); bucketing by Beijing calendar day and by working-day age
happens here, because date arithmetic differs between the two dialects.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from sqlalchemy import and_, case, func, select

from tianluo.cases._base import User, tenant_of
from tianluo.cases.casework import CaseworkMixin
from tianluo.cases.errors import Invalid
from tianluo.cases.model import AlertRow, CaseRow, DatasetRow, ReportRow, Tenant
from tianluo.cases.sla import age_workdays, sla_state
from tianluo.cases.workflow import ACTIVE
from tianluo.reference.china_ids import region_by_code
from tianluo.reference.workdays import beijing_date
from tianluo.store import Dataset, DatasetError

AGE_BUCKETS: tuple[tuple[str, int, int | None], ...] = (("0-1d", 0, 1), ("2-3d", 2, 3), ("4-5d", 4, 5),
                                                         (">5d", 6, None))
#: States in which the suspicion has been confirmed (escalated or beyond).
CONFIRMED = ("escalated", "report_drafted", "approved", "filed")


class InsightMixin(CaseworkMixin):
    """What the dashboards and the supervisor overview show."""

    def _dataset_filter(self, dataset: str | None) -> list[Any]:
        return [DatasetRow.name == dataset] if dataset is not None else []

    def dashboard_alerts_over_time(self, tenant: User | str, *, dataset: str | None = None, bucket: str = "day"
                                   ) -> dict[str, Any]:
        """Alerts per Beijing day (or ISO week, keyed by its Monday) of their last transaction, per typology.

        Every bucket between the first and last alert is present (zeros included) so a chart's
        x-axis is continuous.
        """
        if bucket not in ("day", "week"):
            raise Invalid(f"bucket {bucket!r}: use day or week")
        t = tenant_of(tenant)
        q = (select(AlertRow.ts_end, AlertRow.typology, AlertRow.detector)
             .join(DatasetRow, DatasetRow.id == AlertRow.dataset_id)
             .where(AlertRow.tenant == t, *self._dataset_filter(dataset)))
        counts: dict[str, dict[dt.date, int]] = defaultdict(lambda: defaultdict(int))
        with self._read() as s:
            for ts_end, typology, detector in s.execute(q.execution_options(yield_per=5000)):
                day = beijing_date(ts_end)
                if bucket == "week":
                    day -= dt.timedelta(days=day.weekday())
                counts[typology or detector][day] += 1
        if not counts:
            return {"buckets": [], "series": []}
        first = min(min(c) for c in counts.values())
        last = max(max(c) for c in counts.values())
        step = dt.timedelta(days=7 if bucket == "week" else 1)
        days = []
        d = first
        while d <= last:
            days.append(d)
            d += step
        series = [{"typology": typ, "counts": [counts[typ].get(d, 0) for d in days]}
                  for typ in sorted(counts, key=lambda k: (-sum(counts[k].values()), k))]
        return {"buckets": [d.isoformat() for d in days], "series": series}

    def dashboard_detectors(self, tenant: User | str, *, dataset: str | None = None) -> list[dict[str, Any]]:
        """Per detector: alerts, closed as false positive, in a case, confirmed, and the false-positive rate.

        `fp_rate` = closed_fp / (closed_fp + confirmed), where confirmed alerts are those of
        cases that reached escalation: the share of *decided* alerts that were wrong. It is
        None until something was decided.
        """
        t = tenant_of(tenant)
        confirmed = case((CaseRow.status.in_(CONFIRMED), 1), (CaseRow.escalated_at.is_not(None), 1), else_=0)
        q = (select(AlertRow.detector, AlertRow.kind, func.count(),
                    func.sum(case((AlertRow.status == "closed_fp", 1), else_=0)),
                    func.sum(case((AlertRow.status == "in_case", 1), else_=0)),
                    func.sum(case((AlertRow.status == "suppressed", 1), else_=0)),
                    func.sum(case((AlertRow.status == "in_case", confirmed), else_=0)))
             .join(DatasetRow, DatasetRow.id == AlertRow.dataset_id)
             .outerjoin(CaseRow, CaseRow.id == AlertRow.case_id)
             .where(AlertRow.tenant == t, *self._dataset_filter(dataset))
             .group_by(AlertRow.detector, AlertRow.kind).order_by(func.count().desc(), AlertRow.detector))
        out = []
        with self._read() as s:
            for det, kind, n, fp, in_case, supp, conf in s.execute(q):
                fp, conf = int(fp or 0), int(conf or 0)
                out.append({"detector": det, "kind": kind, "alerts": int(n), "closed_fp": fp,
                            "in_case": int(in_case or 0), "suppressed": int(supp or 0), "confirmed": conf,
                            "fp_rate": round(fp / (fp + conf), 4) if fp + conf else None})
        return out

    def dashboard_case_ages(self, tenant: User | str, *, dataset: str | None = None) -> list[dict[str, Any]]:
        """Active cases by age in working days since they were opened, split by SLA state."""
        t = tenant_of(tenant)
        now = self.now()
        rows = {name: {"bucket": name, "ok": 0, "due_soon": 0, "overdue": 0} for name, _, _ in AGE_BUCKETS}
        q = (select(CaseRow.created_at, CaseRow.due_at).join(DatasetRow, DatasetRow.id == CaseRow.dataset_id)
             .where(CaseRow.tenant == t, CaseRow.status.in_(ACTIVE), *self._dataset_filter(dataset)))
        with self._read() as s:
            for created, due in s.execute(q):
                age = age_workdays(created, now)
                name = next(n for n, lo, hi in AGE_BUCKETS if age >= lo and (hi is None or age <= hi))
                rows[name][sla_state(due, now) or "ok"] += 1
        return list(rows.values())

    def dashboard_top_subjects(self, tenant: User | str, *, limit: int = 10, dataset: str | None = None
                               ) -> list[dict[str, Any]]:
        """The riskiest subjects with an active case: risk score, alert count, amount, case id."""
        if not 1 <= limit <= 100:
            raise Invalid("limit must be between 1 and 100")
        t = tenant_of(tenant)
        q = (select(CaseRow).join(DatasetRow, DatasetRow.id == CaseRow.dataset_id)
             .where(CaseRow.tenant == t, CaseRow.status.in_(ACTIVE), *self._dataset_filter(dataset))
             .order_by(CaseRow.risk_score.desc(), CaseRow.amount_cny.desc(), CaseRow.id).limit(limit))
        with self._read() as s:
            return [{"subject_type": c.subject_type, "subject_id": c.subject_id, "risk_score": c.risk_score,
                     "alerts": c.alert_count, "amount_cny": c.amount_cny, "case_id": c.id, "status": c.status}
                    for c in s.execute(q).scalars()]

    def dashboard_regions(self, tenant: User | str, *, dataset: str | None = None) -> list[dict[str, Any]]:
        """Alerts, cases and amounts per region of the subject's party (GB/T 2260 code and name)."""
        t = tenant_of(tenant)
        q = (select(AlertRow.region, func.count(), func.count(func.distinct(AlertRow.case_id)),
                    func.sum(AlertRow.amount_cny))
             .join(DatasetRow, DatasetRow.id == AlertRow.dataset_id)
             .where(AlertRow.tenant == t, *self._dataset_filter(dataset))
             .group_by(AlertRow.region).order_by(func.count().desc(), AlertRow.region))
        out = []
        with self._read() as s:
            for region, n, cases, amount in s.execute(q):
                r = region_by_code(region) if region else None
                name = (r.province + ("" if r.city == r.province else r.city) + r.district) if r else None
                out.append({"region": region, "name": name, "alerts": int(n), "cases": int(cases or 0),
                            "amount_cny": round(float(amount or 0.0), 2)})
        return out

    def supervisor_overview(self) -> list[dict[str, Any]]:
        """Per tenant: datasets, transactions, alerts, active and overdue cases, filed reports (read-only).

        Transactions are counted from each dataset's files; a dataset folder that is missing or
        damaged counts as zero rather than failing the whole overview.
        """
        now = self.now()
        with self._read() as s:
            tenants = [r.tenant for r in s.execute(select(Tenant).order_by(Tenant.tenant)).scalars()]
            paths: dict[str, list[str]] = defaultdict(list)
            for d in s.execute(select(DatasetRow)).scalars():
                paths[d.tenant].append(d.path)
            alerts = dict(s.execute(select(AlertRow.tenant, func.count()).group_by(AlertRow.tenant)).all())
            active = dict(s.execute(select(CaseRow.tenant, func.count()).where(CaseRow.status.in_(ACTIVE))
                                    .group_by(CaseRow.tenant)).all())
            overdue = dict(s.execute(select(CaseRow.tenant, func.count()).where(
                and_(CaseRow.status.in_(ACTIVE), CaseRow.due_at <= now)).group_by(CaseRow.tenant)).all())
            filed = dict(s.execute(select(ReportRow.tenant, func.count()).where(ReportRow.status == "filed")
                                   .group_by(ReportRow.tenant)).all())
        out = []
        for t in tenants:
            txns = 0
            for p in paths.get(t, []):
                try:
                    ds = Dataset(p)
                    txns += ds.count("transactions") if ds.files("transactions") else 0
                except (DatasetError, OSError):
                    continue
            out.append({"tenant": t, "datasets": len(paths.get(t, [])), "transactions": txns,
                        "alerts": int(alerts.get(t, 0)), "open_cases": int(active.get(t, 0)),
                        "overdue_cases": int(overdue.get(t, 0)), "reports_filed": int(filed.get(t, 0))})
        return out
