r"""GradNorm (Chen et al., 2018): task weights that balance the tasks' training rates.

For tasks with losses :math:`L_i(t)` and weights :math:`w_i`, on the last shared layer's
parameters :math:`W`:

.. math::
    G_i = \lVert \nabla_W\, w_i L_i \rVert_2, \qquad
    r_i = \frac{L_i(t) / L_i(0)}{\operatorname{mean}_j\, L_j(t) / L_j(0)}, \qquad
    \mathcal{L}_{\text{grad}} = \sum_i \big|\, G_i - \bar G\, r_i^{\alpha} \big|

with the targets :math:`\bar G r_i^\alpha` held constant; the weights take a gradient step
on :math:`\mathcal{L}_{\text{grad}}` and are renormalised to sum to the number of tasks. A
task whose loss falls slower (larger :math:`r_i`) gets a larger gradient target, so its
weight rises.
"""

from __future__ import annotations

import torch
from torch import Tensor


class GradNorm:
    def __init__(self, tasks: int, alpha: float = 1.5, lr: float = 0.025) -> None:
        self.tasks = tasks
        self.alpha = alpha
        self.weights = torch.ones(tasks, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.weights], lr=lr)
        self.initial: Tensor | None = None
        self.history: list[list[float]] = []

    def backward(self, losses: Tensor, shared: Tensor) -> None:
        """Backpropagate ``Σ w_i L_i`` into the model and update the weights (``losses``
        ``(T,)``, still attached to the graph; ``shared``: the last shared layer's weight)."""
        detached = losses.detach()
        if self.initial is None:
            self.initial = detached.clamp(min=1e-12)
        norms = torch.stack(
            [
                torch.autograd.grad(losses[i], shared, retain_graph=True)[0].norm()
                for i in range(self.tasks)
            ]
        )
        g = self.weights * norms  # G_i, differentiable in the weights only
        rate = detached / self.initial
        target = (g.mean() * (rate / rate.mean()) ** self.alpha).detach()
        (self.weights.detach() * losses).sum().backward()
        self.optimizer.zero_grad()
        (g - target).abs().sum().backward()
        self.optimizer.step()
        with torch.no_grad():
            self.weights.clamp_(min=1e-3)
            self.weights.mul_(self.tasks / self.weights.sum())
        self.history.append(self.weights.tolist())

    def current(self) -> Tensor:
        return self.weights.detach().clone()
