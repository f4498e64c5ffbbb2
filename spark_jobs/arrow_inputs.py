"""Inbox files read in-process into Arrow, as :func:`spark_jobs.readers.read_file` reads
them with Spark, or not at all.

The small-batch path (:mod:`spark_jobs.arrow_batch`) must write the rows Spark would.
Where a file holds something the two readers might parse differently, :class:`NeedsSpark`
hands the whole batch to Spark: a record with more or fewer fields than the header, a
repeated column name, a Parquet folder (Spark numbers rows per part file), a Parquet file
that does not open, or a Parquet column that is not text.
"""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from spark_jobs.csv_lines import BAD_BYTES, LINE, number_lines
from spark_jobs.readers import check_columns, unsupported_suffix


class NeedsSpark(Exception):
    """Input that only the Spark path reads as the lake's tables expect."""


def _csv(path: Path, staging: Path, encoding: str) -> pa.Table:
    copy = number_lines(path, staging / f"{uuid.uuid4().hex[:8]}-{path.name}", encoding)
    with copy.open(encoding="utf-8", newline="") as f:
        names = next(csv.reader(f))
    if len(set(names)) != len(names):
        raise NeedsSpark(f"{path.name} repeats a column name")
    undecoded: list[list[str]] = []  # a line that did not decode: its number and reason only

    def odd_row(row: pacsv.InvalidRow) -> str:
        fields = next(csv.reader([row.text]))
        if row.actual_columns != 2 or not fields[1]:
            raise NeedsSpark(f"{path.name} has a record with {row.actual_columns} fields")
        undecoded.append(fields)
        return "skip"

    try:
        table = pacsv.read_csv(
            copy,
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=odd_row),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                null_values=[""],  # Spark's only null text; quoted "" is null there too
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as error:
        raise NeedsSpark(f"{path.name}: {error}") from None
    if undecoded:
        extra = pa.table(
            {
                LINE: [f[0] for f in undecoded],
                BAD_BYTES: [f[1] for f in undecoded],
                **{c: pa.nulls(len(undecoded), pa.string()) for c in names[2:]},
            }
        )
        table = pa.concat_tables([table, extra.cast(table.schema)])
    return table.set_column(0, LINE, table.column(LINE).cast(pa.int64()))


def _parquet(path: Path) -> pa.Table:
    if path.is_dir():
        raise NeedsSpark(f"{path.name} is a Parquet folder")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:  # Spark's message goes to quarantine
        raise NeedsSpark(f"{path.name}: {error}") from None
    if any(not pa.types.is_string(f.type) for f in table.schema):
        raise NeedsSpark(f"{path.name} has Parquet columns that are not text")
    n = table.num_rows
    return table.append_column(LINE, pa.array(np.arange(1, n + 1), pa.int64())).append_column(
        BAD_BYTES, pa.nulls(n, pa.string())
    )


def read_file(
    path: Path,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    *,
    encoding: str,
    staging: Path,
) -> pa.Table:
    """:func:`spark_jobs.readers.read_file` without Spark: every column as text, plus
    ``_line`` and ``_bad_bytes``; raises the same errors for a missing file, an unknown
    suffix or a missing column, and :class:`NeedsSpark` where it cannot promise Spark's
    reading."""
    if not path.exists():
        raise FileNotFoundError(f"Input file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        table = _csv(path, staging, encoding)
    elif suffix == ".parquet" or path.is_dir():
        table = _parquet(path)
    else:
        raise unsupported_suffix(path)
    check_columns(path, table.column_names, required)
    for col in optional:
        if col not in table.column_names:
            table = table.append_column(col, pa.nulls(table.num_rows, pa.string()))
    return table.select([*required, *optional, LINE, BAD_BYTES])
