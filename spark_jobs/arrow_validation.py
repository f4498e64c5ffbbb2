"""The row checks of :mod:`spark_jobs.validation`, in-process over a small batch's rows.

The same rules in the same order, the same reasons and the same quarantined row (the
input's columns as Spark's ``to_json`` writes them: nulls left out). Text is parsed
only where Spark's parsing is known to agree; a weight or timestamp in any other form
raises :class:`~spark_jobs.arrow_inputs.NeedsSpark`, so that the batch goes to Spark.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from spark_jobs import constants as C
from spark_jobs.arrow_inputs import NeedsSpark
from spark_jobs.csv_lines import BAD_BYTES, LINE

Row = dict[str, Any]
# ASCII digits only, as in Java's regular expressions and number parsing
NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
SPECIAL = {"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity", "nan"}
ISO_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?"
)
SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")
NODE_TYPE = re.compile(r"^[a-z][a-z0-9_]*$")
LAST_MICROS = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999


@dataclass(frozen=True)
class CheckedRows:
    good: list[Row]
    bad: list[Row]


def trim(value: str | None) -> str | None:
    """Spark's ``trim``: spaces only."""
    return None if value is None else value.strip(" ")


def blank(value: str | None) -> bool:
    return value is None or trim(value) == ""


def parse_weight(text: str) -> float | None:
    """``cast(text as double)`` where its result is certain: None for text it rejects."""
    stripped = text.strip(" \t\n\r\f\v")  # Spark trims whitespace before the cast
    if NUMBER.fullmatch(stripped) or stripped.lower() in SPECIAL:
        return float(stripped)
    if not any(ch.isdigit() for ch in stripped):
        return None
    raise NeedsSpark(f"weight {text!r} is in a form only Spark parses")


def parse_ts(text: str) -> int | None:
    """:func:`spark_jobs.validation.parse_timestamp` of text, in microseconds (UTC)."""
    text = trim(text) or ""
    if SECONDS.fullmatch(text):
        micros = int(float(text) * 1_000_000)
    elif ISO_TIME.fullmatch(text):
        try:
            when = datetime.fromisoformat(text).replace(tzinfo=UTC)
        except ValueError:  # a date that does not exist
            raise NeedsSpark(f"timestamp {text!r} names no valid time") from None
        micros = int(when.timestamp()) * 1_000_000 + when.microsecond
    elif not any(ch.isdigit() for ch in text):
        return None
    else:
        raise NeedsSpark(f"timestamp {text!r} is in a form only Spark parses")
    if micros > LAST_MICROS:
        raise NeedsSpark(f"timestamp {text!r} is past year 9999")
    return micros


def as_json(row: Row, columns: list[str]) -> str:
    """Spark's ``to_json(struct(columns))``: null fields left out."""
    kept = {c: row[c] for c in columns if row[c] is not None}
    return json.dumps(kept, ensure_ascii=False, separators=(",", ":"))


Rule = tuple[Callable[[Row], bool], Callable[[Row], str]]


def split_rows(
    rows: list[Row], rules: list[Rule], *, source: str, batch_id: str, columns: list[str]
) -> CheckedRows:
    """The first rule that holds names a row's reason; rows no rule holds for are good."""
    rules = [
        (
            lambda r: r[BAD_BYTES] is not None,
            lambda r: f"bytes not valid in the encoding: {r[BAD_BYTES]}",
        ),
        *rules,
    ]
    good, bad = [], []
    for row in rows:
        reason = next((why(row) for holds, why in rules if holds(row)), None)
        if reason is None:
            good.append(row)
            continue
        bad.append(
            {
                C.SOURCE: source,
                C.LINE: row[LINE],
                C.ROW: row[BAD_BYTES] if row[BAD_BYTES] is not None else as_json(row, columns),
                C.REASON: reason,
                C.BATCH_ID: batch_id,
            }
        )
    return CheckedRows(good, bad)


def check_catalog(items: pa.Table, *, source: str, batch_id: str) -> CheckedRows:
    """:func:`spark_jobs.validation.check_catalog` over the decoded rows of an items
    file, after ``read_batch`` keeps each raw id's first row."""
    rows, seen = [], set()
    for row in sorted(items.to_pylist(), key=lambda r: r[LINE]):
        if row[C.ITEM_ID] not in seen:
            seen.add(row[C.ITEM_ID])
            rows.append({**row, C.ITEM_ID: trim(row[C.ITEM_ID]), BAD_BYTES: None})
    order = sorted(rows, key=lambda r: (r[LINE], r[C.TITLE] is not None, r[C.TITLE] or ""))
    first: set[str | None] = set()
    for row in order:
        row["_dup"] = row[C.ITEM_ID] in first
        first.add(row[C.ITEM_ID])
    checked = split_rows(
        rows,
        [
            (lambda r: blank(r[C.ITEM_ID]), lambda r: "missing item_id"),
            (lambda r: r["_dup"], lambda r: "duplicate item_id"),
        ],
        source=source,
        batch_id=batch_id,
        columns=list(C.CATALOG_COLUMNS),
    )
    good = [
        {
            C.ITEM_ID: r[C.ITEM_ID],
            C.DOMAIN: r[C.DOMAIN] if r[C.DOMAIN] is not None else "default",
            C.TITLE: r[C.TITLE] if r[C.TITLE] is not None else r[C.ITEM_ID],
        }
        for r in checked.good
    ]
    return CheckedRows(good, checked.bad)


def _unknown(known: set[str]) -> Rule:
    return (lambda r: r["_item"] not in known, lambda r: f"unknown item_id: {r['_item']}")


def check_interactions(
    raw: pa.Table, known: set[str], *, source: str, batch_id: str
) -> CheckedRows:
    """:func:`spark_jobs.validation.check_interactions`."""
    columns = [c for c in raw.column_names if c not in (LINE, BAD_BYTES)]
    rows = raw.to_pylist()
    first_line: dict[tuple, int] = {}
    for row in sorted(rows, key=lambda r: r[LINE]):
        key = tuple(row[c] for c in columns)
        row["_first_line"] = first_line.setdefault(key, row[LINE])
        row["_repeat"] = row["_first_line"] != row[LINE]
        row["_user"], row["_item"] = trim(row[C.USER_ID]), trim(row[C.ITEM_ID])
        ts = row[C.TS]
        row["_ts"] = None if ts is None else parse_ts(ts)
        row["_w"] = None if row[C.WEIGHT] is None else parse_weight(row[C.WEIGHT])
    checked = split_rows(
        rows,
        [
            (lambda r: blank(r["_user"]), lambda r: "missing user_id"),
            (lambda r: blank(r["_item"]), lambda r: "missing item_id"),
            (lambda r: blank(r[C.TS]), lambda r: "missing ts"),
            (lambda r: r["_ts"] is None, lambda r: f"unparseable ts: {r[C.TS]}"),
            (lambda r: r["_w"] is None or r["_w"] != r["_w"], lambda r: "weight is not a number"),
            (lambda r: r["_w"] == float("inf"), lambda r: "weight is not finite"),
            (lambda r: r["_w"] < 0, lambda r: "negative weight"),
            _unknown(known),
            (lambda r: r["_repeat"], lambda r: f"duplicate row: same as line {r['_first_line']}"),
        ],
        source=source,
        batch_id=batch_id,
        columns=columns,
    )
    good = [
        {
            C.USER_ID: r["_user"],
            C.ITEM_ID: r["_item"],
            C.EVENT: r[C.EVENT] if r[C.EVENT] is not None else "interaction",
            C.WEIGHT: r["_w"],
            C.TS: r["_ts"],
            C.BATCH_ID: batch_id,
        }
        for r in checked.good
    ]
    return CheckedRows(good, checked.bad)


def check_concepts(raw: pa.Table, known: set[str], *, source: str, batch_id: str) -> CheckedRows:
    """:func:`spark_jobs.validation.check_concepts` (good triples distinct)."""
    rows = raw.to_pylist()
    for row in rows:
        row["_item"] = trim(row[C.ITEM_ID])
        row["_rel"] = None if row[C.RELATION] is None else trim(row[C.RELATION]).lower()
        row["_concept"] = None if row[C.CONCEPT] is None else trim(row[C.CONCEPT]).lower()
    checked = split_rows(
        rows,
        [
            (lambda r: blank(r["_item"]), lambda r: "missing item_id"),
            (lambda r: blank(r["_rel"]), lambda r: "missing relation"),
            (lambda r: blank(r["_concept"]), lambda r: "missing concept"),
            (
                lambda r: not NODE_TYPE.search(r["_rel"]) or r["_rel"] == C.ENTITY,
                lambda r: f"relation is not a valid node type name: {r['_rel']}",
            ),
            _unknown(known),
        ],
        source=source,
        batch_id=batch_id,
        columns=list(C.CONCEPT_COLUMNS),
    )
    triples = dict.fromkeys((r["_item"], r["_rel"], r["_concept"]) for r in checked.good)
    good = [dict(zip(C.CONCEPT_COLUMNS, t, strict=True)) for t in triples]
    return CheckedRows(good, checked.bad)
