"""Named model variants a run can train side by side: an encoder kind, with or without
pretrained (TransE) concept features, or the DeepWalk random-walk baseline.
``semantic_no_pretrain`` is the ablation of KG pretraining: the same model fed random
concept features of the same shape and scale."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from training.baselines import signals
from training.checkpoint import Checkpoint, EmbeddingTable
from training.deepwalk import DeepWalkParams, train_deepwalk
from training.distributed import train_distributed
from training.kg_arrays import EEL, KGArrays
from training.model import KINDS, ModelConfig
from training.shard_graph import domain_relations, held_out_pairs, shard_graph
from training.spectral import spectral_embedding, walk_factors
from training.teacher import walk_teacher
from training.trainer import Prepared, TrainParams, train
from training.transe import TransEResult
from training.walk_rank import AUTO, RankChoice, choose_walk_rank

NO_PRETRAIN = "_no_pretrain"
DOMAIN_EELS = "_domain_eels"
DEEPWALK = "deepwalk"


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str
    pretrained: bool
    domain_eels: bool = False  # EELs typed by their ends' domains (shard_graph.domain_relations)

    @property
    def is_encoder(self) -> bool:
        return self.kind in KINDS

    @classmethod
    def parse(cls, name: str) -> Variant:
        """``<kind>[_domain_eels][_no_pretrain]`` or ``deepwalk``."""
        if name == DEEPWALK:
            return cls(name, DEEPWALK, False)
        rest = name.removesuffix(NO_PRETRAIN)
        kind = rest.removesuffix(DOMAIN_EELS)
        if kind not in KINDS:
            allowed = [
                k + d + p for k in KINDS for d in ("", DOMAIN_EELS) for p in ("", NO_PRETRAIN)
            ]
            raise ValueError(f"Model variant {name!r} is not one of {[*allowed, DEEPWALK]}")
        return cls(name, kind, rest == name, kind != rest)


def concept_inputs(pretrained: dict[str, Tensor], variant: Variant, seed: int) -> dict[str, Tensor]:
    """The concept features a variant trains on: pretrained, or random with matching scale."""
    if variant.pretrained:
        return pretrained
    gen = torch.Generator().manual_seed(seed)
    return {
        ctype: torch.randn(features.shape, generator=gen) * features.std()
        for ctype, features in sorted(pretrained.items())
    }


@dataclass(frozen=True)
class EncoderShape:
    dim: int = 64
    layers: int = 2
    heads: int = 1
    popularity_prior: bool = True
    # the fixed walk factors' columns (0: the GNN's output alone; AUTO: chosen on validation)
    walk_rank: int = AUTO


@dataclass(frozen=True)
class GraphInputs:
    """What every variant of a run derives from the whole graph, computed once per run:
    the training graph without the held-out EELs, and the encoders' graph-wide inputs."""

    train_kg: KGArrays
    prepared: Prepared
    walk: RankChoice | None = None  # the walk factors' rank, where it was chosen here
    seconds: dict[str, float] = field(default_factory=dict)  # each part's time


def graph_inputs(
    shards: list[HeteroData],
    transe: TransEResult,
    kg: KGArrays,
    shape: EncoderShape,
    params: TrainParams,
) -> GraphInputs:
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(part: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[part], clock = now - clock, now

    relations = [EEL, *transe.relations]
    # neither walks nor spectral vectors may see the EELs the encoders hold out
    held = held_out_pairs(
        shards, transe.concept_embeddings, relations, params.val_share, params.seed
    )
    # all training EELs, cut ones included: a graph-wide view no single shard has
    train_kg = kg.without_eels(held.numpy())
    train_eels = torch.from_numpy(train_kg.eel)
    lap("held-out EELs")
    id_vectors = walk = teacher = choice = None
    if params.id_init == "spectral":
        id_vectors = spectral_embedding(train_eels, kg.num_entities, shape.dim, params.seed)
        lap("spectral start")
    s = signals(kg, held) if params.distill_weight or shape.walk_rank == AUTO else None
    weights = torch.from_numpy(train_kg.eel_weight)
    if shape.walk_rank == AUTO:
        walk, choice = choose_walk_rank(train_eels, weights, held, s, params.seed)
    elif shape.walk_rank:
        walk = walk_factors(train_eels, weights, kg.num_entities, shape.walk_rank, params.seed)
    if shape.walk_rank:
        lap("walk factors")
    if params.distill_weight:
        teacher = walk_teacher(s, params.distill_k, seed=params.seed)
        lap("teacher")
    return GraphInputs(train_kg, Prepared(id_vectors, walk, teacher), choice, seconds)


def train_variant(
    variant: Variant,
    shards: list[HeteroData],
    transe: TransEResult,
    kg: KGArrays,
    id_map: pa.Table,
    shape: EncoderShape,
    params: TrainParams,
    device: torch.device,
    world_size: int = 1,
    progress: Callable[[dict[str, float]], None] | None = None,
    inputs: GraphInputs | None = None,
) -> Checkpoint | EmbeddingTable:
    """An encoder trained over the shards, or the DeepWalk table over the whole graph.
    ``inputs`` are :func:`graph_inputs` of the same arguments (computed here if not given)."""
    if inputs is None:
        inputs = graph_inputs(shards, transe, kg, shape, params)
    if not variant.is_encoder:
        walk = DeepWalkParams(dim=shape.dim, seed=params.seed)
        table = train_deepwalk(
            inputs.train_kg,
            walk,
            device,
            None if progress is None else lambda e, loss: progress({"epoch": e, "loss": loss}),
        )
        return EmbeddingTable(table, asdict(walk))
    eels = domain_relations(kg.domains) if variant.domain_eels else []
    relations = [EEL, *eels, *transe.relations]
    features = concept_inputs(transe.concept_embeddings, variant, params.seed)
    graphs = [
        shard_graph(s, features, relations, params.val_share, params.seed + k)
        for k, s in enumerate(shards)
    ]
    config = ModelConfig(
        num_entities=kg.num_entities,
        feature_dim=next(iter(features.values())).shape[1],
        relations=tuple(relations),
        dim=shape.dim,
        layers=shape.layers,
        heads=shape.heads,
        kind=variant.kind,
        popularity_prior=shape.popularity_prior,
        walk_rank=0 if inputs.prepared.walk is None else inputs.prepared.walk.shape[1],
    )
    if world_size > 1:
        result = train_distributed(graphs, config, params, world_size, inputs.prepared)
    else:
        result = train(graphs, config, params, device, progress=progress, prepared=inputs.prepared)
    return Checkpoint(config, params, result, features, id_map)
