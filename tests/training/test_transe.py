"""TransE's margin loss: PyG's, with one embedding lookup."""

from __future__ import annotations

import torch
from torch_geometric.nn.kge import TransE

from training.transe import margin_loss


def test_margin_loss_and_its_gradients_equal_pygs():
    g = torch.Generator().manual_seed(0)
    head, tail = torch.randint(50, (2, 64), generator=g)
    rel = torch.randint(3, (64,), generator=g)
    losses, grads = [], []
    for loss in (TransE.loss, margin_loss):
        torch.manual_seed(0)  # the same initialisation and the same corrupted triples
        model = TransE(50, 3, 8, margin=1.0, p_norm=1.0)
        value = loss(model, head, rel, tail)
        value.backward()
        losses.append(value.detach())
        grads.append([p.grad for p in model.parameters()])
    torch.testing.assert_close(losses[0], losses[1])
    for ours, pyg in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(ours, pyg)
