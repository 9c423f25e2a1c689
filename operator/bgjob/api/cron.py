"""Cron in the dialect the CronJob controller accepts, checked the same way everywhere.

Kubernetes parses ``CronJob.spec.schedule`` with robfig/cron's ``ParseStandard``:
five fields (minute hour day-of-month month day-of-week) or one of the macros
``@yearly @annually @monthly @weekly @daily @midnight @hourly`` and
``@every <Go duration>``. ``CRON_PATTERN`` is a regular expression that accepts
a subset of that dialect: numbers within each field's bounds, ``*``, ranges,
steps, lists, month and weekday names. It rejects what other cron dialects add
(``L``, ``W``, ``#``, ``H``, ``?``, a seconds or year field), a ``TZ=`` or
``CRON_TZ=`` prefix (the time zone has its own field), and ``@every``: its next
time depends on the CronJob's history, not on the clock, so neither
``nextRunTime`` nor a wake-up could be computed from the spec (five fields say
the same thing). The same expression is a CEL rule at admission and
``re.fullmatch`` in Python, so both give one verdict.

A regular expression cannot see that ``0 0 31 2 *`` never fires or that ``5-3``
is an empty range; ``schedule_problem`` does, for the reconciler to report.
"""

from __future__ import annotations

import functools
import re

# Go's strings.Fields splits on these (ASCII part of unicode.IsSpace).
_WS = r"[ \t\n\v\f\r]"
_STEP = r"(/[1-9][0-9]{0,2})?"
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (value pattern, lowest, highest, names) per field, robfig's bounds.
_FIELDS: list[tuple[str, int, int, tuple[str, ...]]] = [
    (r"[0-5]?[0-9]", 0, 59, ()),
    (r"[01]?[0-9]|2[0-3]", 0, 23, ()),
    (r"0?[1-9]|[12][0-9]|3[01]", 1, 31, ()),
    (r"0?[1-9]|1[0-2]|(?i:" + "|".join(_MONTHS) + ")", 1, 12, _MONTHS),
    (r"0?[0-6]|(?i:" + "|".join(_DAYS) + ")", 0, 6, _DAYS),
]


def _field(value: str) -> str:
    one = rf"(\*|({value})(-({value}))?){_STEP}"
    return rf"{one}(,{one})*"


_MACROS = r"@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
_FIVE = f"{_WS}*" + f"{_WS}+".join(_field(v) for v, _, _, _ in _FIELDS) + f"{_WS}*"
CRON_PATTERN = rf"^({_MACROS}|{_FIVE})$"
_COMPILED = re.compile(CRON_PATTERN)

CRON_MESSAGE = (
    "must be a cron expression the CronJob controller accepts: five fields "
    "(minute hour day-of-month month day-of-week) with numbers, names, *, ranges, "
    "steps and lists, or @yearly, @monthly, @weekly, @daily, @hourly; "
    "no @every (write it as five fields), seconds field, L, W, #, H, ? or TZ= (use timeZone)"
)


def valid_cron(cron: str) -> bool:
    """The admission verdict on a cron expression (the CEL rule's twin)."""
    return _COMPILED.fullmatch(cron) is not None


_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February: leap years


def _number(text: str, names: tuple[str, ...]) -> int:
    lowered = text.lower()
    if lowered in names:
        # Months are numbered from 1, weekdays from 0 (Sunday).
        return names.index(lowered) + (1 if len(names) == 12 else 0)
    return int(text)


def _expand(field: str, low: int, high: int, names: tuple[str, ...]) -> tuple[set[int], bool]:
    """The values a field selects and whether it counts as '*' (robfig's star bit)."""
    values: set[int] = set()
    star = False
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            start, end = low, high
            star = star or step == 1
        else:
            first, dash, last = span.partition("-")
            start = _number(first, names)
            end = _number(last, names) if dash else (high if step_text else start)
            if start > end:
                raise ValueError(f"range {span} ends before it starts")
        values.update(range(start, end + 1, step))
    return values, star


@functools.lru_cache(maxsize=1024)  # pure; every reconcile of a schedule asks
def schedule_problem(cron: str) -> str | None:
    """Why an admitted cron expression can never run, or None when it fires.

    Admission already holds (``valid_cron``); this sees what a regular expression
    cannot: an empty range (``5-3``, which the CronJob controller rejects) or a day
    that never comes (``0 0 31 2 *``, ``0 0 30 2 *``).
    """
    if not valid_cron(cron):
        return CRON_MESSAGE
    if cron.startswith("@"):
        return None
    fields = cron.split()
    try:
        expanded = [
            _expand(text, low, high, names)
            for text, (_, low, high, names) in zip(fields, _FIELDS, strict=True)
        ]
    except ValueError as error:
        return str(error)
    (doms, dom_star), (months, _), (_, dow_star) = expanded[2], expanded[3], expanded[4]
    if not (dom_star or dow_star):
        return None  # day-of-month OR day-of-week: some weekday always comes
    if any(day <= _DAYS_IN_MONTH[month - 1] for month in months for day in doms):
        return None
    return "never fires: no selected month has the selected day of the month"


def schedule_never_fires(cron: str) -> bool:
    """True when an admitted schedule can never start a run (see ``schedule_problem``)."""
    return schedule_problem(cron) is not None
