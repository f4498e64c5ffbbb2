"""The in-process small-batch path and the Spark path write the same rows.

One hostile inbox batch (CSV and Parquet, new items and concepts, every kind of bad row,
an empty file and one without a required column) is applied to two copies of the
materialized lake, once in-process and once by Spark; every table must come out the same.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from orchestration.definitions import ASSETS, CHECKS
from storage.lake_log import LakeLog
from storage.layout import LakeLayout
from tests.assets.lakes import assert_same_rows, lake_copy, resources

# columns that say when or by which run, not what
VARYING = {"quarantine": ["ts"], "batch_updates": ["ts", "run_id", "index_version"]}


def hostile_batch(lake: Path) -> None:
    layout = LakeLayout(lake)
    inbox = layout.inbox
    inbox.mkdir(exist_ok=True)
    raw = DeltaTable(str(layout.table("raw_interactions"))).to_pyarrow_table().to_pylist()
    last: dict[str, tuple[str, int]] = {}  # user -> an item and the time of their last row
    for row in raw:
        t = int(row["ts"].timestamp())
        if row["user_id"] not in last or t > last[row["user_id"]][1]:
            last[row["user_id"]] = (row["item_id"], t)
    users = sorted(last)[:60]
    items = sorted({r["item_id"] for r in raw})[:40]
    genre = next(
        r for r in DeltaTable(str(layout.table("item_concepts"))).to_pyarrow_table().to_pylist()
    )
    (inbox / "items-e1.csv").write_bytes(
        (
            "item_id,relation,concept,title,domain\n"
            f"new-a,{genre['relation']},{genre['concept']},Title A,music\n"
            f"new-a,{genre['relation']},Brand New Concept,Title A,music\n"
            f"new-b,{genre['relation']},{genre['concept']},,\n"
            ' new-c ,tag," brand new concept ","A ""quoted"" title",live\n'
            "new-a,tag,other,Another title,music\n"
            "new-f,tag,back\\slash,\\N,\n"
            ",tag,x,No id,\n"
            "new-d,,x,D,\n"
            "new-d,Bad Rel!,x,D,\n"
            "new-d,entity,x,D,\n"
            "new-d,tag,,D,\n"
        ).encode()
        + b"new-e,tag,caf\xe9,E,\n"
    )
    rows = ["user_id,item_id,ts,event,weight"]
    for k, user in enumerate(users):
        item, t = last[user]
        rows.append(f"{user},{items[k % 40]},{t + 60 + k},click,")
        rows.append(f"{user},new-a,{t + 120},view,2.5")
        rows.append(f"{user},{item},{t + 30},,1e0")
    rows += [
        "fresh-user,new-b,2024-01-02 03:04:05,view,1",
        "fresh-user,new-c,2024-01-02T03:04:06.5,view,1",
        "fresh-user,new-a,2024-01-02,like,+2",
        ",new-a,1700000000,view,1",
        "u-x,,1700000000,view,1",
        "u-x,new-a,,view,1",
        "u-x,new-a,soon,view,1",
        "u-x,new-a,1700000000,view,-1",
        "u-x,new-a,1700000000,view,abc",
        "u-x,new-a,1700000000,view,inf",
        "u-x,no-such-item,1700000000,view,1",
        "fresh-user,new-b,2024-01-02 03:04:05,view,1",
        " spaced ,new-b , 1700000001 ,view, 3 ",
    ]
    (inbox / "interactions-e1.csv").write_text("\n".join(rows) + "\n")
    pq.write_table(
        pa.table(
            {
                "user_id": [users[0], users[1], "p-user"],
                "item_id": ["new-a", items[3], "new-b"],
                "ts": [str(last[users[0]][1] + 5), str(last[users[1]][1] + 5), "1700000100"],
                "weight": ["1", None, "0.5"],
            }
        ),
        inbox / "interactions-e2.parquet",
    )
    (inbox / "interactions-e3.csv").write_text("user_id,item_id,ts\n")
    (inbox / "interactions-e4.csv").write_text("user_id,item\nu,i\n")


def apply(lake: Path, small_batch_max_rows: int) -> dg.ExecuteInProcessResult:
    config = {"small_batch_max_rows": small_batch_max_rows}
    return dg.materialize(
        [*ASSETS, *CHECKS],
        selection=["batch_updates"],
        resources=resources(lake),
        run_config=dg.RunConfig(ops={"batch_updates": {"config": config}}),
    )


def recorded_tables(lake: Path) -> dict[str, pa.Table]:
    """Every table as readers see it, with the lake's own folder taken out of file names."""
    snapshot = LakeLog(LakeLayout(lake).tables).snapshot()
    tables = {}
    for name, version in snapshot.tables.items():
        table = DeltaTable(str(LakeLayout(lake).table(name)), version=version).to_pyarrow_table()
        for i, f in enumerate(table.schema):
            if pa.types.is_string(f.type):
                local = pc.replace_substring(table.column(i), str(lake), "<lake>")
                table = table.set_column(i, f.name, local)
        tables[name] = table
    return tables


@pytest.fixture(scope="module")
def lakes(materialized_lake, tmp_path_factory) -> dict[str, Path]:
    base = lake_copy(materialized_lake.lake, tmp_path_factory.mktemp("engines"))
    hostile_batch(base)
    return {
        engine: lake_copy(base, tmp_path_factory.mktemp(engine)) for engine in ("arrow", "spark")
    }


def test_both_engines_write_the_same_rows(lakes, tmp_path, monkeypatch):
    before = recorded_tables(lakes["arrow"])
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    ran = {e: apply(lake, 0 if e == "spark" else 10_000) for e, lake in lakes.items()}
    # neither engine leaves its line-numbered copies of the inbox files behind
    assert not [p.name for p in scratch.iterdir() if p.name.startswith("cograph-")]
    for engine, result in ran.items():
        meta = result.get_asset_materialization_events()[-1].materialization.metadata
        assert meta["applied_by"].value == engine
    arrow, spark = (recorded_tables(lakes[e]) for e in ("arrow", "spark"))
    assert arrow.keys() == spark.keys()
    changed = [n for n in arrow if n not in before or arrow[n].num_rows != before[n].num_rows]
    # the batch reached every table it can change
    assert {
        "raw_interactions",
        "item_catalog",
        "item_concepts",
        "quarantine",
        "coengagement_edges",
        "knowledge_graph/nodes",
        "knowledge_graph/edges",
        "batch_updates",
    } <= set(changed)
    for name in arrow:
        drop = VARYING.get(name, [])
        assert_same_rows(
            name,
            arrow[name].drop_columns(drop).to_pandas(),
            spark[name].drop_columns(drop).to_pandas(),
        )
    reasons = sorted(spark["quarantine"].column("reason").to_pylist())
    assert len(reasons) >= 20 and any(r.startswith("unreadable file") for r in reasons)
    assert "no data rows in file" in reasons and "missing ts" in reasons
