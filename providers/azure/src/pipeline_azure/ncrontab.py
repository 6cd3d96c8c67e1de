"""The spec's schedule as the six-field NCRONTAB a Functions timer reads, in UTC.

Timers on Flex Consumption fire in UTC (`timezones` rewrites a schedule given in another zone, or refuses it). NCRONTAB
('second minute hour day month day-of-week') reads '*', '*/n' and lists the Unix way; names, 'a/n' steps and Sunday as
7 are written out as numbers. Two differences with Unix cron are refused rather than rounded: rates that do not repeat
evenly (NCRONTAB restarts its steps every hour or day) and a schedule restricting both day fields (NCRONTAB needs both
to match, cron either).
"""

from __future__ import annotations

from pipeline.spec.schedule import Cron, Rate, Schedule
from pipeline_azure import timezones
from pipeline_azure.cron_fields import DAYS, MONTHS, expand


def _field(expr: str, low: int, high: int, names: dict[str, int], modulo: int | None = None) -> str:
    """'*' and '*/n' mean the same in NCRONTAB; anything else becomes an explicit list of numbers
    (no names, no 'a/n' forms, Sunday as 0), which NCRONTAB always reads the Unix way."""
    if expr == "*" or (expr.startswith("*/") and expr[2:].isdigit()):
        return expr
    values = expand(expr, low, high, names)
    if modulo is not None:
        values = sorted({v % modulo for v in values})
    return ",".join(str(v) for v in values)


def _restricted(expr: str) -> bool:
    return expr != "*"


def in_utc(schedule: Schedule, timezone: str | None) -> Schedule:
    """The schedule as the same instants read in UTC (see `timezones`); raises timezones.NotExpressibleError."""
    if isinstance(schedule, Rate) or timezone is None or timezones.offsets(timezone) == (0,):
        return schedule
    return timezones.to_utc(schedule, timezone)


def ncrontab(schedule: Schedule, timezone: str | None = None) -> str:
    """The spec's schedule (read in `timezone`, default UTC) as a six-field NCRONTAB expression in UTC
    ('second minute hour day month day-of-week')."""
    schedule = in_utc(schedule, timezone)
    if isinstance(schedule, Rate):
        expr = _rate(schedule)
        if expr is None:
            raise ValueError(f"rate({schedule.value} {schedule.unit}) has no NCRONTAB equivalent")
        return expr
    assert isinstance(schedule, Cron)
    return " ".join([
        "0",
        _field(schedule.minute, 0, 59, {}),
        _field(schedule.hour, 0, 23, {}),
        _field(schedule.day_of_month, 1, 31, {}),
        _field(schedule.month, 1, 12, MONTHS),
        _field(schedule.day_of_week, 0, 7, DAYS, modulo=7),
    ])


def _rate(rate: Rate) -> str | None:
    """Rates that repeat evenly forever: divisors of an hour or a day, one day, one week."""
    minutes = rate.minutes
    if minutes < 60 and 60 % minutes == 0:
        return "0 * * * * *" if minutes == 1 else f"0 */{minutes} * * * *"
    if minutes % 60 == 0 and minutes < 1440 and 24 % (minutes // 60) == 0:
        hours = minutes // 60
        return "0 0 * * * *" if hours == 1 else f"0 0 */{hours} * * *"
    if minutes == 1440:
        return "0 0 0 * * *"
    if minutes == 7 * 1440:
        return "0 0 0 * * 0"
    return None


def schedule_problems(schedule: Schedule, timezone: str | None = None) -> list[tuple[str, str, str]]:
    """(field, message, hint) for schedules the timer trigger cannot run as written (Flex has no TimeSpan schedules and
    fires in UTC); `field` is "schedule" or "timezone"."""
    if isinstance(schedule, Rate):
        if _rate(schedule) is None:
            return [("schedule", f"Azure timer triggers cannot run rate({schedule.value} {schedule.unit}) at even intervals (NCRONTAB restarts "
                     "its steps every hour or day)",
                     "use a rate that divides an hour or a day (e.g. 5, 10, 15, 20, 30 minutes; 1, 2, 3, 4, 6, 8, 12 hours), 1 day or 7 days")]
        return []
    if _restricted(schedule.day_of_month) and _restricted(schedule.day_of_week):
        return [("schedule", "NCRONTAB runs only when day-of-month AND day-of-week both match; Unix cron runs when either matches",
                 "restrict only one of day-of-month and day-of-week, and set the other to '*'")]
    try:
        in_utc(schedule, timezone)
    except timezones.NotExpressibleError as exc:
        return [("timezone", f"Azure timers fire in UTC on Flex Consumption (WEBSITE_TIME_ZONE and TZ are not supported), so "
                 f"'{schedule}' in {timezone} must be rewritten in UTC, and it cannot be: {exc}",
                 "write the schedule in UTC (leave out 'timezone'), pick a zone without daylight saving, or a schedule whose hours "
                 "do not depend on the offset (e.g. '*/15 * * * *')")]
    return []
