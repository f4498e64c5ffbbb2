"""One run of every end-to-end arm and peer on one split, its report, and the served
ranker it exports (the ``end_to_end`` arm).

The report holds each arm's validation and test metrics, step time, training and
full-graph inference seconds, GradNorm's weights over training, and the refresh cost of
each pipeline: two-stage pays GNN pretraining, one full-graph inference and the ranker's
training; end-to-end pays its joint training and one full-graph inference.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from storage.layout import E2E_RANKER
from training import e2e_eval as E
from training.cross_domain import interaction_signals_of
from training.e2e import ARMS, END_TO_END, TWO_STAGE, ArmResult, E2EModel, E2EParams, Trainer
from training.e2e_model import TEMPERATURE
from training.hetero_graph import hetero_graph
from training.ranking import bootstrap_interval
from training.time_split import E2EInputs, user_time_split

TARGET = 1.05  # end-to-end over two-stage, NDCG@20 (the bar)
REPORT = "e2e_report.json"
POPULAR, ITEMCF, EASE = "popular", "itemcf", "ease"


@dataclass
class E2EReport:
    counts: dict[str, int]
    arms: dict[str, dict]  # name -> ArmResult as a dict
    peers: dict[str, dict]  # name -> {"validation", "test", "lam"}
    costs: dict[str, float]  # seconds of a refresh, per pipeline
    params: dict

    def ndcg(self, name: str) -> float:
        return (self.arms.get(name) or self.peers[name])["test"]["ndcg@20"]

    def difference(self) -> tuple[float, float, float]:
        """End-to-end minus two-stage test NDCG@20, paired per test user: the mean and its
        95% bootstrap interval (NaN without both arms)."""
        if not {END_TO_END, TWO_STAGE} <= set(self.arms):
            return math.nan, math.nan, math.nan
        e2e, base = (
            torch.tensor(self.arms[a]["test_ndcg_per_user"]) for a in (END_TO_END, TWO_STAGE)
        )
        diff = e2e - base
        lo, hi = bootstrap_interval(diff)
        return float(diff.nanmean()), lo, hi

    @property
    def holds(self) -> bool:
        """The gate: end-to-end is not worse than two-stage beyond the noise of the test
        users (the upper end of the difference's interval is at least 0)."""
        return bool(self.difference()[2] >= 0)

    @property
    def ratio(self) -> float:
        """End-to-end over two-stage, test NDCG@20 (NaN without both)."""
        if not {END_TO_END, TWO_STAGE} <= set(self.arms):
            return math.nan
        base = self.ndcg(TWO_STAGE)
        return self.ndcg(END_TO_END) / base if base else math.nan

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / REPORT).write_text(json.dumps(asdict(self), indent=1))


def load_report(folder: Path) -> E2EReport:
    return E2EReport(**json.loads((folder / REPORT).read_text()))


def _peers(trainer: Trainer) -> dict[str, dict]:
    split = trainer.split
    user, item = split.rows(0)
    signals = interaction_signals_of(user, item, split.num_users, split.num_items)
    out = {}
    for name, scorer in ((POPULAR, E.popular(signals)), (ITEMCF, E.itemcf(signals))):
        out[name] = {
            "validation": trainer.measure(scorer, trainer.valid),
            "test": trainer.measure(scorer, trainer.test),
            "lam": None,
        }
    best = None
    for lam in E.EASE_LAMBDAS:
        scorer = E.ease(user, item, split.num_users, split.num_items, lam)
        if scorer is None:
            return out  # too many items for EASE's dense matrix
        valid = trainer.measure(scorer, trainer.valid)
        if best is None or valid["ndcg@20"] > best[1]["ndcg@20"]:
            best = (lam, valid, scorer)
    lam, valid, scorer = best
    out[EASE] = {"validation": valid, "test": trainer.measure(scorer, trainer.test), "lam": lam}
    return out


@dataclass
class E2ERun:
    """A run's report and its ``end_to_end`` model; saved as the report, plus the served
    ranker only when the gate (:attr:`E2EReport.holds`) lets it through, so the service
    keeps the last ranker that passed."""

    report: E2EReport
    model: E2EModel | None
    trainer: Trainer
    item_ids: np.ndarray

    @property
    def publishes(self) -> bool:
        return self.model is not None and self.report.holds

    def save(self, folder: Path) -> None:
        self.report.save(folder)
        if self.publishes:
            export_ranker(self.model, self.trainer, self.item_ids, folder / E2E_RANKER)


def run_arms(
    data: E2EInputs,
    params: E2EParams,
    device: torch.device,
    arms: tuple[str, ...] = tuple(ARMS),
    log: Callable[[str], None] = print,
) -> E2ERun:
    """Every arm in ``arms`` and every peer, on one temporal split of ``data``."""
    split = user_time_split(data)
    trainer = Trainer(hetero_graph(data, split, params.seed), split, params, device)
    results: dict[str, ArmResult] = {}
    served = None
    needs = any(ARMS[name].graph == "frozen" for name in arms)
    pretrained = trainer.pretrain(log) if needs else None
    for name in arms:
        model, results[name] = trainer.train(name, pretrained, log)
        if name == END_TO_END:
            served = model
    costs = {}
    if TWO_STAGE in results:
        stage_one = pretrained.seconds + pretrained.inference_seconds
        costs["two_stage"] = stage_one + results[TWO_STAGE].train_seconds
    if END_TO_END in results:
        e2e = results[END_TO_END]
        costs["end_to_end"] = e2e.train_seconds + e2e.inference_seconds
    counts = {
        "users": split.num_users,
        "items": split.num_items,
        **{
            f"{part}_rows": int((split.part == i).sum())
            for i, part in enumerate(("train", "validation", "test"))
        },
        "validation_queries": len(trainer.valid[0]),
        "test_queries": len(trainer.test[0]),
        "graph_edges": int(trainer.graph.csr.col.numel()),
    }
    report = E2EReport(
        counts=counts,
        arms={name: asdict(r) for name, r in results.items()},
        peers=_peers(trainer),
        costs=costs,
        params=asdict(params),
    )
    return E2ERun(report, served, trainer, data.item_ids)


@torch.no_grad()
def export_ranker(model: E2EModel, trainer: Trainer, item_ids: np.ndarray, path: Path) -> None:
    """What the service needs to re-score candidates without torch: every item's output
    and history row, and the user tower's weights (:mod:`serving.e2e_ranker`)."""
    model.eval()
    graph = trainer.graph
    g = model.full_graph(graph)
    tower = model.ranker.user_tower
    first, second = tower.mlp[0], tower.mlp[2]
    arrays = {
        "item_ids": item_ids.astype(str),
        "items": model.item_vectors(graph, g),
        "history_rows": model.history_rows(graph, g),
        "mlp0_weight": first.weight, "mlp0_bias": first.bias,
        "mlp1_weight": second.weight, "mlp1_bias": second.bias,
        "gate_weight": tower.gate.weight, "gate_bias": tower.gate.bias,
        "project_weight": tower.project.weight,
        "temperature": torch.tensor(TEMPERATURE),
        "serve_history": torch.tensor(trainer.params.serve_history),
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        **{k: v.cpu().numpy() if isinstance(v, torch.Tensor) else v for k, v in arrays.items()},
    )
