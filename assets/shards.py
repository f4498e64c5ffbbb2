"""HASP shards: memory-bounded, semantics-preserving training subgraphs."""

import dagster as dg
import pyarrow as pa
from pydantic import Field

from resources.markdown import markdown_table
from resources.measure import Measure
from resources.metadata import rounded
from settings import config_field
from training.hasp import HaspParams, MemoryModel, build_hasp
from training.kg_arrays import kg_arrays
from training.shard_store import HaspShards
from training.split import EvaluationSplit, training_view

GROUP = "shards"


class HaspConfig(dg.Config):
    """The budget is per device; the demo default is small enough to produce several shards."""

    memory_budget_mb: int = config_field("hasp_memory_budget_mb")
    device_count: int = config_field("device_count")
    hidden_dim: int = Field(64, description="Embedding size the memory estimate assumes.")
    layers: int = Field(2, description="Layers the memory estimate assumes.")
    heads: int = Field(1, description="Attention heads the memory estimate assumes.")
    sample_caps: dict[str, int] = Field(
        {}, description="Concept node types kept as a seeded sample of this many per shard."
    )
    seed: int = Field(0, description="Seed of the partition and the samples.")


@dg.asset(group_name=GROUP, io_manager_key="folder_io_manager")
def hasp_shards(
    context: dg.AssetExecutionContext,
    config: HaspConfig,
    knowledge_graph: dict[str, pa.Table],
    evaluation_split: pa.Table,
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
        split = EvaluationSplit.from_arrow(evaluation_split)
        kg = training_view(kg_arrays(knowledge_graph["nodes"], knowledge_graph["edges"]), split)
        out = build_hasp(kg, params)
    man = out.manifest
    columns = ["entities", "concept_nodes", "eel_edges", "concept_edges"]
    table = markdown_table(
        ["shard", *(c.replace("_", " ").replace("eel", "EEL") for c in columns), "est. MiB"],
        [
            (k, *(s[c] for c in columns), f"{s['estimated_bytes'] / 2**20:.1f}")
            for k, s in enumerate(man["shards"])
        ],
    )
    context.log.info(
        f"{man['n_shards']} shards, cut {man['cut_eel_fraction']:.1%} of EELs "
        f"(random: {man['random_cut_eel_fraction']:.1%})"
    )
    return dg.Output(
        out,
        metadata=rounded(
            {
                "n_shards": man["n_shards"],
                "cut_eel_fraction": man["cut_eel_fraction"],
                "random_cut_eel_fraction": man["random_cut_eel_fraction"],
                "memory_budget_mb": config.memory_budget_mb,
                "max_estimated_mb": max(s["estimated_bytes"] for s in man["shards"]) / 2**20,
                "shards": dg.MetadataValue.md(table),
                **m.metadata("compute"),
            }
        ),
    )
