"""Trained-model checkpoints: weights, config, pretrained concept features, curve, lineage.

A checkpoint folder holds ``model.pt`` (weights and the tensors the model needs at
inference: concept features and relation vocabulary) and ``checkpoint.json`` (model
config, training params, curve, best epoch and AUC, measured peak memory, revision).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from training.model import ModelConfig, SemanticGNN
from training.trainer import TrainParams, TrainResult

WEIGHTS = "model.pt"
META = "checkpoint.json"


@dataclass
class Checkpoint:
    config: ModelConfig
    params: TrainParams
    result: TrainResult
    concept_features: dict[str, Tensor]
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
            "curve": self.result.curve,
            "shard_peak_bytes": self.result.shard_peak_bytes,
            "lineage": self.lineage,
        }
        (folder / META).write_text(json.dumps(meta, indent=2))

    def model(self) -> SemanticGNN:
        model = SemanticGNN(self.config)
        model.load_state_dict(self.result.state_dict)
        return model.eval()


def load_checkpoint(folder: Path) -> Checkpoint:
    if not (folder / META).exists() or not (folder / WEIGHTS).exists():
        raise FileNotFoundError(f"No checkpoint at {folder} (needs {META} and {WEIGHTS})")
    meta = json.loads((folder / META).read_text())
    tensors = torch.load(folder / WEIGHTS, weights_only=True)
    model = meta["model"]
    config = ModelConfig(**{**model, "relations": tuple(model["relations"])})
    result = TrainResult(
        tensors["state_dict"], meta["best_epoch"], meta["best_val_auc"], meta["curve"]
    )
    return Checkpoint(
        config, TrainParams(**meta["train"]), result, tensors["concept_features"], meta["lineage"]
    )
