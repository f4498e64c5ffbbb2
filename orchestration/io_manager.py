"""An IO manager that stores Spark DataFrames as Delta tables in the lake.

An asset returns a DataFrame (one table) or a ``dict`` of DataFrames (a table set,
stored as ``<table>/<name>``). Every table of an output is written first and committed
after, so a failure anywhere leaves all of them at their last good version. Output
metadata per table: path, Delta version, rows, schema and the write's seconds and
peak memory (Spark is lazy: the write is where the stage's work happens).
"""

from pathlib import Path
from typing import Any

import dagster as dg
from pyspark.sql import DataFrame

from orchestration import delta_tables
from orchestration.measure import Measure
from orchestration.resources import LakeResource, SparkResource


def table_metadata(commit: delta_tables.TableCommit, prefix: str = "") -> dict[str, Any]:
    schema = dg.TableSchema(columns=[dg.TableColumn(name, t) for name, t in commit.schema])
    return {
        f"{prefix}path": dg.MetadataValue.path(commit.path),
        f"{prefix}delta_version": commit.version,
        f"{prefix}rows_written": commit.rows_written,
        f"{prefix}rows": commit.table_rows,
        f"{prefix}schema": dg.MetadataValue.table_schema(schema),
        f"{prefix}engine": commit.engine,
    }


class DeltaIOManager(dg.ConfigurableIOManager):
    """Reads and writes assets as Delta tables under ``<lake>/tables/<asset>``."""

    lake: dg.ResourceDependency[LakeResource]
    spark: dg.ResourceDependency[SparkResource]

    def _path(self, key: dg.AssetKey) -> Path:
        return self.lake.path("tables", *key.path)

    def handle_output(
        self, context: dg.OutputContext, obj: DataFrame | dict[str, DataFrame]
    ) -> None:
        path = self._path(context.asset_key)
        meta = context.definition_metadata or {}
        mode = meta.get("write_mode", "overwrite")
        tables = obj if isinstance(obj, dict) else {"": obj}
        use_delta = self.spark.capabilities.delta
        custom = {"dagster_run_id": context.run_id, "asset": context.asset_key.to_user_string()}
        with Measure() as m:
            staged = []
            try:
                for name, df in tables.items():
                    staged.append(
                        delta_tables.stage(
                            df,
                            path / name,
                            use_delta_spark=use_delta,
                            mode=mode,
                            custom_metadata=custom,
                        )
                    )
            except BaseException:
                for s in staged:
                    s.discard()
                raise
            commits = {name: delta_tables.commit(s) for name, s in zip(tables, staged, strict=True)}
        metadata: dict[str, Any] = m.metadata("write")
        for name, commit in commits.items():
            metadata.update(table_metadata(commit, f"{name}/" if name else ""))
        if "" in commits:
            metadata["dagster/row_count"] = commits[""].table_rows
        context.add_output_metadata(metadata)
        context.log.info(
            "Committed "
            + ", ".join(f"{c.path} v{c.version} ({c.rows_written} rows)" for c in commits.values())
        )

    def load_input(self, context: dg.InputContext) -> DataFrame | dict[str, DataFrame]:
        path = self._path(context.asset_key)
        spark, use_delta = self.spark.session, self.spark.capabilities.delta
        if delta_tables.is_table(path):
            return delta_tables.read_table(spark, path, use_delta_spark=use_delta)
        if path.is_dir():
            subtables = sorted(p for p in path.iterdir() if delta_tables.is_table(p))
            if subtables:
                return {
                    p.name: delta_tables.read_table(spark, p, use_delta_spark=use_delta)
                    for p in subtables
                }
        raise FileNotFoundError(
            f"No Delta table for asset {context.asset_key.to_user_string()} at {path}; "
            "materialize it first."
        )
