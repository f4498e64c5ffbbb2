"""Where everything lives under the lake root, by name: the one module that spells lake paths.

``<root>/tables/<group>/<table>`` holds the Delta tables (and the lake log beside them),
``<root>/<asset>/`` each folder-shaped artifact's versions with its ``LATEST`` pointer,
``<root>/inbox/`` the batch files waiting for the incremental run, ``<root>/_staging/<run>/``
an ingest's line-numbered copies of its CSV inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STAGING = "_staging"
E2E_RANKER = "e2e_ranker.npz"  # in an e2e_ranker version folder: what the service re-scores with
RELEVANCE_MODEL = "muirml.npz"  # in a relevance_model version folder: the neural metric served


@dataclass(frozen=True)
class LakeLayout:
    root: Path

    @classmethod
    def at(cls, root: str | Path) -> LakeLayout:
        return cls(Path(root).resolve())

    @property
    def tables(self) -> Path:
        return self.root / "tables"

    def table(self, name: str) -> Path:
        """A Delta table by its name (``knowledge_graph/edges``)."""
        return self.tables / name

    def artifact(self, *key: str) -> Path:
        """The versioned folder of a folder-shaped asset, by its asset key."""
        return self.root.joinpath(*key)

    @property
    def index(self) -> Path:
        return self.artifact("ann_index")

    @property
    def e2e_rankers(self) -> Path:
        return self.artifact("e2e_ranker")

    @property
    def relevance_models(self) -> Path:
        return self.artifact("relevance_model")

    @property
    def checkpoints(self) -> Path:
        return self.artifact("gnn_checkpoint")

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def staging_root(self) -> Path:
        return self.root / STAGING

    def staging(self, run_id: str) -> Path:
        return self.staging_root / run_id

    @property
    def accepted_model(self) -> Path:
        """The quality gate's record of the last model it let through."""
        return self.root / "accepted_model.json"
