"""Which study the patient means: time expressions resolved against today, and durations for share links.

References come out in the devset's shape: ``"latest"``, ``"earliest"``, ``"previous"``, ``{"date": "YYYY-MM-DD"}``,
``{"date": "YYYY-MM"}`` for a month, ``{"year": YYYY}`` for a year (a season counts as its year, winter as the
year of its January). Relative expressions ("last March", "two years ago", "the summer before last") are resolved
against ``today``; "in March" means the most recent March that is not in the future, "last March" the most recent
March before the current month. A weekday ("last Friday", "vom Montag") is the most recent such day.

Share durations come out in hours. "until Friday" / "bis morgen" / "до пятницы" / "until 5 December" /
"till the end of the week" count whole days from ``today`` (the message has no time of day), so the link
ends on that day at the hour it was made; a date after "until" names no study.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from handlers.understanding.lexicon import KIND_SEP, Lexicon, Match
from handlers.understanding.text import Token

Reference = str | dict[str, Any]

_ORDINAL = re.compile(r"^(\d{1,2})(?:st|nd|rd|th|er|te|ten|o|a|го|е|ое)?$")
_COMPACT_DURATION = re.compile(r"^(\d{1,4})(h|hr|hrs|d|w|wk|std|ч|д)$")
_COMPACT_UNITS = {
    "h": "hour",
    "hr": "hour",
    "hrs": "hour",
    "std": "hour",
    "ч": "hour",
    "d": "day",
    "д": "day",
    "w": "week",
    "wk": "week",
}
_HOURS = {"minute": 1 / 60, "hour": 1, "day": 24, "week": 168, "month": 720, "year": 8760}

_AMBIGUOUS_SEASONS = frozenset({"fall", "falls", "spring", "springs"})

#: The oldest year a medical image can come from (Röntgen, 1895).
FIRST_IMAGING_YEAR = 1895


@dataclass(frozen=True, slots=True)
class TimeRef:
    """A study reference found at tokens ``start`` to ``end``."""

    start: int
    end: int
    value: Reference


@dataclass(frozen=True, slots=True)
class Duration:
    start: int
    end: int
    hours: float


def _month(year: int, month: int) -> dict[str, Any]:
    return {"date": f"{year:04d}-{month:02d}"}


def _shift_month(today: dt.date, months: int) -> tuple[int, int]:
    index = today.year * 12 + (today.month - 1) - months
    return index // 12, index % 12 + 1


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) <= 6 else None


class _Reader:
    """Scans the folded words once, consuming the tokens each expression uses."""

    def __init__(
        self, words: Sequence[str], tokens: Sequence[Token], cleaned: str, today: dt.date, lexicon: Lexicon
    ) -> None:
        self.words = words
        self.tokens = tokens
        self.cleaned = cleaned
        self.today = today
        self.lex = lexicon
        self.n = len(words)
        # The longest time phrase of each kind starting at each word, found in one pass.
        self.found: list[dict[str, Match]] = [{} for _ in words]
        for i in range(self.n):
            for m in lexicon.time_index.at(words, i):
                kind, _, value = m.value.partition(KIND_SEP)
                old = self.found[i].get(kind)
                if old is None or m.length > old.length:
                    self.found[i][kind] = Match(m.start, m.end, value)

    # small helpers -------------------------------------------------------------------------------
    def best(self, kind: str, i: int) -> Match | None:
        """The longest phrase of ``kind`` (months, units, numbers, seasons, or a time word) at word ``i``."""
        return self.found[i].get(kind) if 0 <= i < self.n else None

    word_cue = best

    def number(self, i: int) -> tuple[int, int] | None:
        """A count at word ``i`` (digits or a number word): (value, end)."""
        if i >= self.n:
            return None
        value = _int(self.words[i])
        if value is not None:
            return value, i + 1
        m = self.best("numbers", i)
        return (int(m.value), m.end) if m else None

    def gap(self, i: int) -> str:
        """The characters between token ``i`` and token ``i + 1`` in the cleaned text."""
        return self.cleaned[self.tokens[i].end : self.tokens[i + 1].start]

    def month_at(self, i: int, context: bool) -> Match | None:
        m = self.best("months", i)
        if m is None:
            return None
        word = self.words[i]
        if word in self.lex.ambiguous_months and not context:
            return None
        return m

    def year_at(self, i: int) -> int | None:
        if i < self.n and len(self.words[i]) == 4:
            value = _int(self.words[i])
            after_year_word = i > 0 and "units" in self.found[i - 1]
            if value is not None and (1000 <= value <= 2999 or after_year_word):
                return value
        return None

    def skip(self, i: int, *fillers: str) -> int:
        """Skip little words like "of", "de", "the" between parts of a date."""
        while i < self.n and self.words[i] in fillers:
            i += 1
        return i

    # expressions -----------------------------------------------------------------------------------
    def numeric_date(self, i: int) -> TimeRef | None:
        """2024-03-12, 2024-03, 12.03.2024, 12/03/2024 (day first unless impossible)."""
        w = self.words
        if i + 1 >= self.n or not w[i].isdigit():
            return None
        seps: list[str] = []
        j = i
        while j + 1 < self.n and len(seps) < 2 and w[j + 1].isdigit() and self.gap(j) in ("-", ".", "/"):
            seps.append(self.gap(j))
            j += 1
        parts = [int(x) for x in w[i : j + 1]]
        if len(parts) == 3:
            if len(w[i]) == 4:
                y, m, d = parts
            else:
                d, m, y = parts
                if m > 12 and d <= 12:
                    d, m = m, d
                if y < 100:
                    y += 2000
            try:
                return TimeRef(i, j + 1, {"date": dt.date(y, m, d).isoformat()})
            except ValueError:
                return None
        if len(parts) == 2 and len(w[i]) == 4 and 1 <= parts[1] <= 12:
            return TimeRef(i, j + 1, _month(parts[0], parts[1]))
        if len(parts) == 2 and len(w[j]) == 4 and 1 <= parts[0] <= 12 and seps[0] in ("/", "."):
            return TimeRef(i, j + 1, _month(parts[1], parts[0]))
        return None

    def day_month(self, i: int) -> TimeRef | None:
        """ "12 March 2024", "12. März", "12 de marzo de 2024", "March 12th, 2024", "12 марта"."""
        w = self.words
        day: int | None = None
        month: Match | None = None
        j = i
        om = _ORDINAL.match(w[i])
        if om and 1 <= int(om.group(1)) <= 31:
            k = self.skip(i + 1, "of", "de", "the")
            month = self.month_at(k, context=True) if k < self.n else None
            if month:
                day, j = int(om.group(1)), month.end
        if month is None:
            month = self.month_at(i, context=True)
            if month and month.end < self.n:
                om2 = _ORDINAL.match(w[month.end])
                if om2 and 1 <= int(om2.group(1)) <= 31 and self.year_at(month.end) is None:
                    day, j = int(om2.group(1)), month.end + 1
        if month is None or day is None:
            return None
        k = self.skip(j, "of", "de", "del")
        year = self.year_at(k)
        mon = int(month.value)
        if year is not None:
            j = k + 1
            j = self.skip(j, "года", "goda", "г")
        else:
            year = self.today.year
            try:
                if dt.date(year, mon, day) > self.today:
                    year -= 1
            except ValueError:
                return None
        try:
            return TimeRef(i, j, {"date": dt.date(year, mon, day).isoformat()})
        except ValueError:
            return None

    def month_expr(self, i: int) -> TimeRef | None:
        """ "March 2024", "marzo de 2024", "last March", "this March", "in March", "в марте"."""
        w = self.words
        start = i
        modifier = None
        last = self.word_cue("last", i)
        this = self.word_cue("this", i)
        if last and self.month_at(last.end, context=True):
            modifier, i = "last", last.end
        elif this and self.month_at(this.end, context=True):
            modifier, i = "this", this.end
        context = modifier is not None or (start > 0 and w[start - 1] in self.lex.month_context)
        month = self.month_at(
            i,
            context=context
            or (self.year_at(self.skip(i + 1, "of", "de", "del")) is not None if i + 1 < self.n else False),
        )
        if month is None:
            return None
        mon = int(month.value)
        k = self.skip(month.end, "of", "de", "del")
        year = self.year_at(k)
        end = month.end
        if year is not None and modifier is None:
            end = self.skip(k + 1, "года", "goda", "г")
            return TimeRef(start, end, _month(year, mon))
        y = self.today.year
        if modifier == "this":
            pass
        elif modifier == "last":
            if mon >= self.today.month:
                y -= 1
        elif mon > self.today.month:
            y -= 1
        return TimeRef(start, end, _month(y, mon))

    def ago(self, i: int) -> TimeRef | None:
        """ "two years ago", "a month ago", "vor zwei Jahren", "hace dos años", "два года назад"."""
        lead = self.word_cue("ago_before", i)
        j = lead.end if lead else i
        count = self.number(j)
        if count is None:
            value, k = 1, j  # "vor einem Jahr" has its number; "a year ago" too; bare "year ago" is rare
        else:
            value, k = count
        unit = self.best("units", k)
        if unit is None or unit.value in ("hour", "minute"):
            return None
        end = unit.end
        if lead is None:
            tail = self.word_cue("ago", end)
            if tail is None:
                return None
            end = tail.end
        elif count is None:
            return None
        return TimeRef(i, end, self.resolve_units_ago(unit.value, value))

    def resolve_units_ago(self, unit: str, value: int) -> dict[str, Any]:
        if unit == "year":
            return {"year": self.today.year - value}
        if unit == "month":
            return _month(*_shift_month(self.today, value))
        days = value * (7 if unit == "week" else 1)
        return {"date": (self.today - dt.timedelta(days=days)).isoformat()}

    def relative_unit(self, i: int) -> TimeRef | None:
        """ "last year", "this month", "the year before last", "vorletztes Jahr", "el año pasado", "в прошлом году"."""
        before_last = self.word_cue("before_last", i)
        last = self.word_cue("last", i)
        this = self.word_cue("this", i)
        following = self.word_cue("next", i)
        for cue, back in ((before_last, 2), (last, 1), (this, 0), (following, -1)):
            if cue is None:
                continue
            unit = self.best("units", cue.end)
            if unit is not None and unit.value in ("year", "month", "week"):
                end = unit.end
                if back == 1:  # "the year before last"
                    tail = self.word_cue("before_last", end)
                    if tail:
                        back, end = 2, tail.end
                return TimeRef(i, end, self.resolve_unit(unit.value, back))
        unit = self.best("units", i)
        if unit is not None and unit.value in ("year", "month", "week"):
            tail = self.word_cue("before_last", unit.end)
            after: int | None = 2 if tail else None
            if tail is None:
                tail = self.word_cue("last", unit.end)
                after = 1 if tail else None
            if tail is not None and after is not None and (unit.end == tail.start):
                # "the year before last"; Spanish puts the adjective after: "el año pasado", "el año antepasado"
                if after == 2 or self.words[tail.start] in ("pasado", "pasada"):
                    return TimeRef(i, tail.end, self.resolve_unit(unit.value, after))
        return None

    def resolve_unit(self, unit: str, back: int) -> dict[str, Any]:
        if unit == "year":
            return {"year": self.today.year - back}
        if unit == "month":
            return _month(*_shift_month(self.today, back))
        return {"date": (self.today - dt.timedelta(days=7 * back)).isoformat()}

    def season_expr(self, i: int) -> TimeRef | None:
        """ "last summer", "this winter", "the summer before last", "summer 2023", "прошлым летом"."""
        before_last = self.word_cue("before_last", i)
        last = self.word_cue("last", i)
        this = self.word_cue("this", i)
        back: int | None = None
        j = i
        for cue, b in ((before_last, 2), (last, 1), (this, 0)):
            if cue is not None and self.best("seasons", cue.end):
                back, j = b, cue.end
                break
        count = self.number(i) if back is None else None
        if count is not None and self.best("seasons", count[1]):
            season = self.best("seasons", count[1])
            tail = self.word_cue("ago", season.end) if season else None
            if season is not None and tail is not None:
                first, last_month = self.lex.season_months[season.value]
                return TimeRef(i, tail.end, {"year": self.season_year(first, last_month, count[0])})
        season = self.best("seasons", j)
        if season is None:
            return None
        if (
            back is None
            and self.words[j] in _AMBIGUOUS_SEASONS
            and not ((j > 0 and self.words[j - 1] in self.lex.month_context) or self.year_at(j + 1) is not None)
        ):
            return None  # "a bad fall", "the spring in my step"
        end = season.end
        k = self.skip(end, "of", "de", "del", "in")
        year = self.year_at(k)
        if year is not None and back is None:
            return TimeRef(i, k + 1, {"year": year})
        tail = self.word_cue("before_last", end)
        if tail is not None:
            back, end = 2, tail.end
        elif back is None:
            tail = self.word_cue("last", end)
            if tail is not None and self.words[tail.start] in ("pasado", "pasada"):
                back, end = 1, tail.end
        first, last_month = self.lex.season_months[season.value]
        return TimeRef(i, end, {"year": self.season_year(first, last_month, back)})

    def season_year(self, first: int, last_month: int, back: int | None) -> int:
        """Year of a season: the current one ("this"), the latest ended one ("last"), one before that, or,
        with no modifier, the latest one that has begun."""
        today = self.today
        wraps = first > last_month  # winter: named by the year of its January
        # the year (as named) of the season that contains or most recently began before today
        if wraps:
            began_this_cycle = today.month >= first
            current = today.year + 1 if began_this_cycle else today.year
            in_season = today.month >= first or today.month <= last_month
        else:
            current = today.year if today.month >= first else today.year - 1
            in_season = first <= today.month <= last_month
        if back is None or back == 0:
            return current
        ended = current - 1 if in_season else current
        return ended - (back - 1)

    def day_word(self, i: int) -> TimeRef | None:
        for name, days in (("day_before_yesterday", 2), ("yesterday", 1), ("today", 0)):
            cue = self.word_cue(name, i)
            if cue is not None:
                return TimeRef(i, cue.end, {"date": (self.today - dt.timedelta(days=days)).isoformat()})
        return None

    def weekday_expr(self, i: int) -> TimeRef | None:
        """ "on Monday", "last Friday", "vom letzten Freitag", "el viernes pasado", "в прошлую пятницу": the
        most recent such day (today for a bare weekday said on that day; a week ago with "last"). A weekday
        that ends a share ("until Friday") is a duration, not a study."""
        last = self.word_cue("last", i)
        at = last.end if last is not None else i
        weekday = self.best("weekdays", at)
        if weekday is None or (last is None and len(self.words[at]) < 4):  # "sat", "sun" alone are words
            return None
        if any(_until_day(self, j) is not None for j in range(max(0, i - 3), i)):
            return None
        end = weekday.end
        if last is None and (tail := self.word_cue("last", end)) is not None and self.words[end] in ("pasado",):
            last, end = tail, tail.end  # Spanish puts it after: "el viernes pasado"
        back = (self.today.weekday() - int(weekday.value)) % 7
        if back == 0 and last is not None:
            back = 7
        return TimeRef(i, end, {"date": (self.today - dt.timedelta(days=back)).isoformat()})

    def year_expr(self, i: int) -> TimeRef | None:
        year = self.year_at(i)
        if year is None:
            return None
        end = self.skip(i + 1, "года", "goda", "г", "году")
        return TimeRef(i, end, {"year": year})

    def read(self) -> list[TimeRef]:
        refs: list[TimeRef] = []
        i = 0
        parsers = (
            self.numeric_date,
            self.day_month,
            self.ago,
            self.relative_unit,
            self.season_expr,
            self.month_expr,
            self.day_word,
            self.weekday_expr,
            self.year_expr,
        )
        while i < self.n:
            for parse in parsers:
                try:
                    ref = parse(i)
                except (OverflowError, ValueError):  # arithmetic off the calendar's ends (year 1, 9999)
                    ref = None
                if ref is not None and ref.end > i:
                    refs.append(ref)
                    i = ref.end
                    break
            else:
                i += 1
        return refs


def find_time_refs(
    words: Sequence[str], tokens: Sequence[Token], cleaned: str, today: dt.date, lexicon: Lexicon
) -> list[TimeRef]:
    """Dated study references in the message, in order."""
    return _Reader(words, tokens, cleaned, today, lexicon).read()


def reference_problems(value: Reference, today: dt.date) -> list[str]:
    """``date_in_future`` or ``date_before_imaging`` for a dated reference that cannot match any study."""
    if not isinstance(value, dict):
        return []
    if "year" in value:
        year, key = int(value["year"]), f"{int(value['year']):04d}"
        today_key = f"{today.year:04d}"
    else:
        key = str(value["date"])
        year = int(key[:4])
        today_key = today.isoformat()[: len(key)]
    if key > today_key:
        return ["date_in_future"]
    if year < FIRST_IMAGING_YEAR:
        return ["date_before_imaging"]
    return []


def find_durations(
    words: Sequence[str],
    tokens: Sequence[Token],
    cleaned: str,
    lexicon: Lexicon,
    taken: set[int],
    today: dt.date | None = None,
) -> list[Duration]:
    """Share durations ("for 48 hours", "3 days", "a week", "на сутки", "minus two days", "-2 days", and
    "until Friday" / "bis morgen" / "hasta el viernes" / "до пятницы" counted from ``today``)."""
    reader = _Reader(words, tokens, cleaned, today or dt.date.today(), lexicon)
    found: list[Duration] = []
    i = 0
    n = len(words)
    while i < n:
        if i in taken:
            i += 1
            continue
        until = _until_day(reader, i)
        if until is not None and not any(t in taken for t in range(i, until.end)):
            found.append(until)
            i = until.end
            continue
        compact = _COMPACT_DURATION.match(words[i])
        if compact:
            unit_name = _COMPACT_UNITS[compact.group(2)]
            sign = -1 if _negative_before(reader, i) else 1
            found.append(Duration(i, i + 1, sign * int(compact.group(1)) * _HOURS[unit_name]))
            i += 1
            continue
        minus = reader.word_cue("minus", i)
        j = minus.end if minus else i
        count = reader.number(j)
        value, k = count if count is not None else (1, j)
        unit = reader.best("units", k)
        if (
            unit is not None
            and (count is not None or _duration_lead(words, i, lexicon))
            and not any(t in taken for t in range(i, unit.end))
        ):
            if reader.word_cue("ago", unit.end) is None:
                sign = -1 if (minus is not None or (count is not None and _negative_before(reader, j))) else 1
                found.append(Duration(i, unit.end, sign * value * _HOURS[unit.value]))
                i = unit.end
                continue
        i += 1
    return found


def _until_day(reader: _Reader, i: int) -> Duration | None:
    """"until tomorrow", "till (next) Friday", "bis zum Freitag", "hasta el viernes", "до пятницы" at word ``i``.

    Whole days from today: the link then ends on that day at the hour it was made (the message has no
    time of day). A weekday means the next one to come; said on that very day, the one a week later."""
    until = reader.word_cue("until", i)
    if until is None:
        return None
    j = until.end
    while (filler := reader.word_cue("until_filler", j)) is not None:
        j = filler.end
    if (day := reader.word_cue("day_after_tomorrow", j)) is not None:
        return Duration(i, day.end, 2 * 24)
    today = reader.today
    if (period := reader.word_cue("end_of_week", j)) is not None:
        return Duration(i, period.end, ((6 - today.weekday()) or 7) * 24)  # until Sunday
    if (period := reader.word_cue("end_of_month", j)) is not None:
        last = calendar.monthrange(today.year, today.month)[1]
        return Duration(i, period.end, ((last - today.day) or last) * 24)
    if (day := reader.word_cue("tomorrow", j)) is not None:
        return Duration(i, day.end, 24)
    weekday = reader.best("weekdays", j)
    if weekday is None:
        return None
    days = (int(weekday.value) - reader.today.weekday()) % 7 or 7
    return Duration(i, weekday.end, days * 24)


def until_before(words: Sequence[str], i: int, lexicon: Lexicon) -> int | None:
    """Where an "until" word ("until", "bis (zum)", "hasta el", "до") ends right before word ``i`` (fillers
    such as "the" between), as the start of a share's end; None when there is none."""
    fillers = lexicon.time_words["until_filler"]
    j = i
    while j > 0 and any(m.end == j for k in range(max(0, j - 2), j) for m in fillers.at(words, k)):
        j = min(m.start for k in range(max(0, j - 2), j) for m in fillers.at(words, k) if m.end == j)
    for k in range(max(0, j - 2), j):
        for m in lexicon.time_words["until"].at(words, k):
            if m.end == j:
                return m.start
    return None


def until_date(ref: TimeRef, words: Sequence[str], today: dt.date) -> float | None:
    """Hours from ``today`` to the day a share should end, from a date the patient gave after "until"
    ("until 5 December", "bis zum 5. Dezember", "until next week"). A day without a year is its next
    one to come. None for a month or a year alone (too vague to end a link on)."""
    value = ref.value
    if not isinstance(value, dict) or len(str(value.get("date", ""))) != 10:
        return None
    day = dt.date.fromisoformat(str(value["date"]))
    year_said = any(len(w) == 4 and w.isdigit() for w in words[ref.start : ref.end])
    if not year_said:
        day = day.replace(year=today.year) if (day.month, day.day) != (2, 29) else day
        if day <= today:
            day = day.replace(year=today.year + 1) if (day.month, day.day) != (2, 29) else day
    return (day - today).days * 24.0


def _negative_before(reader: _Reader, i: int) -> bool:
    """A minus sign typed right before the number ("-2 days")."""
    before = reader.cleaned[: reader.tokens[i].start].rstrip(" ")
    return before.endswith("-") and (len(before) == 1 or not before[-2].isalnum())


def _duration_lead(words: Sequence[str], i: int, lexicon: Lexicon) -> bool:
    """A bare unit is a duration only after "for"/"на"/"por" ("for a week" is counted; "на неделю" has no count)."""
    return i > 0 and words[i - 1] in lexicon.duration_prepositions
