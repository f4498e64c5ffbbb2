"""Model assets: TransE concept pretraining, then SemanticGNN trained over the HASP shards."""

import subprocess
from dataclasses import asdict
from pathlib import Path

import dagster as dg
from pyspark.sql import DataFrame

from resources.measure import Measure
from resources.plots import curves, png_markdown
from resources.spark_lake import env
from training.baselines import EASE_MAX_ENTITIES, ease_fits
from training.checkpoint import ModelSet
from training.device import pick_device
from training.kg_arrays import kg_arrays, kg_from_frames
from training.model_set import VariantRun, train_model_set, validate_model_set
from training.shard_store import open_shards
from training.split import EvaluationSplit, training_view
from training.trainer import TrainParams
from training.transe import TransEParams, TransEResult, load_transe, train_transe
from training.variants import EncoderShape, Variant

GROUP = "model"


class TransEConfig(dg.Config):
    dim: int = 64
    margin: float = 1.0
    epochs: int = int(env("TRANSE_EPOCHS", "100"))
    batch_size: int = 1024
    lr: float = 0.01
    holdout: float = 0.1
    seed: int = 0
    # a time budget (0: none) and an optional early stop on a flat loss (0: off). Stopping
    # when the loss fell under 1% in 5 epochs (34 epochs, a third of the time) cut the demo's
    # strict cold start from 0.358 to 0.229 MAP@10, so by default every epoch runs
    max_seconds: float = float(env("TRANSE_MAX_SECONDS", "300"))
    min_improvement: float = 0.0
    patience: int = 5


class TrainConfig(dg.Config):
    """``world_size`` > 1 trains data-parallel in that many processes (gloo on CPU)."""

    dim: int = 64
    layers: int = 2
    heads: int = 1
    epochs: int = int(env("TRAIN_EPOCHS", "30"))
    lr: float = 0.01
    weight_decay: float = 0.0
    objective: str = "bce"  # or "sampled_softmax" (with the logQ correction)
    negatives: int = 1
    softmax_negatives: int = 128
    temperature: float = 0.1
    popularity_prior: bool = True
    val_share: float = 0.1
    id_dropout: float = 0.3
    pseudo_new_share: float = 0.2
    patience: int = 5
    select_by: str = "map"  # the epoch kept: best validation MAP@10, or "auc"
    id_init: str = "spectral"  # id embeddings start from the SVD of training EELs, or "random"
    walk_rank: int = 512  # the fixed walk factors served beside the GNN's output (0: none)
    batches_per_shard: int = 4  # optimizer steps per shard visit
    global_negatives: int = 0  # bce: graph-wide corrupted pairs per positive (0: off)
    align_weight: float = 1.0  # the cold view's walk factors against the warm ones
    distill_weight: float = 1.0  # listwise distillation toward the two-step walk's top k
    distill_k: int = 10
    world_size: int = int(env("WORLD_SIZE", "1"))
    seed: int = 0
    # variants to train; the first is primary. Kinds: semantic, gcn, gat, sage, each
    # optionally with "_no_pretrain" (random concept features: the KG-pretraining ablation),
    # and "deepwalk" (random walks + skip-gram over the whole graph)
    models: list[str] = ["semantic", "semantic_no_pretrain", "gcn", "gat", "sage", "deepwalk"]


def _revision() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        return "unknown"


@dg.asset(group_name=GROUP, io_manager_key="folder_io_manager")
def concept_pretraining(
    context: dg.AssetExecutionContext, config: TransEConfig, knowledge_graph: dict[str, DataFrame]
) -> dg.Output[TransEResult]:
    """TransE embeddings of concept nodes and relations from the semantic triples."""
    device = pick_device()
    with Measure() as m:
        kg = kg_from_frames(knowledge_graph)
        result = train_transe(
            kg,
            TransEParams(**config.model_dump()),
            device,
            progress=lambda epoch, loss: context.log.info(f"TransE epoch {epoch}: loss {loss:.4f}"),
        )
    plot = curves(
        range(len(result.losses)), {"margin loss": result.losses}, title="TransE", xlabel="epoch"
    )
    return dg.Output(
        result,
        metadata={
            "filtered_mrr": result.mrr,
            "filtered_hits_at_10": result.hits_at_10,
            "epochs": len(result.losses),
            "stopped": result.stopped,
            "relations": result.relations,
            "device": str(device),
            "loss_curve": png_markdown(plot, "TransE loss"),
            **m.metadata("compute"),
        },
    )


@dg.asset(group_name=GROUP, io_manager_key="folder_io_manager")
def gnn_checkpoint(
    context: dg.AssetExecutionContext,
    config: TrainConfig,
    hasp_shards: Path,
    concept_pretraining: Path,
    knowledge_graph: dict[str, DataFrame],
    evaluation_split: DataFrame,
) -> dg.Output[ModelSet]:
    """The configured variants, encoders trained by EEL link prediction over the HASP shards.

    The first variant is the primary one (the one later stages embed and serve).
    """
    variants = [Variant.parse(name) for name in config.models]
    shard_set = open_shards(hasp_shards)
    shards = [shard_set.load(k) for k in range(len(shard_set))]
    transe = load_transe(concept_pretraining)
    id_map = knowledge_graph["nodes"].toArrow()
    split = EvaluationSplit.from_arrow(evaluation_split.toArrow())
    # baselines (ItemCF, DeepWalk's walks) see what the encoders see: no test EELs
    kg = training_view(kg_arrays(id_map, knowledge_graph["edges"].toArrow()), split)
    shape = EncoderShape(
        config.dim, config.layers, config.heads, config.popularity_prior, config.walk_rank
    )
    params = TrainParams(
        **config.model_dump(exclude={*EncoderShape.__dataclass_fields__, "world_size", "models"}),
        shards_per_step=config.world_size,
    )
    device = pick_device()
    lineage = {
        "revision": _revision(),
        "hasp_shards": str(hasp_shards),
        "concept_pretraining": str(concept_pretraining),
        "device": str(device),
        "world_size": config.world_size,
    }
    with Measure() as total:
        run = train_model_set(
            variants, shards, transe, kg, id_map, shape, params, device, config.world_size,
            lineage, Measure, context.log.info,
        )  # fmt: skip
    models = run.models
    aucs = {r.name: r.val_auc for r in run.runs if r.best_val_auc is not None}
    longest = max(len(v) for v in aucs.values())
    plot = curves(
        range(longest),
        {name: v + [float("nan")] * (longest - len(v)) for name, v in aucs.items()},
        title="validation AUC",
        xlabel="epoch",
    )
    table = [
        "| model | best val AUC | best epoch | epochs | seconds | peak RSS MiB | learned prior w |",
        "|---|---|---|---|---|---|---|",
        *(_summary_row(r) for r in run.runs),
    ]
    primary = models.primary_checkpoint.result
    if not ease_fits(kg.num_entities):
        context.log.info(
            f"EASE left out: {kg.num_entities} entities, above its dense limit {EASE_MAX_ENTITIES}"
        )
    context.log.info("Ranking every model and baseline on the validation EELs")
    validated = validate_model_set(models, shards, kg)
    validation = ["| model | validation MAP@10 | tuned weights |", "|---|---|---|"]
    validation += [f"| {r.name} | {r.map_at_k:.4f} | {r.weights or ''} |" for r in validated.rows]
    context.log.info("\n".join(validation))
    return dg.Output(
        models,
        metadata={
            "primary": models.primary,
            "best_val_auc": primary.best_val_auc,
            "comparison": dg.MetadataValue.md("\n".join(table)),
            # learned models and no-learning baselines ranked on the trainer's held-out EELs
            "validation_map_at_10": dg.MetadataValue.md("\n".join(validation)),
            "evaluation_seconds": validated.seconds,
            # per encoder: the popularity prior's weight (learned, then fitted on validation),
            # the degree gate's κ and the GNN residual's scale α, fitted on validation
            "readout_calibration": dg.MetadataValue.json(
                {name: asdict(c) for name, c in validated.calibration.items()}
            ),
            # β_r per relation and layer: how much each relation's attention logits count
            "relation_priors": dg.MetadataValue.json(run.relation_priors),
            "n_shards": len(shards),
            "device": str(device),
            "shard_peak_mb": dg.MetadataValue.json(
                {k: v / 2**20 for k, v in primary.shard_peak_bytes.items()}
            ),
            "estimated_shard_mb": dg.MetadataValue.json(
                [s["estimated_bytes"] / 2**20 for s in shard_set.manifest["shards"]]
            ),
            "validation_auc": png_markdown(plot, "validation AUC per model"),
            **total.metadata("train"),
        },
    )


def _summary_row(r: VariantRun) -> str:
    if r.best_val_auc is None:  # an embedding table: no validation curve, no prior
        return f"| {r.name} | – | – | – | {r.seconds:.1f} | {r.peak_rss_mb:.0f} | – |"
    return (
        f"| {r.name} | {r.best_val_auc:.4f} | {r.best_epoch} | {r.epochs} | {r.seconds:.1f} "
        f"| {r.peak_rss_mb:.0f} | {r.learned_prior:.3f} |"
    )
