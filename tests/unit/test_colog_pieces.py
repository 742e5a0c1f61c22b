"""CoLog's word-piece path: a per-line max over its pieces' MLP outputs, on ragged input."""

from __future__ import annotations

import torch

from logad.methods.colog.model import CollaborativeTransformer


def _net() -> CollaborativeTransformer:
    torch.manual_seed(0)
    return CollaborativeTransformer(input_dim=8, context=1, hidden=16, layers=1, heads=2, ff=16, dropout=0.0,
                                    adaptation_heads=1, classes=2, piece_table=torch.randn(12, 8))


def test_each_line_gets_the_max_of_its_own_pieces_and_a_line_without_any_gets_zero():
    net = _net().eval()
    # three lines: pieces {3, 7}, none, {7}
    index, offsets = torch.tensor([3, 7, 7]), torch.tensor([0, 2, 2])
    with torch.no_grad():
        out = net._max_over_pieces(index, offsets, 3)
        each = net.piece_mlp(net.piece_table)
    torch.testing.assert_close(out[0], torch.maximum(each[3], each[7]))
    torch.testing.assert_close(out[1], torch.zeros(16))
    torch.testing.assert_close(out[2], each[7])
    with torch.no_grad():  # the order of a line's pieces does not matter
        torch.testing.assert_close(net._max_over_pieces(torch.tensor([7, 3]), torch.tensor([0]), 1)[0], out[0])


def test_gradients_reach_the_mlp_and_never_the_frozen_table():
    net = _net()
    own, ctx, pad = torch.randn(2, 8), torch.randn(2, 3, 8), torch.zeros(2, 3, dtype=torch.bool)
    logits, _, _ = net(own, ctx, pad, pieces=(torch.tensor([1, 2, 5]), torch.tensor([0, 1])))
    logits.sum().backward()
    assert net.piece_mlp[0].weight.grad is not None and net.piece_mlp[0].weight.grad.abs().sum() > 0
    assert "piece_table" not in net.state_dict()  # comes with the SBERT model, never saved
    assert not any(p is net.piece_table for p in net.parameters())
