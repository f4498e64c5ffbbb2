"""HASP shards: memory-bounded, semantics-preserving training subgraphs."""

import dagster as dg
from pyspark.sql import DataFrame

from resources.measure import Measure
from resources.spark_lake import env
from training.hasp import HaspParams, MemoryModel, build_hasp
from training.kg_arrays import kg_from_frames
from training.shard_store import HaspShards
from training.split import EvaluationSplit, training_view

GROUP = "shards"


class HaspConfig(dg.Config):
    """The budget is per device; the demo default is small enough to produce several shards."""

    memory_budget_mb: int = int(env("HASP_MEMORY_BUDGET_MB", "64"))
    device_count: int = int(env("DEVICE_COUNT", "1"))
    hidden_dim: int = 64
    layers: int = 2
    heads: int = 1
    sample_caps: dict[str, int] = {}
    seed: int = 0


@dg.asset(group_name=GROUP, io_manager_key="folder_io_manager")
def hasp_shards(
    context: dg.AssetExecutionContext,
    config: HaspConfig,
    knowledge_graph: dict[str, DataFrame],
    evaluation_split: DataFrame,
) -> dg.Output[HaspShards]:
    """METIS partition of the EEL subgraph, EEL-less entities filled in, concepts in every shard.

    Built from the training view of the graph: the evaluation split's test EELs and every
    EEL of its inductive entities are left out, so no model trains on them.
    """
    params = HaspParams(
        memory_budget_bytes=config.memory_budget_mb * 2**20,
        device_count=config.device_count,
        model=MemoryModel(config.hidden_dim, config.layers, config.heads),
        sample_caps=dict(config.sample_caps),
        seed=config.seed,
    )
    with Measure() as m:
        split = EvaluationSplit.from_arrow(evaluation_split.toArrow())
        kg = training_view(kg_from_frames(knowledge_graph), split)
        out = build_hasp(kg, params)
    man = out.manifest
    rows = ["| shard | entities | concept nodes | EEL edges | concept edges | est. MiB |"]
    rows.append("|---|---|---|---|---|---|")
    rows += [
        f"| {k} | {s['entities']} | {s['concept_nodes']} | {s['eel_edges']} | "
        f"{s['concept_edges']} | {s['estimated_bytes'] / 2**20:.1f} |"
        for k, s in enumerate(man["shards"])
    ]
    context.log.info(
        f"{man['n_shards']} shards, cut {man['cut_eel_fraction']:.1%} of EELs "
        f"(random: {man['random_cut_eel_fraction']:.1%})"
    )
    return dg.Output(
        out,
        metadata={
            "n_shards": man["n_shards"],
            "cut_eel_fraction": man["cut_eel_fraction"],
            "random_cut_eel_fraction": man["random_cut_eel_fraction"],
            "memory_budget_mb": config.memory_budget_mb,
            "max_estimated_mb": max(s["estimated_bytes"] for s in man["shards"]) / 2**20,
            "shards": dg.MetadataValue.md("\n".join(rows)),
            **m.metadata("compute"),
        },
    )
