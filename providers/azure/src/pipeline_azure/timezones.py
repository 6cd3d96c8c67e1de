"""Schedules in a time zone (`trigger.timezone`) on a platform whose timers fire in UTC only.

Flex Consumption reads NCRONTAB in UTC: "WEBSITE_TIME_ZONE and TZ app settings aren't currently supported when
running on Flex Consumption plan" (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#considerations).
So a schedule written for a zone is rewritten in UTC by arithmetic, which is exact when the zone's offset never
changes or the schedule's firing times in UTC come out the same at every offset the zone takes (e.g. '*/15 * * * *'
in any whole-hour zone, daylight saving or not). Otherwise - '0 6 * * *' in Europe/Paris is 05:00 UTC in winter and
04:00 UTC in summer - one NCRONTAB cannot say it, and the spec is refused with both UTC forms (the runtime cannot
skip the wrong one: its entry module is shared). Rates fire at the same instants in every zone and are left alone.

The offsets a zone takes are read from the tz database over a fixed two-year span (2026-2027), so a plan does not
change with the day it is made.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from pipeline.spec.schedule import Cron
from pipeline_azure.cron_fields import DAYS, expand

_SPAN_START = datetime(2026, 1, 1, tzinfo=UTC)
_SPAN_DAYS = 2 * 365
MINUTES_PER_DAY = 1440


class NotExpressibleError(ValueError):
    """The schedule's UTC firing times depend on the date (daylight saving), or cannot be written as one NCRONTAB."""


@cache
def offsets(zone: str) -> tuple[int, ...]:
    """Every UTC offset, in minutes, `zone` takes over the span (sampled twice a day)."""
    tz = ZoneInfo(zone)
    found: set[int] = set()
    for half_days in range(2 * _SPAN_DAYS):
        offset = (_SPAN_START + timedelta(hours=12 * half_days)).astimezone(tz).utcoffset()
        found.add(int(offset.total_seconds() // 60) if offset is not None else 0)
    return tuple(sorted(found))


def _field(values: set[int], low: int, high: int) -> str:
    """A cron field for exactly `values`: '*' when it is the whole range, else a list (NCRONTAB reads both)."""
    if values == set(range(low, high + 1)):
        return "*"
    return ",".join(str(v) for v in sorted(values))


def utc_fields(minutes: set[int], hours: set[int], cron: Cron, offset: int, days_restricted: bool) -> tuple[str, str, str]:
    """(minute, hour, day-of-week) fields in UTC for a local schedule at a fixed `offset` (local = UTC + offset)."""
    shifted: dict[int, set[tuple[int, int]]] = {}
    for h in hours:
        for m in minutes:
            utc = h * 60 + m - offset
            shifted.setdefault(utc // MINUTES_PER_DAY, set()).add(divmod(utc % MINUTES_PER_DAY, 60))
    pairs = set().union(*shifted.values())
    utc_hours, utc_minutes = {h for h, _ in pairs}, {m for _, m in pairs}
    if pairs != {(h, m) for h in utc_hours for m in utc_minutes}:
        raise NotExpressibleError(f"at UTC{offset / 60:+g} its times are not every listed minute of every listed hour")
    day_of_week = cron.day_of_week
    if days_restricted:
        if len(shifted) > 1:
            raise NotExpressibleError(f"at UTC{offset / 60:+g} some of its times fall on the day before or after, and its days are restricted")
        (shift,) = shifted
        if shift:
            if cron.day_of_month != "*" or cron.month != "*":
                raise NotExpressibleError(f"at UTC{offset / 60:+g} its times fall on another day of the month, which NCRONTAB cannot shift")
            day_of_week = day_of_week_shifted(cron.day_of_week, shift)
    return _field(utc_minutes, 0, 59), _field(utc_hours, 0, 23), day_of_week


def day_of_week_shifted(field: str, shift: int) -> str:
    return ",".join(str(v) for v in sorted({(d + shift) % 7 for d in expand(field, 0, 7, DAYS)}))


def to_utc(cron: Cron, zone: str) -> Cron:
    """`cron` read in `zone`, as a cron read in UTC; raises NotExpressibleError (with the UTC forms it would need)."""
    minutes, hours = set(expand(cron.minute, 0, 59, {})), set(expand(cron.hour, 0, 23, {}))
    days_restricted = (cron.day_of_month, cron.month, cron.day_of_week) != ("*", "*", "*")
    forms: dict[int, tuple[str, str, str]] = {}
    for offset in offsets(zone):
        forms[offset] = utc_fields(minutes, hours, cron, offset, days_restricted)
    distinct = set(forms.values())
    if len(distinct) > 1:
        shown = "; ".join(f"UTC{offset / 60:+g}: '{m} {h} {cron.day_of_month} {cron.month} {d}'"
                          for offset, (m, h, d) in sorted(forms.items()))
        raise NotExpressibleError(f"{zone} changes its UTC offset during the year, and the schedule's UTC times change with it ({shown})")
    (m, h, d) = distinct.pop()
    return Cron(m, h, cron.day_of_month, cron.month, d)
