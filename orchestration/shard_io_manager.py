"""An IO manager for HASP shard sets: ``<lake>/shards/<run id>/`` plus a ``LATEST`` pointer."""

import os
from pathlib import Path

import dagster as dg

from orchestration.resources import LakeResource
from training.shard_store import HaspShards, ShardSet, open_shards, save_shards

LATEST = "LATEST"


class ShardIOManager(dg.ConfigurableIOManager):
    """Each materialization writes a new shard folder; readers follow ``LATEST``.

    The pointer moves only after the folder's manifest is written, so a failed run
    leaves readers on the last complete shard set.
    """

    lake: dg.ResourceDependency[LakeResource]

    def _root(self) -> Path:
        return self.lake.path("shards")

    def handle_output(self, context: dg.OutputContext, obj: HaspShards) -> None:
        folder = self._root() / context.run_id
        save_shards(obj, folder)
        pointer = self._root() / LATEST
        tmp = pointer.with_suffix(".tmp")
        tmp.write_text(context.run_id)
        os.replace(tmp, pointer)  # atomic on POSIX
        size = sum(f.stat().st_size for f in folder.iterdir())
        context.add_output_metadata(
            {"path": dg.MetadataValue.path(str(folder)), "bytes_on_disk": size}
        )

    def load_input(self, context: dg.InputContext) -> ShardSet:
        pointer = self._root() / LATEST
        if not pointer.exists():
            raise FileNotFoundError(f"No HASP shards under {self._root()}; materialize hasp_shards")
        return open_shards(self._root() / pointer.read_text().strip())
