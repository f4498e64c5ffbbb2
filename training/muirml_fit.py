"""Training MUIRML on behaviour pairs, tuning its scenario weights, and measuring it.

An epoch visits every training pair once in shuffled minibatches, each with ``negatives``
random items per pair for the same users (all labels 0); the loss is
:meth:`training.muirml.MUIRML.loss` (behaviour BCE + λ·SCL). The epoch with the best
validation AUC is kept. The scenario (the deepest behaviour: purchases) then gets its own
attention weights, fitted on validation pairs with the MLP frozen, so that the relevance
ranks that behaviour's pairs above the rest (the paper's per-scenario weights).

The single-behaviour baseline is the same network with one output, "engaged" (any
behaviour), trained and measured the same way.

The measurement (:func:`target_auc`) takes one part's pairs with the target behaviour as
positives against two kinds of negatives: the part's other pairs (engaged, but shallower)
and as many random items the user never engaged; it reports the AUC against each and
against both pooled.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from training.behaviours import BehaviourPairs
from training.muirml import MUIRML
from training.trainer import auc, generator

SCENARIO_STEPS = 200


@dataclass(frozen=True)
class MuirmlParams:
    hidden: int = 64
    explore: int = 4
    epochs: int = 15
    batch_size: int = 512
    lr: float = 3e-3
    negatives: int = 4  # random items per training pair
    scl_weight: float = 0.1  # λ; 0 is the ablation without SCL
    distance: str = "inner"  # the graph's: "inner" (the ann_index graph) or "l2"
    single: bool = False  # the single-behaviour baseline (one output: engaged)
    seed: int = 0


@dataclass
class Fitted:
    model: MUIRML
    scenario: Tensor  # attention weights over the outputs for the target behaviour
    single: bool
    history: list[dict] = field(default_factory=list)

    @torch.no_grad()
    def relevance(self, users: Tensor, items: Tensor) -> Tensor:
        return torch.sigmoid(self.model(users, items)) @ self.scenario


def _labels(pairs: BehaviourPairs, single: bool) -> Tensor:
    labels = torch.from_numpy(pairs.labels)
    return labels.amax(1, keepdim=True) if single else labels


@dataclass(frozen=True)
class TargetPairs:
    """One part's pairs for :func:`target_auc`: target positives, shallower engaged pairs
    and random never-engaged items, as (user, item) rows."""

    positive: tuple[Tensor, Tensor]
    shallow: tuple[Tensor, Tensor]
    random: tuple[Tensor, Tensor]


def target_pairs(pairs: BehaviourPairs, part: int, num_items: int, seed: int) -> TargetPairs:
    here = pairs.part == part
    deep = pairs.labels[:, -1] > 0
    pos, shallow = here & deep, here & ~deep
    rng = np.random.default_rng(seed)
    engaged = set(zip(pairs.user.tolist(), pairs.item.tolist(), strict=True))
    users = pairs.user[pos]
    items = rng.integers(num_items, size=len(users))
    for i in np.flatnonzero([(u, v) in engaged for u, v in zip(users, items, strict=True)]):
        while (users[i], items[i]) in engaged:  # redraw the rare engaged one
            items[i] = rng.integers(num_items)

    def rows(mask: np.ndarray) -> tuple[Tensor, Tensor]:
        return torch.from_numpy(pairs.user[mask]), torch.from_numpy(pairs.item[mask])

    return TargetPairs(rows(pos), rows(shallow), (torch.from_numpy(users), torch.from_numpy(items)))


def target_auc(
    fitted: Fitted, target: TargetPairs, users: Tensor, items: Tensor
) -> dict[str, float]:
    def score(rows: tuple[Tensor, Tensor]) -> Tensor:
        return fitted.relevance(users[rows[0].to(users.device)], items[rows[1].to(users.device)])

    pos, shallow, rand = score(target.positive), score(target.shallow), score(target.random)
    return {
        "auc": auc(pos, torch.cat([shallow, rand])),
        "auc_vs_shallow": auc(pos, shallow),
        "auc_vs_random": auc(pos, rand),
    }


def _scenario(model: MUIRML, target: TargetPairs, users: Tensor, items: Tensor) -> Tensor:
    """Attention weights that rank the target's pairs above the others (MLP frozen)."""
    with torch.no_grad():
        probs = [
            torch.sigmoid(model(users[u.to(users.device)], items[i.to(users.device)]))
            for u, i in (target.positive, target.shallow, target.random)
        ]
    pos, neg = probs[0], torch.cat(probs[1:])
    if len(pos) == 0 or len(neg) == 0:
        return model.weights().detach()
    logits = model.attention.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([logits], lr=0.05)
    gen = torch.Generator().manual_seed(0)
    for _ in range(SCENARIO_STEPS):
        a = torch.randint(len(pos), (1024,), generator=gen).to(pos.device)
        b = torch.randint(len(neg), (1024,), generator=gen).to(pos.device)
        w = F.softmax(logits, 0)
        loss = F.softplus(-(pos[a] @ w - neg[b] @ w) * 10).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return F.softmax(logits.detach(), 0)


def fit(pairs: BehaviourPairs, users: Tensor, items: Tensor, params: MuirmlParams) -> Fitted:
    """MUIRML (or the single-behaviour baseline) on ``pairs``' training part, the user and
    item vectors ``users`` ``(U, d)`` and ``items`` ``(N, d)`` fixed; it trains on their
    device (sampling stays on the CPU's seeded generator)."""
    torch.manual_seed(params.seed)
    device = users.device
    labels = _labels(pairs, params.single).to(device)
    model = MUIRML(items.shape[1], labels.shape[1], params.hidden, params.explore).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=params.lr)
    train = torch.from_numpy(np.flatnonzero(pairs.part == 0))
    user = torch.from_numpy(pairs.user).to(device)
    item = torch.from_numpy(pairs.item).to(device)
    valid = target_pairs(pairs, 1, len(items), params.seed)
    fitted = Fitted(model, model.weights().detach(), params.single)
    best, best_auc = copy.deepcopy(model.state_dict()), -1.0
    n = params.negatives
    for epoch in tqdm(range(params.epochs), desc="MUIRML", leave=False):
        gen = generator(params.seed, epoch)
        order = train[torch.randperm(len(train), generator=gen)]
        model.train()
        total = scl_total = 0.0
        for start in range(0, len(order), params.batch_size):
            rows = order[start : start + params.batch_size].to(device)
            u = user[rows].repeat(n + 1)
            negatives = torch.randint(len(items), (n * len(rows),), generator=gen).to(device)
            i = torch.cat([item[rows], negatives])
            y = torch.cat([labels[rows], labels.new_zeros(n * len(rows), labels.shape[1])])
            loss, scl = model.loss(users[u], items[i], y, params.scl_weight, gen, params.distance)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(rows)
            scl_total += float(scl.detach()) * len(rows)
        model.eval()
        fitted.scenario = model.weights().detach()
        valid_auc = target_auc(fitted, valid, users, items)["auc"]
        fitted.history.append(
            {
                "epoch": epoch,
                "loss": total / max(len(order), 1),
                "scl": scl_total / max(len(order), 1),
                "valid_auc": valid_auc,
            }
        )
        if valid_auc > best_auc:
            best, best_auc = copy.deepcopy(model.state_dict()), valid_auc
    model.load_state_dict(best)
    model.eval()
    if not params.single:
        fitted.scenario = _scenario(model, valid, users, items)
    return fitted


def export_arrays(
    fitted: Fitted, behaviours: tuple[str, ...], embedding_version: str = ""
) -> dict[str, np.ndarray]:
    """What the service needs to score (numpy, :mod:`serving.neural_metric`); the model
    only fits the embeddings of ``embedding_version``."""
    layers = [m for m in fitted.model.mlp if isinstance(m, torch.nn.Linear)]
    arrays = {f"w{n}": layer.weight.detach().cpu().numpy() for n, layer in enumerate(layers)}
    arrays |= {f"b{n}": layer.bias.detach().cpu().numpy() for n, layer in enumerate(layers)}
    arrays["scenario"] = fitted.scenario.cpu().numpy().astype(np.float32)
    arrays["dim"] = np.array((layers[0].in_features - fitted.model.explore) // 3)
    arrays["behaviours"] = np.array(["engaged"] if fitted.single else list(behaviours))
    arrays["embedding_version"] = np.array(embedding_version)
    return arrays
