"""What a Unix cron field matches: its names (months, days) and every value it expands to. Shared by the NCRONTAB
writer (`ncrontab`) and the time-zone rewriting (`timezones`), each of which reads fields this way."""

from __future__ import annotations

MONTHS = {m: i + 1 for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])}
DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}


def expand(expr: str, low: int, high: int, names: dict[str, int]) -> list[int]:
    """Every value a (validated) Unix cron field matches."""

    def number(token: str) -> int:
        return names[token.upper()] if token.upper() in names else int(token)

    values: set[int] = set()
    for part in expr.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = number(a), number(b)
        else:
            start = number(part)
            end = high if step > 1 else start
        values.update(range(start, end + 1, step))
    return sorted(values)
