r"""Graph Feature Auto-Encoder (Hasibi & Michoel, 2020) as an auxiliary self-supervised loss.

A share of the sampled seed nodes has its input features replaced by a learned mask token;
a linear decoder reconstructs them from the GNN's outputs, and the loss is the mean squared
error on the masked nodes alone:

.. math::
    \mathcal{L}_{\text{GFAE}} = \frac{1}{|M| F} \sum_{v \in M}
        \lVert W_d h_v + b_d - x_v \rVert^2

so the embeddings the ranker also trains keep what the node's neighbourhood says about its
own content (an item's concepts, its popularity), not only what ranks the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FeatureAutoEncoder(nn.Module):
    def __init__(self, dim: int, features: int, share: float = 0.2) -> None:
        super().__init__()
        if not 0.0 < share < 1.0:
            raise ValueError(f"The masked share must be in (0, 1), got {share}")
        self.share = share
        self.mask_token = nn.Parameter(torch.zeros(features))
        self.decoder = nn.Linear(dim, features)

    def mask(self, x: Tensor, eligible: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``x`` with a random ``share`` of its first ``eligible`` rows (the seeds) replaced
        by the mask token, and those rows' positions."""
        count = max(1, round(eligible * self.share))
        masked = torch.randperm(eligible, generator=generator)[:count].to(x.device)
        out = x.clone()
        out[masked] = self.mask_token
        return out, masked

    def loss(self, h: Tensor, x: Tensor) -> Tensor:
        """Reconstruction error of features ``x`` from outputs ``h`` (the masked rows)."""
        return F.mse_loss(self.decoder(h), x)
