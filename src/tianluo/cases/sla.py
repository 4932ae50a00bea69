"""Deadlines in working days: internal triage of a new case, the STR after escalation, the large-value report.

- **Triage** (internal policy, not a regulation): a case not yet escalated should be decided
  within `TRIAGE_WORKDAYS` working days of its creation, so alerts do not age unseen.
- **Suspicious-transaction report**: due within `REPORT_WORKDAYS` working days of the
  confirmation of the suspicion, which in this workflow is the escalation.
- **Large-value report**: due within `REPORT_WORKDAYS` working days of the transaction date.

A deadline is the end of its Beijing working day (midnight Beijing time, exclusive).
`sla_state` is `overdue` once that instant has passed, `due_soon` while at most one
working day is left (the due day itself or the working day before), else `ok`.
"""

from __future__ import annotations

import datetime as dt

from tianluo.reference.workdays import add_workdays, beijing_date, end_of_day, workdays_between

TRIAGE_WORKDAYS = 10
REPORT_WORKDAYS = 5
DUE_SOON_WORKDAYS = 1


def deadline(start: dt.datetime | dt.date, workdays: int) -> dt.datetime:
    """The instant (UTC) a deadline of `workdays` working days counted from `start` expires."""
    day = beijing_date(start) if isinstance(start, dt.datetime) else start
    return end_of_day(add_workdays(day, workdays))


def sla_state(due_at: dt.datetime | None, now: dt.datetime) -> str | None:
    """`ok`, `due_soon` or `overdue` for a deadline at `now`; None when there is no deadline."""
    if due_at is None:
        return None
    if now >= due_at:
        return "overdue"
    due_day = beijing_date(due_at - dt.timedelta(microseconds=1))
    return "due_soon" if workdays_between(beijing_date(now), due_day) <= DUE_SOON_WORKDAYS else "ok"


def due_soon_limit(now: dt.datetime) -> dt.datetime:
    """The latest deadline that is `due_soon` at `now` (deadlines up to it, and after now, are due soon).

    Lets a database filter by SLA state with two comparisons on `due_at`.
    """
    return end_of_day(add_workdays(beijing_date(now), DUE_SOON_WORKDAYS))


def age_workdays(since: dt.datetime, now: dt.datetime) -> int:
    """Working days elapsed from `since` to `now` (0 on the same day)."""
    return max(0, workdays_between(beijing_date(since), beijing_date(now)))
