"""Cloud-neutral schedule expressions: `rate(N unit)` or a five-field Unix cron.

Each cloud speaks a different dialect (AWS six fields with '?', Azure NCRONTAB with
seconds, GCP unix-cron), so the spec uses the common ground and backends translate it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.errors import echo, odd_character

# ASCII only ([0-9], ' '), anchored to the whole text (fullmatch): '\d' and str.isdigit() accept
# fullwidth and other Unicode digits, and '$' matches before a trailing newline.
_RATE = re.compile(r"rate\( *([0-9]+) +(minute|minutes|hour|hours|day|days) *\)")
_CRON_FIELD = re.compile(r"[0-9A-Za-z*/,-]+")
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February 29 does come, every leap year
_MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December")
_MONTHS = {m: i + 1 for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
# (name, low, high, names)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _DAYS),
)
CRON_HINT = "use rate(N minutes|hours|days) or five cron fields 'minute hour day-of-month month day-of-week', e.g. '*/15 * * * *'"


@dataclass(frozen=True)
class Rate:
    value: int
    unit: str  # "minutes" | "hours" | "days"

    @property
    def minutes(self) -> int:
        return self.value * {"minutes": 1, "hours": 60, "days": 1440}[self.unit]

    def runs_per_month(self) -> float:
        return 730 * 60 / self.minutes


@dataclass(frozen=True)
class Cron:
    minute: str
    hour: str
    day_of_month: str
    month: str
    day_of_week: str

    @property
    def fields(self) -> tuple[str, str, str, str, str]:
        return (self.minute, self.hour, self.day_of_month, self.month, self.day_of_week)

    def __str__(self) -> str:
        return " ".join(self.fields)

    def runs_per_month(self) -> float:
        """An estimate for sizing and cost: runs per day times 30.4 (ignores calendar subtleties)."""
        minutes = len(_expand(self.minute, 0, 59, {}))
        hours = len(_expand(self.hour, 0, 23, {}))
        days = 30.4 if self.day_of_month == "*" and self.day_of_week == "*" else 30.4 * _day_fraction(self)
        return minutes * hours * days


Schedule = Rate | Cron


def _day_fraction(cron: Cron) -> float:
    dom = len(_expand(cron.day_of_month, 1, 31, {})) / 31 if cron.day_of_month != "*" else None
    dow = len({d % 7 for d in _expand(cron.day_of_week, 0, 7, _DAYS)}) / 7 if cron.day_of_week != "*" else None
    known = [f for f in (dom, dow) if f is not None]
    return min(1.0, sum(known))


def _number(token: str, low: int, high: int, names: dict[str, int], field: str) -> int:
    value = names.get(token.upper()) if not _is_number(token) else int(token)
    if value is None:
        raise ValueError(f"{echo(token)} is not a valid {field}")
    if not low <= value <= high:
        raise ValueError(f"{field} {value} is out of range {low}-{high}")
    return value


def _expand(expr: str, low: int, high: int, names: dict[str, int], field: str = "value") -> set[int]:
    values: set[int] = set()
    for part in expr.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not _is_number(step_text) or int(step_text) == 0:
                raise ValueError(f"step {echo(step_text)} in the {field} field must be a positive number")
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _number(a, low, high, names, field), _number(b, low, high, names, field)
            if start > end:
                raise ValueError(f"range {echo(part)} in the {field} field runs backwards")
        else:
            start = _number(part, low, high, names, field)
            end = high if step > 1 else start
        values.update(range(start, end + 1, step))
    return values


def _is_number(token: str) -> bool:
    return token.isascii() and token.isdigit() and len(token) <= 4


def _never_fires(fields: list[str]) -> str:
    """Why a cron can never run ('' if it can): its days of the month exist in none of its months.

    Only checked when day-of-week is '*': then every dialect (unix-cron, AWS with '?', NCRONTAB)
    runs on the listed days of the month alone. A restricted day-of-week runs on those weekdays too
    in unix-cron, and AWS refuses both restricted anyway."""
    day_of_month, month, day_of_week = fields[2], fields[3], fields[4]
    if day_of_week != "*" or day_of_month == "*":
        return ""
    days = _expand(day_of_month, 1, 31, {})
    months = sorted(_expand(month, 1, 12, _MONTHS))
    if any(day <= _DAYS_IN_MONTH[m - 1] for m in months for day in days):
        return ""
    listed = ", ".join(str(d) for d in sorted(days))
    names = " or ".join(_MONTH_NAMES[m - 1] for m in months) if len(months) <= 4 else "any of its months"
    return f"{echo(' '.join(fields))} never runs: day {listed} of the month does not occur in {names}"


def parse_schedule(text: str) -> Schedule:
    """Parse and validate; raises ValueError with a message a user can act on."""
    if len(text) > 200:
        raise ValueError(f"{echo(text)} is too long for a schedule; {CRON_HINT}")
    if any(not (" " <= char <= "~") for char in text):
        raise ValueError(f"{echo(text)} is not a schedule{odd_character(text)}: write it in ASCII letters, digits, spaces and */,-(); {CRON_HINT}")
    text = text.strip(" ")
    match = _RATE.fullmatch(text)
    if match:
        value, unit = int(match.group(1)), match.group(2)
        if value < 1:
            raise ValueError("a rate must be at least 1")
        unit = unit if unit.endswith("s") else unit + "s"
        if value != 1 and unit[:-1] == match.group(2):
            raise ValueError(f"write rate({value} {unit}) with a plural unit")
        if value == 1 and match.group(2).endswith("s"):
            raise ValueError(f"write rate(1 {unit[:-1]}) with a singular unit")
        return Rate(value, unit)
    if text.startswith("rate"):
        raise ValueError(f"{echo(text)} is not a valid rate; write rate(5 minutes), rate(1 hour) or rate(2 days)")
    if text.startswith("cron("):
        raise ValueError("write the five cron fields without the AWS-style 'cron(...)' wrapper, e.g. '0 * * * *'")
    fields = text.split(" ")
    fields = [f for f in fields if f]
    if len(fields) != 5:
        raise ValueError(f"{echo(text)} has {len(fields)} fields; a cron expression has exactly 5")
    for expr, (name, low, high, names) in zip(fields, _FIELDS, strict=True):
        if expr == "?":
            raise ValueError("'?' is AWS-only; use '*' in a day field")
        if not _CRON_FIELD.fullmatch(expr):
            raise ValueError(f"{echo(expr)} is not a valid {name} field; {CRON_HINT}")
        _expand(expr, low, high, names, name)
    never = _never_fires(fields)
    if never:
        raise ValueError(f"{never}; pick days every chosen month has (1-28 always exist), or add a month that has them")
    return Cron(*fields)


TIMEZONE_HINT = "an IANA time zone name such as UTC, Europe/Paris or America/New_York"


def check_timezone(name: str) -> str:
    """An IANA time zone a schedule's cron is read in. Checked against the tz database this machine has
    (the clouds take the same names: EventBridge Scheduler and Cloud Scheduler both use IANA names)."""
    import difflib
    import zoneinfo

    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}", name) or len(name) > 64:
        raise ValueError(f"{echo(name)} is not a time zone name{odd_character(name)}; use {TIMEZONE_HINT}")
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(name, sorted(zoneinfo.available_timezones()), n=3)
        suggestion = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"{echo(name)} is not a known time zone{suggestion} (use {TIMEZONE_HINT})") from None
    return name
