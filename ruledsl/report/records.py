"""Alert records as data: JSON (one array), JSON Lines and CSV, with the fields of docs/language.md §4.

All three carry the same records in the same order (the engine's: run,
first_step, rule) and write a non-finite `value` as "nan", "inf" or "-inf".
JSON keeps every text exactly (it escapes control characters itself). In CSV a
control character (a newline too) is written as a \\x.. escape, as in the table, so
that each record is one line and no cell drives a terminal; and a text cell that a
spreadsheet would run as a formula starts with `'`.
"""

from __future__ import annotations

import csv
import io
import json

import polars as pl

from ruledsl.alerts import RECORD_FIELDS, json_safe
from ruledsl.report.text import printable


def to_json(records: pl.DataFrame) -> str:
    return json.dumps(plain_records(records), indent=2) + "\n"


def to_jsonl(records: pl.DataFrame) -> str:
    return "".join(json.dumps(r) + "\n" for r in plain_records(records))


def to_csv(records: pl.DataFrame) -> str:
    """A header of the §4 fields, then one row a record; null is an empty cell."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")  # quotes cells holding commas, quotes or newlines
    writer.writerow(RECORD_FIELDS)
    for record in plain_records(records):
        writer.writerow("" if record[f] is None else _cell(record[f]) for f in RECORD_FIELDS)
    return out.getvalue()


# A spreadsheet runs a cell starting with one of these as a formula; run ids come from
# folder names and messages from rule files, so neither is trusted (OWASP's CSV injection).
# (A tab or carriage return, which also start one, is escaped before this check.)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value) -> str:
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back to the same float
    text = printable(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def plain_records(records: pl.DataFrame) -> list[dict]:
    """The records as dicts of JSON values, fields in the order of docs/language.md §4."""
    return [plain_record(row) for row in records.iter_rows(named=True)]


def plain_record(row: dict) -> dict:
    return {k: json_safe(row[k]) for k in RECORD_FIELDS}
