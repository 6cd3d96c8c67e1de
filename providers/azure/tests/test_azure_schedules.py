"""Schedules with a time zone on Azure, whose Flex timers fire in UTC only (issue 18 item 15)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_azure import ncrontab, timezones
from test_azure_plan import plan_of, settings, write_spec

from pipeline.errors import SpecError
from pipeline.spec.schedule import parse_schedule


@pytest.mark.parametrize(("cron", "zone", "expected"), [
    ("0 6 * * *", "UTC", "0 0 6 * * *"),
    ("0 6 * * *", "Asia/Kolkata", "0 30 0 * * *"),  # UTC+5:30 all year
    ("0 * * * *", "Asia/Kolkata", "0 30 * * * *"),  # every hour on the half hour in UTC
    ("30 2 * * 1-5", "Asia/Tokyo", "0 30 17 * * 0,1,2,3,4"),  # 02:30 Monday-Friday in Tokyo is 17:30 Sunday-Thursday in UTC
    ("0 22 * * 1", "America/Sao_Paulo", "0 0 1 * * 2"),  # UTC-3 (no daylight saving since 2019): Tuesday 01:00 UTC
    ("*/15 * * * *", "Europe/Paris", "0 0,15,30,45 * * * *"),  # daylight saving does not move a quarter-hour schedule
    ("0 9 * * *", "Europe/London", None),  # UTC+0 in winter, UTC+1 in summer: 09:00 or 08:00 UTC
])
def test_schedules_are_rewritten_in_utc_or_refused(cron: str, zone: str, expected: str | None) -> None:
    schedule = parse_schedule(cron)
    if expected is None:
        with pytest.raises(timezones.NotExpressibleError, match="UTC\\+0: '0 9 \\* \\* \\*'; UTC\\+1: '0 8 \\* \\* \\*'"):
            ncrontab.ncrontab(schedule, zone)
    else:
        assert ncrontab.ncrontab(schedule, zone) == expected


def test_rates_fire_at_the_same_instants_in_every_zone() -> None:
    assert ncrontab.ncrontab(parse_schedule("rate(15 minutes)"), "Europe/Paris") == "0 */15 * * * *"


def test_a_day_of_month_cannot_move_to_the_day_before() -> None:
    (field, message, hint) = ncrontab.schedule_problems(parse_schedule("0 0 1 * *"), "Asia/Tokyo")[0]
    assert field == "timezone" and "another day of the month" in message and "UTC" in hint


ZONED = """
    name: zoned
    uploads: {}
    stages:
      - {name: ingest, handler: "h.py:handle", trigger: {objects: {from: uploads}}}
      - {name: morning, handler: "h.py:handle", trigger: {schedule: "0 6 * * 1-5", timezone: ZONE, from: ingest}, timeout_s: 600}
    workload:
      uploads: {files_per_hour: 1, records_per_file: 1000}
      stages: {morning: {ms_per_record: 0.01}}
"""


def test_the_timer_gets_the_utc_form(tmp_path: Path) -> None:
    p = plan_of(write_spec(tmp_path, ZONED.replace("ZONE", "Asia/Kolkata")))
    app = settings(p.one("azure-native:web:WebApp", "morning-function"))
    assert app["PIPELINE_SCHEDULE"] == "0 30 0 * * 1,2,3,4,5" and app["PIPELINE_SCHEDULE_SOURCE"] == "0 6 * * 1-5"


def test_a_zone_with_daylight_saving_is_refused_with_the_field_and_both_utc_forms(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        plan_of(write_spec(tmp_path, ZONED.replace("ZONE", "Europe/Paris")))
    text = str(err.value)
    assert "stages[1].trigger.timezone" in text and "fire in UTC on Flex Consumption" in text
    assert "UTC+1: '0 5 * * 1-5'; UTC+2: '0 4 * * 1-5'" in text and "leave out 'timezone'" in text
