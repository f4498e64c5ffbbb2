"""Model assets: TransE concept pretraining, then SemanticGNN trained over the HASP shards."""

import subprocess
from pathlib import Path

import dagster as dg
from pyspark.sql import DataFrame

from orchestration.measure import Measure
from orchestration.plots import curves, png_markdown
from orchestration.resources import env
from training.checkpoint import Checkpoint
from training.device import pick_device
from training.distributed import train_distributed
from training.hasp import EEL
from training.kg_arrays import kg_arrays
from training.model import ModelConfig
from training.shard_graph import shard_graph
from training.shard_store import open_shards
from training.trainer import TrainParams, train
from training.transe import TransEParams, TransEResult, load_transe, train_transe

GROUP = "model"


class TransEConfig(dg.Config):
    dim: int = 64
    margin: float = 1.0
    epochs: int = int(env("TRANSE_EPOCHS", "30"))
    batch_size: int = 2048
    lr: float = 0.01
    holdout: float = 0.1
    seed: int = 0


class TrainConfig(dg.Config):
    """``world_size`` > 1 trains data-parallel in that many processes (gloo on CPU)."""

    dim: int = 64
    layers: int = 2
    heads: int = 1
    epochs: int = int(env("TRAIN_EPOCHS", "30"))
    lr: float = 0.01
    weight_decay: float = 0.0
    negatives: int = 1
    val_share: float = 0.1
    id_dropout: float = 0.3
    pseudo_new_share: float = 0.2
    patience: int = 5
    world_size: int = int(env("WORLD_SIZE", "1"))
    seed: int = 0


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
        kg = kg_arrays(knowledge_graph["nodes"].toArrow(), knowledge_graph["edges"].toArrow())
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
) -> dg.Output[Checkpoint]:
    """SemanticGNN trained by EEL link prediction over the HASP shards."""
    shard_set = open_shards(hasp_shards)
    transe = load_transe(concept_pretraining)
    relations = [EEL, *transe.relations]
    params = TrainParams(
        **config.model_dump(exclude={"dim", "layers", "heads", "world_size"}),
        shards_per_step=config.world_size,
    )
    graphs = [
        shard_graph(
            shard_set.load(k),
            transe.concept_embeddings,
            relations,
            params.val_share,
            params.seed + k,
        )
        for k in range(len(shard_set))
    ]
    model_config = ModelConfig(
        num_entities=shard_set.manifest["num_nodes"]["entity"],
        feature_dim=next(iter(transe.concept_embeddings.values())).shape[1],
        relations=tuple(relations),
        dim=config.dim,
        layers=config.layers,
        heads=config.heads,
    )
    device = pick_device()

    def progress(point: dict[str, float]) -> None:
        context.log.info(
            f"epoch {point['epoch']}: loss {point['loss']:.4f}, val AUC {point['val_auc']:.4f}"
        )

    with Measure() as m:
        if config.world_size > 1:
            result = train_distributed(graphs, model_config, params, config.world_size)
        else:
            result = train(graphs, model_config, params, device, progress=progress)
    epochs = len(result.curve)
    plot = curves(
        [p["epoch"] for p in result.curve],
        {
            "loss": [p["loss"] for p in result.curve],
            "val AUC": [p["val_auc"] for p in result.curve],
        },
        title="SemanticGNN link prediction",
        xlabel="epoch",
    )
    lineage = {
        "revision": _revision(),
        "hasp_shards": str(hasp_shards),
        "concept_pretraining": str(concept_pretraining),
        "device": str(device),
        "world_size": config.world_size,
        "seconds_per_epoch": m.seconds / max(epochs, 1),
        "process_peak_rss_mb": m.peak_rss_mb,
    }
    return dg.Output(
        Checkpoint(model_config, params, result, transe.concept_embeddings, lineage),
        metadata={
            "best_val_auc": result.best_val_auc,
            "best_epoch": result.best_epoch,
            "epochs_run": epochs,
            "seconds_per_epoch": m.seconds / max(epochs, 1),
            "n_shards": len(graphs),
            "device": str(device),
            "shard_peak_mb": dg.MetadataValue.json(
                {k: v / 2**20 for k, v in result.shard_peak_bytes.items()}
            ),
            "estimated_shard_mb": dg.MetadataValue.json(
                [s["estimated_bytes"] / 2**20 for s in shard_set.manifest["shards"]]
            ),
            "training_curve": png_markdown(plot, "training curve"),
            **m.metadata("train"),
        },
    )
