"""Data-parallel training over HASP shards with ``torch.distributed`` processes."""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
from dataclasses import dataclass
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


@dataclass
class Job:
    """What every rank trains: the shards, the model's shape, the schedule, the inputs
    computed over the whole graph. Saved to one file for ``torchrun``."""

    graphs: list[ShardGraph]
    config: ModelConfig
    params: TrainParams
    prepared: Prepared | None = None

    def save(self, path: str | Path) -> None:
        torch.save(self, path)


def _backend(world_size: int) -> str:
    """nccl, one GPU per rank, when CUDA has enough; else gloo on CPU."""
    return (
        "nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= world_size else "gloo"
    )


def _run_rank(job: Job, rank: int, world_size: int, local_rank: int, out: str) -> None:
    """One rank's share, inside an initialised process group; rank 0 saves the result."""
    nccl = dist.get_backend() == "nccl"
    device = torch.device(f"cuda:{local_rank}") if nccl else torch.device("cpu")
    result = train(
        job.graphs, job.config, job.params, device,
        rank=rank, world_size=world_size, prepared=job.prepared,
    )  # fmt: skip
    if rank == 0:
        torch.save(result, out)


def _spawned(rank: int, world_size: int, port: int, backend: str, job: Job, out: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group(backend, rank=rank, world_size=world_size)
    try:
        _run_rank(job, rank, world_size, rank, out)
    finally:
        dist.destroy_process_group()


def train_distributed(
    graphs: list[ShardGraph],
    config: ModelConfig,
    params: TrainParams,
    world_size: int,
    prepared: Prepared | None = None,
) -> TrainResult:
    """Spawn ``world_size`` processes on this machine and train data-parallel."""
    job = Job(graphs, config, params, prepared)
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "result.pt")
        backend = _backend(world_size)
        mp.spawn(
            _spawned,
            args=(world_size, _free_port(), backend, job, out),
            nprocs=world_size,
            join=True,
        )
        return torch.load(out, weights_only=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point for ``torchrun``, on one machine or several::

        torchrun --nproc_per_node 2 -m training.distributed JOB.pt RESULT.pt

    ``JOB.pt`` is a :class:`Job` (``Job.save``); torchrun's environment (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) makes the process
    group (nccl where each local rank has a GPU, else gloo), and rank 0 writes the
    :class:`TrainResult` to ``RESULT.pt``.
    """
    parser = argparse.ArgumentParser(description="One rank of data-parallel HASP training.")
    parser.add_argument("job", type=Path)
    parser.add_argument("result", type=Path)
    args = parser.parse_args(argv)
    if "RANK" not in os.environ:
        parser.error("run me under torchrun (RANK and WORLD_SIZE are not set)")
    world_size = int(os.environ["WORLD_SIZE"])
    backend = _backend(int(os.environ.get("LOCAL_WORLD_SIZE", world_size)))
    dist.init_process_group(backend)
    try:
        job = torch.load(args.job, weights_only=False)
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        _run_rank(job, dist.get_rank(), world_size, local_rank, str(args.result))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
