"""Benchmark results as sections of docs/benchmarks.md, one marked section per benchmark."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
from importlib.metadata import version
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEach section is written by its script in `bench/`; rerun it to refresh.\n"


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def stamp(*packages: str) -> str:
    versions = ", ".join(f"{p} {version(p)}" for p in packages)
    return f"_{dt.date.today().isoformat()}, {machine()}; {versions}_"


def results_path(name: str, doc: Path = DOC) -> Path:
    return doc.parent / "results" / f"{name}.json"


Table = tuple[list[str], list[list[object]]]  # header, rows


def write_section(
    name: str,
    body: str,
    doc: Path = DOC,
    tables: dict[str, Table] | None = None,
    device: str = "cpu",
    header: str = HEADER,
) -> None:
    """Replace (or append) the section between ``<!-- name:start -->`` and ``<!-- name:end -->``.

    ``tables``, when given, are also kept as JSON beside the document, for sections that
    compare runs made on different machines (``bench.devices``), with the ``device`` that
    ran them. A new document starts with ``header``."""
    if tables:
        path = results_path(name, doc)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "machine": machine(),
            "device": device,
            "date": dt.date.today().isoformat(),
            "tables": {key: {"header": h, "rows": r} for key, (h, r) in tables.items()},
        }
        path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = doc.read_text() if doc.exists() else header
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else f"{text.rstrip()}\n\n{block}\n"
    )
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
