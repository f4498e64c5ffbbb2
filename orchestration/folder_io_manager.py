"""An IO manager for artifacts stored as folders: ``<lake>/<asset>/<run id>/`` + ``LATEST``."""

import os
from pathlib import Path
from typing import Protocol

import dagster as dg

from orchestration.resources import LakeResource

LATEST = "LATEST"


class FolderArtifact(Protocol):
    def save(self, folder: Path) -> None: ...


def publish(artifact: FolderArtifact, root: Path, version: str) -> Path:
    """Save ``artifact`` as ``root/version`` and then point ``LATEST`` at it (atomically),
    so readers never see a half-written version."""
    folder = root / version
    artifact.save(folder)
    tmp = root / f"{LATEST}.tmp"
    tmp.write_text(version)
    os.replace(tmp, root / LATEST)  # atomic on POSIX
    return folder


def latest(root: Path) -> Path:
    """The folder ``LATEST`` points at under ``root``."""
    pointer = root / LATEST
    if not pointer.exists():
        raise FileNotFoundError(f"No {root.name} artifact under {root}; materialize it first")
    return root / pointer.read_text().strip()


class FolderIOManager(dg.ConfigurableIOManager):
    """Each materialization writes a new folder; downstream assets get the latest folder.

    The artifact writes its own files (shards, checkpoints); this manager owns where.
    ``LATEST`` moves only after the artifact's ``save`` returned, so a failed run leaves
    readers on the last complete folder.
    """

    lake: dg.ResourceDependency[LakeResource]

    def _root(self, key: dg.AssetKey) -> Path:
        return self.lake.path(*key.path)

    def handle_output(self, context: dg.OutputContext, obj: FolderArtifact) -> None:
        folder = publish(obj, self._root(context.asset_key), context.run_id)
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        context.add_output_metadata(
            {"path": dg.MetadataValue.path(str(folder)), "bytes_on_disk": size}
        )

    def load_input(self, context: dg.InputContext) -> Path:
        return latest(self._root(context.asset_key))
