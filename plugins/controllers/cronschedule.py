"""Cron schedules as CronJobs take them (robfig/cron's standard parser): five fields with
names, ranges, steps and lists, the @hourly/@daily/... descriptors, ``CRON_TZ=``/``TZ=``
prefixes, and day-of-month/day-of-week ORed when both are restricted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

_MONTHS = {n: i + 1 for i, n in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
_DAYS = {n: i for i, n in enumerate("sun mon tue wed thu fri sat".split())}
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _value(text: str, names: dict[str, int]) -> int:
    return names[text.lower()] if text.lower() in names else int(text)


def _field(expr: str, lo: int, hi: int, names: dict[str, int]) -> tuple[frozenset[int], bool]:
    """The values a field allows, and whether it was unrestricted (``*`` or ``?``)."""
    values: set[int] = set()
    star = False
    for part in expr.split(","):
        rng, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step <= 0:
            raise ValueError(f"bad step in {part!r}")
        if rng in ("*", "?"):
            start, end = lo, hi
            star = not step_text
        elif "-" in rng:
            a, _, b = rng.partition("-")
            start, end = _value(a, names), _value(b, names)
        else:
            start = _value(rng, names)
            end = hi if step_text else start
        if start < lo or end > hi or start > end:
            raise ValueError(f"{part!r} is out of range {lo}-{hi}")
        values.update(range(start, end + 1, step))
    return frozenset(values), star


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_star: bool
    weekday_star: bool
    tz: tzinfo | None

    def _day_matches(self, t: datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        if self.day_star or self.weekday_star:
            return dom and dow
        return dom or dow

    def next_after(self, after: datetime) -> datetime | None:
        """The first time strictly after ``after`` (None if none within five years)."""
        tz = self.tz or after.tzinfo
        t = after.astimezone(tz).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t + timedelta(days=366 * 5)
        while t < limit:
            if t.month not in self.months:
                year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
                t = t.replace(year=year, month=month, day=1, hour=0, minute=0)
                continue
            if not self._day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0)
                continue
            if t.minute not in self.minutes:
                t = t + timedelta(minutes=1)
                continue
            return t
        return None

    def last_at_or_before(self, at: datetime) -> datetime | None:
        """The latest time not after ``at`` (None if none within five years before it)."""
        tz = self.tz or at.tzinfo
        t = at.astimezone(tz).replace(second=0, microsecond=0)
        limit = t - timedelta(days=366 * 5)
        while t > limit:
            if t.month not in self.months:
                # last minute of the previous month
                t = t.replace(day=1, hour=0, minute=0) - timedelta(minutes=1)
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0) - timedelta(minutes=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) - timedelta(minutes=1)
                continue
            if t.minute not in self.minutes:
                t = t - timedelta(minutes=1)
                continue
            return t
        return None


def parse(spec: str, time_zone: str | None = None) -> Schedule:
    """A CronJob's spec.schedule (and spec.timeZone); ValueError if unreadable."""
    text = spec.strip()
    tz: tzinfo | None = ZoneInfo(time_zone) if time_zone else None
    if text.startswith(("CRON_TZ=", "TZ=")):
        prefix, _, text = text.partition(" ")
        tz = ZoneInfo(prefix.split("=", 1)[1])
        text = text.strip()
    text = _DESCRIPTORS.get(text.lower(), text)
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"expected exactly 5 fields, found {len(fields)}: {spec!r}")
    minutes, _ = _field(fields[0], 0, 59, {})
    hours, _ = _field(fields[1], 0, 23, {})
    days, day_star = _field(fields[2], 1, 31, {})
    months, _ = _field(fields[3], 1, 12, _MONTHS)
    weekdays, weekday_star = _field(fields[4], 0, 7, _DAYS)
    if 7 in weekdays:
        weekdays = frozenset((weekdays - {7}) | {0})
    return Schedule(minutes, hours, days, months, weekdays, day_star, weekday_star, tz)
