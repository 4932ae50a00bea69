"""Time in the simulation: China's working-day calendar, hour-of-day rhythms, local → UTC seconds.

Detectors key on time (night activity, weekend wires, salary days), so the
simulated clock has to look like Beijing's: people pay for lunch at noon and
dinner at seven, banks' counters close at five, businesses pay suppliers on
working days, and the State Council's holiday arrangements move those working
days (调休) around. Everything is generated in Beijing time (UTC+8, no DST) and
stored as UTC seconds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property

import numpy as np

#: Beijing time is UTC+8 all year.
UTC_OFFSET_S = 8 * 3600
DAY_S = 86_400

#: Public holidays and make-up working days (调休) from the State Council notices for 2024 and
#: 2025. Outside these years the calendar falls back to Monday-Friday working days.
HOLIDAYS: frozenset[dt.date] = frozenset(
    dt.date.fromisoformat(d)
    for d in (
        "2024-01-01", *(f"2024-02-{d:02d}" for d in range(10, 18)), "2024-04-04", "2024-04-05",
        "2024-04-06", *(f"2024-05-{d:02d}" for d in range(1, 6)), "2024-06-10", "2024-09-15",
        "2024-09-16", "2024-09-17", *(f"2024-10-{d:02d}" for d in range(1, 8)),
        "2025-01-01", "2025-01-28", "2025-01-29", "2025-01-30", "2025-01-31",
        *(f"2025-02-{d:02d}" for d in range(1, 5)), "2025-04-04", "2025-04-05", "2025-04-06",
        *(f"2025-05-{d:02d}" for d in range(1, 6)), "2025-05-31", "2025-06-01", "2025-06-02",
        *(f"2025-10-{d:02d}" for d in range(1, 9)),
    )
)
MAKEUP_WORKDAYS: frozenset[dt.date] = frozenset(
    dt.date.fromisoformat(d)
    for d in (
        "2024-02-04", "2024-02-18", "2024-04-07", "2024-04-28", "2024-05-11", "2024-09-14",
        "2024-09-29", "2024-10-12", "2025-01-26", "2025-02-08", "2025-04-27", "2025-09-28",
        "2025-10-11",
    )
)


def _profile(weights: list[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    return w / w.sum()


#: Hour-of-day shares (Beijing time), index 0 = 00:00-00:59.
HOURS: dict[str, np.ndarray] = {
    # Card and QR payments: breakfast, lunch and dinner peaks, a long evening of online shopping.
    "retail": _profile([1.2, 0.6, 0.3, 0.2, 0.2, 0.4, 1.2, 3.5, 5, 4.5, 5, 7.5, 9, 6, 5, 5, 5.5, 7.5,
                        9.5, 9.5, 8, 6.5, 4.5, 2.5]),
    # Person-to-person transfers and bill payments in apps: daytime and evening.
    "personal": _profile([0.8, 0.4, 0.2, 0.1, 0.1, 0.2, 0.6, 2, 4, 5.5, 6, 6, 6, 5.5, 5.5, 5.5, 5.5,
                          5.5, 6, 6.5, 7, 6.5, 4.5, 2]),
    # Branch counters: 9:00-17:00.
    "branch": _profile([0] * 9 + [6, 9, 9, 6, 6, 8, 8, 6] + [0] * 7),
    # ATMs: open all day, used mostly 7:00-23:00.
    "atm": _profile([0.5, 0.3, 0.2, 0.1, 0.1, 0.2, 0.8, 3, 5, 6, 6, 6.5, 7, 6, 5.5, 5.5, 6, 6.5, 7,
                     6.5, 5.5, 4, 2.5, 1]),
    # Corporate online banking: office hours with a lunch dip.
    "business": _profile([0] * 8 + [1, 8, 11, 10, 4, 6, 10, 10, 8, 4, 1] + [0] * 5),
    # Overnight batch jobs: auto-debits, interest posting, loan instalments.
    "batch": _profile([1, 3, 4, 4, 3, 2] + [0] * 18),
    # When 跑分 platforms and gambling sites are busiest.
    "night": _profile([7, 6, 4.5, 3, 1.5, 0.3, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.2, 0.2, 0.2, 0.2,
                       0.2, 0.2, 0.5, 1, 2.5, 5, 7, 8]),
}


@dataclass(frozen=True)
class Calendar:
    """The simulated window: `days` local days from `start`, and which of them are working days."""

    start: dt.date
    days: int

    @property
    def t0(self) -> int:
        """UTC epoch seconds of local midnight at the start of the window."""
        return int((self.start - dt.date(1970, 1, 1)).days) * DAY_S - UTC_OFFSET_S

    @property
    def t_end(self) -> int:
        """UTC epoch seconds of local midnight after the last day (exclusive end)."""
        return self.t0 + self.days * DAY_S

    def date(self, day: int) -> dt.date:
        return self.start + dt.timedelta(days=day)

    @cached_property
    def workday(self) -> np.ndarray:
        """Boolean per day: a working day under the State Council calendar."""
        out = np.empty(self.days, dtype=bool)
        for i in range(self.days):
            d = self.date(i)
            out[i] = d in MAKEUP_WORKDAYS or (d.weekday() < 5 and d not in HOLIDAYS)
        return out

    def day_weights(self, workday_weight: float, restday_weight: float) -> np.ndarray:
        """Cumulative distribution over days for an activity with these per-day intensities."""
        w = np.where(self.workday, workday_weight, restday_weight).astype(np.float64)
        return np.cumsum(w)

    def previous_workday(self, day: int) -> int:
        """The last working day on or before `day` (salaries due on a holiday are paid early)."""
        work = self.workday
        while day > 0 and not work[day]:
            day -= 1
        return day

    def month_days(self, day_of_month: int) -> list[int]:
        """Window day indices that fall on `day_of_month` of each month (clamped to month end)."""
        out = []
        first = self.start.replace(day=1)
        while first <= self.date(self.days - 1):
            nxt = (first + dt.timedelta(days=32)).replace(day=1)
            dom = min(day_of_month, (nxt - first).days)
            i = (first.replace(day=dom) - self.start).days
            if 0 <= i < self.days:
                out.append(i)
            first = nxt
        return out


def choose(rng: np.random.Generator, cumulative: np.ndarray, n: int) -> np.ndarray:
    """`n` indices drawn with probability proportional to the increments of `cumulative`."""
    return np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right")


def local_times(
    rng: np.random.Generator, cal: Calendar, days: np.ndarray, hours: str | np.ndarray
) -> np.ndarray:
    """UTC epoch seconds for events on local `days`, at an hour drawn from a profile.

    `hours` names a profile of `HOURS` or gives fixed local hours per event; minutes and
    seconds are uniform, so timestamps have real second resolution.
    """
    n = len(days)
    hour = choose(rng, np.cumsum(HOURS[hours]), n) if isinstance(hours, str) else np.asarray(hours)
    return cal.t0 + days.astype(np.int64) * DAY_S + hour.astype(np.int64) * 3600 + rng.integers(0, 3600, n)


def local_hour(ts: np.ndarray) -> np.ndarray:
    """Beijing hour of day (0-23) of UTC epoch seconds."""
    return ((np.asarray(ts, dtype=np.int64) + UTC_OFFSET_S) % DAY_S) // 3600
