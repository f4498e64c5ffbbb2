"""Small materialized lakes for the asset tests: the input, the run, the helpers that
compare table versions, and copies (Delta logs, lake records and pointers are relative)."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from assets.model import TrainConfig, TransEConfig
from assets.raw import IngestConfig, SyntheticConfig
from assets.shards import HaspConfig
from orchestration.definitions import ASSETS, CHECKS, CROSS_DOMAIN, REFRESH, lake_resources
from resources.cross_domain import CrossDomainResource
from resources.spark_lake import LakeResource, SparkResource
from storage.lake_log import LakeLog
from storage.layout import LakeLayout
from tests.conftest import TEST_SPARK

SMALL = SyntheticConfig(n_users=300, n_items=400, n_interactions=8_000, seed=11)


def resources(lake: Path, delta_engine: str = "deltalake", target: str = "") -> dict[str, object]:
    spark = SparkResource(
        master=TEST_SPARK.master,
        driver_memory=TEST_SPARK.driver_memory,
        shuffle_partitions=TEST_SPARK.shuffle_partitions,
        packages=TEST_SPARK.packages,
    )
    out = lake_resources(spark, LakeResource(root=str(lake), delta_engine=delta_engine))
    return {**out, "cross_domain": CrossDomainResource(target=target)}


def run(
    lake: Path,
    ingest: IngestConfig,
    raise_on_error: bool = True,
    instance: dg.DagsterInstance | None = None,
    target: str = "",
) -> dg.ExecuteInProcessResult:
    """A full refresh; with a cross-domain ``target``, the cross-domain refresh."""
    with pytest.MonkeyPatch.context() as mp:
        # two epochs of training are not meant to beat ItemCF: the gate's own test is in
        # tests/training/test_evaluation.py; here it must let the wiring through
        mp.setenv("COGRAPH_GATE_MARGIN", "1.0")
        return dg.materialize(
            [*ASSETS, *CHECKS],
            selection=REFRESH | CROSS_DOMAIN if target else REFRESH,
            resources=resources(lake, target=target),
            run_config=dg.RunConfig(
                ops={
                    "raw_tables": ingest,
                    **training_ops(CROSS_DOMAIN_MODELS if target else MODELS),
                }
            ),
            raise_on_error=raise_on_error,
            instance=instance,
        )


def versions(lake: Path) -> dict[str, int]:
    return {
        str(p.parent.relative_to(lake)): DeltaTable(str(p.parent)).version()
        for p in lake.rglob("_delta_log")
    }


def recorded(lake: Path) -> dict[str, int]:
    """The table versions the lake's newest record makes visible."""
    snapshot = LakeLog(LakeLayout(lake).tables).snapshot()
    return {f"tables/{name}": v for name, v in snapshot.tables.items()}


def table_at(lake: Path, table: str, version: int) -> pd.DataFrame:
    return DeltaTable(str(lake / table), version=version).to_pyarrow_table().to_pandas()


def _is_float(column: pd.Series) -> bool:
    first = column.iloc[0] if len(column) else None
    return pd.api.types.is_float_dtype(column) or (
        isinstance(first, np.ndarray) and first.dtype.kind == "f"
    )


def _hashable(value: object) -> object:
    return tuple(value) if isinstance(value, np.ndarray) else value


def assert_same_rows(table: str, here: pd.DataFrame, there: pd.DataFrame) -> None:
    """The same rows: other columns exactly, float columns to float32 rounding (the engines lay
    rows out in different files, so a sum over a table's rows can differ in its last bit)."""
    assert list(here.columns) == list(there.columns), table
    exact = [c for c in here.columns if not _is_float(here[c])]
    here, there = (
        f.assign(**{c: f[c].map(_hashable) for c in exact})
        .sort_values(exact)
        .reset_index(drop=True)
        for f in (here, there)
    )
    pd.testing.assert_frame_equal(here[exact], there[exact], obj=table)
    for column in set(here.columns) - set(exact):
        a, b = (np.stack(f[column].to_numpy()).astype(np.float64) for f in (here, there))
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"{table}.{column}")


MODELS = ("semantic", "sage", "deepwalk")
CROSS_DOMAIN_MODELS = ("semantic", "semantic_domain_eels", "sage", "deepwalk")


def training_ops(models: tuple[str, ...] = MODELS) -> dict:
    """Shards, pretraining and training small enough for a test."""
    return {
        "hasp_shards": HaspConfig(memory_budget_mb=4),
        "concept_pretraining": TransEConfig(dim=16, epochs=3),
        "gnn_checkpoint": TrainConfig(dim=16, epochs=2, models=list(models)),
    }


def lake_copy(source: Path, folder: Path) -> Path:
    lake = folder / "lake"
    shutil.copytree(source, lake)
    return lake
