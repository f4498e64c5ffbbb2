"""The learned relevance scored in torch on a CUDA card: the graph search's candidate
batches (Q-HiPANNS, :mod:`serving.graph_search`) are the large matrix products a GPU runs
in one launch. The same arithmetic as :class:`~serving.neural_metric.NeuralMetric`'s numpy,
imported only when a card is used, so that a CPU service starts without torch."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from serving.neural_metric import NeuralMetric


@dataclass(frozen=True)
class TorchMetric(NeuralMetric):
    @cached_property
    def _weights(self) -> dict[str, torch.Tensor]:
        names = ("w0", "w1", "b1", "w2", "b2", "scenario")
        a, d = self.arrays, self.dim
        out = {n: torch.from_numpy(np.asarray(a[n], np.float32)).to(self.device) for n in names}
        out["w_item"], out["w_both"] = out["w0"][:, d : 2 * d].T, out["w0"][:, 2 * d : 3 * d].T
        return out

    @torch.inference_mode()
    def pair_scores(self, users: np.ndarray, terms: np.ndarray, items: np.ndarray) -> np.ndarray:
        w = self._weights
        u, t, v = (torch.from_numpy(np.asarray(x, np.float32)).to(self.device)
                   for x in (users, terms, items))  # fmt: skip
        hidden = t + v @ w["w_item"] + (u * v) @ w["w_both"]
        hidden = torch.relu(torch.relu(hidden) @ w["w1"].T + w["b1"])
        return (torch.sigmoid(hidden @ w["w2"].T + w["b2"]) @ w["scenario"]).cpu().numpy()
