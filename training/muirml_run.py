"""One relevance-model run: MUIRML and the single-behaviour baseline trained on the same
pairs and measured on the same held-out deepest-behaviour pairs; saved as its report, plus
the served model when it beats the baseline (:attr:`RelevanceRun.publishes`), so the
service keeps the last model that did."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from storage.layout import RELEVANCE_MODEL
from training.behaviours import BehaviourPairs, behaviour_pairs, user_vectors
from training.muirml_fit import Fitted, MuirmlParams, export_arrays, fit, target_auc, target_pairs

REPORT = "relevance_report.json"
MULTI, SINGLE = "multi-behaviour", "single-behaviour"


@dataclass(frozen=True)
class RelevanceReport:
    behaviours: list[str]
    target: str
    counts: dict[str, int]
    aucs: dict[str, dict[str, float]]  # arm -> test AUCs (see training.muirml_fit.target_auc)
    scenario: list[float]  # the served attention weights over the behaviours
    history: dict[str, list[dict]]
    embedding_version: str = ""  # the embeddings' model version it was trained on

    @property
    def beats_single(self) -> bool:
        return self.aucs[MULTI]["auc"] > self.aucs[SINGLE]["auc"]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / REPORT).write_text(json.dumps(asdict(self), indent=1))


def load_report(folder: Path) -> RelevanceReport:
    return RelevanceReport(**json.loads((folder / REPORT).read_text()))


@dataclass
class RelevanceRun:
    report: RelevanceReport
    fitted: Fitted
    users: np.ndarray  # every user's vector (its training history's mean embedding)
    pairs: BehaviourPairs

    @property
    def embedding_version(self) -> str:
        """The embeddings' model version: the model fits only those."""
        return self.report.embedding_version

    def arrays(self) -> dict[str, np.ndarray]:
        return export_arrays(self.fitted, self.pairs.behaviours, self.embedding_version)

    @property
    def publishes(self) -> bool:
        return self.report.beats_single

    def save(self, folder: Path) -> None:
        self.report.save(folder)
        if self.publishes:
            np.savez(folder / RELEVANCE_MODEL, **self.arrays())

    def test_users(self, n: int, seed: int) -> np.ndarray:
        """Up to ``n`` vectors of users with test pairs (for measuring the search)."""
        users = np.unique(self.pairs.user[self.pairs.part == 2])
        rng = np.random.default_rng(seed)
        return self.users[rng.permutation(users)[:n]]


def run_relevance(
    interactions: pd.DataFrame,
    item_ids: np.ndarray,
    vectors: np.ndarray,
    embedding_version: str,
    params: MuirmlParams,
    device: torch.device | None = None,
    log: Callable[[str], None] = print,
) -> RelevanceRun:
    """Both arms on ``interactions`` (``user_id, item_id, event, weight, ts``) over the item
    embeddings ``vectors`` (row ``r`` is item ``item_ids[r]``) of ``embedding_version``."""
    pairs = behaviour_pairs(interactions, item_ids)
    if pairs.labels[:, -1].sum() == 0 or len(pairs.behaviours) < 2:
        raise ValueError(
            f"MUIRML needs at least two behaviours with a deepest one present; "
            f"the interactions have {list(pairs.behaviours)}"
        )
    vectors = np.array(vectors, dtype=np.float32)  # a writable copy (torch needs one)
    users = user_vectors(pairs, vectors)
    device = device or torch.device("cpu")
    u, v = torch.from_numpy(users).to(device), torch.from_numpy(vectors).to(device)
    test = target_pairs(pairs, 2, len(v), params.seed + 1)
    fitted, aucs = {}, {}
    for name, arm in ((MULTI, params), (SINGLE, replace(params, single=True))):
        fitted[name] = fit(pairs, u, v, arm)
        aucs[name] = target_auc(fitted[name], test, u, v)
        log(f"{name}: held-out {pairs.target} AUC {aucs[name]['auc']:.4f}")
    report = RelevanceReport(
        behaviours=list(pairs.behaviours),
        target=pairs.target,
        counts={
            "pairs": len(pairs),
            "users": pairs.num_users,
            "items": len(v),
            "train_pairs": int((pairs.part == 0).sum()),
            "test_target_pairs": len(test.positive[0]),
            "dropped_interactions": pairs.dropped,
        },
        aucs=aucs,
        scenario=fitted[MULTI].scenario.tolist(),
        history={name: f.history for name, f in fitted.items()},
        embedding_version=embedding_version,
    )
    return RelevanceRun(report, fitted[MULTI], users, pairs)
