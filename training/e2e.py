"""End-to-end training (E2E-GRec): the GNN runs inside the ranker's training step, against
the two-stage pipeline it replaces, in one run of arms on the same split.

Arms (:data:`ARMS`):

* ``no_graph``: the two-tower ranker alone;
* ``two_stage``: the GNN first trained on its own pretext task (co-engaged item pairs, the
  link objective SemanticGNN trains on in the lineage), then frozen: its full-graph outputs
  are the ranker's graph features;
* ``end_to_end``: GNN and ranker trained together on sampled subgraphs, the ranking loss
  and GFAE's reconstruction balanced by GradNorm;
* ``e2e_no_gfae``: the same without GFAE (ranking loss alone);
* ``e2e_fixed_weights``: the same with GFAE at a fixed weight of 1 instead of GradNorm.

Every arm trains on the training rows with in-batch and uniformly sampled negatives
(softmax over the batch's positives and :attr:`E2EParams.negatives` random items, each
logit corrected by its candidate's log sampling rate), keeps
the epoch of best validation NDCG@20 and is measured once on test. A user in a step is
the mean of a fan-out sample of their training history, their positive item left out.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.e2e_eval import UserScorer, means, per_user_metrics, user_metrics
from training.e2e_model import GraphEncoder, TwoTowerRanker, scores
from training.gfae import FeatureAutoEncoder
from training.gradnorm import GradNorm
from training.hetero_graph import COENGAGED, HeteroGraph
from training.subgraph import Csr, k_hop, sample_incoming
from training.time_split import UserTimeSplit

Queries = tuple[Tensor, list[Tensor], list[Tensor]]  # users, their histories, their truth
NO_GRAPH, TWO_STAGE, END_TO_END = "no_graph", "two_stage", "end_to_end"
NO_GFAE, FIXED_WEIGHTS = "e2e_no_gfae", "e2e_fixed_weights"


@dataclass(frozen=True)
class Arm:
    graph: str  # "none", "frozen" or "joint"
    gfae: bool = False
    gradnorm: bool = False


@dataclass(frozen=True)
class Pretrained:
    """Stage one of two-stage: the GNN's full-graph outputs after its training on
    co-engaged pairs, and the seconds of each part."""

    outputs: Tensor
    seconds: float
    inference_seconds: float


ARMS = {
    NO_GRAPH: Arm("none"),
    TWO_STAGE: Arm("frozen"),
    END_TO_END: Arm("joint", gfae=True, gradnorm=True),
    NO_GFAE: Arm("joint"),
    FIXED_WEIGHTS: Arm("joint", gfae=True),
}


@dataclass(frozen=True)
class E2EParams:
    dim: int = 32
    layers: int = 2
    fanouts: tuple[int, ...] = (8, 4)
    history: int = 10  # the user -> item fan-out of a training step
    serve_history: int = 50  # a query's most recent items
    batch_size: int = 512
    negatives: int = 512
    epochs: int = 10
    pretrain_epochs: int = 2
    lr: float = 0.005
    gfae_share: float = 0.2
    gradnorm_alpha: float = 1.5
    max_steps_per_epoch: int = 200
    seed: int = 0


@dataclass
class ArmResult:
    validation: dict[str, float]  # of the kept epoch
    test: dict[str, float]
    epoch: int
    test_ndcg_per_user: list[float]  # in the order of the test queries, for paired tests
    step_seconds: float  # mean seconds per training step
    train_seconds: float
    inference_seconds: float  # one full-graph GNN pass (0 without a graph)
    curve: list[float] = field(default_factory=list)  # validation NDCG@20 per epoch
    loss_weights: list[list[float]] = field(default_factory=list)  # GradNorm's, per step


class E2EModel(nn.Module):
    """The GNN (absent, or frozen outputs), the ranker and GFAE of one arm."""

    def __init__(
        self, graph: HeteroGraph, arm: Arm, params: E2EParams, frozen: Tensor | None
    ) -> None:
        super().__init__()
        features = graph.x.shape[1]
        self.arm = arm
        self.encoder = (
            GraphEncoder(
                graph.num_items,
                graph.num_nodes,
                features,
                len(graph.relations),
                params.dim,
                params.layers,
            )
            if arm.graph == "joint"
            else None
        )
        self.register_buffer("frozen", frozen if frozen is not None else torch.empty(0))
        graph_dim = 0 if arm.graph == "none" else params.dim
        self.ranker = TwoTowerRanker(graph.num_items, features, params.dim, graph_dim)
        self.gfae = (
            FeatureAutoEncoder(params.dim, features, params.gfae_share) if arm.gfae else None
        )

    def full_graph(self, graph: HeteroGraph) -> Tensor | None:
        """Every node's GNN output (the refresh's full-graph inference)."""
        if self.arm.graph == "none":
            return None
        if self.arm.graph == "frozen":
            return self.frozen
        dev = graph.x.device
        edges = graph.csr.edge_index().to(dev)
        nodes = torch.arange(graph.num_nodes, device=dev)
        return self.encoder(nodes, graph.x, graph.known, edges, graph.csr.rel.to(dev))

    def item_vectors(self, graph: HeteroGraph, g: Tensor | None) -> Tensor:
        items = torch.arange(graph.num_items, device=graph.x.device)
        own = self.ranker.item_features(items, graph.x[items], graph.known)
        return self.ranker.items(own, None if g is None else g[items])

    def history_rows(self, graph: HeteroGraph, g: Tensor | None) -> Tensor:
        """Per item, the row a user's history pools: ``[e_i ; x_i ; g_i]``."""
        items = torch.arange(graph.num_items, device=graph.x.device)
        own = self.ranker.item_features(items, graph.x[items], graph.known)
        return own if g is None else torch.cat([own, g[items]], 1)


def _pad(owner: Tensor, values: Tensor, rows: int, width: int) -> tuple[Tensor, Tensor]:
    """``(rows, width)`` values by owner (grouped, in order) and their 0/1 weights."""
    counts = torch.bincount(owner, minlength=rows)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(owner)) - first[owner]
    out = torch.zeros(rows, width, dtype=values.dtype)
    w = torch.zeros(rows, width)
    out[owner, rank] = values
    w[owner, rank] = 1.0
    return out, w


class Trainer:
    def __init__(
        self, graph: HeteroGraph, split: UserTimeSplit, params: E2EParams, device: torch.device
    ) -> None:
        self.graph = HeteroGraph(
            graph.csr, graph.relations, graph.x.to(device), graph.known.to(device), graph.num_items
        )
        self.split, self.params, self.device = split, params, device
        self.user, self.item = (torch.from_numpy(a) for a in split.rows(0))
        self.histories = Csr.incoming(
            self.item, self.user, torch.zeros_like(self.user), split.num_users
        )
        # log Q of each item as a candidate: positives are drawn by training frequency,
        # the random negatives uniformly; subtracting it from the logits makes the sampled
        # softmax an unbiased stand-in for the full one (Yi et al. 2019), so in-batch
        # negatives do not teach the ranker that popular items are bad
        frequency = torch.bincount(self.item, minlength=graph.num_items).float() / len(self.item)
        expected = params.batch_size * frequency + params.negatives / graph.num_items
        self.log_q = torch.log(expected).to(device)
        self.valid = split.queries(1)
        self.test = split.queries(2)
        self.generator = torch.Generator().manual_seed(params.seed)

    # one step ---------------------------------------------------------------------------
    def _graph_outputs(self, model: E2EModel, seeds: Tensor) -> tuple[Tensor | None, Tensor]:
        """The seeds' GNN outputs and GFAE's loss (0 without it)."""
        zero = torch.zeros((), device=self.device)
        if model.arm.graph == "none":
            return None, zero
        if model.arm.graph == "frozen":
            return model.frozen[seeds.to(self.device)], zero
        sub = k_hop(self.graph.csr, seeds, self.params.fanouts, self.generator)
        x = self.graph.x[sub.nodes.to(self.device)]
        masked = None
        if model.gfae is not None:
            x, masked = model.gfae.mask(x, sub.num_seeds, self.generator)
        g = model.encoder(
            sub.nodes.to(self.device),
            x,
            self.graph.known,
            sub.edge_index.to(self.device),
            sub.edge_type.to(self.device),
        )[: sub.num_seeds]
        if masked is None:
            return g, zero
        return g, model.gfae.loss(g[masked], self.graph.x[seeds.to(self.device)[masked]])

    def ranking_losses(self, model: E2EModel, rows: Tensor) -> tuple[Tensor, Tensor]:
        p = self.params
        users, positives = self.user[rows], self.item[rows]
        item, owner, _ = sample_incoming(self.histories, users, p.history + 1, self.generator)
        history, weights = _pad(owner, item, len(rows), p.history + 1)
        weights = weights * (history != positives.unsqueeze(1))  # the positive is not history
        negatives = torch.randint(self.graph.num_items, (p.negatives,), generator=self.generator)
        candidates = torch.cat([positives, negatives])
        seeds, inverse = torch.unique(
            torch.cat([candidates, history.view(-1)]), return_inverse=True
        )
        g, gfae_loss = self._graph_outputs(model, seeds)
        cand_at, hist_at = (
            inverse[: len(candidates)].to(self.device),
            inverse[len(candidates) :].to(self.device),
        )
        dev_cand, dev_hist = candidates.to(self.device), history.view(-1).to(self.device)
        x, known = self.graph.x, self.graph.known
        cand = model.ranker.items(
            model.ranker.item_features(dev_cand, x[dev_cand], known),
            None if g is None else g[cand_at],
        )
        own = model.ranker.item_features(dev_hist, x[dev_hist], known).view(
            len(rows), p.history + 1, -1
        )
        hist_g = None if g is None else g[hist_at].view(len(rows), p.history + 1, -1)
        user = model.ranker.users(own, hist_g, weights.to(self.device))
        logits = scores(user, cand) - self.log_q[dev_cand]
        # another row's positive (or a random negative) that is this row's positive is no negative
        clash = candidates.unsqueeze(0) == positives.unsqueeze(1)
        clash[torch.arange(len(rows)), torch.arange(len(rows))] = False
        logits = logits.masked_fill(clash.to(self.device), -torch.inf)
        target = torch.arange(len(rows), device=self.device)
        return F.cross_entropy(logits, target), gfae_loss

    # evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def scorer(self, model: E2EModel, g: Tensor | None = None) -> UserScorer:
        """The model's user scorer; ``g``: its full-graph outputs when already computed."""
        model.eval()
        if g is None:
            g = model.full_graph(self.graph)
        items = model.item_vectors(self.graph, g)
        rows = model.history_rows(self.graph, g)
        cap = self.params.serve_history

        @torch.no_grad()
        def score(history: list[Tensor]) -> Tensor:
            recent = [h[-cap:] for h in history]
            owner = torch.repeat_interleave(
                torch.arange(len(recent)), torch.tensor([len(h) for h in recent])
            )
            ids, w = _pad(owner, torch.cat(recent), len(recent), cap)
            pooled = rows[ids.to(self.device)]
            own, hist_g = (
                (pooled, None)
                if g is None
                else pooled.split([pooled.shape[-1] - g.shape[1], g.shape[1]], -1)
            )
            return scores(model.ranker.users(own, hist_g, w.to(self.device)), items)

        return score

    def measure(self, scorer: UserScorer, queries: Queries) -> dict[str, float]:
        _, history, truth = queries
        return user_metrics(scorer, history, truth)

    def evaluate(self, model: E2EModel, queries: Queries) -> dict[str, float]:
        return self.measure(self.scorer(model), queries)

    # training ----------------------------------------------------------------------------
    def train(
        self, name: str, pretrained: Pretrained | None = None, log: Callable[[str], None] = print
    ) -> tuple[E2EModel, ArmResult]:
        arm, p = ARMS[name], self.params
        if arm.graph == "frozen" and pretrained is None:
            raise ValueError(f"Arm {name} needs the pretrained GNN (Trainer.pretrain)")
        torch.manual_seed(p.seed)
        frozen = pretrained.outputs if arm.graph == "frozen" else None
        model = E2EModel(self.graph, arm, p, frozen).to(self.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=p.lr)
        balance = GradNorm(2, p.gradnorm_alpha) if arm.gradnorm else None
        n = len(self.user)
        steps = min(p.max_steps_per_epoch, max(1, n // p.batch_size))
        best, best_state, kept, curve, step_times = -1.0, None, 0, [], []
        started = time.perf_counter()
        for epoch in range(p.epochs):
            model.train()
            for _ in range(steps):
                tick = time.perf_counter()
                rows = torch.randint(n, (p.batch_size,), generator=self.generator)
                rank_loss, gfae_loss = self.ranking_losses(model, rows)
                optimizer.zero_grad()
                if balance is not None:
                    balance.backward(
                        torch.stack([rank_loss, gfae_loss]), model.encoder.shared_weight()
                    )
                else:
                    (rank_loss + gfae_loss).backward()
                optimizer.step()
                step_times.append(time.perf_counter() - tick)
            value = self.evaluate(model, self.valid)["ndcg@20"]
            curve.append(value)
            log(f"{name} epoch {epoch + 1}/{p.epochs}: validation NDCG@20 {value:.4f}")
            if best_state is None or value > best:  # NaN (no validation users): the first
                best, best_state, kept = value, copy.deepcopy(model.state_dict()), epoch
        train_seconds = time.perf_counter() - started
        model.load_state_dict(best_state)
        tick = time.perf_counter()
        with torch.no_grad():
            model.eval()
            g = model.full_graph(self.graph)
        inference = time.perf_counter() - tick if arm.graph == "joint" else 0.0
        score = self.scorer(model, g)  # one full-graph pass serves validation and test
        _, history, truth = self.test
        test = per_user_metrics(score, history, truth)
        result = ArmResult(
            validation=self.measure(score, self.valid),
            test=means(test),
            epoch=kept + 1,
            test_ndcg_per_user=test["ndcg@20"].tolist(),
            step_seconds=float(np.mean(step_times)),
            train_seconds=train_seconds,
            inference_seconds=inference,
            curve=curve,
            loss_weights=balance.history if balance else [],
        )
        return model, result

    def pretrain(self, log: Callable[[str], None] = print) -> Pretrained:
        """Stage one of two-stage: the GNN alone on co-engaged item pairs (in-batch
        softmax), then its full-graph outputs."""
        p = self.params
        torch.manual_seed(p.seed)
        encoder_model = E2EModel(self.graph, Arm("joint"), p, None).to(self.device)
        encoder = encoder_model.encoder
        optimizer = torch.optim.Adam(encoder.parameters(), lr=p.lr)
        csr = self.graph.csr
        co = csr.rel == self.graph.relations.index(COENGAGED)
        pairs = csr.edge_index()[:, co]
        started = time.perf_counter()
        steps = min(p.max_steps_per_epoch, max(1, pairs.shape[1] // p.batch_size))
        if not pairs.shape[1]:
            log("two_stage pretraining: no co-engaged pairs, the GNN keeps its initialisation")
        for epoch in range(p.pretrain_epochs if pairs.shape[1] else 0):
            for _ in range(steps):
                batch = pairs[
                    :, torch.randint(pairs.shape[1], (p.batch_size,), generator=self.generator)
                ]
                seeds, inverse = torch.unique(batch.reshape(-1), return_inverse=True)
                g, _ = self._graph_outputs(encoder_model, seeds)
                z = F.normalize(g[inverse.to(self.device)].view(2, p.batch_size, -1), dim=-1)
                target = torch.arange(p.batch_size, device=self.device)
                loss = F.cross_entropy(scores(z[0], z[1]), target)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            log(f"two_stage pretraining {epoch + 1}/{p.pretrain_epochs}: loss {loss.item():.3f}")
        pretrain_seconds = time.perf_counter() - started
        tick = time.perf_counter()
        with torch.no_grad():
            encoder_model.eval()
            frozen = encoder_model.full_graph(self.graph)
        return Pretrained(
            frozen.detach(),
            pretrain_seconds,
            time.perf_counter() - tick,
        )
