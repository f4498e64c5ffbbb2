"""``python -m orchestration.summary``: what the lake holds, and where to look next."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
from deltalake import DeltaTable

from serving.artifact import ENTITIES
from settings import current
from storage.delta_tables import table_rows
from storage.lake_log import LakeLog
from storage.layout import LakeLayout
from storage.versions import LATEST, latest


def recorded_tables(layout: LakeLayout) -> list[tuple[str, int, int]]:
    """(table path relative to the lake, recorded version, rows at it) for every table
    the lake's newest record names: what readers see."""
    snapshot = LakeLog(layout.tables).snapshot()
    return [
        (
            str(layout.table(name).relative_to(layout.root)),
            version,
            table_rows(DeltaTable(str(layout.table(name)), version=version)),
        )
        for name, version in sorted(snapshot.tables.items())
    ]


def main() -> None:
    layout = LakeLayout.at(current().lake_root)
    root = layout.root
    print(f"\nLake: {root}")
    print(f"{'table':<40} {'version':>7} {'rows':>12}")
    for name, version, rows in recorded_tables(layout):
        print(f"{name:<40} {version:>7} {rows:>12,}")
    artifacts = sorted(root.glob(f"*/{LATEST}"))
    if artifacts:
        print(f"\n{'artifact':<40} latest folder")
        for pointer in artifacts:
            print(f"{pointer.parent.name:<40} {pointer.parent / pointer.read_text().strip()}")
    home = os.getenv("DAGSTER_HOME", "(a temporary folder)")
    print(f"\nDagster runs and asset metadata: {home}")
    print("Open the UI:  make ui   (then http://127.0.0.1:3000, Assets -> View lineage)")
    if (layout.index / LATEST).exists():
        entities = pq.read_table(latest(layout.index) / ENTITIES, columns=["item_id"])
        item = entities.column("item_id")[0].as_py()
        print("Query it:     make serve, then")
        print(
            f"              curl 'http://127.0.0.1:8000/v1/items/{item}/similar?k=5&explain=true'"
        )
        print("              (API reference: http://127.0.0.1:8000/docs)")


if __name__ == "__main__":
    main()
