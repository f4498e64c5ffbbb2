"""Model assets: TransE concept pretraining, then SemanticGNN trained over the HASP shards."""

import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import dagster as dg
import pyarrow as pa
from pydantic import Field

from resources.markdown import markdown_table
from resources.measure import Measure
from resources.metadata import rounded
from resources.plots import curves, png_markdown
from resources.progress import Bars
from settings import config_field
from training.baselines import EASE_MAX_ENTITIES, ease_fits
from training.checkpoint import ModelSet
from training.device import pick_device
from training.kg_arrays import kg_arrays
from training.model_set import VariantRun, train_model_set, validate_model_set
from training.shard_store import open_shards
from training.split import EvaluationSplit, training_view
from training.trainer import TrainParams
from training.transe import TransEParams, TransEResult, load_transe, train_transe
from training.variants import EncoderShape, Variant
from training.walk_rank import AUTO, WALK_RANKS

GROUP = "model"


class TransEConfig(dg.Config):
    dim: int = Field(64, description="Concept embedding size.")
    margin: float = Field(1.0, description="Margin of TransE's ranking loss.")
    epochs: int = config_field("transe_epochs")
    batch_size: int = Field(1024, description="Triples per optimizer step (at least).")
    max_steps_per_epoch: int = Field(
        64,
        ge=1,
        description="Most optimizer steps per epoch: a larger graph takes larger batches "
        "(each step updates every node's row, so more steps would grow as triples × nodes).",
    )
    lr: float = Field(0.01, description="Adam learning rate.")
    holdout: float = Field(0.1, description="Share of triples held out for MRR and Hits@10.")
    ranked_triples: int = Field(
        2000, description="Held-out triples ranked for MRR and Hits@10 (a seeded sample)."
    )
    seed: int = Field(0, description="Seed of the holdout, negatives and initialization.")
    max_seconds: float = config_field("transe_max_seconds")
    # Stopping when the loss fell under 1% in 5 epochs (34 epochs, a third of the time) cut
    # the demo's strict cold start from 0.358 to 0.229 MAP@10, so by default every epoch runs
    min_improvement: float = Field(
        0.0,
        description="Stop when the loss falls less than this share in `patience` epochs "
        "(0: never stop early).",
    )
    patience: int = Field(5, description="Epochs the early stop looks back.")


class TrainConfig(dg.Config):
    """``world_size`` > 1 trains data-parallel in that many processes (gloo on CPU)."""

    dim: int = Field(64, description="Embedding size.")
    layers: int = Field(2, description="Message-passing layers.")
    heads: int = Field(1, description="Attention heads per layer.")
    epochs: int = config_field("train_epochs")
    max_seconds: float = config_field("train_max_seconds")
    lr: float = Field(0.01, description="Adam learning rate.")
    weight_decay: float = Field(0.0, description="Adam weight decay.")
    objective: Literal["bce", "sampled_softmax"] = Field(
        "bce",
        description="`bce` (EELs against corrupted pairs) or `sampled_softmax` (shared "
        "sampled candidates with the logQ correction).",
    )
    negatives: int = Field(1, description="bce: corrupted pairs per positive EEL.")
    softmax_negatives: int = Field(
        128, description="sampled_softmax: shared sampled candidates per step."
    )
    temperature: float = Field(0.1, description="sampled_softmax: logit temperature.")
    popularity_prior: bool = Field(
        True, description="Add the calibrated popularity prior to served scores."
    )
    val_share: float = Field(0.1, description="Share of training EELs held out for validation.")
    id_dropout: float = Field(
        0.3,
        description="Share of entities whose id embedding is dropped per step, so that "
        "the model learns to embed from concepts (cold start).",
    )
    pseudo_new_share: float = Field(
        0.2, description="Share of entities trained as if new: without id or EELs."
    )
    patience_steps: int = Field(
        40,
        description="Optimizer steps without a better validation score to stop, in whole "
        "epochs (at least one).",
    )
    select_by: Literal["map", "auc"] = Field(
        "map", description="The epoch kept: best validation MAP@10, or AUC."
    )
    id_init: Literal["spectral", "random"] = Field(
        "spectral", description="Id embeddings start from the SVD of training EELs, or random."
    )
    walk_rank: int = Field(
        AUTO,
        description="Rank of the fixed walk factors served beside the GNN's output (0: none; "
        f"{AUTO}: chosen up the ladder {list(WALK_RANKS)}, the smallest within 1% of the best "
        "on validation; it stops where a step up gains less).",
    )
    batches_per_shard: int = Field(4, description="Optimizer steps per shard visit.")
    global_negatives: int = Field(
        0, description="bce: graph-wide corrupted pairs per positive (0: off)."
    )
    align_weight: float = Field(
        1.0, description="Weight of aligning the cold view's walk factors to the warm ones."
    )
    distill_weight: float = Field(
        1.0, description="Weight of listwise distillation toward the two-step walk's top k."
    )
    distill_k: int = Field(10, description="The walk teacher's neighbours per entity.")
    clip_norm: float = Field(
        10.0, ge=0, description="The gradient's largest L2 norm per step (0: unclipped)."
    )
    world_size: int = config_field("world_size")
    seed: int = Field(0, description="Seed of sampling and initialization.")
    models: list[str] = Field(
        ["semantic", "semantic_no_pretrain", "gcn", "gat", "sage", "deepwalk"],
        description="Variants to train; the first is served. Kinds: semantic, gcn, gat, "
        "sage, each optionally with `_domain_eels` (co-engagement links typed by their "
        "items' domains: one relation within each domain, one across; for cross-domain "
        "graphs) and then `_no_pretrain` (random concept features: the KG-pretraining "
        "ablation), and deepwalk (random walks and skip-gram).",
    )


def _revision() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        return "unknown"


@dg.asset(group_name=GROUP, io_manager_key="folder_io_manager")
def concept_pretraining(
    context: dg.AssetExecutionContext, config: TransEConfig, knowledge_graph: dict[str, pa.Table]
) -> dg.Output[TransEResult]:
    """TransE embeddings of concept nodes and relations from the semantic triples."""
    device = pick_device()
    with Measure() as m:
        kg = kg_arrays(knowledge_graph["nodes"], knowledge_graph["edges"])
        with Bars(context.log) as bars:
            report = bars.new("TransE", config.epochs)
            result = train_transe(
                kg,
                TransEParams(**config.model_dump()),
                device,
                progress=lambda epoch, loss: report(epoch, f"loss {loss:.4f}"),
            )
    plot = curves(
        range(len(result.losses)), {"margin loss": result.losses}, title="TransE", xlabel="epoch"
    )
    return dg.Output(
        result,
        metadata=rounded(
            {
                "filtered_mrr": result.mrr,
                "filtered_hits_at_10": result.hits_at_10,
                "epochs": len(result.losses),
                "stopped": result.stopped,
                "relations": result.relations,
                "device": str(device),
                "plot_loss": png_markdown(plot, "TransE loss"),
                **m.metadata("compute"),
            }
        ),
    )


@dg.asset(group_name=GROUP, io_manager_key="folder_io_manager")
def gnn_checkpoint(
    context: dg.AssetExecutionContext,
    config: TrainConfig,
    hasp_shards: Path,
    concept_pretraining: Path,
    knowledge_graph: dict[str, pa.Table],
    evaluation_split: pa.Table,
) -> dg.Output[ModelSet]:
    """The configured variants, encoders trained by EEL link prediction over the HASP shards.

    The first variant is the primary one (the one later stages embed and serve).
    """
    variants = [Variant.parse(name) for name in config.models]
    shard_set = open_shards(hasp_shards)
    shards = [shard_set.load(k) for k in range(len(shard_set))]
    transe = load_transe(concept_pretraining)
    id_map = knowledge_graph["nodes"]
    split = EvaluationSplit.from_arrow(evaluation_split)
    # baselines (ItemCF, DeepWalk's walks) see what the encoders see: no test EELs
    kg = training_view(kg_arrays(id_map, knowledge_graph["edges"]), split)
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
    with Measure() as total, Bars(context.log) as bars:
        run = train_model_set(
            variants, shards, transe, kg, id_map, shape, params, device, config.world_size,
            lineage, Measure, context.log.info, lambda name: bars.new(name, config.epochs),
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
    table = markdown_table(
        [
            "model",
            "best val AUC",
            "best epoch",
            "epochs",
            "stopped",
            "seconds",
            "peak RSS MiB",
            "prior w",
        ],
        [_summary_row(r) for r in run.runs],
    )
    primary = models.primary_checkpoint.result
    if not ease_fits(kg.num_entities):
        context.log.info(
            f"EASE left out: {kg.num_entities} entities, above its dense limit {EASE_MAX_ENTITIES}"
        )
    context.log.info("Ranking every model and baseline on the validation EELs")
    validated = validate_model_set(models, shards, kg)
    validation = markdown_table(
        ["model", "validation MAP@10", "tuned weights"],
        [(r.name, f"{r.map_at_k:.4f}", r.weights or "") for r in validated.rows],
    )
    context.log.debug("\n" + validation)  # in the metadata too
    return dg.Output(
        models,
        metadata=rounded(
            {
                "primary": models.primary,
                "best_val_auc": primary.best_val_auc,
                "comparison": dg.MetadataValue.md(table),
                # learned models and no-learning baselines ranked on the trainer's held-out EELs
                "validation_map_at_10": dg.MetadataValue.md(validation),
                "evaluation_seconds": validated.seconds,
                # per encoder: the popularity prior's weight (learned, then fitted on validation),
                # the degree gate's κ, the GNN residual's scale α, new items' prior weight and
                # their concept neighbours' share μ, fitted on validation
                "readout_calibration": dg.MetadataValue.json(
                    {name: asdict(c) for name, c in validated.calibration.items()}
                ),
                # β_r per relation and layer: how much each relation's attention logits count
                "relation_priors": dg.MetadataValue.json(run.relation_priors),
                # the walk factors' rank, and each candidate's validation MAP@10 when chosen
                "walk_rank": models.primary_checkpoint.config.walk_rank,
                "walk_rank_validation_map": dg.MetadataValue.json(
                    {} if run.walk is None else run.walk.validation_map
                ),
                "n_shards": len(shards),
                "device": str(device),
                "shard_peak_mb": dg.MetadataValue.json(
                    {k: v / 2**20 for k, v in primary.shard_peak_bytes.items()}
                ),
                "estimated_shard_mb": dg.MetadataValue.json(
                    [s["estimated_bytes"] / 2**20 for s in shard_set.manifest["shards"]]
                ),
                "plot_validation_auc": png_markdown(plot, "validation AUC per model"),
                **total.metadata("train"),
            }
        ),
    )


def _summary_row(r: VariantRun) -> tuple[object, ...]:
    cost = (f"{r.seconds:.1f}", f"{r.peak_rss_mb:.0f}")
    if r.best_val_auc is None:  # an embedding table: no validation curve, no prior
        return (r.name, "–", "–", "–", "–", *cost, "–")
    return (
        r.name,
        f"{r.best_val_auc:.4f}",
        r.best_epoch,
        r.epochs,
        r.stopped,
        *cost,
        f"{r.learned_prior:.3f}",
    )
