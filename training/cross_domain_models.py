"""The walk models of the cross-domain comparison, each trained twice: on the joint graph
(every domain's behaviour) and on the target domain alone (its own co-engagement and
user-item edges; other domains' items keep only their concepts), as NetEase compared
models trained on music and live data with models trained on live data only."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from training.checkpoint import EmbeddingTable, load_table
from training.cross_domain import JOINT, TARGET_ONLY
from training.deepwalk import DeepWalkParams, train_deepwalk
from training.kg_arrays import KGArrays
from training.metapath2vec import train_metapath2vec

INDEX = "walk_models.json"
WALK_MODELS = ("deepwalk", "metapath2vec")


def target_only(kg: KGArrays, in_target: np.ndarray) -> KGArrays:
    """``kg`` with only the EELs between two target entities (concept edges all kept)."""
    keep = in_target[kg.eel[0]] & in_target[kg.eel[1]]
    return KGArrays(kg.num_nodes, kg.eel[:, keep], kg.eel_weight[keep], kg.concept_edges)


@dataclass
class WalkModels:
    """name -> (JOINT or TARGET_ONLY, its table)."""

    tables: dict[str, tuple[str, EmbeddingTable]] = field(default_factory=dict)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, (_, table) in self.tables.items():
            table.save(folder / name)
        views = {name: view for name, (view, _) in self.tables.items()}
        (folder / INDEX).write_text(json.dumps(views, indent=2))


def load_walk_models(folder: Path) -> WalkModels:
    views = json.loads((folder / INDEX).read_text())
    return WalkModels({name: (view, load_table(folder / name)) for name, view in views.items()})


def train_walk_models(
    kg: KGArrays,
    users: np.ndarray,
    entities: np.ndarray,
    in_target: np.ndarray,
    params: DeepWalkParams,
    device: torch.device,
    log: Callable[[str], None],
) -> WalkModels:
    """DeepWalk and Metapath2Vec on both views. ``users``/``entities``: user-item edges."""
    own = in_target[entities]
    views = {
        JOINT: (kg, users, entities),
        TARGET_ONLY: (target_only(kg, in_target), users[own], entities[own]),
    }
    out = WalkModels()
    for view, (graph, u, e) in views.items():
        suffix = "" if view == JOINT else "_target_only"

        def report(epoch: int, loss: float, name: str = "") -> None:
            log(f"{name} epoch {epoch}: loss {loss:.4f}")

        name = "deepwalk" + suffix
        vectors = train_deepwalk(graph, params, device, lambda ep, x, n=name: report(ep, x, n))
        out.tables[name] = (view, EmbeddingTable(vectors, asdict(params)))
        name = "metapath2vec" + suffix
        vectors = train_metapath2vec(
            graph, u, e, params, device, lambda ep, x, n=name: report(ep, x, n)
        )
        out.tables[name] = (view, EmbeddingTable(vectors, asdict(params)))
    return out
