"""Data-parallel training over HASP shards with ``torch.distributed`` processes."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from training.model import ModelConfig
from training.shard_graph import ShardGraph
from training.trainer import Prepared, TrainParams, TrainResult, train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(
    rank: int,
    world_size: int,
    port: int,
    backend: str,
    graphs: list[ShardGraph],
    config: ModelConfig,
    params: TrainParams,
    prepared: Prepared | None,
    out: str,
) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group(backend, rank=rank, world_size=world_size)
    try:
        device = torch.device(f"cuda:{rank}") if backend == "nccl" else torch.device("cpu")
        result = train(
            graphs, config, params, device, rank=rank, world_size=world_size, prepared=prepared
        )
        if rank == 0:
            torch.save(result, out)
    finally:
        dist.destroy_process_group()


def train_distributed(
    graphs: list[ShardGraph],
    config: ModelConfig,
    params: TrainParams,
    world_size: int,
    prepared: Prepared | None = None,
) -> TrainResult:
    """Spawn ``world_size`` processes (nccl, one per GPU, when CUDA has enough; else gloo)."""
    backend = (
        "nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= world_size else "gloo"
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "result.pt")
        mp.spawn(
            _worker,
            args=(world_size, _free_port(), backend, graphs, config, params, prepared, out),
            nprocs=world_size,
            join=True,
        )
        return torch.load(out, weights_only=False)
