"""China's working-day calendar: statutory holidays and make-up working days (调休) for report deadlines.

Regulatory deadlines count *working days* (工作日): a suspicious-transaction report is due
within five working days of confirming the suspicion, a large-value report within five
working days of the transaction. Working days are Monday to Friday, minus the statutory
holidays the State Council announces each year, plus the weekend days it turns into
working days to make up for bridged holidays. Dates are Beijing (UTC+8) dates.

Sources: the State Council General Office notices 国务院办公厅关于2024年 / 2025年 / 2026年
部分节假日安排的通知 (the 2026 one published 2025-11-04; 2025 is the first year with the
extra Spring Festival Eve and 5/2 statutory days). The 2024–25 dates are the same facts
`tianluo.simulate.calendar` uses (a test checks they agree). Outside the covered years
the calendar falls back to Monday–Friday; `covers(year)` tells callers when that happens.
"""

from __future__ import annotations

import datetime as dt

#: Beijing time has been UTC+8 all year since 1991 (no daylight saving).
BEIJING = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")

#: Years whose State Council holiday notice is encoded below.
COVERED_YEARS: tuple[int, ...] = (2024, 2025, 2026)


def _days(year: int, month: int, first: int, last: int) -> list[str]:
    return [f"{year}-{month:02d}-{d:02d}" for d in range(first, last + 1)]


#: Every day off under the notices (weekend days inside a holiday block included; harmless).
HOLIDAYS: frozenset[dt.date] = frozenset(
    dt.date.fromisoformat(d)
    for d in (
        # 2024: 元旦 1/1; 春节 2/10–17; 清明 4/4–6; 劳动节 5/1–5; 端午 6/10; 中秋 9/15–17; 国庆 10/1–7.
        "2024-01-01", *_days(2024, 2, 10, 17), *_days(2024, 4, 4, 6), *_days(2024, 5, 1, 5),
        "2024-06-10", *_days(2024, 9, 15, 17), *_days(2024, 10, 1, 7),
        # 2025: 元旦 1/1; 春节 1/28–2/4; 清明 4/4–6; 劳动节 5/1–5; 端午 5/31–6/2; 国庆+中秋 10/1–8.
        "2025-01-01", *_days(2025, 1, 28, 31), *_days(2025, 2, 1, 4), *_days(2025, 4, 4, 6),
        *_days(2025, 5, 1, 5), "2025-05-31", "2025-06-01", "2025-06-02", *_days(2025, 10, 1, 8),
        # 2026: 元旦 1/1–3; 春节 2/15–23; 清明 4/4–6; 劳动节 5/1–5; 端午 6/19–21; 中秋 9/25–27; 国庆 10/1–7.
        *_days(2026, 1, 1, 3), *_days(2026, 2, 15, 23), *_days(2026, 4, 4, 6), *_days(2026, 5, 1, 5),
        *_days(2026, 6, 19, 21), *_days(2026, 9, 25, 27), *_days(2026, 10, 1, 7),
    )
)

#: Weekend days that are working days (上班) under the notices.
MAKEUP_WORKDAYS: frozenset[dt.date] = frozenset(
    dt.date.fromisoformat(d)
    for d in (
        "2024-02-04", "2024-02-18", "2024-04-07", "2024-04-28", "2024-05-11", "2024-09-14",
        "2024-09-29", "2024-10-12",
        "2025-01-26", "2025-02-08", "2025-04-27", "2025-09-28", "2025-10-11",
        "2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10",
    )
)


def covers(year: int) -> bool:
    """Whether the holiday notice of `year` is encoded (else only weekends are days off)."""
    return year in COVERED_YEARS


def is_workday(day: dt.date) -> bool:
    """A working day: a make-up working day, or a weekday that is not a statutory holiday."""
    return day in MAKEUP_WORKDAYS or (day.weekday() < 5 and day not in HOLIDAYS)


def add_workdays(day: dt.date, n: int) -> dt.date:
    """The `n`-th working day after `day` (`n` = 0: `day` itself if it is a working day, else the next one).

    Counting starts the day after, as regulators count: an event on Friday with five
    working days to report is due the next Friday (absent holidays).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0 (got {n})")
    if n == 0:
        while not is_workday(day):
            day += dt.timedelta(days=1)
        return day
    while n:
        day += dt.timedelta(days=1)
        if is_workday(day):
            n -= 1
    return day


def workdays_between(start: dt.date, end: dt.date) -> int:
    """Working days in the half-open range (start, end]; negative when `end` is before `start`."""
    if end < start:
        return -workdays_between(end, start)
    count, day = 0, start
    while day < end:
        day += dt.timedelta(days=1)
        count += is_workday(day)
    return count


def beijing_date(ts: dt.datetime) -> dt.date:
    """The Beijing calendar date of an instant (naive datetimes are taken as UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return ts.astimezone(BEIJING).date()


def end_of_day(day: dt.date) -> dt.datetime:
    """The instant (UTC) a Beijing day ends: midnight Beijing time of the next day, exclusive."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), BEIJING).astimezone(dt.UTC)
