"""CPU and CUDA side by side: the device benchmarks' results joined into one table.

    python -m bench.devices

The training, inference and ANN benchmarks keep their tables as JSON under
``docs/results/`` (``<name>-cpu.json``, ``<name>-cuda.json``), each written on the machine
that ran it. This joins the rows both devices measured and writes the speed-up of CUDA
over CPU per row. Absolute numbers come from different machines (the CPU column from
wherever the CPU run was made), so the machines are named in the table's header.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.report import DOC, results_path, write_section
from resources.markdown import markdown_table

# (benchmark, table, what is compared, column, higher is better)
MEASURES = [
    ("training", "layers", "layer forward + backward, ms / step", "ms / step", False),
    ("training", "hasp", "SemanticGNN epoch (steps + validation), s", "s / epoch", False),
    (
        "training",
        "hasp",
        "SemanticGNN training steps, s / epoch",
        "training steps s / epoch",
        False,
    ),
    ("inference", "budgets", "full-graph inference, entities / s", "entities / s", True),
    ("ann", "sizes", "exact top-10 search, QPS", "exact QPS (batch)", True),
    ("ann", "sizes", "HNSW (faiss on the CPU cores), QPS", "HNSW QPS (batch)", True),
]


def number(cell: object) -> float:
    return float(str(cell).replace(",", ""))


def joined(doc: Path) -> tuple[list[list[object]], dict[str, dict[str, dict]]]:
    """The rows both devices measured, and each joined benchmark's two run records."""
    rows, records = [], {}
    for bench, table, label, column, higher in MEASURES:
        runs = {}
        for device in ("cpu", "cuda"):
            path = results_path(f"{bench}-{device}", doc)
            if not path.exists():
                break
            record = json.loads(path.read_text())
            records.setdefault(bench, {})[device] = record
            runs[device] = record["tables"][table]
        if len(runs) < 2:
            continue
        at = runs["cpu"]["header"].index(column)
        cuda_rows = {row[0]: row for row in runs["cuda"]["rows"]}
        for row in runs["cpu"]["rows"]:
            if row[0] not in cuda_rows:
                continue
            cpu, cuda = number(row[at]), number(cuda_rows[row[0]][at])
            speedup = cuda / cpu if higher else cpu / cuda
            rows.append([label, row[0], row[at], cuda_rows[row[0]][at], f"{speedup:,.1f}×"])
    return rows, {bench: pair for bench, pair in records.items() if len(pair) == 2}


def run_lines(records: dict[str, dict[str, dict]]) -> str:
    """One line per joined benchmark naming both runs; a pair run on different days is
    flagged, since the code may have changed between them."""
    lines = []
    for bench, pair in records.items():
        cpu, cuda = pair["cpu"], pair["cuda"]
        line = (
            f"- `bench.{bench}`: CPU {cpu['device']}, {cpu['machine']}, {cpu['date']}; "
            f"CUDA {cuda['device']}, {cuda['machine']}, {cuda['date']}"
        )
        if cpu["date"] != cuda["date"]:
            line += " (**runs of different days**: compare the device sections' notes)"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[list[object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    rows, records = joined(args.doc)
    if not rows:
        raise SystemExit("No benchmark has results from both a CPU and a CUDA run yet")
    table = markdown_table(["measure", "case", "CPU", "CUDA", "CUDA speed-up"], rows)
    body = f"""## CPU and CUDA side by side

{run_lines(records)}

Rows are the cases both runs measured, on the same inputs (the same planted graph, the
same clustered vectors); the device sections hold the full tables. The HNSW rows run on
each machine's CPU cores, not on the GPU: they compare the two hosts.

{table}
"""
    write_section("devices", body, args.doc)
    return rows


if __name__ == "__main__":
    main()
