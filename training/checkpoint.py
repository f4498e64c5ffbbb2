"""Trained-model checkpoints: weights, config, pretrained concept features, curve, lineage.

A checkpoint folder holds ``model.pt`` (weights and the concept features the model needs
at inference), ``id_map.parquet`` (dense node ids to item ids and concepts) and, written
last, ``checkpoint.json`` (model config with the relation vocabulary, training params,
curve, best epoch and AUC, measured peak memory, lineage).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor

from training.model import EntityEncoder, ModelConfig, build_model
from training.trainer import TrainParams, TrainResult

WEIGHTS = "model.pt"
META = "checkpoint.json"
ID_MAP = "id_map.parquet"
T = TypeVar("T")


@dataclass
class Checkpoint:
    config: ModelConfig
    params: TrainParams
    result: TrainResult
    concept_features: dict[str, Tensor]
    id_map: pa.Table  # node_id, node_type, key: dense ids back to item ids and concepts
    lineage: dict[str, Any] = field(default_factory=dict)  # revision, shard set, peaks...

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(
            {"state_dict": self.result.state_dict, "concept_features": self.concept_features},
            folder / WEIGHTS,
        )
        meta = {
            "model": self.config.to_dict(),
            "train": self.params.to_dict(),
            "best_epoch": self.result.best_epoch,
            "best_val_auc": self.result.best_val_auc,
            "best_val_map": self.result.best_val_map,
            "curve": self.result.curve,
            "shard_peak_bytes": self.result.shard_peak_bytes,
            "stopped": self.result.stopped,
            "lineage": self.lineage,
        }
        pq.write_table(self.id_map, folder / ID_MAP)
        (folder / META).write_text(json.dumps(meta, indent=2))

    def model(self) -> EntityEncoder:
        model = build_model(self.config)
        # checkpoints written before the cold prior or the concept neighbours' share
        # existed serve without them (δ = 0, μ = 0)
        before = {"cold_prior_shift": torch.zeros(()), "concept_walk_share": torch.zeros(())}
        model.load_state_dict({**before, **self.result.state_dict})
        return model.eval()


def _record(cls: type[T], record: dict[str, Any], folder: Path, drop_unknown: bool = False) -> T:
    """``cls`` from a checkpoint's record of it, or an error that names the checkpoint and
    the fields where the record and this version of the code disagree. ``drop_unknown``:
    fields the code no longer has are left out (a training parameter renamed or removed
    since does not change the trained weights; its current default stands)."""
    fields = dataclasses.fields(cls)
    names = {f.name for f in fields}
    unknown = sorted(set(record) - names)
    missing = sorted(
        f.name
        for f in fields
        if f.name not in record
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    )
    if (unknown and not drop_unknown) or missing:
        disagree = [f"has {unknown}, which this version lacks"] if unknown else []
        disagree += [f"lacks {missing}, which this version needs"] if missing else []
        raise ValueError(
            f"The checkpoint at {folder} was written by another version of cograph: its "
            f"{cls.__name__} {' and '.join(disagree)}. Materialize gnn_checkpoint again to "
            "train one this version reads."
        )
    return cls(**{k: v for k, v in record.items() if k in names})


def load_checkpoint(folder: Path) -> Checkpoint:
    if not (folder / META).exists() or not (folder / WEIGHTS).exists():
        raise FileNotFoundError(f"No checkpoint at {folder} (needs {META} and {WEIGHTS})")
    meta = json.loads((folder / META).read_text())
    tensors = torch.load(folder / WEIGHTS, weights_only=True)
    model = meta["model"]
    config = _record(ModelConfig, {**model, "relations": tuple(model["relations"])}, folder)
    result = TrainResult(
        tensors["state_dict"],
        meta["best_epoch"],
        meta["best_val_auc"],
        meta["best_val_map"],
        meta["curve"],
        stopped=meta.get("stopped", "epochs"),  # checkpoints before the time budget
    )
    return Checkpoint(
        config,
        _record(TrainParams, meta["train"], folder, drop_unknown=True),
        result,
        tensors["concept_features"],
        pq.read_table(folder / ID_MAP),
        meta["lineage"],
    )


MODEL_SET = "models.json"
TABLE = "embeddings.pt"


@dataclass
class EmbeddingTable:
    """A transductive baseline's output: one fixed vector per entity (e.g. DeepWalk)."""

    embeddings: Tensor  # (num_entities, dim), row = dense entity id
    params: dict[str, Any]
    lineage: dict[str, Any] = field(default_factory=dict)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(
            {"embeddings": self.embeddings, "params": self.params, "lineage": self.lineage},
            folder / TABLE,
        )


def load_table(folder: Path) -> EmbeddingTable:
    data = torch.load(folder / TABLE, weights_only=True)
    return EmbeddingTable(data["embeddings"], data["params"], data["lineage"])


@dataclass
class ModelSet:
    """Several trained variants of one run (for comparison) and the one to serve.

    ``checkpoints`` are encoders (they embed new entities inductively); ``tables`` are
    transductive baselines. The primary is a checkpoint.
    """

    checkpoints: dict[str, Checkpoint]
    primary: str
    tables: dict[str, EmbeddingTable] = field(default_factory=dict)
    # validation MAP rows (name, map_at_k, weights): baselines' weights are tuned there
    validation: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.primary not in self.checkpoints:
            raise ValueError(
                f"Primary model {self.primary!r} must be a trained encoder, one of "
                f"{sorted(self.checkpoints)}"
            )

    def save(self, folder: Path) -> None:
        for name, checkpoint in self.checkpoints.items():
            checkpoint.save(folder / name)
        for name, table in self.tables.items():
            table.save(folder / name)
        index = {
            "primary": self.primary,
            "models": list(self.checkpoints),
            "tables": list(self.tables),
            "validation": self.validation,
        }
        (folder / MODEL_SET).write_text(json.dumps(index, indent=2))

    @property
    def primary_checkpoint(self) -> Checkpoint:
        """The checkpoint of the primary model: the one embedded and served (it is chosen
        by configuration, not by the validation scores in ``validation``)."""
        return self.checkpoints[self.primary]

    def tuned_weights(self) -> dict[str, tuple[float, ...]]:
        """Weights of the baselines that were tuned on validation, by name."""
        return {row["name"]: tuple(row["weights"]) for row in self.validation if row["weights"]}


def load_model_set(folder: Path) -> ModelSet:
    if not (folder / MODEL_SET).exists():
        raise FileNotFoundError(f"No model set at {folder} (no {MODEL_SET})")
    index = json.loads((folder / MODEL_SET).read_text())
    return ModelSet(
        {name: load_checkpoint(folder / name) for name in index["models"]},
        index["primary"],
        {name: load_table(folder / name) for name in index["tables"]},
        index["validation"],
    )
