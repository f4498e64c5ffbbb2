"""The jobs of :mod:`spark_jobs.incremental` in-process, over Arrow tables and numpy.

A batch of a few thousand interactions costs Spark seconds of fixed overhead per action
and nothing here; the results are the rows the Spark jobs produce (tested side by side):
:func:`read_batch` validates the batch's files, :func:`touched_pairs` and
:func:`recompute_pairs` recompute the co-engagement of the pairs the batch touched
(with :mod:`spark_jobs.user_pairs`' enumeration), :func:`new_nodes` and
:func:`new_edges` extend the graph.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from spark_jobs import arrow_validation as V
from spark_jobs import constants as C
from spark_jobs.arrow_inputs import read_file
from spark_jobs.coengagement import CoengagementParams
from spark_jobs.csv_lines import BAD_BYTES, LINE
from spark_jobs.incremental import EDGE_KEYS, is_items_file, unreadable_row
from spark_jobs.sorted_runs import run_ranks
from spark_jobs.user_pairs import counted, pack, pair_keys, sorted_pairs, unpack

_PAIR_IDS = pa.schema([(C.SRC, pa.string()), (C.DST, pa.string())])


@dataclass(frozen=True)
class ArrowRows:
    """:class:`spark_jobs.incremental.BatchRows` as Arrow tables in the lake's schemas."""

    interactions: pa.Table
    catalog: pa.Table
    concepts: pa.Table
    quarantine: pa.Table


def read_batch(
    files: dict[Path, str],
    known_items: pa.Array,
    schemas: dict[str, pa.Schema],
    *,
    encoding: str,
    staging: Path,
) -> ArrowRows:
    """:func:`spark_jobs.incremental.read_batch` in-process; ``schemas`` are those of
    raw_interactions, item_catalog, item_concepts and quarantine."""
    known = set(known_items.to_pylist())
    interactions: list[dict] = []
    catalog: list[dict] = []
    concepts: list[dict] = []
    bad: list[dict] = []
    read = functools.partial(read_file, encoding=encoding, staging=staging)
    for path, batch_id in sorted(files.items(), key=lambda f: not is_items_file(f[0])):
        checks = {"source": str(path), "batch_id": batch_id}
        try:
            if is_items_file(path):
                raw = read(path, C.CONCEPT_COLUMNS, (C.DOMAIN, C.TITLE))
            else:
                raw = read(path, (C.USER_ID, C.ITEM_ID, C.TS), (C.EVENT, C.WEIGHT))
        except (ValueError, OSError) as error:
            bad.append(_unreadable(path, f"unreadable file: {error}", batch_id))
            continue
        if raw.num_rows == 0:
            bad.append(_unreadable(path, "no data rows in file", batch_id))
        elif is_items_file(path):
            decoded = raw.filter(pc.is_null(raw.column(BAD_BYTES)))
            items = V.check_catalog(decoded.select([C.ITEM_ID, C.DOMAIN, C.TITLE, LINE]), **checks)
            fresh = [{**r, C.FIRST_SEEN: None} for r in items.good if r[C.ITEM_ID] not in known]
            known |= {r[C.ITEM_ID] for r in fresh}
            triples = V.check_concepts(
                raw.select([*C.CONCEPT_COLUMNS, LINE, BAD_BYTES]), known, **checks
            )
            catalog += fresh
            concepts += triples.good
            bad += items.bad + triples.bad
        else:
            weight = pc.coalesce(raw.column(C.WEIGHT), pa.scalar("1.0"))
            raw = raw.set_column(raw.schema.get_field_index(C.WEIGHT), C.WEIGHT, weight)
            checked = V.check_interactions(raw, known, **checks)
            interactions += checked.good
            bad += checked.bad
    now = datetime.now(UTC)
    bad = [{**b, C.QUARANTINED_AT: now} for b in bad]
    return ArrowRows(
        *(
            pa.Table.from_pylist(rows, schema=schemas[name])
            for rows, name in (
                (interactions, "raw_interactions"),
                (catalog, "item_catalog"),
                (concepts, "item_concepts"),
                (bad, "quarantine"),
            )
        )
    )


def _unreadable(path: Path, reason: str, batch_id: str) -> dict:
    columns = (C.SOURCE, C.LINE, C.ROW, C.REASON, C.BATCH_ID)
    return dict(zip(columns, unreadable_row(path, reason, batch_id), strict=True))


def _codes(values: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values in sorted (Spark's binary) order and each row's index into them."""
    uniques, codes = np.unique(np.asarray(values.to_pylist(), dtype=object), return_inverse=True)
    return uniques, codes.astype(np.int64)


def _window(params: CoengagementParams) -> int | None:
    return None if params.window_days is None else int(params.window_days * 86_400)


def user_items(interactions: pa.Table, params: CoengagementParams) -> pa.Table:
    """:func:`spark_jobs.coengagement.user_items`: per (user, item) the latest engagement,
    each user's ``max_items_per_user`` most recent items, ``_t`` in whole seconds."""
    weight = interactions.column(C.WEIGHT)
    engaged = interactions.filter(pc.greater_equal(weight, params.min_weight))
    latest = engaged.group_by([C.USER_ID, C.ITEM_ID]).aggregate([(C.TS, "max")])
    ranked = latest.sort_by(
        [(C.USER_ID, "ascending"), (f"{C.TS}_max", "descending"), (C.ITEM_ID, "ascending")]
    )
    users = ranked.column(C.USER_ID).to_numpy(zero_copy_only=False)
    micros = ranked.column(f"{C.TS}_max").cast(pa.int64()).to_numpy(zero_copy_only=False)
    kept = run_ranks(users) < params.max_items_per_user
    return pa.table(
        {
            C.USER_ID: ranked.column(C.USER_ID).filter(pa.array(kept)),
            C.ITEM_ID: ranked.column(C.ITEM_ID).filter(pa.array(kept)),
            "_t": micros[kept] // 1_000_000,  # Spark's cast to long floors
        }
    )


def touched_pairs(batch: pa.Table, interactions: pa.Table, params: CoengagementParams) -> pa.Table:
    """:func:`spark_jobs.incremental.touched_pairs`: ``src < dst`` item pairs within the
    window among the batch users' items, with at least one of the batch's (user, item)."""
    users = pc.unique(batch.column(C.USER_ID))
    mine = user_items(interactions.filter(pc.is_in(interactions.column(C.USER_ID), users)), params)
    key = pc.binary_join_element_wise(mine.column(C.USER_ID), mine.column(C.ITEM_ID), "\x1f")
    fresh = pc.binary_join_element_wise(batch.column(C.USER_ID), batch.column(C.ITEM_ID), "\x1f")
    new = pc.is_in(key, fresh).to_numpy(zero_copy_only=False)
    _, owner = _codes(mine.column(C.USER_ID))
    items, code = _codes(mine.column(C.ITEM_ID))
    t = mine.column("_t").to_numpy()
    order = np.lexsort((t, owner))
    owner, t, code, new = owner[order], t[order], code[order], new[order]
    keys = [np.zeros(0, np.int64)]
    for left, right in sorted_pairs(owner, t, _window(params)):
        either = new[left] | new[right]
        keys.append(pack(code[left[either]], code[right[either]]))
    lo, hi = unpack(np.unique(np.concatenate(keys)))
    return pa.table({C.SRC: items[lo], C.DST: items[hi]}, schema=_PAIR_IDS)


def recompute_pairs(
    interactions: pa.Table, pairs: pa.Table, params: CoengagementParams
) -> pa.Table:
    """:func:`spark_jobs.incremental.recompute_pairs`: ``pairs`` with ``support`` and
    ``score`` from every interaction with their items (scores as
    :func:`spark_jobs.coengagement.build_coengagement` computes them)."""
    items = pc.unique(pa.chunked_array([*pairs.column(C.SRC).chunks, *pairs.column(C.DST).chunks]))
    ui = user_items(interactions.filter(pc.is_in(interactions.column(C.ITEM_ID), items)), params)
    _, owner = _codes(ui.column(C.USER_ID))
    ids, code = _codes(ui.column(C.ITEM_ID))
    n = np.bincount(code, minlength=len(ids)).astype(np.int64)
    t = ui.column("_t").to_numpy()
    keys = [np.zeros(0, np.int64), *pair_keys(owner, t, code, _window(params))]
    keys, support = counted(np.concatenate(keys))
    kept = support >= params.min_support
    (lo, hi), s = unpack(keys[kept]), support[kept].astype(np.float64)
    if params.score == "cosine":
        score = s / np.sqrt((n[lo] * n[hi]).astype(np.float64))
    elif params.score == "jaccard":
        score = s / (n[lo] + n[hi] - s)
    else:
        score = np.log(s * len(np.unique(owner)) / (n[lo] * n[hi]))
    positive = score > 0
    found = pa.table(
        {
            C.SRC: pa.array(ids[lo][positive], pa.string()),
            C.DST: pa.array(ids[hi][positive], pa.string()),
            C.SUPPORT: pa.array(support[kept][positive], pa.int64()),
            C.SCORE: pa.array(score[positive], pa.float64()),
        }
    )
    return found.join(pairs, [C.SRC, C.DST], join_type="left semi")


def new_nodes(nodes: pa.Table, catalog: pa.Table, triples: pa.Table) -> pa.Table:
    """:func:`spark_jobs.incremental.new_nodes`: nodes not yet in ``nodes``, numbered
    after each type's last id in key order."""
    wanted = pa.table(
        {
            C.NODE_TYPE: [C.ENTITY] * catalog.num_rows + triples.column(C.RELATION).to_pylist(),
            C.KEY: catalog.column(C.ITEM_ID).to_pylist() + triples.column(C.CONCEPT).to_pylist(),
            C.DOMAIN: catalog.column(C.DOMAIN).to_pylist() + [None] * triples.num_rows,
        },
        schema=pa.schema(
            [(C.NODE_TYPE, pa.string()), (C.KEY, pa.string()), (C.DOMAIN, pa.string())]
        ),
    )
    fresh = (
        wanted.group_by([C.NODE_TYPE, C.KEY])
        .aggregate([(C.DOMAIN, "max")])
        .join(nodes.select([C.NODE_TYPE, C.KEY]), [C.NODE_TYPE, C.KEY], join_type="left anti")
        .sort_by([(C.NODE_TYPE, "ascending"), (C.KEY, "ascending")])
    )
    maxima = nodes.group_by(C.NODE_TYPE).aggregate([(C.NODE_ID, "max")])
    last = dict(
        zip(
            maxima.column(C.NODE_TYPE).to_pylist(),
            maxima.column(f"{C.NODE_ID}_max").to_pylist(),
            strict=True,
        )
    )
    types = fresh.column(C.NODE_TYPE).to_pylist()
    ids, seen = [], {}
    for node_type in types:
        seen[node_type] = seen.get(node_type, last.get(node_type, -1)) + 1
        ids.append(seen[node_type])
    return pa.table(
        {
            C.NODE_ID: pa.array(ids, pa.int64()),
            C.NODE_TYPE: fresh.column(C.NODE_TYPE),
            C.KEY: fresh.column(C.KEY),
            C.DOMAIN: fresh.column(f"{C.DOMAIN}_max"),
        }
    )


def _on_ids(rows: pa.Table, nodes: pa.Table, column: str, node_type: str | None) -> pa.Table:
    """``rows`` with ``column`` (an item id, or with ``node_type`` None a concept whose
    type is the row's relation) replaced by its node id; rows without a node dropped."""
    if node_type is None:
        keyed = nodes.filter(pc.not_equal(nodes.column(C.NODE_TYPE), C.ENTITY)).select(
            [C.NODE_TYPE, C.KEY, C.NODE_ID]
        )
        keyed = keyed.rename_columns([C.RELATION, column, f"{column}_id"])
        on = [C.RELATION, column]
    else:
        keyed = nodes.filter(pc.equal(nodes.column(C.NODE_TYPE), node_type)).select(
            [C.KEY, C.NODE_ID]
        )
        keyed = keyed.rename_columns([column, f"{column}_id"])
        on = [column]
    joined = rows.join(keyed, on, join_type="inner").drop_columns([column])
    return joined.rename_columns(
        [column if c == f"{column}_id" else c for c in joined.column_names]
    )


def new_edges(
    nodes: pa.Table, edges: pa.Table, pairs: pa.Table, triples: pa.Table, min_support: int
) -> pa.Table:
    """:func:`spark_jobs.incremental.new_edges`: EELs of ``pairs`` passing
    ``min_support`` (both directions, weight = score) and the concept edges of
    ``triples``, minus edges already in ``edges``. ``nodes`` include the new nodes."""
    kept = pairs.filter(pc.greater_equal(pairs.column(C.SUPPORT), min_support))
    src, dst, score = (kept.column(c).combine_chunks() for c in (C.SRC, C.DST, C.SCORE))
    both = pa.table(
        {
            C.SRC: pa.concat_arrays([src, dst]),
            C.DST: pa.concat_arrays([dst, src]),
            "weight": pa.concat_arrays([score, score]),
        }
    )
    eel = _on_ids(_on_ids(both, nodes, C.SRC, C.ENTITY), nodes, C.DST, C.ENTITY)
    n = eel.num_rows
    eel_rows = pa.table(
        {
            C.SRC_TYPE: pa.array([C.ENTITY] * n, pa.string()),
            C.SRC: eel.column(C.SRC),
            C.RELATION: pa.array([C.EEL] * n, pa.string()),
            C.DST_TYPE: pa.array([C.ENTITY] * n, pa.string()),
            C.DST: eel.column(C.DST),
            "weight": eel.column("weight"),
        }
    )
    concepts = triples.select([C.ITEM_ID, C.RELATION, C.CONCEPT])
    concepts = _on_ids(_on_ids(concepts, nodes, C.ITEM_ID, C.ENTITY), nodes, C.CONCEPT, None)
    m = concepts.num_rows
    concept_rows = pa.table(
        {
            C.SRC_TYPE: pa.array([C.ENTITY] * m, pa.string()),
            C.SRC: concepts.column(C.ITEM_ID),
            C.RELATION: concepts.column(C.RELATION),
            C.DST_TYPE: concepts.column(C.RELATION),
            C.DST: concepts.column(C.CONCEPT),
            "weight": pa.array([1.0] * m, pa.float64()),
        }
    )
    added = pa.concat_tables([eel_rows, concept_rows.cast(eel_rows.schema)])
    return added.join(edges.select(EDGE_KEYS), EDGE_KEYS, join_type="left anti")
