#!/usr/bin/env python3
"""Writes the expected next fire times of a table of cron expressions, computed by Python's
croniter (the library KAI-Fusion used), for the scheduler's cron tests to compare against.

    python3 -m venv /tmp/cronvenv && /tmp/cronvenv/bin/pip install croniter==7.0.0
    /tmp/cronvenv/bin/python scripts/cron-reference.py > common/tests/fixtures/cron_reference.json

Six-field expressions put seconds first (croniter's second_at_beginning), as KAI-Fusion's UI does.

One documented difference from croniter: when the clock falls back, croniter fires a fixed time
(minute and hour fields not starting with `*`, Vixie cron's definition) in both passes of the
repeated hour. Vixie cron and our README fire it once, in the first pass, so the table drops
croniter's second pass of a fixed time (a fire whose wall-clock time is not later than one before).
"""
import json
import sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from croniter import croniter

EXPRESSIONS = [
    "*/15 * * * *",
    "0 9 * * 1-5",
    "0 0 * * 0",
    "0 0 * * 7",
    "5 4 * * sun",
    "0 12 * * SUN,WED",
    "0 8 * JAN,JUL MON-FRI",
    "0 0 1,15 * MON",
    "0 6 13 * FRI",
    "23 0-20/2 * * *",
    "0 22 * * 1-5",
    "10 2 * * *",
    "30 2 * * *",
    "30 1 * * *",
    "10 2,14 * * *",
    "0 1-3 * * *",
    "0 * * * *",
    "*/30 * * * *",
    "59 23 31 12 *",
    "0 0 29 2 *",
    "0 0 31 * *",
    "5/15 * * * *",
    "@midnight",
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@yearly",
    "0 */5 * * * *",
    "30 0 9 * * MON",
    "*/20 30 2 * * *",
]

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney"]

# Ordinary instants and the hours before both DST transitions in Europe and America (2026).
STARTS = [
    "2026-01-15T10:17:23Z",
    "2026-03-28T22:00:00Z",  # Europe/Berlin the evening before the spring-forward night
    "2026-10-24T22:00:00Z",  # Europe/Berlin the evening before the fall-back night
    "2026-03-08T05:00:00Z",  # America/New_York midnight of the spring-forward day
    "2026-11-01T04:00:00Z",  # America/New_York midnight of the fall-back day
]

COUNT = 6


def parse_utc(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def is_fixed_time(expression):
    fields = expression.split()
    if expression.startswith("@"):
        return expression != "@hourly"
    minute, hour = (fields[1], fields[2]) if len(fields) == 6 else (fields[0], fields[1])
    return not minute.startswith("*") and not hour.startswith("*")


def next_runs(expression, zone, start):
    seconds_first = len(expression.split()) == 6
    local_start = parse_utc(start).astimezone(ZoneInfo(zone))
    it = croniter(expression, local_start, second_at_beginning=seconds_first)
    fixed = is_fixed_time(expression)
    runs = []
    latest_wall = None
    while len(runs) < COUNT:
        run = it.get_next(datetime)
        wall = run.replace(tzinfo=None)
        if fixed and latest_wall is not None and wall <= latest_wall:
            continue  # croniter's second pass of a fixed time; see the module comment
        latest_wall = wall
        runs.append(run.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return runs


def main():
    cases = []
    for expression in EXPRESSIONS:
        for zone in ZONES:
            for start in STARTS:
                runs = next_runs(expression, zone, start)
                cases.append({"expression": expression, "timezone": zone, "after": start, "next": runs})
    json.dump({"generator": "croniter 7.0.0", "cases": cases}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
