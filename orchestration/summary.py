"""``python -m orchestration.summary``: what the lake holds, and where to look next."""

from __future__ import annotations

import os
from pathlib import Path

from deltalake import DeltaTable

from resources.spark_lake import env
from storage.delta_tables import table_rows
from storage.lake_log import LakeLog
from storage.versions import LATEST


def recorded_tables(root: Path) -> list[tuple[str, int, int]]:
    """(table path relative to the lake, recorded version, rows at it) for every table
    the lake's newest record names: what readers see."""
    snapshot = LakeLog(root / "tables").snapshot()
    return [
        (
            f"tables/{name}",
            version,
            table_rows(DeltaTable(str(root / "tables" / name), version=version)),
        )
        for name, version in sorted(snapshot.tables.items())
    ]


def main() -> None:
    root = Path(env("LAKE_ROOT", "lake")).resolve()
    print(f"\nLake: {root}")
    print(f"{'table':<40} {'version':>7} {'rows':>12}")
    for name, version, rows in recorded_tables(root):
        print(f"{name:<40} {version:>7} {rows:>12,}")
    artifacts = sorted(root.glob(f"*/{LATEST}"))
    if artifacts:
        print(f"\n{'artifact':<40} latest folder")
        for pointer in artifacts:
            print(f"{pointer.parent.name:<40} {pointer.parent / pointer.read_text().strip()}")
    home = os.getenv("DAGSTER_HOME", "(a temporary folder)")
    print(f"\nDagster runs and asset metadata: {home}")
    print("Open the UI:  make ui   (then http://127.0.0.1:3000, Assets -> View lineage)")
    if (root / "ann_index" / LATEST).exists():
        print("Query it:     make serve (then http://127.0.0.1:8000/v1/items/<item_id>/similar)")


if __name__ == "__main__":
    main()
