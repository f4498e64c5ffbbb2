"""The CSR products against gathers and scatters, values and gradients."""

from __future__ import annotations

import pytest
import torch

from training.csr import EdgeLayout, aggregate, edge_dot


@pytest.fixture
def multigraph():
    gen = torch.Generator().manual_seed(0)
    n = 30
    # repeated edges, self-loops and nodes without incoming edges all occur
    edge_index = torch.randint(0, n - 3, (2, 200), generator=gen)
    return n, edge_index


def test_layout_sorts_by_target_then_source(multigraph):
    n, edge_index = multigraph
    layout = EdgeLayout.of(edge_index, n)
    assert torch.equal(layout.row, edge_index[1, layout.perm])
    assert torch.equal(layout.col, edge_index[0, layout.perm])
    key = layout.row * n + layout.col
    assert torch.all(key[1:] >= key[:-1])
    counts = torch.bincount(layout.row, minlength=n)
    assert torch.equal(layout.rowptr[1:], counts.cumsum(0)) and layout.rowptr[0] == 0


def test_products_equal_gathers_and_their_gradients(multigraph):
    n, edge_index = multigraph
    layout = EdgeLayout.of(edge_index, n)
    src, dst = layout.col, layout.row
    a = torch.randn(n, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(n, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(len(src), dtype=torch.float64, requires_grad=True)

    torch.testing.assert_close(edge_dot(layout, a, b), (a[dst] * b[src]).sum(-1))
    expected = torch.zeros(n, 5, dtype=torch.float64).index_add(0, dst, w[:, None] * b[src])
    got = aggregate(layout, w, b)
    torch.testing.assert_close(got, expected)
    assert torch.equal(got[n - 3 :], torch.zeros(3, 5, dtype=torch.float64))  # no incoming edge

    assert torch.autograd.gradcheck(lambda a, b: edge_dot(layout, a, b), (a, b))
    assert torch.autograd.gradcheck(lambda w, b: aggregate(layout, w, b), (w, b))


def test_no_edges():
    layout = EdgeLayout.of(torch.empty(2, 0, dtype=torch.long), 4)
    a = torch.randn(4, 3, requires_grad=True)
    assert edge_dot(layout, a, a).shape == (0,)
    out = aggregate(layout, torch.empty(0, requires_grad=True), a)
    assert torch.equal(out, torch.zeros(4, 3))
    out.sum().backward()
    assert torch.equal(a.grad, torch.zeros(4, 3))
