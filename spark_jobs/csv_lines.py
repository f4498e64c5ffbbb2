"""CSV input with line numbers, and lines that do not decode kept instead of mangled.

Spark's CSV reader replaces bytes that are not valid in the declared encoding with U+FFFD,
silently, so that distinct values can collapse into one; and it cannot say which line a
row came from. :func:`number_lines` streams the file once and writes a UTF-8 copy with
two leading columns: ``_line`` (the line a record starts on, 1-based, the header being
line 1) and ``_bad_bytes`` (for a line that does not decode: the line with its bad bytes
escaped, and nothing else; validation quarantines it with its line number).
"""

from __future__ import annotations

import codecs
from pathlib import Path

LINE = "_line"
BAD_BYTES = "_bad_bytes"


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def number_lines(source: Path, target: Path, encoding: str = "utf-8") -> Path:
    """Write ``target``: ``source`` re-encoded as UTF-8 with ``_line, _bad_bytes`` first.

    A record whose quoted field spans lines keeps the number of its first line; blank
    lines are not records and are skipped.
    """
    codecs.lookup(encoding)  # an unknown encoding fails here, naming itself
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as src, target.open("w", encoding="utf-8", newline="") as out:
        header = src.readline()
        try:
            text = header.decode(encoding).rstrip("\r\n").lstrip("\ufeff")
        except UnicodeDecodeError as error:
            raise ValueError(
                f"Input file {source}: the header (line 1) is not valid {encoding} "
                f"({error.reason} at byte {error.start})"
            ) from None
        out.write(f"{LINE},{BAD_BYTES},{text}\n")
        in_quotes = False  # inside a quoted field that continues on the next line
        for number, raw in enumerate(src, start=2):
            body = raw.rstrip(b"\r\n")
            try:
                line = body.decode(encoding)
            except UnicodeDecodeError as error:
                escaped = body.decode(encoding, errors="backslashreplace")
                if in_quotes:  # inside a record that began earlier: keep it escaped
                    out.write(f"{escaped}\n")
                    continue
                reason = f"{error.reason} at byte {error.start}: {escaped}"
                out.write(f"{number},{_quoted(reason)}\n")
                continue
            if in_quotes:
                out.write(f"{line}\n")  # the newline belongs to the open quoted field
            elif line.strip():
                out.write(f"{number},,{line}\n")
            in_quotes ^= line.count('"') % 2 == 1
    return target
