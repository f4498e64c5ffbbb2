"""An IO manager for artifacts stored as folders: ``<lake>/<asset>/<run id>/`` + ``LATEST``."""

from pathlib import Path

import dagster as dg

from resources.spark_lake import LakeResource
from storage.versions import FolderArtifact, latest, publish


class FolderIOManager(dg.ConfigurableIOManager):
    """Each materialization writes a new folder; downstream assets get the latest folder.

    The artifact writes its own files (shards, checkpoints); this manager owns where.
    ``LATEST`` moves only after the artifact's ``save`` returned, so a failed run leaves
    readers on the last complete folder.
    """

    lake: dg.ResourceDependency[LakeResource]

    def _root(self, key: dg.AssetKey) -> Path:
        return self.lake.layout.artifact(*key.path)

    def handle_output(self, context: dg.OutputContext, obj: FolderArtifact) -> None:
        folder = publish(obj, self._root(context.asset_key), context.run_id)
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        context.add_output_metadata(
            {"path": dg.MetadataValue.path(str(folder)), "bytes_on_disk": size}
        )

    def load_input(self, context: dg.InputContext) -> Path:
        return latest(self._root(context.asset_key))
