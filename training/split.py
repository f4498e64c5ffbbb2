"""The evaluation split, fixed by seed before training and part of the lineage.

* **test EELs**: a share of the EEL pairs between non-held-out entities, absent from
  training and from message passing when the test metrics are computed (Co-Sim);
* **inductive entities**: a share of the entities with EELs, all their EELs removed from
  training; at evaluation they keep only their concept edges (*strict cold start*) or
  get up to ``warmup_links`` of their EELs back (*warm-up*, the **warm-up pairs**).

The trainer's own validation pairs are drawn later, from what is left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from training.arrays import unique_ints
from training.kg_arrays import KGArrays

TEST, INDUCTIVE, WARMUP = "test", "inductive", "warmup"


@dataclass(frozen=True)
class SplitParams:
    test_share: float = 0.1
    inductive_share: float = 0.2
    warmup_links: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("test_share", "inductive_share"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"SplitParams.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.warmup_links < 0:
            raise ValueError(f"warmup_links must be >= 0, got {self.warmup_links}")


@dataclass(frozen=True)
class EvaluationSplit:
    test_pairs: np.ndarray  # (2, P) undirected, src < dst
    inductive: np.ndarray  # (M,) entity ids
    warmup_pairs: np.ndarray  # (2, W) (inductive entity, neighbour)

    def to_arrow(self) -> pa.Table:
        """One row per pair or entity: ``role``, ``src``, ``dst`` (null for an entity)."""
        n_t, n_i, n_w = self.test_pairs.shape[1], len(self.inductive), self.warmup_pairs.shape[1]
        return pa.table(
            {
                "role": [TEST] * n_t + [INDUCTIVE] * n_i + [WARMUP] * n_w,
                "src": pa.array(
                    np.concatenate([self.test_pairs[0], self.inductive, self.warmup_pairs[0]]),
                    pa.int64(),
                ),
                "dst": pa.array(
                    [*self.test_pairs[1].tolist(), *([None] * n_i), *self.warmup_pairs[1].tolist()],
                    pa.int64(),
                ),
            }
        )

    @classmethod
    def from_arrow(cls, table: pa.Table) -> EvaluationSplit:
        roles = np.asarray(table.column("role").to_pylist())
        src = table.column("src").to_numpy()
        dst = table.column("dst").fill_null(-1).to_numpy()

        def pairs(role: str) -> np.ndarray:
            mask = roles == role
            return np.stack([src[mask], dst[mask]]).astype(np.int64)

        return cls(pairs(TEST), np.sort(src[roles == INDUCTIVE]).astype(np.int64), pairs(WARMUP))


def _undirected(eel: np.ndarray) -> np.ndarray:
    return eel[:, eel[0] < eel[1]]


def make_split(kg: KGArrays, params: SplitParams) -> EvaluationSplit:
    rng = np.random.default_rng(params.seed)
    pairs = _undirected(kg.eel)
    linked = unique_ints(pairs)
    inductive = np.sort(
        rng.choice(linked, size=int(params.inductive_share * len(linked)), replace=False)
    )
    is_inductive = np.zeros(kg.num_entities, dtype=bool)
    is_inductive[inductive] = True
    touching = is_inductive[pairs[0]] | is_inductive[pairs[1]]
    rest = pairs[:, ~touching]
    test = rest[:, rng.permutation(rest.shape[1])[: int(params.test_share * rest.shape[1])]]
    # each inductive entity's first `warmup_links` neighbours in a seeded random order
    directed = kg.eel[:, is_inductive[kg.eel[0]]]
    directed = directed[:, rng.permutation(directed.shape[1])]
    order = np.argsort(directed[0], kind="stable")
    directed = directed[:, order]
    starts = np.searchsorted(directed[0], directed[0], side="left")
    rank = np.arange(directed.shape[1]) - starts
    warmup = directed[:, rank < params.warmup_links]
    return EvaluationSplit(test, inductive, warmup)


def training_view(kg: KGArrays, split: EvaluationSplit) -> KGArrays:
    """``kg`` without the test EELs and without every EEL of an inductive entity."""
    is_inductive = np.zeros(kg.num_entities, dtype=bool)
    is_inductive[split.inductive] = True
    keep = ~(is_inductive[kg.eel[0]] | is_inductive[kg.eel[1]])
    return kg.with_eels(kg.eel[:, keep], kg.eel_weight[keep]).without_eels(split.test_pairs)


def warmup_view(kg: KGArrays, split: EvaluationSplit) -> KGArrays:
    """The training view plus the warm-up EELs of the inductive entities (both ways)."""
    train = training_view(kg, split)
    n = kg.num_entities
    wanted = np.concatenate(
        [
            split.warmup_pairs[0] * n + split.warmup_pairs[1],
            split.warmup_pairs[1] * n + split.warmup_pairs[0],
        ]
    )
    add = np.isin(kg.eel[0] * n + kg.eel[1], wanted)
    return kg.with_eels(
        np.concatenate([train.eel, kg.eel[:, add]], axis=1),
        np.concatenate([train.eel_weight, kg.eel_weight[add]]),
    )
