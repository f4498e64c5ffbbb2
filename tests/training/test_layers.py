"""RelationAttentionConv on hand-written graphs, checked against the equations directly."""

from __future__ import annotations

import math

import pytest
import torch

from training.layers import RelationAttentionConv


def direct(conv: RelationAttentionConv, x, edge_index, edge_type, rel):
    """The layer's equations written out per target node and head."""
    out, heads = x.clone(), conv.heads
    d = x.shape[1] // heads
    for t in range(x.shape[0]):
        incoming = (edge_index[1] == t).nonzero().flatten().tolist()
        if not incoming:
            continue
        values, logits = [], []
        for e in incoming:
            c, r = int(edge_index[0, e]), int(edge_type[e])
            h_cr = conv.lin_v.weight @ torch.cat([x[c], rel[r]])
            k = (conv.lin_k.weight @ h_cr).view(heads, d)
            q = (conv.lin_q.weight @ x[t]).view(heads, d)
            logits.append((k * q).sum(-1) / math.sqrt(d) * conv.beta[r])
            values.append(h_cr.view(heads, d))
        att = torch.softmax(torch.stack(logits), dim=0)  # (incoming, heads)
        message = (att[:, :, None] * torch.stack(values)).sum(0).flatten()
        out[t] = x[t] + torch.nn.functional.elu(message)
    return out


@pytest.fixture
def graph():
    torch.manual_seed(0)
    x = torch.randn(3, 4)
    # node 0 hears 1 (relation 0) and 2 (relation 1); node 1 hears 2 (relation 1); 2 hears none
    edge_index = torch.tensor([[1, 2, 2], [0, 0, 1]])
    edge_type = torch.tensor([0, 1, 1])
    rel = torch.randn(2, 3)
    return x, edge_index, edge_type, rel


def test_matches_the_equations(graph):
    x, edge_index, edge_type, rel = graph
    conv = RelationAttentionConv(4, 3, num_relations=2)
    with torch.no_grad():
        conv.beta.copy_(torch.tensor([0.5, 2.0]))
    out, alpha = conv(x, edge_index, edge_type, rel, return_attention_weights=True)
    assert out.shape == (3, 4)
    assert torch.allclose(out, direct(conv, x, edge_index, edge_type, rel), atol=1e-6)
    assert torch.equal(out[2], x[2])  # no incoming edge: unchanged
    assert alpha.shape == (3, 1) and torch.all((alpha >= 0) & (alpha <= 1))
    assert torch.allclose(alpha[:2].sum(), torch.tensor(1.0)) and alpha[2].item() == pytest.approx(
        1.0
    )
    assert repr(conv) == "RelationAttentionConv(4, relations=2, heads=1)"


def test_gradients_reach_beta(graph):
    x, edge_index, edge_type, rel = graph
    conv = RelationAttentionConv(4, 3, num_relations=2)
    conv(x, edge_index, edge_type, rel).pow(2).sum().backward()
    assert conv.beta.grad is not None and torch.all(conv.beta.grad != 0)


def test_heads_and_empty_graph(graph):
    x, _, _, rel = graph
    conv = RelationAttentionConv(4, 3, num_relations=2, heads=2)
    empty = torch.empty(2, 0, dtype=torch.long)
    assert torch.equal(conv(x, empty, torch.empty(0, dtype=torch.long), rel), x)


def test_errors(graph):
    x, edge_index, edge_type, rel = graph
    with pytest.raises(ValueError, match="divisible by heads"):
        RelationAttentionConv(4, 3, 2, heads=3)
    conv = RelationAttentionConv(4, 3, num_relations=2)
    with pytest.raises(ValueError, match="relation_emb has shape"):
        conv(x, edge_index, edge_type, rel[:1])
    with pytest.raises(ValueError, match="holds relation 5"):
        conv(x, edge_index, torch.tensor([0, 5, 1]), rel)


@pytest.mark.parametrize("heads", [1, 2])
def test_a_random_multigraph_matches_the_equations(heads):
    torch.manual_seed(heads)
    x, rel = torch.randn(25, 8), torch.randn(3, 5)
    edge_index, edge_type = torch.randint(0, 25, (2, 150)), torch.randint(0, 3, (150,))
    conv = RelationAttentionConv(8, 5, num_relations=3, heads=heads)
    with torch.no_grad():
        conv.beta.uniform_(0.5, 2.0)
    expected = direct(conv, x, edge_index, edge_type, rel)
    torch.testing.assert_close(conv(x, edge_index, edge_type, rel), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("heads", [1, 2])
def test_gradients_match_the_equations(heads):
    """Forward and backward run as sparse products (training.csr); every parameter's and
    the input's gradient equals that of the equations written out."""
    torch.manual_seed(10 + heads)
    x, rel = torch.randn(20, 8, requires_grad=True), torch.randn(3, 5, requires_grad=True)
    edge_index, edge_type = torch.randint(0, 20, (2, 90)), torch.randint(0, 3, (90,))
    conv = RelationAttentionConv(8, 5, num_relations=3, heads=heads)
    with torch.no_grad():
        conv.beta.uniform_(0.5, 2.0)
    weights = [x, rel, *conv.parameters()]
    target = torch.randn(20, 8)
    got = torch.autograd.grad((conv(x, edge_index, edge_type, rel) * target).sum(), weights)
    expected = torch.autograd.grad(
        (direct(conv, x, edge_index, edge_type, rel) * target).sum(), weights
    )
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-4)


def test_attention_weights_come_back_in_the_callers_edge_order(graph):
    x, edge_index, edge_type, rel = graph
    conv = RelationAttentionConv(4, 3, num_relations=2)
    flipped = edge_index.flip(1)  # targets now descending: the layout reorders them
    _, alpha = conv(x, edge_index, edge_type, rel, return_attention_weights=True)
    _, alpha_flipped = conv(x, flipped, edge_type.flip(0), rel, return_attention_weights=True)
    torch.testing.assert_close(alpha_flipped, alpha.flip(0))
