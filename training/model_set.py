"""Every configured variant trained, then ranked with the baselines on validation.

The ``gnn_checkpoint`` asset wires these two calls and turns what they return into
metadata; nothing here knows about Dagster.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import torch
from torch_geometric.data import HeteroData

from training.checkpoint import Checkpoint, EmbeddingTable, ModelSet
from training.kg_arrays import KGArrays
from training.model import SemanticGNN
from training.trainer import TrainParams
from training.transe import TransEResult
from training.validation import (
    Calibration,
    Row,
    calibrate,
    compare,
    set_calibration,
    validation_set,
)
from training.variants import EncoderShape, Variant, graph_inputs, train_variant
from training.walk_rank import RankChoice

Log = Callable[[str], None]
EpochLog = Callable[[int, str], None]  # (epoch, what it reached)


def _logged(log: Log, name: str) -> EpochLog:
    return lambda epoch, text: log(f"{name} epoch {epoch}: {text}")


@dataclass(frozen=True)
class VariantRun:
    """One variant's training: what it produced and what it cost."""

    name: str
    seconds: float
    peak_rss_mb: float
    best_val_auc: float | None = None  # None for embedding tables (DeepWalk)
    best_epoch: int | None = None
    epochs: int | None = None
    learned_prior: float | None = None
    val_auc: list[float] = field(default_factory=list)
    stopped: str | None = None  # why training ended: epochs, patience or time budget


@dataclass
class TrainedSet:
    models: ModelSet
    runs: list[VariantRun]
    relation_priors: dict[str, Any]  # β_r per relation and layer, per SemanticGNN variant
    walk: RankChoice | None = None  # the walk factors' rank, where validation chose it


def train_model_set(
    variants: list[Variant],
    shards: list[HeteroData],
    transe: TransEResult,
    kg: KGArrays,
    id_map: pa.Table,
    shape: EncoderShape,
    params: TrainParams,
    device: torch.device,
    world_size: int,
    lineage: dict[str, Any],
    measure: Callable[[], Any],
    log: Log,
    epochs: Callable[[str], EpochLog] | None = None,
) -> TrainedSet:
    """Train ``variants`` in order (the first is primary). ``measure()`` returns a context
    manager with ``seconds`` and ``peak_rss_mb`` (the caller's memory sampler);
    ``epochs(name)`` a reporter of each epoch of variant ``name`` (default: ``log``)."""
    trained: dict[str, Checkpoint | EmbeddingTable] = {}
    runs, priors = [], {}
    with measure() as m:  # once: the variants share them
        inputs = graph_inputs(shards, transe, kg, shape, params)
    parts = ", ".join(f"{part} {s:.1f} s" for part, s in inputs.seconds.items())
    log(f"Graph-wide inputs in {m.seconds:.1f} s ({parts})")
    if inputs.walk is not None:
        tried = ", ".join(f"{r}: {v:.4f}" for r, v in inputs.walk.validation_map.items())
        log(f"Walk rank {inputs.walk.rank} (validation MAP@10 of the walk alone: {tried})")
    for variant in variants:
        report = epochs(variant.name) if epochs else _logged(log, variant.name)

        def progress(point: dict[str, float], report: EpochLog = report) -> None:
            more = f", val AUC {point['val_auc']:.4f}" if "val_auc" in point else ""
            if clipped := point.get("clipped_steps"):
                more += f", {clipped:.0f} of {point['steps']:.0f} steps clipped"
            report(int(point["epoch"]), f"loss {point['loss']:.4f}{more}")

        log(f"Training {variant.name}")
        with measure() as m:
            out = train_variant(
                variant, shards, transe, kg, id_map, shape, params, device, world_size,
                progress, inputs,
            )  # fmt: skip
        out.lineage = {
            **lineage,
            "concept_pretraining": lineage.get("concept_pretraining")
            if variant.pretrained
            else None,
            "seconds": m.seconds,
            "process_peak_rss_mb": m.peak_rss_mb,
        }
        trained[variant.name] = out
        if isinstance(out, EmbeddingTable):
            runs.append(VariantRun(variant.name, m.seconds, m.peak_rss_mb))
            continue
        result = out.result
        runs.append(
            VariantRun(
                variant.name,
                m.seconds,
                m.peak_rss_mb,
                result.best_val_auc,
                result.best_epoch,
                len(result.curve),
                float(result.state_dict["popularity_weight"]),
                [p["val_auc"] for p in result.curve],
                result.stopped,
            )
        )
        if isinstance(model := out.model(), SemanticGNN):
            priors[variant.name] = model.relation_priors()
    models = ModelSet(
        {n: c for n, c in trained.items() if isinstance(c, Checkpoint)},
        variants[0].name,
        {n: t for n, t in trained.items() if isinstance(t, EmbeddingTable)},
    )
    return TrainedSet(models, runs, priors, inputs.walk)


@dataclass(frozen=True)
class Validated:
    rows: list[Row]
    calibration: dict[str, Calibration]  # encoder -> its fitted readout
    seconds: float


def validate_model_set(models: ModelSet, shards: list[HeteroData], kg: KGArrays) -> Validated:
    """Fit each encoder's readout (prior weight, degree gate, residual scale) on
    validation and rank every model and baseline there; the model set keeps the chosen
    readouts and the ranking (whose tuned baseline weights the evaluation reuses)."""
    start = time.perf_counter()
    validation = validation_set(models, shards, kg)
    calibration = calibrate(models, validation, shards)
    set_calibration(models, calibration, validation, shards)
    rows = compare(models, validation)
    models.validation = [asdict(r) for r in rows]
    return Validated(rows, calibration, time.perf_counter() - start)
