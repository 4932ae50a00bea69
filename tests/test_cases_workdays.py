"""China's working-day calendar and the SLA arithmetic built on it."""

from __future__ import annotations

import datetime as dt

import pytest

from tianluo.cases.sla import age_workdays, deadline, due_soon_limit, sla_state
from tianluo.reference import workdays
from tianluo.reference.workdays import add_workdays, beijing_date, end_of_day, is_workday, workdays_between
from tianluo.simulate import calendar as sim_calendar

D = dt.date.fromisoformat


def test_2026_follows_the_state_council_notice() -> None:
    """国务院办公厅关于2026年部分节假日安排的通知 (2025-11-04), item by item."""
    days_off = {
        "元旦": ("2026-01-01", "2026-01-03"), "春节": ("2026-02-15", "2026-02-23"),
        "清明节": ("2026-04-04", "2026-04-06"), "劳动节": ("2026-05-01", "2026-05-05"),
        "端午节": ("2026-06-19", "2026-06-21"),
        "中秋节": ("2026-09-25", "2026-09-27"), "国庆节": ("2026-10-01", "2026-10-07"),
    }
    for first, last in days_off.values():
        d = D(first)
        while d <= D(last):
            assert not is_workday(d), d
            d += dt.timedelta(days=1)
    for makeup in ("2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10"):
        assert D(makeup).weekday() >= 5 and is_workday(D(makeup)), makeup
    assert is_workday(D("2026-02-24")) and is_workday(D("2026-10-08"))
    assert workdays.covers(2026) and not workdays.covers(2027)


def test_2024_and_2025_agree_with_the_simulator() -> None:
    """Two copies of the same facts must not drift: the simulator's calendar and the reference one."""
    for year in (2024, 2025):
        assert {d for d in workdays.HOLIDAYS if d.year == year} == {d for d in sim_calendar.HOLIDAYS if d.year == year}
        assert {d for d in workdays.MAKEUP_WORKDAYS if d.year == year} == {
            d for d in sim_calendar.MAKEUP_WORKDAYS if d.year == year}
    assert all(d.weekday() >= 5 for d in workdays.MAKEUP_WORKDAYS)
    assert not workdays.HOLIDAYS & workdays.MAKEUP_WORKDAYS


def test_counting_working_days() -> None:
    assert add_workdays(D("2024-03-01"), 5) == D("2024-03-08")  # Friday → next Friday
    assert add_workdays(D("2024-03-02"), 0) == D("2024-03-04")  # Saturday → Monday
    assert add_workdays(D("2024-03-04"), 0) == D("2024-03-04")
    # Spring Festival 2026: Friday 13 Feb; Saturday 14 Feb is worked; 15–23 Feb off.
    assert add_workdays(D("2026-02-13"), 1) == D("2026-02-14")
    assert add_workdays(D("2026-02-13"), 2) == D("2026-02-24")
    assert add_workdays(D("2026-02-13"), 5) == D("2026-02-27")
    assert add_workdays(D("2026-02-13"), 6) == D("2026-02-28")  # the second make-up Saturday
    assert workdays_between(D("2026-02-13"), D("2026-02-28")) == 6
    assert workdays_between(D("2026-02-28"), D("2026-02-13")) == -6
    assert workdays_between(D("2026-02-13"), D("2026-02-13")) == 0
    with pytest.raises(ValueError):
        add_workdays(D("2026-02-13"), -1)
    # Outside the covered years only weekends are days off.
    assert add_workdays(D("2027-01-01"), 1) == D("2027-01-04")


def test_beijing_days_and_deadlines() -> None:
    late = dt.datetime(2024, 3, 1, 17, 30, tzinfo=dt.UTC)  # Saturday 01:30 in Beijing
    assert beijing_date(late) == D("2024-03-02")
    assert beijing_date(dt.datetime(2024, 3, 1, 17, 30)) == D("2024-03-02")  # naive = UTC
    assert end_of_day(D("2024-03-08")) == dt.datetime(2024, 3, 8, 16, tzinfo=dt.UTC)
    # An STR confirmed late on Friday 1 Mar (Beijing) is due at the end of Friday 8 Mar.
    assert deadline(dt.datetime(2024, 3, 1, 15, tzinfo=dt.UTC), 5) == dt.datetime(2024, 3, 8, 16, tzinfo=dt.UTC)
    # A large-value transaction on Friday 13 Feb 2026 is due by the end of Friday 27 Feb 2026.
    assert deadline(D("2026-02-13"), 5) == dt.datetime(2026, 2, 27, 16, tzinfo=dt.UTC)


def test_sla_states() -> None:
    due = deadline(D("2024-03-01"), 5)  # end of Friday 8 Mar, Beijing
    at = lambda y, m, d, h=2: dt.datetime(y, m, d, h, tzinfo=dt.UTC)  # noqa: E731
    assert sla_state(due, at(2024, 3, 6)) == "ok"  # Wednesday: 2 working days left
    assert sla_state(due, at(2024, 3, 7)) == "due_soon"  # Thursday: 1 left
    assert sla_state(due, at(2024, 3, 8)) == "due_soon"  # the due day
    assert sla_state(due, due - dt.timedelta(microseconds=1)) == "due_soon"
    assert sla_state(due, due) == "overdue"
    assert sla_state(None, at(2024, 3, 8)) is None
    # A weekend before the due Monday still counts as one working day left on Friday.
    monday = end_of_day(D("2024-03-11"))
    assert sla_state(monday, at(2024, 3, 8)) == "due_soon"
    assert sla_state(monday, at(2024, 3, 7)) == "ok"
    # The database filter agrees with sla_state.
    for now in (at(2024, 3, 6), at(2024, 3, 7), at(2024, 3, 8), at(2024, 3, 9)):
        expected = sla_state(due, now)
        by_filter = "overdue" if due <= now else ("due_soon" if due <= due_soon_limit(now) else "ok")
        assert by_filter == expected, now
    assert age_workdays(at(2024, 3, 1), at(2024, 3, 5)) == 2
    assert age_workdays(at(2024, 3, 5), at(2024, 3, 1)) == 0
