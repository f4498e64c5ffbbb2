"""HASP shards on disk: ``shard-<k>.pt`` (a HeteroData each) and ``manifest.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import HeteroData

MANIFEST = "manifest.json"


@dataclass
class HaspShards:
    """Shards in memory with their manifest (what the asset returns)."""

    shards: list[HeteroData]
    manifest: dict[str, Any]

    def save(self, folder: Path) -> None:
        save_shards(self, folder)


@dataclass(frozen=True)
class ShardSet:
    """Shards on disk, loaded one at a time (what a trainer receives)."""

    path: Path
    manifest: dict[str, Any]

    def __len__(self) -> int:
        return int(self.manifest["n_shards"])

    def load(self, k: int) -> HeteroData:
        return torch.load(self.path / f"shard-{k}.pt", weights_only=False)


def save_shards(shards: HaspShards, folder: Path) -> ShardSet:
    folder.mkdir(parents=True, exist_ok=True)
    for k, shard in enumerate(shards.shards):
        torch.save(shard, folder / f"shard-{k}.pt")
    # the manifest last: a folder with a manifest is a complete shard set
    (folder / MANIFEST).write_text(json.dumps(shards.manifest, indent=2))
    return ShardSet(folder, shards.manifest)


def open_shards(folder: Path) -> ShardSet:
    manifest = folder / MANIFEST
    if not manifest.exists():
        raise FileNotFoundError(f"No complete HASP shard set at {folder} (no {MANIFEST})")
    return ShardSet(folder, json.loads(manifest.read_text()))
