"""The target-only side of the cross-domain comparison, as NetEase compared models
trained on music and live data with models trained on live data only: the walk models,
each trained on the joint graph (every domain's behaviour) and on the target domain alone
(its own co-engagement and user-item edges; other domains' items keep only their
concepts), and twins of the run's encoders trained on the target domain alone."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from training.checkpoint import Checkpoint, EmbeddingTable, load_table
from training.cross_domain import JOINT, TARGET_ONLY
from training.deepwalk import DeepWalkParams, train_deepwalk
from training.hasp import HaspParams, build_hasp
from training.inference import embed_graph
from training.kg_arrays import KGArrays
from training.metapath2vec import train_metapath2vec
from training.transe import TransEResult
from training.variants import EncoderShape, Variant, train_variant

INDEX = "walk_models.json"
WALK_MODELS = ("deepwalk", "metapath2vec")


def target_only(kg: KGArrays, in_target: np.ndarray) -> KGArrays:
    """``kg`` with only the EELs between two target entities (concept edges all kept)."""
    keep = in_target[kg.eel[0]] & in_target[kg.eel[1]]
    return kg.with_eels(kg.eel[:, keep], kg.eel_weight[keep])


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


def train_encoder_twins(
    encoders: dict[str, Checkpoint],
    train_kg: KGArrays,
    kg: KGArrays,
    in_target: np.ndarray,
    transe: TransEResult,
    hasp: HaspParams,
    memory_budget_mb: float,
    device: torch.device,
    log: Callable[[str], None],
) -> WalkModels:
    """Each encoder's twin, ``<name>_target_only``: the same variant, shape and training
    parameters, trained on the target-only view of ``train_kg`` (the run's training view)
    over its own HASP shards, then every entity embedded over the target-only view of
    ``kg``. Variants that type EELs by domain have no twin of their own: on one domain's
    links they are the plain variant."""
    twin_train, twin_kg = target_only(train_kg, in_target), target_only(kg, in_target)
    shards = build_hasp(twin_train, hasp).shards
    out = WalkModels()
    for name, checkpoint in encoders.items():
        variant = Variant.parse(name)
        if variant.domain_eels:
            continue
        c = checkpoint.config
        shape = EncoderShape(c.dim, c.layers, c.heads, c.popularity_prior, c.walk_rank)
        twin = f"{name}_target_only"
        log(f"Training {twin} on {twin_train.eel.shape[1] // 2} target-domain EELs")
        trained = train_variant(
            variant, shards, transe, twin_train, checkpoint.id_map, shape, checkpoint.params,
            device,
        )  # fmt: skip
        vectors = embed_graph(trained, twin_kg, memory_budget_mb, device).vectors
        out.tables[twin] = (TARGET_ONLY, EmbeddingTable(vectors, {"twin_of": name}))
    return out
