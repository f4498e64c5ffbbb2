"""The end-to-end ranker as the service runs it: numpy, no torch.

The training side (:func:`training.e2e_run.export_ranker`) writes every item's output
vector ``o_i`` and history row ``[e_i ; x_i ; g_i]``, and the user tower's weights. A user
is their history: the weighted mean of its rows is the tower's input, and the tower is
:class:`training.e2e_model.Tower` with a graph part (a test checks that both give the same
vector):

.. math::
    t = W_1\\, \\mathrm{ReLU}(W_0 r + b_0) + b_1, \\quad
    a = \\sigma(W_a [t ; g] + b_a), \\quad
    o_u = \\frac{a \\odot t + (1 - a) \\odot P g}{\\lVert \\cdot \\rVert}

and a candidate's score is ``o_uᵀ o_i / τ``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storage.layout import E2E_RANKER
from storage.versions import newest_loaded


@dataclass(frozen=True)
class E2ERanker:
    arrays: dict[str, np.ndarray]
    row_of: dict[str, int]  # item id -> row

    @property
    def serve_history(self) -> int:
        return int(self.arrays["serve_history"])

    def user(self, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The user vector of history rows ``rows`` (most recent last), ``weights`` each."""
        a = self.arrays
        rows, weights = rows[-self.serve_history :], weights[-self.serve_history :]
        pooled = (a["history_rows"][rows] * weights[:, None]).sum(0) / max(
            float(weights.sum()), 1e-12
        )
        g = pooled[-a["project_weight"].shape[1] :]
        hidden = np.maximum(a["mlp0_weight"] @ pooled + a["mlp0_bias"], 0.0)
        t = a["mlp1_weight"] @ hidden + a["mlp1_bias"]
        gate = 1.0 / (1.0 + np.exp(-(a["gate_weight"] @ np.concatenate([t, g]) + a["gate_bias"])))
        out = gate * t + (1.0 - gate) * (a["project_weight"] @ g)
        return out / max(float(np.linalg.norm(out)), 1e-12)

    def scores(self, user: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return self.arrays["items"][rows] @ user / float(self.arrays["temperature"])

    def rerank(
        self, history: list[str], weights: np.ndarray, candidates: list[str]
    ) -> list[tuple[int, float | None]]:
        """Candidate positions by descending ranker score for a user with ``history``
        (item ids, oldest first); candidates the ranker has not seen come last, in their
        order, without a score."""
        mine = [i for i, item in enumerate(history) if item in self.row_of]
        rows = np.array([self.row_of[history[i]] for i in mine], dtype=np.int64)
        user = self.user(rows, np.asarray(weights, dtype=np.float32)[mine])
        seen = [p for p, item in enumerate(candidates) if item in self.row_of]
        unseen = [p for p, item in enumerate(candidates) if item not in self.row_of]
        values = self.scores(user, np.array([self.row_of[candidates[p]] for p in seen], np.int64))
        order = np.argsort(-values, kind="stable")
        return [(seen[i], float(values[i])) for i in order] + [(p, None) for p in unseen]


def newest_ranker(root: Path | None) -> E2ERanker | None:
    """The ranker of the newest version under ``root`` that has one (a version whose
    ranker lost to two-stage has its report only), or None (also when it does not load:
    the service then answers strategy e2e with a 409 and everything else as before)."""
    return newest_loaded(root, E2E_RANKER, load_ranker)


def load_ranker(folder: Path) -> E2ERanker:
    with np.load(folder / E2E_RANKER) as data:
        arrays = {name: data[name] for name in data.files}
    ids = arrays.pop("item_ids").tolist()
    return E2ERanker(arrays, {item: row for row, item in enumerate(ids)})
