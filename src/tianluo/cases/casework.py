"""Cases: the workflow, assignment, notes, evidence, decisions, and reports with four-eyes approval.

A case moves only along the edges of `tianluo.cases.workflow`; every move writes a
decision (from, to, who, why, when) and an audit entry in the same transaction. The
deadline that matters changes with the state: a new or investigating case runs on the
internal triage SLA, an escalated one on the five-working-day STR deadline counted from
the escalation. Closing as a false positive closes the case's alerts and suppresses the
same facts (detector + subject) so the next detection run does not raise them again;
reopening lifts those suppressions.

Reports are drafted by analysts or seniors and approved only by a senior who did not
draft them (four eyes); a report that failed schema validation cannot be approved.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from tianluo.cases._base import User, page_bounds, parse_id, require_role, tenant_of
from tianluo.cases.errors import Conflict, Invalid, NotAllowed, NotFound
from tianluo.cases.model import (
    AlertRow,
    CaseRow,
    DatasetRow,
    DecisionRow,
    EvidenceRow,
    NoteRow,
    ReportRow,
    SuppressionRow,
)
from tianluo.cases.queue import QueueMixin, alert_dict, check_reason
from tianluo.cases.sla import REPORT_WORKDAYS, TRIAGE_WORKDAYS, deadline, due_soon_limit, sla_state
from tianluo.cases.workflow import ACTIVE, CASE_WORKERS, CLOSED, SENIOR, STATES, TERMINAL, edge, targets

REPORT_FORMATS = ("camlmac_bstr", "camlmac_hvtr", "goaml")
REPORT_STATES = ("drafted", "approved", "rejected", "filed")
CASE_SORTS = {
    "-risk_score": (CaseRow.risk_score.desc(), CaseRow.amount_cny.desc(), CaseRow.id),
    "-updated_at": (CaseRow.updated_at.desc(), CaseRow.id),
    "due_at": (CaseRow.due_at.asc().nulls_last(), CaseRow.id),
}
SLA_STATES = ("ok", "due_soon", "overdue")
MAX_EVIDENCE_BYTES = 20 << 20
MAX_NOTE = 20_000


class CaseworkMixin(QueueMixin):
    """Cases, their workflow and contents, and reports."""

    # -- reading ---------------------------------------------------------------------------

    @staticmethod
    def _owned(s: Session, model: Any, label: str, tenant: str, ident: int | str, lock: bool) -> Any:
        """Row `ident` of `model` if it belongs to `tenant`; another tenant's ids are simply not found."""
        q = select(model).where(model.id == parse_id(ident, label), model.tenant == tenant)
        row = s.execute(q.with_for_update() if lock else q).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no {label} {ident!r}")
        return row

    def _case(self, s: Session, tenant: str, case_id: int | str, *, lock: bool = False) -> CaseRow:
        return self._owned(s, CaseRow, "case", tenant, case_id, lock)

    def list_cases(
        self,
        tenant: User | str,
        *,
        status: str | None = None,
        assignee: str | None = None,
        dataset: str | None = None,
        sla: str | None = None,
        q: str | None = None,
        sort: str = "-risk_score",
        page: int = 1,
        page_size: int = 50,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of the tenant's cases (CaseSummary) and the total; `status` may list states with commas."""
        t = tenant_of(tenant)
        if sort not in CASE_SORTS:
            raise Invalid(f"sort {sort!r}: use one of {', '.join(CASE_SORTS)}")
        offset, limit = page_bounds(page, page_size)
        now = self.now()
        conds: list[Any] = [CaseRow.tenant == t]
        if status:
            wanted = [x.strip() for x in status.split(",") if x.strip()]
            bad = [x for x in wanted if x not in STATES]
            if bad:
                raise Invalid(f"case status {bad[0]!r}: use one of {', '.join(STATES)}")
            conds.append(CaseRow.status.in_(wanted))
        if assignee is not None:
            if assignee == "me":
                if not isinstance(tenant, User):
                    raise Invalid('assignee "me" needs the user, not only the tenant')
                assignee = tenant.username
            conds.append(CaseRow.assignee.is_(None) if assignee == "none" else CaseRow.assignee == assignee)
        if dataset is not None:
            conds.append(DatasetRow.name == dataset)
        if sla is not None:
            if sla not in SLA_STATES:
                raise Invalid(f"sla {sla!r}: use one of {', '.join(SLA_STATES)}")
            limit_soon = due_soon_limit(now)
            conds.append(CaseRow.status.in_(ACTIVE))
            conds.append({"overdue": CaseRow.due_at <= now,
                          "due_soon": and_(CaseRow.due_at > now, CaseRow.due_at <= limit_soon),
                          "ok": CaseRow.due_at > limit_soon}[sla])
        if q:
            conds.append(or_(CaseRow.subject_id.contains(q, autoescape=True),
                             CaseRow.title.contains(q, autoescape=True),
                             CaseRow.party_id.contains(q, autoescape=True)))
        joined = select(CaseRow, DatasetRow.name).join(DatasetRow, DatasetRow.id == CaseRow.dataset_id)
        with self._read() as s:
            total = s.execute(select(func.count()).select_from(CaseRow).join(
                DatasetRow, DatasetRow.id == CaseRow.dataset_id).where(and_(*conds))).scalar_one()
            rows = s.execute(joined.where(and_(*conds)).order_by(*CASE_SORTS[sort]).offset(offset).limit(limit)).all()
            return [case_summary(c, name, now) for c, name in rows], int(total)

    def get_case(self, viewer: User | str, case_id: int | str) -> dict[str, Any]:
        """A case with its alerts, notes, evidence (metadata), reports, decisions and `allowed_transitions`.

        `allowed_transitions` lists what `viewer` may do now through `transition()` (empty
        when only a tenant id is given); `can_draft_report` whether they may draft a report now.
        """
        t = tenant_of(viewer)
        now = self.now()
        with self._read() as s:
            case = self._case(s, t, case_id)
            name = s.get(DatasetRow, case.dataset_id).name  # type: ignore[union-attr]
            out = case_summary(case, name, now)
            alerts = s.execute(select(AlertRow).where(AlertRow.case_id == case.id)
                               .order_by(AlertRow.score.desc(), AlertRow.pk)).scalars().all()
            out["alerts"] = [alert_dict(a, name, now) for a in alerts]
            out["notes"] = [{"id": n.id, "author": n.author, "text": n.text, "created_at": n.created_at}
                            for n in s.execute(select(NoteRow).where(NoteRow.case_id == case.id)
                                               .order_by(NoteRow.id)).scalars()]
            out["evidence"] = [_evidence_meta(e) for e in s.execute(
                select(EvidenceRow).where(EvidenceRow.case_id == case.id).order_by(EvidenceRow.id)).scalars()]
            reports = s.execute(select(ReportRow).where(ReportRow.case_id == case.id)
                                .order_by(ReportRow.id)).scalars().all()
            out["reports"] = [report_dict(r, name, now) for r in reports]
            out["decisions"] = [{"from": d.from_state, "to": d.to_state, "actor": d.actor, "reason": d.reason,
                                 "at": d.at} for d in s.execute(select(DecisionRow).where(
                                     DecisionRow.case_id == case.id).order_by(DecisionRow.id)).scalars()]
            out["allowed_transitions"] = self._allowed(s, case, viewer) if isinstance(viewer, User) else []
            # Drafting is not a transition() (create_report takes the case to report_drafted), so
            # the UI learns from this flag whether to offer it; the same rule as create_report's.
            out["can_draft_report"] = (isinstance(viewer, User) and viewer.role in CASE_WORKERS
                                       and case.status in ("escalated", "report_drafted"))
            return out

    def allowed_transitions(self, viewer: User, case_id: int | str) -> list[str]:
        """States `viewer` may move the case to now with `transition()` (what the UI draws buttons from)."""
        with self._read() as s:
            return self._allowed(s, self._case(s, tenant_of(viewer), case_id), viewer)

    def _allowed(self, s: Session, case: CaseRow, user: User) -> list[str]:
        out = []
        for target in targets(case.status, user.role):
            e = edge(case.status, target)
            assert e is not None
            if e.via == "report":
                if target == "report_drafted":
                    continue  # drafting needs the report itself: create_report
                if target == "approved" and len(self._approvable(s, case, user)) != 1:
                    continue
                if target == "escalated" and not self._reports(s, case, "drafted"):
                    continue
                if target == "filed" and len(self._reports(s, case, "approved")) != 1:
                    continue
            if case.status in CLOSED and self._other_active(s, case) is not None:
                continue
            out.append(target)
        return out

    def _reports(self, s: Session, case: CaseRow, status: str) -> list[ReportRow]:
        return list(s.execute(select(ReportRow).where(ReportRow.case_id == case.id, ReportRow.status == status)
                              .order_by(ReportRow.id)).scalars())

    def _approvable(self, s: Session, case: CaseRow, user: User) -> list[ReportRow]:
        return [r for r in self._reports(s, case, "drafted") if r.valid and r.drafter != user.username]

    def _other_active(self, s: Session, case: CaseRow) -> CaseRow | None:
        return s.execute(select(CaseRow).where(
            CaseRow.dataset_id == case.dataset_id, CaseRow.subject_type == case.subject_type,
            CaseRow.subject_id == case.subject_id, CaseRow.status.in_(ACTIVE), CaseRow.id != case.id)
        ).scalars().first()

    # -- the workflow ----------------------------------------------------------------------

    def _move(self, s: Session, actor: User, case: CaseRow, to: str, reason: str, now: dt.datetime) -> None:
        """Change state, with its decision row, deadline change and audit entry."""
        source = case.status
        case.status, case.updated_at = to, now
        if to == "escalated" and source != "report_drafted":
            case.escalated_at = now
            case.due_at, case.sla_kind = deadline(now, REPORT_WORKDAYS), "report"
        elif to in TERMINAL:
            case.closed_at = now
        elif to == "investigating" and source in CLOSED:
            case.closed_at, case.escalated_at = None, None
            case.due_at, case.sla_kind = deadline(now, TRIAGE_WORKDAYS), "triage"
        s.add(DecisionRow(case_id=case.id, tenant=case.tenant, from_state=source, to_state=to,
                          actor=actor.username, reason=reason, at=now))
        self._audit(s, actor, "case.transition", "case", case.id, {"from": source, "to": to, "reason": reason},
                    tenant=case.tenant, case_id=case.id)

    def transition(self, actor: User, case_id: int | str, to: str, reason: str = "", *, suppress_days: int = 90
                   ) -> dict[str, Any]:
        """Move a case to `to` if the graph has the edge and the actor's role may take it.

        Report edges act on the case's report: `approved` approves its one report the actor
        may approve, `filed` files its one approved report, and `escalated` from
        `report_drafted` rejects its drafted reports. `closed_false_positive` closes the
        case's alerts and suppresses their facts for `suppress_days` (0 = no suppression).
        Returns the case summary.
        """
        if to not in STATES:
            raise Invalid(f"unknown case state {to!r}; states: {', '.join(STATES)}")
        require_role(actor, CASE_WORKERS, "move cases through the workflow")
        t = tenant_of(actor)
        with self._write() as s:
            case = self._case(s, t, case_id, lock=True)
            e = edge(case.status, to)
            if e is None:
                here = targets(case.status, actor.role)
                raise Conflict(f"case {case.id} is {case.status}; it cannot move to {to}"
                               + (f" (from here: {', '.join(here)})" if here else ""))
            if actor.role not in e.roles:
                raise NotAllowed(f"role {actor.role!r} may not move a case from {case.status} to {to} "
                                 f"(allowed: {', '.join(sorted(e.roles))})")
            text = check_reason(reason, f"moving a case to {to}") if e.needs_reason else (reason or "").strip()
            now = self.now()
            if e.via == "report":
                self._report_edge(s, actor, case, to, text, now)
            else:
                if case.status in CLOSED:
                    other = self._other_active(s, case)
                    if other is not None:
                        raise Conflict(f"case {other.id} is already open for {case.subject_type} "
                                       f"{case.subject_id}; work that case instead of reopening {case.id}")
                    self._lift_suppressions(s, actor, case, now)
                if to == "closed_false_positive":
                    if not 0 <= int(suppress_days) <= 3650:
                        raise Invalid("suppress_days must be between 0 and 3650")
                    rows = list(s.execute(select(AlertRow).where(AlertRow.case_id == case.id,
                                                                 AlertRow.status == "in_case")).scalars())
                    sup_ids = self._close_fp(s, actor, rows, text, int(suppress_days), now, case_id=case.id)
                    self._audit(s, actor, "alerts.close_fp", "case", case.id,
                                {"alert_ids": [a.alert_id for a in rows], "reason": text,
                                 "suppress_days": int(suppress_days), "suppression_ids": sup_ids},
                                tenant=case.tenant, case_id=case.id)
                self._move(s, actor, case, to, text, now)
            name = s.get(DatasetRow, case.dataset_id).name  # type: ignore[union-attr]
            return case_summary(case, name, now)

    def _lift_suppressions(self, s: Session, actor: User, case: CaseRow, now: dt.datetime) -> None:
        """Reopening a false positive: its suppressions end and its alerts are back in the case."""
        if case.status != "closed_false_positive":
            return
        sups = list(s.execute(select(SuppressionRow).where(SuppressionRow.case_id == case.id,
                                                           SuppressionRow.lifted_at.is_(None))).scalars())
        for sup in sups:
            sup.lifted_at, sup.lifted_by = now, actor.username
        s.execute(update(AlertRow).where(AlertRow.case_id == case.id, AlertRow.status == "closed_fp").values(
            status="in_case", closed_at=None, closed_by=None, closed_reason=None, suppressed_until=None))
        if sups:
            self._audit(s, actor, "suppressions.lift", "case", case.id, {"suppression_ids": [x.id for x in sups]},
                        tenant=case.tenant, case_id=case.id)

    def _report_edge(self, s: Session, actor: User, case: CaseRow, to: str, reason: str, now: dt.datetime) -> None:
        if to == "report_drafted":
            raise Conflict(f"case {case.id}: drafting a report moves it to report_drafted "
                           f"(POST /cases/{case.id}/reports)")
        if to == "approved":
            drafted = self._reports(s, case, "drafted")
            if drafted and all(r.drafter == actor.username for r in drafted):
                raise NotAllowed("four eyes: the drafter of a report may not approve it")
            ok = self._approvable(s, case, actor)
            if len(ok) != 1:
                raise Conflict(f"case {case.id} has {len(ok)} reports you may approve; approve one by its id")
            self._approve(s, actor, ok[0], case, now)
        elif to == "escalated":
            drafted = self._reports(s, case, "drafted")
            if not drafted:
                raise Conflict(f"case {case.id} has no drafted report to reject")
            for r in drafted:
                self._reject(s, actor, r, case, reason, now)
        elif to == "filed":
            approved = self._reports(s, case, "approved")
            if len(approved) != 1:
                raise Conflict(f"case {case.id} has {len(approved)} approved reports; file one by its id")
            self._file(s, actor, approved[0], case, now)

    def assign_case(self, actor: User, case_id: int | str, assignee: str | None) -> dict[str, Any]:
        """Assign a case (and its alerts still in it) to an analyst or senior, or unassign with None."""
        require_role(actor, CASE_WORKERS, "assign cases")
        t = tenant_of(actor)
        with self._write() as s:
            case = self._case(s, t, case_id, lock=True)
            self._check_assignee(s, actor, t, assignee)
            if actor.role == "analyst" and case.assignee not in (None, actor.username):
                raise NotAllowed(f"case {case.id} is assigned to {case.assignee}; a senior reassigns it")
            now = self.now()
            before = case.assignee
            case.assignee, case.updated_at = assignee, now
            s.execute(update(AlertRow).where(AlertRow.case_id == case.id, AlertRow.status == "in_case")
                      .values(assignee=assignee))
            self._audit(s, actor, "case.assign", "case", case.id, {"from": before, "to": assignee},
                        tenant=t, case_id=case.id)
            name = s.get(DatasetRow, case.dataset_id).name  # type: ignore[union-attr]
            return case_summary(case, name, now)

    # -- notes and evidence ----------------------------------------------------------------

    def add_note(self, actor: User, case_id: int | str, text: str) -> dict[str, Any]:
        """Add a note to a case (any state: a closed case can still receive context)."""
        require_role(actor, CASE_WORKERS, "add notes")
        body = (text or "").strip()
        if not body or len(body) > MAX_NOTE:
            raise Invalid(f"a note has 1–{MAX_NOTE:,} characters")
        t = tenant_of(actor)
        with self._write() as s:
            case = self._case(s, t, case_id)
            now = self.now()
            note = NoteRow(case_id=case.id, tenant=t, author=actor.username, text=body, created_at=now)
            s.add(note)
            case.updated_at = now
            s.flush()
            self._audit(s, actor, "case.note", "note", note.id,
                        {"sha256": hashlib.sha256(body.encode()).hexdigest(), "chars": len(body)},
                        tenant=t, case_id=case.id)
            return {"id": note.id, "author": note.author, "text": note.text, "created_at": note.created_at}

    def add_evidence(self, actor: User, case_id: int | str, *, kind: str, title: str, content: bytes | None = None,
                     path: str | Path | None = None, content_type: str = "application/octet-stream"
                     ) -> dict[str, Any]:
        """Attach a file or a trace (bytes, or a path to a file kept outside the DB) with its SHA-256."""
        require_role(actor, CASE_WORKERS, "add evidence")
        if kind not in ("trace", "file"):
            raise Invalid(f"evidence kind {kind!r}: use trace or file")
        if (content is None) == (path is None):
            raise Invalid("give the evidence as content bytes or as a path, not both")
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise Invalid(f"evidence file {p} does not exist")
            data = p.read_bytes()
        else:
            data = bytes(content or b"")
            if len(data) > MAX_EVIDENCE_BYTES:
                raise Invalid(f"evidence larger than {MAX_EVIDENCE_BYTES >> 20} MB: keep it as a path instead")
        if not data:
            raise Invalid("evidence is empty")
        t = tenant_of(actor)
        with self._write() as s:
            case = self._case(s, t, case_id)
            now = self.now()
            ev = EvidenceRow(case_id=case.id, tenant=t, kind=kind, title=(title or kind)[:300],
                             content=None if path is not None else data,
                             path=str(Path(path).resolve()) if path is not None else None,
                             content_type=content_type[:200], size=len(data),
                             sha256=hashlib.sha256(data).hexdigest(), created_by=actor.username, created_at=now)
            s.add(ev)
            case.updated_at = now
            s.flush()
            self._audit(s, actor, "case.evidence", "evidence", ev.id,
                        {"kind": kind, "title": ev.title, "size": ev.size, "sha256": ev.sha256},
                        tenant=t, case_id=case.id)
            return _evidence_meta(ev)

    def get_evidence(self, viewer: User | str, case_id: int | str, evidence_id: int | str) -> dict[str, Any]:
        """An evidence item with its `content` bytes; a file kept by path is checked against its SHA-256."""
        t = tenant_of(viewer)
        eid = parse_id(evidence_id, "evidence")
        with self._read() as s:
            case = self._case(s, t, case_id)
            ev = s.get(EvidenceRow, eid)
            if ev is None or ev.case_id != case.id or ev.tenant != t:
                raise NotFound(f"no evidence {evidence_id!r} in case {case.id}")
            out = _evidence_meta(ev)
        data = ev.content
        if data is None and ev.path:
            try:
                data = Path(ev.path).read_bytes()
            except OSError as exc:
                raise Conflict(f"evidence file {ev.path} cannot be read: {exc}") from exc
            if hashlib.sha256(data).hexdigest() != ev.sha256:
                raise Conflict(f"evidence file {ev.path} changed since it was attached (SHA-256 differs)")
        out["content"] = data
        return out

    # -- reports ---------------------------------------------------------------------------

    def create_report(
        self,
        actor: User,
        *,
        format: str,
        content: bytes,
        file_name: str,
        valid: bool,
        errors: list[Any] | tuple[Any, ...] = (),
        case_id: int | str | None = None,
        dataset: str | None = None,
        narrative: str | None = None,
        alert_ids: list[str] | None = None,
        report_date: dt.date | None = None,
        pseudonymised: bool = False,
    ) -> dict[str, Any]:
        """Store a drafted report: a case's STR (the case moves to report_drafted), or a large-value report.

        A case report needs the case `escalated` (or already `report_drafted`, e.g. a second
        format); a large-value report (`case_id` None) needs `dataset`, and `report_date`
        sets its deadline (five working days after the transactions' date).
        `pseudonymised` marks a draft written on tokens: approval may then replace its
        file with the revealed one (`replace_report_content`).
        """
        require_role(actor, CASE_WORKERS, "draft reports")
        if format not in REPORT_FORMATS:
            raise Invalid(f"report format {format!r}: use one of {', '.join(REPORT_FORMATS)}")
        errors = _report_file(file_name, content, errors)
        t = tenant_of(actor)
        with self._write() as s:
            now = self.now()
            case = None
            if case_id is not None:
                case = self._case(s, t, case_id, lock=True)
                if format == "camlmac_hvtr":
                    raise Invalid("a case reports suspicion (camlmac_bstr or goaml); HVTR is the large-value report")
                if case.status not in ("escalated", "report_drafted"):
                    raise Conflict(f"case {case.id} is {case.status}; a report is drafted once it is escalated")
                ds_row = s.get(DatasetRow, case.dataset_id)
                assert ds_row is not None
                ids = alert_ids if alert_ids is not None else list(s.execute(select(AlertRow.alert_id).where(
                    AlertRow.case_id == case.id, AlertRow.status == "in_case").order_by(AlertRow.pk)).scalars())
                due = case.due_at
            else:
                if dataset is None:
                    raise Invalid("a report without a case (large-value) needs its dataset")
                if format == "camlmac_bstr":
                    raise Invalid("a suspicious-transaction report (camlmac_bstr) is drafted from a case")
                ds_row = self._dataset(s, t, dataset)
                ids = list(alert_ids or [])
                due = deadline(report_date, REPORT_WORKDAYS) if report_date is not None else None
            rep = ReportRow(tenant=t, case_id=case.id if case else None, dataset_id=ds_row.id, format=format,
                            status="drafted", drafter=actor.username, file_name=file_name, content=bytes(content),
                            size=len(content), sha256=hashlib.sha256(content).hexdigest(), valid=bool(valid),
                            errors=errors,
                            pseudonymised=bool(pseudonymised), narrative=narrative, alert_ids=ids,
                            report_date=report_date, due_at=due, created_at=now)
            s.add(rep)
            s.flush()
            self._audit(s, actor, "report.draft", "report", rep.id,
                        {"format": format, "file_name": file_name, "sha256": rep.sha256, "valid": rep.valid,
                         "alerts": len(ids)}, tenant=t, case_id=rep.case_id)
            if case is not None and case.status == "escalated":
                self._move(s, actor, case, "report_drafted", f"report {rep.id} drafted ({format})", now)
            return report_dict(rep, ds_row.name, now)

    def _report(self, s: Session, tenant: str, report_id: int | str, *, lock: bool = False) -> ReportRow:
        return self._owned(s, ReportRow, "report", tenant, report_id, lock)

    def _report_case(self, s: Session, rep: ReportRow) -> CaseRow | None:
        return s.get(CaseRow, rep.case_id) if rep.case_id is not None else None

    def _approve(self, s: Session, actor: User, rep: ReportRow, case: CaseRow | None, now: dt.datetime) -> None:
        require_role(actor, SENIOR, "approve reports")
        if rep.drafter == actor.username:
            raise NotAllowed(f"four eyes: {actor.username} drafted report {rep.id} and may not approve it")
        if rep.status != "drafted":
            raise Conflict(f"report {rep.id} is {rep.status}; only a drafted report can be approved")
        if not rep.valid:
            raise Conflict(f"report {rep.id} does not validate against its schema; draft a corrected one")
        rep.status, rep.approver, rep.approved_at = "approved", actor.username, now
        self._audit(s, actor, "report.approve", "report", rep.id, {"drafter": rep.drafter, "sha256": rep.sha256},
                    tenant=rep.tenant, case_id=rep.case_id)
        if case is not None and case.status == "report_drafted":
            self._move(s, actor, case, "approved", f"report {rep.id} approved", now)

    def _reject(self, s: Session, actor: User, rep: ReportRow, case: CaseRow | None, reason: str,
                now: dt.datetime) -> None:
        require_role(actor, SENIOR, "reject reports")
        if rep.status != "drafted":
            raise Conflict(f"report {rep.id} is {rep.status}; only a drafted report can be rejected")
        rep.status, rep.rejected_at, rep.rejected_by, rep.rejected_reason = "rejected", now, actor.username, reason
        self._audit(s, actor, "report.reject", "report", rep.id, {"reason": reason}, tenant=rep.tenant,
                    case_id=rep.case_id)
        if case is not None and case.status == "report_drafted" and not self._reports(s, case, "drafted"):
            self._move(s, actor, case, "escalated", f"report {rep.id} rejected: {reason}", now)

    def _file(self, s: Session, actor: User, rep: ReportRow, case: CaseRow | None, now: dt.datetime) -> None:
        require_role(actor, SENIOR, "file reports")
        if rep.status != "approved":
            raise Conflict(f"report {rep.id} is {rep.status}; only an approved report can be filed")
        rep.status, rep.filed_at, rep.filed_by = "filed", now, actor.username
        self._audit(s, actor, "report.file", "report", rep.id, {"file_name": rep.file_name, "sha256": rep.sha256},
                    tenant=rep.tenant, case_id=rep.case_id)
        if case is not None and case.status == "approved":
            self._move(s, actor, case, "filed", f"report {rep.id} filed", now)

    def _report_action(self, actor: User, report_id: int | str, action: str, reason: str = "") -> dict[str, Any]:
        t = tenant_of(actor)
        with self._write() as s:
            rep = self._report(s, t, report_id, lock=True)
            case = self._report_case(s, rep)
            now = self.now()
            if action == "approve":
                self._approve(s, actor, rep, case, now)
            elif action == "reject":
                self._reject(s, actor, rep, case, check_reason(reason, "rejecting a report"), now)
            else:
                self._file(s, actor, rep, case, now)
            name = s.get(DatasetRow, rep.dataset_id).name  # type: ignore[union-attr]
            return report_dict(rep, name, now)

    def replace_report_content(self, actor: User, report_id: int | str, *, file_name: str, content: bytes,
                               valid: bool, errors: list[Any] | tuple[Any, ...] = (),
                               pseudonymised: bool = False) -> dict[str, Any]:
        """Swap an approved pseudonymised draft for its revealed file (same facts, real names).

        Why: analysts draft on tokens; only the approver's act reveals personal data, and
        the revealed file is what gets filed. Only the report's approver may do it, only
        while it is approved and pseudonymised, and only with a valid file; the audit entry
        keeps both hashes so the swap is traceable.
        """
        require_role(actor, SENIOR, "finalise reports")
        errors = _report_file(file_name, content, errors)
        t = tenant_of(actor)
        with self._write() as s:
            rep = self._report(s, t, report_id, lock=True)
            if rep.status != "approved" or not rep.pseudonymised:
                raise Conflict(f"report {rep.id} is {rep.status}{' and pseudonymised' if rep.pseudonymised else ''}; "
                               "only an approved pseudonymised draft gets its revealed file")
            if rep.approver != actor.username:
                raise NotAllowed(f"only {rep.approver}, who approved report {rep.id}, may finalise it")
            if not valid:
                raise Conflict(f"the revealed file of report {rep.id} does not validate; it was not stored")
            old = rep.sha256
            rep.file_name, rep.content, rep.size = file_name, bytes(content), len(content)
            rep.sha256, rep.valid = hashlib.sha256(content).hexdigest(), True
            rep.errors = errors
            rep.pseudonymised = bool(pseudonymised)
            now = self.now()
            self._audit(s, actor, "report.finalise", "report", rep.id,
                        {"file_name": file_name, "sha256_before": old, "sha256": rep.sha256}, tenant=t,
                        case_id=rep.case_id)
            name = s.get(DatasetRow, rep.dataset_id).name  # type: ignore[union-attr]
            return report_dict(rep, name, now)

    def approve_report(self, actor: User, report_id: int | str) -> dict[str, Any]:
        """Four eyes: a senior who is not the drafter approves a drafted, valid report."""
        return self._report_action(actor, report_id, "approve")

    def reject_report(self, actor: User, report_id: int | str, reason: str) -> dict[str, Any]:
        """A senior sends a drafted report back; the case returns to escalated when no draft is left."""
        return self._report_action(actor, report_id, "reject", reason)

    def file_report(self, actor: User, report_id: int | str) -> dict[str, Any]:
        """A senior records that an approved report was submitted; its case becomes filed."""
        return self._report_action(actor, report_id, "file")

    def list_reports(self, tenant: User | str, *, status: str | None = None, format: str | None = None,
                     case_id: int | str | None = None, dataset: str | None = None, page: int = 1,
                     page_size: int = 50) -> tuple[list[dict[str, Any]], int]:
        """One page of the tenant's reports, newest first, and the total."""
        t = tenant_of(tenant)
        offset, limit = page_bounds(page, page_size)
        conds: list[Any] = [ReportRow.tenant == t]
        if status is not None:
            if status not in REPORT_STATES:
                raise Invalid(f"report status {status!r}: use one of {', '.join(REPORT_STATES)}")
            conds.append(ReportRow.status == status)
        if format is not None:
            conds.append(ReportRow.format == format)
        if case_id is not None:
            try:
                conds.append(ReportRow.case_id == int(case_id))
            except (TypeError, ValueError):
                return [], 0
        if dataset is not None:
            conds.append(DatasetRow.name == dataset)
        now = self.now()
        cols = [c for c in ReportRow.__table__.c if c.name != "content"]
        with self._read() as s:
            total = s.execute(select(func.count()).select_from(ReportRow).join(
                DatasetRow, DatasetRow.id == ReportRow.dataset_id).where(and_(*conds))).scalar_one()
            rows = s.execute(select(*cols, DatasetRow.name.label("dataset_name")).join(
                DatasetRow, DatasetRow.id == ReportRow.dataset_id).where(and_(*conds))
                .order_by(ReportRow.id.desc()).offset(offset).limit(limit)).all()
            return [report_dict(r, r.dataset_name, now) for r in rows], int(total)

    def get_report(self, tenant: User | str, report_id: int | str) -> dict[str, Any]:
        """One report's metadata (its bytes: `report_content`)."""
        t = tenant_of(tenant)
        with self._read() as s:
            rep = self._report(s, t, report_id)
            name = s.get(DatasetRow, rep.dataset_id).name  # type: ignore[union-attr]
            return report_dict(rep, name, self.now())

    def report_content(self, tenant: User | str, report_id: int | str) -> bytes:
        """The report file exactly as drafted (XML or ZIP)."""
        t = tenant_of(tenant)
        with self._read() as s:
            return bytes(self._report(s, t, report_id).content)


def case_summary(c: CaseRow, dataset: str, now: dt.datetime) -> dict[str, Any]:
    """CaseSummary of docs/api.md (plus party, region, SLA kind and the escalation/closing times)."""
    return {
        "case_id": c.id, "dataset": dataset, "subject_type": c.subject_type, "subject_id": c.subject_id,
        "party_id": c.party_id, "region": c.region, "title": c.title, "status": c.status, "assignee": c.assignee,
        "risk_score": c.risk_score, "alert_count": c.alert_count, "amount_cny": c.amount_cny,
        "created_at": c.created_at, "updated_at": c.updated_at, "due_at": c.due_at,
        "sla_state": sla_state(c.due_at, now) if c.status in ACTIVE else None, "sla_kind": c.sla_kind,
        "escalated_at": c.escalated_at, "closed_at": c.closed_at,
    }


def _report_file(file_name: str, content: bytes, errors: Iterable[Any]) -> list[Any]:
    """Check a report file's name and bytes; its validation errors as storable JSON (str or dict)."""
    if not content:
        raise Invalid("a report needs content")
    if not file_name or "/" in file_name or len(file_name) > 300:
        raise Invalid(f"report file name {file_name!r} is not a plain file name")
    return [e if isinstance(e, (str, dict)) else str(e) for e in errors]


def report_dict(r: Any, dataset: str, now: dt.datetime) -> dict[str, Any]:
    """Report of docs/api.md (without the file's bytes)."""
    return {
        "report_id": r.id, "case_id": r.case_id, "dataset": dataset, "format": r.format, "status": r.status,
        "drafter": r.drafter, "approver": r.approver, "filed_by": r.filed_by, "file_name": r.file_name,
        "size": r.size, "sha256": r.sha256, "valid": r.valid, "errors": list(r.errors or []),
        "pseudonymised": bool(r.pseudonymised),
        "narrative": r.narrative, "alert_ids": list(r.alert_ids or []), "report_date": r.report_date,
        "due_at": r.due_at, "sla_state": sla_state(r.due_at, now) if r.status in ("drafted", "approved") else None,
        "created_at": r.created_at, "approved_at": r.approved_at, "rejected_at": r.rejected_at,
        "rejected_by": r.rejected_by, "rejected_reason": r.rejected_reason, "filed_at": r.filed_at,
    }


def _evidence_meta(e: EvidenceRow) -> dict[str, Any]:
    return {"id": e.id, "case_id": e.case_id, "kind": e.kind, "title": e.title, "created_by": e.created_by,
            "created_at": e.created_at, "size": e.size, "content_type": e.content_type, "sha256": e.sha256,
            "stored": "path" if e.path else "database"}
