"""New-item exposure after an incremental batch: do new items reach warm items' lists?

The share of a batch's new items that appear in at least one warm item's top-k (warm:
an item with co-engagement links), once in the served index's answers and once under the
popularity+concepts baseline (``cos_ij + λ · log(1 + deg_j)``, λ the one the checkpoint's
validation tuned) over the same extended graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from deltalake import DeltaTable

from serving.artifact import load_bundle
from storage.layout import LakeLayout
from storage.versions import latest
from training.baselines import Signals, signals
from training.checkpoint import load_model_set
from training.evaluation import baseline_scores
from training.kg_arrays import kg_arrays

CHUNK = 1024  # warm queries scored at a time by the baseline (a dense chunk x N block)


@dataclass(frozen=True)
class Exposure:
    served: float  # share of new items in some warm item's served top-k
    baseline: float  # the same under popularity+concepts
    new_items: int
    warm_items: int


def _reached(top: np.ndarray, new: np.ndarray) -> int:
    return int(np.isin(new, top).sum())


def served_top(lake: Path, warm: np.ndarray, k: int) -> np.ndarray:
    """Entity ids in the served top-``k`` of each warm entity (itself left out)."""
    bundle = load_bundle(latest(LakeLayout(lake).index))
    _, found = bundle.index.search(bundle.query(warm), k + 1)
    return np.where(found == warm[:, None], -1, found)


def baseline_top(s: Signals, tuned: dict, warm: np.ndarray, k: int) -> np.ndarray:
    scores = baseline_scores(s, tuned)["popularity+concepts"]
    tops = []
    for lo in range(0, len(warm), CHUNK):
        q = torch.from_numpy(warm[lo : lo + CHUNK])
        block = scores(q).clone()
        block[torch.arange(len(q)), q] = -torch.inf  # not itself
        tops.append(block.topk(k, dim=1).indices.numpy())
    return np.concatenate(tops) if tops else np.zeros((0, k), np.int64)


def new_item_exposure(lake: Path, new_items: list[str], k: int = 10) -> Exposure:
    layout = LakeLayout(lake)
    nodes, edges = (
        DeltaTable(str(layout.table(f"knowledge_graph/{t}"))).to_pyarrow_table()
        for t in ("nodes", "edges")
    )
    kg = kg_arrays(nodes, edges)
    entity = {
        key: i
        for key, t, i in zip(
            nodes.column("key").to_pylist(),
            nodes.column("node_type").to_pylist(),
            nodes.column("node_id").to_pylist(),
            strict=True,
        )
        if t == "entity"
    }
    new = np.array([entity[i] for i in new_items], dtype=np.int64)
    s = signals(kg, torch.empty((2, 0), dtype=torch.long))
    warm = np.setdiff1d(np.flatnonzero(s.log_degree.numpy() > 0), new)
    tuned = load_model_set(latest(layout.checkpoints)).tuned_weights()
    n = max(len(new), 1)
    return Exposure(
        served=_reached(served_top(lake, warm, k), new) / n,
        baseline=_reached(baseline_top(s, tuned, warm, k), new) / n,
        new_items=len(new),
        warm_items=len(warm),
    )
