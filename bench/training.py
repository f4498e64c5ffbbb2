"""Training benchmarks: layer throughput against PyG layers, HASP shards against full graph.

    python -m bench.training [--lake lake] [--epochs 15] [--shards 4]

The graph is the ``knowledge_graph`` of a materialized lake (``make demo`` first), or,
with ``--synthetic N``, a planted-community graph of N entities (seconds; used by CI).

1. Throughput: one layer of the same width (64, one head) on the whole graph, forward and
   backward, in message edges per second: the relation-aware attention layer, PyG's
   ``GATConv`` (homogeneous, ignores relation types) and ``HGTConv`` (heterogeneous).
2. HASP: SemanticGNN trained over N shards against the same model on the full graph as one
   shard, same epochs: wall time, seconds per epoch and best validation AUC.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyarrow.dataset as ds
import torch
from torch_geometric.nn import GATConv, HGTConv
from tqdm import tqdm

from bench.report import DOC, stamp, write_section
from resources.markdown import markdown_table
from storage.layout import LakeLayout
from training.device import device_name, pick_device
from training.hasp import HaspParams, build_hasp
from training.kg_arrays import EEL, ENTITY, KGArrays, kg_arrays
from training.layers import RelationAttentionConv
from training.model import ModelConfig
from training.shard_graph import ShardGraph, shard_graph
from training.synthetic_kg import community_kg
from training.trainer import TrainParams, train
from training.transe import TransEParams, train_transe

DIM = 64


WHERE_TIME_GOES = """Where the time goes: the layer's attention logits and its weighted
sum of neighbour values are sparse matrix products over the edges in CSR order
(`training.csr`: a sampled dense-dense product for the logits, a sparse-dense product for
the sum, each the other's backward), so no edge-sized tensor of feature rows is built.
Before (2026-11-23 in this table: 1,195 ms a step, 0.42x GATConv's edges/s; 0.60x on a
random graph of the same size on 2026-12-06, just before the change) the layer gathered
(|E|, C) rows of queries and values, multiplied and scattered them, forward and backward:
a torch profile put a third of the step in those multiplies and most of the rest in the
gathers, scatters and index-adds around them. GATConv's additive attention needs no
per-edge dot product, but it still gathers and scatters (|E|, C) rows. The layout (one
sort of the edges by target and source, and its transpose for the backward) is built per
call here and once per forward pass in the model. An epoch is its training steps (a
forward and backward pass per shard, then Adam) and the validation that picks the epoch;
the trainer times the two apart (columns above). The GPU profile found two CUDA-only costs,
both removed: the layer's per-edge relation terms came from gathers whose backward CUDA
runs one table row at a time (1,206 ms a step at 10^6 edges on an H100, 8.7 ms as a
one-hot product), and validation masked known links one query at a time, a host-to-device
copy each. The CUDA section predates the CSR products (no GPU was lent since); cuSPARSE
runs both products. Full-graph inference sizes its edge chunks by what the layer holds
per edge (`EntityEncoder.edge_bytes`: 176 bytes for this layer at ten relations, where the
gathered rows took 2,048), so a memory budget takes about ten times the edges per chunk.
What would move it next: HASP's memory model still counts gathered rows per message edge
(it sizes shards for every encoder kind), so shards could be larger for SemanticGNN."""


def lake_kg(lake: Path) -> KGArrays:
    # imported here: the planted-graph runs need only torch, numpy and pymetis, so they
    # also run on a GPU machine where the Delta reader is not installed
    from deltalake import DeltaTable

    def table(name: str):
        path = LakeLayout(lake).table(f"knowledge_graph/{name}")
        return ds.dataset(DeltaTable(str(path)).file_uris()).to_table()

    return kg_arrays(table("nodes"), table("edges"))


def _time(step, repeats: int, device: torch.device) -> float:
    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def layer_throughput(
    graph: ShardGraph, kg: KGArrays, device: torch.device, repeats: int
) -> list[list[object]]:
    n = graph.num_entities + graph.concept_features.shape[0]
    edges = graph.edge_index.to(device)
    types = graph.edge_type.to(device)
    n_rel = int(types.max()) + 1
    x = torch.randn(n, DIM, device=device, requires_grad=True)
    rel = torch.randn(n_rel, DIM, device=device)
    ours = RelationAttentionConv(DIM, DIM, n_rel).to(device)
    gat = GATConv(DIM, DIM, add_self_loops=False).to(device)

    # the same graph as typed node and edge stores, for HGTConv
    offsets, start = {ENTITY: 0}, graph.num_entities
    for ctype in kg.concept_types:
        offsets[ctype], start = start, start + kg.num_nodes[ctype]
    node_types = [ENTITY, *kg.concept_types]
    edge_dict = {(ENTITY, EEL, ENTITY): edges[:, types == 0]}
    for r, (relation, ctype) in enumerate(sorted(kg.concept_edges), start=1):
        e = edges[:, types == r]
        edge_dict[(ctype, f"rev_{relation}", ENTITY)] = torch.stack([e[0] - offsets[ctype], e[1]])
    hgt = HGTConv(DIM, DIM, (node_types, list(edge_dict)), heads=1).to(device)

    def x_dict() -> dict[str, torch.Tensor]:
        bounds = [*offsets.values(), n]
        return {t: x[bounds[i] : bounds[i + 1]] for i, t in enumerate(node_types)}

    steps = {
        "RelationAttentionConv (ours)": lambda: ours(x, edges, types, rel).sum().backward(),
        "GATConv": lambda: gat(x, edges).sum().backward(),
        "HGTConv": lambda: sum(
            v.sum() for v in hgt(x_dict(), edge_dict).values() if v is not None
        ).backward(),
    }
    seconds = {name: _time(step, repeats, device) for name, step in steps.items()}
    base = seconds["RelationAttentionConv (ours)"]
    return [
        [
            name,
            f"{edges.shape[1]:,}",
            f"{s * 1000:.1f}",
            f"{edges.shape[1] / s:,.0f}",
            f"{s / base:.2f}",
        ]
        for name, s in seconds.items()
    ]


def hasp_vs_full(
    kg: KGArrays, shards: int, epochs: int, device: torch.device
) -> list[list[object]]:
    transe = train_transe(kg, TransEParams(dim=DIM, epochs=20), device)
    relations = [EEL, *transe.relations]
    config = ModelConfig(kg.num_entities, DIM, tuple(relations), dim=DIM)
    params = TrainParams(epochs=epochs, patience_steps=2**31)  # every epoch runs
    rows = []
    for n in (1, shards):
        hasp = build_hasp(kg, HaspParams(memory_budget_bytes=2**40, device_count=n))
        graphs = [
            shard_graph(s, transe.concept_embeddings, relations, 0.1, k)
            for k, s in enumerate(hasp.shards)
        ]
        start = time.perf_counter()
        result = train(graphs, config, params, device)
        seconds = time.perf_counter() - start
        rows.append(
            [
                "full graph" if n == 1 else f"HASP, {n} shards",
                f"{hasp.manifest['cut_eel_fraction']:.3f}",
                f"{seconds:.1f}",
                f"{seconds / len(result.curve):.2f}",
                *(
                    f"{sum(p[key] for p in result.curve) / len(result.curve):.2f}"
                    for key in ("train_seconds", "val_seconds")
                ),
                f"{result.best_val_auc:.4f}",
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> tuple[list[list[object]], list[list[object]]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, default=Path("lake"))
    parser.add_argument("--synthetic", type=int, default=0, help="entities of a planted graph")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    device = pick_device()
    kg = community_kg(n_entities=args.synthetic) if args.synthetic else lake_kg(args.lake)
    source = f"planted graph, {args.synthetic} entities" if args.synthetic else f"lake {args.lake}"
    with tqdm(total=2, desc="training benchmarks") as bar:
        features = {t: torch.randn(kg.num_nodes[t], DIM) for t in kg.concept_types}
        relations = [EEL, *sorted(r for r, _ in kg.concept_edges)]
        full = shard_graph(
            build_hasp(kg, HaspParams(memory_budget_bytes=2**40)).shards[0],
            features,
            relations,
            0.0,
            0,
        )
        throughput = layer_throughput(full, kg, device, args.repeats)
        bar.update()
        hasp = hasp_vs_full(kg, args.shards, args.epochs, device)
        bar.update()
    layer_header = ["layer", "message edges", "ms / step", "edges / s", "time vs ours"]
    hasp_header = ["training", "cut EEL share", "seconds", "s / epoch", "training steps s / epoch"]
    hasp_header += ["validation s / epoch", "best val AUC"]
    tables = {"layers": (layer_header, throughput), "hasp": (hasp_header, hasp)}
    body = "\n\n".join(
        [
            f"## Training ({source}, device {device_name(device)})",
            stamp("torch", "torch-geometric"),
            "### One layer, width 64, forward + backward on the whole graph",
            markdown_table(*tables["layers"]),
            f"### HASP against full-graph training ({args.epochs} epochs, SemanticGNN)",
            markdown_table(*tables["hasp"]),
            WHERE_TIME_GOES,
        ]
    )
    write_section(f"training-{device.type}", body, args.doc, tables, device_name(device))
    return throughput, hasp


if __name__ == "__main__":
    main()
